//! The ports of eventflow: small capability traits that the engine's hosts implement.
//!
//! `shared/local` implements them on an embedded database and an in-process queue;
//! `shared/aws` implements them on DynamoDB, SQS and SES. The runtime loop and the actions are
//! written once against these traits.
//!
//! - [`VersionStore`]: immutable workflow versions.
//! - [`ExecutionStore`]: checkpoints, history, in-flight tasks, timers and attempt results,
//!   written together in one [`Commit`] per applied event.
//! - [`TaskQueue`]: hands [`Task`]s (action attempts) to workers.
//! - [`Clock`]: the only source of time.
//! - [`Action`] with [`ActionContext`]: what a step does, and how it is undone; actions reach
//!   the outside world through [`RecordStore`] and [`Outbox`].
//! - [`versions`]: the version lifecycle (alias and canary, deprecate, retire) over the ports.
//! - [`metrics`]: the figures runs emit, summed per workflow and hour.

use std::sync::Arc;

pub mod attempt;
pub mod metrics;
pub mod versions;

use async_trait::async_trait;
use eventflow_engine::{
    Checkpoint, Command, Definition, HistoryEntry, RunStatus, StepError, Timer, Timestamp,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A store failure. A lost race on a conditional write is a [`StoreError::Conflict`], which
/// the caller resolves by re-reading and re-applying.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("the store failed: {source}")]
    Backend {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend {
            source: Box::new(e),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An immutable published version of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub workflow_id: String,
    pub number: u32,
    /// SHA-256 of the canonical JSON of the definition.
    pub hash: String,
    pub definition: Definition,
    pub published_at: Timestamp,
}

/// A SHA-256 of the definition's canonical JSON (lower-case hex): equal definitions publish
/// one version, on every host.
pub fn definition_hash(def: &Definition) -> String {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::to_vec(def).unwrap_or_default();
    Sha256::digest(&canonical)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where a version stands. The version itself never changes; this does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionState {
    /// Can start runs.
    #[default]
    Active,
    /// Starts nothing new; its runs go on.
    Deprecated,
    /// No run uses it any more, and none can.
    Retired,
}

/// A share of new starts sent to another version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    pub version: u32,
    /// Percent of new starts, 1 to 99.
    pub weight: u8,
}

/// Which version new starts of a workflow use: the active one, or for a weighted share, a
/// canary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    pub workflow_id: String,
    pub active: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

impl Alias {
    /// The version a start with this idempotency key uses. Decided by a hash of the key, so a
    /// start delivered twice lands on the same version, and over many starts the canary gets
    /// its weight.
    pub fn choose(&self, start_key: &str) -> u32 {
        let Some(canary) = self.canary else {
            return self.active;
        };
        // FNV-1a: stable across processes and platforms (std's hasher is not).
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.workflow_id.bytes().chain([0]).chain(start_key.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        if h % 100 < u64::from(canary.weight) {
            canary.version
        } else {
            self.active
        }
    }
}

#[async_trait]
pub trait VersionStore: Send + Sync {
    /// Publishes `definition` as the next version, or returns the existing version with the
    /// same hash. Never overwrites a version.
    async fn publish(
        &self,
        definition: &Definition,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<VersionRecord>;
    async fn version(&self, workflow_id: &str, number: u32) -> StoreResult<Option<VersionRecord>>;
    async fn latest(&self, workflow_id: &str) -> StoreResult<Option<VersionRecord>>;
    /// The ids of every workflow with a published version, in order.
    async fn workflows(&self) -> StoreResult<Vec<String>>;
    /// Every version of a workflow with its state, oldest first.
    async fn versions(&self, workflow_id: &str) -> StoreResult<Vec<(VersionRecord, VersionState)>>;
    async fn state(&self, workflow_id: &str, number: u32) -> StoreResult<VersionState>;
    async fn set_state(
        &self,
        workflow_id: &str,
        number: u32,
        state: VersionState,
    ) -> StoreResult<()>;
    /// The alias; without one, the latest version is active.
    async fn alias(&self, workflow_id: &str) -> StoreResult<Option<Alias>>;
    async fn set_alias(&self, alias: &Alias) -> StoreResult<()>;
}

/// An action attempt (or compensation) handed to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub execution_id: String,
    pub workflow_id: String,
    pub version: u32,
    /// A `RunStep` or `RunCompensation` command.
    pub command: Command,
    /// Sent again (after a restart, or a queue's redelivery): it may have been answered
    /// already, so the worker looks for a recorded result before acting.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redelivered: bool,
}

impl Task {
    /// The idempotency key of the attempt.
    pub fn key(&self) -> &str {
        match &self.command {
            Command::RunStep { key, .. } | Command::RunCompensation { key, .. } => key,
            _ => "",
        }
    }
}

/// A timer waiting in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimerRecord {
    pub execution_id: String,
    pub timer: Timer,
    pub at: Timestamp,
}

impl TimerRecord {
    /// A stable name for the timer, unique within the store.
    pub fn id(&self) -> String {
        let t = &self.timer;
        format!(
            "{}/{:?}/{}/{}/{}",
            self.execution_id,
            t.kind,
            t.step,
            t.item.map_or_else(|| "-".to_owned(), |i| i.to_string()),
            t.attempt
        )
    }
}

/// Everything one applied event writes, atomically: the checkpoint (under the condition that
/// the stored one is still `expected_seq`), its history entries, the tasks it dispatched and
/// those it answered, the timers it set and the one that fired, and the results of answered
/// attempts (the idempotency records).
#[derive(Debug, Clone, Default)]
pub struct Commit {
    /// The checkpoint, stored without its input (see `input`).
    pub checkpoint: Option<Checkpoint>,
    /// `None` when the execution is new.
    pub expected_seq: Option<u64>,
    /// The run's input, written once when the execution is created: it can be large (a list
    /// of attendees), so it is not rewritten with every checkpoint.
    pub input: Option<Value>,
    /// The idempotency key the execution was started with, written once at creation.
    pub start_key: Option<String>,
    pub history: Vec<HistoryEntry>,
    pub dispatched: Vec<Task>,
    /// Keys of tasks whose result this commit applied.
    pub answered: Vec<String>,
    pub results: Vec<(String, Value)>,
    pub timers: Vec<TimerRecord>,
    pub fired: Vec<TimerRecord>,
    /// Runs of other workflows this event starts (workflow dependencies), kept until a run
    /// with the start's key exists, so a crash between the two starts each exactly once.
    pub dependent_starts: Vec<DependentStart>,
    /// Figures the events emitted, added to the workflow's hourly aggregates.
    pub metrics: Vec<metrics::Sample>,
}

/// A run of a dependent workflow to start, once per `key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DependentStart {
    /// The start's idempotency key, derived from the upstream run's execution id.
    pub key: String,
    pub workflow: String,
    pub input: Value,
}

/// A short view of an execution, for lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionSummary {
    pub execution_id: String,
    pub workflow_id: String,
    pub version: u32,
    pub status: RunStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[async_trait]
pub trait ExecutionStore: Send + Sync {
    /// Writes several commits (of different executions). A commit whose `expected_seq` does
    /// not match is a [`StoreError::Conflict`] and its checkpoint is not written: the caller
    /// re-reads the checkpoint and re-applies its events.
    ///
    /// How much of a call is atomic depends on the host:
    ///
    /// - the local store writes the whole call in one durable transaction: all or nothing;
    /// - the DynamoDB store writes the commits one after the other, each with its own
    ///   conditional checkpoint write. The first commit that fails ends the call with its
    ///   error; the commits before it stay written, those after it are not attempted. Within
    ///   one commit, history, tasks, results, timers and input are written before the
    ///   checkpoint, so a failed or interrupted commit may leave some of them behind: history
    ///   beyond the checkpoint's `seq` (never read), and items keyed by sequence number,
    ///   attempt key or timer id, which applying the same events again writes again. A caller
    ///   that gets an error re-reads the checkpoint of every execution of the call and
    ///   re-applies the events not yet in it. A commit's metrics are added to the
    ///   aggregates once its checkpoint is written, so a crash between the two loses them:
    ///   a figure is counted at most once, never twice.
    async fn commit(&self, commits: Vec<Commit>) -> StoreResult<()>;
    async fn checkpoint(&self, execution_id: &str) -> StoreResult<Option<Checkpoint>>;
    async fn history(&self, execution_id: &str) -> StoreResult<Vec<HistoryEntry>>;
    async fn list(
        &self,
        status: Option<RunStatus>,
        workflow: Option<&str>,
    ) -> StoreResult<Vec<ExecutionSummary>>;
    /// Tasks dispatched and not yet answered: re-sent after a restart.
    async fn pending_tasks(&self) -> StoreResult<Vec<Task>>;
    /// The recorded result of an attempt, if it was applied.
    async fn result(&self, key: &str) -> StoreResult<Option<Value>>;
    /// The execution started with this idempotency key, if any.
    async fn execution_for_key(&self, key: &str) -> StoreResult<Option<String>>;
    /// The hourly metric aggregates of `workflow_id` whose hour starts in `from..to`, oldest
    /// first; an hour without figures has none.
    async fn metrics(
        &self,
        workflow_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<metrics::Aggregate>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canary_gets_its_weight_within_three_points_over_ten_thousand_starts() {
        for weight in [1u8, 10, 25, 50, 90] {
            let alias = Alias {
                workflow_id: "event-launch".into(),
                active: 1,
                canary: Some(Canary { version: 2, weight }),
            };
            let canary = (0..10_000)
                .filter(|i| alias.choose(&format!("start-{i}")) == 2)
                .count();
            let share = canary as f64 / 100.0;
            assert!(
                (share - f64::from(weight)).abs() <= 3.0,
                "weight {weight}: {share}% went to the canary"
            );
        }
    }

    #[test]
    fn the_same_start_key_always_picks_the_same_version() {
        let alias = Alias {
            workflow_id: "w".into(),
            active: 3,
            canary: Some(Canary {
                version: 4,
                weight: 50,
            }),
        };
        let first: Vec<u32> = (0..100).map(|i| alias.choose(&i.to_string())).collect();
        let again: Vec<u32> = (0..100).map(|i| alias.choose(&i.to_string())).collect();
        assert_eq!(first, again);
        assert!(first.contains(&3) && first.contains(&4));
        let plain = Alias {
            canary: None,
            ..alias
        };
        assert!((0..100).all(|i| plain.choose(&i.to_string()) == 3));
    }
}

/// A tenant: its name and the hash of its API key (the key itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub tenant: String,
    pub key_hash: String,
    pub created_at: Timestamp,
    /// The HMAC-SHA256 key of the tenant's webhooks. Kept as it is, since checking a
    /// signature needs it; shown once at creation, like the API key.
    #[serde(default)]
    pub webhook_secret: String,
}

#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Creates a tenant; refused with a conflict when the name is taken.
    async fn create_tenant(&self, record: &TenantRecord) -> StoreResult<()>;
    async fn tenant(&self, tenant: &str) -> StoreResult<Option<TenantRecord>>;
}

