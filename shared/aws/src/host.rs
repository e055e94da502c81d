//! Applying events to runs on AWS: the one place where `decide()` is called, by the
//! coordinator (attempt results, timers, operator events on the queue), by the API (starts and
//! operator requests, answered at once) and by the flow worker (`workflow.start`).
//!
//! There is no long-lived owner of a run here, as the local runtime's driver is: every apply
//! reads the checkpoint, applies the events, and writes under the condition that no one else
//! wrote in between. Losing that race is a conflict, resolved by reading again and applying
//! again; events already applied are recognised by their ids and change nothing. Tasks and
//! timers are sent only once the checkpoint is written. When everything in a batch was applied
//! before (a redelivery after a crash between the write and the sends), what the run still
//! waits for is sent again: the workers find an answered attempt's result and do not act twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use eventflow_engine::{
    ActionRegistry, Checkpoint, Command, Event, EventKind, RunStatus, Timestamp, Version, decide,
};
use eventflow_ports::metrics::Sample;
use eventflow_ports::versions::{self, VersionError};
use eventflow_ports::{
    ActionError, Clock, Commit, ExecutionStore, RecordStore, StoreError, StoreResult, Task,
    TimerRecord, TimerStore, VersionStore, Workflows,
};
use serde_json::Value;

use crate::messages::Logged;
use crate::sqs::Queues;

/// How often an apply that lost a race reads again before giving up (the message is then
/// redelivered by its queue).
const ATTEMPTS: usize = 8;

/// What a host needs of its store beyond the ports: dispatched attempts and armed timers of
/// one run, and a copy scoped to another tenant.
#[async_trait]
pub trait RunItems: Send + Sync {
    /// Attempt `key` as the commit starting at `logged_at` dispatched it.
    async fn logged_task(
        &self,
        execution_id: &str,
        logged_at: u64,
        key: &str,
    ) -> StoreResult<Option<Task>>;
    /// Every attempt the run at `cp` waits for, and its armed timers.
    async fn pending(&self, cp: &Checkpoint) -> StoreResult<(Vec<Logged>, Vec<TimerRecord>)>;
}

/// The store of the AWS host.
pub trait AwsStore:
    VersionStore + ExecutionStore + RecordStore + TimerStore + RunItems + Clone + 'static
{
    /// The same store, scoped to `tenant`.
    fn for_tenant(&self, tenant: &str) -> Self;
    /// The tenant it is scoped to.
    fn tenant(&self) -> &str;
}

/// Why a start was refused.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The input is refused: every problem, with its path.
    #[error("{}", eventflow_engine::Problem::join(.0))]
    Invalid(Vec<eventflow_engine::Problem>),
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The run's status after it; `None` when there is no such run.
    pub status: Option<RunStatus>,
    /// Whether any event changed the run (false: all were applied before, or do not apply).
    pub changed: bool,
}

/// Compiled versions, shared by every tenant's host in one process (versions never change).
pub type VersionCache = Arc<Mutex<HashMap<(String, String, u32), Arc<Version>>>>;

/// One tenant's host.
#[derive(Clone)]
pub struct Host<S: AwsStore> {
    store: S,
    queues: Queues,
    registry: ActionRegistry,
    clock: Arc<dyn Clock>,
    versions: VersionCache,
}

impl<S: AwsStore> std::fmt::Debug for Host<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("tenant", &self.store.tenant())
            .finish_non_exhaustive()
    }
}

