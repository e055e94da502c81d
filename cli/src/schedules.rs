//! `eventflow schedules`: list the schedules of the data directory, pause or resume one.
//!
//! Each verb first brings the stored schedules up to date with the published versions (as
//! the scheduler of `eventflow serve` does on start), so the list is right even when nothing
//! has served this directory yet. Nothing starts here: runs start under `eventflow serve`.

use std::path::Path;
use std::process::ExitCode;

use chrono::{SecondsFormat, Utc};
use eventflow_engine::{Timestamp, Trigger};
use eventflow_local::scheduler::{self, ScheduleView, SchedulerError};
use eventflow_local::{LocalStore, OpenError};

use crate::runner::Refusal;

type Outcome = Result<ExitCode, Refusal>;

/// The id-is-wrong kind of refusal (exit 1).
fn invalid(message: String) -> Refusal {
    Refusal { code: 1, message }
}

/// The store-cannot-be-used kind (exit 2).
fn io(message: String) -> Refusal {
    Refusal { code: 2, message }
}

fn open(dir: &Path) -> Result<LocalStore, Refusal> {
    if !dir.join("eventflow.redb").exists() {
        return Err(invalid(format!(
            "eventflow: there is no data in {}; publish a workflow with `eventflow run`, or point --data-dir at the directory you used",
            dir.display()
        )));
    }
    LocalStore::open(dir).map_err(|e: OpenError| io(format!("eventflow: {e}")))
}

fn refused(e: SchedulerError) -> Refusal {
    match e {
        SchedulerError::UnknownSchedule { .. } | SchedulerError::Schedule { .. } => {
            invalid(format!("eventflow: {e}"))
        }
        SchedulerError::Store(_) => io(format!("eventflow: {e}")),
    }
}

/// Opens the store and brings its schedules up to date, telling what could not be planned.
async fn synced(dir: &Path) -> Result<LocalStore, Refusal> {
    let store = open(dir)?;
    let report = scheduler::sync_store(&store, Utc::now())
        .await
        .map_err(refused)?;
    for problem in &report.problems {
        eprintln!("eventflow: warning: {problem}");
    }
    Ok(store)
}

/// `eventflow schedules [--json]`.
pub(crate) async fn list(dir: &Path, json: bool) -> Outcome {
    let store = synced(dir).await?;
    let views = scheduler::list(&store).await.map_err(refused)?;
    if json {
        let text = serde_json::to_string_pretty(&views).map_err(|e| {
            io(format!(
                "eventflow: cannot write the schedules as JSON: {e}"
            ))
        })?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    if views.is_empty() {
        println!("no schedules: the active versions have no cron, rate or event_relative trigger");
    }
    for v in &views {
        print_view(v);
    }
    Ok(ExitCode::SUCCESS)
}

/// `eventflow schedules pause ID`.
pub(crate) async fn pause(dir: &Path, id: &str) -> Outcome {
    let store = synced(dir).await?;
    let view = scheduler::pause(&store, id).await.map_err(refused)?;
    println!(
        "{} is paused: it starts nothing until `eventflow schedules resume {}`",
        view.id, view.id
    );
    Ok(ExitCode::SUCCESS)
}

/// `eventflow schedules resume ID`.
pub(crate) async fn resume(dir: &Path, id: &str) -> Outcome {
    let store = synced(dir).await?;
    let view = scheduler::resume(&store, id, Utc::now())
        .await
        .map_err(refused)?;
    match view.next_due {
        Some(next) => println!(
            "{} fires again (slots missed while paused are skipped); next at {}",
            view.id,
            instant(next)
        ),
        None => println!("{} fires again; nothing is due yet", view.id),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_view(v: &ScheduleView) {
    let state = if v.paused { "paused" } else { "active" };
    let next = v.next_due.map_or_else(|| "-".to_owned(), instant);
    let last = v.last_fired.map_or_else(|| "-".to_owned(), instant);
    println!(
        "{:<28} {:<15} {:<7} next {:<20} last {:<20} {}",
        v.id,
        v.kind.as_str(),
        state,
        next,
        last,
        describe(&v.trigger)
    );
    for p in &v.planned {
        println!(
            "    {:<40} {}  (events/{})",
            p.key,
            instant(p.fire_at),
            p.record
        );
    }
}

/// A trigger in a few words.
fn describe(trigger: &Trigger) -> String {
    match trigger {
        Trigger::Cron {
            expression,
            time_zone,
            ..
        } => format!(
            "\"{expression}\" in {}",
            time_zone.as_deref().unwrap_or("UTC")
        ),
        Trigger::Rate { every, .. } => format!("every {every}"),
        Trigger::EventRelative {
            field, offsets, at, ..
        } => {
            let offsets: Vec<String> = offsets.iter().map(ToString::to_string).collect();
            let at = at
                .as_deref()
                .map(|a| format!(" at {a}"))
                .unwrap_or_default();
            format!("{field} {}{at}", offsets.join(", "))
        }
        _ => String::new(),
    }
}

fn instant(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
