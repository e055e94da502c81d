//! Schedules: when cron, rate and event-relative triggers fire. Pure: `now` is always a
//! parameter, and the host keeps the [`Schedule`] state between calls.
//!
//! Rules:
//!
//! - **Time zones.** A cron expression is matched against the local wall clock of its
//!   trigger's `time_zone` (UTC without one), so "`0 9 * * *` in Europe/Berlin" fires at 09:00
//!   local all year: 08:00Z in winter, 07:00Z in summer.
//! - **Daylight saving.** A local time skipped in spring (02:30 on the day Berlin jumps from
//!   02:00 to 03:00) fires at the first instant after the gap (03:00 local); several matches in
//!   one gap fire once. A local time repeated in autumn fires once, at its earlier occurrence.
//!   These are the rules of [`crate::time::shift`], which waits use too. One consequence: an
//!   hourly cron fires once in the repeated autumn hour, not twice (the wall clock shows each
//!   time once as far as schedules are concerned).
//! - **Catch-up.** When [`due`] finds that several slots passed since the last call (the host
//!   was down), it fires **once**, for the latest passed slot, and says how many earlier slots
//!   it skipped ([`Firing::skipped`]). A nurture email is sent once, late, not seven times.
//! - **Pause.** A paused schedule fires nothing and keeps its `next_due`. [`Schedule::resume`]
//!   moves `next_due` past the slots that went by while paused: those are dropped, not caught up.
//! - **Event-relative.** [`plan_event`] turns "14, 7 and 1 days before `starts_at`, at 09:00"
//!   into instants in the event's zone (whole days move the local date), drops those already
//!   past, and keys each by (event id, field, offset). [`replan`] compares a pending plan with
//!   a fresh one after the event's dates change.

use std::collections::BTreeMap;

use chrono::{LocalResult, NaiveDateTime, NaiveTime, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::Offset;
use crate::expr::{NoSteps, Scope, Template};
use crate::model::Trigger;
use crate::state::Timestamp;
use crate::time::{parse_instant, shift};

/// At most this many missed slots are counted on catch-up; [`Firing::skipped`] saturates here.
pub const MAX_COUNTED_SKIPS: u32 = 10_000;

/// What is wrong with a schedule or an event record, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("expression: `{expression}` is not a cron expression: {reason}")]
    BadCron { expression: String, reason: String },
    #[error("{field}: `{zone}` is not a known IANA time zone; write one like \"Europe/Berlin\"")]
    UnknownZone { field: String, zone: String },
    #[error("every: a rate schedule must be longer than zero")]
    ZeroRate,
    #[error("the event record has no `{field}`")]
    MissingField { field: String },
    #[error("{field}: {reason}")]
    BadDate { field: String, reason: String },
    #[error("at: `{at}` is not a local time; write it as HH:MM, e.g. \"09:00\"")]
    BadAt { at: String },
    #[error("offsets: {offset} from `{field}`: {reason}")]
    BadOffset {
        field: String,
        offset: Offset,
        reason: String,
    },
    #[error("a {kind} trigger is not a time schedule")]
    NotTimed { kind: &'static str },
    #[error("input{path}: {reason}")]
    BadInput { path: String, reason: String },
}

/// A cron or rate schedule of one workflow, as the host stores it between calls.
///
/// `next_due: None` with a `last_fired` means the schedule is exhausted (a cron expression with
/// no later match); with neither, [`due`] plans the first slot after `now`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: String,
    pub workflow_id: String,
    pub trigger: Trigger,
    #[serde(default)]
    pub paused: bool,
    /// The slot of the last firing (the scheduled instant, not when the host got to it).
    #[serde(default)]
    pub last_fired: Option<Timestamp>,
    /// The next slot; `None` when the schedule will never fire again.
    #[serde(default)]
    pub next_due: Option<Timestamp>,
}

