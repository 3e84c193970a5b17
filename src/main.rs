//! `drone-queue-cloudwatch`: serves the Lambda runtime when
//! `AWS_LAMBDA_RUNTIME_API` is set, and otherwise polls once and exits, or
//! keeps polling with `POLL_INTERVAL`.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use drone_queue_cloudwatch::config::{Args, Config, EXIT_CONFIG, LogFormat, VARIABLES};
use drone_queue_cloudwatch::{cli, lambda, logging, startup};

fn main() -> ExitCode {
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let default_format = if in_lambda { LogFormat::Json } else { LogFormat::Text };

    // Arguments the parser itself refuses (a value that is not UTF-8, an
    // unknown flag) are configuration errors too; in Lambda they must reach
    // the invocations rather than end the process before it serves any.
    let config = match parse() {
        Ok(args) => {
            logging::init(args.log_format().unwrap_or(default_format));
            Config::from_args(&args).map_err(|e| e.to_string())
        }
        Err(err) if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            err.exit()
        }
        Err(err) if in_lambda => {
            logging::init(default_format);
            Err(err.to_string().trim_end().to_string())
        }
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("drone-queue-cloudwatch: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };

    if in_lambda {
        let poller = config.and_then(|config| {
            startup::log_start("lambda", &config);
            runtime.block_on(startup::poller(&config)).map_err(|e| e.to_string())
        });
        if let Err(err) = &poller {
            tracing::error!("{err}");
        }
        return match runtime.block_on(lambda::serve(poller)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!("the Lambda runtime stopped: {err}");
                ExitCode::FAILURE
            }
        };
    }

    match config {
        Ok(config) => {
            startup::log_start(config.mode(), &config);
            let code = runtime.block_on(cli::run(config));
            // A name look-up of a dropped poll may still hold a blocking
            // thread; the daemon's prompt exit on a signal must not wait for it.
            runtime.shutdown_timeout(std::time::Duration::from_millis(100));
            code
        }
        Err(err) => {
            eprintln!("drone-queue-cloudwatch: {err}");
            ExitCode::from(EXIT_CONFIG as u8)
        }
    }
}

/// Parses the arguments, first naming any variable whose value is not
/// UTF-8 (the parser would only say that some argument is not).
fn parse() -> Result<Args, clap::Error> {
    for variable in VARIABLES {
        if std::env::var_os(variable).is_some_and(|v| v.to_str().is_none()) {
            return Err(clap::Error::raw(
                ErrorKind::InvalidUtf8,
                format!("{variable}: the value is not valid UTF-8; set it again as plain text\n"),
            ));
        }
    }
    Args::try_parse()
}
