//! The HTTP API, written once over [`Tenants`] and [`ControlPlane`]: `eventflow serve` runs it
//! on 127.0.0.1, the Lambda API function through `lambda_http`.
//!
//! Every `/v1` request carries `Authorization: Bearer efk_...`; the key picks the tenant, and
//! the handler sees only that tenant's plane. Errors are JSON `{code, message, details}` with a
//! 4xx status (503 when the store cannot take the request now). A body is JSON, at most
//! [`MAX_BODY`] bytes and [`MAX_DEPTH`] levels deep, and an unknown field is refused by name.
//! A refused request changes nothing: every check runs before the plane is called.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use eventflow_engine::{Definition, EventKind};
use eventflow_ports::{Alias, Canary};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::plane::{
    ApiError, ControlPlane, ErrorKind, ExecutionFilter, MetricsQuery, MigrateRequest, MigrateScope,
    StartRequest, Tenants,
};
use crate::{tenant, webhook};

/// The largest request body accepted.
pub const MAX_BODY: usize = 256 * 1024;
/// The deepest nesting of arrays and objects accepted in a body.
pub const MAX_DEPTH: usize = 64;
/// The header naming the tenant of a webhook delivery.
pub const TENANT_HEADER: &str = "x-eventflow-tenant";

/// The state every handler shares.
#[derive(Clone)]
pub struct App {
    tenants: Arc<dyn Tenants>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::invalid(format!("the path is not valid: {}", e.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::invalid(format!(
            "the query string is not valid: {}; filters are workflow, status, version and limit",
            e.body_text()
        ))
    }
}

type Reply = Result<Response, ApiError>;

fn ok(status: StatusCode, body: impl serde::Serialize) -> Reply {
    Ok((status, axum::Json(body)).into_response())
}

/// The plane of the tenant whose API key the request carries.
pub struct Scope(pub Arc<dyn ControlPlane>);

impl std::fmt::Debug for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope").finish_non_exhaustive()
    }
}

impl FromRequestParts<App> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let unauthorized = |e: tenant::KeyError| {
            ApiError::new(ErrorKind::Unauthorized, e.to_string())
                .with(json!({"header": "authorization"}))
        };
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(tenant::KeyError::Malformed)
            .map_err(unauthorized)?;
        let name = tenant::tenant_of(presented).map_err(unauthorized)?;
        // An unknown tenant and a wrong key get the same answer.
        let record = app
            .tenants
            .tenant(name)
            .await?
            .ok_or(tenant::KeyError::Invalid)
            .map_err(unauthorized)?;
        tenant::verify(presented, &record.key_hash).map_err(unauthorized)?;
        Ok(Scope(app.tenants.plane(name).await?))
    }
}

/// A JSON body: within the size and depth limits, no unknown field, every problem named by
/// its path. An empty body reads as `{}`.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<App> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &App) -> Result<Self, ApiError> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let essence = v.split(';').next().unwrap_or("").trim();
                essence.eq_ignore_ascii_case("application/json")
                    || essence.to_ascii_lowercase().ends_with("+json")
            });
        let bytes = read_body(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return parse(b"{}").map(Body);
        }
        if json_type != Some(true) {
            return Err(ApiError::new(
                ErrorKind::UnsupportedMediaType,
                "the body must be JSON: send 'Content-Type: application/json'",
            ));
        }
        parse(&bytes).map(Body)
    }
}

async fn read_body(req: Request) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorKind::TooLarge,
                format!(
                    "the body is larger than {MAX_BODY} bytes (256 KiB); send less, or split it"
                ),
            )
            .with(json!({"limit_bytes": MAX_BODY}))
        })
}

/// Parses a JSON body after checking its depth (serde's own limit is deeper and its error
/// less clear).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let depth = depth(bytes);
    if depth > MAX_DEPTH {
        return Err(ApiError::invalid(format!(
            "the body nests {depth} levels deep; at most {MAX_DEPTH} are accepted"
        ))
        .with(json!({"limit_depth": MAX_DEPTH})));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = format!("$.{}", e.path())
            .replace("$..", "$.")
            .replace(".?", "");
        let path = if path == "$." { "$".to_owned() } else { path };
        ApiError::invalid(format!("{path}: {}", e.inner())).with(json!({"path": path}))
    })
}