/// One start of the schedule's workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    pub schedule_id: String,
    pub workflow_id: String,
    /// The slot this firing is for; with the schedule id, an idempotency key.
    pub slot: Timestamp,
    /// Earlier slots that passed unfired and are dropped (catch-up fires only the latest).
    pub skipped: u32,
    /// The trigger's `input` for the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// The result of [`due`]: what to start, and the state to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub firings: Vec<Firing>,
    pub schedule: Schedule,
}

impl Schedule {
    /// A new schedule whose first slot is the first after `now`.
    pub fn new(
        id: impl Into<String>,
        workflow_id: impl Into<String>,
        trigger: Trigger,
        now: Timestamp,
    ) -> Result<Schedule, ScheduleError> {
        let next_due = next_fire(&trigger, now)?;
        Ok(Schedule {
            id: id.into(),
            workflow_id: workflow_id.into(),
            trigger,
            paused: false,
            last_fired: None,
            next_due,
        })
    }

    /// Stops firing; `next_due` is kept.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Fires again from the first slot after `now`; slots missed while paused are dropped.
    pub fn resume(&mut self, now: Timestamp) -> Result<(), ScheduleError> {
        self.paused = false;
        if let Some(next) = self.next_due
            && next <= now
        {
            self.next_due = match latest_slot(&self.trigger, next, now)? {
                Some((latest, _)) => next_fire(&self.trigger, latest)?,
                None => Some(next),
            };
        }
        Ok(())
    }
}

/// The first slot of a cron or rate trigger strictly after `after`; `None` if there is none
/// (a cron expression that matches no future date).
pub fn next_fire(trigger: &Trigger, after: Timestamp) -> Result<Option<Timestamp>, ScheduleError> {
    match trigger {
        Trigger::Cron {
            expression,
            time_zone,
            ..
        } => {
            let cron = parse_cron(expression)?;
            let tz = zone("time_zone", time_zone.as_deref())?;
            Ok(next_cron(&cron, tz, after))
        }
        Trigger::Rate { every, .. } => {
            if every.as_millis() == 0 {
                return Err(ScheduleError::ZeroRate);
            }
            Ok(after.checked_add_signed(every.chrono()))
        }
        other => Err(ScheduleError::NotTimed { kind: kind(other) }),
    }
}

/// What a schedule fires at `now`, and its new state.
///
/// At most one firing per call: for the latest slot at or before `now`, counting the earlier
/// missed ones in [`Firing::skipped`]. A paused schedule fires nothing and is returned as is.
pub fn due(schedule: &Schedule, now: Timestamp) -> Result<Due, ScheduleError> {
    let mut state = schedule.clone();
    if state.paused {
        return Ok(Due {
            firings: Vec::new(),
            schedule: state,
        });
    }
    let first = match state.next_due {
        Some(t) => Some(t),
        None if state.last_fired.is_none() => {
            // Never planned: start from now, nothing is owed.
            state.next_due = next_fire(&state.trigger, now)?;
            return Ok(Due {
                firings: Vec::new(),
                schedule: state,
            });
        }
        None => None,
    };
    let Some(first) = first.filter(|t| *t <= now) else {
        return Ok(Due {
            firings: Vec::new(),
            schedule: state,
        });
    };
    let Some((slot, skipped)) = latest_slot(&state.trigger, first, now)? else {
        return Ok(Due {
            firings: Vec::new(),
            schedule: state,
        });
    };
    state.last_fired = Some(slot);
    state.next_due = next_fire(&state.trigger, slot)?;
    let input = match &state.trigger {
        Trigger::Cron { input, .. } | Trigger::Rate { input, .. } => input.clone(),
        _ => None,
    };
    Ok(Due {
        firings: vec![Firing {
            schedule_id: state.id.clone(),
            workflow_id: state.workflow_id.clone(),
            slot,
            skipped,
            input,
        }],
        schedule: state,
    })
}