/// A stable seed for an event's jitter: the same event always gets the same one.
fn seed_of(id: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

impl<S: AwsStore> Host<S> {
    pub fn new(
        store: S,
        queues: Queues,
        registry: ActionRegistry,
        clock: Arc<dyn Clock>,
        versions: VersionCache,
    ) -> Self {
        Host {
            store,
            queues,
            registry,
            clock,
            versions,
        }
    }

    /// The same host for another tenant.
    pub fn for_tenant(&self, tenant: &str) -> Self {
        Host {
            store: self.store.for_tenant(tenant),
            ..self.clone()
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    pub fn tenant(&self) -> &str {
        self.store.tenant()
    }

    /// The actions versions are compiled (and definitions validated) against.
    pub fn registry(&self) -> &ActionRegistry {
        &self.registry
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// A compiled version, from the cache or the store.
    pub async fn version(&self, workflow: &str, number: u32) -> StoreResult<Arc<Version>> {
        let key = (self.tenant().to_owned(), workflow.to_owned(), number);
        if let Some(v) = self.cache().get(&key) {
            return Ok(Arc::clone(v));
        }
        let version = versions::compiled(&self.store, &self.registry, workflow, number).await?;
        let version = Arc::new(version);
        self.cache().insert(key, Arc::clone(&version));
        Ok(version)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String, u32), Arc<Version>>> {
        self.versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a run of `version` once per `key`: its id, and whether this call created it.
    pub async fn start(
        &self,
        version: Arc<Version>,
        input: Value,
        key: &str,
    ) -> Result<(String, bool), StartError> {
        version.check_input(&input).map_err(StartError::Invalid)?;
        if let Some(existing) = self.store.execution_for_key(key).await? {
            return Ok((existing, false));
        }
        let execution_id = format!("ex-{}", uuid::Uuid::now_v7().simple());
        let now = self.now();
        let cp = Checkpoint::new(&version, &execution_id, input, now);
        let event = Event::new(format!("{execution_id}/started"), EventKind::Started);
        let mut out = Outgoing::default();
        let (mut commit, cp) = self.decide_all(&version, cp, vec![(event, None)], &mut out);
        commit.expected_seq = None;
        commit.input = Some(cp.input.clone());
        commit.start_key = Some(key.to_owned());
        commit.checkpoint = Some(without_input(&cp));
        let samples = commit.metrics.clone();
        match Box::pin(self.store.commit(vec![commit])).await {
            Ok(()) => emf(&samples),
            // Another start with the same key got there first: that run is the one.
            Err(StoreError::Conflict(_)) => {
                if let Some(existing) = self.store.execution_for_key(key).await? {
                    return Ok((existing, false));
                }
                return Err(StoreError::Unavailable(
                    "the start lost a race and its winner cannot be read yet; try again".into(),
                )
                .into());
            }
            Err(e) => return Err(e.into()),
        }
        Box::pin(self.send(out)).await?;
        Ok((execution_id, true))
    }

    /// Starts `workflow` by its alias (a canary takes its share by the key), once per key.
    pub async fn start_workflow(
        &self,
        workflow: &str,
        number: Option<u32>,
        input: Value,
        key: &str,
    ) -> Result<(String, bool), StartError> {
        let number = versions::version_for_start(&self.store, workflow, number, key).await?;
        let version = self.version(workflow, number).await?;
        self.start(version, input, key).await
    }

    /// Applies events to a run, in order; `answers` names the attempt an event answers.
    pub async fn apply(
        &self,
        execution_id: &str,
        events: Vec<(Event, Option<String>)>,
    ) -> StoreResult<Applied> {
        for _ in 0..ATTEMPTS {
            let Some(cp) = self.store.checkpoint(execution_id).await? else {
                tracing::warn!(execution_id, "events for an unknown execution were dropped");
                return Ok(Applied {
                    status: None,
                    changed: false,
                });
            };
            let version = self.version(&cp.workflow_id, cp.version).await?;
            let expected = cp.seq;
            let mut out = Outgoing::default();
            let (mut commit, cp) = self.decide_all(&version, cp, events.clone(), &mut out);
            let status = Some(cp.status);
            if commit.history.is_empty() {
                // Everything was applied before: send again what the run still waits for.
                self.redispatch_run(&cp).await?;
                return Ok(Applied {
                    status,
                    changed: false,
                });
            }
            commit.checkpoint = Some(without_input(&cp));
            commit.expected_seq = Some(expected);
            let samples = commit.metrics.clone();
            match Box::pin(self.store.commit(vec![commit])).await {
                Ok(()) => {
                    emf(&samples);
                    Box::pin(self.send(out)).await?;
                    return Ok(Applied {
                        status,
                        changed: true,
                    });
                }
                Err(StoreError::Conflict(why)) => {
                    tracing::debug!(execution_id, %why, "lost a race; reading again");
                }
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(format!(
            "execution {execution_id} kept changing under {ATTEMPTS} attempts to apply; the events will come again"
        )))
    }

    /// Sends again every attempt a run has dispatched and not had answered, and its timers;
    /// returns how many attempts.
    pub async fn redispatch(&self, execution_id: &str) -> StoreResult<usize> {
        match self.store.checkpoint(execution_id).await? {
            Some(cp) => self.redispatch_run(&cp).await,
            None => Ok(0),
        }
    }

    async fn redispatch_run(&self, cp: &Checkpoint) -> StoreResult<usize> {
        let (tasks, timers) = self.store.pending(cp).await?;
        let count = tasks.len();
        let tasks = tasks
            .into_iter()
            .map(|l| Logged {
                task: Task {
                    redelivered: true,
                    ..l.task
                },
                ..l
            })
            .collect();
        self.send(Outgoing { tasks, timers }).await?;
        Ok(count)
    }

    /// Applies the events to a checkpoint: the commit (without its checkpoint) and the new
    /// checkpoint; tasks and timers to send go into `out`.
    fn decide_all(
        &self,
        version: &Version,
        mut cp: Checkpoint,
        events: Vec<(Event, Option<String>)>,
        out: &mut Outgoing,
    ) -> (Commit, Checkpoint) {
        let mut commit = Commit::default();
        let now = self.now();
        // The commit's log item is keyed by its first history entry: the next sequence number.
        let logged_at = cp.seq + 1;
        for (event, answers) in events {
            let seed = seed_of(&event.id);
            let d = decide(version, cp, event, now, seed);
            cp = d.checkpoint;
            if let Some(key) = answers {
                commit.answered.push(key);
            }
            if let Some(entry) = d.history {
                commit.history.push(entry);
            }
            for c in d.commands {
                match c {
                    Command::RunStep { .. } | Command::RunCompensation { .. } => {
                        let task = Task {
                            execution_id: cp.execution_id.clone(),
                            workflow_id: cp.workflow_id.clone(),
                            version: cp.version,
                            command: c,
                            redelivered: false,
                        };
                        commit.dispatched.push(task.clone());
                        out.tasks.push(Logged { logged_at, task });
                    }
                    Command::ScheduleTimer { timer, at } => {
                        let record = TimerRecord {
                            execution_id: cp.execution_id.clone(),
                            timer,
                            at,
                        };
                        commit.timers.push(record.clone());
                        out.timers.push(record);
                    }
                    Command::Finish { status, error } => {
                        tracing::info!(execution_id = %cp.execution_id, status = status.as_str(), error = ?error.map(|e| e.error.message), "run finished");
                    }
                    Command::EmitMetric { .. } => {
                        commit.metrics.extend(Sample::of(&c, &cp.workflow_id, now));
                    }
                }
            }
        }
        (commit, cp)
    }

    async fn send(&self, out: Outgoing) -> StoreResult<()> {
        let tenant = self.tenant().to_owned();
        if !out.tasks.is_empty() {
            self.queues.send_tasks(&tenant, &out.tasks).await?;
        }
        if !out.timers.is_empty() {
            self.queues
                .send_timers(&tenant, &out.timers, self.now())
                .await?;
        }
        Ok(())
    }
}

/// What an apply sends once its checkpoint is written.
#[derive(Debug, Default)]
struct Outgoing {
    tasks: Vec<Logged>,
    timers: Vec<TimerRecord>,
}

/// Prints the samples of a written commit as CloudWatch Embedded Metric Format lines (a log
/// line each, no API call), by workflow. Only once the commit is written: a commit that lost a
/// race is applied again, and would count twice.
fn emf(samples: &[Sample]) {
    for m in samples {
        println!(
            "{}",
            serde_json::json!({
                "_aws": {"Timestamp": m.at.timestamp_millis(), "CloudWatchMetrics": [{
                    "Namespace": "eventflow",
                    "Dimensions": [["workflow"]],
                    "Metrics": [{"Name": m.name, "Unit": m.unit}]}]},
                "workflow": m.workflow_id,
                m.name.as_str(): m.value,
            })
        );
    }
}

/// The checkpoint as stored: its input is kept once, apart.
fn without_input(cp: &Checkpoint) -> Checkpoint {
    Checkpoint {
        input: Value::Null,
        ..cp.clone()
    }
}

#[async_trait]
impl<S: AwsStore> Workflows for Host<S> {
    async fn start(
        &self,
        workflow_id: &str,
        input: &Value,
        idempotency_key: &str,
    ) -> Result<String, ActionError> {
        match self
            .start_workflow(workflow_id, None, input.clone(), idempotency_key)
            .await
        {
            Ok((id, _)) => Ok(id),
            Err(e @ StartError::Invalid(_)) => {
                Err(ActionError::terminal("InvalidInput", e.to_string()))
            }
            Err(StartError::Version(VersionError::Store(e)) | StartError::Store(e)) => {
                Err(ActionError::store(e))
            }
            Err(StartError::Version(e)) => {
                Err(ActionError::terminal("UnknownWorkflow", e.to_string()))
            }
        }
    }

    async fn cancel(&self, execution_id: &str) -> Result<(), ActionError> {
        let event = Event::new(
            format!("{execution_id}/cancel/{}", uuid::Uuid::now_v7().simple()),
            EventKind::Cancel { compensate: true },
        );
        self.apply(execution_id, vec![(event, None)])
            .await
            .map(|_| ())
            .map_err(ActionError::store)
    }
}
