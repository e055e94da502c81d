//! The verbs that run workflows on the local runtime: `run`, `status`, `history`, `list`,
//! `resume`, `outbox`.
//!
//! Every check that can refuse a request (the definition, the input, the data directory) runs
//! before anything is written.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use eventflow_api::plane::execution_json;
use eventflow_engine::{
    AttemptOutcome, Change, Checkpoint, Definition, EventKind, Format, HistoryEntry, RunStatus,
    StepStatus, Version,
};
use eventflow_local::outbox::{FileOutbox, list as list_outbox};
use eventflow_local::runtime::{
    Progress, PublishError, RunState, Runtime, RuntimeConfig, SystemClock,
};
use eventflow_local::{LocalStore, OpenError};
use eventflow_ports::versions::{self as lifecycle, VersionError};
use eventflow_ports::{
    Canary, ExecutionStore, StoreError, TenantRecord, TenantStore, VersionState, VersionStore,
};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::load::{Loaded, load, read_from_disk, unreadable_message};

/// A refusal: what to print and the exit code.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Refusal {
            code: 1,
            message: message.into(),
        }
    }

    pub(crate) fn io(message: impl Into<String>) -> Self {
        Refusal {
            code: 2,
            message: message.into(),
        }
    }

    pub(crate) fn exit(self) -> ExitCode {
        eprintln!("{}", self.message);
        ExitCode::from(self.code)
    }
}

impl From<anyhow::Error> for Refusal {
    fn from(e: anyhow::Error) -> Self {
        Refusal::io(format!("eventflow: {e:#}"))
    }
}

pub(crate) type Outcome = Result<ExitCode, Refusal>;

pub(crate) fn open_store(dir: &Path) -> Result<LocalStore, Refusal> {
    LocalStore::open(dir).map_err(|e| match e {
        OpenError::InUse { .. } | OpenError::Directory { .. } | OpenError::Database { .. } => {
            Refusal::io(format!("eventflow: {e}"))
        }
    })
}

/// Opens an existing data directory for reading, or says there is none.
pub(crate) fn existing_store(dir: &Path) -> Result<LocalStore, Refusal> {
    if !dir.join("eventflow.redb").exists() {
        return Err(Refusal::invalid(format!(
            "eventflow: there is no data in {}; start a run with `eventflow run`, or point --data-dir at the directory you used",
            dir.display()
        )));
    }
    open_store(dir)
}

/// The HTTP client the actions use.
pub(crate) fn http_client() -> Result<reqwest::Client, Refusal> {
    Ok(reqwest::Client::builder()
        .user_agent(concat!("eventflow/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")?)
}

async fn runtime(store: LocalStore) -> Result<Runtime, Refusal> {
    let outbox = Arc::new(FileOutbox::new(store.dir().join("outbox")));
    let http = http_client()?;
    Runtime::start(
        store,
        Arc::new(SystemClock),
        eventflow_actions::registry(),
        eventflow_actions::actions(http),
        outbox,
        RuntimeConfig::default(),
    )
    .await
    .map_err(|e| Refusal::io(format!("eventflow: cannot start the runtime: {e}")))
}

fn load_definition(file: &Path) -> Result<Definition, Refusal> {
    match load(file, &read_from_disk, &eventflow_actions::registry()) {
        Loaded::Valid(def) => Ok(*def),
        Loaded::Invalid(problems) => Err(Refusal::invalid(
            problems
                .iter()
                .map(|p| format!("{}: {p}", file.display()))
                .collect::<Vec<_>>()
                .join("\n"),
        )),
        Loaded::Unreadable(e) => Err(Refusal::io(unreadable_message(file, &e))),
    }
}

/// The run's input: JSON text, or a JSON/YAML file.
fn read_input(arg: &str) -> Result<Value, Refusal> {
    let trimmed = arg.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return serde_json::from_str(arg).map_err(|e| {
            Refusal::invalid(format!(
                "--input: the JSON text is not valid: {e}; quote it for your shell, or give a file"
            ))
        });
    }
    let path = Path::new(arg);
    let text =
        std::fs::read_to_string(path).map_err(|e| Refusal::io(unreadable_message(path, &e)))?;
    let parsed = match Format::from_path(arg) {
        Format::Json => serde_json::from_str(&text).map_err(|e| e.to_string()),
        Format::Yaml => serde_yaml_ng::from_str(&text).map_err(|e| e.to_string()),
    };
    parsed.map_err(|e| Refusal::invalid(format!("{arg}: the input is not valid: {e}")))
}

