//! The Drone side: the stage as `GET /api/queue` sends it, and the client
//! that reads it. Every way the read can fail has its own error, naming the
//! URL (never the token) and what to do.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, LOCATION};
use reqwest::{StatusCode, Url};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::config::Token;

/// The largest queue answer accepted. Drone sends about 350 bytes per stage,
/// so this is some 190,000 stages; anything bigger is not a Drone queue and
/// would only exhaust a Lambda's memory.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// One stage of the queue, as Drone's `core.Stage` serialises it. Only `id`
/// and `status` are required; every other field may be absent or `null`
/// (older servers and forks omit some), and unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Stage {
    /// Stage id; the queue is ordered by it.
    pub id: i64,
    /// Repository id, used by the `limit` and `throttle` rules.
    #[serde(default, deserialize_with = "nullable")]
    pub repo_id: i64,
    /// Pipeline name.
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// Pipeline type (`docker` when empty).
    #[serde(default, rename = "type", deserialize_with = "nullable")]
    pub pipeline_type: String,
    /// `pending` or `running`; anything else is not counted.
    pub status: String,
    /// Name of the runner that accepted the stage, empty if none.
    #[serde(default, deserialize_with = "nullable")]
    pub machine: String,
    /// Platform operating system.
    #[serde(default, deserialize_with = "nullable")]
    pub os: String,
    /// Platform architecture.
    #[serde(default, deserialize_with = "nullable")]
    pub arch: String,
    /// Platform variant (e.g. `v8`).
    #[serde(default, deserialize_with = "nullable")]
    pub variant: String,
    /// Platform kernel version (e.g. `1809`).
    #[serde(default, deserialize_with = "nullable")]
    pub kernel: String,
    /// Pipeline `concurrency.limit` (0 = none).
    #[serde(default, deserialize_with = "nullable")]
    pub limit: i64,
    /// Repository throttle at trigger time (0 = none).
    #[serde(default, deserialize_with = "nullable")]
    pub throttle: i64,
    /// Unix seconds.
    #[serde(default, deserialize_with = "nullable")]
    pub created: i64,
    /// Unix seconds.
    #[serde(default, deserialize_with = "nullable")]
    pub updated: i64,
    /// True when the stage waited for other stages (`depends_on` is a
    /// non-empty list) before it became pending. The names themselves are
    /// not needed, so they are skipped rather than allocated.
    #[serde(default, rename = "depends_on", deserialize_with = "non_empty_list")]
    pub has_dependencies: bool,
    /// The pipeline's `node:` labels, which route it to runners.
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
}

/// Treats an explicit `null` like an absent field.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// Reads a list (or `null`) and says whether it had any element.
fn non_empty_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    struct NonEmpty;
    impl<'de> serde::de::Visitor<'de> for NonEmpty {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of stage names")
        }
        fn visit_unit<E>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_none<E>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_seq(NonEmpty)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            let mut any = false;
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                any = true;
            }
            Ok(any)
        }
    }
    deserializer.deserialize_option(NonEmpty)
}

/// What a stage's status means for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageState {
    /// Waiting for a runner (or accepted by one and about to start).
    Pending,
    /// On a runner.
    Running,
    /// Any other status; the queue API never returns one, so it is logged
    /// and left out.
    Other,
}

impl Stage {
    /// Classifies the status.
    pub fn state(&self) -> StageState {
        match self.status.as_str() {
            "pending" => StageState::Pending,
            "running" => StageState::Running,
            _ => StageState::Other,
        }
    }
}

