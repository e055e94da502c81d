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
mod report;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let report = commands::run(&cli.command, &load::read_from_disk);
    match report::write(&report, &mut io::stdout().lock(), &mut io::stderr().lock()) {
        Ok(()) => report.status().exit_code(),
        Err(e) => {
            let _ = writeln!(io::stderr(), "eventflow: {e:#}");
            report::Status::Io.exit_code()
        }
    }
}
