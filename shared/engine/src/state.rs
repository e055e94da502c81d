//! What [`crate::decide`] reads and writes: the checkpoint of a run, the events that move it,
//! the commands it emits for its host and the history entries it appends.
//!
//! A checkpoint stays small whatever the fan-out: a `for_each` keeps counters, the items in
//! flight (at most its concurrency) and a bounded list of failures, never one entry per item.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Failures of a `for_each` kept with their error; beyond this only their index is kept.
pub const MAX_RECORDED_ITEM_FAILURES: usize = 32;
/// Indices of failed `for_each` items kept (so their compensation is not run and a retry runs
/// only them). 10,000 indices stay far below a DynamoDB item's 400 KB. Beyond it, a retry runs
/// the step whole, and a rollback sends a compensation for every item not known to have
/// failed: its `forward_key` lets the host skip an item whose forward attempt left no result.
pub const MAX_FAILED_ITEM_INDICES: usize = 10_000;
/// Operator events remembered to recognise a redelivery.
pub const RECENT_EVENT_IDS: usize = 32;

pub type Timestamp = DateTime<Utc>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    /// Started, but waiting for runs of other workflows it depends on (blocking dependencies)
    /// to complete; see [`Checkpoint::waiting_on`].
    WaitingForDependency,
    Paused,
    Compensating,
    Completed,
    CompletedWithErrors,
    Failed,
    Compensated,
    Cancelled,
    NeedsAttention,
}

impl RunStatus {
    /// Whether the run is over: nothing is dispatched after a terminal status.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed
                | RunStatus::CompletedWithErrors
                | RunStatus::Failed
                | RunStatus::Compensated
                | RunStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::WaitingForDependency => "waiting_for_dependency",
            RunStatus::Paused => "paused",
            RunStatus::Compensating => "compensating",
            RunStatus::Completed => "completed",
            RunStatus::CompletedWithErrors => "completed_with_errors",
            RunStatus::Failed => "failed",
            RunStatus::Compensated => "compensated",
            RunStatus::Cancelled => "cancelled",
            RunStatus::NeedsAttention => "needs_attention",
        }
    }

    /// The metric counting runs that ended in this status (`RunCompleted`, `RunFailed`, ...).
    pub fn metric_name(self) -> &'static str {
        match self {
            RunStatus::Running => "RunRunning",
            RunStatus::WaitingForDependency => "RunWaitingForDependency",
            RunStatus::Paused => "RunPaused",
            RunStatus::Compensating => "RunCompensating",
            RunStatus::Completed => "RunCompleted",
            RunStatus::CompletedWithErrors => "RunCompletedWithErrors",
            RunStatus::Failed => "RunFailed",
            RunStatus::Compensated => "RunCompensated",
            RunStatus::Cancelled => "RunCancelled",
            RunStatus::NeedsAttention => "RunNeedsAttention",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not started: its dependencies have not all finished.
    Pending,
    /// Waiting on a timer: a `wait`, a retry backoff or a loop's delay.
    Waiting,
    /// An attempt (or, for `for_each`, items) in flight.
    Running,
    Succeeded,
    /// Failed for good: its retries are spent.
    Failed,
    /// Not run: its condition was false, an upstream step failed, or an operator skipped it.
    Skipped,
    /// Stopped before it finished because the run was cancelled or rolled back.
    Cancelled,
    Compensating,
    Compensated,
    /// Its compensation failed for good; the run needs attention.
    CompensationFailed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Waiting => "waiting",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Compensating => "compensating",
            StepStatus::Compensated => "compensated",
            StepStatus::CompensationFailed => "compensation_failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Its `when` was false: dependents still run.
    Condition,
    /// An operator skipped it: dependents still run.
    Operator,
    /// A step it depends on failed (or was skipped for that reason): dependents are skipped too.
    UpstreamFailed,
}

/// Why an attempt failed. `name` is stable and what retry policies match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    pub name: String,
    pub message: String,
    pub retryable: bool,
}

impl StepError {
    pub fn terminal(name: &str, message: impl Into<String>) -> Self {
        StepError {
            name: name.to_owned(),
            message: message.into(),
            retryable: false,
        }
    }

    pub fn retryable(name: &str, message: impl Into<String>) -> Self {
        StepError {
            name: name.to_owned(),
            message: message.into(),
            retryable: true,
        }
    }
}

/// The timer a step waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerKind {
    /// The step's `wait`.
    Wait,
    /// The pause before a retry.
    Backoff,
    /// The pause between two loop iterations.
    LoopDelay,
    /// An attempt's deadline.
    Timeout,
    /// The pause before a compensation is retried.
    CompensationBackoff,
}