/// Why the queue could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The connection failed.
    #[error(
        "could not connect to the Drone server at {url}: {cause}; \
         check DRONE_SERVER and that the server is reachable from here"
    )]
    Connect { url: String, cause: String },
    /// No complete answer within the time allowed.
    #[error(
        "the Drone server at {url} did not answer within {}; \
         check that the server is healthy, or raise DRONE_TIMEOUT",
        humantime(*.timeout)
    )]
    Timeout { url: String, timeout: Duration },
    /// The request failed in another way (TLS, protocol, reset connection).
    #[error("the request to {url} failed: {cause}")]
    Request { url: String, cause: String },
    /// 401.
    #[error(
        "the Drone server at {url} does not know the token (401 Unauthorized); \
         set DRONE_TOKEN (or the parameter or secret it is read from) to the API token of a \
         Drone admin, from the account page of the Drone UI; a token read from AWS is read at \
         start, so restart the daemon (or, in Lambda, update the function) after changing it"
    )]
    Unauthorized { url: String },
    /// 403.
    #[error(
        "the Drone server at {url} knows the token but its user is not an admin (403 Forbidden); \
         the queue API needs an admin token: use an admin user's token or an admin machine account"
    )]
    Forbidden { url: String },
    /// 404.
    #[error(
        "the Drone server has no queue API at {url} (404 Not Found); \
         check DRONE_SERVER: it must be the server's base URL, with any path prefix \
         of a reverse proxy, and without /api"
    )]
    NotFound { url: String },
    /// 501.
    #[error(
        "the Drone server at {url} does not serve the queue API (501 Not Implemented): \
         it is an open-source (oss) build of Drone, which leaves the queue API out; \
         run a Drone build that includes it"
    )]
    NotImplemented { url: String },
    /// No complete answer within the time the poll had left (a Lambda
    /// invocation's deadline), which was shorter than `DRONE_TIMEOUT`.
    #[error(
        "the Drone server at {url} did not answer within {}, the two thirds of the time left \
         before the poll's deadline that the request may use (a third is kept for publishing); \
         in Lambda give the function a longer timeout, in the daemon a longer POLL_INTERVAL",
        humantime(*.timeout)
    )]
    OutOfTime { url: String, timeout: Duration },
    /// A redirect, which is not followed: it could take the token to
    /// another server.
    #[error(
        "the Drone server at {url} redirected ({status}) to \"{location}\"; \
         set DRONE_SERVER to the server's real base URL"
    )]
    Redirect { url: String, status: StatusCode, location: String },
    /// Any other status.
    #[error("the Drone server at {url} answered {status}: {message}{}", status_hint(*.status))]
    Status { url: String, status: StatusCode, message: String },
    /// The body is not JSON.
    #[error(
        "the answer from {url} is not JSON ({detail}); it starts with \"{snippet}\"; \
         a proxy or login page may stand in front of the Drone server: check DRONE_SERVER"
    )]
    NotJson { url: String, detail: String, snippet: String },
    /// The body is JSON but not a list of stages.
    #[error("the answer from {url} is JSON but not a Drone queue: {detail}")]
    Shape { url: String, detail: String },
    /// The body is larger than anything a Drone queue can be.
    #[error("the answer from {url} is larger than {} MiB; it is not a Drone queue", MAX_BODY_BYTES >> 20)]
    TooLarge { url: String },
}

impl SourceError {
    /// The same error with the token blanked out of every text in it.
    #[must_use]
    pub fn redacted(self, token: &Token) -> SourceError {
        let r = |text: String| token.redact(&text);
        match self {
            SourceError::Connect { url, cause } => {
                SourceError::Connect { url: r(url), cause: r(cause) }
            }
            SourceError::Timeout { url, timeout } => SourceError::Timeout { url: r(url), timeout },
            SourceError::Request { url, cause } => {
                SourceError::Request { url: r(url), cause: r(cause) }
            }
            SourceError::Unauthorized { url } => SourceError::Unauthorized { url: r(url) },
            SourceError::Forbidden { url } => SourceError::Forbidden { url: r(url) },
            SourceError::NotFound { url } => SourceError::NotFound { url: r(url) },
            SourceError::NotImplemented { url } => SourceError::NotImplemented { url: r(url) },
            SourceError::OutOfTime { url, timeout } => {
                SourceError::OutOfTime { url: r(url), timeout }
            }
            SourceError::Redirect { url, status, location } => {
                SourceError::Redirect { url: r(url), status, location: r(location) }
            }
            SourceError::Status { url, status, message } => {
                SourceError::Status { url: r(url), status, message: r(message) }
            }
            SourceError::NotJson { url, detail, snippet } => {
                SourceError::NotJson { url: r(url), detail: r(detail), snippet: r(snippet) }
            }
            SourceError::Shape { url, detail } => {
                SourceError::Shape { url: r(url), detail: r(detail) }
            }
            SourceError::TooLarge { url } => SourceError::TooLarge { url: r(url) },
        }
    }
}

fn status_hint(status: StatusCode) -> &'static str {
    if status == StatusCode::TOO_MANY_REQUESTS {
        "; the server (or a proxy) limits the request rate: poll less often"
    } else if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        "; a proxy between here and Drone wants credentials: reach Drone without it"
    } else if status.is_server_error() {
        "; the server (or a proxy in front of it) failed: check its logs, the next poll tries again"
    } else {
        ""
    }
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Reads Drone's queue.
#[derive(Debug, Clone)]
pub struct DroneClient {
    http: reqwest::Client,
    queue_url: Url,
    token: Token,
}

