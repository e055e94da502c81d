//! The control plane of `eventflow serve`: the API's operations on the embedded runtime.
//!
//! Tenants are kept apart by construction: each has its own data directory
//! (`<data dir>/tenants/<name>`), hence its own store, runtime and scheduler. A request scoped
//! to one tenant holds only that tenant's plane, so another tenant's workflow, run, schedule or
//! record is not there to be found: it answers exactly as one that never existed. The tenants'
//! names and key hashes live in the root store of the data directory.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use eventflow_api::plane::{
    ApiError, ApiResult, ControlPlane, ErrorKind, ExecutionFilter, HookAccepted, MigrateRequest,
    MigrateResult, MigrateScope, Operated, StartRequest, Started, Tenants, VersionView,
    WorkflowView,
};
use eventflow_engine::{
    ActionRegistry, Checkpoint, Definition, EventKind, HistoryEntry, Problem, Timestamp, Trigger,
    Version,
};
use eventflow_ports::versions::{self, VersionError};
use eventflow_ports::*;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::outbox::FileOutbox;
use crate::runtime::{Runtime, RuntimeConfig, StartError};
use crate::scheduler::{Scheduler, SchedulerError};
use crate::store::LocalStore;

/// Where the deliveries a tenant's hooks accepted are remembered.
const DELIVERIES: &str = "_deliveries";
/// Runs `GET /v1/executions` returns without a `limit`, and at most.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// How `serve` builds each tenant's runtime.
#[derive(Clone)]
pub struct Host {
    pub clock: Arc<dyn Clock>,
    pub registry: ActionRegistry,
    pub actions: HashMap<&'static str, Arc<dyn Action>>,
    pub config: RuntimeConfig,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Every tenant of a data directory, their planes started on first use.
pub struct LocalTenants {
    root: LocalStore,
    host: Host,
    planes: Mutex<HashMap<String, Arc<LocalPlane>>>,
}

impl std::fmt::Debug for LocalTenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTenants")
            .field("root", &self.root.dir())
            .finish_non_exhaustive()
    }
}

impl LocalTenants {
    /// Serves the tenants recorded in `root` (the data directory's own store).
    pub fn new(root: LocalStore, host: Host) -> Self {
        LocalTenants {
            root,
            host,
            planes: Mutex::new(HashMap::new()),
        }
    }

    /// Where a tenant's store lives.
    pub fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.root.dir().join("tenants").join(tenant)
    }

    /// Stops every tenant's runtime and scheduler.
    pub async fn stop(&self) {
        for plane in self.planes.lock().await.values() {
            plane.scheduler.stop();
            plane.runtime.stop();
        }
    }

    /// The plane of a tenant, starting it on first use.
    pub async fn local_plane(&self, tenant: &str) -> ApiResult<Arc<LocalPlane>> {
        let mut planes = self.planes.lock().await;
        if let Some(p) = planes.get(tenant) {
            return Ok(Arc::clone(p));
        }
        let unavailable = |e: String| ApiError::new(ErrorKind::Unavailable, e);
        let store =
            LocalStore::open(&self.tenant_dir(tenant)).map_err(|e| unavailable(e.to_string()))?;
        let outbox = Arc::new(FileOutbox::new(store.dir().join("outbox")));
        let runtime = Runtime::start(
            store,
            Arc::clone(&self.host.clock),
            self.host.registry.clone(),
            self.host.actions.clone(),
            outbox,
            self.host.config.clone(),
        )
        .await?;
        let scheduler = Scheduler::new(runtime.clone(), Arc::clone(&self.host.clock));
        scheduler.clone().spawn();
        let plane = Arc::new(LocalPlane {
            runtime,
            scheduler,
            registry: self.host.registry.clone(),
        });
        planes.insert(tenant.to_owned(), Arc::clone(&plane));
        Ok(plane)
    }
}

#[async_trait]
impl Tenants for LocalTenants {
    async fn tenant(&self, tenant: &str) -> ApiResult<Option<TenantRecord>> {
        Ok(self.root.tenant(tenant).await?)
    }

    async fn plane(&self, tenant: &str) -> ApiResult<Arc<dyn ControlPlane>> {
        let plane: Arc<dyn ControlPlane> = self.local_plane(tenant).await?;
        Ok(plane)
    }

    fn now(&self) -> Timestamp {
        self.host.clock.now()
    }
}

/// One tenant's control plane: its runtime and scheduler.
#[derive(Debug)]
pub struct LocalPlane {
    runtime: Runtime,
    scheduler: Scheduler,
    registry: ActionRegistry,
}

