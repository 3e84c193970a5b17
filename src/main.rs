//! `drone-queue-cloudwatch`: serves the Lambda runtime when
//! `AWS_LAMBDA_RUNTIME_API` is set, and otherwise polls once and exits.

use std::process::ExitCode;

use clap::Parser;
use drone_queue_cloudwatch::config::{Args, Config, EXIT_CONFIG, LogFormat};
use drone_queue_cloudwatch::{cli, lambda, logging, startup};

fn main() -> ExitCode {
    let args = Args::parse();
    let in_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let default_format = if in_lambda { LogFormat::Json } else { LogFormat::Text };
    logging::init(args.log_format.unwrap_or(default_format));

    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("drone-queue-cloudwatch: could not start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let config = Config::from_args(&args);

    if in_lambda {
        let poller = match &config {
            Ok(config) => {
                startup::log_start("lambda", config);
                runtime.block_on(startup::poller(config)).map_err(|e| e.to_string())
            }
            Err(err) => {
                tracing::error!("{err}");
                Err(err.to_string())
            }
        };
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
            startup::log_start("cli", &config);
            runtime.block_on(cli::run(config))
        }
        Err(err) => {
            eprintln!("drone-queue-cloudwatch: {err}");
            ExitCode::from(EXIT_CONFIG as u8)
        }
    }
}
