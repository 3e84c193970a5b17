//! Configuration: read once from flags and environment variables, checked as
//! a whole so that every problem is reported in one go, before any network
//! call is made.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use reqwest::Url;

use crate::asg::ProtectionConfig;
use crate::grouping::{self, Grouping};
use crate::metrics::Resolution;
use crate::sinks::{SinkKind, SinkSet, parse_sinks};

/// Exit status for configuration errors, as documented in the README.
pub const EXIT_CONFIG: i32 = 2;

/// Every variable the program reads itself (the AWS SDK reads its own).
pub const VARIABLES: [&str; 18] = [
    "DRONE_SERVER",
    "DRONE_TOKEN",
    "DRONE_TOKEN_SSM_PARAMETER",
    "DRONE_TOKEN_SECRET_ID",
    "DRONE_TOKEN_SECRET_KEY",
    "CLOUDWATCH_METRICS_NAMESPACE",
    "DRONE_TIMEOUT",
    "METRICS_LABEL_KEYS",
    "METRICS_EXTRA_DIMENSIONS",
    "METRICS_KNOWN_GROUPS",
    "LOG_FORMAT",
    "POLL_INTERVAL",
    "METRICS_SINKS",
    "PROMETHEUS_LISTEN",
    "CLOUDWATCH_HIGH_RESOLUTION",
    "SCALE_IN_PROTECTION_GROUPS",
    "SCALE_IN_PROTECTION_IDLE_GRACE",
    "SCALE_IN_PROTECTION_NAME_TAG",
];

/// What to say about a variable whose value is not UTF-8.
const NOT_UTF8: &str = "the value is not valid UTF-8; set it again as plain text";

/// Shortest token accepted.
const MIN_TOKEN_LEN: usize = 8;

/// Where the Prometheus endpoint listens unless `PROMETHEUS_LISTEN` says
/// otherwise: loopback, so that nothing is exposed by accident.
pub const DEFAULT_PROMETHEUS_LISTEN: &str = "127.0.0.1:9464";

/// Shortest and longest `POLL_INTERVAL`.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Command-line flags; each one can also come from the environment variable
/// the reference tool used, so existing deployments keep working unchanged.
#[derive(Debug, Parser)]
#[command(name = "drone-queue-cloudwatch", version, about, long_about = None)]
pub struct Args {
    /// Base URL of the Drone server, e.g. https://drone.example.com
    #[arg(long, env = "DRONE_SERVER", value_name = "URL", hide_env_values = true)]
    pub drone_server: Option<String>,

    /// Token of a Drone admin (user or machine account). Prefer the
    /// environment variable: other users of the machine can see flags.
    #[arg(long, env = "DRONE_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub drone_token: Option<String>,

    /// Read the token from this SSM Parameter Store parameter (name or ARN;
    /// a SecureString, decrypted) instead of DRONE_TOKEN
    #[arg(long, env = "DRONE_TOKEN_SSM_PARAMETER", value_name = "NAME")]
    pub drone_token_ssm_parameter: Option<String>,

    /// Read the token from this Secrets Manager secret (name or ARN) instead
    /// of DRONE_TOKEN
    #[arg(long, env = "DRONE_TOKEN_SECRET_ID", value_name = "SECRET")]
    pub drone_token_secret_id: Option<String>,

    /// The secret is a JSON object and the token is this key's value
    /// (with --drone-token-secret-id only)
    #[arg(long, env = "DRONE_TOKEN_SECRET_KEY", value_name = "KEY")]
    pub drone_token_secret_key: Option<String>,

    /// CloudWatch namespace the metrics are published to
    #[arg(
        long = "namespace",
        visible_alias = "cloudwatch-metrics-namespace",
        env = "CLOUDWATCH_METRICS_NAMESPACE",
        value_name = "NAMESPACE"
    )]
    pub namespace: Option<String>,

    /// Longest time the queue request may take, connection included
    /// (e.g. 10s, 2500ms); inside Lambda it is also cut to fit the invocation
    #[arg(long, env = "DRONE_TIMEOUT", value_name = "DURATION", default_value = "10s")]
    pub drone_timeout: String,

    /// Only these label keys become dimensions (comma list, e.g. class,os);
    /// stages whose labels differ only in other keys are counted together
    #[arg(long, env = "METRICS_LABEL_KEYS", value_name = "KEYS")]
    pub label_keys: Option<String>,

    /// Dimensions added to every group: platform (os/arch[/variant][@kernel])
    /// and/or type (the pipeline type, docker when empty)
    #[arg(long, env = "METRICS_EXTRA_DIMENSIONS", value_name = "platform,type")]
    pub extra_dimensions: Option<String>,

    /// Groups that publish every metric every poll, zeros included, e.g.
    /// 'class=gpu,os=linux;class=standard,os=linux'
    #[arg(long, env = "METRICS_KNOWN_GROUPS", value_name = "GROUPS")]
    pub known_groups: Option<String>,

    /// Read the queue and print what would be published; sends nothing to
    /// CloudWatch, and needs no AWS credentials unless the token is kept in
    /// AWS
    #[arg(long)]
    pub dry_run: bool,

    /// How the dry run prints what would be published: table or json
    #[arg(long, value_name = "FORMAT", default_value = "table")]
    pub output: String,

    /// Log format, text or json; the default is JSON inside Lambda and text
    /// elsewhere
    #[arg(long, env = "LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Keep running and poll on this cadence (e.g. 15s, 1m; at least 1s)
    /// until SIGTERM or SIGINT; without it, poll once and exit
    #[arg(long, env = "POLL_INTERVAL", value_name = "DURATION")]
    pub interval: Option<String>,

    /// Where metrics go, a comma list of cloudwatch, emf, prometheus and
    /// stdout [default: cloudwatch]
    #[arg(long, env = "METRICS_SINKS", value_name = "SINKS")]
    pub sinks: Option<String>,

    /// Address the prometheus sink serves /metrics and /healthz on
    /// [default: 127.0.0.1:9464]
    #[arg(long, env = "PROMETHEUS_LISTEN", value_name = "ADDRESS")]
    pub prometheus_listen: Option<String>,

    /// Publish CloudWatch and EMF points with one-second storage resolution
    /// (true or false); worth it with an interval under a minute
    #[arg(
        long,
        env = "CLOUDWATCH_HIGH_RESOLUTION",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub high_resolution: Option<String>,

    /// Protect instances of these Auto Scaling groups (comma list) from
    /// scale-in while they run a build; no other group is ever touched
    #[arg(long = "protect-groups", env = "SCALE_IN_PROTECTION_GROUPS", value_name = "GROUPS")]
    pub protection_groups: Option<String>,

    /// How long an instance must be idle before its protection comes off
    /// [default: 2m]
    #[arg(
        long = "protect-idle-grace",
        env = "SCALE_IN_PROTECTION_IDLE_GRACE",
        value_name = "DURATION"
    )]
    pub protection_idle_grace: Option<String>,

    /// An EC2 tag whose value is the runner's name, for runners named
    /// neither by instance id nor by host name
    #[arg(long = "protect-name-tag", env = "SCALE_IN_PROTECTION_NAME_TAG", value_name = "TAG")]
    pub protection_name_tag: Option<String>,
}

/// The command line and environment as parsed, with the variables that
/// were left out because their value is not UTF-8: they are reported by
/// [`Config::from_parsed`] together with every other problem.
#[derive(Debug)]
pub struct Parsed {
    /// The flags and variables.
    pub args: Args,
    /// Variables set to something that is not UTF-8.
    pub not_utf8: Vec<&'static str>,
}