fn problems(list: &[Problem]) -> ApiError {
    let first = list.first().map_or_else(String::new, |p| format!(": {p}"));
    ApiError::invalid(format!(
        "the definition has {} problem(s){first}",
        list.len()
    ))
    .with(json!({"problems": list.iter().map(|p| json!({"path": p.path, "message": p.message})).collect::<Vec<_>>()}))
}

fn input_problems(list: &[Problem]) -> ApiError {
    let first = list.first().map_or_else(String::new, |p| format!(": {p}"));
    ApiError::invalid(format!(
        "the input does not match the workflow's input_schema{first}"
    ))
    .with(json!({"problems": list.iter().map(|p| json!({"path": p.path, "message": p.message})).collect::<Vec<_>>()}))
}

fn no_run(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "there is no execution {id}; GET /v1/executions lists them"
    ))
}

impl From<SchedulerError> for ApiError {
    fn from(e: SchedulerError) -> Self {
        match e {
            SchedulerError::UnknownSchedule { id } => ApiError::not_found(format!(
                "there is no schedule `{id}`; GET /v1/schedules lists them"
            )),
            SchedulerError::Schedule { .. } => ApiError::invalid(e.to_string()),
            SchedulerError::Store(e) => e.into(),
        }
    }
}

impl From<crate::dependencies::PublishError> for ApiError {
    fn from(e: crate::dependencies::PublishError) -> Self {
        use crate::dependencies::PublishError;
        match e {
            PublishError::Cycle { ref cycle, .. } => {
                let cycle = cycle.clone();
                ApiError::invalid(e.to_string()).with(json!({ "cycle": cycle }))
            }
            PublishError::Store(e) => e.into(),
        }
    }
}

impl From<StartError> for ApiError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Invalid(m) => ApiError::invalid(m),
            StartError::Store(e) => e.into(),
            StartError::Stopped => ApiError::new(ErrorKind::Unavailable, e.to_string()),
        }
    }
}

/// The execution as `eventflow status --json` and `GET /v1/executions/{id}` show it.
pub fn execution_json(cp: &Checkpoint, history: &[HistoryEntry]) -> Value {
    let steps: BTreeMap<&str, Value> = cp
        .steps
        .iter()
        .map(|s| {
            let attempts = s.fan.as_ref().map_or(s.attempt, |f| f.next + f.retries);
            (
                s.id.as_str(),
                json!({
                    "status": s.status,
                    "attempts": attempts,
                    "retries": s.retries + s.fan.as_ref().map_or(0, |f| f.retries),
                    "output": s.output,
                    "error": s.error,
                    "started_at": s.started_at,
                    "finished_at": s.finished_at,
                    "for_each": s.fan.as_ref().map(|f| json!({
                        "total": f.total, "succeeded": f.succeeded, "failed": f.failed,
                        "failures": f.failures,
                    })),
                    "compensation": s.compensation,
                }),
            )
        })
        .collect();
    json!({
        "id": cp.execution_id,
        "workflow": cp.workflow_id,
        "version": cp.version,
        "status": cp.status,
        "correlation_key": cp.correlation_key,
        "waiting_on": cp.waiting_on,
        "input": cp.input,
        "created_at": cp.created_at,
        "updated_at": cp.updated_at,
        "error": cp.error,
        "compensation_error": cp.compensation_error,
        "steps": steps,
        "history": history,
    })
}

impl LocalPlane {
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    fn store(&self) -> &LocalStore {
        self.runtime.store()
    }

    fn check(&self, def: &Definition) -> ApiResult<()> {
        let found = eventflow_engine::validate(def, &self.registry);
        if found.is_empty() {
            Ok(())
        } else {
            Err(problems(&found))
        }
    }

    async fn checkpoint(&self, id: &str) -> ApiResult<Checkpoint> {
        self.store().checkpoint(id).await?.ok_or_else(|| no_run(id))
    }

    async fn view(&self, workflow: &str, number: u32) -> ApiResult<VersionView> {
        let record =
            self.store()
                .version(workflow, number)
                .await?
                .ok_or(VersionError::NoSuchVersion {
                    workflow: workflow.to_owned(),
                    number,
                })?;
        let state = self.store().state(workflow, number).await?;
        Ok(VersionView::of(record, state, true))
    }

