//! The local runtime: the pure engine driven by one loop, on the embedded store.
//!
//! One task (the driver) owns the checkpoints of active runs. It takes a batch of messages
//! (starts, attempt results, timers, operator events), applies each with `decide()`, writes all
//! of the batch's commits in one durable transaction (group commit), and only then hands the
//! new tasks to the worker pool and the new timers to its timer heap. Workers run actions and
//! send their results back as events. Tasks and timers live in the store, so a process killed
//! at any point loses none: on start they are loaded again and re-sent, with the same
//! idempotency keys.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use eventflow_engine::migrate::{self, Mapping, Reason, Summary};
use eventflow_engine::{
    ActionRegistry, Checkpoint, Command, Definition, DependencyKind, Event, EventKind,
    HistoryEntry, RunStatus, Timestamp, Upstream, Version, decide,
};
use eventflow_ports::attempt;
use eventflow_ports::metrics::Sample;
use eventflow_ports::versions::{self, VersionError};
use eventflow_ports::*;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};

pub use crate::dependencies::PublishError;
use crate::dependencies::{self, Dependents, Standing};
use crate::queue::{self, InProcessQueue, TaskReceiver};
use crate::store::LocalStore;

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Utc::now()
    }
}

/// What the runtime tells whoever watches: every applied event, with the run's status after it.
#[derive(Debug, Clone)]
pub struct Progress {
    pub execution_id: String,
    pub status: RunStatus,
    pub entry: HistoryEntry,
}

/// Why a start was refused.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The input is refused: every problem, with its path.
    #[error("{}", eventflow_engine::Problem::join(.0))]
    Invalid(Vec<eventflow_engine::Problem>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the runtime has stopped")]
    Stopped,
}

/// Where a run stands, for a caller deciding whether to keep watching.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// Attempts in flight or about to be.
    Busy,
    /// Nothing in flight; the next timer is at this instant.
    WaitingUntil(Timestamp),
    /// Nothing in flight and no timer: paused, or waiting for an operator.
    Idle(RunStatus),
    Finished(RunStatus),
    Unknown,
}

enum Msg {
    Start {
        version: Arc<Version>,
        execution_id: String,
        input: Value,
        start_key: Option<String>,
        /// Told the run's id once durable: this one, or the run the key started before.
        reply: oneshot::Sender<StoreResult<String>>,
        finished: Option<oneshot::Sender<RunStatus>>,
    },
    Event {
        execution_id: String,
        event: Event,
        /// The task this event answers, and the attempt's output to record.
        answered: Option<(String, Option<Value>)>,
    },
    State {
        execution_id: String,
        reply: oneshot::Sender<RunState>,
    },
    /// An operator's event, answered once durable: the run's status after it, or `None` when
    /// it did not apply (nothing changed).
    Operate {
        execution_id: String,
        event: Event,
        reply: oneshot::Sender<Option<RunStatus>>,
    },
    /// Stop the driver once what came before is committed.
    Stop,
    /// Move a run to another version (or only check whether it could).
    Migrate {
        execution_id: String,
        to: Arc<Version>,
        mapping: Arc<Mapping>,
        dry_run: bool,
        reply: oneshot::Sender<MigrateOutcome>,
    },
}

/// What a migration did (or would do), or every reason it cannot.
pub type MigrateOutcome = Result<Summary, Vec<Reason>>;

/// Settings of the local runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Action attempts running at once.
    pub workers: usize,
    /// Messages applied in one group commit at most.
    pub batch: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            workers: 256,
            batch: 1024,
        }
    }
}

struct Shared {
    store: LocalStore,
    clock: Arc<dyn Clock>,
    registry: ActionRegistry,
    actions: HashMap<&'static str, Arc<dyn Action>>,
    outbox: Arc<dyn Outbox>,
    versions: Mutex<HashMap<(String, u32), Arc<Version>>>,
    /// Who depends on whom, from the active versions, with the store's versions generation
    /// it was read at (a publish or an alias change makes it stale).
    dependents: Mutex<Option<(u64, Arc<Dependents>)>>,
    inbox: mpsc::UnboundedSender<Msg>,
    progress: broadcast::Sender<Progress>,
    queue: InProcessQueue,
}

/// A handle on the running local runtime; cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("store", &self.shared.store)
            .finish()
    }
}

fn seed_of(id: &str) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

pub use eventflow_ports::definition_hash;

