//! The scheduler of the embedded runtime: starts workflows from their cron, rate and
//! event-relative triggers.
//!
//! The rules of when a trigger fires (time zones, daylight saving, catch-up, pause) are the
//! engine's ([`eventflow_engine::schedule`]); this module keeps their state in the store and
//! starts the runs:
//!
//! - [`Scheduler::sync`] reconciles the stored schedules with the triggers of each workflow's
//!   active version (one schedule per cron, rate or event-relative trigger, id
//!   `<workflow>.<trigger index>`), and plans the event-relative runs of every record of the
//!   [`EVENTS`] collection.
//! - [`Scheduler::tick`] starts what is due, each slot through [`Workflows::start`] with an
//!   idempotency key made of the schedule id and the slot's instant, and only then records
//!   that it fired: a tick that runs twice, or a process that dies in between, starts the
//!   slot's run once. The keys are `schedule/<schedule id>@<slot>` and, for a planned run,
//!   `schedule/<schedule id>/<run key>@<instant>`, instants in RFC 3339 UTC with milliseconds.
//! - [`Scheduler::event_changed`] re-plans an event's runs when the record is put or deleted;
//!   [`Scheduler::spawn`] runs a loop that listens for record writes and ticks when due.
//!
//! The input of a cron or rate run is the trigger's `input` (or `{}`). The input of an
//! event-relative run is the event record as it is when the run starts: its own fields at
//! the top level, and the whole record under `event` (so a record written by event-launch
//! gives `event` and `organizer`; a workflow that needs more, like `attendees`, finds them
//! when the record holds them, and otherwise the start is refused as invalid input).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::SecondsFormat;
use eventflow_engine::schedule::{self, PlannedEntry, Schedule, ScheduleError};
use eventflow_engine::{Timestamp, Trigger};
use eventflow_ports::versions::{self, VersionError};
use eventflow_ports::{ActionError, Clock, RecordStore, StoreError, VersionStore, Workflows};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Mutex, Notify, broadcast, watch};
use tokio::task::JoinHandle;

use crate::runtime::Runtime;
use crate::schedules::PlanChange;
use crate::store::LocalStore;

/// The collection whose records event-relative triggers are planned on.
pub const EVENTS: &str = "events";

/// The loop looks again at least this often, whatever it expects.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// ... and at most this often, so a slot that keeps failing to start is no busy loop.
const MIN_SLEEP: Duration = Duration::from_secs(1);

/// A refused scheduler operation.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("there is no schedule `{id}`; `eventflow schedules` lists the schedules and their ids")]
    UnknownSchedule { id: String },
    #[error("schedule `{id}`: {source}")]
    Schedule {
        id: String,
        #[source]
        source: ScheduleError,
    },
    #[error("the scheduler cannot use the store: {0}")]
    Store(#[from] StoreError),
}

/// What kind of trigger a schedule follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    Cron,
    Rate,
    EventRelative,
}

impl ScheduleKind {
    /// The kind of a trigger the scheduler follows; `None` for webhooks.
    pub fn of(trigger: &Trigger) -> Option<ScheduleKind> {
        match trigger {
            Trigger::Cron { .. } => Some(ScheduleKind::Cron),
            Trigger::Rate { .. } => Some(ScheduleKind::Rate),
            Trigger::EventRelative { .. } => Some(ScheduleKind::EventRelative),
            _ => None,
        }
    }

    /// The name used in listings and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleKind::Cron => "cron",
            ScheduleKind::Rate => "rate",
            ScheduleKind::EventRelative => "event_relative",
        }
    }
}

/// A schedule as `eventflow schedules` and the API show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleView {
    pub id: String,
    pub workflow_id: String,
    pub kind: ScheduleKind,
    pub trigger: Trigger,
    pub paused: bool,
    /// The next slot; for an event-relative schedule, its earliest planned run.
    pub next_due: Option<Timestamp>,
    pub last_fired: Option<Timestamp>,
    /// The planned runs of an event-relative schedule, earliest first.
    pub planned: Vec<PlannedView>,
}

/// One planned run of an event-relative schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedView {
    /// `<event id>/<field><offset>`, e.g. `evt-1/starts_at-7d`.
    pub key: String,
    /// The event record's key in the `events` collection.
    pub record: String,
    pub fire_at: Timestamp,
}