    /// Publishes and lets the scheduler see the new triggers.
    async fn publish_checked(&self, def: &Definition) -> ApiResult<VersionRecord> {
        let record = self.runtime.publish(def).await?;
        self.resync().await;
        Ok(record)
    }

    async fn resync(&self) {
        if let Err(e) = self.scheduler.sync().await {
            tracing::warn!(error = %e, "schedules not brought up to date; the next sync retries");
        }
    }

    /// The workflows whose active version listens on hook `name`.
    async fn listeners(&self, name: &str) -> ApiResult<Vec<String>> {
        let mut out = Vec::new();
        for workflow in self.store().workflows().await? {
            let alias = versions::current_alias(self.store(), &workflow).await?;
            let Some(active) = self.store().version(&workflow, alias.active).await? else {
                continue;
            };
            let listens = active
                .definition
                .triggers
                .iter()
                .any(|t| matches!(t, Trigger::Webhook { name: n } if n == name));
            if listens {
                out.push(workflow);
            }
        }
        Ok(out)
    }

    /// Starts a run of `workflow` by the alias (or `number`), once per `key`.
    async fn start_keyed(
        &self,
        workflow: &str,
        number: Option<u32>,
        input: Value,
        key: &str,
    ) -> ApiResult<Started> {
        let number = versions::version_for_start(self.store(), workflow, number, key).await?;
        let version = self.runtime.version(workflow, number).await?;
        if let Err(found) = version.check_input(&input) {
            return Err(input_problems(&found));
        }
        let (id, created) = self.runtime.start_once(version, input, key).await?;
        // The run the key started, with the version it started on.
        let cp = self.checkpoint(&id).await?;
        Ok(Started {
            created,
            execution_id: id,
            workflow_id: workflow.to_owned(),
            version: cp.version,
        })
    }

    async fn version_of(&self, workflow: &str, number: u32) -> ApiResult<Arc<Version>> {
        if self.store().version(workflow, number).await?.is_none() {
            return Err(VersionError::NoSuchVersion {
                workflow: workflow.to_owned(),
                number,
            }
            .into());
        }
        Ok(self.runtime.version(workflow, number).await?)
    }
}

#[async_trait]
impl ControlPlane for LocalPlane {
    async fn create_workflow(&self, def: Definition) -> ApiResult<VersionView> {
        self.check(&def)?;
        if self.store().latest(&def.id).await?.is_some() {
            return Err(ApiError::conflict(format!(
                "the workflow {} exists; publish a new version with POST /v1/workflows/{}/versions",
                def.id, def.id
            ))
            .with(json!({"workflow": def.id})));
        }
        let record = self.publish_checked(&def).await?;
        Ok(VersionView::of(record, VersionState::Active, true))
    }

    async fn publish(&self, def: Definition) -> ApiResult<(VersionView, bool)> {
        self.check(&def)?;
        let before = self.store().latest(&def.id).await?.map(|v| v.number);
        let record = self.publish_checked(&def).await?;
        let created = before.is_none_or(|n| record.number > n);
        let state = self.store().state(&def.id, record.number).await?;
        Ok((VersionView::of(record, state, true), created))
    }

    async fn workflows(&self) -> ApiResult<Vec<WorkflowView>> {
        let mut out = Vec::new();
        for id in self.store().workflows().await? {
            out.push(self.workflow(&id).await?);
        }
        Ok(out)
    }