impl DroneClient {
    /// Builds the client once; it is reused for every poll.
    ///
    /// # Errors
    ///
    /// When the HTTP client cannot be built (no TLS roots on the machine).
    pub fn new(server: &Url, token: Token) -> Result<DroneClient, SourceError> {
        let queue_url = queue_url(server);
        let http = reqwest::Client::builder()
            .user_agent(concat!("drone-queue-cloudwatch/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SourceError::Request {
                url: queue_url.to_string(),
                cause: e.to_string(),
            })?;
        Ok(DroneClient { http, queue_url, token })
    }

    /// The URL polled.
    pub fn queue_url(&self) -> &Url {
        &self.queue_url
    }

    /// Reads the whole queue in one request, within `timeout` (connection
    /// included).
    ///
    /// # Errors
    ///
    /// A [`SourceError`] for every way the read can fail; a failed read is
    /// never turned into an empty queue.
    pub async fn fetch(&self, timeout: Duration) -> Result<Vec<Stage>, SourceError> {
        // Whatever the server sent back (a message, a header, a value in a
        // malformed stage) may echo the token; every message is scrubbed
        // here, once, rather than at each place that quotes the server.
        self.read(timeout).await.map_err(|e| e.redacted(&self.token))
    }

    async fn read(&self, timeout: Duration) -> Result<Vec<Stage>, SourceError> {
        let url = self.queue_url.to_string();
        let mut auth = HeaderValue::try_from(format!("Bearer {}", self.token.expose()))
            .map_err(|_| SourceError::Request { url: url.clone(), cause: "bad token".into() })?;
        auth.set_sensitive(true);

        let read = async {
            let response = self
                .http
                .get(self.queue_url.clone())
                .header(AUTHORIZATION, auth)
                .send()
                .await
                .map_err(|e| self.transport_error(&e, timeout))?;
            let status = response.status();
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .map(String::from)
            };
            let mut content_type = header(CONTENT_TYPE).unwrap_or_else(|| "no content type".into());
            // Nothing but identity was asked for; a compressed body cannot be
            // read, and saying so beats quoting its bytes.
            if let Some(encoding) = header(CONTENT_ENCODING).filter(|e| e != "identity") {
                content_type.push_str(&format!(", content encoding {encoding} (not asked for)"));
            }
            let location = header(LOCATION).unwrap_or_default();
            let body = read_body(response).await.map_err(|e| match e {
                BodyError::TooLarge => SourceError::TooLarge { url: url.clone() },
                BodyError::Http(e) => self.transport_error(&e, timeout),
            })?;
            Ok::<_, SourceError>((status, content_type, location, body))
        };
        let (status, content_type, location, body) =
            tokio::time::timeout(timeout, read)
                .await
                .map_err(|_| SourceError::Timeout { url: url.clone(), timeout })??;

        match status {
            StatusCode::OK => parse_queue_scrubbed(&body, &|text| self.token.redact(text))
                .map_err(|problem| match problem {
                    ParseProblem::NotJson(detail) => SourceError::NotJson {
                        url,
                        detail: format!("content type {content_type}; {detail}"),
                        snippet: self.snippet(&body),
                    },
                    ParseProblem::Shape(detail) => SourceError::Shape { url, detail },
                })
                .map(|mut stages| {
                    scrub_stages(&body, &mut stages, &self.token);
                    stages
                }),
            StatusCode::UNAUTHORIZED => Err(SourceError::Unauthorized { url }),
            StatusCode::FORBIDDEN => Err(SourceError::Forbidden { url }),
            StatusCode::NOT_FOUND => Err(SourceError::NotFound { url }),
            StatusCode::NOT_IMPLEMENTED => Err(SourceError::NotImplemented { url }),
            // 304 answers a conditional request, which is never sent; it is
            // not a redirect to anywhere.
            status if status.is_redirection() && status != StatusCode::NOT_MODIFIED => {
                Err(SourceError::Redirect {
                    url,
                    status,
                    location: printable(&self.token.redact(&location), 200),
                })
            }
            status => Err(SourceError::Status { url, status, message: self.server_message(&body) }),
        }
    }

    fn transport_error(&self, e: &reqwest::Error, timeout: Duration) -> SourceError {
        let url = self.queue_url.to_string();
        if e.is_timeout() {
            return SourceError::Timeout { url, timeout };
        }
        let cause = self.token.redact(&error_chain(e));
        if e.is_connect() {
            SourceError::Connect { url, cause }
        } else {
            SourceError::Request { url, cause }
        }
    }

    /// Drone's `{"message": ...}` text, or the start of whatever else came.
    fn server_message(&self, body: &[u8]) -> String {
        #[derive(Deserialize)]
        struct Message {
            message: String,
        }
        match serde_json::from_slice::<Message>(body) {
            Ok(m) => printable(&self.token.redact(&m.message), 300),
            Err(_) if body.iter().all(u8::is_ascii_whitespace) => "(empty body)".to_string(),
            Err(_) => format!("body starts with \"{}\"", self.snippet(body)),
        }
    }

    /// The start of a body, for messages. The token is blanked out of the
    /// whole body first: cutting or escaping first could leave part of it.
    fn snippet(&self, body: &[u8]) -> String {
        printable(&self.token.redact(&String::from_utf8_lossy(body)), 120)
    }
}

