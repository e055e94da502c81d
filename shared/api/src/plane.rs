//! The control plane as the HTTP layer sees it: one trait per host, scoped to a tenant.
//!
//! [`Tenants`] finds a tenant and hands out its [`ControlPlane`]; everything a request can
//! reach goes through that plane, so an object of another tenant is simply not there. The
//! embedded host implements it on the local runtime (`eventflow serve`); the AWS host on
//! DynamoDB and SQS. The HTTP handlers ([`crate::http`]) are written once, over these traits.
//!
//! The operations themselves are written once too: [`Plane`] implements [`ControlPlane`] over
//! a host's [`Runs`], the little that differs between hosts (how a run is published, started,
//! driven and moved, and how schedules are kept).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::TimeDelta;
use eventflow_engine::migrate::{Mapping, Reason, Summary};
use eventflow_engine::{
    ActionRegistry, Checkpoint, Definition, EventKind, HistoryEntry, Problem, RunStatus, Timestamp,
    Trigger, Version,
};
use eventflow_ports::metrics::{Interval, Report};
use eventflow_ports::versions::{self, VersionError};
use eventflow_ports::{
    Alias, ExecutionStore, ExecutionSummary, RecordStore, StoreError, StoreResult, TenantRecord,
    VersionRecord, VersionState, VersionStore,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What kind of refusal an [`ApiError`] is; each maps to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed or invalid.
    Invalid,
    /// 401: no valid API key (or webhook signature).
    Unauthorized,
    /// 404: no such object, for this tenant.
    NotFound,
    /// 405: the path exists, the method does not.
    MethodNotAllowed,
    /// 409: the object's state refuses the operation.
    Conflict,
    /// 413: the body is too large.
    TooLarge,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 503: the store or runtime cannot take it now; nothing changed, try again.
    Unavailable,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::TooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::Unavailable => 503,
        }
    }

    /// The stable `code` of the error body.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Conflict => "conflict",
            ErrorKind::TooLarge => "payload_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::Unavailable => "unavailable",
        }
    }
}

/// A refused request: `{code, message, details}` on the wire.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            details: json!({}),
        }
    }

    pub fn with(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::Conflict, message)
    }

    /// The body of the error response.
    pub fn body(&self) -> Value {
        json!({"code": self.kind.code(), "message": self.message, "details": self.details})
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::conflict(format!(
                "{m}; someone changed it at the same time: read it again and retry"
            )),
            other => ApiError::new(
                ErrorKind::Unavailable,
                format!("{other}; nothing was changed, try again"),
            ),
        }
    }
}

impl From<VersionError> for ApiError {
    fn from(e: VersionError) -> Self {
        let message = e.to_string();
        match e {
            VersionError::NoSuchVersion { .. } | VersionError::NoSuchWorkflow(_) => {
                ApiError::not_found(message)
            }
            VersionError::NotStartable { active, .. } => {
                ApiError::conflict(message).with(json!({"active_version": active}))
            }
            VersionError::InUse { count, .. } => {
                ApiError::conflict(message).with(json!({"unfinished_runs": count}))
            }
            VersionError::NotDeprecated { .. } => ApiError::conflict(message),
            VersionError::Invalid(_) => ApiError::invalid(message),
            VersionError::Store(e) => e.into(),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A workflow: its latest version and where new starts go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub latest_version: u32,
    pub alias: Alias,
}

/// A version without its definition (lists), or with it (get).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionView {
    pub workflow_id: String,
    pub number: u32,
    pub hash: String,
    pub published_at: Timestamp,
    pub state: VersionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<Definition>,
}

impl VersionView {
    pub fn of(record: VersionRecord, state: VersionState, with_definition: bool) -> Self {
        VersionView {
            workflow_id: record.workflow_id,
            number: record.number,
            hash: record.hash,
            published_at: record.published_at,
            state,
            definition: with_definition.then_some(record.definition),
        }
    }
}

/// `POST /v1/workflows/{id}/executions`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    #[serde(default)]
    pub input: Value,
    /// A second start with the same key returns the first run and starts nothing.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Start this version instead of the alias's choice (it must be active).
    #[serde(default)]
    pub version: Option<u32>,
}