/// A timer, named by what it is for; firing one that no longer matches the state is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    pub kind: TimerKind,
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    pub attempt: u32,
}

/// One item of a fan-out, or the step itself, in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRun {
    pub index: u32,
    pub attempt: u32,
    /// Waiting on a backoff timer rather than running.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backoff: bool,
    /// The backoff timer fired while the run was paused: dispatch on resume.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub due: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemFailure {
    pub index: u32,
    pub error: StepError,
}

/// The evaluated item list of a `for_each`, kept in memory only: it is derived from the input
/// and upstream outputs, so after a reload it is evaluated again (with the step's start time as
/// `now`) instead of living in the checkpoint.
#[derive(Debug, Clone, Default)]
pub struct ItemsCache(pub(crate) Option<Arc<Vec<Value>>>);

impl PartialEq for ItemsCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Counters of a `for_each`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FanOut {
    pub total: u32,
    /// Items dispatched so far are `0..next`.
    pub next: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub retries: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<ItemRun>,
    /// The first failures, with their errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<ItemFailure>,
    /// Every item that did not succeed, sorted (up to [`MAX_FAILED_ITEM_INDICES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_items: Vec<u32>,
    /// More items failed than `failed_items` lists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failures_truncated: bool,
    /// Items to run again (an operator retried the step), before `next`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_queue: Vec<u32>,
    /// Too many items failed: no new item is dispatched.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tripped: bool,
    #[serde(skip)]
    pub(crate) items: ItemsCache,
}

impl FanOut {
    /// Whether item `n` is known not to have succeeded.
    pub fn item_failed(&self, n: u32) -> bool {
        self.failed_items.binary_search(&n).is_ok()
    }

    pub(crate) fn record_failed(&mut self, n: u32) {
        if let Err(pos) = self.failed_items.binary_search(&n) {
            if self.failed_items.len() < MAX_FAILED_ITEM_INDICES {
                self.failed_items.insert(pos, n);
            } else {
                self.failures_truncated = true;
            }
        }
    }
}

/// The undoing of one step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompensationState {
    /// The latest attempt (for a `for_each`: the highest of any item).
    pub attempt: u32,
    /// Attempts used before an operator asked for it again; numbering goes on from here.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub base: u32,
    /// Items whose compensation failed for good, to run again on a retry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_items: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_queue: Vec<u32>,
    /// For a `for_each`: items compensated (or dispatched) so far are `0..next`.
    pub next: u32,
    pub done: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<ItemRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backoff: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub due: bool,
}

/// The state of one step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub id: String,
    pub status: StepStatus,
    /// The latest attempt (for a `for_each`: the highest of any item). Attempts are numbered
    /// on across retries by an operator, so no idempotency key is used twice.
    pub attempt: u32,
    /// Attempts used before the current try (an operator's retry, a selective rollback): the
    /// retry policy counts from here.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub base: u32,
    /// Failed although its action succeeded (its output could not be shaped): what it did
    /// is undone on rollback.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub took_effect: bool,
    /// Loop iteration (1-based; 0 when the step has no loop or has not started).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub iteration: u32,
    /// Retries spent in all (attempts beyond the first).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<SkipReason>,
    /// The timer the step waits on, when `Waiting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer: Option<TimerKind>,
    /// That timer fired while the run was paused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub due: bool,
    /// A present `null` is an output too (`has(steps.x.output)` is true).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fan: Option<Box<FanOut>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<Box<CompensationState>>,
}

impl StepState {
    /// Whether attempt `attempt` of this step (of item `item`; for a loop, `slot` is the
    /// iteration) is in flight: dispatched, not answered, not waiting on a backoff.
    pub fn awaits_attempt(&self, item: Option<u32>, attempt: u32, slot: Option<u32>) -> bool {
        if self.status != StepStatus::Running {
            return false;
        }
        match &self.fan {
            Some(fan) => item.is_some_and(|n| {
                fan.in_flight
                    .iter()
                    .any(|r| r.index == n && r.attempt == attempt && !r.backoff)
            }),
            None => self.attempt == attempt && item == slot,
        }
    }

    /// How many attempts and compensations of this step are in flight: as many as
    /// [`StepState::awaits_attempt`] and [`StepState::awaits_compensation`] hold for.
    pub fn awaited(&self) -> usize {
        let running = |runs: &[ItemRun]| runs.iter().filter(|r| !r.backoff).count();
        match (self.status, &self.fan, &self.compensation) {
            (StepStatus::Running, Some(fan), _) => running(&fan.in_flight),
            (StepStatus::Running, None, _) => 1,
            (StepStatus::Compensating, Some(_), Some(comp)) => running(&comp.in_flight),
            (StepStatus::Compensating, None, Some(comp)) => usize::from(!comp.backoff),
            _ => 0,
        }
    }