/// The latest slot in `[first, now]` (`first` being a slot) and how many slots precede it there.
fn latest_slot(
    trigger: &Trigger,
    first: Timestamp,
    now: Timestamp,
) -> Result<Option<(Timestamp, u32)>, ScheduleError> {
    if first > now {
        return Ok(None);
    }
    if let Trigger::Rate { every, .. } = trigger {
        let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
        if every_ms == 0 {
            return Err(ScheduleError::ZeroRate);
        }
        let n = (now - first).num_milliseconds() / every_ms;
        let slot = first + chrono::TimeDelta::milliseconds(n.saturating_mul(every_ms));
        let skipped = u32::try_from(n).unwrap_or(u32::MAX).min(MAX_COUNTED_SKIPS);
        return Ok(Some((slot, skipped)));
    }
    let mut slot = first;
    let mut skipped = 0u32;
    loop {
        match next_fire(trigger, slot)? {
            Some(next) if next <= now => {
                if skipped >= MAX_COUNTED_SKIPS {
                    // Too many to walk: jump close to now and walk the rest.
                    let jump = jump_near(trigger, now)?;
                    slot = jump.filter(|j| *j > slot).unwrap_or(next);
                    while let Some(n) = next_fire(trigger, slot)?.filter(|n| *n <= now) {
                        slot = n;
                    }
                    return Ok(Some((slot, MAX_COUNTED_SKIPS)));
                }
                slot = next;
                skipped += 1;
            }
            _ => return Ok(Some((slot, skipped))),
        }
    }
}

/// A cron slot a few hours before `now` (or `None`), found by searching backwards.
fn jump_near(trigger: &Trigger, now: Timestamp) -> Result<Option<Timestamp>, ScheduleError> {
    let Trigger::Cron {
        expression,
        time_zone,
        ..
    } = trigger
    else {
        return Ok(None);
    };
    let cron = parse_cron(expression)?;
    let tz = zone("time_zone", time_zone.as_deref())?;
    // Three hours back is more than any daylight-saving shift, so the local match found is
    // an instant before `now`.
    let start = (now - chrono::TimeDelta::hours(3))
        .with_timezone(&tz)
        .naive_local();
    Ok(cron
        .find_previous_occurrence(&start, true)
        .ok()
        .map(|local_match| to_instant(tz, local_match)))
}

fn next_cron(cron: &croner::Cron, tz: Tz, after: Timestamp) -> Option<Timestamp> {
    // Match on the local wall clock, then map each match to an instant. The mapping is
    // monotonic, so the first match whose instant is after `after` is the answer; matches in a
    // repeated hour whose earlier occurrence is already past are passed over.
    let mut cursor = after.with_timezone(&tz).naive_local();
    let mut inclusive = true;
    for _ in 0..10_000 {
        let local_match = cron.find_next_occurrence(&cursor, inclusive).ok()?;
        let instant = to_instant(tz, local_match);
        if instant > after {
            return Some(instant);
        }
        cursor = local_match;
        inclusive = false;
    }
    None
}

/// A local wall-clock time as an instant: a skipped time moves to the first instant after the
/// gap, a repeated one takes its earlier occurrence.
fn to_instant(tz: Tz, dt: NaiveDateTime) -> Timestamp {
    match tz.from_local_datetime(&dt) {
        LocalResult::Single(t) => t.to_utc(),
        LocalResult::Ambiguous(early, _) => early.to_utc(),
        LocalResult::None => {
            // Skipped: the first whole minute that exists is where the gap ends (transitions
            // fall on whole minutes).
            let mut probe = dt
                .with_second(0)
                .unwrap_or(dt)
                .with_nanosecond(0)
                .unwrap_or(dt);
            for _ in 0..(24 * 60) {
                probe += chrono::TimeDelta::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.to_utc();
                }
            }
            tz.from_utc_datetime(&dt).to_utc()
        }
    }
}

fn parse_cron(expression: &str) -> Result<croner::Cron, ScheduleError> {
    expression
        .parse::<croner::Cron>()
        .map_err(|e| ScheduleError::BadCron {
            expression: expression.to_owned(),
            reason: e.to_string(),
        })
}