/// `WORKFLOW` names a published workflow (an id, no such file, and a data directory exists).
fn published_id(data_dir: &Path, workflow: &Path) -> Option<String> {
    let id = workflow.to_str()?;
    let looks_like_id = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    (looks_like_id && !workflow.exists() && data_dir.join("eventflow.redb").exists())
        .then(|| id.to_owned())
}

/// A cycle is the definition's fault (exit 1); a store that fails is not (exit 2).
fn publish_refused(e: PublishError) -> Refusal {
    match e {
        PublishError::Cycle { .. } => Refusal::invalid(format!("eventflow: {e}")),
        PublishError::Store(e) => Refusal::io(format!("eventflow: {e}")),
    }
}

/// Publishes definition files as new versions (once per content); nothing is published
/// unless every file is valid.
pub(crate) async fn publish(data_dir: &Path, files: &[std::path::PathBuf]) -> Outcome {
    let defs = files
        .iter()
        .map(|f| load_definition(f))
        .collect::<Result<Vec<_>, _>>()?;
    let rt = runtime(open_store(data_dir)?).await?;
    for def in &defs {
        let before = rt
            .store()
            .latest(&def.id)
            .await
            .map_err(|e| Refusal::io(format!("eventflow: {e}")))?
            .map(|v| v.number);
        let record = match rt.publish(def).await {
            Ok(r) => r,
            Err(e) => {
                rt.stop();
                return Err(publish_refused(e));
            }
        };
        let what = if before.is_none_or(|n| record.number > n) {
            "published"
        } else {
            "unchanged"
        };
        println!("{} v{}: {what}", record.workflow_id, record.number);
    }
    rt.stop();
    Ok(ExitCode::SUCCESS)
}

/// Lists the published workflows: latest version and where new starts go.
pub(crate) async fn workflows(data_dir: &Path) -> Outcome {
    let store = existing_store(data_dir)?;
    let ids = store
        .workflows()
        .await
        .map_err(|e| Refusal::io(format!("eventflow: {e}")))?;
    for id in ids {
        let latest = store
            .latest(&id)
            .await
            .map_err(|e| Refusal::io(format!("eventflow: {e}")))?;
        let alias = lifecycle::current_alias(&store, &id)
            .await
            .map_err(refused)?;
        let Some(latest) = latest else { continue };
        let canary = alias
            .canary
            .map(|c| format!(", v{} takes {}%", c.version, c.weight))
            .unwrap_or_default();
        println!(
            "{id:<28} latest v{:<4} new starts v{}{canary}  {}",
            latest.number, alias.active, latest.definition.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Every valid definition beside `file` (so `workflow.start` finds its targets).
fn siblings(file: &Path) -> Vec<Definition> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut defs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_def = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "json" | "yaml" | "yml"));
        if is_def
            && path != file
            && let Loaded::Valid(def) = load(&path, &read_from_disk, &eventflow_actions::registry())
        {
            defs.push(*def);
        }
    }
    defs
}