impl Runtime {
    /// Starts the driver and re-sends every task and timer the store holds.
    pub async fn start(
        store: LocalStore,
        clock: Arc<dyn Clock>,
        registry: ActionRegistry,
        actions: HashMap<&'static str, Arc<dyn Action>>,
        outbox: Arc<dyn Outbox>,
        config: RuntimeConfig,
    ) -> StoreResult<Runtime> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (queue, tasks_rx) = InProcessQueue::new();
        let (progress, _) = broadcast::channel(16_384);
        let shared = Arc::new(Shared {
            store,
            clock,
            registry,
            actions,
            outbox,
            versions: Mutex::new(HashMap::new()),
            dependents: Mutex::new(None),
            inbox: tx,
            progress,
            queue,
        });
        let runtime = Runtime { shared };
        for _ in 0..config.workers.max(1) {
            tokio::spawn(runtime.clone().worker(Arc::clone(&tasks_rx)));
        }
        let timers = runtime
            .shared
            .store
            .due(Timestamp::MAX_UTC, usize::MAX)
            .await?;
        let tasks = runtime.shared.store.pending_tasks().await?;
        let driver = Driver {
            rt: runtime.clone(),
            cache: HashMap::new(),
            heap: BinaryHeap::new(),
            timers: HashMap::new(),
            in_flight: HashMap::new(),
            watchers: HashMap::new(),
            batch: config.batch.max(1),
        };
        tokio::spawn(driver.run(rx, timers, tasks));
        Ok(runtime)
    }

    pub fn store(&self) -> &LocalStore {
        &self.shared.store
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Progress> {
        self.shared.progress.subscribe()
    }

    /// The compiled version, from the cache or the store.
    pub async fn version(&self, workflow_id: &str, number: u32) -> StoreResult<Arc<Version>> {
        let key = (workflow_id.to_owned(), number);
        if let Some(v) = self.versions().get(&key) {
            return Ok(Arc::clone(v));
        }
        let version = versions::compiled(
            &self.shared.store,
            &self.shared.registry,
            workflow_id,
            number,
        )
        .await?;
        let version = Arc::new(version);
        self.versions().insert(key, Arc::clone(&version));
        Ok(version)
    }

    fn versions(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Arc<Version>>> {
        self.shared
            .versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes a definition (once per content) and returns its version record. Refused,
    /// with nothing written, when its dependencies close a cycle with the latest versions of
    /// the other workflows.
    pub async fn publish(&self, def: &Definition) -> Result<VersionRecord, PublishError> {
        dependencies::check_cycles(&self.shared.store, def).await?;
        let hash = definition_hash(def);
        let record = self
            .shared
            .store
            .publish(def, &hash, self.shared.clock.now())
            .await?;
        Ok(record)
    }

    fn lock_dependents(&self) -> std::sync::MutexGuard<'_, Option<(u64, Arc<Dependents>)>> {
        self.shared
            .dependents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Who depends on whom, read from the active versions and kept until a version is
    /// published or an alias changes.
    async fn dependents(&self) -> Arc<Dependents> {
        let generation = self.shared.store.versions_generation();
        if let Some((read_at, d)) = self.lock_dependents().as_ref()
            && *read_at == generation
        {
            return Arc::clone(d);
        }
        match Dependents::load(self).await {
            Ok(d) => {
                let d = Arc::new(d);
                *self.lock_dependents() = Some((generation, Arc::clone(&d)));
                d
            }
            Err(e) => {
                tracing::error!(error = %e, "workflow dependencies cannot be read; none apply for now");
                Arc::new(Dependents::default())
            }
        }
    }

    /// Makes a dependent start (see [`crate::dependencies`]) through the ordinary start path,
    /// once per key. A start the workflow refuses is logged and forgotten; one the store
    /// could not take is made again on the next start of the runtime.
    async fn start_dependent(self, start: DependentStart) {
        let refused = |e: &dyn std::fmt::Display| {
            tracing::error!(key = start.key, workflow = start.workflow, error = %e, "a dependent workflow was not started");
        };
        let version = match versions::version_for_start(
            &self.shared.store,
            &start.workflow,
            None,
            &start.key,
        )
        .await
        {
            Ok(n) => self.version(&start.workflow, n).await,
            Err(VersionError::Store(e)) => Err(e),
            Err(e) => {
                refused(&e);
                self.forget_start(&start.key).await;
                return;
            }
        };
        let outcome = match version {
            Ok(v) => self.start_once(v, start.input.clone(), &start.key).await,
            Err(e) => Err(StartError::Store(e)),
        };
        match outcome {
            Ok((_, true)) => {}
            // Started before: the record is stale.
            Ok((_, false)) => self.forget_start(&start.key).await,
            Err(e @ StartError::Invalid(_)) => {
                refused(&e);
                self.forget_start(&start.key).await;
            }
            Err(e) => refused(&e),
        }
    }

    async fn forget_start(&self, key: &str) {
        if let Err(e) = self.shared.store.drop_dependent_start(key).await {
            tracing::warn!(key, error = %e, "a dependent start stays recorded; it is tried again on the next start");
        }
    }

    /// Starts a run of `version` on `input`, which must satisfy its input_schema; with a
    /// `start_key`, a second start with the same key returns the first run.
    pub async fn start_run(
        &self,
        version: Arc<Version>,
        input: Value,
        start_key: Option<String>,
    ) -> Result<String, StartError> {
        Ok(self.start_inner(version, input, start_key, None).await?.0)
    }

    /// Starts a run once per `key`: the run's id, and whether this call created it (false
    /// when the key had started a run before, even a moment before, concurrently).
    pub async fn start_once(
        &self,
        version: Arc<Version>,
        input: Value,
        key: &str,
    ) -> Result<(String, bool), StartError> {
        self.start_inner(version, input, Some(key.to_owned()), None)
            .await
    }

    /// Starts a run and returns, with its id, a receiver told the run's terminal status.
    pub async fn start_and_watch(
        &self,
        version: Arc<Version>,
        input: Value,
    ) -> Result<(String, oneshot::Receiver<RunStatus>), StartError> {
        let (tx, rx) = oneshot::channel();
        let (id, _) = self.start_inner(version, input, None, Some(tx)).await?;
        Ok((id, rx))
    }

    async fn start_inner(
        &self,
        version: Arc<Version>,
        input: Value,
        start_key: Option<String>,
        finished: Option<oneshot::Sender<RunStatus>>,
    ) -> Result<(String, bool), StartError> {
        version.check_input(&input).map_err(StartError::Invalid)?;
        if let Err(e) = version.correlation_key(&input) {
            return Err(StartError::Invalid(vec![eventflow_engine::Problem {
                path: "$.correlation_key".into(),
                message: format!("{e}; the input must give the workflow's correlation key"),
            }]));
        }
        if let Some(key) = &start_key
            && let Some(existing) = self.shared.store.execution_for_key(key).await?
        {
            return Ok((existing, false));
        }
        let execution_id = format!("ex-{}", uuid::Uuid::now_v7().simple());
        let (reply, answer) = oneshot::channel();
        self.send(Msg::Start {
            version,
            execution_id: execution_id.clone(),
            input,
            start_key,
            reply,
            finished,
        });
        let id = answer.await.map_err(|_| StartError::Stopped)??;
        let created = id == execution_id;
        Ok((id, created))
    }

    /// Sends an operator event (pause, resume, cancel, retry, skip, rollback) to a run.
    pub fn send_event(&self, execution_id: &str, kind: EventKind, actor: &str) {
        let mut event = Event::new(format!("op-{}", uuid::Uuid::now_v7().simple()), kind);
        event.actor = Some(actor.to_owned());
        self.send(Msg::Event {
            execution_id: execution_id.to_owned(),
            event,
            answered: None,
        });
    }

    /// Applies an operator event and answers once it is durable: the run's status after it,
    /// or `None` when the event does not apply to the run as it stands (nothing changed). An
    /// error means the store could not take it: nothing changed either, and it may be tried
    /// again.
    pub async fn operate(
        &self,
        execution_id: &str,
        kind: EventKind,
        actor: &str,
    ) -> StoreResult<Option<RunStatus>> {
        let mut event = Event::new(format!("op-{}", uuid::Uuid::now_v7().simple()), kind);
        event.actor = Some(actor.to_owned());
        let (reply, answer) = oneshot::channel();
        self.send(Msg::Operate {
            execution_id: execution_id.to_owned(),
            event,
            reply,
        });
        answer.await.map_err(|_| {
            StoreError::Unavailable(
                "the event was not applied (the runtime stopped or the store failed); try again"
                    .into(),
            )
        })
    }

    /// Stops the driver after what was sent before; tasks still in flight stay in the store
    /// and run again on the next start.
    pub fn stop(&self) {
        self.send(Msg::Stop);
    }

    /// Moves a run to version `to` under `mapping`, or with `dry_run` only says whether it
    /// could and how. Nothing changes unless every check passes.
    pub async fn migrate(
        &self,
        execution_id: &str,
        to: Arc<Version>,
        mapping: Arc<Mapping>,
        dry_run: bool,
    ) -> MigrateOutcome {
        let (reply, answer) = oneshot::channel();
        self.send(Msg::Migrate {
            execution_id: execution_id.to_owned(),
            to,
            mapping,
            dry_run,
            reply,
        });
        answer.await.unwrap_or_else(|_| {
            Err(vec![Reason {
                step: None,
                message: "the runtime has stopped".into(),
            }])
        })
    }

    /// Where a run stands.
    pub async fn state(&self, execution_id: &str) -> RunState {
        let (reply, answer) = oneshot::channel();
        self.send(Msg::State {
            execution_id: execution_id.to_owned(),
            reply,
        });
        answer.await.unwrap_or(RunState::Unknown)
    }

    fn send(&self, msg: Msg) {
        // The driver only stops with the process; a send after that has no one to tell.
        let _ = self.shared.inbox.send(msg);
    }

    /// One worker of the pool: takes tasks from the queue until it closes.
    async fn worker(self, rx: TaskReceiver) {
        while let Some(task) = queue::next(&rx).await {
            let Some((event, output)) = self.work(&task).await else {
                continue;
            };
            self.send(Msg::Event {
                execution_id: task.execution_id.clone(),
                event,
                answered: Some((task.key().to_owned(), output)),
            });
        }
    }

    /// Runs one task and turns its outcome into the event that answers it. A redelivered task
    /// may have been answered before a crash: its recorded result is used instead of acting
    /// again. (A fresh one cannot have been, and skipping the read keeps commits fast.)
    async fn work(&self, task: &Task) -> Option<(Event, Option<Value>)> {
        let recorded = if task.redelivered {
            self.shared.store.result(task.key()).await.ok().flatten()
        } else {
            None
        };
        let outcome = match recorded {
            Some(v) => Ok(v),
            None => {
                let world = attempt::World {
                    records: Arc::new(self.shared.store.clone()),
                    outbox: Arc::clone(&self.shared.outbox),
                    workflows: Arc::new(self.clone()),
                };
                attempt::run(task, &self.shared.actions, &world).await
            }
        };
        let output = outcome.as_ref().ok().cloned();
        attempt::answer(task, outcome).map(|event| (event, output))
    }
}

#[async_trait]
impl Workflows for Runtime {
    async fn start(
        &self,
        workflow_id: &str,
        input: &Value,
        idempotency_key: &str,
    ) -> Result<String, ActionError> {
        // The alias decides (a canary takes its share, by the start's key); a deprecated
        // version starts nothing.
        let number = match versions::version_for_start(
            &self.shared.store,
            workflow_id,
            None,
            idempotency_key,
        )
        .await
        {
            Ok(n) => n,
            Err(VersionError::Store(e)) => return Err(ActionError::store(e)),
            Err(e) => return Err(ActionError::terminal("UnknownWorkflow", e.to_string())),
        };
        let version = self
            .version(workflow_id, number)
            .await
            .map_err(ActionError::store)?;
        match self
            .start_run(version, input.clone(), Some(idempotency_key.to_owned()))
            .await
        {
            Ok(id) => Ok(id),
            Err(e @ StartError::Invalid(_)) => {
                Err(ActionError::terminal("InvalidInput", e.to_string()))
            }
            Err(StartError::Store(e)) => Err(ActionError::store(e)),
            Err(StartError::Stopped) => {
                Err(ActionError::retryable("Stopped", "the runtime is stopping"))
            }
        }
    }

    async fn cancel(&self, execution_id: &str) -> Result<(), ActionError> {
        self.send_event(
            execution_id,
            EventKind::Cancel { compensate: true },
            "workflow.start",
        );
        Ok(())
    }
}

struct Driver {
    rt: Runtime,
    cache: HashMap<String, Checkpoint>,
    heap: BinaryHeap<Reverse<(i64, String)>>,
    timers: HashMap<String, TimerRecord>,
    /// Tasks dispatched and not answered, per execution.
    in_flight: HashMap<String, usize>,
    /// Who waits for a run to finish.
    watchers: HashMap<String, oneshot::Sender<RunStatus>>,
    batch: usize,
}

/// What one batch produced, to act on once it is durable.
#[derive(Default)]
struct Outcome {
    commits: Vec<Commit>,
    tasks: Vec<Task>,
    timers: Vec<TimerRecord>,
    progress: Vec<Progress>,
    replies: Vec<(oneshot::Sender<StoreResult<String>>, String)>,
    /// Start keys used in this batch, and their runs: two starts with one key in one batch
    /// make one run.
    start_keys: HashMap<String, String>,
    queries: Vec<(String, oneshot::Sender<RunState>)>,
    operated: Vec<(oneshot::Sender<Option<RunStatus>>, Option<RunStatus>)>,
    /// Runs with a correlation key that finished in this batch: (workflow, key).
    finished: Vec<(String, String)>,
    migrations: Vec<(oneshot::Sender<MigrateOutcome>, MigrateOutcome)>,
}

impl Driver {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        timers: Vec<TimerRecord>,
        tasks: Vec<Task>,
    ) {
        self.redeliver(timers, tasks).await;
        self.recover_dependencies().await;
        loop {
            let next_due = self.heap.peek().map(|Reverse((at, _))| *at);
            let first = match next_due {
                Some(at) => {
                    let wait = at - self.rt.shared.clock.now().timestamp_millis();
                    if wait <= 0 {
                        None
                    } else {
                        let sleep = tokio::time::sleep(std::time::Duration::from_millis(
                            wait.unsigned_abs(),
                        ));
                        tokio::select! {
                            msg = rx.recv() => match msg { Some(m) => Some(m), None => return },
                            () = sleep => None,
                        }
                    }
                }
                None => match rx.recv().await {
                    Some(m) => Some(m),
                    None => return,
                },
            };
            let mut out = Outcome::default();
            let mut count = 0;
            let mut stop = false;
            let mut next = first;
            loop {
                match next.take() {
                    Some(Msg::Stop) => stop = true,
                    Some(msg) => {
                        self.handle(msg, &mut out).await;
                        count += 1;
                    }
                    None => {}
                }
                if stop || count >= self.batch {
                    break;
                }
                match rx.try_recv() {
                    Ok(msg) => next = Some(msg),
                    Err(_) => break,
                }
            }
            self.fire_due(&mut out).await;
            self.finish_batch(out).await;
            if stop {
                return;
            }
        }
    }

    /// Arms stored timers and re-sends stored tasks (which may have been answered already:
    /// they are marked redelivered).
    async fn redeliver(&mut self, timers: Vec<TimerRecord>, tasks: Vec<Task>) {
        for t in timers {
            self.arm(t);
        }
        for task in &tasks {
            *self.in_flight.entry(task.execution_id.clone()).or_default() += 1;
        }
        let tasks = tasks
            .into_iter()
            .map(|t| Task {
                redelivered: true,
                ..t
            })
            .collect();
        self.dispatch(tasks).await;
    }

    async fn dispatch(&self, tasks: Vec<Task>) {
        if let Err(e) = self.rt.shared.queue.send(tasks).await {
            // Only when the process is going down; the tasks stay in the store.
            tracing::warn!(error = %e, "tasks not queued; they run on the next start");
        }
    }

    fn arm(&mut self, t: TimerRecord) {
        let id = t.id();
        self.heap
            .push(Reverse((t.at.timestamp_millis(), id.clone())));
        self.timers.insert(id, t);
    }

    async fn fire_due(&mut self, out: &mut Outcome) {
        let now = self.rt.shared.clock.now().timestamp_millis();
        while let Some(Reverse((at, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, id))) = self.heap.pop() else {
                break;
            };
            let Some(record) = self.timers.remove(&id) else {
                continue;
            };
            let event = Event::new(
                format!("timer/{id}"),
                EventKind::TimerFired {
                    timer: record.timer.clone(),
                },
            );
            let execution_id = record.execution_id.clone();
            let mut commit = self
                .apply(&execution_id, event, out)
                .await
                .unwrap_or_default();
            commit.fired.push(record);
            out.commits.push(commit);
        }
    }

    async fn handle(&mut self, msg: Msg, out: &mut Outcome) {
        match msg {
            Msg::Start {
                version,
                execution_id,
                input,
                start_key,
                reply,
                finished,
            } => {
                // The caller looked the key up before sending, but another start with the same
                // key may have come in between: the driver, which alone writes, decides.
                if let Some(key) = &start_key {
                    let existing = match out.start_keys.get(key) {
                        Some(id) => Some(id.clone()),
                        None => self
                            .rt
                            .shared
                            .store
                            .execution_for_key(key)
                            .await
                            .ok()
                            .flatten(),
                    };
                    if let Some(id) = existing {
                        out.replies.push((reply, id));
                        return;
                    }
                    out.start_keys.insert(key.clone(), execution_id.clone());
                }
                if let Some(f) = finished {
                    self.watchers.insert(execution_id.clone(), f);
                }
                let now = self.rt.shared.clock.now();
                let mut cp = Checkpoint::new(&version, &execution_id, input, now);
                cp.correlation_key = version.correlation_key(&cp.input).ok().flatten();
                let (first, failed) = self.first_event(&version, &cp).await;
                let starts = self.rt.dependents().await.on_start(&cp);
                self.cache.insert(execution_id.clone(), cp);
                let event = Event::new(format!("{execution_id}/started"), first);
                if let Some(mut commit) = self.apply(&execution_id, event, out).await {
                    commit.expected_seq = None;
                    commit.input = self.cache.get(&execution_id).map(|cp| cp.input.clone());
                    commit.start_key = start_key;
                    commit.dependent_starts.extend(starts);
                    out.commits.push(commit);
                }
                if let Some(kind) = failed {
                    let event = Event::new(format!("{execution_id}/dependency-failed"), kind);
                    if let Some(commit) = self.apply(&execution_id, event, out).await {
                        out.commits.push(commit);
                    }
                }
                out.replies.push((reply, execution_id));
            }
            Msg::Event {
                execution_id,
                event,
                answered,
            } => {
                let mut commit = self
                    .apply(&execution_id, event.clone(), out)
                    .await
                    .unwrap_or_default();
                if let Some((key, output)) = answered {
                    if let Some(n) = self.in_flight.get_mut(&execution_id) {
                        *n = n.saturating_sub(1);
                    }
                    if let Some(output) = output {
                        commit.results.push((key.clone(), output));
                    }
                    commit.answered.push(key);
                }
                out.commits.push(commit);
            }
            Msg::State {
                execution_id,
                reply,
            } => out.queries.push((execution_id, reply)),
            Msg::Operate {
                execution_id,
                event,
                reply,
            } => {
                let commit = self.apply(&execution_id, event, out).await;
                let status = match commit {
                    Some(c) if c.checkpoint.is_some() => {
                        let status = c.checkpoint.as_ref().map(|cp| cp.status);
                        out.commits.push(c);
                        status
                    }
                    _ => None,
                };
                out.operated.push((reply, status));
            }
            Msg::Stop => {}
            Msg::Migrate {
                execution_id,
                to,
                mapping,
                dry_run,
                reply,
            } => {
                let outcome = self
                    .migrate(&execution_id, &to, &mapping, dry_run, out)
                    .await;
                match outcome {
                    // A move is answered once it is durable.
                    Ok(summary) if !dry_run => out.migrations.push((reply, Ok(summary))),
                    other => {
                        let _ = reply.send(other);
                    }
                }
            }
        }
    }

    /// Checks a run against a move to `to` and, unless `dry_run`, moves it: the new checkpoint
    /// and its history entry go into this batch's commit.
    async fn migrate(
        &mut self,
        execution_id: &str,
        to: &Version,
        mapping: &Mapping,
        dry_run: bool,
        out: &mut Outcome,
    ) -> MigrateOutcome {
        let refuse = |message: String| {
            vec![Reason {
                step: None,
                message,
            }]
        };
        let cp = match self.cache.remove(execution_id) {
            Some(cp) => cp,
            None => match self.rt.shared.store.checkpoint(execution_id).await {
                Ok(Some(cp)) => cp,
                Ok(None) => return Err(refuse(format!("there is no run {execution_id}"))),
                Err(e) => return Err(refuse(e.to_string())),
            },
        };
        let from = match self.rt.version(&cp.workflow_id, cp.version).await {
            Ok(v) => v,
            Err(e) => {
                self.cache.insert(execution_id.to_owned(), cp);
                return Err(refuse(e.to_string()));
            }
        };
        let plan = match migrate::check(&from, to, &cp, mapping) {
            Ok(plan) => plan,
            Err(reasons) => {
                self.cache.insert(execution_id.to_owned(), cp);
                return Err(reasons);
            }
        };
        let summary = plan.summary.clone();
        if dry_run {
            self.cache.insert(execution_id.to_owned(), cp);
            return Ok(summary);
        }
        let expected = cp.seq;
        let now = self.rt.shared.clock.now();
        let event_id = format!("{execution_id}/migrate/{expected}");
        let (mut moved, entry) = migrate::apply(plan, cp, now, &event_id).map_err(|r| vec![r])?;
        let input = std::mem::take(&mut moved.input);
        let mut stored = moved.clone();
        stored.input = Value::Null;
        moved.input = input;
        out.progress.push(Progress {
            execution_id: execution_id.to_owned(),
            status: moved.status,
            entry: entry.clone(),
        });
        out.commits.push(Commit {
            checkpoint: Some(stored),
            expected_seq: Some(expected),
            history: vec![entry],
            ..Commit::default()
        });
        self.cache.insert(execution_id.to_owned(), moved);
        Ok(summary)
    }

    /// Applies one event to a run; `None` when the run is unknown.
    async fn apply(
        &mut self,
        execution_id: &str,
        event: Event,
        out: &mut Outcome,
    ) -> Option<Commit> {
        let cp = match self.cache.remove(execution_id) {
            Some(cp) => cp,
            None => match self.rt.shared.store.checkpoint(execution_id).await {
                Ok(Some(cp)) => cp,
                Ok(None) => {
                    tracing::warn!(
                        execution_id,
                        "an event for an unknown execution was dropped"
                    );
                    return None;
                }
                Err(e) => {
                    tracing::error!(execution_id, error = %e, "cannot load a checkpoint");
                    return None;
                }
            },
        };
        let version = match self.rt.version(&cp.workflow_id, cp.version).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(execution_id, error = %e, "cannot load the run's version");
                self.cache.insert(execution_id.to_owned(), cp);
                return None;
            }
        };
        let expected = cp.seq;
        let now = self.rt.shared.clock.now();
        let seed = seed_of(&event.id);
        let d = decide(&version, cp, event, now, seed);
        let mut cp = d.checkpoint;
        let mut commit = Commit::default();
        if let Some(entry) = d.history {
            // The input can be large and is stored once: keep it out of the stored clone.
            let input = std::mem::take(&mut cp.input);
            let mut stored = cp.clone();
            stored.input = Value::Null;
            cp.input = input;
            commit.checkpoint = Some(stored);
            commit.expected_seq = Some(expected);
            if cp.status.is_terminal() || self.rt.shared.progress.receiver_count() > 0 {
                out.progress.push(Progress {
                    execution_id: execution_id.to_owned(),
                    status: cp.status,
                    entry: entry.clone(),
                });
            }
            commit.history.push(entry);
        }
        for c in d.commands {
            match c {
                Command::RunStep { .. } | Command::RunCompensation { .. } => {
                    let task = Task {
                        execution_id: execution_id.to_owned(),
                        workflow_id: cp.workflow_id.clone(),
                        version: cp.version,
                        command: c,
                        redelivered: false,
                    };
                    commit.dispatched.push(task.clone());
                    out.tasks.push(task);
                }
                Command::ScheduleTimer { timer, at } => {
                    let record = TimerRecord {
                        execution_id: execution_id.to_owned(),
                        timer,
                        at,
                    };
                    commit.timers.push(record.clone());
                    out.timers.push(record);
                }
                Command::Finish { status, error } => {
                    tracing::info!(execution_id, status = status.as_str(), error = ?error.map(|e| e.error.message), "run finished");
                }
                Command::EmitMetric { .. } => {
                    commit.metrics.extend(Sample::of(&c, &cp.workflow_id, now));
                }
            }
        }
        if cp.status.is_terminal() && commit.checkpoint.is_some() {
            // It finished with this event: conditional dependents start, and blocked ones are
            // looked at once this is durable.
            commit
                .dependent_starts
                .extend(self.rt.dependents().await.on_finish(&cp));
            if let Some(key) = &cp.correlation_key {
                out.finished.push((cp.workflow_id.clone(), key.clone()));
            }
        }
        if !cp.status.is_terminal() {
            self.cache.insert(execution_id.to_owned(), cp);
        }
        Some(commit)
    }

    /// How a new run begins: `Started`, or `Blocked` on the upstream runs its blocking
    /// dependencies wait for, then (the second) `DependencyFailed` if one of them already
    /// ended without completing.
    async fn first_event(
        &self,
        version: &Version,
        cp: &Checkpoint,
    ) -> (EventKind, Option<EventKind>) {
        let Some(key) = &cp.correlation_key else {
            return (EventKind::Started, None);
        };
        let mut on = Vec::new();
        let mut failed = None;
        for dep in version.dependencies() {
            if dep.kind != DependencyKind::Blocking {
                continue;
            }
            let standing = dependencies::standing(&self.rt.shared.store, &dep.workflow, key).await;
            let execution_id = match standing {
                Ok(Standing::Met(..)) => continue,
                Ok(Standing::Pending(id)) => id,
                Ok(Standing::Failed(id, status)) => {
                    failed.get_or_insert(EventKind::DependencyFailed {
                        workflow: dep.workflow.clone(),
                        execution_id: Some(id.clone()),
                        status,
                    });
                    Some(id)
                }
                Err(e) => {
                    // Waiting is the safe side: the run is looked at again on the next start.
                    tracing::warn!(error = %e, "a dependency cannot be read; the run waits");
                    None
                }
            };
            on.push(Upstream {
                workflow: dep.workflow.clone(),
                execution_id,
            });
        }
        if on.is_empty() {
            (EventKind::Started, None)
        } else {
            (EventKind::Blocked { on }, failed)
        }
    }

    /// Sends a waiting run the events its dependencies now call for: met or failed.
    async fn recheck(&self, execution_id: &str) {
        let cp = match self.cache.get(execution_id) {
            Some(cp) => cp.clone(),
            None => match self.rt.shared.store.checkpoint(execution_id).await {
                Ok(Some(cp)) => cp,
                _ => return,
            },
        };
        let Some(key) = cp.correlation_key.as_deref() else {
            return;
        };
        if cp.status != RunStatus::WaitingForDependency {
            return;
        }
        for u in &cp.waiting_on {
            let kind = match dependencies::standing(&self.rt.shared.store, &u.workflow, key).await {
                Ok(Standing::Met(id, status)) => EventKind::DependencyMet {
                    workflow: u.workflow.clone(),
                    execution_id: id,
                    status,
                },
                Ok(Standing::Failed(id, status)) => EventKind::DependencyFailed {
                    workflow: u.workflow.clone(),
                    execution_id: Some(id),
                    status,
                },
                Ok(Standing::Pending(_)) => continue,
                Err(e) => {
                    tracing::warn!(execution_id, error = %e, "a dependency cannot be read");
                    continue;
                }
            };
            self.rt.send(Msg::Event {
                execution_id: execution_id.to_owned(),
                event: Event::new(format!("{execution_id}/dependency/{}", u.workflow), kind),
                answered: None,
            });
        }
    }

    /// After runs with a correlation key finished: their blocked dependents for the key.
    async fn release(&self, finished: Vec<(String, String)>) {
        if finished.is_empty() {
            return;
        }
        let dependents = self.rt.dependents().await;
        for (workflow, key) in finished {
            for waiting in dependents.blocked_by(&workflow) {
                let runs = match self.rt.shared.store.correlated(waiting, &key).await {
                    Ok(runs) => runs,
                    Err(e) => {
                        tracing::warn!(error = %e, "waiting runs cannot be read; they are looked at on the next start");
                        continue;
                    }
                };
                for (id, status) in runs {
                    if status == RunStatus::WaitingForDependency {
                        self.recheck(&id).await;
                    }
                }
            }
        }
    }

    /// On start: the dependent starts a crash left unmade, and the waiting runs whose
    /// dependencies finished meanwhile.
    async fn recover_dependencies(&self) {
        match self.rt.shared.store.dependent_starts().await {
            Ok(starts) => {
                for s in starts {
                    tokio::spawn(self.rt.clone().start_dependent(s));
                }
            }
            Err(e) => tracing::error!(error = %e, "dependent starts cannot be read"),
        }
        match self
            .rt
            .shared
            .store
            .list(Some(RunStatus::WaitingForDependency), None)
            .await
        {
            Ok(runs) => {
                for r in runs {
                    self.recheck(&r.execution_id).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "waiting runs cannot be read"),
        }
    }

    async fn finish_batch(&mut self, out: Outcome) {
        let starts: Vec<DependentStart> = out
            .commits
            .iter()
            .flat_map(|c| c.dependent_starts.iter().cloned())
            .collect();
        let result = self.rt.shared.store.commit(merge(out.commits)).await;
        if let Err(e) = result {
            // Nothing of the batch is durable: forget what was applied in memory, tell the
            // callers, and start again from what the store holds, as after a restart (the
            // answers and timers of the batch are delivered again).
            tracing::error!(error = %e, "a commit failed; the batch is dropped and redelivered");
            self.cache.clear();
            for (reply, _) in out.replies {
                let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
            }
            let store = &self.rt.shared.store;
            match (
                store.due(Timestamp::MAX_UTC, usize::MAX).await,
                store.pending_tasks().await,
            ) {
                (Ok(timers), Ok(tasks)) => {
                    self.heap.clear();
                    self.timers.clear();
                    self.in_flight.clear();
                    self.redeliver(timers, tasks).await;
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "the store cannot be read; runs resume on the next start");
                }
            }
            return;
        }
        for t in out.timers {
            self.arm(t);
        }
        for task in &out.tasks {
            *self.in_flight.entry(task.execution_id.clone()).or_default() += 1;
        }
        self.dispatch(out.tasks).await;
        // Started off the driver: a start is a message the driver answers.
        for s in starts {
            tokio::spawn(self.rt.clone().start_dependent(s));
        }
        self.release(out.finished).await;
        for p in out.progress {
            if p.status.is_terminal() {
                self.in_flight.remove(&p.execution_id);
                if let Some(w) = self.watchers.remove(&p.execution_id) {
                    let _ = w.send(p.status);
                }
            }
            let _ = self.rt.shared.progress.send(p);
        }
        for (reply, id) in out.replies {
            let _ = reply.send(Ok(id));
        }
        for (reply, status) in out.operated {
            let _ = reply.send(status);
        }
        for (reply, outcome) in out.migrations {
            let _ = reply.send(outcome);
        }
        for (id, reply) in out.queries {
            let state = self.state_of(&id).await;
            let _ = reply.send(state);
        }
    }

    async fn state_of(&self, execution_id: &str) -> RunState {
        if self.in_flight.get(execution_id).copied().unwrap_or(0) > 0 {
            return RunState::Busy;
        }
        let status = match self.cache.get(execution_id) {
            Some(cp) => cp.status,
            None => match self.rt.shared.store.checkpoint(execution_id).await {
                Ok(Some(cp)) => cp.status,
                _ => return RunState::Unknown,
            },
        };
        if status.is_terminal() {
            return RunState::Finished(status);
        }
        let next = self
            .timers
            .values()
            .filter(|t| t.execution_id == execution_id)
            .map(|t| t.at)
            .min();
        match next {
            Some(at) => RunState::WaitingUntil(at),
            None if status == RunStatus::Running || status == RunStatus::Compensating => {
                RunState::Busy
            }
            None => RunState::Idle(status),
        }
    }
}