#[async_trait]
pub trait TimerStore: Send + Sync {
    /// Timers due at or before `until`, earliest first.
    async fn due(&self, until: Timestamp, limit: usize) -> StoreResult<Vec<TimerRecord>>;
    /// The earliest timer, if any.
    async fn next(&self) -> StoreResult<Option<TimerRecord>>;
}

#[async_trait]
pub trait TaskQueue: Send + Sync {
    async fn send(&self, tasks: Vec<Task>) -> StoreResult<()>;
}

pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// A domain record: an event, sponsor, attendee, deliverable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub collection: String,
    pub key: String,
    pub value: Value,
}

#[async_trait]
pub trait RecordStore: Send + Sync {
    async fn get(&self, collection: &str, key: &str) -> StoreResult<Option<Value>>;
    /// Writes `value`, returning what it replaced.
    async fn put(&self, collection: &str, key: &str, value: &Value) -> StoreResult<Option<Value>>;
    /// Removes the record, returning it.
    async fn delete(&self, collection: &str, key: &str) -> StoreResult<Option<Value>>;
}

/// A message leaving the system (an email, a notification).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The idempotency key of the attempt that sent it: sending the same key twice sends once.
    pub key: String,
    pub kind: String,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub text: String,
}

#[async_trait]
pub trait Outbox: Send + Sync {
    /// Sends `message` once per key; returns the message id.
    async fn send(&self, message: &Message) -> StoreResult<String>;
}

