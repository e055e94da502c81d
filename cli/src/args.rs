//! The command line as clap sees it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Check, draw and describe eventflow workflow definitions.
///
/// Exit status: 0 when all is well, 1 when a definition has problems, 2 when a file cannot be
/// read (or the output cannot be written).
#[derive(Debug, Parser)]
#[command(name = "eventflow", version, about, long_about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check workflow definitions (JSON, or YAML by a .yaml/.yml extension).
    ///
    /// Prints `FILE: ok (N steps)` for each good file; for each problem prints
    /// `FILE: $.path.of.field: what is wrong` to stderr.
    Validate {
        /// Definition files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print a definition as a Mermaid flowchart (after validating it).
    Graph {
        /// The definition file to draw.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Print the JSON Schema of a definition document.
    Schema,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn validate_needs_at_least_one_file() {
        assert!(Cli::try_parse_from(["eventflow", "validate"]).is_err());
        let cli = Cli::try_parse_from(["eventflow", "validate", "a.json", "b.yaml"])
            .expect("two files parse");
        assert!(matches!(cli.command, Command::Validate { files } if files.len() == 2));
    }
}
