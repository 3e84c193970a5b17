//! The Drone token kept in AWS rather than in the environment: read from
//! SSM Parameter Store or Secrets Manager once at start-up (once per Lambda
//! container), then used like `DRONE_TOKEN`.
//!
//! Nothing read here is ever printed. While the value is fetched the
//! libraries' debug and trace lines are held back ([`crate::logging::hush`]);
//! the token is added to the log scrubber as soon as it is known; and no
//! message repeats the stored value or, for a JSON secret, any of its
//! other keys' values.

use std::time::Duration;

use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::types::ParameterType;
use aws_types::SdkConfig;
use serde_json::Value;

use crate::config::{ConfigError, ConfigProblem, Token, TokenSource, check_token};
use crate::drone::printable;

/// Longest time one read of the token may take, retries included: well
/// inside Lambda's 10 s for a function's init, and inside the shortest
/// invocation timeout worth giving the function.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Error codes of a failure that trying again later may fix.
const TRANSIENT_CODES: [&str; 8] = [
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "InternalServerError",
    "InternalServiceError",
    "InternalFailure",
    "ServiceUnavailable",
];

/// Error codes of credentials the service did not accept.
const CREDENTIALS_CODES: [&str; 5] = [
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
];

/// Why the token could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// Only a change will fix it: of the configuration, of the permissions,
    /// or of what is stored.
    #[error("{}", ConfigError(vec![.0.clone()]))]
    Configuration(ConfigProblem),
    /// Trying again later may work: the network, throttling, a fault of
    /// the service.
    #[error("could not read the Drone token from {from}: {why}")]
    Unavailable {
        /// Where the token was to come from.
        from: String,
        /// What went wrong and what to do.
        why: String,
    },
}

impl TokenError {
    /// Whether trying again later may work.
    pub fn is_transient(&self) -> bool {
        matches!(self, TokenError::Unavailable { .. })
    }
}

/// The SDK's name of the service that holds the token, if it is kept in
/// AWS.
pub fn service_id(source: &TokenSource) -> Option<&'static str> {
    match source {
        TokenSource::Given(_) => None,
        TokenSource::SsmParameter(_) => Some("SSM"),
        TokenSource::Secret { .. } => Some("Secrets Manager"),
    }
}

/// The token: the one given, or the one read from AWS with `shared`.
///
/// # Errors
///
/// A [`TokenError`] naming the parameter or secret and what to do.
pub async fn read(source: &TokenSource, shared: &SdkConfig) -> Result<Token, TokenError> {
    let region =
        shared.region().map_or_else(|| "the configured region".into(), ToString::to_string);
    let token = {
        let _hush = crate::logging::hush();
        match source {
            TokenSource::Given(token) => return Ok(token.clone()),
            TokenSource::SsmParameter(name) => read_parameter(shared, name, &region).await?,
            TokenSource::Secret { id, key } => {
                read_secret(shared, id, key.as_deref(), &region).await?
            }
        }
    };
    tracing::info!(from = %source, "the Drone token was read");
    Ok(token)
}

/// The problem with the value read from `source`, as a configuration
/// problem of the variable that names it (or of `variable`).
fn stored(
    source: &TokenSource,
    variable: Option<(&'static str, &'static str)>,
    why: String,
) -> TokenError {
    let (variable, flag) = variable.unwrap_or_else(|| source.variable());
    TokenError::Configuration(ConfigProblem { variable, flag, message: why })
}

/// Checks what was read like `DRONE_TOKEN`, and has the log scrub it from
/// then on.
fn accept(source: &TokenSource, text: &str) -> Result<Token, TokenError> {
    let token = Token::new(text);
    check_token(&token)
        .map_err(|why| stored(source, None, format!("the token in {source} {why}")))?;
    crate::logging::add_secret(&token);
    Ok(token)
}