/// Something that could not be planned, and why; the rest was planned.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanProblem {
    pub schedule_id: String,
    /// The event record, for an event-relative plan.
    pub record: Option<String>,
    pub error: ScheduleError,
}

impl std::fmt::Display for PlanProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.record {
            Some(record) => write!(
                f,
                "schedule `{}`, event `{record}`: {}",
                self.schedule_id, self.error
            ),
            None => write!(f, "schedule `{}`: {}", self.schedule_id, self.error),
        }
    }
}

impl std::error::Error for PlanProblem {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// What [`Scheduler::sync`] or [`Scheduler::event_changed`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncReport {
    /// Schedules looked at.
    pub schedules: usize,
    /// Event-relative runs newly planned (or moved).
    pub planned: usize,
    /// Event-relative runs cancelled (their event moved or is gone).
    pub cancelled: usize,
    pub problems: Vec<PlanProblem>,
}

/// One run a tick started (or found already started for its slot).
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    pub schedule_id: String,
    pub workflow_id: String,
    /// The slot (or planned instant) the run is for.
    pub slot: Timestamp,
    /// The planned run's key, for an event-relative start.
    pub planned: Option<String>,
    /// Earlier slots passed while the host was down, dropped (catch-up fires only the latest).
    pub skipped: u32,
    pub execution_id: String,
}

/// A slot whose run could not be started.
#[derive(Debug, Clone, PartialEq)]
pub struct Failed {
    pub schedule_id: String,
    pub slot: Option<Timestamp>,
    pub planned: Option<String>,
    /// A retryable error leaves the slot due, to be tried on the next tick; a terminal one
    /// (an input the workflow refuses, a deprecated version) gives the slot up.
    pub error: ActionError,
}

/// What [`Scheduler::tick`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickReport {
    pub started: Vec<Started>,
    pub failed: Vec<Failed>,
}

/// The scheduler over a local [`Runtime`]; cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    runtime: Runtime,
    clock: Arc<dyn Clock>,
    /// One operation at a time: a tick never interleaves with another tick or a re-plan, so
    /// two ticks cannot both decide to start a slot.
    busy: Arc<Mutex<()>>,
    nudge: Arc<Notify>,
    shutdown: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("runtime", &self.runtime)
            .finish()
    }
}

impl Scheduler {
    /// A scheduler starting runs on `runtime`, reading time from `clock` (the runtime's).
    pub fn new(runtime: Runtime, clock: Arc<dyn Clock>) -> Scheduler {
        Scheduler {
            runtime,
            clock,
            busy: Arc::new(Mutex::new(())),
            nudge: Arc::new(Notify::new()),
            shutdown: Arc::new(watch::channel(false).0),
        }
    }

    fn store(&self) -> &LocalStore {
        self.runtime.store()
    }

    /// Reconciles the stored schedules with the active versions' triggers and plans the
    /// event-relative runs of every event record; call it after a publish or an alias change.
    pub async fn sync(&self) -> Result<SyncReport, SchedulerError> {
        let report = {
            let _one = self.busy.lock().await;
            sync_store(self.store(), self.clock.now()).await?
        };
        self.nudge.notify_one();
        Ok(report)
    }

    /// Re-plans the runs of the event record `key` (`record: None` when it was deleted).
    pub async fn event_changed(
        &self,
        key: &str,
        record: Option<&Value>,
    ) -> Result<SyncReport, SchedulerError> {
        let report = {
            let _one = self.busy.lock().await;
            let store = self.store();
            let now = self.clock.now();
            let mut report = SyncReport::default();
            for schedule in store.schedules().await? {
                if ScheduleKind::of(&schedule.trigger) != Some(ScheduleKind::EventRelative) {
                    continue;
                }
                report.schedules += 1;
                let old: Vec<PlannedEntry> = store
                    .planned(Some(&schedule.id))
                    .await?
                    .into_iter()
                    .filter(|e| e.record == key)
                    .collect();
                replan_record(store, &schedule, key, record, &old, now, &mut report).await?;
            }
            report
        };
        self.nudge.notify_one();
        Ok(report)
    }

