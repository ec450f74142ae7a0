//! The `lookout` command line: one file per subcommand in `src/cli/`.
//!
//! `anyhow` lives here only: every library error is a typed enum, and this binary turns it into
//! one line on stderr and a non-zero exit code (never a panic or a backtrace).

use std::process::ExitCode;

use clap::Parser;

mod cli;

use cli::args::{Cli, Command};
use cli::check::check;
use cli::detect::detect;
use cli::diff::diff;
use cli::model::model;
use cli::replay::replay;
#[cfg(feature = "ros")]
use cli::run::run;
use cli::sim::sim;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.command);
    let result = match cli.command {
        Command::Detect(args) => detect(&args),
        #[cfg(feature = "ros")]
        Command::Run(args) => run(&args),
        Command::Replay(args) => replay(&args),
        Command::Sim(args) => sim(&args),
        Command::Check(args) => check(&args),
        Command::Model(command) => model(&command),
        Command::Diff(args) => {
            return match diff(&args) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("lookout: error: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lookout: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through `tracing` (filter: RUST_LOG; default `info` for `run`, `warn`
/// otherwise, ONNX Runtime's own logs at `warn`); with the live node, warnings and errors also go to the ROS log (/rosout).
fn init_logging(command: &Command) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = match command {
        Command::Detect(_) | Command::Diff(_) | Command::Check(_) => "warn",
        Command::Model(_) => "info,ort=warn",
        Command::Replay(_) | Command::Sim(_) => "info,ort=warn",
        #[cfg(feature = "ros")]
        Command::Run(_) => "info,ort=warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    #[cfg(feature = "ros")]
    let registry = registry.with(lookout::ros::RosLogLayer);
    registry.init();
}