async fn read_parameter(shared: &SdkConfig, name: &str, region: &str) -> Result<Token, TokenError> {
    let source = TokenSource::SsmParameter(name.to_string());
    let config = aws_sdk_ssm::config::Builder::from(shared)
        .retry_config(crate::aws::retry(shared))
        .timeout_config(
            aws_sdk_ssm::config::timeout::TimeoutConfig::builder()
                .operation_timeout(READ_TIMEOUT)
                .build(),
        )
        .build();
    let client = aws_sdk_ssm::Client::from_conf(config);
    let call = client.get_parameter().name(name).with_decryption(true).send();
    // As a task, a panic of the SDK on a setting it reads only now is an
    // error rather than the end of the process.
    let answer = match tokio::spawn(call).await {
        Ok(answer) => answer,
        Err(failure) => return Err(sdk_panic(&source, failure)),
    };
    let output = answer.map_err(|err| {
        failed(&source, &err, "SSM", "AWS_ENDPOINT_URL_SSM", |code, message| match code {
            "ParameterNotFound" => Some(format!(
                "does not exist in {region}; create it as a SecureString holding the token, or \
                 fix the name (names are case-sensitive, and a name under a path starts with /)"
            )),
            "ParameterVersionNotFound" => Some(
                "has no such version or label; fix the selector after the ':', or leave it out \
                 to read the latest version"
                    .into(),
            ),
            "AccessDeniedException" if message.contains("kms:") => Some(format!(
                "cannot be read: access denied ({message}); the parameter is encrypted with a \
                 customer-managed KMS key: allow kms:Decrypt on that key to this role or user"
            )),
            "AccessDeniedException" => Some(format!(
                "cannot be read: access denied ({message}); allow ssm:GetParameter on {} to \
                 this role or user (and kms:Decrypt on its KMS key if that is a \
                 customer-managed key)",
                parameter_arn(name, region)
            )),
            "InvalidKeyId" => Some(format!(
                "cannot be decrypted: its KMS key cannot be used ({message}); check that the \
                 key exists and is enabled, and allow kms:Decrypt on it"
            )),
            _ => None,
        })
    })?;
    let parameter = output.parameter();
    let value = parameter.and_then(|p| p.value());
    let Some(value) = value else {
        return Err(TokenError::Unavailable {
            from: source.to_string(),
            why: "SSM answered without the parameter's value".into(),
        });
    };
    match parameter.and_then(|p| p.r#type()) {
        Some(ParameterType::SecureString) => {}
        Some(ParameterType::StringList) => {
            return Err(stored(
                &source,
                None,
                format!(
                    "{source} is a StringList, a list rather than one token; store the token \
                     in a SecureString parameter"
                ),
            ));
        }
        _ => {
            let token = accept(&source, value)?;
            tracing::warn!(
                "{source} is a plain String parameter, stored unencrypted and shown to anyone \
                 who may describe parameters; store the token as a SecureString \
                 (aws ssm put-parameter --type SecureString --overwrite ...)"
            );
            return Ok(token);
        }
    }
    accept(&source, value)
}