    /// Starts every run due at `now`: the latest passed slot of each cron and rate schedule
    /// and every planned event-relative run, except those of paused schedules.
    pub async fn tick(&self, now: Timestamp) -> Result<TickReport, SchedulerError> {
        let _one = self.busy.lock().await;
        let store = self.store();
        let mut report = TickReport::default();
        let schedules = store.schedules().await?;
        for s in &schedules {
            if matches!(
                ScheduleKind::of(&s.trigger),
                Some(ScheduleKind::Cron | ScheduleKind::Rate)
            ) {
                self.fire_timed(s, now, &mut report).await?;
            }
        }
        let by_id: HashMap<&str, &Schedule> =
            schedules.iter().map(|s| (s.id.as_str(), s)).collect();
        let mut fired: BTreeMap<String, Timestamp> = BTreeMap::new();
        for entry in store.due_planned(now).await? {
            let Some(schedule) = by_id.get(entry.schedule_id.as_str()) else {
                continue;
            };
            if schedule.paused {
                continue;
            }
            if self.fire_planned(&entry, &mut report).await? {
                let last = fired
                    .entry(entry.schedule_id.clone())
                    .or_insert(entry.run.fire_at);
                *last = (*last).max(entry.run.fire_at);
            }
        }
        let touched: Vec<Schedule> = fired
            .into_iter()
            .filter_map(|(id, at)| {
                let mut s = (*by_id.get(id.as_str())?).clone();
                s.last_fired = Some(s.last_fired.map_or(at, |l| l.max(at)));
                Some(s)
            })
            .collect();
        if !touched.is_empty() {
            store.save_schedules(touched, Vec::new()).await?;
        }
        Ok(report)
    }

    /// Fires a cron or rate schedule if a slot is due, then stores its new state.
    async fn fire_timed(
        &self,
        s: &Schedule,
        now: Timestamp,
        report: &mut TickReport,
    ) -> Result<(), SchedulerError> {
        let due = match schedule::due(s, now) {
            Ok(due) => due,
            Err(error) => {
                report.failed.push(Failed {
                    schedule_id: s.id.clone(),
                    slot: None,
                    planned: None,
                    error: ActionError::terminal("BadSchedule", error.to_string()),
                });
                return Ok(());
            }
        };
        let mut keep_slot = false;
        for firing in &due.firings {
            let key = format!("schedule/{}@{}", firing.schedule_id, instant(firing.slot));
            let input = firing.input.clone().unwrap_or_else(|| json!({}));
            match Workflows::start(&self.runtime, &firing.workflow_id, &input, &key).await {
                Ok(execution_id) => report.started.push(Started {
                    schedule_id: firing.schedule_id.clone(),
                    workflow_id: firing.workflow_id.clone(),
                    slot: firing.slot,
                    planned: None,
                    skipped: firing.skipped,
                    execution_id,
                }),
                Err(error) => {
                    tracing::warn!(schedule = %s.id, slot = %firing.slot, %error, "a scheduled run did not start");
                    keep_slot |= error.retryable;
                    report.failed.push(Failed {
                        schedule_id: firing.schedule_id.clone(),
                        slot: Some(firing.slot),
                        planned: None,
                        error,
                    });
                }
            }
        }
        if !keep_slot && due.schedule != *s {
            self.store()
                .save_schedules(vec![due.schedule], Vec::new())
                .await?;
        }
        Ok(())
    }

