//! `eventflow`: the command line of the eventflow workflow engine.
//!
//! - [`args`]: what the user types (clap).
//! - [`commands`]: what each subcommand does, as a [`report::Report`] of lines and a status,
//!   so the logic is tested without a terminal.
//! - [`load`]: reading one definition file and collecting everything wrong with it.
//! - [`report`]: writing a report to stdout/stderr and the exit status it stands for.
//!
//! This file only wires them together.

mod args;
mod commands;
mod load;
mod metrics;
mod report;
mod runner;
mod schedules;
mod serve;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use eventflow_engine::EventKind;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let Some(report) = commands::run(&cli.command, &load::read_from_disk) else {
        return run_workflows(&cli);
    };
    match report::write(&report, &mut io::stdout().lock(), &mut io::stderr().lock()) {
        Ok(()) => report.status().exit_code(),
        Err(e) => {
            let _ = writeln!(io::stderr(), "eventflow: {e:#}");
            report::Status::Io.exit_code()
        }
    }
}

/// The verbs that need the local runtime, on a tokio runtime.
fn run_workflows(cli: &args::Cli) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EVENTFLOW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(
                io::stderr(),
                "eventflow: cannot start the async runtime: {e}"
            );
            return report::Status::Io.exit_code();
        }
    };
    let dir = &cli.data_dir;
    let outcome = rt.block_on(async {
        use args::Command;
        match &cli.command {
            Command::Run {
                workflow,
                input,
                json,
                follow,
            } => runner::run(dir, workflow, input, *json, *follow).await,
            Command::Status { id, json } => runner::status(dir, id, *json).await,
            Command::History { id } => runner::history(dir, id).await,
            Command::List { status, workflow } => {
                runner::list(dir, status.as_deref(), workflow.as_deref()).await
            }
            Command::Resume { follow } => runner::resume(dir, *follow).await,
            Command::Outbox => runner::outbox(dir),
            Command::Publish { files } => runner::publish(dir, files).await,
            Command::Metrics {
                workflow,
                from,
                to,
                interval,
                json,
            } => {
                let range = metrics::Range {
                    from: from.as_deref(),
                    to: to.as_deref(),
                    interval,
                };
                metrics::show(dir, workflow, range, *json).await
            }
            Command::Workflows => runner::workflows(dir).await,
            Command::Versions { workflow } => runner::versions(dir, workflow).await,
            Command::Alias {
                workflow,
                active,
                canary,
                weight,
            } => runner::alias(dir, workflow, *active, *canary, *weight).await,
            Command::Deprecate { workflow, version } => {
                runner::deprecate(dir, workflow, *version).await
            }
            Command::Retire { workflow, version } => runner::retire(dir, workflow, *version).await,
            Command::Migrate {
                workflow,
                from,
                to,
                mapping,
                dry_run,
            } => runner::migrate(dir, workflow, *from, *to, mapping.as_deref(), *dry_run).await,
            Command::Pause { id } => runner::operate(dir, id, EventKind::Pause, 0).await,
            Command::Continue { id, follow } => {
                runner::operate(dir, id, EventKind::Resume, *follow).await
            }
            Command::Cancel {
                id,
                compensate,
                follow,
            } => {
                let kind = EventKind::Cancel {
                    compensate: *compensate,
                };
                runner::operate(dir, id, kind, *follow).await
            }
            Command::Retry { id, step, follow } => {
                let kind = EventKind::RetryStep { step: step.clone() };
                runner::operate(dir, id, kind, *follow).await
            }
            Command::Skip {
                id,
                step,
                output,
                follow,
            } => match runner::skip_output(output.as_deref()) {
                Ok(output) => {
                    let kind = EventKind::SkipStep {
                        step: step.clone(),
                        output,
                    };
                    runner::operate(dir, id, kind, *follow).await
                }
                Err(e) => Err(e),
            },
            Command::Rollback { id, to, follow } => {
                let kind = EventKind::Rollback { to: to.clone() };
                runner::operate(dir, id, kind, *follow).await
            }
            Command::Schedules { action, json } => match action {
                None => schedules::list(dir, *json).await,
                Some(args::ScheduleCommand::Pause { id }) => schedules::pause(dir, id).await,
                Some(args::ScheduleCommand::Resume { id }) => schedules::resume(dir, id).await,
            },
            Command::Tenant(args::TenantCommand::Create { name }) => {
                runner::tenant_create(dir, name).await
            }
            Command::Serve { port } => serve::serve(dir, *port).await,
            Command::Validate { .. } | Command::Graph { .. } | Command::Schema => {
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    // Workers still running an action are stopped with the process: their tasks stay in the
    // store and run again, with the same keys, on the next start.
    rt.shutdown_background();
    outcome.unwrap_or_else(runner::Refusal::exit)
}