    async fn workflow(&self, id: &str) -> ApiResult<WorkflowView> {
        let latest = self
            .store()
            .latest(id)
            .await?
            .ok_or_else(|| VersionError::NoSuchWorkflow(id.to_owned()))?;
        let alias = versions::current_alias(self.store(), id).await?;
        let kind = serde_json::to_value(latest.definition.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Ok(WorkflowView {
            id: id.to_owned(),
            name: latest.definition.name,
            kind,
            latest_version: latest.number,
            alias,
        })
    }

    async fn versions(&self, workflow: &str) -> ApiResult<Vec<VersionView>> {
        let all = self.store().versions(workflow).await?;
        if all.is_empty() {
            return Err(VersionError::NoSuchWorkflow(workflow.to_owned()).into());
        }
        Ok(all
            .into_iter()
            .map(|(v, state)| VersionView::of(v, state, false))
            .collect())
    }

    async fn version(&self, workflow: &str, number: u32) -> ApiResult<VersionView> {
        self.view(workflow, number).await
    }

    async fn deprecate(&self, workflow: &str, number: u32) -> ApiResult<VersionView> {
        versions::deprecate(self.store(), workflow, number).await?;
        self.view(workflow, number).await
    }

    async fn retire(&self, workflow: &str, number: u32) -> ApiResult<VersionView> {
        versions::retire(self.store(), self.store(), workflow, number).await?;
        self.view(workflow, number).await
    }

    async fn alias(&self, workflow: &str) -> ApiResult<Alias> {
        Ok(versions::current_alias(self.store(), workflow).await?)
    }

    async fn set_alias(&self, alias: Alias) -> ApiResult<Alias> {
        if self.store().latest(&alias.workflow_id).await?.is_none() {
            return Err(VersionError::NoSuchWorkflow(alias.workflow_id).into());
        }
        let set = versions::set_alias(self.store(), &alias.workflow_id, alias.active, alias.canary)
            .await?;
        self.resync().await;
        Ok(set)
    }

    async fn start(&self, workflow: &str, request: StartRequest) -> ApiResult<Started> {
        let key = match request.idempotency_key {
            Some(k) if k.is_empty() || k.len() > 256 => {
                return Err(ApiError::invalid(
                    "$.idempotency_key: give 1 to 256 characters, or leave it out",
                )
                .with(json!({"path": "$.idempotency_key"})));
            }
            Some(k) => format!("api/{workflow}/{k}"),
            None => format!("api/{workflow}/{}", uuid::Uuid::now_v7().simple()),
        };
        if self.store().latest(workflow).await?.is_none() {
            return Err(VersionError::NoSuchWorkflow(workflow.to_owned()).into());
        }
        self.start_keyed(workflow, request.version, request.input, &key)
            .await
    }

    async fn execution(&self, id: &str) -> ApiResult<Value> {
        let cp = self.checkpoint(id).await?;
        let history = self.store().history(id).await?;
        Ok(execution_json(&cp, &history))
    }

    async fn executions(&self, filter: ExecutionFilter) -> ApiResult<Vec<ExecutionSummary>> {
        let limit = filter.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(
                ApiError::invalid(format!("limit: give 1 to {MAX_LIMIT}, not {limit}"))
                    .with(json!({"parameter": "limit"})),
            );
        }
        let mut runs = self
            .store()
            .list(filter.status, filter.workflow.as_deref())
            .await?;
        if let Some(v) = filter.version {
            runs.retain(|r| r.version == v);
        }
        let skip = runs.len().saturating_sub(limit);
        Ok(runs.split_off(skip))
    }

    async fn history(&self, id: &str) -> ApiResult<Vec<HistoryEntry>> {
        self.checkpoint(id).await?;
        Ok(self.store().history(id).await?)
    }

    async fn operate(&self, id: &str, event: EventKind) -> ApiResult<Operated> {
        let cp = self.checkpoint(id).await?;
        let step = match &event {
            EventKind::RetryStep { step } | EventKind::SkipStep { step, .. } => Some(step),
            EventKind::Rollback { to } => to.as_ref(),
            _ => None,
        };
        if let Some(step) = step
            && cp.step(step).is_none()
        {
            return Err(ApiError::invalid(format!(
                "$.step: execution {id} has no step `{step}`; GET /v1/executions/{id} lists its steps"
            ))
            .with(json!({"step": step})));
        }
        let what = match &event {
            EventKind::Pause => "pause",
            EventKind::Resume => "resume",
            EventKind::Cancel { .. } => "cancel",
            EventKind::RetryStep { .. } => "retry",
            EventKind::SkipStep { .. } => "skip",
            EventKind::Rollback { .. } => "rollback",
            _ => "that",
        };
        match self.runtime.operate(id, event, "api").await? {
            Some(status) => Ok(Operated {
                execution_id: id.to_owned(),
                status,
            }),
            None => {
                let now = self.checkpoint(id).await?.status;
                Err(ApiError::conflict(format!(
                    "execution {id} is {}: {what} does not apply to it now, and nothing changed",
                    now.as_str()
                ))
                .with(json!({"status": now})))
            }
        }
    }

