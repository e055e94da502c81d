//! The command line as clap sees it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Run, check, draw and describe eventflow workflows.
///
/// Exit status: 0 when all is well, 1 when a definition, an input or an id is wrong, 2 when a
/// file or the data directory cannot be used (or the output cannot be written), 3 when a run
/// ended without completing (failed, rolled back, cancelled, needs attention).
#[derive(Debug, Parser)]
#[command(name = "eventflow", version, about, long_about)]
pub(crate) struct Cli {
    /// Where runs, versions and records are kept.
    #[arg(
        long,
        global = true,
        env = "EVENTFLOW_DATA_DIR",
        default_value = ".eventflow",
        value_name = "DIR"
    )]
    pub(crate) data_dir: PathBuf,
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
    /// Start a run of a workflow and follow it live.
    ///
    /// The definition is published (once per content) with every valid definition beside it,
    /// so workflows it starts are found. Unfinished runs in the data directory resume too.
    Run {
        /// The definition file to run, or the id of a workflow already published in the
        /// data directory (its latest version runs).
        #[arg(value_name = "WORKFLOW")]
        workflow: PathBuf,
        /// The run's input: a JSON (or YAML) file, or JSON text.
        #[arg(long, value_name = "FILE|JSON", default_value = "{}")]
        input: String,
        /// Print the execution as JSON at the end instead of following it line by line.
        #[arg(long)]
        json: bool,
        /// Stop following when the run waits on a timer longer than this many seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        follow: u64,
    },
    /// Show where a run stands.
    Status {
        #[arg(value_name = "ID")]
        id: String,
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a run's history, one applied event a line.
    History {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// List runs.
    List {
        /// Only runs in this status (running, paused, completed, ...).
        #[arg(long, value_name = "S")]
        status: Option<String>,
        /// Only runs of this workflow id.
        #[arg(long, value_name = "W")]
        workflow: Option<String>,
    },
    /// Continue every unfinished run until each is done or waits longer than --follow.
    Resume {
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        follow: u64,
    },
    /// List the messages sent (emails and notifications, as .eml files in the data directory).
    Outbox,
    /// Publish definition files as new versions (a file whose content is published already
    /// gives its existing version). Nothing is published unless every file is valid.
    Publish {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Show a workflow's figures: runs started, runs ended by status, steps failed, run
    /// durations, by hour or day.
    Metrics {
        #[arg(value_name = "WORKFLOW")]
        workflow: String,
        /// RFC 3339; by default a day (hour) or thirty days (day) before --to.
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// RFC 3339, excluded; by default the end of the current hour or day.
        #[arg(long, value_name = "TIME")]
        to: Option<String>,
        /// hour or day (UTC).
        #[arg(long, value_name = "I", default_value = "hour")]
        interval: String,
        /// As JSON (the API's report).
        #[arg(long)]
        json: bool,
    },
    /// List the published workflows, their latest version and where new starts go.
    Workflows,
    /// List a workflow's published versions, their state, and the alias.
    Versions {
        #[arg(value_name = "WORKFLOW")]
        workflow: String,
    },
    /// Show which version new starts of a workflow use, or set it (and a canary).
    Alias {
        #[arg(value_name = "WORKFLOW")]
        workflow: String,
        /// The version new starts use.
        #[arg(long, value_name = "N")]
        active: Option<u32>,
        /// A version that takes --weight percent of new starts.
        #[arg(long, value_name = "N", requires = "weight", requires = "active")]
        canary: Option<u32>,
        /// The canary's share of new starts, in percent (1 to 99).
        #[arg(long, value_name = "PERCENT", requires = "canary")]
        weight: Option<u8>,
    },
    /// Stop a version from starting new runs; its runs go on.
    Deprecate {
        #[arg(value_name = "WORKFLOW")]
        workflow: String,
        #[arg(value_name = "VERSION")]
        version: u32,
    },
    /// Retire a deprecated version that no unfinished run uses.
    Retire {
        #[arg(value_name = "WORKFLOW")]
        workflow: String,
        #[arg(value_name = "VERSION")]
        version: u32,
    },
    /// Move the unfinished runs of one version to another, or with --dry-run only report,
    /// per run, whether it can move and why not.
    Migrate {
        #[arg(value_name = "WORKFLOW")]
        workflow: String,
        /// The version the runs are on.
        #[arg(long, value_name = "A")]
        from: u32,
        /// The version to move them to.
        #[arg(long, value_name = "B")]
        to: u32,
        /// A JSON file: renamed steps, outputs supplied for steps B adds before a run's
        /// frontier, compensations it is fine to lose.
        #[arg(long, value_name = "FILE")]
        mapping: Option<PathBuf>,
        /// Report only; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Pause a run: nothing new starts until it is continued.
    Pause {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Continue a paused run (a step that failed under `pause` stays failed).
    Continue {
        #[arg(value_name = "ID")]
        id: String,
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        follow: u64,
    },
    /// Cancel a run, undoing what it did with --compensate.
    Cancel {
        #[arg(value_name = "ID")]
        id: String,
        #[arg(long)]
        compensate: bool,
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        follow: u64,
    },
    /// Run a failed step again (or a compensation that failed).
    Retry {
        #[arg(value_name = "ID")]
        id: String,
        #[arg(value_name = "STEP")]
        step: String,
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        follow: u64,
    },
    /// Skip a failed or pending step, optionally giving the output its dependents read.
    Skip {
        #[arg(value_name = "ID")]
        id: String,
        #[arg(value_name = "STEP")]
        step: String,
        /// JSON the step's dependents see as steps.<STEP>.output.
        #[arg(long, value_name = "JSON")]
        output: Option<String>,
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        follow: u64,
    },
    /// Roll a run back: all of it, or --to a step (then it pauses there for a retry).
    Rollback {
        #[arg(value_name = "ID")]
        id: String,
        #[arg(long, value_name = "STEP")]
        to: Option<String>,
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        follow: u64,
    },
    /// List the schedules (cron, rate, and event-relative with their planned runs), or pause
    /// or resume one. Runs start under `eventflow serve`.
    Schedules {
        #[command(subcommand)]
        action: Option<ScheduleCommand>,
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Serve the HTTP API, the runtime and the scheduler in one process, on 127.0.0.1.
    ///
    /// Every request needs a tenant's API key (`eventflow tenant create`); each tenant's
    /// workflows, runs, schedules and records live in `<data dir>/tenants/<name>`. Stops on
    /// Ctrl-C or SIGTERM, leaving unfinished work in the store for the next start.
    Serve {
        /// The port to listen on; 0 picks a free one (printed on start).
        #[arg(long, env = "EVENTFLOW_PORT", default_value_t = 8080)]
        port: u16,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TenantCommand {
    /// Create a tenant and print its API key, once: only its hash is kept.
    Create {
        /// Lower case letters, digits and `-`.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Stop a schedule from starting runs.
    Pause {
        /// The schedule's id, `<workflow>.<trigger index>` (`eventflow schedules` lists them).
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Let a paused schedule start runs again; the slots it missed are skipped.
    Resume {
        #[arg(value_name = "ID")]
        id: String,
    },
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

    #[test]
    fn schedules_lists_and_pauses_or_resumes_one() {
        let cli = Cli::try_parse_from(["eventflow", "schedules"]).expect("list");
        assert!(matches!(
            cli.command,
            Command::Schedules {
                action: None,
                json: false
            }
        ));
        let cli =
            Cli::try_parse_from(["eventflow", "schedules", "pause", "nurture.0"]).expect("pause");
        assert!(matches!(
            cli.command,
            Command::Schedules { action: Some(ScheduleCommand::Pause { id }), .. } if id == "nurture.0"
        ));
        assert!(Cli::try_parse_from(["eventflow", "schedules", "resume"]).is_err());
    }
}
