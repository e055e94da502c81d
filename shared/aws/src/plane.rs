//! The API's control plane on AWS: [`eventflow_api::plane::Plane`] over [`AwsRuns`], the
//! DynamoDB store and the queues of one tenant's [`Host`], and [`AwsTenants`], which finds the
//! tenant of a request in the table and hands out its plane. The API function serves
//! `eventflow_api::http::router(AwsTenants)` through `lambda_http`: the same handlers as
//! `eventflow serve`.
//!
//! A request is answered at once, in the function that received it: a start writes the new
//! checkpoint and sends its first tasks; an operator's event (pause, resume, cancel, retry,
//! skip, roll back) is applied with [`Host::apply`] like the coordinator applies one; a
//! migration writes the moved checkpoint with [`Host::migrate`]. Every write is conditional on
//! the checkpoint's sequence number, so a coordinator applying an event to the same run at the
//! same moment makes one of the two read again, and nothing is lost.

use std::sync::Arc;

use async_trait::async_trait;
use eventflow_api::plane::{
    ApiError, ApiResult, ControlPlane, ErrorKind, Plane, Runs, Tenants, problems,
};
use eventflow_engine::migrate::{self, Mapping, Reason, Summary};
use eventflow_engine::{
    ActionRegistry, Checkpoint, Definition, Event, EventKind, Problem, RunStatus, Timestamp,
    Version,
};
use eventflow_ports::{
    Commit, StoreError, StoreResult, TenantRecord, TenantStore, VersionRecord, definition_hash,
};
use serde_json::Value;

use crate::host::{AwsStore, Host, StartError};
use crate::schedules::{self, EVENTS, ScheduleChangeError, ScheduleStore};

/// How often a migration that lost a race with another write reads the run again.
const ATTEMPTS: usize = 8;

impl<S: AwsStore> Host<S> {
    /// Moves run `execution_id` to version `to` under `mapping`, or with `dry_run` only says
    /// whether it could and how (every reason it cannot). Nothing changes unless every check
    /// passes. The moved checkpoint and the history entry recording the move are written
    /// together under the condition that the run did not change since it was read; when it
    /// did, the run is read and checked again.
    pub async fn migrate(
        &self,
        execution_id: &str,
        to: &Version,
        mapping: &Mapping,
        dry_run: bool,
    ) -> Result<Summary, Vec<Reason>> {
        let refuse = |message: String| {
            vec![Reason {
                step: None,
                message,
            }]
        };
        for _ in 0..ATTEMPTS {
            let cp = match self.store().checkpoint(execution_id).await {
                Ok(Some(cp)) => cp,
                Ok(None) => return Err(refuse(format!("there is no run {execution_id}"))),
                Err(e) => return Err(refuse(e.to_string())),
            };
            let from = self
                .version(&cp.workflow_id, cp.version)
                .await
                .map_err(|e| refuse(e.to_string()))?;
            let plan = migrate::check(&from, to, &cp, mapping)?;
            let summary = plan.summary.clone();
            if dry_run {
                return Ok(summary);
            }
            let expected = cp.seq;
            let event_id = format!("{execution_id}/migrate/{expected}");
            let (moved, entry) =
                migrate::apply(plan, cp, self.now(), &event_id).map_err(|r| vec![r])?;
            let commit = Commit {
                // The input is stored once, apart, and not rewritten.
                checkpoint: Some(Checkpoint {
                    input: Value::Null,
                    ..moved
                }),
                expected_seq: Some(expected),
                history: vec![entry],
                ..Commit::default()
            };
            match self.store().commit(vec![commit]).await {
                Ok(()) => return Ok(summary),
                Err(StoreError::Conflict(why)) => {
                    tracing::debug!(execution_id, %why, "a migration lost a race; reading again");
                }
                Err(e) => return Err(refuse(e.to_string())),
            }
        }
        Err(refuse(format!(
            "execution {execution_id} kept changing under {ATTEMPTS} attempts to move it; try again"
        )))
    }
}

/// One tenant's runs on AWS: its [`Host`] (whose registry definitions are checked against
/// and versions compiled with).
#[derive(Debug, Clone)]
pub struct AwsRuns<S: AwsStore> {
    host: Host<S>,
}

impl<S: AwsStore> AwsRuns<S> {
    /// The runs of the tenant `host` is scoped to.
    pub fn new(host: Host<S>) -> Self {
        AwsRuns { host }
    }

    /// The tenant's host.
    pub fn host(&self) -> &Host<S> {
        &self.host
    }
}

impl<S: AwsStore + ScheduleStore> AwsRuns<S> {
    /// Pauses or resumes schedule `id`: the schedule as the API shows it after.
    async fn set_paused(&self, id: &str, pause: bool) -> ApiResult<Value> {
        let store = self.host.store();
        let schedule = schedules::set_paused(store, id, pause, self.host.now()).await?;
        let planned = store.planned(Some(id)).await?;
        Ok(schedules::view(&schedule, &planned))
    }
}

/// How a refused change of a schedule answers.
impl From<ScheduleChangeError> for ApiError {
    fn from(e: ScheduleChangeError) -> Self {
        match e {
            ScheduleChangeError::Unknown { .. } => ApiError::not_found(e.to_string()),
            ScheduleChangeError::Schedule { .. } => ApiError::invalid(e.to_string()),
            ScheduleChangeError::Store(e) => e.into(),
        }
    }
}

impl From<StartError> for ApiError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Invalid(problems) => eventflow_api::plane::input_problems(&problems),
            StartError::Version(e) => e.into(),
            StartError::Store(e) => e.into(),
        }
    }
}