/// The deepest nesting of arrays and objects in a JSON text (strings skipped).
fn depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn number(text: &str, what: &str) -> Result<u32, ApiError> {
    text.parse().map_err(|_| {
        ApiError::invalid(format!(
            "`{text}` is not a {what}: write a whole number like 2"
        ))
    })
}

// ---- Workflows and versions -------------------------------------------------------------------

async fn create_workflow(Scope(p): Scope, Body(def): Body<Definition>) -> Reply {
    ok(StatusCode::CREATED, p.create_workflow(def).await?)
}

async fn list_workflows(Scope(p): Scope) -> Reply {
    ok(StatusCode::OK, json!({"workflows": p.workflows().await?}))
}

async fn get_workflow(Scope(p): Scope, path: Result<Path<String>, PathRejection>) -> Reply {
    let Path(id) = path?;
    ok(StatusCode::OK, p.workflow(&id).await?)
}

async fn publish(
    Scope(p): Scope,
    path: Result<Path<String>, PathRejection>,
    Body(def): Body<Definition>,
) -> Reply {
    let Path(id) = path?;
    if def.id != id {
        return Err(ApiError::invalid(format!(
            "$.id: the definition is `{}` but the path names `{id}`; publish it under /v1/workflows/{}/versions",
            def.id, def.id
        ))
        .with(json!({"path": "$.id"})));
    }
    let (view, created) = p.publish(def).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    ok(status, view)
}

async fn list_versions(Scope(p): Scope, path: Result<Path<String>, PathRejection>) -> Reply {
    let Path(id) = path?;
    ok(StatusCode::OK, json!({"versions": p.versions(&id).await?}))
}

async fn get_version(
    Scope(p): Scope,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Reply {
    let Path((id, n)) = path?;
    ok(
        StatusCode::OK,
        p.version(&id, number(&n, "version number")?).await?,
    )
}

async fn deprecate(Scope(p): Scope, path: Result<Path<(String, String)>, PathRejection>) -> Reply {
    let Path((id, n)) = path?;
    ok(
        StatusCode::OK,
        p.deprecate(&id, number(&n, "version number")?).await?,
    )
}

async fn retire(Scope(p): Scope, path: Result<Path<(String, String)>, PathRejection>) -> Reply {
    let Path((id, n)) = path?;
    ok(
        StatusCode::OK,
        p.retire(&id, number(&n, "version number")?).await?,
    )
}

async fn migrate_version(
    Scope(p): Scope,
    path: Result<Path<(String, String)>, PathRejection>,
    Body(req): Body<MigrateRequest>,
) -> Reply {
    let Path((workflow, n)) = path?;
    let version = number(&n, "version number")?;
    let results = p
        .migrate(MigrateScope::Version { workflow, version }, req)
        .await?;
    ok(StatusCode::OK, json!({"executions": results}))
}

async fn get_alias(Scope(p): Scope, path: Result<Path<String>, PathRejection>) -> Reply {
    let Path(id) = path?;
    ok(StatusCode::OK, p.alias(&id).await?)
}

/// `PUT .../alias`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasRequest {
    active: u32,
    #[serde(default)]
    canary: Option<Canary>,
}

async fn set_alias(
    Scope(p): Scope,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<AliasRequest>,
) -> Reply {
    let Path(id) = path?;
    let alias = Alias {
        workflow_id: id,
        active: req.active,
        canary: req.canary,
    };
    ok(StatusCode::OK, p.set_alias(alias).await?)
}

// ---- Executions -------------------------------------------------------------------------------

async fn start(
    Scope(p): Scope,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<StartRequest>,
) -> Reply {
    let Path(id) = path?;
    let started = p.start(&id, req).await?;
    let status = if started.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    ok(status, started)
}

async fn list_executions(
    Scope(p): Scope,
    query: Result<Query<ExecutionFilter>, QueryRejection>,
) -> Reply {
    let Query(filter) = query?;
    ok(
        StatusCode::OK,
        json!({"executions": p.executions(filter).await?}),
    )
}

