//! ddsky: the Datadog Agent beside SkyPilot jobs, through the Docker API.
//!
//! Layer: main (see `src/layers.rs`): the top; may use any layer.

mod agent;
mod agent_output;
mod batch;
mod cli;
mod commands;
mod dashboard;
mod datadog_api;
mod discovery;
#[cfg(test)]
mod docs_check;
mod doctor;
mod drain;
mod engine;
mod error_chain;
mod exit;
mod gpu;
mod interrupt;
mod joblog;
mod k8s;
mod key;
mod logging;
mod output;
mod placement;
mod ports;
mod progress;
mod reconcile;
mod redact;
mod reference;
mod registry;
mod restarts;
mod secrets;
mod settings;
mod spec;
mod startup;
mod tags;
mod tls;
mod verify;

use std::process::ExitCode;

fn main() -> ExitCode {
    let parsed = match settings::parse() {
        Ok(parsed) => parsed,
        Err(settings::ParseError::Clap(e)) => return ExitCode::from(usage_error(e)),
        Err(settings::ParseError::Settings(e)) => {
            output::error_line(&format!("ddsky: error: {e}"));
            return ExitCode::from(exit::USAGE);
        }
    };
    logging::init(parsed.cli.global.verbose, parsed.cli.global.quiet);
    ExitCode::from(run(parsed))
}

/// Help and version print as clap renders them; real usage errors become one line with exit 2.
fn usage_error(e: clap::Error) -> u8 {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.use_stderr() {
            exit::USAGE
        } else {
            exit::OK
        };
    }
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid arguments");
    output::error_line(&format!("ddsky: {first} (see `ddsky --help`)"));
    exit::USAGE
}

fn run(parsed: settings::Parsed) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return logging::fail(
                &Startup {
                    what: "start the async runtime",
                    source: e,
                },
                exit::FAILURE,
            )
        }
    };
    runtime.block_on(async {
        let interrupt = match interrupt::Interrupt::install() {
            Ok(i) => i,
            Err(e) => {
                return logging::fail(
                    &Startup {
                        what: "listen for signals",
                        source: e,
                    },
                    exit::FAILURE,
                )
            }
        };
        let outcome = match settings::from_cli(parsed.cli, parsed.env_problem, parsed.inherited_env)
        {
            Ok((global, command)) => {
                let ctx = commands::Context::new(global, interrupt.clone());
                commands::run(&ctx, command).await
            }
            Err(invalid) => Err(commands::Failure::from(invalid)),
        };
        match outcome {
            Ok(code) => code,
            Err(failure) => {
                let code = failure.exit_code();
                let details = failure.details().to_vec();
                logging::fail(&failure, code);
                for line in details {
                    output::error_line(&format!("  | {line}"));
                }
                code
            }
        }
    })
}

/// ddsky could not set itself up to run a command at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what}")]
struct Startup {
    what: &'static str,
    source: std::io::Error,
}

/// The layering rule and its test (test-only: nothing at run time needs it).
#[cfg(test)]
mod layers;