/// A started (or, for a repeated idempotency key, found) run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub execution_id: String,
    pub workflow_id: String,
    pub version: u32,
    /// False when the idempotency key had started this run before.
    pub created: bool,
}

/// Filters of `GET /v1/executions`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionFilter {
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default)]
    pub status: Option<RunStatus>,
    #[serde(default)]
    pub version: Option<u32>,
    /// At most this many, newest last (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `GET /v1/workflows/{id}/metrics`: a time range and how to group it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsQuery {
    /// RFC 3339; by default a day (`hour`) or thirty days (`day`) before `to`.
    #[serde(default)]
    pub from: Option<Timestamp>,
    /// RFC 3339, excluded; by default the end of the current hour (`hour`) or day (`day`).
    #[serde(default)]
    pub to: Option<Timestamp>,
    /// `hour` (the default) or `day` (UTC days).
    #[serde(default)]
    pub interval: Option<Interval>,
}

/// The most hours a metrics report by hour spans (92 days).
pub const MAX_METRIC_HOURS: i32 = 92 * 24;
/// The most days a metrics report by day spans.
pub const MAX_METRIC_DAYS: i32 = 400;

/// A metrics report's range, checked: `from` at the start of its period, `from < to`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsRange {
    pub from: Timestamp,
    pub to: Timestamp,
    pub interval: Interval,
}

impl MetricsQuery {
    /// The range asked for, defaults filled in from `now`; refused when `from` is not before
    /// `to`, or when it spans more than [`MAX_METRIC_HOURS`] hours (`hour`) or
    /// [`MAX_METRIC_DAYS`] days (`day`).
    pub fn range(&self, now: Timestamp) -> ApiResult<MetricsRange> {
        let interval = self.interval.unwrap_or_default();
        let (default_span, limit, unit, hint) = match interval {
            Interval::Hour => (
                TimeDelta::days(1),
                MAX_METRIC_HOURS,
                "hours",
                "narrow it, or group it by day (interval=day)",
            ),
            Interval::Day => (TimeDelta::days(30), MAX_METRIC_DAYS, "days", "narrow it"),
        };
        let period = interval.length();
        let to = self.to.unwrap_or_else(|| interval.start_of(now) + period);
        let from = interval.start_of(self.from.unwrap_or(to - default_span));
        if from >= to {
            return Err(ApiError::invalid(format!(
                "from ({}) must come before to ({})",
                from.to_rfc3339(),
                to.to_rfc3339()
            ))
            .with(json!({"parameter": "from"})));
        }
        if to - from > period * limit {
            return Err(ApiError::invalid(format!(
                "the range spans more than {limit} {unit}; {hint}"
            ))
            .with(json!({"parameter": "from"})));
        }
        Ok(MetricsRange { from, to, interval })
    }
}

/// The runs a migration moves: one, or every unfinished run of a version.
#[derive(Debug, Clone, PartialEq)]
pub enum MigrateScope {
    Execution(String),
    Version { workflow: String, version: u32 },
}

/// `POST .../migrate`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// The version to move to.
    pub to: u32,
    #[serde(default)]
    pub mapping: Mapping,
    /// Only report what would happen.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a migration did (or, dry, would do) to one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrateResult {
    pub execution_id: String,
    pub can_move: bool,
    pub moved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
}

/// What an operator's event did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operated {
    pub execution_id: String,
    pub status: RunStatus,
}

/// What an accepted webhook delivery started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookAccepted {
    pub delivery: String,
    pub executions: Vec<Started>,
}

/// Finds tenants and scopes requests to one.
#[async_trait]
pub trait Tenants: Send + Sync {
    /// The tenant's record, to check a presented key or a webhook signature.
    async fn tenant(&self, tenant: &str) -> ApiResult<Option<TenantRecord>>;
    /// Everything the tenant can reach, and nothing else.
    async fn plane(&self, tenant: &str) -> ApiResult<Arc<dyn ControlPlane>>;
    /// The host's clock (webhook timestamps are checked against it).
    fn now(&self) -> Timestamp;
}