    async fn migrate(
        &self,
        scope: MigrateScope,
        request: MigrateRequest,
    ) -> ApiResult<Vec<MigrateResult>> {
        let (workflow, from, runs) = match scope {
            MigrateScope::Execution(id) => {
                let cp = self.checkpoint(&id).await?;
                if cp.status.is_terminal() {
                    return Err(ApiError::conflict(format!(
                        "execution {id} is {}; only unfinished runs move",
                        cp.status.as_str()
                    )));
                }
                (cp.workflow_id, cp.version, vec![id])
            }
            MigrateScope::Version { workflow, version } => {
                self.version_of(&workflow, version).await?;
                let runs = self
                    .store()
                    .list(None, Some(&workflow))
                    .await?
                    .into_iter()
                    .filter(|r| r.version == version && !r.status.is_terminal())
                    .map(|r| r.execution_id)
                    .collect();
                (workflow, version, runs)
            }
        };
        if request.to == from {
            return Err(ApiError::invalid(format!(
                "$.to: the runs are on version {from} already; name another version"
            ))
            .with(json!({"path": "$.to"})));
        }
        let target = self.version_of(&workflow, request.to).await?;
        let mapping = Arc::new(request.mapping);
        let mut out = Vec::new();
        for id in runs {
            let outcome = self
                .runtime
                .migrate(
                    &id,
                    Arc::clone(&target),
                    Arc::clone(&mapping),
                    request.dry_run,
                )
                .await;
            out.push(match outcome {
                Ok(summary) => MigrateResult {
                    execution_id: id,
                    can_move: true,
                    moved: !request.dry_run,
                    summary: Some(summary),
                    reasons: Vec::new(),
                },
                Err(reasons) => MigrateResult {
                    execution_id: id,
                    can_move: false,
                    moved: false,
                    summary: None,
                    reasons,
                },
            });
        }
        Ok(out)
    }

    async fn schedules(&self) -> ApiResult<Vec<Value>> {
        let views = self.scheduler.list().await?;
        Ok(views
            .into_iter()
            .filter_map(|v| serde_json::to_value(v).ok())
            .collect())
    }

    async fn pause_schedule(&self, id: &str) -> ApiResult<Value> {
        let view = self.scheduler.pause(id).await?;
        Ok(serde_json::to_value(view).unwrap_or(Value::Null))
    }

    async fn resume_schedule(&self, id: &str) -> ApiResult<Value> {
        let view = self.scheduler.resume(id).await?;
        Ok(serde_json::to_value(view).unwrap_or(Value::Null))
    }

    async fn hook(&self, name: &str, delivery: &str, body: Value) -> ApiResult<HookAccepted> {
        let record_key = format!("{name}/{delivery}");
        if let Some(seen) = self.store().get(DELIVERIES, &record_key).await? {
            return Err(ApiError::conflict(format!(
                "delivery {delivery} was accepted before; a redelivery starts nothing new"
            ))
            .with(seen));
        }
        let listeners = self.listeners(name).await?;
        if listeners.is_empty() {
            return Err(ApiError::not_found(format!(
                "no workflow listens on the hook {name}; give one a trigger {{\"type\": \"webhook\", \"name\": \"{name}\"}}"
            )));
        }
        // Every input is checked before anything starts: a refused delivery starts nothing.
        for workflow in &listeners {
            let key = format!("hook/{name}/{delivery}/{workflow}");
            let number = versions::version_for_start(self.store(), workflow, None, &key).await?;
            let version = self.runtime.version(workflow, number).await?;
            if let Err(found) = version.check_input(&body) {
                return Err(input_problems(&found).with(json!({
                    "workflow": workflow,
                    "problems": found.iter().map(|p| json!({"path": p.path, "message": p.message})).collect::<Vec<_>>(),
                })));
            }
        }
        let mut started = Vec::new();
        for workflow in &listeners {
            let key = format!("hook/{name}/{delivery}/{workflow}");
            started.push(self.start_keyed(workflow, None, body.clone(), &key).await?);
        }
        // Remembered after the starts: a crash in between lets the redelivery through, and
        // the same start keys find the same runs.
        let seen = json!({
            "delivery": delivery,
            "executions": started.iter().map(|s| s.execution_id.clone()).collect::<Vec<_>>(),
        });
        self.store().put(DELIVERIES, &record_key, &seen).await?;
        Ok(HookAccepted {
            delivery: delivery.to_owned(),
            executions: started,
        })
    }

    async fn record(&self, collection: &str, key: &str) -> ApiResult<Value> {
        self.store()
            .get(collection, key)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("there is no record {collection}/{key}")))
    }

    async fn put_record(&self, collection: &str, key: &str, value: Value) -> ApiResult<bool> {
        Ok(self.store().put(collection, key, &value).await?.is_none())
    }

    async fn delete_record(&self, collection: &str, key: &str) -> ApiResult<()> {
        match self.store().delete(collection, key).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found(format!(
                "there is no record {collection}/{key}"
            ))),
        }
    }
}