/// The AWS host's side of the plane.
///
/// Schedules are those of [`crate::schedules`]: kept in the table, brought up to date with the
/// triggers in force after every publish and alias change ([`Runs::changed`]), event-relative
/// runs re-planned when a record of [`EVENTS`] is put or deleted through the API
/// ([`Runs::record_changed`]), fired by the scheduler function's tick. Pausing and resuming
/// change the stored schedule (resuming drops the slots that passed while paused).
#[async_trait]
impl<S: AwsStore + ScheduleStore> Runs for AwsRuns<S> {
    type Store = S;

    fn store(&self) -> &S {
        self.host.store()
    }

    fn registry(&self) -> &ActionRegistry {
        self.host.registry()
    }

    /// Validates the definition and publishes it under its content hash (a conditional put:
    /// a version is never overwritten). Workflow dependencies are refused: this host keeps
    /// no correlation index yet, and a dependency it would silently ignore (a blocked run
    /// starting at once, a dependent run never started) is worse than none.
    async fn publish(&self, def: &Definition) -> ApiResult<VersionRecord> {
        let mut found = eventflow_engine::validate(def, self.host.registry());
        if !def.dependencies.is_empty() {
            found.push(Problem {
                path: "$.dependencies".into(),
                message: format!(
                    "{} workflow dependencies declared; the serverless bundle does not run dependencies yet (the embedded runtime, `eventflow serve`, does): publish this workflow without them here, and start the dependent workflows from a step (`workflow.start`)",
                    def.dependencies.len()
                ),
            });
        }
        if !found.is_empty() {
            return Err(problems(&found));
        }
        let hash = definition_hash(def);
        Ok(self
            .host
            .store()
            .publish(def, &hash, self.host.now())
            .await?)
    }

    async fn version(&self, workflow: &str, number: u32) -> StoreResult<Arc<Version>> {
        self.host.version(workflow, number).await
    }

    async fn start_once(
        &self,
        version: Arc<Version>,
        input: Value,
        key: &str,
    ) -> ApiResult<(String, bool)> {
        Ok(self.host.start(version, input, key).await?)
    }

    async fn operate(&self, id: &str, kind: EventKind) -> ApiResult<Option<RunStatus>> {
        let mut event = Event::new(format!("op-{}", uuid::Uuid::now_v7().simple()), kind);
        event.actor = Some("api".to_owned());
        let applied = self.host.apply(id, vec![(event, None)]).await?;
        Ok(if applied.changed {
            applied.status
        } else {
            None
        })
    }

    async fn migrate(
        &self,
        id: &str,
        to: Arc<Version>,
        mapping: Arc<Mapping>,
        dry_run: bool,
    ) -> Result<Summary, Vec<Reason>> {
        self.host.migrate(id, &to, &mapping, dry_run).await
    }

    async fn schedules(&self) -> ApiResult<Vec<Value>> {
        let store = self.host.store();
        let planned = store.planned(None).await?;
        Ok(store
            .schedules()
            .await?
            .iter()
            .map(|s| schedules::view(&s.schedule, &planned))
            .collect())
    }

    async fn pause_schedule(&self, id: &str) -> ApiResult<Value> {
        self.set_paused(id, true).await
    }

    async fn resume_schedule(&self, id: &str) -> ApiResult<Value> {
        self.set_paused(id, false).await
    }

    /// Brings the schedules up to date with the triggers now in force.
    async fn changed(&self) {
        match schedules::sync_schedules(&self.host).await {
            Ok(report) => {
                for problem in &report.problems {
                    tracing::warn!(tenant = self.host.tenant(), %problem, "not planned");
                }
            }
            Err(error) => {
                tracing::warn!(tenant = self.host.tenant(), %error, "schedules not brought up to date; the next publish, alias change or record write retries");
            }
        }
    }

    /// Re-plans an event's runs when its record in [`EVENTS`] is put or deleted.
    async fn record_changed(&self, collection: &str, key: &str, value: Option<&Value>) {
        if collection != EVENTS {
            return;
        }
        if let Err(error) = schedules::replan_event(&self.host, key, value).await {
            tracing::warn!(tenant = self.host.tenant(), record = key, %error, "the event's runs were not re-planned; the next publish or alias change does it");
        }
    }
}

/// One tenant's control plane on AWS.
pub type AwsPlane<S> = Plane<AwsRuns<S>>;

/// Every tenant of a table: the tenant records (`TENANT#<name>`) authenticate requests, and a
/// request's plane is the host scoped to its tenant.
#[derive(Debug, Clone)]
pub struct AwsTenants<S: AwsStore> {
    host: Host<S>,
}

impl<S: AwsStore + TenantStore + ScheduleStore> AwsTenants<S> {
    /// The tenants of `host`'s table; definitions are validated against the host's registry.
    pub fn new(host: Host<S>) -> Self {
        AwsTenants { host }
    }

    /// The plane of `tenant`, with what only the AWS host offers.
    pub fn aws_plane(&self, tenant: &str) -> AwsPlane<S> {
        Plane::new(AwsRuns::new(self.host.for_tenant(tenant)))
    }
}

#[async_trait]
impl<S: AwsStore + TenantStore + ScheduleStore> Tenants for AwsTenants<S> {
    async fn tenant(&self, tenant: &str) -> ApiResult<Option<TenantRecord>> {
        Ok(TenantStore::tenant(self.host.store(), tenant).await?)
    }

    async fn plane(&self, tenant: &str) -> ApiResult<Arc<dyn ControlPlane>> {
        if tenant.is_empty() || tenant.contains('#') {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                format!("there is no tenant {tenant}"),
            ));
        }
        let plane: Arc<dyn ControlPlane> = Arc::new(self.aws_plane(tenant));
        Ok(plane)
    }

    fn now(&self) -> Timestamp {
        self.host.now()
    }
}
