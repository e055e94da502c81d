//! The control plane as the HTTP layer sees it: one trait per host, scoped to a tenant.
//!
//! [`Tenants`] finds a tenant and hands out its [`ControlPlane`]; everything a request can
//! reach goes through that plane, so an object of another tenant is simply not there. The
//! embedded host implements it on the local runtime (`eventflow serve`); the AWS host on
//! DynamoDB and SQS. The HTTP handlers ([`crate::http`]) are written once, over these traits.

use std::sync::Arc;

use async_trait::async_trait;
use eventflow_engine::migrate::{Mapping, Reason, Summary};
use eventflow_engine::{Definition, EventKind, HistoryEntry, RunStatus, Timestamp};
use eventflow_ports::versions::VersionError;
use eventflow_ports::{
    Alias, ExecutionSummary, StoreError, TenantRecord, VersionRecord, VersionState,
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
