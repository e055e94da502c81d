//! Hand-written in-memory fakes of the ports the actions use, and a `World` that builds
//! action contexts the way a host does.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use eventflow_ports::{
    Action, ActionContext, ActionError, Message, Outbox, RecordStore, StoreError, StoreResult,
    Workflows,
};
use serde_json::Value;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock()
        .expect("a test thread panicked while holding the lock")
}

/// Records in a map; `down` makes every call fail as an unavailable store would.
#[derive(Debug, Default)]
pub(crate) struct MemRecords {
    map: Mutex<BTreeMap<(String, String), Value>>,
    pub(crate) down: AtomicBool,
}

impl MemRecords {
    pub(crate) fn value(&self, collection: &str, key: &str) -> Option<Value> {
        lock(&self.map)
            .get(&(collection.to_owned(), key.to_owned()))
            .cloned()
    }

    pub(crate) fn insert(&self, collection: &str, key: &str, value: Value) {
        lock(&self.map).insert((collection.to_owned(), key.to_owned()), value);
    }

    /// The records of one collection, by key.
    pub(crate) fn collection(&self, collection: &str) -> BTreeMap<String, Value> {
        lock(&self.map)
            .iter()
            .filter(|((c, _), _)| c == collection)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    }

    fn check(&self) -> StoreResult<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the test store is down".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl RecordStore for MemRecords {
    async fn get(&self, collection: &str, key: &str) -> StoreResult<Option<Value>> {
        self.check()?;
        Ok(self.value(collection, key))
    }

    async fn put(&self, collection: &str, key: &str, value: &Value) -> StoreResult<Option<Value>> {
        self.check()?;
        Ok(lock(&self.map).insert((collection.to_owned(), key.to_owned()), value.clone()))
    }

    async fn delete(&self, collection: &str, key: &str) -> StoreResult<Option<Value>> {
        self.check()?;
        Ok(lock(&self.map).remove(&(collection.to_owned(), key.to_owned())))
    }
}

/// Messages sent, once per key, as the port promises.
#[derive(Debug, Default)]
pub(crate) struct MemOutbox {
    sent: Mutex<Vec<(String, Message)>>,
}

impl MemOutbox {
    pub(crate) fn sent(&self) -> Vec<Message> {
        lock(&self.sent).iter().map(|(_, m)| m.clone()).collect()
    }
}

#[async_trait]
impl Outbox for MemOutbox {
    async fn send(&self, message: &Message) -> StoreResult<String> {
        let mut sent = lock(&self.sent);
        if let Some((id, _)) = sent.iter().find(|(_, m)| m.key == message.key) {
            return Ok(id.clone());
        }
        let id = format!("<{}@outbox.test>", sent.len() + 1);
        sent.push((id.clone(), message.clone()));
        Ok(id)
    }
}

/// A run started by `workflow.start`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Started {
    pub(crate) execution_id: String,
    pub(crate) workflow: String,
    pub(crate) input: Value,
}

/// Runs started once per idempotency key, and the ones cancelled.
#[derive(Debug, Default)]
pub(crate) struct MemWorkflows {
    pub(crate) started: Mutex<HashMap<String, Started>>,
    pub(crate) cancelled: Mutex<Vec<String>>,
}

#[async_trait]
impl Workflows for MemWorkflows {
    async fn start(
        &self,
        workflow_id: &str,
        input: &Value,
        idempotency_key: &str,
    ) -> Result<String, ActionError> {
        if workflow_id == "no-such-workflow" {
            return Err(ActionError::terminal(
                "UnknownWorkflow",
                "no workflow `no-such-workflow`",
            ));
        }
        let mut started = lock(&self.started);
        let n = started.len() + 1;
        let run = started
            .entry(idempotency_key.to_owned())
            .or_insert_with(|| Started {
                execution_id: format!("run-{n}"),
                workflow: workflow_id.to_owned(),
                input: input.clone(),
            });
        Ok(run.execution_id.clone())
    }

    async fn cancel(&self, execution_id: &str) -> Result<(), ActionError> {
        lock(&self.cancelled).push(execution_id.to_owned());
        Ok(())
    }
}

/// The fakes, and contexts for attempts and compensations of one execution.
#[derive(Debug, Default)]
pub(crate) struct World {
    pub(crate) records: Arc<MemRecords>,
    pub(crate) outbox: Arc<MemOutbox>,
    pub(crate) workflows: Arc<MemWorkflows>,
}

pub(crate) const EXECUTION: &str = "exec-1";

impl World {
    pub(crate) fn new() -> World {
        World::default()
    }

    /// The context of `attempt` of `step` (of `item`), keyed as the engine keys it.
    pub(crate) fn attempt(&self, step: &str, item: Option<u32>, attempt: u32) -> ActionContext {
        let slot = item.map_or_else(|| "-".to_owned(), |n| n.to_string());
        self.ctx(
            step,
            item,
            attempt,
            format!("{EXECUTION}/{step}/{slot}/{attempt}"),
        )
    }

    /// The context of `attempt` of the compensation of `step` (of `item`).
    pub(crate) fn compensation(
        &self,
        step: &str,
        item: Option<u32>,
        attempt: u32,
    ) -> ActionContext {
        let slot = item.map_or_else(|| "-".to_owned(), |n| n.to_string());
        self.ctx(
            step,
            item,
            attempt,
            format!("{EXECUTION}/{step}.compensate/{slot}/{attempt}"),
        )
    }

    fn ctx(&self, step: &str, item: Option<u32>, attempt: u32, key: String) -> ActionContext {
        ActionContext {
            execution_id: EXECUTION.to_owned(),
            workflow_id: "test-workflow".to_owned(),
            step: step.to_owned(),
            item,
            attempt,
            key,
            records: self.records.clone(),
            outbox: self.outbox.clone(),
            workflows: self.workflows.clone(),
        }
    }
}

/// The action called `name`, as hosts get it. Building an HTTP client loads the system's
/// certificates, so one client serves every test; `http.request` tests make their own, as a
/// client's pooled connections belong to the test's runtime.
pub(crate) fn action(name: &str) -> Arc<dyn Action> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    let client = CLIENT.get_or_init(reqwest::Client::new).clone();
    eventflow_actions::actions(client)
        .remove(name)
        .unwrap_or_else(|| panic!("no action `{name}`"))
}

/// Asserts `result` is a terminal `InvalidInput` error about `path`.
#[track_caller]
pub(crate) fn assert_invalid(result: Result<Value, ActionError>, path: &str) {
    let err = result.expect_err("the input is refused");
    assert_eq!(err.name, "InvalidInput", "{err}");
    assert!(!err.retryable, "{err}");
    assert!(
        err.message.starts_with(&format!("{path}: ")),
        "expected a message about {path}: {}",
        err.message
    );
}
