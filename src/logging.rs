//! Log set-up: plain text for people, JSON lines for CloudWatch Logs.

use std::io::{IsTerminal, Write};
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, Token};

/// What is logged unless `RUST_LOG` says otherwise: this program's
/// decisions, and only warnings from the libraries under it.
const DEFAULT_FILTER: &str = "warn,drone_queue_cloudwatch=info";

/// Installs the global subscriber, writing to standard error (standard
/// output is kept for what the program prints on purpose), and a panic hook
/// that logs a panic as one line of that log.
///
/// Every line is scrubbed of `tokens`, and of the secrets added later with
/// [`add_secret`], as it is written: whatever a library logs at whatever
/// level, or whatever a value pasted into the wrong variable carries, the
/// token cannot reach the log.
pub fn init(format: LogFormat, tokens: Vec<Token>) {
    for token in &tokens {
        add_secret(token);
    }
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(Scrubbed);
    match format {
        LogFormat::Text => {
            builder.with_ansi(std::io::stderr().is_terminal()).finish().with(Hush).init();
        }
        LogFormat::Json => {
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish()
                .with(Hush)
                .init();
        }
    }
    // The default hook prints several lines (and a backtrace) outside the
    // log, which breaks JSON logs; panics inside the SDK are caught and
    // reported as errors, so one log line is all they need here.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        tracing::error!(location, "panic: {}", message.replace('\n', " "));
    }));
}

// TODO(#4): lines are written on the thread that logs, so a standard error
// that nobody reads stops the daemon; a writer of its own needs a bounded
// queue and a rule for the lines it drops, which is more than this fix.

/// The secrets blanked out of every line: the token as given, and the one
/// read from Parameter Store or Secrets Manager once it is known.
static SECRETS: RwLock<Vec<Token>> = RwLock::new(Vec::new());

/// Adds `secret` to what every later line is scrubbed of.
pub fn add_secret(secret: &Token) {
    if secret.expose().is_empty() {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !secrets.contains(secret) {
        secrets.push(secret.clone());
    }
}

/// How many secret reads are under way (see [`hush`]).
static HUSHED: AtomicUsize = AtomicUsize::new(0);

/// Keeps the libraries' debug and trace lines out of the log until the
/// guard is dropped.
///
/// At trace level the AWS SDK logs the answers it receives, and with
/// `LOG_SENSITIVE_BODIES=true` even those it marks as sensitive, such as a
/// parameter's decrypted value or a whole secret. The scrubber cannot blank
/// out a value it does not know yet, and a secret's other keys are never
/// known to it, so while a secret is read such lines are not written at
/// all. This program's own lines, and every library's warnings and errors,
/// still are.
pub fn hush() -> HushGuard {
    HUSHED.fetch_add(1, Ordering::AcqRel);
    HushGuard(())
}

/// Lifts the [`hush`] when dropped.
#[must_use = "the hush ends when the guard is dropped"]
pub struct HushGuard(());

impl Drop for HushGuard {
    fn drop(&mut self) {
        HUSHED.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The filter behind [`hush`].
struct Hush;

impl Hush {
    /// Whether a hush leaves this out: a library's debug or trace line (or
    /// span).
    fn applies(metadata: &Metadata<'_>) -> bool {
        *metadata.level() > Level::INFO && !metadata.target().starts_with("drone_queue_cloudwatch")
    }
}

impl<S: Subscriber> Layer<S> for Hush {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        // What a hush may leave out is decided at each event; the rest is
        // up to the level filter alone.
        if Hush::applies(metadata) { Interest::sometimes() } else { Interest::always() }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        HUSHED.load(Ordering::Acquire) == 0 || !Hush::applies(metadata)
    }
}

/// Standard error, with the secrets blanked out of each write. The
/// formatter hands over each event whole, in one write, so a secret is
/// never split between two writes.
#[derive(Clone, Copy)]
struct Scrubbed;

impl<'a> MakeWriter<'a> for Scrubbed {
    type Writer = Scrubbed;
    fn make_writer(&'a self) -> Scrubbed {
        *self
    }
}

/// `text` with every secret known so far blanked out; `None` when there
/// is none to look for.
pub fn scrub(text: &[u8]) -> Option<String> {
    let secrets = SECRETS.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    if secrets.is_empty() {
        return None;
    }
    let mut text = String::from_utf8_lossy(text).into_owned();
    for secret in secrets.iter() {
        text = secret.redact(&text);
    }
    Some(text)
}

impl Write for Scrubbed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(text) = scrub(buf) else {
            return std::io::stderr().write(buf);
        };
        std::io::stderr().lock().write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records the target of every event it is given.
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            self.0.lock().unwrap().push(event.metadata().target().to_string());
        }
    }

    fn log_everything() {
        tracing::trace!(target: "aws_smithy_runtime::client::orchestrator::http", "body");
        tracing::debug!(target: "hyper_util::client", "connecting");
        tracing::info!(target: "aws_config::meta", "no credentials from this provider");
        tracing::warn!(target: "aws_runtime::env_config", "config file not found");
        tracing::trace!(target: "drone_queue_cloudwatch::secret", "reading");
    }

    #[test]
    fn a_hush_holds_back_only_the_libraries_debug_and_trace_lines() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Hush).with(Seen(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            log_everything();
            let guard = hush();
            log_everything();
            drop(guard);
            log_everything();
        });
        let all = [
            "aws_smithy_runtime::client::orchestrator::http",
            "hyper_util::client",
            "aws_config::meta",
            "aws_runtime::env_config",
            "drone_queue_cloudwatch::secret",
        ];
        let hushed =
            ["aws_config::meta", "aws_runtime::env_config", "drone_queue_cloudwatch::secret"];
        assert_eq!(*seen.lock().unwrap(), [&all[..], &hushed[..], &all[..]].concat());
    }

    #[test]
    fn a_secret_added_later_is_scrubbed_from_then_on() {
        let secret = Token::new("tok-added-later-6b1f");
        let line = br#"{"message":"value \"tok-added-later-6b1f\""}"#;
        assert!(scrub(line).is_none_or(|text| text.contains("tok-added-later-6b1f")));
        add_secret(&secret);
        add_secret(&secret);
        assert_eq!(scrub(line).unwrap(), r#"{"message":"value \"[redacted]\""}"#);
        let count = SECRETS.read().unwrap().iter().filter(|s| **s == secret).count();
        assert_eq!(count, 1);
    }
}
