//! The embedded store: one redb database file in the data directory, ACID, fsync on commit.
//!
//! Tables (values are JSON):
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `versions` | (workflow, number) | [`VersionRecord`] |
//! | `version_hashes` | (workflow, hash) | number |
//! | `checkpoints` | execution | [`Checkpoint`] |
//! | `history` | (execution, seq) | [`HistoryEntry`] |
//! | `tasks` | idempotency key | [`Task`] dispatched and not yet answered |
//! | `results` | idempotency key | the output of an answered attempt |
//! | `timers` | (due ms, timer id) | [`TimerRecord`] |
//! | `timer_ids` | timer id | due ms |
//! | `records` | (collection, key) | a domain record |
//! | `inputs` | execution | the run's input (checkpoints are stored without it) |
//! | `start_keys` | idempotency key of a start | execution |
//! | `version_states` | (workflow, number) | [`VersionState`] when not active |
//! | `aliases` | workflow | [`Alias`] |
//! | `tenants` | tenant | [`TenantRecord`] (the key's hash only) |
//! | `metrics` | (workflow, hour's start in ms) | the hour's figures ([`metrics::Aggregate`]) |
//!
//! The correlation index and dependent starts are described in [`crate::correlation`].
//!
//! The scheduler's tables are described in [`crate::schedules`].
//!
//! One [`Commit`] (an applied event) writes its checkpoint, history, tasks, results and timers
//! in one transaction, and adds its metrics to their aggregates in it too (so each is counted
//! exactly once); [`LocalStore::commit`] writes many commits in one transaction, which is
//! where the throughput of the local runtime comes from (group commit).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use eventflow_engine::{Checkpoint, Definition, HistoryEntry, RunStatus, Timestamp};
use eventflow_ports::*;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::broadcast;

const CACHE_BYTES: usize = 16 * 1024 * 1024;

const VERSIONS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("versions");
const VERSION_HASHES: TableDefinition<(&str, &str), u32> = TableDefinition::new("version_hashes");
const CHECKPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoints");
const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
const RESULTS: TableDefinition<&str, &[u8]> = TableDefinition::new("results");
const TIMERS: TableDefinition<(i64, &str), &[u8]> = TableDefinition::new("timers");
const TIMER_IDS: TableDefinition<&str, i64> = TableDefinition::new("timer_ids");
pub(crate) const RECORDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("records");
const INPUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("inputs");
const VERSION_STATES: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("version_states");
const ALIASES: TableDefinition<&str, &[u8]> = TableDefinition::new("aliases");
const START_KEYS: TableDefinition<&str, &str> = TableDefinition::new("start_keys");
const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
const METRICS: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("metrics");

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "cannot use the data directory {dir}: {source}; choose another with --data-dir or EVENTFLOW_DATA_DIR, or fix its permissions"
    )]
    Directory {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the data directory {dir} is in use by another eventflow process; wait for it to finish, stop it, or use another --data-dir"
    )]
    InUse { dir: PathBuf },
    #[error("cannot open the database in {dir}: {source}")]
    Database {
        dir: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
}

/// The redb-backed store of the local runtime.
#[derive(Clone)]
pub struct LocalStore {
    db: Arc<Database>,
    dir: PathBuf,
    /// Held for the life of the store: one process per data directory.
    _lock: Arc<std::fs::File>,
    /// Bumped by every publish and alias change: what depends on the active versions (the
    /// runtime's dependency index) knows when to read them again.
    versions_generation: Arc<std::sync::atomic::AtomicU64>,
    /// Told of every record put or deleted (the scheduler re-plans on event changes).
    records_tx: broadcast::Sender<RecordChange>,
}

/// A record put or deleted, as [`LocalStore::subscribe_records`] tells it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordChange {
    pub collection: String,
    pub key: String,
    /// The record as written; `None` when it was deleted.
    pub value: Option<Value>,
}

impl std::fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalStore")
            .field("dir", &self.dir)
            .finish()
    }
}

pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::backend(e)
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(backend)
}

pub(crate) fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(bytes).map_err(backend)
}

