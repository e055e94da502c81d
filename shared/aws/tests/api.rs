//! The API function's handlers on the emulators: `eventflow_api::http::router` over
//! `AwsTenants`, driven in-process with real API Gateway HTTP API (payload 2.0) events
//! (`fixtures/apigw-v2-request.json`, from aws_lambda_events' examples) turned into requests by
//! `lambda_http`, the way the API function receives them. DynamoDB on moto, SQS on LocalStack.

// The handler futures nest the SDK's deeply; their layout needs more than the default 128.
#![recursion_limit = "256"]

// Only the resources of `support` are used here, not its event-source emulator.
#[allow(dead_code)]
mod support;

use std::sync::Arc;

use axum::Router;
use eventflow_api::tenant::NewKey;
use eventflow_aws::dynamo::{DynamoStore, SystemClock};
use eventflow_aws::host::Host;
use eventflow_aws::lambda;
use eventflow_aws::messages::TaskMessage;
use eventflow_aws::plane::AwsTenants;
use eventflow_engine::RunStatus;
use eventflow_ports::{ExecutionStore, TenantRecord, TenantStore};
use serde_json::{Value, json};
use support::env::{TestEnv, test_env};
use tower::ServiceExt;

const TENANT: &str = "acme";

/// One test's table, queues, host and API.
struct Api {
    env: TestEnv,
    host: Host<DynamoStore>,
    router: Router,
    key: NewKey,
}

async fn api() -> Api {
    let env = test_env(3).await;
    let host = lambda::host_with(
        env.dynamo(),
        env.sqs(),
        &env.table,
        env.urls.clone(),
        Arc::new(SystemClock),
    );
    let key = eventflow_api::tenant::generate(TENANT).expect("key");
    host.store()
        .create_tenant(&TenantRecord {
            tenant: TENANT.to_owned(),
            key_hash: key.hash.clone(),
            created_at: host.now(),
            webhook_secret: key.webhook_secret.clone(),
        })
        .await
        .expect("tenant");
    let tenants = Arc::new(AwsTenants::new(host.clone()));
    Api {
        env,
        host,
        router: eventflow_api::http::router(tenants),
        key,
    }
}

impl Api {
    /// The fixture event, as API Gateway would send `method path` (with its query string, if
    /// any) with these headers and body.
    fn event(method: &str, path: &str, headers: &[(&str, String)], body: &str) -> String {
        let mut event: Value =
            serde_json::from_str(include_str!("fixtures/apigw-v2-request.json")).expect("fixture");
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        event["rawQueryString"] = json!(query);
        if !query.is_empty() {
            let params: serde_json::Map<String, Value> = query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_owned(), json!(v)))
                .collect();
            event["queryStringParameters"] = Value::Object(params);
        }
        event["rawPath"] = json!(path);
        event["requestContext"]["http"]["method"] = json!(method);
        event["requestContext"]["http"]["path"] = json!(path);
        event["pathParameters"] = json!({"proxy": path.trim_start_matches("/v1/")});
        let h = event["headers"].as_object_mut().expect("headers");
        h.remove("authorization");
        h.insert("content-length".into(), json!(body.len().to_string()));
        for (name, value) in headers {
            h.insert((*name).to_owned(), json!(value));
        }
        event["body"] = json!(body);
        event.to_string()
    }

    /// Sends an API Gateway event through lambda_http's request conversion and the router.
    async fn send(&self, event: &str) -> (u16, Value) {
        let request = lambda_http::request::from_str(event).expect("an API Gateway v2 event");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("a JSON body")
        };
        (status, body)
    }

    /// `POST path` with the tenant's key.
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let auth = [("authorization", format!("Bearer {}", self.key.key))];
        self.send(&Self::event("POST", path, &auth, &body.to_string()))
            .await
    }

    /// `GET path` with the tenant's key.
    async fn get(&self, path: &str) -> (u16, Value) {
        let auth = [("authorization", format!("Bearer {}", self.key.key))];
        self.send(&Self::event("GET", path, &auth, "")).await
    }

    /// A webhook delivery signed with the tenant's secret.
    async fn deliver(&self, hook: &str, delivery: &str, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let signature = eventflow_api::webhook::sign(
            self.key.webhook_secret.as_bytes(),
            timestamp,
            body.as_bytes(),
        );
        let headers = [
            (eventflow_api::http::TENANT_HEADER, TENANT.to_owned()),
            (
                eventflow_api::webhook::TIMESTAMP_HEADER,
                timestamp.to_string(),
            ),
            (eventflow_api::webhook::SIGNATURE_HEADER, signature),
            (eventflow_api::webhook::DELIVERY_HEADER, delivery.to_owned()),
        ];
        self.send(&Self::event(
            "POST",
            &format!("/hooks/{hook}"),
            &headers,
            &body,
        ))
        .await
    }

    /// The messages waiting on the task queue of `family` (three receives of up to ten; they
    /// stay invisible for 30 s after).
    async fn tasks(&self, family: &str) -> Vec<TaskMessage> {
        let url = self.env.urls.tasks.get(family).expect("queue");
        let sqs = aws_sdk_sqs::Client::new(&self.env.config);
        let mut out = Vec::new();
        for _ in 0..3 {
            let received = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(30)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            for m in received.messages() {
                let body = m.body().expect("a body");
                out.push(serde_json::from_str(body).expect("a task message"));
            }
        }
        out
    }
}