    /// Starts one planned event-relative run; `true` when it is done with (started, or given
    /// up on a terminal error) and was removed from the plan.
    async fn fire_planned(
        &self,
        entry: &PlannedEntry,
        report: &mut TickReport,
    ) -> Result<bool, SchedulerError> {
        let store = self.store();
        let done = PlanChange {
            cancel: vec![entry.run.key.clone()],
            add: Vec::new(),
        };
        let Some(record) = store.get(EVENTS, &entry.record).await? else {
            // The event is gone (a delete not yet re-planned): nothing to remind of.
            store.change_plan(&entry.schedule_id, done).await?;
            return Ok(false);
        };
        let key = format!(
            "schedule/{}/{}@{}",
            entry.schedule_id,
            entry.run.key,
            instant(entry.run.fire_at)
        );
        let input = match store.schedule(&entry.schedule_id).await? {
            Some(schedule) => schedule::event_input(&schedule.trigger, &record, entry.run.fire_at),
            None => {
                // The schedule is gone (its trigger dropped, not yet re-planned).
                store.change_plan(&entry.schedule_id, done).await?;
                return Ok(false);
            }
        };
        let input = match input {
            Ok(input) => input,
            Err(e) => {
                tracing::warn!(schedule = %entry.schedule_id, run = %entry.run.key, error = %e, "a planned run's input cannot be made");
                report.failed.push(Failed {
                    schedule_id: entry.schedule_id.clone(),
                    slot: Some(entry.run.fire_at),
                    planned: Some(entry.run.key.clone()),
                    error: ActionError::terminal("InvalidInput", e.to_string()),
                });
                store.change_plan(&entry.schedule_id, done).await?;
                return Ok(true);
            }
        };
        match Workflows::start(&self.runtime, &entry.workflow_id, &input, &key).await {
            Ok(execution_id) => report.started.push(Started {
                schedule_id: entry.schedule_id.clone(),
                workflow_id: entry.workflow_id.clone(),
                slot: entry.run.fire_at,
                planned: Some(entry.run.key.clone()),
                skipped: 0,
                execution_id,
            }),
            Err(error) => {
                tracing::warn!(schedule = %entry.schedule_id, run = %entry.run.key, %error, "a planned run did not start");
                let retry = error.retryable;
                report.failed.push(Failed {
                    schedule_id: entry.schedule_id.clone(),
                    slot: Some(entry.run.fire_at),
                    planned: Some(entry.run.key.clone()),
                    error,
                });
                if retry {
                    return Ok(false);
                }
            }
        }
        store.change_plan(&entry.schedule_id, done).await?;
        Ok(true)
    }

    /// Every schedule, with the planned runs of the event-relative ones.
    pub async fn list(&self) -> Result<Vec<ScheduleView>, SchedulerError> {
        list(self.store()).await
    }

    /// Stops a schedule from firing.
    pub async fn pause(&self, id: &str) -> Result<ScheduleView, SchedulerError> {
        let view = {
            let _one = self.busy.lock().await;
            pause(self.store(), id).await?
        };
        self.nudge.notify_one();
        Ok(view)
    }

    /// Lets a paused schedule fire again; the slots it missed while paused are dropped.
    pub async fn resume(&self, id: &str) -> Result<ScheduleView, SchedulerError> {
        let view = {
            let _one = self.busy.lock().await;
            resume(self.store(), id, self.clock.now()).await?
        };
        self.nudge.notify_one();
        Ok(view)
    }

    /// Asks the loop of [`Scheduler::spawn`] to stop; it ends after what it is doing.
    pub fn stop(&self) {
        self.shutdown.send_replace(true);
    }