fn zone(field: &str, name: Option<&str>) -> Result<Tz, ScheduleError> {
    match name {
        None => Ok(Tz::UTC),
        Some(name) => name.parse::<Tz>().map_err(|_| ScheduleError::UnknownZone {
            field: field.to_owned(),
            zone: name.to_owned(),
        }),
    }
}

fn kind(trigger: &Trigger) -> &'static str {
    match trigger {
        Trigger::Cron { .. } => "cron",
        Trigger::Rate { .. } => "rate",
        Trigger::EventRelative { .. } => "event_relative",
        Trigger::Webhook { .. } => "webhook",
    }
}

// ---- Event-relative --------------------------------------------------------------------------

/// One planned start of an event-relative trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedRun {
    pub fire_at: Timestamp,
    pub offset: Offset,
    /// `<event id>/<field><offset>`, e.g. `evt-1/starts_at-7d`: the same for the same slot
    /// whatever the event's dates, so a re-plan replaces rather than duplicates. Unique within
    /// one trigger; a host holding several prefixes it with the workflow (and trigger) id.
    pub key: String,
}

/// How a pending plan changes into a fresh one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Replan {
    /// Keys of pending runs to cancel (gone, or moved to another instant).
    pub cancel: Vec<String>,
    /// Runs unchanged.
    pub keep: Vec<PlannedRun>,
    /// Runs to schedule (new, or moved: their key is also in `cancel`, cancel first).
    pub add: Vec<PlannedRun>,
}

/// The future runs of an event-relative trigger for one event record.
///
/// The record needs `id` and the trigger's `field` (an RFC 3339 timestamp or a `YYYY-MM-DD`
/// date); its `time_zone` (IANA, default UTC) is where whole-day offsets move the date and
/// where `at` is read. Runs at or before `now` are dropped; the rest come in time order.
pub fn plan_event(
    trigger: &Trigger,
    event: &Value,
    now: Timestamp,
) -> Result<Vec<PlannedRun>, ScheduleError> {
    let Trigger::EventRelative {
        field, offsets, at, ..
    } = trigger
    else {
        return Err(ScheduleError::NotTimed {
            kind: kind(trigger),
        });
    };
    let event_id = match event.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(ScheduleError::MissingField { field: "id".into() });
        }
    };
    let tz = match event.get("time_zone") {
        None | Some(Value::Null) => Tz::UTC,
        Some(Value::String(name)) => zone("time_zone", Some(name))?,
        Some(other) => {
            return Err(ScheduleError::UnknownZone {
                field: "time_zone".into(),
                zone: other.to_string(),
            });
        }
    };
    let base = match event.get(field.as_str()) {
        None | Some(Value::Null) => {
            return Err(ScheduleError::MissingField {
                field: field.clone(),
            });
        }
        Some(value) => parse_instant(value, tz).map_err(|reason| ScheduleError::BadDate {
            field: field.clone(),
            reason,
        })?,
    };
    let at = at
        .as_deref()
        .map(|text| {
            NaiveTime::parse_from_str(text.trim(), "%H:%M").map_err(|_| ScheduleError::BadAt {
                at: text.to_owned(),
            })
        })
        .transpose()?;
    let mut runs = Vec::new();
    for offset in offsets {
        let fire_at =
            shift(base, Some(*offset), at, tz).map_err(|reason| ScheduleError::BadOffset {
                field: field.clone(),
                offset: *offset,
                reason,
            })?;
        if fire_at > now {
            runs.push(PlannedRun {
                fire_at,
                offset: *offset,
                key: format!("{event_id}/{field}{offset}"),
            });
        }
    }
    runs.sort_by(|a, b| a.fire_at.cmp(&b.fire_at).then(a.key.cmp(&b.key)));
    Ok(runs)
}