pub(crate) async fn run(
    data_dir: &Path,
    workflow: &Path,
    input: &str,
    json_out: bool,
    follow: u64,
) -> Outcome {
    // Everything that can refuse the request, before anything is written.
    let published = published_id(data_dir, workflow);
    let def = match &published {
        Some(_) => None,
        None => Some(load_definition(workflow)?),
    };
    let input = read_input(input)?;
    let registry = eventflow_actions::registry();
    let store = match &published {
        Some(_) => Some(open_store(data_dir)?),
        None => None,
    };
    let def = match (def, &published, &store) {
        (Some(def), _, _) => def,
        (None, Some(id), Some(store)) => {
            if store
                .latest(id)
                .await
                .map_err(|e| Refusal::io(format!("eventflow: {e}")))?
                .is_none()
            {
                return Err(Refusal::invalid(format!(
                    "eventflow: {id} is neither a definition file nor a workflow published in {}; give the path of its file",
                    data_dir.display()
                )));
            }
            // The alias decides which version (a canary takes its share).
            let key = format!("cli/{}", uuid_like());
            let number = lifecycle::version_for_start(store, id, None, &key)
                .await
                .map_err(refused)?;
            store
                .version(id, number)
                .await
                .map_err(|e| Refusal::io(format!("eventflow: {e}")))?
                .ok_or_else(|| Refusal::io("eventflow: the version vanished from the store"))?
                .definition
        }
        _ => return Err(Refusal::io("eventflow: no workflow to run")),
    };
    let check = Version::compile(def.clone(), 0, &registry).map_err(|p| {
        Refusal::invalid(
            p.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    if let Err(problems) = check.check_input(&input) {
        return Err(Refusal::invalid(
            problems
                .iter()
                .map(|p| format!("input {p}"))
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
    let store = match store {
        Some(store) => store,
        None => open_store(data_dir)?,
    };
    let rt = runtime(store).await?;
    if published.is_none() {
        for sibling in siblings(workflow) {
            rt.publish(&sibling).await.map_err(publish_refused)?;
        }
    }
    let record = rt.publish(&def).await.map_err(publish_refused)?;
    // A deprecated or retired version starts nothing new, even from its file.
    lifecycle::version_for_start(rt.store(), &record.workflow_id, Some(record.number), "")
        .await
        .map_err(refused)?;
    let version = rt
        .version(&record.workflow_id, record.number)
        .await
        .map_err(|e| Refusal::io(format!("eventflow: {e}")))?;
    let mut progress = rt.subscribe();
    let id = rt
        .start_run(version.clone(), input, None)
        .await
        .map_err(|e| Refusal::invalid(format!("eventflow: {e}")))?;
    let mut view = View::new(!json_out, version);
    view.line(format!(
        "run {id} of {} v{} started (data in {})",
        record.workflow_id,
        record.number,
        data_dir.display()
    ));
    let end = follow_run(&rt, &id, &mut progress, &mut view, follow).await;
    let cp = rt
        .store()
        .checkpoint(&id)
        .await
        .map_err(|e| Refusal::io(format!("eventflow: {e}")))?
        .ok_or_else(|| Refusal::io("eventflow: the run vanished from the store"))?;
    if json_out {
        let history = rt
            .store()
            .history(&id)
            .await
            .map_err(|e| Refusal::io(format!("eventflow: {e}")))?;
        println!(
            "{}",
            serde_json::to_string_pretty(&execution_json(&cp, &history)).unwrap_or_default()
        );
    } else {
        view.summary(&cp, end.as_ref());
    }
    Ok(exit_for(&cp, end.as_ref()))
}

fn exit_for(cp: &Checkpoint, end: Option<&Stop>) -> ExitCode {
    match (cp.status, end) {
        (RunStatus::Completed | RunStatus::CompletedWithErrors, _) => ExitCode::SUCCESS,
        (_, Some(Stop::Waiting(_) | Stop::Idle(_))) => ExitCode::SUCCESS,
        _ => ExitCode::from(3),
    }
}

/// Why following stopped.
#[derive(Debug, Clone)]
enum Stop {
    Finished,
    Waiting(DateTime<Utc>),
    Idle(RunStatus),
}

async fn follow_run(
    rt: &Runtime,
    id: &str,
    progress: &mut tokio::sync::broadcast::Receiver<Progress>,
    view: &mut View,
    follow: u64,
) -> Option<Stop> {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            p = progress.recv() => match p {
                Ok(p) if p.execution_id == id => {
                    view.entry(&p.entry, rt, id).await;
                    if p.status.is_terminal() {
                        return Some(Stop::Finished);
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            },
            _ = tick.tick() => match rt.state(id).await {
                RunState::Finished(_) => return Some(Stop::Finished),
                RunState::WaitingUntil(at) => {
                    let wait = (at - Utc::now()).num_milliseconds();
                    if wait > i64::try_from(follow.saturating_mul(1000)).unwrap_or(i64::MAX) {
                        return Some(Stop::Waiting(at));
                    }
                }
                RunState::Idle(status) => return Some(Stop::Idle(status)),
                RunState::Busy | RunState::Unknown => {}
            },
        }
    }
}

/// Live lines and progress bars of one run.
struct View {
    live: bool,
    bars: MultiProgress,
    fans: HashMap<String, ProgressBar>,
    started: HashMap<String, DateTime<Utc>>,
    version: Arc<Version>,
    clock: Instant,
}

impl View {
    fn new(live: bool, version: Arc<Version>) -> Self {
        let bars = MultiProgress::new();
        if !std::io::stderr().is_terminal() {
            bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        View {
            live,
            bars,
            fans: HashMap::new(),
            started: HashMap::new(),
            version,
            clock: Instant::now(),
        }
    }

    fn line(&self, text: String) {
        if !self.live {
            return;
        }
        if self.bars.is_hidden() {
            println!("{text}");
        } else {
            let _ = self.bars.println(text);
        }
    }

    fn is_fan(&self, step: &str) -> bool {
        self.version
            .step_index(step)
            .is_some_and(|i| self.version.steps()[i].for_each.is_some())
    }

    async fn entry(&mut self, entry: &HistoryEntry, rt: &Runtime, id: &str) {
        for change in &entry.changes {
            match change {
                Change::Step {
                    step,
                    from,
                    to,
                    attempt,
                    error,
                    ..
                } => {
                    self.step_change(entry.at, step, *from, *to, *attempt, error.as_ref(), rt, id)
                        .await;
                }
                Change::Attempt {
                    step,
                    item,
                    attempt,
                    outcome,
                    error,
                } => match outcome {
                    AttemptOutcome::RetryScheduled => {
                        let what = item.map(|i| format!(" item {i}")).unwrap_or_default();
                        let e = error
                            .as_ref()
                            .map(|e| format!("{}: {}", e.name, e.message))
                            .unwrap_or_default();
                        self.line(format!(
                            "  ↻ {step}{what} attempt {attempt} failed ({e}); retrying"
                        ));
                    }
                    AttemptOutcome::Succeeded | AttemptOutcome::Failed if item.is_some() => {
                        if let Some(bar) = self.fans.get(step) {
                            bar.inc(1);
                        }
                    }
                    AttemptOutcome::CompensationFailed
                    | AttemptOutcome::CompensationRetryScheduled => {
                        let e = error
                            .as_ref()
                            .map(|e| format!("{}: {}", e.name, e.message))
                            .unwrap_or_default();
                        self.line(format!(
                            "  ↶ compensation of {step} attempt {attempt} failed ({e})"
                        ));
                    }
                    _ => {}
                },
                Change::Run { to, .. } => match to {
                    RunStatus::Compensating => {
                        self.line("  ↶ rolling back: compensating what succeeded".into())
                    }
                    RunStatus::Paused => self.line("  ⏸ run paused".into()),
                    RunStatus::WaitingForDependency => {
                        self.line("  ⧗ waiting for the workflows it depends on".into())
                    }
                    _ => {}
                },
                Change::Dependency {
                    workflow, status, ..
                } => self.line(format!("  ⧗ dependency {workflow} {}", status.as_str())),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn step_change(
        &mut self,
        at: DateTime<Utc>,
        step: &str,
        from: StepStatus,
        to: StepStatus,
        attempt: u32,
        error: Option<&eventflow_engine::StepError>,
        rt: &Runtime,
        id: &str,
    ) {
        match to {
            StepStatus::Running if from != StepStatus::Running => {
                self.started.entry(step.to_owned()).or_insert(at);
                if self.is_fan(step) && !self.fans.contains_key(step) {
                    let total = rt
                        .store()
                        .checkpoint(id)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|cp| cp.step(step).and_then(|s| s.fan.as_ref().map(|f| f.total)))
                        .unwrap_or(0);
                    let bar = self.bars.add(ProgressBar::new(u64::from(total)));
                    bar.set_style(
                        ProgressStyle::with_template("  {prefix:24} [{bar:30}] {pos}/{len} items")
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    bar.set_prefix(step.to_owned());
                    self.fans.insert(step.to_owned(), bar);
                    self.line(format!("  ▶ {step}: for each of {total} items"));
                }
            }
            StepStatus::Waiting if from != StepStatus::Waiting => {
                self.line(format!("  ⏳ {step} waiting"));
            }
            StepStatus::Succeeded
            | StepStatus::Failed
            | StepStatus::Skipped
            | StepStatus::Cancelled => {
                if let Some(bar) = self.fans.remove(step) {
                    bar.finish_and_clear();
                }
                let took = self
                    .started
                    .get(step)
                    .map(|s| format!("{:>6} ms", (at - *s).num_milliseconds()))
                    .unwrap_or_default();
                let mark = match to {
                    StepStatus::Succeeded => "✔",
                    StepStatus::Failed => "✘",
                    _ => "·",
                };
                let why = error
                    .map(|e| format!("  {}: {}", e.name, e.message))
                    .unwrap_or_default();
                let tries = if self.is_fan(step) || to == StepStatus::Skipped {
                    String::new()
                } else {
                    format!("attempt {attempt}")
                };
                self.line(format!(
                    "  {mark} {step:24} {:<10} {tries:<9} {took}{why}",
                    to.as_str()
                ));
            }
            StepStatus::Compensating => self.line(format!("  ↶ {step}: compensating")),
            StepStatus::Compensated => self.line(format!("  ↶ {step:24} compensated")),
            StepStatus::CompensationFailed => {
                let why = error
                    .map(|e| format!("  {}: {}", e.name, e.message))
                    .unwrap_or_default();
                self.line(format!("  ✘ {step:24} compensation failed{why}"));
            }
            _ => {}
        }
    }

    fn summary(&self, cp: &Checkpoint, end: Option<&Stop>) {
        let count = |s: StepStatus| cp.steps.iter().filter(|x| x.status == s).count();
        let retries: u32 = cp
            .steps
            .iter()
            .map(|s| s.retries + s.fan.as_ref().map_or(0, |f| f.retries))
            .sum();
        println!();
        println!("status       {}", cp.status.as_str());
        println!("duration     {:.2?}", self.clock.elapsed());
        println!(
            "steps        {} succeeded, {} skipped, {} failed, {} compensated ({} in all)",
            count(StepStatus::Succeeded),
            count(StepStatus::Skipped),
            count(StepStatus::Failed),
            count(StepStatus::Compensated),
            cp.steps.len()
        );
        println!("retries      {retries}");
        if let Some(e) = &cp.error {
            println!(
                "error        {} failed: {}: {}",
                e.step, e.error.name, e.error.message
            );
        }
        if let Some(e) = &cp.compensation_error {
            println!(
                "compensation {} failed: {}: {}",
                e.step, e.error.name, e.error.message
            );
        }
        match end {
            Some(Stop::Waiting(at)) => println!(
                "waiting      until {at} (in {}); continue with: eventflow resume",
                human(*at - Utc::now())
            ),
            Some(Stop::Idle(status)) => {
                println!("waiting      for an operator (run is {})", status.as_str())
            }
            _ => {}
        }
        println!("run          {}", cp.execution_id);
    }
}

fn human(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

async fn checkpoint_of(store: &LocalStore, id: &str) -> Result<Checkpoint, Refusal> {
    store
        .checkpoint(id)
        .await
        .map_err(|e| Refusal::io(format!("eventflow: {e}")))?
        .ok_or_else(|| {
            Refusal::invalid(format!(
                "eventflow: there is no run {id} in this data directory; `eventflow list` shows the runs"
            ))
        })
}

pub(crate) async fn status(data_dir: &Path, id: &str, json_out: bool) -> Outcome {
    let store = existing_store(data_dir)?;
    let cp = checkpoint_of(&store, id).await?;
    if json_out {
        let history = store
            .history(id)
            .await
            .map_err(|e| Refusal::io(format!("eventflow: {e}")))?;
        println!(
            "{}",
            serde_json::to_string_pretty(&execution_json(&cp, &history)).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "run {} of {} v{}: {}",
        cp.execution_id,
        cp.workflow_id,
        cp.version,
        cp.status.as_str()
    );
    for s in &cp.steps {
        let fan = s
            .fan
            .as_ref()
            .map(|f| {
                format!(
                    "  items {}/{} ok, {} failed",
                    f.succeeded, f.total, f.failed
                )
            })
            .unwrap_or_default();
        let err = s
            .error
            .as_ref()
            .map(|e| format!("  {}: {}", e.name, e.message))
            .unwrap_or_default();
        println!(
            "  {:24} {:<20} attempt {}{fan}{err}",
            s.id,
            s.status.as_str(),
            s.attempt
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn history(data_dir: &Path, id: &str) -> Outcome {
    let store = existing_store(data_dir)?;
    checkpoint_of(&store, id).await?;
    for h in store
        .history(id)
        .await
        .map_err(|e| Refusal::io(format!("eventflow: {e}")))?
    {
        let event = serde_json::to_value(&h.event).unwrap_or_default();
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("event");
        let changes: Vec<String> = h.changes.iter().map(describe).collect();
        println!(
            "{:>4} {} {:<22} {}",
            h.seq,
            h.at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
            kind,
            changes.join("; ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(c: &Change) -> String {
    match c {
        Change::Run { from, to } => format!("run {} -> {}", from.as_str(), to.as_str()),
        Change::Step {
            step,
            from,
            to,
            attempt,
            ..
        } => {
            format!(
                "{step} {} -> {} (attempt {attempt})",
                from.as_str(),
                to.as_str()
            )
        }
        Change::Attempt {
            step,
            item,
            attempt,
            outcome,
            ..
        } => {
            let item = item.map(|i| format!("[{i}]")).unwrap_or_default();
            format!(
                "{step}{item} #{attempt} {}",
                serde_json::to_value(outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )
        }
        Change::Dependency {
            workflow,
            execution_id,
            status,
        } => format!(
            "dependency {workflow} {} {}",
            execution_id.as_deref().unwrap_or("-"),
            status.as_str()
        ),
    }
}

pub(crate) async fn list(data_dir: &Path, status: Option<&str>, workflow: Option<&str>) -> Outcome {
    let status = match status {
        Some(s) => Some(serde_json::from_value::<RunStatus>(Value::from(s)).map_err(|_| {
            Refusal::invalid(format!(
                "--status {s}: not a run status; use running, waiting_for_dependency, paused, compensating, completed, completed_with_errors, failed, compensated, cancelled or needs_attention"
            ))
        })?),
        None => None,
    };
    let store = existing_store(data_dir)?;
    let runs = store
        .list(status, workflow)
        .await
        .map_err(|e| Refusal::io(format!("eventflow: {e}")))?;
    for r in &runs {
        println!(
            "{}  {:<24} v{:<3} {:<22} {}",
            r.execution_id,
            r.workflow_id,
            r.version,
            r.status.as_str(),
            r.created_at.format("%Y-%m-%d %H:%M:%S")
        );
    }
    if runs.is_empty() {
        eprintln!("no runs");
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn resume(data_dir: &Path, follow: u64) -> Outcome {
    let store = existing_store(data_dir)?;
    let unfinished: Vec<String> = store
        .list(None, None)
        .await
        .map_err(|e| Refusal::io(format!("eventflow: {e}")))?
        .into_iter()
        .filter(|r| !r.status.is_terminal())
        .map(|r| r.execution_id)
        .collect();
    let rt = runtime(store).await?;
    if unfinished.is_empty() {
        println!("no unfinished runs");
        return Ok(ExitCode::SUCCESS);
    }
    let mut progress = rt.subscribe();
    for id in &unfinished {
        let cp = checkpoint_of(rt.store(), id).await?;
        let version = rt
            .version(&cp.workflow_id, cp.version)
            .await
            .map_err(|e| Refusal::io(format!("eventflow: {e}")))?;
        let mut view = View::new(true, version);
        view.line(format!(
            "resuming {id} of {} ({})",
            cp.workflow_id,
            cp.status.as_str()
        ));
        let end = follow_run(&rt, id, &mut progress, &mut view, follow).await;
        let cp = checkpoint_of(rt.store(), id).await?;
        view.summary(&cp, end.as_ref());
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn outbox(data_dir: &Path) -> Outcome {
    let dir: PathBuf = data_dir.join("outbox");
    let entries =
        list_outbox(&dir).map_err(|e| anyhow!("cannot read the outbox {}: {e}", dir.display()))?;
    for e in &entries {
        println!("{}  {:<7} to {:<40} {}", e.date, e.kind, e.to, e.subject);
    }
    if entries.is_empty() {
        eprintln!("the outbox in {} is empty", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A key unique to this start, for the alias's canary choice.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{}", std::process::id())
}

fn refused(e: VersionError) -> Refusal {
    match e {
        VersionError::Store(e) => Refusal::io(format!("eventflow: {e}")),
        other => Refusal::invalid(format!("eventflow: {other}")),
    }
}

pub(crate) async fn versions(data_dir: &Path, workflow: &str) -> Outcome {
    let store = existing_store(data_dir)?;
    let all = store
        .versions(workflow)
        .await
        .map_err(|e| Refusal::io(format!("eventflow: {e}")))?;
    if all.is_empty() {
        return Err(refused(VersionError::NoSuchWorkflow(workflow.to_owned())));
    }
    let alias = lifecycle::current_alias(&store, workflow)
        .await
        .map_err(refused)?;
    for (v, state) in &all {
        let state = match state {
            VersionState::Active => "active",
            VersionState::Deprecated => "deprecated",
            VersionState::Retired => "retired",
        };
        let role = if v.number == alias.active {
            "  <- new starts".to_owned()
        } else if let Some(c) = alias.canary.filter(|c| c.version == v.number) {
            format!("  <- canary, {}% of new starts", c.weight)
        } else {
            String::new()
        };
        println!(
            "v{:<4} {:<11} {}  {}{role}",
            v.number,
            state,
            v.published_at.format("%Y-%m-%d %H:%M:%S"),
            &v.hash[..12.min(v.hash.len())]
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn alias(
    data_dir: &Path,
    workflow: &str,
    active: Option<u32>,
    canary: Option<u32>,
    weight: Option<u8>,
) -> Outcome {
    let store = existing_store(data_dir)?;
    let alias = match active {
        Some(active) => {
            let canary = canary
                .zip(weight)
                .map(|(version, weight)| Canary { version, weight });
            lifecycle::set_alias(&store, workflow, active, canary)
                .await
                .map_err(refused)?
        }
        None => lifecycle::current_alias(&store, workflow)
            .await
            .map_err(refused)?,
    };
    match alias.canary {
        Some(c) => println!(
            "{}: new starts use v{}, and v{} takes {}% of them",
            alias.workflow_id, alias.active, c.version, c.weight
        ),
        None => println!("{}: new starts use v{}", alias.workflow_id, alias.active),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn deprecate(data_dir: &Path, workflow: &str, version: u32) -> Outcome {
    let store = existing_store(data_dir)?;
    lifecycle::deprecate(&store, workflow, version)
        .await
        .map_err(refused)?;
    println!("{workflow} v{version} is deprecated: it starts nothing new; its runs go on");
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn retire(data_dir: &Path, workflow: &str, version: u32) -> Outcome {
    let store = existing_store(data_dir)?;
    lifecycle::retire(&store, &store, workflow, version)
        .await
        .map_err(refused)?;
    println!("{workflow} v{version} is retired");
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn tenant_create(data_dir: &Path, name: &str) -> Outcome {
    let key = eventflow_api::tenant::generate(name).map_err(|_| {
        Refusal::invalid(format!(
            "eventflow: `{name}` is not a tenant name; use lower case letters, digits and `-` (at most 64)"
        ))
    })?;
    let store = open_store(data_dir)?;
    let record = TenantRecord {
        tenant: key.tenant.clone(),
        key_hash: key.hash.clone(),
        created_at: Utc::now(),
        webhook_secret: key.webhook_secret.clone(),
    };
    match store.create_tenant(&record).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            return Err(Refusal::invalid(format!(
                "eventflow: the tenant {name} exists; its key was shown when it was created and is not kept"
            )));
        }
        Err(e) => return Err(Refusal::io(format!("eventflow: {e}"))),
    }
    println!("{}", key.key);
    println!("{}", key.webhook_secret);
    eprintln!(
        "tenant {name} created; above are its API key (send it as 'Authorization: Bearer ...') and its webhook signing secret, shown once: keep them safe"
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn migrate(
    data_dir: &Path,
    workflow: &str,
    from: u32,
    to: u32,
    mapping: Option<&Path>,
    dry_run: bool,
) -> Outcome {
    let mapping: eventflow_engine::migrate::Mapping = match mapping {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Refusal::io(unreadable_message(path, &e)))?;
            let mut de = serde_json::Deserializer::from_str(&text);
            serde_path_to_error::deserialize(&mut de).map_err(|e| {
                Refusal::invalid(format!(
                    "{}: $.{}: {}; a mapping has renamed, supplied_outputs, accept_lost_compensations and note",
                    path.display(),
                    e.path(),
                    e.inner()
                ))
            })?
        }
        None => Default::default(),
    };
    let store = existing_store(data_dir)?;
    for n in [from, to] {
        if store
            .version(workflow, n)
            .await
            .map_err(|e| Refusal::io(format!("eventflow: {e}")))?
            .is_none()
        {
            return Err(refused(VersionError::NoSuchVersion {
                workflow: workflow.to_owned(),
                number: n,
            }));
        }
    }
    let runs: Vec<String> = store
        .list(None, Some(workflow))
        .await
        .map_err(|e| Refusal::io(format!("eventflow: {e}")))?
        .into_iter()
        .filter(|r| r.version == from && !r.status.is_terminal())
        .map(|r| r.execution_id)
        .collect();
    let rt = runtime(store).await?;
    let target = rt
        .version(workflow, to)
        .await
        .map_err(|e| Refusal::io(format!("eventflow: {e}")))?;
    let mapping = Arc::new(mapping);
    let mut refused_runs = 0;
    for id in &runs {
        match rt
            .migrate(id, Arc::clone(&target), Arc::clone(&mapping), dry_run)
            .await
        {
            Ok(s) => {
                let verb = if dry_run { "can move" } else { "moved" };
                let mut what = Vec::new();
                if !s.renamed.is_empty() {
                    what.push(format!(
                        "renamed {}",
                        s.renamed
                            .iter()
                            .map(|(a, b)| format!("{a}->{b}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                for (label, list) in [
                    ("added", &s.added),
                    ("supplied", &s.supplied),
                    ("dropped", &s.dropped),
                    ("compensation lost", &s.lost_compensations),
                ] {
                    if !list.is_empty() {
                        what.push(format!("{label} {}", list.join(", ")));
                    }
                }
                println!(
                    "{id}: {verb} v{} -> v{} ({})",
                    s.from,
                    s.to,
                    if what.is_empty() {
                        "same steps".to_owned()
                    } else {
                        what.join("; ")
                    }
                );
            }
            Err(reasons) => {
                refused_runs += 1;
                println!("{id}: cannot move");
                for r in reasons {
                    let step = r.step.map(|s| format!("{s}: ")).unwrap_or_default();
                    println!("    {step}{}", r.message);
                }
            }
        }
    }
    rt.stop();
    if runs.is_empty() {
        eprintln!("no unfinished run of {workflow} v{from}");
    }
    Ok(if refused_runs > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The output an operator gives a skipped step.
pub(crate) fn skip_output(text: Option<&str>) -> Result<Option<Value>, Refusal> {
    text.map(|t| {
        serde_json::from_str(t).map_err(|e| {
            Refusal::invalid(format!(
                "--output: not valid JSON: {e}; quote it for your shell"
            ))
        })
    })
    .transpose()
}

/// Sends an operator's event to a run and follows what it sets off.
pub(crate) async fn operate(data_dir: &Path, id: &str, kind: EventKind, follow: u64) -> Outcome {
    let store = existing_store(data_dir)?;
    let cp = checkpoint_of(&store, id).await?;
    if let EventKind::RetryStep { step } | EventKind::SkipStep { step, .. } = &kind
        && cp.step(step).is_none()
    {
        return Err(Refusal::invalid(format!(
            "eventflow: run {id} has no step {step}; `eventflow status {id}` lists its steps"
        )));
    }
    if let EventKind::Rollback { to: Some(step) } = &kind
        && cp.step(step).is_none()
    {
        return Err(Refusal::invalid(format!(
            "eventflow: run {id} has no step {step}"
        )));
    }
    let rt = runtime(store).await?;
    let version = rt
        .version(&cp.workflow_id, cp.version)
        .await
        .map_err(|e| Refusal::io(format!("eventflow: {e}")))?;
    let mut progress = rt.subscribe();
    let before = cp.seq;
    rt.send_event(id, kind, "cli");
    let mut view = View::new(true, version);
    let end = follow_run(&rt, id, &mut progress, &mut view, follow).await;
    let after = checkpoint_of(rt.store(), id).await?;
    if after.seq == before {
        return Err(Refusal::invalid(format!(
            "eventflow: run {id} is {}: that does not apply to it now, and nothing changed",
            after.status.as_str()
        )));
    }
    view.summary(&after, end.as_ref());
    Ok(exit_for(&after, end.as_ref()))
}