/// Why an action attempt failed: retryable or terminal, with a stable name that retry
/// policies match (`non_retryable`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ActionError {
    pub name: String,
    pub message: String,
    pub retryable: bool,
}

impl ActionError {
    pub fn retryable(name: &str, message: impl Into<String>) -> Self {
        ActionError {
            name: name.to_owned(),
            message: message.into(),
            retryable: true,
        }
    }

    pub fn terminal(name: &str, message: impl Into<String>) -> Self {
        ActionError {
            name: name.to_owned(),
            message: message.into(),
            retryable: false,
        }
    }

    /// A store that failed: worth another attempt.
    pub fn store(e: StoreError) -> Self {
        ActionError::retryable("StoreUnavailable", e.to_string())
    }
}

impl From<ActionError> for StepError {
    fn from(e: ActionError) -> Self {
        StepError {
            name: e.name,
            message: e.message,
            retryable: e.retryable,
        }
    }
}

/// Starts and cancels runs of other workflows (the `workflow.start` action).
#[async_trait]
pub trait Workflows: Send + Sync {
    /// Starts `workflow_id` with `input` once per `idempotency_key`; returns the execution id
    /// (the existing one when the key was used before).
    async fn start(
        &self,
        workflow_id: &str,
        input: &Value,
        idempotency_key: &str,
    ) -> Result<String, ActionError>;
    /// Cancels a run (with compensation); a finished run is left as it is.
    async fn cancel(&self, execution_id: &str) -> Result<(), ActionError>;
}

/// What an action may use: where it is in the run, and the world it acts on.
#[derive(Clone)]
pub struct ActionContext {
    pub execution_id: String,
    pub workflow_id: String,
    pub step: String,
    pub item: Option<u32>,
    pub attempt: u32,
    /// The attempt's idempotency key.
    pub key: String,
    pub records: Arc<dyn RecordStore>,
    pub outbox: Arc<dyn Outbox>,
    pub workflows: Arc<dyn Workflows>,
}

impl std::fmt::Debug for ActionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionContext")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A step action. `compensate` undoes a successful `execute` given its input and output.
#[async_trait]
pub trait Action: Send + Sync {
    fn name(&self) -> &'static str;
    async fn execute(&self, ctx: &ActionContext, input: &Value) -> Result<Value, ActionError>;
    /// Undoes `execute`; actions that cannot undo themselves keep this default.
    async fn compensate(
        &self,
        _ctx: &ActionContext,
        _input: &Value,
        _output: Option<&Value>,
    ) -> Result<Value, ActionError> {
        Err(ActionError::terminal(
            "NoCompensation",
            format!("action `{}` cannot undo itself", self.name()),
        ))
    }
}