async fn read_secret(
    shared: &SdkConfig,
    id: &str,
    key: Option<&str>,
    region: &str,
) -> Result<Token, TokenError> {
    let source = TokenSource::Secret { id: id.to_string(), key: key.map(String::from) };
    let whole = TokenSource::Secret { id: id.to_string(), key: None };
    let config = aws_sdk_secretsmanager::config::Builder::from(shared)
        .retry_config(crate::aws::retry(shared))
        .timeout_config(
            aws_sdk_secretsmanager::config::timeout::TimeoutConfig::builder()
                .operation_timeout(READ_TIMEOUT)
                .build(),
        )
        .build();
    let client = aws_sdk_secretsmanager::Client::from_conf(config);
    let call = client.get_secret_value().secret_id(id).send();
    let answer = match tokio::spawn(call).await {
        Ok(answer) => answer,
        Err(failure) => return Err(sdk_panic(&whole, failure)),
    };
    let output = answer.map_err(|err| {
        failed(
            &whole,
            &err,
            "Secrets Manager",
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
            |code, message| match code {
                "ResourceNotFoundException" => Some(format!(
                    "does not exist in {region}, or has no current version; create it, or fix \
                     the name or ARN"
                )),
                "AccessDeniedException" if message.contains("KMS") || message.contains("kms:") => {
                    Some(format!(
                        "cannot be read: access denied ({message}); the secret is encrypted \
                         with a customer-managed KMS key: allow kms:Decrypt on that key to this \
                         role or user"
                    ))
                }
                "AccessDeniedException" => Some(format!(
                    "cannot be read: access denied ({message}); allow \
                     secretsmanager:GetSecretValue on {} to this role or user (and kms:Decrypt \
                     on its KMS key if that is a customer-managed key)",
                    secret_arn(id, region)
                )),
                "DecryptionFailure" => Some(format!(
                    "cannot be decrypted ({message}); check its KMS key, and allow kms:Decrypt \
                     on it to this role or user"
                )),
                "InvalidRequestException" | "InvalidParameterException" => {
                    Some(format!("cannot be read: {message}"))
                }
                _ => None,
            },
        )
    })?;
    let Some(text) = output.secret_string() else {
        let why = if output.secret_binary().is_some() {
            format!(
                "{whole} holds binary data (SecretBinary) rather than text; store the token as \
                 the secret's text (SecretString)"
            )
        } else {
            format!("{whole} has no value; store the token as the secret's text")
        };
        return Err(stored(&whole, None, why));
    };
    match key {
        Some(key) => {
            let value = pick(text, key).map_err(|(why, variable)| {
                stored(&source, variable.then_some(KEY_VARIABLE), format!("{whole} {why}"))
            })?;
            accept(&source, &value)
        }
        None if looks_like_object(text) => Err(stored(
            &whole,
            None,
            format!(
                "{whole} is a JSON object rather than the token itself; set \
                 DRONE_TOKEN_SECRET_KEY to the key that holds the token"
            ),
        )),
        None => accept(&source, text),
    }
}

const KEY_VARIABLE: (&str, &str) = ("DRONE_TOKEN_SECRET_KEY", "--drone-token-secret-key");

