//! Schedules on AWS: the cron, rate and event-relative triggers of each workflow's active
//! version, kept in the table and fired by the scheduler function's [`tick`].
//!
//! The rules of when a trigger fires (time zones, daylight saving, catch-up, pause) are the
//! engine's ([`eventflow_engine::schedule`]), as on the local host
//! (`eventflow_local::scheduler`); this module keeps their state in a [`ScheduleStore`] and
//! starts the runs:
//!
//! - [`sync_schedules`] reconciles one tenant's stored schedules with the triggers of each
//!   workflow's active version (one schedule per cron, rate or event-relative trigger, id
//!   `<workflow>.<trigger index>`; a trigger that did not change keeps its state, one that is
//!   gone is removed with its planned runs) and plans the event-relative runs of every record
//!   of the tenant's [`EVENTS`] collection. The API calls it after every publish and alias
//!   change ([`crate::plane::AwsRuns`]).
//! - [`replan_event`] re-plans one event record's runs; the API calls it when a record of
//!   [`EVENTS`] is put or deleted through `/v1/records`.
//! - [`fire_due`] starts what is due in every tenant, each slot through
//!   [`Host::start_workflow`] with an idempotency key made of the schedule id and the slot's
//!   instant, and only then records that it fired: a tick that runs twice, or a function that
//!   dies in between, starts the slot's run once. The keys are `schedule/<schedule id>@<slot>`
//!   and, for a planned run, `schedule/<schedule id>/<run key>@<instant>`, instants in RFC 3339
//!   UTC with milliseconds (the local host's keys).
//!
//! **Records written by actions.** A record of [`EVENTS`] written by a run (the `records.put`
//! action, in the records worker) is not re-planned when it is written: the worker writes
//! through `RecordStore` and tells no one. Two things keep such an event honest: the next
//! [`sync_schedules`] (any publish or alias change) plans every event afresh, and a planned run
//! that comes due is checked against the record as it is then: when the record's date moved,
//! the run is not started but its event re-planned (so a reminder is never sent for a date the
//! event no longer has; a reminder the move brought earlier than the tick that notices it is
//! lost, which is what the local host's re-plan drops too when it comes after the instant).
//!
//! **Races.** A schedule item carries a revision; every write of it is conditional on the
//! revision read, so a tick recording a firing and an operator pausing at the same moment do
//! not overwrite each other (the loser reads again, or, for a tick, leaves it to the next
//! one: the slot's run is started once whatever happens, by its key).

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::SecondsFormat;
use eventflow_engine::schedule::{self, PlannedEntry, Schedule, ScheduleError};
use eventflow_engine::{Timestamp, Trigger};
use eventflow_ports::versions::{self, VersionError};
use eventflow_ports::{StoreError, StoreResult, VersionStore};
use serde::Serialize;
use serde_json::Value;

use crate::dynamo::DynamoStore;
use crate::host::{AwsStore, Host, StartError};

/// The collection whose records event-relative triggers are planned on.
pub const EVENTS: &str = "events";

/// How often an operator's change of a schedule that lost a race reads it again.
const ATTEMPTS: usize = 8;

/// A stored schedule and the revision its next write is conditional on.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub schedule: Schedule,
    pub rev: u64,
}

/// Something in the `due` index that came due.
#[derive(Debug, Clone, PartialEq)]
pub enum DueItem {
    /// A cron or rate schedule whose `next_due` passed.
    Schedule(Schedule),
    /// A planned event-relative run whose instant passed.
    Planned(PlannedEntry),
}

/// Where one tenant's schedules and planned runs are kept (on AWS, the table: see
/// `infra/README.md` and `crate::dynamo`).
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Every schedule of the tenant, by id.
    async fn schedules(&self) -> StoreResult<Vec<Stored>>;
    /// One schedule.
    async fn schedule(&self, id: &str) -> StoreResult<Option<Stored>>;
    /// Writes a schedule: a new one where none has the id (`rev` `None`), or over revision
    /// `rev`. A [`StoreError::Conflict`] when the condition does not hold. An unpaused schedule
    /// with a `next_due` is in the `due` index; a paused or exhausted one is not.
    async fn put_schedule(&self, schedule: &Schedule, rev: Option<u64>) -> StoreResult<()>;
    /// Removes a schedule and its planned runs.
    async fn remove_schedule(&self, id: &str) -> StoreResult<()>;
    /// The planned runs of one schedule, or of all of the tenant's.
    async fn planned(&self, schedule_id: Option<&str>) -> StoreResult<Vec<PlannedEntry>>;
    /// Removes the planned runs `cancel` of schedule `schedule_id`, then writes `add` (a moved
    /// run, whose key is in both, ends at its new instant).
    async fn change_plan(
        &self,
        schedule_id: &str,
        cancel: &[String],
        add: &[PlannedEntry],
    ) -> StoreResult<()>;
    /// Every record of a collection, with its key.
    async fn records(&self, collection: &str) -> StoreResult<Vec<(String, Value)>>;
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncReport {
    /// Schedules in force after it.
    pub schedules: usize,
    /// Planned runs added and cancelled.
    pub planned: usize,
    pub cancelled: usize,
    /// What could not be planned, and why (`<schedule id>[ record <key>]: <reason>`).
    pub problems: Vec<String>,
}