/// Blanks the token out of the stages' text, which goes to the logs, the
/// dry run and CloudWatch (a label holding it would become a dimension).
fn scrub_stages(body: &[u8], stages: &mut [Stage], token: &Token) {
    let secret = token.expose();
    // A decoded string can only hold the token if the body holds it as it
    // is or holds an escape; most answers have neither and are not walked.
    if secret.is_empty()
        || (memchr::memmem::find(body, secret.as_bytes()).is_none()
            && memchr::memchr(b'\\', body).is_none())
    {
        return;
    }
    let mut found = 0_usize;
    for stage in stages.iter_mut() {
        for field in [
            &mut stage.name,
            &mut stage.pipeline_type,
            &mut stage.status,
            &mut stage.machine,
            &mut stage.os,
            &mut stage.arch,
            &mut stage.variant,
            &mut stage.kernel,
        ] {
            if field.contains(secret) {
                *field = token.redact(field);
                found += 1;
            }
        }
        if stage.labels.iter().any(|(k, v)| k.contains(secret) || v.contains(secret)) {
            stage.labels = std::mem::take(&mut stage.labels)
                .into_iter()
                .map(|(k, v)| (token.redact(&k), token.redact(&v)))
                .collect();
            found += 1;
        }
    }
    if found > 0 {
        tracing::warn!(
            "{found} field(s) of the queue's stages hold the Drone token; \
             they are shown and published with [redacted] in its place"
        );
    }
}