/// The string value of `key` in the JSON object `text`; or what is wrong,
/// and whether the key (rather than the secret) is to blame. Nothing of the
/// text is ever repeated: its other values may be secrets too.
fn pick(text: &str, key: &str) -> Result<String, (String, bool)> {
    let shown = printable(key, 100);
    let value: Value = serde_json::from_str(text).map_err(|e| {
        (
            format!(
                "is not JSON (a syntax error at line {}, column {}), so it has no key {shown:?}; \
                 store a JSON object such as {{\"{shown}\": \"<token>\"}}, or unset \
                 DRONE_TOKEN_SECRET_KEY to use the secret's whole text as the token",
                e.line(),
                e.column()
            ),
            false,
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err((
            format!(
                "is JSON but {} rather than an object, so it has no key {shown:?}; store a JSON \
                 object such as {{\"{shown}\": \"<token>\"}}, or unset DRONE_TOKEN_SECRET_KEY",
                kind(&value)
            ),
            false,
        ));
    };
    match object.remove(key) {
        Some(Value::String(token)) => Ok(token),
        Some(other) => Err((
            format!(
                "has the key {shown:?}, but its value is {} rather than a string",
                kind(&other)
            ),
            true,
        )),
        None => Err((
            format!("has no key {shown:?}; check DRONE_TOKEN_SECRET_KEY (keys are case-sensitive)"),
            true,
        )),
    }
}

/// What a JSON value is, without its content.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether a secret read whole is a JSON object (the key was forgotten).
fn looks_like_object(text: &str) -> bool {
    text.trim_start().starts_with('{')
        && serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object())
}

/// The partition of a region, for the ARNs in messages.
fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The ARN an IAM policy names for the parameter `name` (the account is
/// not known here).
fn parameter_arn(name: &str, region: &str) -> String {
    let arn: Vec<&str> = name.splitn(7, ':').collect();
    if name.starts_with("arn:") {
        // Without a `:version` or `:label` selector.
        return printable(&arn[..arn.len().min(6)].join(":"), 300);
    }
    let bare = name.split(':').next().unwrap_or(name).trim_start_matches('/');
    printable(&format!("arn:{}:ssm:{region}:ACCOUNT_ID:parameter/{bare}", partition(region)), 300)
}

/// The ARN an IAM policy names for the secret `id`: Secrets Manager ends a
/// secret's ARN with six random characters.
fn secret_arn(id: &str, region: &str) -> String {
    if id.starts_with("arn:") {
        return printable(id, 300);
    }
    printable(
        &format!("arn:{}:secretsmanager:{region}:ACCOUNT_ID:secret:{id}-??????", partition(region)),
        300,
    )
}

/// A failed call: the service's own answer explained by `explain` (code,
/// message), or the transport's failure.
fn failed<E>(
    source: &TokenSource,
    err: &SdkError<E>,
    service: &str,
    endpoint_variable: &str,
    explain: impl Fn(&str, &str) -> Option<String>,
) -> TokenError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let unavailable = |why: String| TokenError::Unavailable { from: source.to_string(), why };
    let configuration =
        |why: String| stored(source, None, format!("{source} cannot be read: {why}"));
    match err {
        SdkError::ServiceError(service_error) => {
            let code = err.code().unwrap_or("");
            let message = printable(err.message().unwrap_or(""), 300);
            let status = service_error.raw().status().as_u16();
            if let Some(why) = explain(code, &message) {
                return stored(source, None, format!("{source} {why}"));
            }
            let said = match (code.is_empty(), message.is_empty()) {
                (true, _) => String::new(),
                (false, true) => format!(", {code}"),
                (false, false) => format!(", {code}: {message}"),
            };
            if TRANSIENT_CODES.contains(&code) || status >= 500 || status == 429 {
                unavailable(format!("{service} failed after every retry (HTTP {status}{said})"))
            } else if code.is_empty() {
                // No AWS error code: the answer came from something else (a
                // proxy's page, a wrong endpoint), which may pass or may be
                // fixed elsewhere; it is not a verdict on the token.
                unavailable(format!(
                    "the answer (HTTP {status}) did not come from {service}; check \
                     {endpoint_variable} or AWS_ENDPOINT_URL if set, and any proxy on the way"
                ))
            } else if CREDENTIALS_CODES.contains(&code) {
                configuration(format!(
                    "AWS did not accept the credentials ({said}); check AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the role of the function or machine"
                ))
            } else {
                configuration(format!("{service} refused the request (HTTP {status}{said})"))
            }
        }
        SdkError::TimeoutError(_) => unavailable(format!(
            "no answer from {service} within {} s; check the network path to it (inside a VPC: \
             a NAT gateway or an interface endpoint for {service})",
            READ_TIMEOUT.as_secs()
        )),
        SdkError::ResponseError(response) => unavailable(format!(
            "{service}'s answer could not be read (HTTP {})",
            response.raw().status().as_u16()
        )),
        _ => {
            // The SDK's own text about a connection or a missing
            // credential; no answer was received, so it holds no value.
            let detail = printable(&DisplayErrorContext(err).to_string(), 400);
            if detail.contains("no credentials") || detail.contains("credentials provider") {
                configuration(format!(
                    "no AWS credentials were found; set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or give the function or machine a role \
                     ({detail})"
                ))
            } else if matches!(err, SdkError::ConstructionFailure(_)) {
                configuration(format!("the request could not be built ({detail})"))
            } else {
                unavailable(format!(
                    "could not reach {service}; check the network, the region, and \
                     {endpoint_variable} or AWS_ENDPOINT_URL if set ({detail})"
                ))
            }
        }
    }
}

fn sdk_panic(source: &TokenSource, failure: tokio::task::JoinError) -> TokenError {
    TokenError::Unavailable {
        from: source.to_string(),
        why: format!("the AWS SDK failed: {}", crate::aws::panic_text(failure)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OTHER: &str = "pa55-w0rd-of-the-database";

    #[test]
    fn a_key_is_picked_without_repeating_anything_else() {
        let text = format!(r#"{{"token": "abc-123456789", "db": "{OTHER}", "n": 3, "o": {{}}}}"#);
        assert_eq!(pick(&text, "token"), Ok("abc-123456789".into()));
        for (key, needle, blames_key) in [
            ("missing", "has no key \"missing\"", true),
            ("Token", "has no key \"Token\"", true),
            ("n", "its value is a number rather than a string", true),
            ("o", "its value is an object", true),
        ] {
            let (why, key_blamed) = pick(&text, key).unwrap_err();
            assert!(why.contains(needle), "{why}");
            assert_eq!(key_blamed, blames_key, "{why}");
            assert!(
                !why.contains(OTHER) && !why.contains("abc-123456789") && !why.contains("db"),
                "{why}"
            );
        }
        for text in [format!("not json {OTHER}"), format!(r#"{{"token": "{OTHER}""#)] {
            let (why, key_blamed) = pick(&text, "token").unwrap_err();
            assert!(why.starts_with("is not JSON (a syntax error at line 1"), "{why}");
            assert!(!key_blamed && !why.contains(OTHER), "{why}");
        }
        let (why, _) = pick(&format!(r#"["{OTHER}"]"#), "token").unwrap_err();
        assert!(why.starts_with("is JSON but an array rather than an object"), "{why}");
        assert!(!why.contains(OTHER), "{why}");
    }

    #[test]
    fn a_token_read_is_checked_and_scrubbed_from_the_log_at_once() {
        let source = TokenSource::SsmParameter("/drone/token".into());
        let token = accept(&source, " tok-read-from-ssm-93c1\n").unwrap();
        assert_eq!(token.expose(), "tok-read-from-ssm-93c1");
        let scrubbed = crate::logging::scrub(b"Bearer tok-read-from-ssm-93c1").unwrap();
        assert_eq!(scrubbed, "Bearer [redacted]");

        let err = accept(&source, "tok-12").unwrap_err();
        assert!(!err.is_transient());
        assert_eq!(
            err.to_string(),
            "1 configuration problem:\n  - DRONE_TOKEN_SSM_PARAMETER \
             (--drone-token-ssm-parameter): the token in SSM parameter /drone/token is 6 \
             characters long, too short for a Drone API token (they have 32); copy the token \
             again from the Drone UI"
        );
        // Too short to be blanked out without garbling every line.
        assert!(crate::logging::scrub(b"tok-12").is_none_or(|t| t == "tok-12"));
    }

    #[test]
    fn a_whole_secret_that_is_an_object_is_told_apart_from_a_token() {
        assert!(looks_like_object(r#" {"token": "x"}"#));
        assert!(!looks_like_object("{not-json-but-a-token}"));
        assert!(!looks_like_object("abc-123456789"));
    }

    #[test]
    fn the_arns_in_messages_are_those_a_policy_names() {
        assert_eq!(
            parameter_arn("/drone/token", "eu-west-1"),
            "arn:aws:ssm:eu-west-1:ACCOUNT_ID:parameter/drone/token"
        );
        assert_eq!(
            parameter_arn("drone-token:3", "cn-north-1"),
            "arn:aws-cn:ssm:cn-north-1:ACCOUNT_ID:parameter/drone-token"
        );
        assert_eq!(
            parameter_arn("arn:aws:ssm:us-east-1:123456789012:parameter/drone/token:live", "x"),
            "arn:aws:ssm:us-east-1:123456789012:parameter/drone/token"
        );
        assert_eq!(
            secret_arn("ci/drone", "us-gov-west-1"),
            "arn:aws-us-gov:secretsmanager:us-gov-west-1:ACCOUNT_ID:secret:ci/drone-??????"
        );
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ci/drone-AbCdEf";
        assert_eq!(secret_arn(arn, "us-east-1"), arn);
    }
}