/// The operations of the API, for one tenant.
#[async_trait]
pub trait ControlPlane: Send + Sync {
    /// Publishes the first version of a new workflow; a conflict if the workflow exists.
    async fn create_workflow(&self, definition: Definition) -> ApiResult<VersionView>;
    /// Publishes a version; `false` with the existing one when the content is unchanged.
    async fn publish(&self, definition: Definition) -> ApiResult<(VersionView, bool)>;
    async fn workflows(&self) -> ApiResult<Vec<WorkflowView>>;
    async fn workflow(&self, id: &str) -> ApiResult<WorkflowView>;
    async fn versions(&self, workflow: &str) -> ApiResult<Vec<VersionView>>;
    async fn version(&self, workflow: &str, number: u32) -> ApiResult<VersionView>;
    async fn deprecate(&self, workflow: &str, number: u32) -> ApiResult<VersionView>;
    async fn retire(&self, workflow: &str, number: u32) -> ApiResult<VersionView>;
    async fn alias(&self, workflow: &str) -> ApiResult<Alias>;
    async fn set_alias(&self, alias: Alias) -> ApiResult<Alias>;
    async fn start(&self, workflow: &str, request: StartRequest) -> ApiResult<Started>;
    /// A run, as `eventflow status --json` shows it.
    async fn execution(&self, id: &str) -> ApiResult<Value>;
    async fn executions(&self, filter: ExecutionFilter) -> ApiResult<Vec<ExecutionSummary>>;
    async fn history(&self, id: &str) -> ApiResult<Vec<HistoryEntry>>;
    /// The figures a workflow's runs emitted over a range, by period and in total.
    async fn metrics(&self, workflow: &str, range: MetricsRange) -> ApiResult<Report>;
    /// Pause, resume, cancel, retry, skip or roll back; a conflict when it does not apply.
    async fn operate(&self, id: &str, event: EventKind) -> ApiResult<Operated>;
    async fn migrate(
        &self,
        scope: MigrateScope,
        request: MigrateRequest,
    ) -> ApiResult<Vec<MigrateResult>>;
    async fn schedules(&self) -> ApiResult<Vec<Value>>;
    async fn pause_schedule(&self, id: &str) -> ApiResult<Value>;
    async fn resume_schedule(&self, id: &str) -> ApiResult<Value>;
    /// Starts the workflows listening on hook `name` with `body` as input, once per
    /// delivery id; a conflict when the delivery was accepted before.
    async fn hook(&self, name: &str, delivery: &str, body: Value) -> ApiResult<HookAccepted>;
    async fn record(&self, collection: &str, key: &str) -> ApiResult<Value>;
    /// Writes a record; `true` when it is new.
    async fn put_record(&self, collection: &str, key: &str, value: Value) -> ApiResult<bool>;
    async fn delete_record(&self, collection: &str, key: &str) -> ApiResult<()>;
}

/// What differs between hosts under one [`Plane`]: the store, and how runs are published,
/// started, driven and moved, and how schedules are kept.
///
/// Everything else (validation, the version lifecycle of [`eventflow_ports::versions`],
/// idempotent starts, the refusals, webhook deliveries, records) is written once in [`Plane`].
#[async_trait]
pub trait Runs: Send + Sync + 'static {
    /// The tenant's store.
    type Store: VersionStore + ExecutionStore + RecordStore;

    /// The tenant's store.
    fn store(&self) -> &Self::Store;

    /// The registry definitions are validated against.
    fn registry(&self) -> &ActionRegistry;

    /// Publishes a valid definition (once per content), refusing a cycle of workflow
    /// dependencies with nothing written.
    async fn publish(&self, definition: &Definition) -> ApiResult<VersionRecord>;

    /// The compiled version `number` of `workflow` (it exists).
    async fn version(&self, workflow: &str, number: u32) -> StoreResult<Arc<Version>>;

    /// Starts a run of `version` on `input` once per `key`: its id, and whether this call
    /// created it.
    async fn start_once(
        &self,
        version: Arc<Version>,
        input: Value,
        key: &str,
    ) -> ApiResult<(String, bool)>;

    /// Applies an operator's event (actor `api`): the run's status after it, or `None` when
    /// it does not apply to the run as it stands and nothing changed.
    async fn operate(&self, id: &str, event: EventKind) -> ApiResult<Option<RunStatus>>;

    /// Moves run `id` to `to` under `mapping`, or with `dry_run` only says whether it could
    /// and how; nothing changes unless every check passes.
    async fn migrate(
        &self,
        id: &str,
        to: Arc<Version>,
        mapping: Arc<Mapping>,
        dry_run: bool,
    ) -> Result<Summary, Vec<Reason>>;

    /// The tenant's schedules.
    async fn schedules(&self) -> ApiResult<Vec<Value>>;
    /// Stops schedule `id` from firing.
    async fn pause_schedule(&self, id: &str) -> ApiResult<Value>;
    /// Lets schedule `id` fire again.
    async fn resume_schedule(&self, id: &str) -> ApiResult<Value>;

    /// Told after a publish or an alias change (the triggers in force may have changed).
    async fn changed(&self) {}

    /// Told after a record is put (`value` is the new record) or deleted (`None`) through the
    /// API, so a host can re-plan what depends on it (event-relative schedules). Records
    /// written by actions do not pass here.
    async fn record_changed(&self, _collection: &str, _key: &str, _value: Option<&Value>) {}
}