    /// Runs the scheduler until [`Scheduler::stop`]: syncs, then ticks whenever something is
    /// due (and at least once a minute), re-planning events as their records are written.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        let mut changes = self.store().subscribe_records();
        let mut stop = self.shutdown.subscribe();
        if let Err(error) = self.sync().await {
            tracing::error!(%error, "the scheduler could not sync its schedules");
        }
        loop {
            if *stop.borrow_and_update() {
                return;
            }
            let now = self.clock.now();
            match self.tick(now).await {
                Ok(report) => {
                    for s in &report.started {
                        tracing::info!(schedule = %s.schedule_id, slot = %s.slot, execution_id = %s.execution_id, "scheduled run started");
                    }
                }
                Err(error) => tracing::error!(%error, "a scheduler tick failed"),
            }
            let wait = match self.next_wake(now).await {
                Ok(Some(at)) => (at - self.clock.now())
                    .to_std()
                    .unwrap_or(MIN_SLEEP)
                    .clamp(MIN_SLEEP, MAX_SLEEP),
                Ok(None) => MAX_SLEEP,
                Err(error) => {
                    tracing::error!(%error, "the scheduler cannot read its schedules");
                    MAX_SLEEP
                }
            };
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            // Wait for the next slot, a nudge, or a change of an event record (which
            // re-plans, then waits again: other collections' writes are no reason to tick).
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    () = self.nudge.notified() => break,
                    _ = stop.changed() => return,
                    change = changes.recv() => match change {
                        Ok(change) if change.collection == EVENTS => {
                            if let Err(error) = self.event_changed(&change.key, change.value.as_ref()).await {
                                tracing::error!(%error, record = %change.key, "an event's runs could not be re-planned");
                            }
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            if let Err(error) = self.sync().await {
                                tracing::error!(%error, "the scheduler could not sync its schedules");
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        }
    }

    /// When the loop should look next: the earliest slot of an unpaused cron or rate schedule,
    /// or the earliest planned run after `now`.
    async fn next_wake(&self, now: Timestamp) -> Result<Option<Timestamp>, SchedulerError> {
        let store = self.store();
        let timed = store
            .schedules()
            .await?
            .into_iter()
            .filter(|s| {
                !s.paused && ScheduleKind::of(&s.trigger) != Some(ScheduleKind::EventRelative)
            })
            .filter_map(|s| s.next_due)
            .min();
        let planned = store.next_planned(now).await?;
        Ok(match (timed, planned) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }
}

/// Reconciles the stored schedules with the triggers of each workflow's active version, and
/// plans the event-relative runs of every record of [`EVENTS`], as of `now`. A schedule whose
/// trigger did not change keeps its state (paused, last fired); one whose trigger is gone is
/// removed with its planned runs. Needs only the store, so `eventflow schedules` can show an
/// up-to-date list without a running scheduler.
pub async fn sync_store(store: &LocalStore, now: Timestamp) -> Result<SyncReport, SchedulerError> {
    let mut report = SyncReport::default();
    let stored: BTreeMap<String, Schedule> = store
        .schedules()
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let mut desired: BTreeMap<String, Schedule> = BTreeMap::new();
    for workflow in store.workflows().await? {
        let alias = match versions::current_alias(store, &workflow).await {
            Ok(alias) => alias,
            Err(VersionError::Store(e)) => return Err(e.into()),
            Err(error) => {
                tracing::warn!(%workflow, %error, "no active version: its triggers are not scheduled");
                continue;
            }
        };
        let Some(version) = store.version(&workflow, alias.active).await? else {
            tracing::warn!(%workflow, version = alias.active, "the active version is missing: its triggers are not scheduled");
            continue;
        };
        for (index, trigger) in version.definition.triggers.into_iter().enumerate() {
            if ScheduleKind::of(&trigger).is_none() {
                continue;
            }
            let id = format!("{workflow}.{index}");
            let schedule = match stored.get(&id) {
                Some(s) if s.trigger == trigger => s.clone(),
                _ => match new_schedule(&id, &workflow, trigger, now) {
                    Ok(s) => s,
                    Err(error) => {
                        report.problems.push(PlanProblem {
                            schedule_id: id,
                            record: None,
                            error,
                        });
                        continue;
                    }
                },
            };
            desired.insert(id, schedule);
        }
    }
    // Gone or changed: removed (with their plans); changed or new: written.
    let remove: Vec<String> = stored
        .iter()
        .filter(|(id, s)| desired.get(*id).is_none_or(|d| d.trigger != s.trigger))
        .map(|(id, _)| id.clone())
        .collect();
    let put: Vec<Schedule> = desired
        .values()
        .filter(|d| stored.get(&d.id).is_none_or(|s| s.trigger != d.trigger))
        .cloned()
        .collect();
    if !remove.is_empty() || !put.is_empty() {
        store.save_schedules(put, remove).await?;
    }
    report.schedules = desired.len();
    let events = store.records(EVENTS).await?;
    for schedule in desired.values() {
        if ScheduleKind::of(&schedule.trigger) != Some(ScheduleKind::EventRelative) {
            continue;
        }
        let mut old: BTreeMap<String, Vec<PlannedEntry>> = BTreeMap::new();
        for entry in store.planned(Some(&schedule.id)).await? {
            old.entry(entry.record.clone()).or_default().push(entry);
        }
        for (key, record) in &events {
            let old = old.remove(key).unwrap_or_default();
            replan_record(store, schedule, key, Some(record), &old, now, &mut report).await?;
        }
        // Runs of records deleted while nobody listened.
        for (key, old) in old {
            replan_record(store, schedule, &key, None, &old, now, &mut report).await?;
        }
    }
    Ok(report)
}

/// Re-plans one event record's runs of one event-relative schedule ([`schedule::plan_record`]).
async fn replan_record(
    store: &LocalStore,
    schedule: &Schedule,
    key: &str,
    record: Option<&Value>,
    old: &[PlannedEntry],
    now: Timestamp,
    report: &mut SyncReport,
) -> Result<(), SchedulerError> {
    let plan = schedule::plan_record(schedule, key, record, old, now);
    if let Some(error) = plan.problem.clone() {
        report.problems.push(PlanProblem {
            schedule_id: schedule.id.clone(),
            record: Some(key.to_owned()),
            error,
        });
    }
    if plan.is_empty() {
        return Ok(());
    }
    report.planned += plan.add.len();
    report.cancelled += plan.cancel.len();
    store
        .change_plan(
            &schedule.id,
            PlanChange {
                cancel: plan.cancel,
                add: plan.add,
            },
        )
        .await?;
    Ok(())
}

fn new_schedule(
    id: &str,
    workflow: &str,
    trigger: Trigger,
    now: Timestamp,
) -> Result<Schedule, ScheduleError> {
    match trigger {
        trigger @ Trigger::EventRelative { .. } => Ok(Schedule {
            id: id.to_owned(),
            workflow_id: workflow.to_owned(),
            trigger,
            paused: false,
            last_fired: None,
            next_due: None,
        }),
        trigger => Schedule::new(id, workflow, trigger, now),
    }
}

/// Every schedule, with the planned runs of the event-relative ones.
pub async fn list(store: &LocalStore) -> Result<Vec<ScheduleView>, SchedulerError> {
    let mut planned: BTreeMap<String, Vec<PlannedView>> = BTreeMap::new();
    for e in store.planned(None).await? {
        planned.entry(e.schedule_id).or_default().push(PlannedView {
            key: e.run.key,
            record: e.record,
            fire_at: e.run.fire_at,
        });
    }
    let mut out = Vec::new();
    for s in store.schedules().await? {
        let runs = planned.remove(&s.id).unwrap_or_default();
        out.push(view(s, runs));
    }
    Ok(out)
}

fn view(s: Schedule, mut planned: Vec<PlannedView>) -> ScheduleView {
    planned.sort_by(|a, b| a.fire_at.cmp(&b.fire_at).then(a.key.cmp(&b.key)));
    let kind = ScheduleKind::of(&s.trigger).unwrap_or(ScheduleKind::EventRelative);
    let next_due = match kind {
        ScheduleKind::EventRelative => planned.first().map(|p| p.fire_at),
        _ => s.next_due,
    };
    ScheduleView {
        id: s.id,
        workflow_id: s.workflow_id,
        kind,
        trigger: s.trigger,
        paused: s.paused,
        next_due,
        last_fired: s.last_fired,
        planned,
    }
}

async fn stored(store: &LocalStore, id: &str) -> Result<Schedule, SchedulerError> {
    store
        .schedule(id)
        .await?
        .ok_or_else(|| SchedulerError::UnknownSchedule { id: id.to_owned() })
}

async fn view_of(store: &LocalStore, s: Schedule) -> Result<ScheduleView, SchedulerError> {
    let planned = store
        .planned(Some(&s.id))
        .await?
        .into_iter()
        .map(|e| PlannedView {
            key: e.run.key,
            record: e.record,
            fire_at: e.run.fire_at,
        })
        .collect();
    Ok(view(s, planned))
}

/// Stops schedule `id` from firing (its planned runs stay planned).
pub async fn pause(store: &LocalStore, id: &str) -> Result<ScheduleView, SchedulerError> {
    let mut s = stored(store, id).await?;
    if !s.paused {
        s.pause();
        store.save_schedules(vec![s.clone()], Vec::new()).await?;
    }
    view_of(store, s).await
}

/// Lets schedule `id` fire again from `now` on: the slots and planned runs that fell due
/// while it was paused are dropped, not caught up.
pub async fn resume(
    store: &LocalStore,
    id: &str,
    now: Timestamp,
) -> Result<ScheduleView, SchedulerError> {
    let mut s = stored(store, id).await?;
    if !s.paused {
        return view_of(store, s).await;
    }
    if ScheduleKind::of(&s.trigger) == Some(ScheduleKind::EventRelative) {
        s.paused = false;
        let missed: Vec<String> = store
            .planned(Some(id))
            .await?
            .into_iter()
            .filter(|e| e.run.fire_at <= now)
            .map(|e| e.run.key)
            .collect();
        if !missed.is_empty() {
            store
                .change_plan(
                    id,
                    PlanChange {
                        cancel: missed,
                        add: Vec::new(),
                    },
                )
                .await?;
        }
    } else {
        s.resume(now).map_err(|source| SchedulerError::Schedule {
            id: id.to_owned(),
            source,
        })?;
    }
    store.save_schedules(vec![s.clone()], Vec::new()).await?;
    view_of(store, s).await
}

/// An instant as written in idempotency keys: RFC 3339, UTC, milliseconds.
fn instant(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
