//! The workflow definition: the document a user writes (JSON canonical, YAML accepted).
//!
//! These types are only the shape of the document. Whether it makes sense (ids, references,
//! expressions, limits) is [`crate::validate`]'s job, so that every problem can be reported at
//! once with its path instead of stopping at the first.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::duration::{Duration, Offset};

/// A workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// The JSON Schema this document follows; editors use it, eventflow ignores it.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Stable identifier: lower case letters, digits, `-` and `_`, starting with a letter.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    pub kind: WorkflowKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema (draft 2020-12 unless it says otherwise) that every run's input must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// What happens when a step has spent its retries, unless the step says otherwise.
    #[serde(default)]
    pub on_failure: FailurePolicy,
    /// The retry policy of every step that does not declare its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// What starts this workflow besides an explicit start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    /// What ties this workflow's runs to those of other workflows: a `${ <CEL> }` expression
    /// over `input` giving a string or a number, e.g. `${input.event.id}`. Runs of different
    /// workflows with the same key belong to the same event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_key: Option<String>,
    /// How this workflow's runs depend on runs of other workflows for the same key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
    pub steps: Vec<Step>,
}

/// A dependency of the declaring workflow (B) on another workflow (A).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    /// The workflow depended on (A).
    pub workflow: String,
    #[serde(rename = "type")]
    pub kind: DependencyKind,
    /// Conditional only: a CEL condition over the completed run's `output` (its steps'
    /// outputs by step id) and `input`; B starts when it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Parallel and conditional: the input of the run of B that A's run starts, a template
    /// over A's `input` (and, for conditional, `output`). Without it, A's input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// How B depends on A.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DependencyKind {
    /// A start of B waits (`waiting_for_dependency`) until A's run for the same correlation
    /// key has completed; if that run fails, is compensated or cancelled, B ends `cancelled`.
    Blocking,
    /// Starting a run of A starts a run of B, once.
    Parallel,
    /// A run of A that completes starts a run of B, once, when `when` holds.
    Conditional,
}

/// The six kinds of workflow eventflow knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowKind {
    EventLaunch,
    SponsorOutreach,
    AttendeeNurture,
    PostEventFollowup,
    DeliverableTracking,
    Custom,
}

/// A step of the graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique within the workflow: lower case letters, digits and `_`, starting with a letter
    /// (it is a name in expressions: `steps.<id>.output`).
    pub id: String,
    /// The action to run. A step with only a `wait` needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The action's input. Any string written `${ <CEL> }` is an expression evaluated over
    /// `input`, `steps.<id>.output`, `item`, `index`, `iteration` and `now`; `$${` writes a
    /// literal `${`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub input: Value,
    /// Shapes what the step keeps as its output from the action's `result`, e.g.
    /// `{"url": "${result.url}"}`. Without it the step keeps the whole result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Steps (or parallel groups) that must finish first. Steps with no path between them run
    /// in parallel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Sugar for fork-join: a step that depends on a group's name depends on all its members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_group: Option<String>,
    /// A CEL condition; when false the step is skipped and its dependents still run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_each: Option<ForEach>,
    #[serde(rename = "loop", default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Loop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Wait>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// How long one attempt may take; a timeout is a retryable failure named `Timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// How to undo this step if the run is rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensate: Option<Compensate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<FailurePolicy>,
}

/// Fan a step out over a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForEach {
    /// A CEL expression giving the list; each element is `item` (and its position `index`).
    pub items: String,
    /// At most this many items in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// The share of items (0 to 1) that may fail without failing the step.
    #[serde(default)]
    pub tolerated_failure: f64,
}

fn default_concurrency() -> u32 {
    10
}

/// Repeat a step until a condition holds or a count is reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Loop {
    /// A CEL condition checked after each iteration, over `steps.<this step>.output` and
    /// `iteration`; true ends the loop.
    pub until: String,
    /// The most iterations; reaching it ends the loop (see `on_exhausted`).
    pub max_iterations: u32,
    /// Pause between iterations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    /// What reaching `max_iterations` without `until` holding means.
    #[serde(default)]
    pub on_exhausted: LoopExhausted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoopExhausted {
    /// The step succeeds with its last output.
    #[default]
    Succeed,
    /// The step fails with the error `LoopExhausted`.
    Fail,
}

/// Wait before the step's action (or instead of one): for a duration, or until an instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    /// Wait this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// A CEL expression giving an instant (RFC 3339 timestamp) or a date (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Moves the instant from `until` by calendar days (and hours) in `time_zone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<Offset>,
    /// Local wall-clock time `HH:MM` on the resulting day, in `time_zone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// An IANA time zone name (e.g. `Europe/Berlin`), or `${ <CEL> }` giving one. Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// How a failed attempt is retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. 1 means no retry.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_initial_interval")]
    pub initial_interval: Duration,
    /// Each retry waits this many times longer than the one before.
    #[serde(default = "default_backoff_rate")]
    pub backoff_rate: f64,
    /// No wait is ever longer than this.
    #[serde(default = "default_max_interval")]
    pub max_interval: Duration,
    #[serde(default)]
    pub jitter: Jitter,
    /// Error names that fail at once, never retried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_retryable: Vec<String>,
}

fn default_max_attempts() -> u32 {
    3
}
fn default_initial_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff_rate() -> f64 {
    2.0
}
fn default_max_interval() -> Duration {
    Duration::from_secs(300)
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: default_max_attempts(),
            initial_interval: default_initial_interval(),
            backoff_rate: default_backoff_rate(),
            max_interval: default_max_interval(),
            jitter: Jitter::default(),
            non_retryable: Vec::new(),
        }
    }
}

/// Randomisation of retry waits, so that many runs failing together do not retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Wait a uniformly random time between zero and the computed interval.
    #[default]
    Full,
    /// Wait exactly the computed interval.
    None,
}

/// How a step is undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Compensate {
    /// `true`: the action's own compensation, on the step's input and output.
    Builtin(bool),
    Spec(CompensateSpec),
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompensateSpec {
    /// Another action that undoes this one; without it, the action's own compensation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Input of the compensation; may use `steps.<this step>.output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
}

/// What a run does once a step has failed for good.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Compensate every succeeded step, in reverse dependency order.
    #[default]
    Rollback,
    /// Compensate what follows the named step, then pause there so it can be retried.
    RollbackTo(String),
    /// The step is failed, its dependents skipped, other branches finish.
    Continue,
    /// Wait for an operator: retry, skip, roll back, resume or cancel.
    Pause,
}

/// What starts a workflow besides an explicit start. Declared here; fired by the scheduler
/// and the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// A cron expression (minute hour day-of-month month day-of-week) in a time zone.
    Cron {
        expression: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time_zone: Option<String>,
        /// The input of each run it starts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<Value>,
    },
    /// Every so often.
    Rate {
        every: Duration,
        /// The input of each run it starts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<Value>,
    },
    /// Relative to a date of an event record, e.g. 14, 7 and 1 days before `starts_at`.
    EventRelative {
        /// The event record's field holding the date (`starts_at`, `ends_at`).
        field: String,
        offsets: Vec<Offset>,
        /// Local wall-clock time `HH:MM` in the event's time zone.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
        /// The input of each run it starts: a template over the event record, read as
        /// `event` (e.g. `{"event": "${event}", "attendees": "${event.attendees}"}`). Without
        /// it, the record's fields, with the whole record under `event`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<Value>,
    },
    /// A signed webhook, `POST /hooks/{name}`.
    Webhook { name: String },
}