/// Where the deliveries a tenant's hooks accepted are remembered (collection of records).
pub const DELIVERIES: &str = "_deliveries";
/// Runs `GET /v1/executions` returns without a `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The most runs `GET /v1/executions` returns.
pub const MAX_LIMIT: usize = 1000;

/// One tenant's control plane on any host: the API's logic, written once over [`Runs`].
///
/// It dereferences to its [`Runs`], for what only one host offers (the local scheduler's
/// `tick`, for instance).
#[derive(Debug)]
pub struct Plane<R> {
    runs: R,
}

impl<R> std::ops::Deref for Plane<R> {
    type Target = R;

    fn deref(&self) -> &R {
        &self.runs
    }
}

/// The refusal of a definition with problems.
pub fn problems(list: &[Problem]) -> ApiError {
    let first = list.first().map_or_else(String::new, |p| format!(": {p}"));
    ApiError::invalid(format!(
        "the definition has {} problem(s){first}",
        list.len()
    ))
    .with(json!({"problems": problem_list(list)}))
}

fn problem_list(list: &[Problem]) -> Vec<Value> {
    list.iter()
        .map(|p| json!({"path": p.path, "message": p.message}))
        .collect()
}

/// The refusal of an input that does not match the workflow's input_schema.
pub fn input_problems(list: &[Problem]) -> ApiError {
    let first = list.first().map_or_else(String::new, |p| format!(": {p}"));
    ApiError::invalid(format!("the input is refused{first}"))
        .with(json!({"problems": problem_list(list)}))
}

/// The refusal of a publish whose dependencies close a cycle; `cycle` names the workflows
/// along it, the first repeated at the end.
pub fn cycle_error(workflow: &str, cycle: Vec<String>) -> ApiError {
    ApiError::invalid(format!(
        "publishing {workflow} would make a cycle of workflow dependencies: {}; a run would start or wait for itself forever, so remove one of these blocking or parallel dependencies",
        cycle.join(" → ")
    ))
    .with(json!({ "cycle": cycle }))
}

fn no_run(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "there is no execution {id}; GET /v1/executions lists them"
    ))
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

impl<R: Runs> Plane<R> {
    /// The plane over a host's runs.
    pub fn new(runs: R) -> Self {
        Plane { runs }
    }

    /// The host's runs.
    pub fn runs(&self) -> &R {
        &self.runs
    }

    fn store(&self) -> &R::Store {
        self.runs.store()
    }