impl Args {
    /// Parses the process's arguments and environment. The parser would
    /// stop at the first variable that is not UTF-8 and would not even name
    /// it, so such variables are taken out of parsing and kept for the
    /// report.
    ///
    /// # Errors
    ///
    /// The parser's error for a flag it refuses.
    pub fn parse_env() -> Result<Parsed, clap::Error> {
        let not_utf8: Vec<&'static str> = VARIABLES
            .into_iter()
            .filter(|v| std::env::var_os(v).is_some_and(|value| value.to_str().is_none()))
            .collect();
        let mut command = Args::command();
        for variable in &not_utf8 {
            let ids: Vec<String> = command
                .get_arguments()
                .filter(|arg| arg.get_env().is_some_and(|env| env == *variable))
                .map(|arg| arg.get_id().to_string())
                .collect();
            for id in ids {
                command = command.mut_arg(id, |arg| arg.env(None::<&'static str>));
            }
        }
        let args = Args::from_arg_matches(&command.try_get_matches()?)?;
        Ok(Parsed { args, not_utf8 })
    }

    /// The log format asked for, if it is a valid one; an invalid one is
    /// reported by [`Config::from_args`], after logging has started.
    pub fn log_format(&self) -> Option<LogFormat> {
        match self.log_format.as_deref().map(|f| f.trim().to_ascii_lowercase()).as_deref() {
            Some("text") => Some(LogFormat::Text),
            Some("json") => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Output of a dry run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A table for people
    Table,
    /// One JSON document for programs
    Json,
}

/// Format of the log lines written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Plain text, one line per event
    Text,
    /// One JSON object per line (what CloudWatch Logs can query)
    Json,
}

/// The Drone token. Its `Debug` never shows the value, so a `{:?}` of any
/// structure that holds it is safe to log.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token; surrounding white space (a newline from a file) is
    /// dropped.
    pub fn new(raw: &str) -> Token {
        Token(raw.trim().to_string())
    }

    /// The token itself, for the one place that needs it: the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces every occurrence of the token in `text` (a server or proxy
    /// may echo request headers back in an error page). The token is also
    /// looked for in the forms an echo or a message may have put it in:
    /// escaped for JSON, HTML or Rust's `{:?}`, or percent-encoded.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for form in self.forms() {
            if out.contains(&form) {
                out = out.replace(&form, "[redacted]");
            }
        }
        out
    }

    /// The token as written in each escaping, longest first, so that an
    /// escaped form is replaced whole before a shorter form could match
    /// inside it.
    fn forms(&self) -> Vec<String> {
        let raw = self.0.as_str();
        if raw.is_empty() {
            return Vec::new();
        }
        let json = serde_json::to_string(raw)
            .map_or_else(|_| raw.to_string(), |quoted| quoted[1..quoted.len() - 1].to_string());
        // `printable` escapes char by char (quotes included); `{:?}` of a
        // string leaves single quotes alone.
        let escaped: String = raw.chars().flat_map(char::escape_debug).collect();
        let debug = format!("{raw:?}");
        let debug = debug[1..debug.len() - 1].to_string();
        let html = raw
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;");
        let html_hex = html.replace("&#39;", "&#x27;");
        // Go's HTML escaper writes the double quote as &#34;, and its JSON
        // encoder escapes <, > and & as \u003c, \u003e and \u0026.
        let html_go = html.replace("&quot;", "&#34;");
        let json_go = json.replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026");
        // TODO(#2): mixed-case percent escapes (`%2f%5C`) are not found:
        // listing every casing grows exponentially with the token's special
        // characters, and a case-blind match needs a search of its own.
        let percent = |upper: bool| -> String {
            raw.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        char::from(b).to_string()
                    }
                    _ if upper => format!("%{b:02X}"),
                    _ => format!("%{b:02x}"),
                })
                .collect()
        };
        let mut forms = vec![
            raw.to_string(),
            json,
            escaped,
            debug,
            html,
            html_hex,
            html_go,
            json_go,
            percent(true),
            percent(false),
        ];
        forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        forms
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// Where the Drone token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `DRONE_TOKEN` (or `--drone-token`) itself.
    Given(Token),
    /// An SSM Parameter Store parameter, by name or ARN.
    SsmParameter(String),
    /// A Secrets Manager secret, by name or ARN; with a key, the secret is a
    /// JSON object and the token is that key's value.
    Secret {
        /// The secret's name or ARN.
        id: String,
        /// The JSON key holding the token.
        key: Option<String>,
    },
}

impl TokenSource {
    /// The token, when it was given rather than to be read from AWS.
    pub fn given(&self) -> Option<&Token> {
        match self {
            TokenSource::Given(token) => Some(token),
            _ => None,
        }
    }

    /// The variable that names the source, for messages.
    pub fn variable(&self) -> (&'static str, &'static str) {
        match self {
            TokenSource::Given(_) => ("DRONE_TOKEN", "--drone-token"),
            TokenSource::SsmParameter(_) => {
                ("DRONE_TOKEN_SSM_PARAMETER", "--drone-token-ssm-parameter")
            }
            TokenSource::Secret { .. } => ("DRONE_TOKEN_SECRET_ID", "--drone-token-secret-id"),
        }
    }
}

/// Where the token is, never the token itself.
impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |text: &str| crate::drone::printable(text, 300);
        match self {
            TokenSource::Given(_) => f.write_str("DRONE_TOKEN"),
            TokenSource::SsmParameter(name) => write!(f, "SSM parameter {}", shown(name)),
            TokenSource::Secret { id, key: None } => {
                write!(f, "Secrets Manager secret {}", shown(id))
            }
            TokenSource::Secret { id, key: Some(key) } => {
                write!(f, "key {:?} of Secrets Manager secret {}", shown(key), shown(id))
            }
        }
    }
}

/// Checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL of the Drone server, without a trailing slash.
    pub drone_server: Url,
    /// Admin token for the queue API, or where to read it.
    pub drone_token: TokenSource,
    /// CloudWatch namespace.
    pub namespace: String,
    /// Upper bound for reading the queue.
    pub drone_timeout: Duration,
    /// How stages are grouped into dimension sets.
    pub grouping: Grouping,
    /// Print instead of publishing.
    pub dry_run: bool,
    /// Dry-run output format.
    pub output: OutputFormat,
    /// Poll on this cadence until stopped; `None` polls once.
    pub interval: Option<Duration>,
    /// Where metrics go; only `stdout` in a dry run.
    pub sinks: SinkSet,
    /// Address of the Prometheus endpoint.
    pub prometheus_listen: SocketAddr,
    /// Storage resolution of CloudWatch and EMF points.
    pub resolution: Resolution,
    /// Scale-in protection, when groups are named.
    pub protection: Option<ProtectionConfig>,
}

impl Config {
    /// The settings that hold `token`: each would publish or log it. The
    /// same check as for `DRONE_TOKEN`, for a token read later from AWS.
    pub fn values_holding(&self, token: &Token) -> Vec<ConfigProblem> {
        let holds = |value: &str| token.redact(value) != value;
        let mut problems = Vec::new();
        let mut found = |variable, flag| {
            problems.push(ConfigProblem {
                variable,
                flag,
                message: "contains the Drone token read from AWS; the token belongs only in \
                          the parameter or secret"
                    .into(),
            });
        };
        if holds(self.drone_server.as_str()) {
            found("DRONE_SERVER", "--drone-server");
        }
        if holds(&self.namespace) {
            found("CLOUDWATCH_METRICS_NAMESPACE", "--namespace");
        }
        if self.grouping.label_keys.iter().flatten().any(|k| holds(k)) {
            found("METRICS_LABEL_KEYS", "--label-keys");
        }
        if self.grouping.known.iter().flat_map(|g| g.0.iter()).any(|(k, v)| holds(k) || holds(v)) {
            found("METRICS_KNOWN_GROUPS", "--known-groups");
        }
        problems
    }

    /// What runs: `daemon` with an interval, `cli` without.
    pub fn mode(&self) -> &'static str {
        if self.interval.is_some() { "daemon" } else { "cli" }
    }
}

/// One thing wrong with the configuration, naming the variable and flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The environment variable.
    pub variable: &'static str,
    /// The equivalent flag.
    pub flag: &'static str,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.flag == self.variable {
            write!(f, "{}: {}", self.variable, self.message)
        } else {
            write!(f, "{} ({}): {}", self.variable, self.flag, self.message)
        }
    }
}

