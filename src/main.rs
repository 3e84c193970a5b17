//! `drone-queue-cloudwatch`: serves the Lambda runtime when
//! `AWS_LAMBDA_RUNTIME_API` is set, and otherwise polls once and exits, or
//! keeps polling with `POLL_INTERVAL`.

use std::process::ExitCode;

use clap::error::ErrorKind;
use drone_queue_cloudwatch::config::{Args, Config, EXIT_CONFIG, LogFormat, Token};
use drone_queue_cloudwatch::{cli, lambda, logging, startup};

fn main() -> ExitCode {
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let default_format = if in_lambda { LogFormat::Json } else { LogFormat::Text };

    // Arguments the parser itself refuses (a value that is not UTF-8, an
    // unknown flag) are configuration errors too; in Lambda they must reach
    // the invocations rather than end the process before it serves any.
    let config = match Args::parse_env() {
        Ok(parsed) => {
            logging::init(parsed.args.log_format().unwrap_or(default_format), given_tokens());
            Config::from_parsed(&parsed).map_err(|e| e.to_string())
        }
        Err(err) if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            err.exit()
        }
        Err(err) if in_lambda => {
            logging::init(default_format, given_tokens());
            Err(redact_given_token(&err.to_string()).trim_end().to_string())
        }
        Err(err) => {
            eprint!("{}", redact_given_token(&err.to_string()));
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
        if let Err(err) = lambda::check_environment(&|name| std::env::var(name).ok()) {
            tracing::error!("{err}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
        // A token kept in AWS is not known yet, and a value in the start
        // line might carry it: that line comes once it is read.
        match &config {
            Ok(config) if config.drone_token.given().is_some() => {
                startup::log_start("lambda", config);
            }
            Ok(_) => {}
            Err(err) => tracing::error!("{err}"),
        }
        // The token is read here, at init, once per container.
        let poller = runtime.block_on(startup::LambdaPoller::init(config));
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
            if config.drone_token.given().is_some() {
                startup::log_start(config.mode(), &config);
            }
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

/// Blanks out the token, as given by `DRONE_TOKEN` or `--drone-token`, from
/// a message of the argument parser, which quotes the arguments it refuses.
fn redact_given_token(text: &str) -> String {
    given_tokens().iter().fold(text.to_string(), |text, token| token.redact(&text))
}

/// The token as given by `DRONE_TOKEN` and by `--drone-token`, found
/// without the parser, whose errors must be scrubbed of it too.
fn given_tokens() -> Vec<Token> {
    let mut given: Vec<String> = std::env::var("DRONE_TOKEN").into_iter().collect();
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    for (i, arg) in args.iter().enumerate() {
        if let Some(value) = arg.strip_prefix("--drone-token=") {
            given.push(value.to_string());
        } else if arg == "--drone-token" {
            given.extend(args.get(i + 1).cloned());
        }
    }
    given.iter().filter(|token| !token.trim().is_empty()).map(|token| Token::new(token)).collect()
}