    fn check(&self, def: &Definition) -> ApiResult<()> {
        let found = eventflow_engine::validate(def, self.runs.registry());
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

    /// Publishes and tells the host the triggers may have changed.
    async fn publish_checked(&self, def: &Definition) -> ApiResult<VersionRecord> {
        let record = self.runs.publish(def).await?;
        self.runs.changed().await;
        Ok(record)
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
        let version = self.runs.version(workflow, number).await?;
        // The host checks the input (a refusal carries every problem).
        let (id, created) = self.runs.start_once(version, input, key).await?;
        // A run the key started before may be on another version (the alias moved since).
        let version = if created {
            number
        } else {
            self.checkpoint(&id).await?.version
        };
        Ok(Started {
            created,
            execution_id: id,
            workflow_id: workflow.to_owned(),
            version,
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
        Ok(self.runs.version(workflow, number).await?)
    }
}

#[async_trait]
impl<R: Runs> ControlPlane for Plane<R> {
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
        self.runs.changed().await;
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

    async fn metrics(&self, workflow: &str, range: MetricsRange) -> ApiResult<Report> {
        if self.store().latest(workflow).await?.is_none() {
            return Err(VersionError::NoSuchWorkflow(workflow.to_owned()).into());
        }
        let hours = self.store().metrics(workflow, range.from, range.to).await?;
        Ok(Report::of(
            workflow,
            range.from,
            range.to,
            range.interval,
            &hours,
        ))
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
        match self.runs.operate(id, event).await? {
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
                .runs
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
        self.runs.schedules().await
    }

    async fn pause_schedule(&self, id: &str) -> ApiResult<Value> {
        self.runs.pause_schedule(id).await
    }

    async fn resume_schedule(&self, id: &str) -> ApiResult<Value> {
        self.runs.resume_schedule(id).await
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
            let version = self.runs.version(workflow, number).await?;
            if let Err(found) = version.check_input(&body) {
                return Err(input_problems(&found).with(json!({
                    "workflow": workflow,
                    "problems": problem_list(&found),
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
        let created = self.store().put(collection, key, &value).await?.is_none();
        self.runs
            .record_changed(collection, key, Some(&value))
            .await;
        Ok(created)
    }

    async fn delete_record(&self, collection: &str, key: &str) -> ApiResult<()> {
        match self.store().delete(collection, key).await? {
            Some(_) => {
                self.runs.record_changed(collection, key, None).await;
                Ok(())
            }
            None => Err(ApiError::not_found(format!(
                "there is no record {collection}/{key}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&chrono::Utc))
            .unwrap_or_default()
    }

    #[test]
    fn a_metrics_range_defaults_to_the_day_up_to_the_current_hours_end() {
        let now = t("2026-11-26T16:42:10Z");
        let r = MetricsQuery::default().range(now).expect("range");
        assert_eq!(
            (r.from, r.to, r.interval),
            (
                t("2026-11-25T17:00:00Z"),
                t("2026-11-26T17:00:00Z"),
                Interval::Hour
            )
        );
        let by_day = MetricsQuery {
            interval: Some(Interval::Day),
            ..MetricsQuery::default()
        };
        let r = by_day.range(now).expect("range");
        assert_eq!(
            (r.from, r.to),
            (t("2026-10-28T00:00:00Z"), t("2026-11-27T00:00:00Z"))
        );
    }

    #[test]
    fn a_metrics_range_starts_at_its_periods_start_and_is_refused_backwards_or_too_long() {
        let now = t("2026-11-26T16:42:10Z");
        let given = MetricsQuery {
            from: Some(t("2026-11-26T09:30:00Z")),
            to: Some(t("2026-11-26T12:00:00Z")),
            interval: None,
        };
        assert_eq!(
            given.range(now).map(|r| r.from),
            Ok(t("2026-11-26T09:00:00Z"))
        );
        let backwards = MetricsQuery {
            from: Some(t("2026-11-26T12:00:00Z")),
            to: Some(t("2026-11-26T12:00:00Z")),
            interval: None,
        };
        let e = backwards.range(now).expect_err("empty");
        assert_eq!(e.details["parameter"], "from");
        let long = MetricsQuery {
            from: Some(t("2026-01-01T00:00:00Z")),
            ..MetricsQuery::default()
        };
        let e = long.range(now).expect_err("too long by hour");
        assert!(e.message.contains("2208 hours"), "{}", e.message);
        let by_day = MetricsQuery {
            interval: Some(Interval::Day),
            ..long
        };
        assert!(by_day.range(now).is_ok());
    }
}