async fn workflow_metrics(
    State(app): State<App>,
    Scope(p): Scope,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<MetricsQuery>, QueryRejection>,
) -> Reply {
    let Path(workflow) = path?;
    let Query(query) = query?;
    let range = query.range(app.tenants.now())?;
    ok(StatusCode::OK, p.metrics(&workflow, range).await?)
}

async fn get_execution(Scope(p): Scope, path: Result<Path<String>, PathRejection>) -> Reply {
    let Path(id) = path?;
    ok(StatusCode::OK, p.execution(&id).await?)
}

async fn history(Scope(p): Scope, path: Result<Path<String>, PathRejection>) -> Reply {
    let Path(id) = path?;
    ok(StatusCode::OK, json!({"history": p.history(&id).await?}))
}

/// A body with no fields (pause, resume): `{}` or nothing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelRequest {
    /// Undo what the run did (default) or stop where it stands.
    #[serde(default = "yes")]
    compensate: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepRequest {
    step: String,
    /// For skip: the output the skipped step stands in with.
    #[serde(default)]
    output: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackRequest {
    /// Undo only what follows this step, then pause there; without it, undo everything.
    #[serde(default)]
    to: Option<String>,
}

async fn operate(p: &dyn ControlPlane, id: &str, event: EventKind) -> Reply {
    ok(StatusCode::OK, p.operate(id, event).await?)
}

async fn pause(
    Scope(p): Scope,
    path: Result<Path<String>, PathRejection>,
    Body(Empty {}): Body<Empty>,
) -> Reply {
    let Path(id) = path?;
    operate(p.as_ref(), &id, EventKind::Pause).await
}

async fn resume(
    Scope(p): Scope,
    path: Result<Path<String>, PathRejection>,
    Body(Empty {}): Body<Empty>,
) -> Reply {
    let Path(id) = path?;
    operate(p.as_ref(), &id, EventKind::Resume).await
}

async fn cancel(
    Scope(p): Scope,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<CancelRequest>,
) -> Reply {
    let Path(id) = path?;
    let event = EventKind::Cancel {
        compensate: req.compensate,
    };
    operate(p.as_ref(), &id, event).await
}

async fn retry(
    Scope(p): Scope,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<StepRequest>,
) -> Reply {
    let Path(id) = path?;
    if req.output.is_some() {
        return Err(ApiError::invalid(
            "$.output: a retried step makes its own output; `output` belongs to skip",
        )
        .with(json!({"path": "$.output"})));
    }
    operate(p.as_ref(), &id, EventKind::RetryStep { step: req.step }).await
}

async fn skip(
    Scope(p): Scope,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<StepRequest>,
) -> Reply {
    let Path(id) = path?;
    let event = EventKind::SkipStep {
        step: req.step,
        output: req.output,
    };
    operate(p.as_ref(), &id, event).await
}

async fn rollback(
    Scope(p): Scope,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<RollbackRequest>,
) -> Reply {
    let Path(id) = path?;
    operate(p.as_ref(), &id, EventKind::Rollback { to: req.to }).await
}

async fn migrate_execution(
    Scope(p): Scope,
    path: Result<Path<String>, PathRejection>,
    Body(req): Body<MigrateRequest>,
) -> Reply {
    let Path(id) = path?;
    let mut results = p.migrate(MigrateScope::Execution(id), req).await?;
    match results.pop() {
        Some(one) => ok(StatusCode::OK, one),
        None => Err(ApiError::not_found("the run was not found")),
    }
}

// ---- Schedules, records, hooks ----------------------------------------------------------------

async fn list_schedules(Scope(p): Scope) -> Reply {
    ok(StatusCode::OK, json!({"schedules": p.schedules().await?}))
}

async fn pause_schedule(
    Scope(p): Scope,
    path: Result<Path<String>, PathRejection>,
    Body(Empty {}): Body<Empty>,
) -> Reply {
    let Path(id) = path?;
    ok(StatusCode::OK, p.pause_schedule(&id).await?)
}

async fn resume_schedule(
    Scope(p): Scope,
    path: Result<Path<String>, PathRejection>,
    Body(Empty {}): Body<Empty>,
) -> Reply {
    let Path(id) = path?;
    ok(StatusCode::OK, p.resume_schedule(&id).await?)
}

fn user_collection(collection: &str) -> Result<(), ApiError> {
    if collection.starts_with('_') {
        return Err(ApiError::not_found(format!(
            "there is no collection `{collection}`"
        )));
    }
    Ok(())
}

async fn get_record(Scope(p): Scope, path: Result<Path<(String, String)>, PathRejection>) -> Reply {
    let Path((collection, key)) = path?;
    user_collection(&collection)?;
    ok(StatusCode::OK, p.record(&collection, &key).await?)
}

async fn put_record(
    Scope(p): Scope,
    path: Result<Path<(String, String)>, PathRejection>,
    Body(value): Body<Value>,
) -> Reply {
    let Path((collection, key)) = path?;
    user_collection(&collection)?;
    if !value.is_object() {
        return Err(ApiError::invalid("$: a record is a JSON object").with(json!({"path": "$"})));
    }
    let created = p.put_record(&collection, &key, value.clone()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    ok(status, value)
}

async fn delete_record(
    Scope(p): Scope,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Reply {
    let Path((collection, key)) = path?;
    user_collection(&collection)?;
    p.delete_record(&collection, &key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /hooks/{name}`: a signed delivery from another system. The tenant is named by
/// `X-Eventflow-Tenant`; its webhook secret checks the signature. An unknown tenant and a bad
/// signature get the same answer.
async fn hook(
    State(app): State<App>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    request: Request,
) -> Reply {
    let Path(name) = path?;
    let text = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    let refused = |e: webhook::WebhookError| {
        ApiError::new(ErrorKind::Unauthorized, e.to_string()).with(json!({"hook": name}))
    };
    let tenant = text(TENANT_HEADER).ok_or_else(|| {
        ApiError::new(
            ErrorKind::Unauthorized,
            format!("the header {TENANT_HEADER} is missing; it names the tenant whose secret signed the delivery"),
        )
    })?;
    let body = read_body(request).await?;
    let record = app
        .tenants
        .tenant(tenant)
        .await?
        .filter(|r| !r.webhook_secret.is_empty());
    // A made-up secret for an unknown tenant: the same work and the same refusal.
    let secret = record
        .as_ref()
        .map_or("unknown tenant", |r| r.webhook_secret.as_str());
    let signed = webhook::Headers {
        timestamp: text(webhook::TIMESTAMP_HEADER),
        signature: text(webhook::SIGNATURE_HEADER),
        delivery: text(webhook::DELIVERY_HEADER),
    };
    let now = app.tenants.now().timestamp();
    let delivery = webhook::verify(secret.as_bytes(), signed, &body, now).map_err(refused)?;
    if record.is_none() {
        return Err(refused(webhook::WebhookError::BadSignature));
    }
    if delivery.is_empty() || delivery.len() > 128 {
        return Err(ApiError::invalid(format!(
            "the header {} must hold 1 to 128 characters",
            webhook::DELIVERY_HEADER
        )));
    }
    let input: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse(&body)?
    };
    let plane = app.tenants.plane(tenant).await?;
    ok(
        StatusCode::ACCEPTED,
        plane.hook(&name, delivery, input).await?,
    )
}

async fn health() -> Reply {
    ok(StatusCode::OK, json!({"status": "ok"}))
}

async fn no_route() -> ApiError {
    ApiError::not_found("there is no such path; the API's paths are listed in openapi.yaml")
}

async fn wrong_method() -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        "this path does not take that method; see openapi.yaml",
    )
}

/// Every route: method, path and handler. The router is built from this table, and the
/// OpenAPI document is checked against it.
fn table() -> Vec<(Method, &'static str, MethodRouter<App>)> {
    vec![
        (Method::GET, "/health", get(health)),
        (Method::POST, "/v1/workflows", post(create_workflow)),
        (Method::GET, "/v1/workflows", get(list_workflows)),
        (Method::GET, "/v1/workflows/{workflow}", get(get_workflow)),
        (
            Method::GET,
            "/v1/workflows/{workflow}/versions",
            get(list_versions),
        ),
        (
            Method::POST,
            "/v1/workflows/{workflow}/versions",
            post(publish),
        ),
        (
            Method::GET,
            "/v1/workflows/{workflow}/versions/{version}",
            get(get_version),
        ),
        (
            Method::POST,
            "/v1/workflows/{workflow}/versions/{version}/deprecate",
            post(deprecate),
        ),
        (
            Method::POST,
            "/v1/workflows/{workflow}/versions/{version}/retire",
            post(retire),
        ),
        (
            Method::POST,
            "/v1/workflows/{workflow}/versions/{version}/migrate",
            post(migrate_version),
        ),
        (
            Method::GET,
            "/v1/workflows/{workflow}/alias",
            get(get_alias),
        ),
        (
            Method::PUT,
            "/v1/workflows/{workflow}/alias",
            put(set_alias),
        ),
        (
            Method::POST,
            "/v1/workflows/{workflow}/executions",
            post(start),
        ),
        (
            Method::GET,
            "/v1/workflows/{workflow}/metrics",
            get(workflow_metrics),
        ),
        (Method::GET, "/v1/executions", get(list_executions)),
        (
            Method::GET,
            "/v1/executions/{execution}",
            get(get_execution),
        ),
        (
            Method::GET,
            "/v1/executions/{execution}/history",
            get(history),
        ),
        (
            Method::POST,
            "/v1/executions/{execution}/pause",
            post(pause),
        ),
        (
            Method::POST,
            "/v1/executions/{execution}/resume",
            post(resume),
        ),
        (
            Method::POST,
            "/v1/executions/{execution}/cancel",
            post(cancel),
        ),
        (
            Method::POST,
            "/v1/executions/{execution}/retry",
            post(retry),
        ),
        (Method::POST, "/v1/executions/{execution}/skip", post(skip)),
        (
            Method::POST,
            "/v1/executions/{execution}/rollback",
            post(rollback),
        ),
        (
            Method::POST,
            "/v1/executions/{execution}/migrate",
            post(migrate_execution),
        ),
        (Method::GET, "/v1/schedules", get(list_schedules)),
        (
            Method::POST,
            "/v1/schedules/{schedule}/pause",
            post(pause_schedule),
        ),
        (
            Method::POST,
            "/v1/schedules/{schedule}/resume",
            post(resume_schedule),
        ),
        (
            Method::GET,
            "/v1/records/{collection}/{key}",
            get(get_record),
        ),
        (
            Method::PUT,
            "/v1/records/{collection}/{key}",
            put(put_record),
        ),
        (
            Method::DELETE,
            "/v1/records/{collection}/{key}",
            delete(delete_record),
        ),
        (Method::POST, "/hooks/{name}", post(hook)),
    ]
}

/// The method and path of every route served.
pub fn routes() -> Vec<(Method, &'static str)> {
    table().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// The API as an axum router.
pub fn router(tenants: Arc<dyn Tenants>) -> Router {
    // One method router per path, with the methods of the table merged into it.
    let mut paths: Vec<(&'static str, MethodRouter<App>)> = Vec::new();
    for (_, path, handler) in table() {
        match paths.iter_mut().find(|(p, _)| *p == path) {
            Some((_, methods)) => *methods = std::mem::take(methods).merge(handler),
            None => paths.push((path, handler)),
        }
    }
    let mut router = Router::new();
    for (path, methods) in paths {
        router = router.route(path, methods.fallback(wrong_method));
    }
    router.fallback(no_route).with_state(App { tenants })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert_eq!(depth(br#"{"a": [1, {"b": "[[[{{"}]}"#), 3);
        assert_eq!(depth(br#""\"[" "#), 0);
        assert_eq!(depth(b"[[[]]]"), 3);
    }

    #[test]
    fn a_body_too_deep_or_with_an_unknown_field_is_refused_with_its_path() {
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        let e = parse::<Value>(deep.as_bytes()).expect_err("too deep");
        assert!(e.message.contains("65 levels"), "{}", e.message);
        let e = parse::<StartRequest>(br#"{"input": {}, "idempotency": "k"}"#).expect_err("field");
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.message.contains("idempotency"), "{}", e.message);
        let e =
            parse::<MigrateRequest>(br#"{"to": 2, "mapping": {"renamed": 3}}"#).expect_err("type");
        assert_eq!(e.details["path"], "$.mapping.renamed", "{}", e.message);
    }

    #[test]
    fn each_route_is_in_the_table_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (m, p) in routes() {
            assert!(seen.insert((m.to_string(), p)), "{m} {p} twice");
        }
    }
}