/// `{server}/api/queue`, keeping any path prefix of the server URL.
pub fn queue_url(server: &Url) -> Url {
    let mut url = server.clone();
    let path = format!("{}/api/queue", server.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

enum BodyError {
    TooLarge,
    Http(reqwest::Error),
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::with_capacity(
        response.content_length().map_or(64 * 1024, |n| n.min(MAX_BODY_BYTES as u64) as usize),
    );
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Http)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why a 200 answer is not a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseProblem {
    /// Not JSON at all (or cut off).
    NotJson(String),
    /// JSON, but not an array of stages.
    Shape(String),
}

/// Parses a queue answer.
///
/// The fast path deserialises the stages directly. Only when that fails is
/// the body parsed again as plain JSON, to say which stage and field are
/// wrong: serde's line and column are useless on Drone's one-line answers.
///
/// # Errors
///
/// A [`ParseProblem`] saying what is wrong.
pub fn parse_queue(body: &[u8]) -> Result<Vec<Stage>, ParseProblem> {
    parse_queue_scrubbed(body, &str::to_string)
}

/// [`parse_queue`], passing every piece of the body quoted in a problem
/// through `scrub` before it is cut short (cutting first could leave part
/// of a secret behind).
fn parse_queue_scrubbed(
    body: &[u8],
    scrub: &dyn Fn(&str) -> String,
) -> Result<Vec<Stage>, ParseProblem> {
    let err = match serde_json::from_slice::<Vec<Stage>>(body) {
        Ok(stages) => return Ok(stages),
        Err(err) if err.is_syntax() || err.is_eof() => {
            return Err(ParseProblem::NotJson(err.to_string()));
        }
        Err(err) => err,
    };
    // The elements are only sliced out of the body, not copied, so that a
    // bad answer costs no more memory than a good one.
    let Ok(items) = serde_json::from_slice::<Vec<&RawValue>>(body) else {
        return Err(ParseProblem::Shape(format!(
            "expected an array of stages, got {}",
            describe(body, scrub)
        )));
    };
    for (index, item) in items.iter().enumerate() {
        if let Err(e) = serde_json::from_str::<Stage>(item.get()) {
            #[derive(Deserialize)]
            struct Id {
                id: Option<Box<RawValue>>,
            }
            let id = serde_json::from_str::<Id>(item.get()).ok().and_then(|i| i.id).map_or_else(
                || "no id".to_string(),
                |id| format!("id {}", printable(&scrub(id.get()), 40)),
            );
            let e = scrub(&e.to_string());
            return Err(ParseProblem::Shape(format!("stage #{index} ({id}): {e}")));
        }
    }
    Err(ParseProblem::Shape(err.to_string()))
}

/// What kind of JSON value a body holds, from its first byte (and an
/// object's first keys).
fn describe(body: &[u8], scrub: &dyn Fn(&str) -> String) -> String {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied().unwrap_or(b' ');
    match first {
        b'n' => "null".into(),
        b't' | b'f' => "a boolean".into(),
        b'"' => "a string".into(),
        b'[' => "an array".into(),
        b'{' => match serde_json::from_slice::<BTreeMap<String, IgnoredAny>>(body) {
            Ok(map) => {
                let keys: Vec<String> = map.keys().take(5).map(|k| scrub(k)).collect();
                format!("an object with keys {keys:?}")
            }
            Err(_) => "an object".into(),
        },
        _ => "a number".into(),
    }
}

/// Text from a server, cut to `max` characters, with control characters
/// escaped so that it cannot forge log lines.
pub fn printable(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).flat_map(char::escape_debug).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out.replace("\\'", "'").replace("\\\"", "\"")
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_url_keeps_a_path_prefix() {
        let base = Url::parse("https://ci.example.com/drone").unwrap();
        assert_eq!(queue_url(&base).as_str(), "https://ci.example.com/drone/api/queue");
        let root = Url::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(queue_url(&root).as_str(), "http://127.0.0.1:8080/api/queue");
    }

    #[test]
    fn optional_fields_may_be_absent_or_null_and_unknown_ones_are_ignored() {
        let body = br#"[{"id":1,"status":"pending","labels":null,"machine":null,"x":{"y":1},"depends_on":null},
                        {"id":2,"status":"running","type":"exec","labels":{"a":""},"depends_on":["a"]},
                        {"id":3,"status":"running","depends_on":[]}]"#;
        let stages = parse_queue(body).unwrap();
        assert_eq!(stages.len(), 3);
        let deps: Vec<bool> = stages.iter().map(|s| s.has_dependencies).collect();
        assert_eq!(deps, [false, true, false]);
        assert!(stages[0].labels.is_empty());
        assert_eq!(stages[0].machine, "");
        assert_eq!(stages[1].pipeline_type, "exec");
        assert_eq!(stages[1].labels.get("a").map(String::as_str), Some(""));
        assert_eq!(stages[1].state(), StageState::Running);
    }

    #[test]
    fn not_json_is_told_apart_from_the_wrong_shape() {
        let html = b"<!DOCTYPE html><html><body>Sign in</body></html>";
        assert!(matches!(parse_queue(html), Err(ParseProblem::NotJson(_))));
        assert!(matches!(parse_queue(b"[{\"id\":1,"), Err(ParseProblem::NotJson(_))));

        let object = parse_queue(br#"{"message":"ok"}"#).unwrap_err();
        assert_eq!(
            object,
            ParseProblem::Shape(
                r#"expected an array of stages, got an object with keys ["message"]"#.into()
            )
        );
        let ParseProblem::Shape(detail) =
            parse_queue(br#"[{"id":1,"status":"pending"},{"id":7,"labels":{}}]"#).unwrap_err()
        else {
            panic!("wrong kind")
        };
        assert!(detail.starts_with("stage #1 (id 7): missing field `status`"), "{detail}");
        let ParseProblem::Shape(detail) =
            parse_queue(br#"[{"id":3,"status":"pending","labels":{"a":1}}]"#).unwrap_err()
        else {
            panic!("wrong kind")
        };
        assert!(detail.starts_with("stage #0 (id 3): invalid type: integer `1`"), "{detail}");
    }

    #[test]
    fn the_token_is_blanked_out_before_a_server_text_is_cut_or_escaped() {
        let url = Url::parse("http://127.0.0.1:1").unwrap();
        let client = DroneClient::new(&url, Token::new("tok\\en-123456")).unwrap();
        // The token straddles the cut at 300 characters, and holds a
        // backslash that escaping would double.
        let message = format!("{{\"message\":\"{}Bearer tok\\\\en-123456\"}}", "x".repeat(290));
        let text = client.server_message(message.as_bytes());
        assert!(!text.contains("tok"), "{text}");
        let body = format!("{}Bearer tok\\en-123456", "y".repeat(100));
        let snippet = client.snippet(body.as_bytes());
        assert!(!snippet.contains("tok"), "{snippet}");
        assert!(snippet.contains("[redac"), "{snippet}");
    }

    #[test]
    fn printable_escapes_control_characters_and_cuts() {
        assert_eq!(printable("a\nb", 10), "a\\nb");
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("zürich\u{1b}[2J", 20), "zürich\\u{1b}[2J");
    }
}