/// Every problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} configuration problem{}:", if n == 1 { "" } else { "s" })?;
        for problem in &self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Checks the flags and returns a config, or every problem at once.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] listing each variable that is missing or invalid.
    pub fn from_args(args: &Args) -> Result<Config, ConfigError> {
        // A value that is not UTF-8 reaches the checks with U+FFFD in it, so
        // that it is reported rather than silently skipped by the SDK.
        Config::check(args, &|name| {
            std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
        })
    }

    /// [`Config::from_args`], also reporting every variable that was not
    /// UTF-8 (in place of the "not set" it would otherwise look like).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] listing each variable that is missing or invalid.
    pub fn from_parsed(parsed: &Parsed) -> Result<Config, ConfigError> {
        let result = Config::from_args(&parsed.args);
        if parsed.not_utf8.is_empty() {
            return result;
        }
        let mut problems = result.err().map(|e| e.0).unwrap_or_default();
        problems.retain(|p| !parsed.not_utf8.contains(&p.variable));
        for variable in &parsed.not_utf8 {
            problems.push(ConfigProblem {
                variable,
                flag: variable,
                message: NOT_UTF8.to_string(),
            });
        }
        Err(ConfigError(problems))
    }

    /// [`Config::from_args`], with the environment the AWS SDK will read
    /// given by `env`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] listing each variable that is missing or invalid.
    pub fn check(args: &Args, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut problem = |variable, flag, message: String| {
            problems.push(ConfigProblem { variable, flag, message });
        };

        let drone_server = match args.drone_server.as_deref().map(str::trim) {
            None | Some("") => {
                problem(
                    "DRONE_SERVER",
                    "--drone-server",
                    "not set; set it to the base URL of the Drone server, \
                     e.g. https://drone.example.com"
                        .into(),
                );
                None
            }
            Some(raw) => match parse_server_url(raw) {
                Ok(url) => Some(url),
                Err(why) => {
                    problem("DRONE_SERVER", "--drone-server", why);
                    None
                }
            },
        };

        let drone_token = check_token_source(args, env, &mut problem);

        let in_lambda = env("AWS_LAMBDA_RUNTIME_API").is_some();
        let interval = check_interval(args, in_lambda, &mut problem);
        let sinks = check_sinks(args, env, in_lambda, interval.is_some(), &mut problem);

        // Only Prometheus does without a namespace.
        let needs_namespace = sinks.iter().any(|k| k != SinkKind::Prometheus);
        let namespace = match args.namespace.as_deref() {
            None | Some("") if !needs_namespace => Some(String::new()),
            None | Some("") => {
                problem(
                    "CLOUDWATCH_METRICS_NAMESPACE",
                    "--namespace",
                    "not set; set it to the CloudWatch namespace your alarms use, e.g. Drone"
                        .into(),
                );
                None
            }
            Some(ns) => match check_namespace(ns) {
                Ok(()) => Some(ns.to_string()),
                Err(why) => {
                    problem("CLOUDWATCH_METRICS_NAMESPACE", "--namespace", why);
                    None
                }
            },
        };

        let timeout_text =
            if args.drone_timeout.trim().is_empty() { "10s" } else { &args.drone_timeout };
        let drone_timeout = match parse_duration(timeout_text) {
            Ok(d) if d < Duration::from_millis(1) || d > Duration::from_secs(900) => {
                problem(
                    "DRONE_TIMEOUT",
                    "--drone-timeout",
                    format!(
                        "{:?} is out of range; give a duration from 1ms to 15m, e.g. 10s",
                        args.drone_timeout
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(why) => {
                problem("DRONE_TIMEOUT", "--drone-timeout", why);
                None
            }
        };

        let mut grouping = Grouping::default();
        if let Some(raw) = args.label_keys.as_deref().filter(|r| !r.trim().is_empty()) {
            match grouping::parse_label_keys(raw) {
                Ok(keys) => grouping.label_keys = Some(keys),
                Err(why) => problem("METRICS_LABEL_KEYS", "--label-keys", why),
            }
        }
        if let Some(raw) = args.extra_dimensions.as_deref() {
            match grouping::parse_extra_dimensions(raw) {
                Ok((platform, pipeline_type)) => {
                    grouping.platform = platform;
                    grouping.pipeline_type = pipeline_type;
                }
                Err(why) => problem("METRICS_EXTRA_DIMENSIONS", "--extra-dimensions", why),
            }
        }
        if let Some(raw) = args.known_groups.as_deref().filter(|r| !r.trim().is_empty()) {
            match grouping::parse_known_groups(raw, &grouping) {
                Ok(known) => grouping.known = known,
                Err(whys) => {
                    for why in whys {
                        problem("METRICS_KNOWN_GROUPS", "--known-groups", why);
                    }
                }
            }
        }

        let output = match args.output.trim().to_ascii_lowercase().as_str() {
            "table" => OutputFormat::Table,
            "json" => OutputFormat::Json,
            _ => {
                problem(
                    "--output",
                    "--output",
                    format!("{:?} is not a format; use table or json", args.output),
                );
                OutputFormat::Table
            }
        };
        if args.log_format.is_some() && args.log_format().is_none() {
            problem(
                "LOG_FORMAT",
                "--log-format",
                format!(
                    "{:?} is not a log format; use text or json",
                    args.log_format.as_deref().unwrap_or("")
                ),
            );
        }
        let prometheus_listen = match args.prometheus_listen.as_deref().map(str::trim) {
            None | Some("") => DEFAULT_PROMETHEUS_LISTEN.parse().ok(),
            Some(raw) => match raw.parse::<SocketAddr>() {
                Ok(address) => Some(address),
                Err(_) => {
                    problem(
                        "PROMETHEUS_LISTEN",
                        "--prometheus-listen",
                        format!(
                            "{raw:?} is not an IP address and port; write e.g. 127.0.0.1:9464, \
                             or 0.0.0.0:9464 to accept scrapes from other hosts"
                        ),
                    );
                    None
                }
            },
        };
        let resolution = match args.high_resolution.as_deref().map(parse_bool) {
            None | Some(Some(false)) => Resolution::Standard,
            Some(Some(true)) => Resolution::High,
            Some(None) => {
                problem(
                    "CLOUDWATCH_HIGH_RESOLUTION",
                    "--high-resolution",
                    format!(
                        "{:?} is not true or false",
                        args.high_resolution.as_deref().unwrap_or("")
                    ),
                );
                Resolution::Standard
            }
        };
        let protection = check_protection(args, &mut problem);
        // Only PutMetricData, protection and a token kept in AWS use the AWS
        // SDK; EMF lines need no AWS set-up. A dry run still reads such a
        // token.
        let token_in_aws = drone_token.as_ref().is_some_and(|t| t.given().is_none());
        if sinks.has(SinkKind::CloudWatch) || protection.is_some() || token_in_aws {
            for (variable, why) in aws_problems(env) {
                problem(variable, "read by the AWS SDK", why);
            }
        }

        // Values that end up in metrics or on standard output must not carry
        // the token (pasted into the wrong variable, say); and no message
        // about any value may repeat it.
        if let Some(TokenSource::Given(token)) = &drone_token {
            for (variable, flag, value) in [
                ("CLOUDWATCH_METRICS_NAMESPACE", "--namespace", &args.namespace),
                ("METRICS_LABEL_KEYS", "--label-keys", &args.label_keys),
                ("METRICS_KNOWN_GROUPS", "--known-groups", &args.known_groups),
            ] {
                if value.as_deref().is_some_and(|v| token.redact(v) != v) {
                    problem(
                        variable,
                        flag,
                        "contains the Drone token; the token belongs in DRONE_TOKEN only".into(),
                    );
                }
            }
        }
        if let Some(token) = args.drone_token.as_deref().map(Token::new) {
            for p in &mut problems {
                p.message = token.redact(&p.message);
            }
        }

        match (drone_server, drone_token, namespace, drone_timeout, prometheus_listen) {
            (
                Some(drone_server),
                Some(drone_token),
                Some(namespace),
                Some(drone_timeout),
                Some(prometheus_listen),
            ) if problems.is_empty() => Ok(Config {
                drone_server,
                drone_token,
                namespace,
                drone_timeout,
                grouping,
                dry_run: args.dry_run,
                output,
                interval,
                sinks,
                prometheus_listen,
                resolution,
                protection,
            }),
            _ => Err(ConfigError(problems)),
        }
    }
}

type Problem<'a> = dyn FnMut(&'static str, &'static str, String) + 'a;

/// The variables and flags that say where the token is.
const TOKEN_SOURCES: [(&str, &str); 3] = [
    ("DRONE_TOKEN", "--drone-token"),
    ("DRONE_TOKEN_SSM_PARAMETER", "--drone-token-ssm-parameter"),
    ("DRONE_TOKEN_SECRET_ID", "--drone-token-secret-id"),
];

/// Where the token comes from: exactly one of `DRONE_TOKEN`,
/// `DRONE_TOKEN_SSM_PARAMETER` and `DRONE_TOKEN_SECRET_ID`, the key only
/// with the secret. A token given outright is checked here; one kept in AWS
/// is checked the same way once read.
fn check_token_source(
    args: &Args,
    env: &dyn Fn(&str) -> Option<String>,
    problem: &mut Problem<'_>,
) -> Option<TokenSource> {
    // The parser leaves out a variable that is not UTF-8; it is still set,
    // and must not be reported as missing (nor silently ignored).
    let not_utf8 = |variable: &str| env(variable).is_some_and(|v| v.contains('\u{FFFD}'));
    // `None`: not set; `Some(None)`: set, but a problem was reported.
    let mut named =
        |value: &Option<String>, (variable, flag): (&'static str, &'static str)| match value
            .as_deref()
            .map(str::trim)
        {
            None if not_utf8(variable) => {
                problem(variable, flag, NOT_UTF8.to_string());
                Some(None)
            }
            None => None,
            Some("") => {
                problem(variable, flag, "is empty; set it, or unset it".to_string());
                Some(None)
            }
            Some(value) => Some(Some(value.to_string())),
        };
    let [given_names, ssm_names, secret_names] = TOKEN_SOURCES;
    let ssm = named(&args.drone_token_ssm_parameter, ssm_names);
    let secret = named(&args.drone_token_secret_id, secret_names);
    let key =
        named(&args.drone_token_secret_key, ("DRONE_TOKEN_SECRET_KEY", "--drone-token-secret-key"));
    // Names and ARNs of parameters and secrets are printable ASCII; a space
    // or a control character is a copy-and-paste accident.
    for (value, (variable, flag)) in [(&ssm, ssm_names), (&secret, secret_names)] {
        if let Some(Some(value)) = value
            && !value.bytes().all(|b| b.is_ascii_graphic())
        {
            problem(
                variable,
                flag,
                format!(
                    "{:?} contains spaces, control characters or non-ASCII characters, which \
                     no parameter or secret name or ARN has",
                    crate::drone::printable(value, 100)
                ),
            );
        }
    }

    let given = args.drone_token.as_deref().map(Token::new);
    let set: Vec<(&str, &str)> = [
        (given.is_some() || not_utf8(given_names.0), given_names),
        (ssm.is_some(), ssm_names),
        (secret.is_some(), secret_names),
    ]
    .into_iter()
    .filter_map(|(set, names)| set.then_some(names))
    .collect();
    if key.is_some() && secret.is_none() {
        problem(
            "DRONE_TOKEN_SECRET_KEY",
            "--drone-token-secret-key",
            "is set but DRONE_TOKEN_SECRET_ID is not; the key picks the token out of a \
             secret's JSON: set DRONE_TOKEN_SECRET_ID too, or unset DRONE_TOKEN_SECRET_KEY"
                .into(),
        );
    }
    match set.as_slice() {
        [] => {
            problem(
                given_names.0,
                given_names.1,
                "not set; set it to the API token of a Drone admin (shown on the account page \
                 of the Drone UI), or keep the token in AWS and set DRONE_TOKEN_SSM_PARAMETER \
                 or DRONE_TOKEN_SECRET_ID instead"
                    .into(),
            );
            return None;
        }
        [_] => {}
        [first @ .., (variable, flag)] => {
            let others: Vec<&str> = first.iter().map(|(variable, _)| *variable).collect();
            problem(
                variable,
                flag,
                format!(
                    "is set together with {}; the token comes from one place only: set just \
                     one of DRONE_TOKEN, DRONE_TOKEN_SSM_PARAMETER and DRONE_TOKEN_SECRET_ID",
                    others.join(" and ")
                ),
            );
            return None;
        }
    }

    if let Some(token) = given {
        return match check_token(&token) {
            Ok(()) => Some(TokenSource::Given(token)),
            Err(why) => {
                problem(given_names.0, given_names.1, why);
                None
            }
        };
    }
    let valid = |name: &Option<String>| {
        name.as_ref().filter(|n| n.bytes().all(|b| b.is_ascii_graphic())).cloned()
    };
    if let Some(name) = ssm {
        return valid(&name).map(TokenSource::SsmParameter);
    }
    let id = valid(&secret?)?;
    match key {
        None => Some(TokenSource::Secret { id, key: None }),
        Some(Some(key)) => Some(TokenSource::Secret { id, key: Some(key) }),
        Some(None) => None,
    }
}

/// `POLL_INTERVAL`: from 1 s to a day, and not in Lambda, where the
/// schedule that invokes the function is the interval.
fn check_interval(args: &Args, in_lambda: bool, problem: &mut Problem<'_>) -> Option<Duration> {
    let raw = args.interval.as_deref().map(str::trim).filter(|r| !r.is_empty())?;
    if in_lambda {
        problem(
            "POLL_INTERVAL",
            "--interval",
            "is not used in Lambda, where the schedule that invokes the function sets the \
             cadence; unset it, or run the daemon outside Lambda"
                .into(),
        );
        return None;
    }
    match parse_duration(raw) {
        Ok(d) if (MIN_INTERVAL..=MAX_INTERVAL).contains(&d) => Some(d),
        Ok(_) => {
            problem(
                "POLL_INTERVAL",
                "--interval",
                format!("{raw:?} is out of range; give a duration from 1s to 24h, e.g. 15s"),
            );
            None
        }
        Err(why) => {
            problem("POLL_INTERVAL", "--interval", why);
            None
        }
    }
}

/// `METRICS_SINKS`, and whether the sinks fit the mode. A dry run prints
/// and publishes nothing, whatever the list says (it is still checked).
fn check_sinks(
    args: &Args,
    env: &dyn Fn(&str) -> Option<String>,
    in_lambda: bool,
    daemon: bool,
    problem: &mut Problem<'_>,
) -> SinkSet {
    // The parser drops an empty variable; an empty list is still a mistake.
    let raw = args.sinks.clone().or_else(|| env("METRICS_SINKS"));
    let sinks = match raw.as_deref().map(parse_sinks) {
        None => SinkSet::default(),
        Some(Ok(sinks)) => sinks,
        Some(Err(whys)) => {
            for why in whys {
                problem("METRICS_SINKS", "--sinks", why);
            }
            SinkSet::default()
        }
    };
    if args.dry_run {
        return SinkSet::only(SinkKind::Stdout);
    }
    if sinks.has(SinkKind::Prometheus) && in_lambda {
        problem(
            "METRICS_SINKS",
            "--sinks",
            "prometheus needs a long-running process to serve its endpoint, which Lambda is \
             not; use cloudwatch or emf in Lambda"
                .into(),
        );
    } else if sinks.has(SinkKind::Prometheus) && !daemon {
        problem(
            "METRICS_SINKS",
            "--sinks",
            "prometheus serves its endpoint only while the program runs, and without \
             POLL_INTERVAL (--interval) it polls once and exits; set POLL_INTERVAL, e.g. 15s"
                .into(),
        );
    }
    sinks
}

/// Grace period unless `SCALE_IN_PROTECTION_IDLE_GRACE` says otherwise: a
/// runner between two builds of a busy queue is idle for seconds, not
/// minutes.
pub const DEFAULT_IDLE_GRACE: Duration = Duration::from_secs(120);

/// Most groups `SCALE_IN_PROTECTION_GROUPS` may name.
const MAX_PROTECTED_GROUPS: usize = 100;

/// `SCALE_IN_PROTECTION_*`: the groups, the grace period and the name tag.
fn check_protection(args: &Args, problem: &mut Problem<'_>) -> Option<ProtectionConfig> {
    const GROUPS: &str = "SCALE_IN_PROTECTION_GROUPS";
    let raw = args.protection_groups.as_deref().filter(|r| !r.trim().is_empty());
    let Some(raw) = raw else {
        for (variable, flag, value) in [
            ("SCALE_IN_PROTECTION_IDLE_GRACE", "--protect-idle-grace", &args.protection_idle_grace),
            ("SCALE_IN_PROTECTION_NAME_TAG", "--protect-name-tag", &args.protection_name_tag),
        ] {
            if value.as_deref().is_some_and(|v| !v.trim().is_empty()) {
                problem(
                    variable,
                    flag,
                    format!(
                        "is set but {GROUPS} is not, so nothing would be protected; set {GROUPS} to the Auto Scaling groups of the runners"
                    ),
                );
            }
        }
        return None;
    };
    let mut ok = true;
    let mut groups: Vec<String> = Vec::new();
    for item in raw.split(',').map(str::trim) {
        if item.is_empty() && !ok {
            // Said once is enough.
        } else if item.is_empty() {
            problem(GROUPS, "--protect-groups", "has an empty item; write group names separated by single commas, e.g. drone-standard,drone-gpu".into());
            ok = false;
        } else if item.len() > 255 || item.chars().any(char::is_control) {
            problem(
                GROUPS,
                "--protect-groups",
                format!(
                    "{:?} is not an Auto Scaling group name (1 to 255 characters, no control characters)",
                    crate::drone::printable(item, 60)
                ),
            );
            ok = false;
        } else if item.starts_with("arn:") {
            problem(
                GROUPS,
                "--protect-groups",
                format!(
                    "{:?} is an ARN; give the group's name (what follows \
                     autoScalingGroupName/), e.g. drone-standard",
                    crate::drone::printable(item, 100)
                ),
            );
            ok = false;
        } else if groups.iter().any(|g| g == item) {
            problem(GROUPS, "--protect-groups", format!("names {item:?} twice"));
            ok = false;
        } else {
            groups.push(item.to_string());
        }
    }
    if groups.len() > MAX_PROTECTED_GROUPS {
        problem(
            GROUPS,
            "--protect-groups",
            format!("names {} groups; at most {MAX_PROTECTED_GROUPS} are supported", groups.len()),
        );
        ok = false;
    }
    let idle_grace =
        match args.protection_idle_grace.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            None => DEFAULT_IDLE_GRACE,
            Some(raw) => match parse_duration(raw) {
                Ok(d) if d <= MAX_INTERVAL => d,
                Ok(_) => {
                    problem(
                        "SCALE_IN_PROTECTION_IDLE_GRACE",
                        "--protect-idle-grace",
                        format!("{raw:?} is out of range; give a duration from 0s to 24h, e.g. 2m"),
                    );
                    ok = false;
                    DEFAULT_IDLE_GRACE
                }
                Err(why) => {
                    problem("SCALE_IN_PROTECTION_IDLE_GRACE", "--protect-idle-grace", why);
                    ok = false;
                    DEFAULT_IDLE_GRACE
                }
            },
        };
    let name_tag =
        match args.protection_name_tag.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
            None => None,
            Some(tag) if tag.len() > 128 || tag.chars().any(char::is_control) => {
                problem(
                    "SCALE_IN_PROTECTION_NAME_TAG",
                    "--protect-name-tag",
                    "is not an EC2 tag key (1 to 128 characters, no control characters)".into(),
                );
                ok = false;
                None
            }
            Some(tag) => Some(tag.to_string()),
        };
    ok.then_some(ProtectionConfig { groups, idle_grace, name_tag })
}