/// One records.put step: its first task goes to the records queue.
fn signup() -> Value {
    json!({
        "id": "signup", "name": "Signup", "kind": "custom",
        "input_schema": {"type": "object", "required": ["email"],
                         "properties": {"email": {"type": "string"}}},
        "triggers": [{"type": "webhook", "name": "signup"}],
        "steps": [
            {"id": "save", "action": "records.put",
             "input": {"collection": "attendees", "key": "${input.email}",
                       "record": {"registered": true}}}
        ]
    })
}

fn task_of(message: &TaskMessage) -> (&str, &str) {
    match message {
        TaskMessage::Task {
            tenant,
            execution_id,
            ..
        } => (tenant, execution_id),
        TaskMessage::Timer { .. } => panic!("a timer, not a task: {message:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_through_an_api_gateway_event_writes_its_checkpoint_and_sends_its_first_task() {
    let api = api().await;

    let (status, body) = api.post("/v1/workflows", signup()).await;
    assert_eq!(status, 201, "{body:#}");
    assert_eq!(body["number"], 1, "{body:#}");

    let (status, body) = api
        .post(
            "/v1/workflows/signup/executions",
            json!({"input": {"email": "ada@example.com"}, "idempotency_key": "first"}),
        )
        .await;
    assert_eq!(status, 201, "{body:#}");
    assert_eq!(body["created"], true, "{body:#}");
    let id = body["execution_id"]
        .as_str()
        .expect("an execution id")
        .to_owned();

    let store = api.host.store().for_tenant(TENANT);
    let cp = store
        .checkpoint(&id)
        .await
        .expect("read")
        .expect("the checkpoint is in DynamoDB");
    assert_eq!(cp.workflow_id, "signup");
    assert_eq!(cp.status, RunStatus::Running);
    assert_eq!(cp.input, json!({"email": "ada@example.com"}));

    let tasks = api.tasks("records").await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(task_of(&tasks[0]), (TENANT, id.as_str()));
    assert!(
        api.tasks("flow").await.is_empty(),
        "nothing on another queue"
    );

    // The same idempotency key finds the same run and sends nothing more.
    let (status, body) = api
        .post(
            "/v1/workflows/signup/executions",
            json!({"input": {"email": "ada@example.com"}, "idempotency_key": "first"}),
        )
        .await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["execution_id"], id.as_str(), "{body:#}");
    assert_eq!(body["created"], false, "{body:#}");

    // The workflow's figures count one start: the repeated key started nothing.
    let (status, body) = api.get("/v1/workflows/signup/metrics").await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["total"]["RunStarted"]["count"], 1, "{body:#}");
    assert_eq!(body["interval"], "hour", "{body:#}");
    assert_eq!(
        body["periods"].as_array().map(Vec::len),
        Some(1),
        "{body:#}"
    );
    let (status, body) = api
        .get("/v1/workflows/signup/metrics?interval=day&from=2026-01-01T00:00:00Z")
        .await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["from"], "2026-01-01T00:00:00Z", "{body:#}");
    assert_eq!(body["total"]["RunStarted"]["sum"], 1.0, "{body:#}");
    // A range the wrong way round, a bad interval, an unknown workflow: refused.
    let (status, body) = api
        .get("/v1/workflows/signup/metrics?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z")
        .await;
    assert_eq!(
        (status, &body["details"]["parameter"]),
        (400, &json!("from")),
        "{body:#}"
    );
    let (status, body) = api.get("/v1/workflows/signup/metrics?interval=week").await;
    assert_eq!(status, 400, "{body:#}");
    let (status, body) = api.get("/v1/workflows/nope/metrics").await;
    assert_eq!(status, 404, "{body:#}");

    // Another tenant's key does not open this tenant's runs.
    let (status, _) = api
        .send(&Api::event(
            "POST",
            "/v1/workflows/signup/executions",
            &[("authorization", "Bearer efk_other_0000".to_owned())],
            "{}",
        ))
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_through_an_api_gateway_event_starts_one_run_and_its_redelivery_none() {
    let api = api().await;
    let (status, body) = api.post("/v1/workflows", signup()).await;
    assert_eq!(status, 201, "{body:#}");

    let payload = json!({"email": "grace@example.com"});
    let (status, body) = api.deliver("signup", "dlv-1", &payload).await;
    assert_eq!(status, 202, "{body:#}");
    let started = body["executions"].as_array().expect("executions");
    assert_eq!(started.len(), 1, "{body:#}");
    let id = started[0]["execution_id"].as_str().expect("id").to_owned();

    let (status, body) = api.deliver("signup", "dlv-1", &payload).await;
    assert_eq!(status, 409, "{body:#}");
    assert_eq!(body["code"], "conflict", "{body:#}");

    let store = api.host.store().for_tenant(TENANT);
    let runs = store.list(None, Some("signup")).await.expect("list");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].execution_id, id);
    let tasks = api.tasks("records").await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(task_of(&tasks[0]), (TENANT, id.as_str()));

    // A wrong signature is refused and starts nothing.
    let body = payload.to_string();
    let headers = [
        (eventflow_api::http::TENANT_HEADER, TENANT.to_owned()),
        (
            eventflow_api::webhook::TIMESTAMP_HEADER,
            chrono::Utc::now().timestamp().to_string(),
        ),
        (eventflow_api::webhook::SIGNATURE_HEADER, "v1=00".to_owned()),
        (eventflow_api::webhook::DELIVERY_HEADER, "dlv-2".to_owned()),
    ];
    let (status, _) = api
        .send(&Api::event("POST", "/hooks/signup", &headers, &body))
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        store.list(None, Some("signup")).await.expect("list").len(),
        1
    );
}