fn millis(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

impl LocalStore {
    /// Opens (creating if needed) the store in `dir`; refuses a directory another process holds.
    pub fn open(dir: &Path) -> Result<LocalStore, OpenError> {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Directory {
            dir: dir.to_owned(),
            source,
        })?;
        let probe = dir.join(".write-test");
        std::fs::write(&probe, b"ok")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|source| OpenError::Directory {
                dir: dir.to_owned(),
                source,
            })?;
        // One process per directory, readers included: an advisory lock on a file of its own,
        // released by the OS when the process dies, however it dies.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(|source| OpenError::Directory {
                dir: dir.to_owned(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(OpenError::InUse {
                    dir: dir.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(OpenError::Directory {
                    dir: dir.to_owned(),
                    source,
                });
            }
        }
        // A bounded page cache keeps the process small; the OS caches the file anyway.
        let db = match Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(dir.join("eventflow.redb"))
        {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(OpenError::InUse {
                    dir: dir.to_owned(),
                });
            }
            Err(source) => {
                return Err(OpenError::Database {
                    dir: dir.to_owned(),
                    source,
                });
            }
        };
        let store = LocalStore {
            db: Arc::new(db),
            dir: dir.to_owned(),
            _lock: Arc::new(lock),
            versions_generation: Arc::default(),
            records_tx: broadcast::channel(1024).0,
        };
        store.create_tables().map_err(|e| OpenError::Directory {
            dir: dir.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Changes whenever a version is published or an alias set.
    pub fn versions_generation(&self) -> u64 {
        self.versions_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump_versions_generation(&self) {
        self.versions_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Tells of every record put or deleted from now on. A receiver that falls behind gets
    /// `Lagged` and should re-read what it watches.
    pub fn subscribe_records(&self) -> broadcast::Receiver<RecordChange> {
        self.records_tx.subscribe()
    }

    fn tell(&self, collection: &str, key: &str, value: Option<Value>) {
        // Nobody listening is fine: the change is in the store.
        let _ = self.records_tx.send(RecordChange {
            collection: collection.to_owned(),
            key: key.to_owned(),
            value,
        });
    }

    fn create_tables(&self) -> StoreResult<()> {
        let tx = self.db.begin_write().map_err(backend)?;
        tx.open_table(VERSIONS).map_err(backend)?;
        tx.open_table(VERSION_HASHES).map_err(backend)?;
        tx.open_table(CHECKPOINTS).map_err(backend)?;
        tx.open_table(HISTORY).map_err(backend)?;
        tx.open_table(TASKS).map_err(backend)?;
        tx.open_table(RESULTS).map_err(backend)?;
        tx.open_table(TIMERS).map_err(backend)?;
        tx.open_table(TIMER_IDS).map_err(backend)?;
        tx.open_table(RECORDS).map_err(backend)?;
        tx.open_table(INPUTS).map_err(backend)?;
        tx.open_table(START_KEYS).map_err(backend)?;
        tx.open_table(VERSION_STATES).map_err(backend)?;
        tx.open_table(ALIASES).map_err(backend)?;
        tx.open_table(TENANTS).map_err(backend)?;
        tx.open_table(METRICS).map_err(backend)?;
        crate::correlation::create_tables(&tx)?;
        crate::schedules::create_tables(&tx)?;
        tx.commit().map_err(backend)
    }

    fn commit_sync(db: &Database, commits: &[Commit]) -> StoreResult<()> {
        let tx = db.begin_write().map_err(backend)?;
        {
            let mut checkpoints = tx.open_table(CHECKPOINTS).map_err(backend)?;
            let mut history = tx.open_table(HISTORY).map_err(backend)?;
            let mut tasks = tx.open_table(TASKS).map_err(backend)?;
            let mut results = tx.open_table(RESULTS).map_err(backend)?;
            let mut timers = tx.open_table(TIMERS).map_err(backend)?;
            let mut timer_ids = tx.open_table(TIMER_IDS).map_err(backend)?;
            let mut inputs = tx.open_table(INPUTS).map_err(backend)?;
            let mut start_keys = tx.open_table(START_KEYS).map_err(backend)?;
            for c in commits {
                if let Some(cp) = &c.checkpoint {
                    let id = cp.execution_id.as_str();
                    let stored_seq = match checkpoints.get(id).map_err(backend)? {
                        Some(bytes) => Some(from_json::<Checkpoint>(bytes.value())?.seq),
                        None => None,
                    };
                    if stored_seq != c.expected_seq {
                        return Err(StoreError::Conflict(format!(
                            "execution {id} is at {stored_seq:?}, the commit expected {:?}",
                            c.expected_seq
                        )));
                    }
                    checkpoints
                        .insert(id, to_json(cp)?.as_slice())
                        .map_err(backend)?;
                    if let Some(input) = &c.input {
                        inputs
                            .insert(id, to_json(input)?.as_slice())
                            .map_err(backend)?;
                    }
                    if let Some(key) = &c.start_key {
                        start_keys.insert(key.as_str(), id).map_err(backend)?;
                    }
                    for h in &c.history {
                        history
                            .insert((id, h.seq), to_json(h)?.as_slice())
                            .map_err(backend)?;
                    }
                }
                for key in &c.answered {
                    tasks.remove(key.as_str()).map_err(backend)?;
                }
                for (key, value) in &c.results {
                    results
                        .insert(key.as_str(), to_json(value)?.as_slice())
                        .map_err(backend)?;
                }
                for t in &c.dispatched {
                    tasks
                        .insert(t.key(), to_json(t)?.as_slice())
                        .map_err(backend)?;
                }
                for f in &c.fired {
                    let id = f.id();
                    let at = timer_ids
                        .remove(id.as_str())
                        .map_err(backend)?
                        .map(|v| v.value());
                    if let Some(at) = at {
                        timers.remove((at, id.as_str())).map_err(backend)?;
                    }
                }
                for t in &c.timers {
                    let id = t.id();
                    if let Some(old) = timer_ids
                        .insert(id.as_str(), millis(t.at))
                        .map_err(backend)?
                    {
                        let old = old.value();
                        timers.remove((old, id.as_str())).map_err(backend)?;
                    }
                    timers
                        .insert((millis(t.at), id.as_str()), to_json(t)?.as_slice())
                        .map_err(backend)?;
                }
            }
        }
        crate::correlation::write(&tx, commits)?;
        LocalStore::add_metrics(&tx, commits)?;
        tx.commit().map_err(backend)
    }

    /// Adds the commits' metrics to their hourly aggregates.
    fn add_metrics(tx: &redb::WriteTransaction, commits: &[Commit]) -> StoreResult<()> {
        let added = metrics::aggregate(commits.iter().flat_map(|c| &c.metrics));
        if added.is_empty() {
            return Ok(());
        }
        let mut table = tx.open_table(METRICS).map_err(backend)?;
        for a in added {
            let key = (a.workflow_id.as_str(), millis(a.hour));
            let mut figures: BTreeMap<String, metrics::Figure> =
                match table.get(key).map_err(backend)? {
                    Some(v) => from_json(v.value())?,
                    None => BTreeMap::new(),
                };
            for (name, f) in &a.figures {
                figures.entry(name.clone()).or_default().merge(f);
            }
            table
                .insert(key, to_json(&figures)?.as_slice())
                .map_err(backend)?;
        }
        Ok(())
    }

    pub(crate) async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> StoreResult<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("a store task stopped: {e}")))?
    }

    /// Runs `f` in one write transaction, committed (fsync) when it returns `Ok`.
    pub(crate) async fn writing<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::WriteTransaction) -> StoreResult<T> + Send + 'static,
    {
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(backend)?;
            let out = f(&tx)?;
            tx.commit().map_err(backend)?;
            Ok(out)
        })
        .await
    }

    fn read<T: DeserializeOwned>(
        db: &Database,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> StoreResult<Option<T>> {
        let tx = db.begin_read().map_err(backend)?;
        let t = tx.open_table(table).map_err(backend)?;
        match t.get(key).map_err(backend)? {
            Some(v) => from_json(v.value()).map(Some),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl ExecutionStore for LocalStore {
    async fn commit(&self, commits: Vec<Commit>) -> StoreResult<()> {
        if commits.is_empty() {
            return Ok(());
        }
        self.blocking(move |db| LocalStore::commit_sync(db, &commits))
            .await
    }

    async fn checkpoint(&self, execution_id: &str) -> StoreResult<Option<Checkpoint>> {
        let id = execution_id.to_owned();
        self.blocking(move |db| {
            let cp: Option<Checkpoint> = LocalStore::read(db, CHECKPOINTS, &id)?;
            let Some(mut cp) = cp else { return Ok(None) };
            cp.input = LocalStore::read(db, INPUTS, &id)?.unwrap_or(Value::Null);
            Ok(Some(cp))
        })
        .await
    }

    async fn execution_for_key(&self, key: &str) -> StoreResult<Option<String>> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(START_KEYS).map_err(backend)?;
            Ok(t.get(key.as_str())
                .map_err(backend)?
                .map(|v| v.value().to_owned()))
        })
        .await
    }

    async fn history(&self, execution_id: &str) -> StoreResult<Vec<HistoryEntry>> {
        let id = execution_id.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(HISTORY).map_err(backend)?;
            let mut out = Vec::new();
            for row in t
                .range((id.as_str(), 0)..=(id.as_str(), u64::MAX))
                .map_err(backend)?
            {
                let (_, v) = row.map_err(backend)?;
                out.push(from_json(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn list(
        &self,
        status: Option<RunStatus>,
        workflow: Option<&str>,
    ) -> StoreResult<Vec<ExecutionSummary>> {
        let workflow = workflow.map(str::to_owned);
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(CHECKPOINTS).map_err(backend)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(backend)? {
                let (_, v) = row.map_err(backend)?;
                let cp: Checkpoint = from_json(v.value())?;
                if status.is_some_and(|s| s != cp.status)
                    || workflow.as_deref().is_some_and(|w| w != cp.workflow_id)
                {
                    continue;
                }
                out.push(ExecutionSummary {
                    execution_id: cp.execution_id,
                    workflow_id: cp.workflow_id,
                    version: cp.version,
                    status: cp.status,
                    created_at: cp.created_at,
                    updated_at: cp.updated_at,
                });
            }
            out.sort_by(|a, b| {
                a.created_at
                    .cmp(&b.created_at)
                    .then(a.execution_id.cmp(&b.execution_id))
            });
            Ok(out)
        })
        .await
    }

    async fn pending_tasks(&self) -> StoreResult<Vec<Task>> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(TASKS).map_err(backend)?;
            t.iter()
                .map_err(backend)?
                .map(|row| from_json(row.map_err(backend)?.1.value()))
                .collect()
        })
        .await
    }

    async fn result(&self, key: &str) -> StoreResult<Option<Value>> {
        let key = key.to_owned();
        self.blocking(move |db| LocalStore::read(db, RESULTS, &key))
            .await
    }

    async fn metrics(
        &self,
        workflow_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<metrics::Aggregate>> {
        let workflow = workflow_id.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(METRICS).map_err(backend)?;
            let range = (workflow.as_str(), millis(from))..(workflow.as_str(), millis(to));
            let mut out = Vec::new();
            for row in t.range(range).map_err(backend)? {
                let (k, v) = row.map_err(backend)?;
                let hour =
                    chrono::DateTime::from_timestamp_millis(k.value().1).ok_or_else(|| {
                        StoreError::backend(std::io::Error::other(
                            "a metric's hour is out of range",
                        ))
                    })?;
                out.push(metrics::Aggregate {
                    workflow_id: workflow.clone(),
                    hour,
                    figures: from_json(v.value())?,
                });
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl TimerStore for LocalStore {
    async fn due(&self, until: Timestamp, limit: usize) -> StoreResult<Vec<TimerRecord>> {
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(TIMERS).map_err(backend)?;
            t.range(..=(millis(until), "\u{10FFFF}"))
                .map_err(backend)?
                .take(limit)
                .map(|row| from_json(row.map_err(backend)?.1.value()))
                .collect()
        })
        .await
    }

    async fn next(&self) -> StoreResult<Option<TimerRecord>> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(TIMERS).map_err(backend)?;
            match t.first().map_err(backend)? {
                Some((_, v)) => from_json(v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }
}

#[async_trait]
impl VersionStore for LocalStore {
    async fn publish(
        &self,
        definition: &Definition,
        hash: &str,
        now: Timestamp,
    ) -> StoreResult<VersionRecord> {
        let definition = definition.clone();
        let hash = hash.to_owned();
        self.writing(move |tx| {
            let mut versions = tx.open_table(VERSIONS).map_err(backend)?;
            let mut hashes = tx.open_table(VERSION_HASHES).map_err(backend)?;
            let wf = definition.id.as_str();
            if let Some(n) = hashes.get((wf, hash.as_str())).map_err(backend)? {
                let n = n.value();
                let existing = versions.get((wf, n)).map_err(backend)?;
                if let Some(v) = existing {
                    return from_json(v.value());
                }
            }
            let last = versions
                .range((wf, 0)..=(wf, u32::MAX))
                .map_err(backend)?
                .next_back()
                .transpose()
                .map_err(backend)?
                .map_or(0, |(k, _)| k.value().1);
            let record = VersionRecord {
                workflow_id: wf.to_owned(),
                number: last + 1,
                hash: hash.clone(),
                definition: definition.clone(),
                published_at: now,
            };
            if versions
                .get((wf, record.number))
                .map_err(backend)?
                .is_some()
            {
                return Err(StoreError::Conflict(format!(
                    "version {} of {wf} exists",
                    record.number
                )));
            }
            versions
                .insert((wf, record.number), to_json(&record)?.as_slice())
                .map_err(backend)?;
            hashes
                .insert((wf, hash.as_str()), record.number)
                .map_err(backend)?;
            Ok(record)
        })
        .await
        .inspect(|_| self.bump_versions_generation())
    }

    async fn version(&self, workflow_id: &str, number: u32) -> StoreResult<Option<VersionRecord>> {
        let wf = workflow_id.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(VERSIONS).map_err(backend)?;
            match t.get((wf.as_str(), number)).map_err(backend)? {
                Some(v) => from_json(v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn versions(&self, workflow_id: &str) -> StoreResult<Vec<(VersionRecord, VersionState)>> {
        let wf = workflow_id.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let versions = tx.open_table(VERSIONS).map_err(backend)?;
            let states = tx.open_table(VERSION_STATES).map_err(backend)?;
            let mut out = Vec::new();
            for row in versions
                .range((wf.as_str(), 0)..=(wf.as_str(), u32::MAX))
                .map_err(backend)?
            {
                let (k, v) = row.map_err(backend)?;
                let state = match states.get(k.value()).map_err(backend)? {
                    Some(s) => from_json(s.value())?,
                    None => VersionState::Active,
                };
                out.push((from_json(v.value())?, state));
            }
            Ok(out)
        })
        .await
    }

    async fn state(&self, workflow_id: &str, number: u32) -> StoreResult<VersionState> {
        let wf = workflow_id.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(VERSION_STATES).map_err(backend)?;
            match t.get((wf.as_str(), number)).map_err(backend)? {
                Some(v) => from_json(v.value()),
                None => Ok(VersionState::Active),
            }
        })
        .await
    }

    async fn set_state(
        &self,
        workflow_id: &str,
        number: u32,
        state: VersionState,
    ) -> StoreResult<()> {
        let (wf, bytes) = (workflow_id.to_owned(), to_json(&state)?);
        self.writing(move |tx| {
            let versions = tx.open_table(VERSIONS).map_err(backend)?;
            if versions
                .get((wf.as_str(), number))
                .map_err(backend)?
                .is_none()
            {
                return Err(StoreError::Conflict(format!(
                    "{wf} has no version {number}"
                )));
            }
            let mut t = tx.open_table(VERSION_STATES).map_err(backend)?;
            t.insert((wf.as_str(), number), bytes.as_slice())
                .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn alias(&self, workflow_id: &str) -> StoreResult<Option<Alias>> {
        let wf = workflow_id.to_owned();
        self.blocking(move |db| LocalStore::read(db, ALIASES, &wf))
            .await
    }

    async fn set_alias(&self, alias: &Alias) -> StoreResult<()> {
        let (wf, bytes) = (alias.workflow_id.clone(), to_json(alias)?);
        self.writing(move |tx| {
            let mut t = tx.open_table(ALIASES).map_err(backend)?;
            t.insert(wf.as_str(), bytes.as_slice()).map_err(backend)?;
            Ok(())
        })
        .await
        .inspect(|()| self.bump_versions_generation())
    }

    async fn workflows(&self) -> StoreResult<Vec<String>> {
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(VERSIONS).map_err(backend)?;
            let mut out: Vec<String> = Vec::new();
            // Jump from one workflow to the next instead of reading every version.
            let mut from = String::new();
            loop {
                let next = t
                    .range((from.as_str(), 0)..)
                    .map_err(backend)?
                    .next()
                    .transpose()
                    .map_err(backend)?;
                let Some((k, _)) = next else { break };
                let id = k.value().0.to_owned();
                from = format!("{id}\0");
                out.push(id);
            }
            Ok(out)
        })
        .await
    }

    async fn latest(&self, workflow_id: &str) -> StoreResult<Option<VersionRecord>> {
        let wf = workflow_id.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(VERSIONS).map_err(backend)?;
            let last = t
                .range((wf.as_str(), 0)..=(wf.as_str(), u32::MAX))
                .map_err(backend)?
                .next_back()
                .transpose()
                .map_err(backend)?;
            match last {
                Some((_, v)) => from_json(v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }
}

#[async_trait]
impl RecordStore for LocalStore {
    async fn get(&self, collection: &str, key: &str) -> StoreResult<Option<Value>> {
        let (c, k) = (collection.to_owned(), key.to_owned());
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(RECORDS).map_err(backend)?;
            match t.get((c.as_str(), k.as_str())).map_err(backend)? {
                Some(v) => from_json(v.value()).map(Some),
                None => Ok(None),
            }
        })
        .await
    }

    async fn put(&self, collection: &str, key: &str, value: &Value) -> StoreResult<Option<Value>> {
        let (c, k, bytes) = (collection.to_owned(), key.to_owned(), to_json(value)?);
        let old = self
            .writing(move |tx| {
                let mut t = tx.open_table(RECORDS).map_err(backend)?;
                let old = t
                    .insert((c.as_str(), k.as_str()), bytes.as_slice())
                    .map_err(backend)?;
                old.map(|v| from_json(v.value())).transpose()
            })
            .await?;
        self.tell(collection, key, Some(value.clone()));
        Ok(old)
    }

    async fn delete(&self, collection: &str, key: &str) -> StoreResult<Option<Value>> {
        let (c, k) = (collection.to_owned(), key.to_owned());
        let old = self
            .writing(move |tx| {
                let mut t = tx.open_table(RECORDS).map_err(backend)?;
                let old = t.remove((c.as_str(), k.as_str())).map_err(backend)?;
                old.map(|v| from_json(v.value())).transpose()
            })
            .await?;
        self.tell(collection, key, None);
        Ok(old)
    }
}

#[async_trait]
impl TenantStore for LocalStore {
    async fn create_tenant(&self, record: &TenantRecord) -> StoreResult<()> {
        let (name, bytes) = (record.tenant.clone(), to_json(record)?);
        self.writing(move |tx| {
            let mut t = tx.open_table(TENANTS).map_err(backend)?;
            if t.get(name.as_str()).map_err(backend)?.is_some() {
                return Err(StoreError::Conflict(format!("the tenant {name} exists")));
            }
            t.insert(name.as_str(), bytes.as_slice()).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn tenant(&self, tenant: &str) -> StoreResult<Option<TenantRecord>> {
        let name = tenant.to_owned();
        self.blocking(move |db| LocalStore::read(db, TENANTS, &name))
            .await
    }
}