/// `true`/`false` and the usual spellings of yes and no.
fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Accepts an http(s) base URL; the path may carry a prefix (a Drone behind
/// a reverse proxy under `/drone`), but not the API path itself.
fn parse_server_url(raw: &str) -> Result<Url, String> {
    // The value itself is never repeated: a mistyped URL can hold a token.
    let url = Url::parse(raw).map_err(|e| {
        format!("is not a URL ({e}); give the base URL, e.g. https://drone.example.com")
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("must start with https:// or http://".to_string());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host name".to_string());
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in the URL would end up in every log line naming it.
        return Err(
            "must not contain a user name or password; put the token in DRONE_TOKEN".to_string()
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query string or fragment; \
                    put the token in DRONE_TOKEN"
            .to_string());
    }
    let path = url.path().trim_end_matches('/').to_string();
    if path.ends_with("/api") || path.ends_with("/api/queue") {
        return Err(format!(
            "should be the server's base URL without the API path; drop the trailing {:?}",
            &path[path.rfind("/api").unwrap_or(0)..]
        ));
    }
    let mut url = url;
    url.set_path(&path);
    Ok(url)
}

/// Whether `token` can be a Drone API token.
///
/// # Errors
///
/// What is wrong with it (never the token itself), to follow the name of
/// where it came from.
pub fn check_token(token: &Token) -> Result<(), String> {
    let value = token.expose();
    if value.is_empty() {
        return Err("is empty; set it to the API token of a Drone admin".into());
    }
    // Drone's tokens are 32 characters. A much shorter value is a mistake,
    // and blanking it out of messages would garble them.
    if value.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "is {} characters long, too short for a Drone API token (they have 32); \
             copy the token again from the Drone UI",
            value.len()
        ));
    }
    // An HTTP header carries visible ASCII only; a token with anything else
    // cannot be sent and usually means a copy-and-paste accident.
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("contains spaces, control characters or non-ASCII characters; \
                    copy the token again from the Drone UI"
            .into());
    }
    Ok(())
}

