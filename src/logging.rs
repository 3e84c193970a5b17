//! Log set-up: plain text for people, JSON lines for CloudWatch Logs.

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, Token};

/// What is logged unless `RUST_LOG` says otherwise: this program's
/// decisions, and only warnings from the libraries under it.
const DEFAULT_FILTER: &str = "warn,drone_queue_cloudwatch=info";

/// Installs the global subscriber, writing to standard error (standard
/// output is kept for what the program prints on purpose), and a panic hook
/// that logs a panic as one line of that log.
///
/// Every line is scrubbed of `tokens` as it is written: whatever a library
/// logs at whatever level, or whatever a value pasted into the wrong
/// variable carries, the token cannot reach the log.
pub fn init(format: LogFormat, tokens: Vec<Token>) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let writer =
        Scrubbed(Arc::new(tokens.into_iter().filter(|t| !t.expose().is_empty()).collect()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(true).with_span_list(false).init();
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

/// Standard error, with the tokens blanked out of each write. The
/// formatter hands over each event whole, in one write, so a token is never
/// split between two writes.
#[derive(Clone)]
struct Scrubbed(Arc<Vec<Token>>);

impl<'a> MakeWriter<'a> for Scrubbed {
    type Writer = Scrubbed;
    fn make_writer(&'a self) -> Scrubbed {
        self.clone()
    }
}

impl Write for Scrubbed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.is_empty() {
            return std::io::stderr().write(buf);
        }
        let mut text = String::from_utf8_lossy(buf).into_owned();
        for token in self.0.iter() {
            text = token.redact(&text);
        }
        std::io::stderr().lock().write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