/// The kind of a trigger that is a schedule; `None` for a webhook.
pub fn kind_of(trigger: &Trigger) -> Option<&'static str> {
    match trigger {
        Trigger::Cron { .. } => Some("cron"),
        Trigger::Rate { .. } => Some("rate"),
        Trigger::EventRelative { .. } => Some("event_relative"),
        Trigger::Webhook { .. } => None,
    }
}

fn is_event_relative(trigger: &Trigger) -> bool {
    matches!(trigger, Trigger::EventRelative { .. })
}

/// An instant as written in idempotency keys: RFC 3339, UTC, milliseconds.
fn instant(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The idempotency key of a cron or rate slot.
pub fn slot_key(schedule_id: &str, slot: Timestamp) -> String {
    format!("schedule/{schedule_id}@{}", instant(slot))
}

/// The idempotency key of a planned event-relative run.
pub fn planned_key(entry: &PlannedEntry) -> String {
    format!(
        "schedule/{}/{}@{}",
        entry.schedule_id,
        entry.run.key,
        instant(entry.run.fire_at)
    )
}

/// The cron, rate and event-relative triggers of each workflow's active version, as
/// `(id, workflow, trigger)`; the id is `<workflow>.<index of the trigger>`. A workflow without
/// a usable active version contributes none.
pub async fn triggers_in_force<S: VersionStore>(
    store: &S,
) -> StoreResult<Vec<(String, String, Trigger)>> {
    let mut out = Vec::new();
    for workflow in store.workflows().await? {
        let alias = match versions::current_alias(store, &workflow).await {
            Ok(alias) => alias,
            Err(VersionError::Store(e)) => return Err(e),
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
            if kind_of(&trigger).is_some() {
                out.push((format!("{workflow}.{index}"), workflow.clone(), trigger));
            }
        }
    }
    Ok(out)
}

fn new_schedule(
    id: &str,
    workflow: &str,
    trigger: Trigger,
    now: Timestamp,
) -> Result<Schedule, ScheduleError> {
    if is_event_relative(&trigger) {
        return Ok(Schedule {
            id: id.to_owned(),
            workflow_id: workflow.to_owned(),
            trigger,
            paused: false,
            last_fired: None,
            next_due: None,
        });
    }
    Schedule::new(id, workflow, trigger, now)
}

/// Reconciles the tenant's stored schedules with the triggers of each workflow's active
/// version, and plans the event-relative runs of every record of [`EVENTS`], as of the host's
/// now. A schedule whose trigger did not change keeps its state (paused, last fired); one whose
/// trigger changed starts afresh; one whose trigger is gone is removed with its planned runs.
pub async fn sync_schedules<S: AwsStore + ScheduleStore>(
    host: &Host<S>,
) -> StoreResult<SyncReport> {
    let store = host.store();
    let now = host.now();
    let mut report = SyncReport::default();
    let stored: BTreeMap<String, Stored> = store
        .schedules()
        .await?
        .into_iter()
        .map(|s| (s.schedule.id.clone(), s))
        .collect();
    let mut desired: BTreeMap<String, Schedule> = BTreeMap::new();
    for (id, workflow, trigger) in triggers_in_force(store).await? {
        if let Some(s) = stored.get(&id).filter(|s| s.schedule.trigger == trigger) {
            desired.insert(id, s.schedule.clone());
            continue;
        }
        match new_schedule(&id, &workflow, trigger, now) {
            Ok(s) => {
                desired.insert(id, s);
            }
            Err(error) => report.problems.push(format!("{id}: {error}")),
        }
    }
    for (id, s) in &stored {
        if desired
            .get(id)
            .is_none_or(|d| d.trigger != s.schedule.trigger)
        {
            store.remove_schedule(id).await?;
        }
    }
    for d in desired.values() {
        match stored.get(&d.id) {
            Some(s) if s.schedule.trigger == d.trigger => {}
            _ => match store.put_schedule(d, None).await {
                Ok(()) => {}
                // Another sync wrote it at the same moment: the same schedule.
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            },
        }
    }
    report.schedules = desired.len();
    let relative: Vec<&Schedule> = desired
        .values()
        .filter(|s| is_event_relative(&s.trigger))
        .collect();
    if relative.is_empty() {
        return Ok(report);
    }
    let events = store.records(EVENTS).await?;
    for schedule in relative {
        let mut old: BTreeMap<String, Vec<PlannedEntry>> = BTreeMap::new();
        for entry in store.planned(Some(&schedule.id)).await? {
            old.entry(entry.record.clone()).or_default().push(entry);
        }
        for (key, record) in &events {
            let old = old.remove(key).unwrap_or_default();
            replan_record(store, schedule, key, Some(record), &old, now, &mut report).await?;
        }
        // Runs of records deleted since.
        for (key, old) in old {
            replan_record(store, schedule, &key, None, &old, now, &mut report).await?;
        }
    }
    Ok(report)
}

/// Re-plans the runs of event record `key` (now `record`, or deleted: `None`) for every
/// event-relative schedule of the tenant.
pub async fn replan_event<S: AwsStore + ScheduleStore>(
    host: &Host<S>,
    key: &str,
    record: Option<&Value>,
) -> StoreResult<SyncReport> {
    let store = host.store();
    let now = host.now();
    let mut report = SyncReport::default();
    for stored in store.schedules().await? {
        let schedule = stored.schedule;
        if !is_event_relative(&schedule.trigger) {
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
    Ok(report)
}

/// Re-plans one event record's runs of one event-relative schedule ([`schedule::plan_record`]).
async fn replan_record<S: ScheduleStore>(
    store: &S,
    schedule: &Schedule,
    key: &str,
    record: Option<&Value>,
    old: &[PlannedEntry],
    now: Timestamp,
    report: &mut SyncReport,
) -> StoreResult<()> {
    let plan = schedule::plan_record(schedule, key, record, old, now);
    if let Some(error) = &plan.problem {
        report
            .problems
            .push(format!("{} record {key}: {error}", schedule.id));
    }
    if plan.is_empty() {
        return Ok(());
    }
    report.planned += plan.add.len();
    report.cancelled += plan.cancel.len();
    store
        .change_plan(&schedule.id, &plan.cancel, &plan.add)
        .await
}

// ---- firing ----------------------------------------------------------------------------------

/// What firing one due item did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fired {
    /// A run was started (or had been, by an earlier tick: the same run).
    Started { execution_id: String },
    /// Nothing was started, and the item no longer waits (paused, moved, gone, refused).
    Dropped,
    /// Nothing this time: the next tick looks again.
    Later,
}

/// Whether a refused start is worth trying again at the next tick.
fn retryable(e: &StartError) -> bool {
    match e {
        StartError::Invalid(_) => false,
        // The table or the queues: the next tick tries again.
        StartError::Version(VersionError::Store(_)) | StartError::Store(_) => true,
        // No active version, a deprecated one: nothing to try again.
        StartError::Version(_) => false,
    }
}

/// Fires one item of the `due` index in its tenant's `host`, as of `now`.
pub async fn fire<S: AwsStore + ScheduleStore>(
    host: &Host<S>,
    item: DueItem,
    now: Timestamp,
) -> StoreResult<Fired> {
    match item {
        DueItem::Schedule(s) => fire_schedule(host, &s.id, now).await,
        DueItem::Planned(entry) => fire_planned(host, entry, now).await,
    }
}

async fn fire_schedule<S: AwsStore + ScheduleStore>(
    host: &Host<S>,
    id: &str,
    now: Timestamp,
) -> StoreResult<Fired> {
    let store = host.store();
    // The index may lag the table: the schedule as it is now decides.
    let Some(Stored { schedule, rev }) = store.schedule(id).await? else {
        return Ok(Fired::Dropped);
    };
    let due = match schedule::due(&schedule, now) {
        Ok(due) => due,
        Err(error) => {
            // Cannot happen for a schedule the sync made; leave it out of the index.
            tracing::error!(schedule = id, %error, "a schedule cannot be computed; it stops");
            let stopped = Schedule {
                next_due: None,
                ..schedule
            };
            return write_fired(store, &stopped, rev, Fired::Dropped).await;
        }
    };
    let Some(firing) = due.firings.into_iter().next() else {
        if due.schedule != schedule {
            return write_fired(store, &due.schedule, rev, Fired::Later).await;
        }
        return Ok(Fired::Later);
    };
    let key = slot_key(id, firing.slot);
    let input = firing
        .input
        .unwrap_or_else(|| Value::Object(Default::default()));
    if firing.skipped > 0 {
        tracing::warn!(
            schedule = id,
            skipped = firing.skipped,
            "slots passed unfired; only the latest fires"
        );
    }
    let fired = match host
        .start_workflow(&firing.workflow_id, None, input, &key)
        .await
    {
        Ok((execution_id, _)) => Fired::Started { execution_id },
        Err(e) if retryable(&e) => {
            tracing::warn!(schedule = id, error = %e, "a scheduled run did not start; the next tick tries again");
            return Ok(Fired::Later);
        }
        Err(e) => {
            tracing::warn!(schedule = id, error = %e, "a scheduled run was refused; its slot is passed over");
            Fired::Dropped
        }
    };
    write_fired(store, &due.schedule, rev, fired).await
}

async fn write_fired<S: ScheduleStore>(
    store: &S,
    schedule: &Schedule,
    rev: u64,
    fired: Fired,
) -> StoreResult<Fired> {
    match store.put_schedule(schedule, Some(rev)).await {
        Ok(()) => Ok(fired),
        // Paused, resumed or re-synced meanwhile: the next tick reads it again (the slot's
        // run, if started, is not started twice: its key).
        Err(StoreError::Conflict(why)) => {
            tracing::info!(schedule = %schedule.id, %why, "the schedule changed while it fired");
            Ok(fired)
        }
        Err(e) => Err(e),
    }
}

async fn fire_planned<S: AwsStore + ScheduleStore>(
    host: &Host<S>,
    entry: PlannedEntry,
    now: Timestamp,
) -> StoreResult<Fired> {
    let store = host.store();
    let done = std::slice::from_ref(&entry.run.key);
    let schedule = match store.schedule(&entry.schedule_id).await? {
        Some(s) if is_event_relative(&s.schedule.trigger) => s.schedule,
        // The schedule is gone or changed kind (its trigger dropped): so is the run.
        _ => {
            store.change_plan(&entry.schedule_id, done, &[]).await?;
            return Ok(Fired::Dropped);
        }
    };
    if schedule.paused {
        // A run that comes due while its schedule is paused is dropped, as resuming would.
        store.change_plan(&entry.schedule_id, done, &[]).await?;
        return Ok(Fired::Dropped);
    }
    let Some(record) = store.get(EVENTS, &entry.record).await? else {
        store.change_plan(&entry.schedule_id, done, &[]).await?;
        return Ok(Fired::Dropped);
    };
    // The record may have moved without a re-plan (written by a run): plan it as of just
    // before this run's instant; the run stands only if that plan still has it.
    let before = entry.run.fire_at - chrono::TimeDelta::milliseconds(1);
    let still = schedule::plan_event(&schedule.trigger, &record, before)
        .map(|runs| runs.contains(&entry.run))
        .unwrap_or(false);
    if !still {
        let mut report = SyncReport::default();
        // This run goes (re-planning as of now keeps only future runs); the record's other
        // runs are compared with a fresh plan.
        store.change_plan(&entry.schedule_id, done, &[]).await?;
        let own: Vec<PlannedEntry> = store
            .planned(Some(&entry.schedule_id))
            .await?
            .into_iter()
            .filter(|e| e.record == entry.record)
            .collect();
        replan_record(
            store,
            &schedule,
            &entry.record,
            Some(&record),
            &own,
            now,
            &mut report,
        )
        .await?;
        tracing::info!(schedule = %entry.schedule_id, run = %entry.run.key, "the event moved; its runs were re-planned instead");
        return Ok(Fired::Dropped);
    }
    let input = match schedule::event_input(&schedule.trigger, &record, entry.run.fire_at) {
        Ok(input) => input,
        Err(error) => {
            tracing::warn!(schedule = %entry.schedule_id, run = %entry.run.key, %error, "a planned run's input cannot be made; it is dropped");
            store.change_plan(&entry.schedule_id, done, &[]).await?;
            return Ok(Fired::Dropped);
        }
    };
    let key = planned_key(&entry);
    let fired = match host
        .start_workflow(&entry.workflow_id, None, input, &key)
        .await
    {
        Ok((execution_id, _)) => Fired::Started { execution_id },
        Err(e) if retryable(&e) => {
            tracing::warn!(schedule = %entry.schedule_id, run = %entry.run.key, error = %e, "a planned run did not start; the next tick tries again");
            return Ok(Fired::Later);
        }
        Err(e) => {
            tracing::warn!(schedule = %entry.schedule_id, run = %entry.run.key, error = %e, "a planned run was refused; it is dropped");
            Fired::Dropped
        }
    };
    store.change_plan(&entry.schedule_id, done, &[]).await?;
    Ok(fired)
}

/// Fires everything due at or before `now` in every tenant of `host`'s table (at most `limit`
/// items): the number of runs started. An item that fails is logged and left for the next
/// tick; the others still fire.
pub async fn fire_due(
    host: &Host<DynamoStore>,
    now: Timestamp,
    limit: usize,
) -> StoreResult<usize> {
    let due = host
        .store()
        .due_schedules_of_all_tenants(now, limit)
        .await?;
    let mut started = 0;
    for (tenant, item) in due {
        let tenant_host = host.for_tenant(&tenant);
        match Box::pin(fire(&tenant_host, item, now)).await {
            Ok(Fired::Started { execution_id }) => {
                tracing::info!(%tenant, %execution_id, "scheduled run started");
                started += 1;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::error!(%tenant, %error, "a due schedule could not fire; the next tick tries again");
            }
        }
    }
    Ok(started)
}

// ---- operators -------------------------------------------------------------------------------

/// Why an operator's change of a schedule was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleChangeError {
    #[error("there is no schedule `{id}`; GET /v1/schedules lists them")]
    Unknown { id: String },
    #[error("schedule `{id}`: {source}")]
    Schedule {
        id: String,
        #[source]
        source: ScheduleError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Pauses (`pause`) or resumes schedule `id` as of `now`: a paused schedule leaves the `due`
/// index and fires nothing; resuming drops the slots and planned runs that passed meanwhile.
/// The schedule after it.
pub async fn set_paused<S: ScheduleStore>(
    store: &S,
    id: &str,
    pause: bool,
    now: Timestamp,
) -> Result<Schedule, ScheduleChangeError> {
    for _ in 0..ATTEMPTS {
        let Some(Stored { mut schedule, rev }) = store.schedule(id).await? else {
            return Err(ScheduleChangeError::Unknown { id: id.to_owned() });
        };
        if schedule.paused == pause {
            return Ok(schedule);
        }
        if pause {
            schedule.pause();
        } else if is_event_relative(&schedule.trigger) {
            schedule.paused = false;
            let missed: Vec<String> = store
                .planned(Some(id))
                .await?
                .into_iter()
                .filter(|e| e.run.fire_at <= now)
                .map(|e| e.run.key)
                .collect();
            if !missed.is_empty() {
                store.change_plan(id, &missed, &[]).await?;
            }
        } else {
            schedule
                .resume(now)
                .map_err(|source| ScheduleChangeError::Schedule {
                    id: id.to_owned(),
                    source,
                })?;
        }
        match store.put_schedule(&schedule, Some(rev)).await {
            Ok(()) => return Ok(schedule),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Unavailable(format!(
        "schedule `{id}` kept changing under {ATTEMPTS} attempts to change it; try again"
    ))
    .into())
}

/// A schedule as the API shows it (the shape of `eventflow serve`'s): `next_due` is the
/// earliest planned run of an event-relative schedule.
pub fn view(schedule: &Schedule, planned: &[PlannedEntry]) -> Value {
    let mut planned: Vec<&PlannedEntry> = planned
        .iter()
        .filter(|e| e.schedule_id == schedule.id)
        .collect();
    planned.sort_by(|a, b| {
        a.run
            .fire_at
            .cmp(&b.run.fire_at)
            .then(a.run.key.cmp(&b.run.key))
    });
    let next_due = if is_event_relative(&schedule.trigger) {
        planned.first().map(|p| p.run.fire_at)
    } else {
        schedule.next_due
    };
    serde_json::json!({
        "id": schedule.id,
        "workflow_id": schedule.workflow_id,
        "kind": kind_of(&schedule.trigger).unwrap_or("event_relative"),
        "trigger": schedule.trigger,
        "paused": schedule.paused,
        "next_due": next_due,
        "last_fired": schedule.last_fired,
        "planned": planned.iter().map(|p| serde_json::json!({
            "key": p.run.key,
            "record": p.record,
            "fire_at": p.run.fire_at,
        })).collect::<Vec<_>>(),
    })
}