/// The AWS SDK settings that it would only refuse later, halfway through a
/// poll, or that make it panic: an empty or malformed endpoint, an empty
/// region, a retry setting it cannot parse.
fn aws_problems(env: &dyn Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    // The SDK skips a value that is not UTF-8 as if it were not set, which
    // for AWS_ENDPOINT_URL would send the metrics to AWS itself.
    for variable in [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_CLOUDWATCH",
        "AWS_ENDPOINT_URL_AUTO_SCALING",
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ENDPOINT_URL_SSM",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_MAX_ATTEMPTS",
        "AWS_RETRY_MODE",
    ] {
        if env(variable).is_some_and(|value| value.contains('\u{FFFD}')) {
            problems.push((variable, NOT_UTF8.to_string()));
        }
    }
    let env = |name: &str| env(name).filter(|value| !value.contains('\u{FFFD}'));
    for variable in [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_CLOUDWATCH",
        "AWS_ENDPOINT_URL_AUTO_SCALING",
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ENDPOINT_URL_SSM",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    ] {
        let Some(value) = env(variable) else { continue };
        if !is_http_url(&value) {
            problems.push((
                variable,
                "is set but is not an http(s) URL (e.g. http://127.0.0.1:4566); \
                 unset it to use AWS's own endpoint"
                    .to_string(),
            ));
        }
    }
    for variable in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        let Some(value) = env(variable) else { continue };
        if !is_region_name(&value) {
            problems
                .push((variable, "is set but is not a region name such as us-east-1".to_string()));
        }
    }
    if let Some(value) = env("AWS_MAX_ATTEMPTS")
        && value.parse::<u32>().ok().is_none_or(|n| n == 0)
    {
        problems
            .push(("AWS_MAX_ATTEMPTS", "must be a whole number from 1 to 4294967295".to_string()));
    }
    if let Some(value) = env("AWS_RETRY_MODE") {
        // Not trimmed: the SDK refuses surrounding spaces (by panicking).
        let mode = value.to_ascii_lowercase();
        if mode != "standard" && mode != "adaptive" {
            problems.push(("AWS_RETRY_MODE", "must be standard or adaptive".to_string()));
        }
    }
    problems
}

/// Whether an AWS endpoint setting is an absolute http(s) URL with a host,
/// without surrounding spaces: what the SDK parses without panicking.
pub fn is_http_url(text: &str) -> bool {
    text.trim() == text
        && Url::parse(text)
            .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
}

