//! The control plane of `eventflow serve`: the API's operations on the embedded runtime.
//!
//! Tenants are kept apart by construction: each has its own data directory
//! (`<data dir>/tenants/<name>`), hence its own store, runtime and scheduler. A request scoped
//! to one tenant holds only that tenant's plane, so another tenant's workflow, run, schedule or
//! record is not there to be found: it answers exactly as one that never existed. The tenants'
//! names and key hashes live in the root store of the data directory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use eventflow_api::plane::{
    ApiError, ApiResult, ControlPlane, ErrorKind, Plane, Runs, Tenants, cycle_error,
};
use eventflow_engine::migrate::{Mapping, Reason, Summary};
use eventflow_engine::{ActionRegistry, Definition, EventKind, RunStatus, Timestamp, Version};
use eventflow_ports::{Action, Clock, StoreResult, TenantRecord, TenantStore, VersionRecord};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::outbox::FileOutbox;
use crate::runtime::{Runtime, RuntimeConfig, StartError};
use crate::scheduler::{Scheduler, SchedulerError};
use crate::store::LocalStore;

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
        let plane = Arc::new(Plane::new(LocalRuns {
            runtime,
            scheduler,
            registry: self.host.registry.clone(),
        }));
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
            PublishError::Cycle { workflow, cycle } => cycle_error(&workflow, cycle),
            PublishError::Store(e) => e.into(),
        }
    }
}

impl From<StartError> for ApiError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Invalid(problems) => eventflow_api::plane::input_problems(&problems),
            StartError::Store(e) => e.into(),
            StartError::Stopped => ApiError::new(ErrorKind::Unavailable, e.to_string()),
        }
    }
}

/// One tenant's runs on the embedded host: its runtime and scheduler.
#[derive(Debug)]
pub struct LocalRuns {
    runtime: Runtime,
    scheduler: Scheduler,
    registry: ActionRegistry,
}

/// One tenant's control plane on the embedded host.
pub type LocalPlane = Plane<LocalRuns>;

impl LocalRuns {
    /// The tenant's runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The tenant's scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }
}

fn json_of(view: impl serde::Serialize) -> ApiResult<Value> {
    serde_json::to_value(view).map_err(|e| {
        ApiError::new(
            ErrorKind::Unavailable,
            format!("the schedule could not be shown: {e}"),
        )
    })
}

#[async_trait]
impl Runs for LocalRuns {
    type Store = LocalStore;

    fn store(&self) -> &LocalStore {
        self.runtime.store()
    }

    fn registry(&self) -> &ActionRegistry {
        &self.registry
    }

    async fn publish(&self, def: &Definition) -> ApiResult<VersionRecord> {
        Ok(self.runtime.publish(def).await?)
    }

    async fn version(&self, workflow: &str, number: u32) -> StoreResult<Arc<Version>> {
        self.runtime.version(workflow, number).await
    }

    async fn start_once(
        &self,
        version: Arc<Version>,
        input: Value,
        key: &str,
    ) -> ApiResult<(String, bool)> {
        Ok(self.runtime.start_once(version, input, key).await?)
    }

    async fn operate(&self, id: &str, event: EventKind) -> ApiResult<Option<RunStatus>> {
        Ok(self.runtime.operate(id, event, "api").await?)
    }

    async fn migrate(
        &self,
        id: &str,
        to: Arc<Version>,
        mapping: Arc<Mapping>,
        dry_run: bool,
    ) -> Result<Summary, Vec<Reason>> {
        self.runtime.migrate(id, to, mapping, dry_run).await
    }

    async fn schedules(&self) -> ApiResult<Vec<Value>> {
        self.scheduler
            .list()
            .await?
            .into_iter()
            .map(json_of)
            .collect()
    }

    async fn pause_schedule(&self, id: &str) -> ApiResult<Value> {
        json_of(self.scheduler.pause(id).await?)
    }

    async fn resume_schedule(&self, id: &str) -> ApiResult<Value> {
        json_of(self.scheduler.resume(id).await?)
    }

    /// Brings the scheduler up to date with the triggers now in force.
    async fn changed(&self) {
        if let Err(e) = self.scheduler.sync().await {
            tracing::warn!(error = %e, "schedules not brought up to date; the next sync retries");
        }
    }
}