/// The input of a run an event-relative trigger starts for `event` (the record): its `input`
/// template evaluated with the record as `event`, or without one, the record's fields with the
/// whole record under `event`.
pub fn event_input(
    trigger: &Trigger,
    event: &Value,
    now: Timestamp,
) -> Result<Value, ScheduleError> {
    let Trigger::EventRelative { input, .. } = trigger else {
        return Err(ScheduleError::NotTimed {
            kind: kind(trigger),
        });
    };
    let Some(template) = input else {
        let mut fields = match event {
            Value::Object(fields) => fields.clone(),
            _ => serde_json::Map::new(),
        };
        fields.insert("event".to_owned(), event.clone());
        return Ok(Value::Object(fields));
    };
    let template = Template::compile(template).map_err(|errors| {
        let first = errors.into_iter().next();
        ScheduleError::BadInput {
            path: first.as_ref().map(|e| e.path.clone()).unwrap_or_default(),
            reason: first.map(|e| e.error).unwrap_or_default(),
        }
    })?;
    let scope = Scope {
        event: Some(event),
        ..Scope::new(&Value::Null, &NoSteps, now)
    };
    template.eval(&scope).map_err(|e| ScheduleError::BadInput {
        path: String::new(),
        reason: e.to_string(),
    })
}

/// One planned start of an event-relative schedule for one event record, as hosts store it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedEntry {
    pub schedule_id: String,
    pub workflow_id: String,
    /// The key of the event record (in the `events` collection).
    pub record: String,
    pub run: PlannedRun,
}

/// How one event record's planned runs of one schedule change.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordPlan {
    /// Keys of planned runs to remove (a moved run's key is in `add` too: remove first).
    pub cancel: Vec<String>,
    pub add: Vec<PlannedEntry>,
    /// Why the record gives no runs, when its dates cannot be read: its pending runs go.
    pub problem: Option<ScheduleError>,
}

impl RecordPlan {
    pub fn is_empty(&self) -> bool {
        self.cancel.is_empty() && self.add.is_empty()
    }
}

/// Re-plans event record `key` (now `record`, or deleted: `None`) for event-relative
/// `schedule`, whose runs planned for it before are `old`. Runs already due are left for the
/// host's next tick (they were owed before the change), unless a re-planned run takes their
/// key.
pub fn plan_record(
    schedule: &Schedule,
    key: &str,
    record: Option<&Value>,
    old: &[PlannedEntry],
    now: Timestamp,
) -> RecordPlan {
    let pending: Vec<PlannedRun> = old
        .iter()
        .filter(|e| e.run.fire_at > now)
        .map(|e| e.run.clone())
        .collect();
    let (fresh, problem) = match record.map(|r| plan_event(&schedule.trigger, r, now)) {
        None => (Vec::new(), None),
        Some(Ok(runs)) => (runs, None),
        Some(Err(error)) => (Vec::new(), Some(error)),
    };
    let change = replan(&pending, fresh);
    RecordPlan {
        cancel: change.cancel,
        add: change
            .add
            .into_iter()
            .map(|run| PlannedEntry {
                schedule_id: schedule.id.clone(),
                workflow_id: schedule.workflow_id.clone(),
                record: key.to_owned(),
                run,
            })
            .collect(),
        problem,
    }
}

/// Compares the pending runs of an event (`old`, those planned and not yet fired) with a fresh
/// [`plan_event`] (`new`, which has already dropped what is past, so a slot whose new instant
/// is past is cancelled and not re-added).
pub fn replan(old: &[PlannedRun], new: Vec<PlannedRun>) -> Replan {
    let old_by_key: BTreeMap<&str, &PlannedRun> = old.iter().map(|r| (r.key.as_str(), r)).collect();
    let new_keys: BTreeMap<String, Timestamp> =
        new.iter().map(|r| (r.key.clone(), r.fire_at)).collect();
    let mut out = Replan::default();
    for run in old {
        if new_keys.get(&run.key) != Some(&run.fire_at) {
            out.cancel.push(run.key.clone());
        }
    }
    for run in new {
        match old_by_key.get(run.key.as_str()) {
            Some(o) if o.fire_at == run.fire_at => out.keep.push(run),
            _ => out.add.push(run),
        }
    }
    out
}