/// Whether an AWS region setting looks like a region name (`us-east-1`).
pub fn is_region_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// CloudWatch's rules for a namespace (facts §3.1).
fn check_namespace(ns: &str) -> Result<(), String> {
    if ns.len() > 255 {
        return Err(format!("is {} characters long; CloudWatch allows at most 255", ns.len()));
    }
    if !ns.is_ascii() || ns.chars().any(|c| c.is_ascii_control()) {
        return Err(format!(
            "{:?} must be printable ASCII (CloudWatch refuses other characters)",
            ns.escape_debug().to_string()
        ));
    }
    if ns.trim().is_empty() {
        return Err("is only white space".into());
    }
    if ns.trim() != ns {
        return Err(format!(
            "{ns:?} starts or ends with a space, which would make it a different namespace \
             from the one your alarms use"
        ));
    }
    if ns.starts_with(':') {
        return Err(format!("{ns:?} must not start with ':'"));
    }
    if ns.starts_with("AWS/") {
        return Err(format!("{ns:?} must not start with AWS/, which is reserved for AWS services"));
    }
    Ok(())
}

/// Parses `10s`, `1500ms`, `2m`, `1h`, or a bare number of seconds.
///
/// # Errors
///
/// A message naming the value when it is not a duration.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let text = raw.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("{raw:?} is not a duration; write e.g. 10s, 1500ms or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!("{raw:?} has an unknown unit {other:?}; use ms, s, m or h"));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{raw:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(server: Option<&str>, token: Option<&str>, ns: Option<&str>) -> Args {
        Args {
            drone_server: server.map(String::from),
            drone_token: token.map(String::from),
            drone_token_ssm_parameter: None,
            drone_token_secret_id: None,
            drone_token_secret_key: None,
            namespace: ns.map(String::from),
            drone_timeout: "10s".into(),
            label_keys: None,
            extra_dimensions: None,
            known_groups: None,
            dry_run: false,
            output: "table".into(),
            log_format: None,
            interval: None,
            sinks: None,
            prometheus_listen: None,
            high_resolution: None,
            protection_groups: None,
            protection_idle_grace: None,
            protection_name_tag: None,
        }
    }

    fn protection_args(groups: Option<&str>, grace: Option<&str>, tag: Option<&str>) -> Args {
        let mut a =
            args(Some("https://drone.example.com"), Some("0123456789abcdef"), Some("Drone"));
        a.protection_groups = groups.map(String::from);
        a.protection_idle_grace = grace.map(String::from);
        a.protection_name_tag = tag.map(String::from);
        a
    }

    #[test]
    fn protection_takes_the_named_groups_a_grace_period_and_a_tag() {
        let config =
            check(&protection_args(Some(" drone-standard , drone-gpu"), None, None)).unwrap();
        assert_eq!(
            config.protection,
            Some(ProtectionConfig {
                groups: vec!["drone-standard".into(), "drone-gpu".into()],
                idle_grace: Duration::from_secs(120),
                name_tag: None,
            })
        );
        let config =
            check(&protection_args(Some("workers"), Some("30s"), Some("RunnerName"))).unwrap();
        let protection = config.protection.unwrap();
        assert_eq!(protection.idle_grace, Duration::from_secs(30));
        assert_eq!(protection.name_tag.as_deref(), Some("RunnerName"));
        let zero = check(&protection_args(Some("workers"), Some("0s"), None)).unwrap();
        assert_eq!(zero.protection.unwrap().idle_grace, Duration::ZERO);
        assert_eq!(check(&protection_args(None, None, None)).unwrap().protection, None);
    }

    #[test]
    fn protection_problems_are_each_named() {
        // (groups, grace, tag, the variable blamed, what its message says)
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, &'a str, &'a str);
        let cases: &[Case<'_>] = &[
            (Some("a,,b"), None, None, "SCALE_IN_PROTECTION_GROUPS", "empty item"),
            (Some(",,"), None, None, "SCALE_IN_PROTECTION_GROUPS", "empty item"),
            (
                Some("arn:aws:autoscaling:us-east-1:1:autoScalingGroup:x:autoScalingGroupName/w"),
                None,
                None,
                "SCALE_IN_PROTECTION_GROUPS",
                "is an ARN; give the group's name",
            ),
            (Some("a,b,a"), None, None, "SCALE_IN_PROTECTION_GROUPS", "names \"a\" twice"),
            (
                Some("a\tb"),
                None,
                None,
                "SCALE_IN_PROTECTION_GROUPS",
                "not an Auto Scaling group name",
            ),
            (Some("a"), Some("25h"), None, "SCALE_IN_PROTECTION_IDLE_GRACE", "out of range"),
            (Some("a"), Some("soon"), None, "SCALE_IN_PROTECTION_IDLE_GRACE", "soon"),
            (
                None,
                Some("5m"),
                None,
                "SCALE_IN_PROTECTION_IDLE_GRACE",
                "SCALE_IN_PROTECTION_GROUPS is not",
            ),
            (
                None,
                None,
                Some("Name"),
                "SCALE_IN_PROTECTION_NAME_TAG",
                "SCALE_IN_PROTECTION_GROUPS is not",
            ),
        ];
        for (groups, grace, tag, variable, needle) in cases {
            let err = check(&protection_args(*groups, *grace, *tag)).unwrap_err();
            assert_eq!(variables(&err), [*variable], "{groups:?} {grace:?} {tag:?}: {err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
        let many: Vec<String> = (0..101).map(|i| format!("g{i}")).collect();
        let err = check(&protection_args(Some(&many.join(",")), None, None)).unwrap_err();
        assert!(err.to_string().contains("names 101 groups"), "{err}");
    }

    #[test]
    fn protection_reads_the_aws_settings_even_without_cloudwatch() {
        let mut a = protection_args(Some("workers"), None, None);
        a.sinks = Some("emf".into());
        let env = |name: &str| (name == "AWS_ENDPOINT_URL_EC2").then(|| "not a url".to_string());
        let err = Config::check(&a, &env).unwrap_err();
        assert_eq!(variables(&err), ["AWS_ENDPOINT_URL_EC2"]);
        a.protection_groups = None;
        assert!(Config::check(&a, &env).is_ok(), "without protection EMF needs no AWS");
    }

    /// Checks with an empty environment, whatever the machine's is.
    fn check(a: &Args) -> Result<Config, ConfigError> {
        Config::check(a, &|_| None)
    }

    fn variables(err: &ConfigError) -> Vec<&'static str> {
        err.0.iter().map(|p| p.variable).collect()
    }

    #[test]
    fn all_missing_variables_are_reported_together() {
        let err = check(&args(None, None, None)).unwrap_err();
        assert_eq!(
            variables(&err),
            ["DRONE_SERVER", "DRONE_TOKEN", "CLOUDWATCH_METRICS_NAMESPACE"]
        );
        assert!(err.to_string().starts_with("3 configuration problems:"), "{err}");
    }

    #[test]
    fn valid_configuration_is_accepted_and_normalised() {
        let cfg = check(&args(
            Some("https://drone.example.com/ci/"),
            Some("  abc12345\n"),
            Some("Drone"),
        ))
        .unwrap();
        assert_eq!(cfg.drone_server.as_str(), "https://drone.example.com/ci");
        assert_eq!(cfg.drone_token.given().map(Token::expose), Some("abc12345"));
        assert_eq!(cfg.drone_timeout, Duration::from_secs(10));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            (
                args(Some("drone.example.com"), Some("token-123"), Some("N")),
                "DRONE_SERVER",
                "not a URL",
            ),
            (args(Some("ftp://x"), Some("token-123"), Some("N")), "DRONE_SERVER", "https://"),
            (args(Some("https://u:p@x"), Some("token-123"), Some("N")), "DRONE_SERVER", "password"),
            (args(Some("https://x/api/"), Some("token-123"), Some("N")), "DRONE_SERVER", "/api"),
            (args(Some("https://x"), Some(" "), Some("N")), "DRONE_TOKEN", "empty"),
            (args(Some("https://x"), Some("token 123"), Some("N")), "DRONE_TOKEN", "spaces"),
            (
                args(Some("https://x"), Some("token-123"), Some(":N")),
                "CLOUDWATCH_METRICS_NAMESPACE",
                "':'",
            ),
            (
                args(Some("https://x"), Some("token-123"), Some("AWS/EC2")),
                "CLOUDWATCH_METRICS_NAMESPACE",
                "reserved",
            ),
            (
                args(Some("https://x"), Some("token-123"), Some("Zürich")),
                "CLOUDWATCH_METRICS_NAMESPACE",
                "ASCII",
            ),
            (
                args(Some("https://x"), Some("token-123"), Some("  ")),
                "CLOUDWATCH_METRICS_NAMESPACE",
                "white space",
            ),
        ];
        for (args, variable, needle) in cases {
            let err = check(&args).unwrap_err();
            assert_eq!(variables(&err), [variable], "{err}");
            assert!(err.to_string().contains(needle), "{err} should mention {needle}");
        }
    }

    #[test]
    fn aws_settings_the_sdk_would_choke_on_are_configuration_problems() {
        let a = args(Some("https://x"), Some("token-123"), Some("N"));
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        let err = Config::check(
            &a,
            &env(&[
                ("AWS_ENDPOINT_URL", ""),
                ("AWS_ENDPOINT_URL_CLOUDWATCH", "127.0.0.1:4566"),
                ("AWS_REGION", ""),
                ("AWS_MAX_ATTEMPTS", "0"),
                ("AWS_RETRY_MODE", "xyz"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            variables(&err),
            [
                "AWS_ENDPOINT_URL",
                "AWS_ENDPOINT_URL_CLOUDWATCH",
                "AWS_REGION",
                "AWS_MAX_ATTEMPTS",
                "AWS_RETRY_MODE"
            ]
        );
        let fine = env(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_MAX_ATTEMPTS", "3"),
            ("AWS_RETRY_MODE", "Standard"),
        ]);
        assert!(Config::check(&a, &fine).is_ok());
        // The SDK takes neither with spaces around it.
        let spaced =
            Config::check(&a, &env(&[("AWS_MAX_ATTEMPTS", " 3"), ("AWS_RETRY_MODE", "standard ")]))
                .unwrap_err();
        assert_eq!(variables(&spaced), ["AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"]);
        // A dry run uses no AWS at all, so it does not care.
        let mut dry = a;
        dry.dry_run = true;
        assert!(Config::check(&dry, &env(&[("AWS_ENDPOINT_URL", "")])).is_ok());
    }

    #[test]
    fn server_values_are_never_repeated() {
        for raw in ["https://tok-abc@x:443x", "https://x/?access_token=tok-abc", "tok-abc"] {
            let err = check(&args(Some(raw), Some("token-123"), Some("N"))).unwrap_err();
            assert_eq!(variables(&err), ["DRONE_SERVER"]);
            assert!(!err.to_string().contains("tok-abc"), "{err}");
        }
    }

    #[test]
    fn formats_are_checked_with_the_rest() {
        let mut a = args(None, Some("token-123"), Some("N"));
        a.output = "xml".into();
        a.log_format = Some("JSON ".into());
        assert_eq!(a.log_format(), Some(LogFormat::Json));
        a.log_format = Some("yaml".into());
        let err = check(&a).unwrap_err();
        assert_eq!(variables(&err), ["DRONE_SERVER", "--output", "LOG_FORMAT"]);
    }

    #[test]
    fn a_bad_token_is_never_echoed() {
        let err = check(&args(Some("https://x"), Some("sec ret"), Some("N"))).unwrap_err();
        assert!(!err.to_string().contains("sec ret"));
        assert_eq!(format!("{:?}", Token::new("s3cr3t")), "Token([redacted])");
    }

    #[test]
    fn grouping_options() {
        let mut a = args(Some("https://x"), Some("token-123"), Some("N"));
        a.label_keys = Some("class".into());
        a.extra_dimensions = Some("platform".into());
        a.known_groups = Some("class=gpu,platform=linux/amd64".into());
        let grouping = check(&a).unwrap().grouping;
        assert_eq!(grouping.label_keys, Some(["class".to_string()].into()));
        assert!(grouping.platform && !grouping.pipeline_type);
        assert_eq!(grouping.known.len(), 1);

        a.extra_dimensions = Some("arch".into());
        a.known_groups = Some("class=gpu;os=".into());
        let err = check(&a).unwrap_err();
        assert_eq!(variables(&err), ["METRICS_EXTRA_DIMENSIONS", "METRICS_KNOWN_GROUPS"], "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").unwrap_err().contains("unit"));
        let mut a = args(Some("https://x"), Some("token-123"), Some("N"));
        a.drone_timeout = "0s".into();
        assert_eq!(variables(&check(&a).unwrap_err()), ["DRONE_TIMEOUT"]);
    }

    /// Checks with only these variables set.
    fn check_env(a: &Args, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let pairs: Vec<(String, String)> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::check(a, &move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    fn valid() -> Args {
        args(Some("https://x"), Some("token-123"), Some("N"))
    }

    #[test]
    fn the_interval_starts_the_daemon_and_is_at_least_a_second() {
        let mut a = valid();
        assert_eq!(check(&a).unwrap().interval, None);
        assert_eq!(check(&a).unwrap().mode(), "cli");
        a.interval = Some("15s".into());
        let cfg = check(&a).unwrap();
        assert_eq!((cfg.interval, cfg.mode()), (Some(Duration::from_secs(15)), "daemon"));
        a.interval = Some("1".into());
        assert_eq!(check(&a).unwrap().interval, Some(Duration::from_secs(1)));
        for bad in ["0", "0s", "999ms", "-5s", "soon", "25h"] {
            a.interval = Some(bad.into());
            let err = check(&a).unwrap_err();
            assert_eq!(variables(&err), ["POLL_INTERVAL"], "{bad}: {err}");
        }
        a.interval = Some("500ms".into());
        assert!(check(&a).unwrap_err().to_string().contains("from 1s to 24h"));
        // Reported together with the other problems.
        a.drone_server = None;
        assert_eq!(variables(&check(&a).unwrap_err()), ["DRONE_SERVER", "POLL_INTERVAL"]);
    }

    #[test]
    fn sinks_are_checked_against_the_mode() {
        let mut a = valid();
        assert_eq!(check(&a).unwrap().sinks, SinkSet::default());
        a.sinks = Some("emf,stdout".into());
        let cfg = check(&a).unwrap();
        assert!(cfg.sinks.has(SinkKind::Emf) && cfg.sinks.has(SinkKind::Stdout));

        a.sinks = Some("prometheus".into());
        let err = check(&a).unwrap_err();
        assert_eq!(variables(&err), ["METRICS_SINKS"]);
        assert!(err.to_string().contains("set POLL_INTERVAL"), "{err}");
        a.interval = Some("15s".into());
        assert!(check(&a).is_ok());

        a.sinks = Some("cloudwatch,cloudwatch,graphite".into());
        assert_eq!(variables(&check(&a).unwrap_err()), ["METRICS_SINKS", "METRICS_SINKS"]);
        // The parser drops an empty variable; the check still sees it.
        a.sinks = None;
        let err = check_env(&a, &[("METRICS_SINKS", "")]).unwrap_err();
        assert_eq!(variables(&err), ["METRICS_SINKS"]);
        assert!(err.to_string().contains("is empty"), "{err}");
    }

    #[test]
    fn a_dry_run_only_prints_and_needs_no_aws() {
        let mut a = valid();
        a.dry_run = true;
        a.sinks = Some("cloudwatch,emf".into());
        let cfg = check_env(&a, &[("AWS_REGION", "")]).unwrap();
        assert!(cfg.sinks.is_only(SinkKind::Stdout));
        a.sinks = Some("bogus".into());
        assert_eq!(variables(&check(&a).unwrap_err()), ["METRICS_SINKS"]);
    }

    #[test]
    fn only_cloudwatch_needs_aws_settings_and_only_prometheus_does_without_a_namespace() {
        let mut a = valid();
        a.sinks = Some("emf".into());
        assert!(check_env(&a, &[("AWS_REGION", "")]).is_ok());
        a.sinks = Some("emf,cloudwatch".into());
        assert_eq!(variables(&check_env(&a, &[("AWS_REGION", "")]).unwrap_err()), ["AWS_REGION"]);

        a.namespace = None;
        a.interval = Some("15s".into());
        a.sinks = Some("prometheus".into());
        assert_eq!(check(&a).unwrap().namespace, "");
        a.sinks = Some("prometheus,emf".into());
        assert_eq!(variables(&check(&a).unwrap_err()), ["CLOUDWATCH_METRICS_NAMESPACE"]);
    }

    #[test]
    fn lambda_refuses_an_interval_and_the_prometheus_sink() {
        let lambda = [("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001")];
        let mut a = valid();
        a.sinks = Some("emf".into());
        assert!(check_env(&a, &lambda).is_ok());
        a.interval = Some("15s".into());
        let err = check_env(&a, &lambda).unwrap_err();
        assert_eq!(variables(&err), ["POLL_INTERVAL"]);
        assert!(err.to_string().contains("not used in Lambda"), "{err}");
        a.interval = None;
        a.sinks = Some("prometheus".into());
        let err = check_env(&a, &lambda).unwrap_err();
        assert_eq!(variables(&err), ["METRICS_SINKS"]);
        assert!(err.to_string().contains("Lambda"), "{err}");
    }

    #[test]
    fn listen_address_and_resolution() {
        let mut a = valid();
        let cfg = check(&a).unwrap();
        assert_eq!(cfg.prometheus_listen.to_string(), DEFAULT_PROMETHEUS_LISTEN);
        assert_eq!(cfg.resolution, Resolution::Standard);
        a.prometheus_listen = Some("0.0.0.0:9100".into());
        a.high_resolution = Some("TRUE".into());
        let cfg = check(&a).unwrap();
        assert_eq!(cfg.prometheus_listen.to_string(), "0.0.0.0:9100");
        assert_eq!(cfg.resolution, Resolution::High);
        a.high_resolution = Some("no".into());
        assert_eq!(check(&a).unwrap().resolution, Resolution::Standard);

        a.prometheus_listen = Some("localhost:9464".into());
        a.high_resolution = Some("maybe".into());
        let err = check(&a).unwrap_err();
        assert_eq!(variables(&err), ["PROMETHEUS_LISTEN", "CLOUDWATCH_HIGH_RESOLUTION"]);
        assert!(err.to_string().contains("not an IP address and port"), "{err}");
    }

    #[test]
    fn every_new_flag_reads_its_variable() {
        use clap::CommandFactory;
        let command = Args::command();
        let envs: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        for variable in VARIABLES {
            assert!(envs.iter().any(|e| e == variable), "{variable} has no flag");
        }
        assert_eq!(envs.len(), VARIABLES.len());
    }

    /// `valid()` with the token kept in AWS: `ssm`, `secret` and `key` set
    /// these, and `token` keeps `DRONE_TOKEN`.
    fn kept(token: bool, ssm: Option<&str>, secret: Option<&str>, key: Option<&str>) -> Args {
        let mut a = valid();
        if !token {
            a.drone_token = None;
        }
        a.drone_token_ssm_parameter = ssm.map(String::from);
        a.drone_token_secret_id = secret.map(String::from);
        a.drone_token_secret_key = key.map(String::from);
        a
    }

    #[test]
    fn the_token_comes_from_exactly_one_place() {
        let aws = [("AWS_REGION", "eu-west-1")];
        let cfg = check_env(&kept(false, Some(" /drone/token\n"), None, None), &aws).unwrap();
        assert_eq!(cfg.drone_token, TokenSource::SsmParameter("/drone/token".into()));
        let cfg = check_env(&kept(false, None, Some("ci/drone"), Some("token")), &aws).unwrap();
        assert_eq!(
            cfg.drone_token,
            TokenSource::Secret { id: "ci/drone".into(), key: Some("token".into()) }
        );
        assert_eq!(cfg.drone_token.to_string(), "key \"token\" of Secrets Manager secret ci/drone");
        let cfg = check_env(&kept(false, None, Some("arn:aws:secretsmanager:x"), None), &aws);
        assert_eq!(cfg.unwrap().drone_token.given(), None);

        let err = check(&kept(false, None, None, None)).unwrap_err();
        assert_eq!(variables(&err), ["DRONE_TOKEN"]);
        assert!(err.to_string().contains("DRONE_TOKEN_SSM_PARAMETER or DRONE_TOKEN_SECRET_ID"));

        let err = check_env(&kept(true, Some("/p"), None, None), &aws).unwrap_err();
        assert_eq!(variables(&err), ["DRONE_TOKEN_SSM_PARAMETER"]);
        assert!(err.to_string().contains("is set together with DRONE_TOKEN;"), "{err}");
        // The token given is never repeated, even here.
        assert!(!err.to_string().contains("token-123"), "{err}");
        let err = check_env(&kept(true, Some("/p"), Some("s"), None), &aws).unwrap_err();
        assert_eq!(variables(&err), ["DRONE_TOKEN_SECRET_ID"]);
        assert!(
            err.to_string().contains("together with DRONE_TOKEN and DRONE_TOKEN_SSM_PARAMETER;"),
            "{err}"
        );

        let err = check_env(&kept(false, Some("/p"), None, Some("token")), &aws).unwrap_err();
        assert_eq!(variables(&err), ["DRONE_TOKEN_SECRET_KEY"]);
        let err = check_env(&kept(false, None, Some(" "), Some(" ")), &aws).unwrap_err();
        assert_eq!(variables(&err), ["DRONE_TOKEN_SECRET_ID", "DRONE_TOKEN_SECRET_KEY"]);
        assert!(err.to_string().contains("is empty"), "{err}");
        let err = check_env(&kept(false, Some("/drone token"), None, None), &aws).unwrap_err();
        assert_eq!(variables(&err), ["DRONE_TOKEN_SSM_PARAMETER"]);
        assert!(err.to_string().contains("contains spaces"), "{err}");
    }

    #[test]
    fn a_token_kept_in_aws_needs_the_aws_settings_even_in_a_dry_run() {
        let mut a = kept(false, Some("/drone/token"), None, None);
        a.dry_run = true;
        a.sinks = Some("emf".into());
        let err =
            check_env(&a, &[("AWS_REGION", ""), ("AWS_ENDPOINT_URL_SSM", "moto")]).unwrap_err();
        assert_eq!(variables(&err), ["AWS_ENDPOINT_URL_SSM", "AWS_REGION"]);
        let secret = kept(false, None, Some("ci/drone"), None);
        let err = check_env(&secret, &[("AWS_ENDPOINT_URL_SECRETS_MANAGER", "x")]).unwrap_err();
        assert_eq!(variables(&err), ["AWS_ENDPOINT_URL_SECRETS_MANAGER"]);
        // A token given outright still needs no AWS in a dry run.
        let mut given = valid();
        given.dry_run = true;
        assert!(check_env(&given, &[("AWS_REGION", "")]).is_ok());
    }

    #[test]
    fn a_token_source_that_is_not_utf8_is_reported_as_such_not_as_missing() {
        // The parser left the variable out; the check sees it, lossily.
        let err = Config::check(&kept(false, None, None, None), &|name| {
            (name == "DRONE_TOKEN_SECRET_ID").then(|| "ci/\u{FFFD}".to_string())
        })
        .unwrap_err();
        assert_eq!(variables(&err), ["DRONE_TOKEN_SECRET_ID"]);
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
    }

    #[test]
    fn redaction_replaces_every_occurrence() {
        let t = Token::new("tok");
        assert_eq!(t.redact("a tok b tok"), "a [redacted] b [redacted]");
    }

    #[test]
    fn redaction_finds_escaped_forms() {
        let t = Token::new(r#"ab&c"d/e\f'g"#);
        for echo in [
            r#"ab&c"d/e\f'g"#,
            r#"ab&c\"d/e\\f'g"#,
            r#"ab&c\"d/e\\f\'g"#,
            "ab&amp;c&quot;d/e\\f&#39;g",
            "ab&amp;c&quot;d/e\\f&#x27;g",
            "ab%26c%22d%2Fe%5Cf%27g",
            "ab%26c%22d%2fe%5cf%27g",
            "ab&amp;c&#34;d/e\\f&#39;g",
            r#"ab\u0026c\"d/e\\f'g"#,
        ] {
            let text = format!("before {echo} after");
            assert_eq!(t.redact(&text), "before [redacted] after", "{echo}");
        }
        assert_eq!(t.redact("ab&c nothing"), "ab&c nothing");
    }
}