/// Waits a day, then writes a note; `extra` adds a last step (a version 2 to migrate to).
fn holder(extra: bool) -> Value {
    let mut def = json!({
        "id": "holder", "name": "Holder", "kind": "custom",
        "input_schema": {"type": "object", "required": ["event_id"],
                         "properties": {"event_id": {"type": "string"}}},
        "triggers": [{"type": "cron", "expression": "0 9 * * *",
                      "time_zone": "Europe/Berlin", "input": {"event_id": "daily"}}],
        "steps": [
            {"id": "hold", "wait": {"duration": "1d"}},
            {"id": "note", "action": "records.put", "depends_on": ["hold"],
             "input": {"collection": "notes", "key": "${input.event_id}",
                       "record": {"seen": true}}}
        ]
    });
    if extra {
        def["steps"].as_array_mut().expect("steps").push(json!(
            {"id": "tag", "action": "records.put", "depends_on": ["note"],
             "input": {"collection": "tags", "key": "${input.event_id}",
                       "record": {"tagged": true}}}
        ));
    }
    def
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_requests_migrations_and_schedules_through_api_gateway_events() {
    let api = api().await;
    let (status, body) = api.post("/v1/workflows", holder(false)).await;
    assert_eq!(status, 201, "{body:#}");
    let (status, body) = api
        .post(
            "/v1/workflows/holder/executions",
            json!({"input": {"event_id": "evt-1"}}),
        )
        .await;
    assert_eq!(status, 201, "{body:#}");
    let id = body["execution_id"].as_str().expect("id").to_owned();

    // Version 2 adds a step after the run's frontier: the run can move, and a dry run says so
    // without moving it.
    let (status, body) = api
        .post("/v1/workflows/holder/versions", holder(true))
        .await;
    assert_eq!(status, 201, "{body:#}");
    assert_eq!(body["number"], 2, "{body:#}");
    let migrate = format!("/v1/executions/{id}/migrate");
    let (status, body) = api.post(&migrate, json!({"to": 2, "dry_run": true})).await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["can_move"], true, "{body:#}");
    assert_eq!(body["moved"], false, "{body:#}");
    let (_, run) = api.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(run["version"], 1, "{run:#}");

    let (status, body) = api.post(&migrate, json!({"to": 2})).await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["moved"], true, "{body:#}");
    let (status, run) = api.get(&format!("/v1/executions/{id}")).await;
    assert_eq!(status, 200, "{run:#}");
    assert_eq!(run["version"], 2, "{run:#}");
    assert!(run["steps"].get("tag").is_some(), "{run:#}");
    assert_eq!(
        run["input"],
        json!({"event_id": "evt-1"}),
        "the input is kept"
    );

    // Operator requests apply at once; one that changes nothing is a conflict.
    let pause = format!("/v1/executions/{id}/pause");
    let (status, body) = api.post(&pause, json!({})).await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["status"], "paused", "{body:#}");
    let (status, body) = api.post(&pause, json!({})).await;
    assert_eq!(status, 409, "{body:#}");
    let (status, body) = api
        .post(&format!("/v1/executions/{id}/resume"), json!({}))
        .await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["status"], "running", "{body:#}");

    // Schedules: the active version's cron trigger, paused and resumed by its record.
    let (status, body) = api.get("/v1/schedules").await;
    assert_eq!(status, 200, "{body:#}");
    let schedules = body["schedules"].as_array().expect("schedules");
    assert_eq!(schedules.len(), 1, "{body:#}");
    assert_eq!(schedules[0]["id"], "holder.0", "{body:#}");
    assert_eq!(schedules[0]["kind"], "cron", "{body:#}");
    assert_eq!(schedules[0]["paused"], false, "{body:#}");
    assert!(schedules[0]["next_due"].is_string(), "{body:#}");
    let (status, body) = api.post("/v1/schedules/holder.0/pause", json!({})).await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["paused"], true, "{body:#}");
    let (_, body) = api.get("/v1/schedules").await;
    assert_eq!(body["schedules"][0]["paused"], true, "{body:#}");
    let (status, body) = api.post("/v1/schedules/holder.0/resume", json!({})).await;
    assert_eq!(status, 200, "{body:#}");
    assert_eq!(body["paused"], false, "{body:#}");
    let (status, _) = api.post("/v1/schedules/holder.9/pause", json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_with_dependencies_is_refused_by_path_and_nothing_is_published() {
    // Given a workflow that would wait for the signup of the same attendee
    let api = api().await;
    let mut welcome = signup();
    welcome["id"] = json!("welcome");
    welcome["correlation_key"] = json!("${input.email}");
    welcome["dependencies"] = json!([{"workflow": "signup", "type": "blocking"}]);
    // When it is published to the serverless bundle
    let (status, body) = api.post("/v1/workflows", welcome).await;
    // Then it is refused, naming the field and what to do, and no version exists
    assert_eq!(status, 400, "{body:#}");
    let problems = body["details"]["problems"].to_string();
    assert!(problems.contains("$.dependencies"), "{body:#}");
    assert!(problems.contains("workflow.start"), "{body:#}");
    let (status, _) = api.get("/v1/workflows/welcome").await;
    assert_eq!(status, 404);
}