    /// Whether compensation attempt `attempt` of this step (of item `item`) is in flight.
    pub fn awaits_compensation(&self, item: Option<u32>, attempt: u32) -> bool {
        if self.status != StepStatus::Compensating {
            return false;
        }
        let Some(comp) = self.compensation.as_ref() else {
            return false;
        };
        if self.fan.is_some() {
            item.is_some_and(|n| {
                comp.in_flight
                    .iter()
                    .any(|r| r.index == n && r.attempt == attempt && !r.backoff)
            })
        } else {
            item.is_none() && comp.attempt == attempt && !comp.backoff
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A field that is there, even as `null`, is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl StepState {
    pub fn new(id: &str) -> Self {
        StepState {
            id: id.to_owned(),
            status: StepStatus::Pending,
            attempt: 0,
            iteration: 0,
            retries: 0,
            base: 0,
            took_effect: false,
            skip_reason: None,
            timer: None,
            due: false,
            output: None,
            error: None,
            started_at: None,
            finished_at: None,
            fan: None,
            compensation: None,
        }
    }
}

/// A step failure that decided the run's fate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<u32>,
    pub error: StepError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackReason {
    /// A step failed for good under a rollback policy.
    Failure,
    /// An operator asked for it.
    Operator,
    /// The run was cancelled with compensation.
    Cancel,
}

/// A rollback under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    pub reason: RollbackReason,
    /// Selective: compensate this step and what follows it, then pause here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// Everything decide() needs to know about a run between two events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub execution_id: String,
    pub workflow_id: String,
    pub version: u32,
    pub status: RunStatus,
    pub input: Value,
    /// Events applied so far; the history entry of the next one gets this number plus one.
    pub seq: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub steps: Vec<StepState>,
    /// The step the run is paused at (a failure under `pause`, or a selective rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
    /// The first failure that decided the run's fate, kept whatever happens next.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// A compensation that failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation_error: Option<RunError>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_events: Vec<String>,
    /// The run's correlation key (the event it belongs to), when its workflow declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_key: Option<String>,
    /// The upstream runs a `waiting_for_dependency` run still waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_on: Vec<Upstream>,
}

impl Checkpoint {
    /// Whether the run still waits for the answer to `command`: an attempt or compensation it
    /// dispatched and has not had answered. An answer to anything else changes nothing, so a
    /// host sends again only what this holds for.
    pub fn awaits(&self, command: &Command) -> bool {
        if self.status.is_terminal() {
            return false;
        }
        let (step, item, attempt, compensation) = match command {
            Command::RunStep {
                step,
                item,
                attempt,
                ..
            } => (step, *item, *attempt, false),
            Command::RunCompensation {
                step,
                item,
                attempt,
                ..
            } => (step, *item, *attempt, true),
            _ => return false,
        };
        let Some(st) = self.steps.iter().find(|s| &s.id == step) else {
            return false;
        };
        if compensation {
            st.awaits_compensation(item, attempt)
        } else {
            // A loop's attempts carry its iteration as their item; other steps' iteration is 0.
            let slot = (st.iteration > 0).then_some(st.iteration);
            st.awaits_attempt(item, attempt, slot)
        }
    }

    /// How many attempts and compensations the run waits for: the commands [`Checkpoint::awaits`]
    /// holds for, counted (a host looking for them can stop once it has found this many).
    pub fn awaited(&self) -> usize {
        if self.status.is_terminal() {
            return 0;
        }
        self.steps.iter().map(StepState::awaited).sum()
    }
}

/// A run of another workflow that a run depends on (or, before it starts, the workflow alone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    pub workflow: String,
    /// The upstream run, once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
}

/// The `step` of the [`RunError`] of a run ended because a dependency failed: no step id
/// can contain `$`.
pub const DEPENDENCY_ERROR_STEP: &str = "$dependencies";

/// An event, with the id that makes applying it twice harmless.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    /// Who caused it: `engine`, an action host, an operator's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    pub fn new(id: impl Into<String>, kind: EventKind) -> Self {
        Event {
            id: id.into(),
            actor: None,
            kind,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    Started,
    StepSucceeded {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<u32>,
        attempt: u32,
        output: Value,
    },
    StepFailed {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<u32>,
        attempt: u32,
        error: StepError,
    },
    CompensationSucceeded {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<u32>,
        attempt: u32,
    },
    CompensationFailed {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<u32>,
        attempt: u32,
        error: StepError,
    },
    TimerFired {
        timer: Timer,
    },
    Pause,
    Resume,
    Cancel {
        compensate: bool,
    },
    RetryStep {
        step: String,
    },
    SkipStep {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Value>,
    },
    Rollback {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
    },
    /// Instead of `Started`, as a run's first event: the run waits for these upstream runs
    /// (blocking dependencies) with status `waiting_for_dependency`.
    Blocked {
        on: Vec<Upstream>,
    },
    /// An upstream run the run waits for completed; once none is left, the run starts exactly
    /// as after `Started`.
    DependencyMet {
        workflow: String,
        execution_id: String,
        /// How the upstream run ended: `completed` or `completed_with_errors`.
        status: RunStatus,
    },
    /// An upstream run the run waits for ended without completing (failed, compensated or
    /// cancelled): the run ends `cancelled`, with an error naming that run and its status.
    DependencyFailed {
        workflow: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        execution_id: Option<String>,
        status: RunStatus,
    },
    /// The run moved from version `from` to version `to` (see [`crate::migrate`]); decide()
    /// ignores it: the host applies it with [`crate::migrate::apply`].
    Migrated {
        from: u32,
        to: u32,
        /// Steps renamed, old id to new id.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        renamed: std::collections::BTreeMap<String, String>,
        /// Steps of `from` that `to` does not have.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dropped: Vec<String>,
        /// Steps `to` adds that count as succeeded with an output supplied by the mapping.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        supplied: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

impl EventKind {
    /// Events an operator sends; the rest are recognised as duplicates by the state itself.
    fn is_operator(&self) -> bool {
        matches!(
            self,
            EventKind::Pause
                | EventKind::Resume
                | EventKind::Cancel { .. }
                | EventKind::RetryStep { .. }
                | EventKind::SkipStep { .. }
                | EventKind::Rollback { .. }
        )
    }

    pub(crate) fn needs_id_check(&self) -> bool {
        self.is_operator() || matches!(self, EventKind::Started)
    }
}

/// What the host must do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    /// Run an action attempt. The key is `execution/step/item/attempt` (`-` without an item;
    /// for a loop the item is the iteration): the same key means the same attempt, and
    /// attempts are numbered on across an operator's retries, so no key is used twice.
    RunStep {
        key: String,
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<u32>,
        attempt: u32,
        action: String,
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<crate::Duration>,
    },
    /// Undo a step (or one item of it). `builtin` asks the action for its own compensation;
    /// otherwise `action` runs forward with `input`. `forward_key` is the attempt being undone
    /// (for an item: its key without the attempt, `execution/step/item`).
    RunCompensation {
        key: String,
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<u32>,
        attempt: u32,
        action: String,
        builtin: bool,
        input: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Value>,
        forward_key: String,
    },
    /// Deliver `TimerFired { timer }` at `at` (or at once if `at` has passed).
    ScheduleTimer { timer: Timer, at: Timestamp },
    /// The run reached a terminal status (or needs attention).
    Finish {
        status: RunStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<RunError>,
    },
    /// A figure for the host's metrics.
    EmitMetric {
        name: String,
        value: f64,
        unit: String,
    },
}

impl Command {
    /// An [`Command::EmitMetric`].
    pub fn metric(name: &str, value: f64, unit: &str) -> Command {
        Command::EmitMetric {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
        }
    }
}

/// One change a transition made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Change {
    /// An upstream run a waiting run depended on finished with `status`.
    Dependency {
        workflow: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        execution_id: Option<String>,
        status: RunStatus,
    },
    Run {
        from: RunStatus,
        to: RunStatus,
    },
    Step {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<u32>,
        from: StepStatus,
        to: StepStatus,
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<StepError>,
    },
    /// An attempt (or item) dispatched, retried or finished without the step changing status.
    Attempt {
        step: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<u32>,
        attempt: u32,
        outcome: AttemptOutcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<StepError>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Dispatched,
    Succeeded,
    RetryScheduled,
    Failed,
    CompensationDispatched,
    Compensated,
    CompensationRetryScheduled,
    CompensationFailed,
}

/// The record of one applied event: when, what arrived, what it changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: u64,
    pub at: Timestamp,
    pub seed: u64,
    pub event: Event,
    pub changes: Vec<Change>,
}

/// What decide() returns: the new checkpoint, the commands and, unless the event was a
/// duplicate or stale (then nothing changed), the history entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub checkpoint: Checkpoint,
    pub commands: Vec<Command>,
    pub history: Option<HistoryEntry>,
}