/// Folds the commits of one execution within a batch into one: the last checkpoint (checked
/// against the first expected sequence number), all history, tasks, results and timers. A
/// checkpoint rewritten a hundred times in one transaction is written once.
fn merge(commits: Vec<Commit>) -> Vec<Commit> {
    let mut order: Vec<String> = Vec::new();
    let mut by_run: HashMap<String, Commit> = HashMap::new();
    let mut loose = Vec::new();
    for c in commits {
        let Some(id) = c
            .checkpoint
            .as_ref()
            .map(|cp| cp.execution_id.clone())
            .or_else(|| c.dispatched.first().map(|t| t.execution_id.clone()))
            .or_else(|| c.fired.first().map(|t| t.execution_id.clone()))
        else {
            loose.push(c);
            continue;
        };
        match by_run.get_mut(&id) {
            None => {
                order.push(id.clone());
                by_run.insert(id, c);
            }
            Some(m) => {
                if c.checkpoint.is_some() {
                    if m.checkpoint.is_none() {
                        m.expected_seq = c.expected_seq;
                    }
                    m.checkpoint = c.checkpoint;
                }
                m.input = m.input.take().or(c.input);
                m.start_key = m.start_key.take().or(c.start_key);
                m.history.extend(c.history);
                m.dispatched.extend(c.dispatched);
                m.answered.extend(c.answered);
                m.results.extend(c.results);
                m.timers.extend(c.timers);
                m.fired.extend(c.fired);
                m.dependent_starts.extend(c.dependent_starts);
            }
        }
    }
    let mut out: Vec<Commit> = order
        .into_iter()
        .filter_map(|id| by_run.remove(&id))
        .collect();
    out.extend(loose);
    out
}
