//! The HTTP API over real HTTP on 127.0.0.1 (a random port), served by the same router and
//! local control plane as `eventflow serve`, on a clock the tests move.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use eventflow_api::http::{self, TENANT_HEADER};
use eventflow_api::plane::Tenants;
use eventflow_api::{tenant, webhook};
use eventflow_local::LocalStore;
use eventflow_local::plane::{Host, LocalTenants};
use eventflow_local::runtime::RuntimeConfig;
use eventflow_ports::{Clock, TenantRecord, TenantStore};
use reqwest::Method;
use serde_json::{Value, json};

type Timestamp = DateTime<Utc>;

fn t(s: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(s)
        .expect("timestamp")
        .with_timezone(&Utc)
}

/// A clock the test moves.
#[derive(Debug)]
struct TestClock(Mutex<Timestamp>);

impl TestClock {
    fn set(&self, at: Timestamp) {
        *self.0.lock().expect("clock") = at;
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock")
    }
}

struct Server {
    base: String,
    client: reqwest::Client,
    root: LocalStore,
    tenants: Arc<LocalTenants>,
    clock: Arc<TestClock>,
    _dir: tempfile::TempDir,
}

/// A tenant's credentials.
struct Tenant {
    name: String,
    key: String,
    secret: String,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = LocalStore::open(dir.path()).expect("root store");
    let clock = Arc::new(TestClock(Mutex::new(t("2026-06-01T10:00:00Z"))));
    let host = Host {
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
        registry: eventflow_actions::registry(),
        actions: eventflow_actions::actions(reqwest::Client::new()),
        config: RuntimeConfig {
            workers: 8,
            batch: 256,
        },
    };
    let tenants = Arc::new(LocalTenants::new(root.clone(), host));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = http::router(Arc::clone(&tenants) as Arc<dyn Tenants>);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        base,
        client: reqwest::Client::new(),
        root,
        tenants,
        clock,
        _dir: dir,
    }
}

impl Server {
    async fn tenant(&self, name: &str) -> Tenant {
        let made = tenant::generate(name).expect("key");
        self.root
            .create_tenant(&TenantRecord {
                tenant: name.to_owned(),
                key_hash: made.hash.clone(),
                created_at: self.clock.now(),
                webhook_secret: made.webhook_secret.clone(),
            })
            .await
            .expect("tenant");
        Tenant {
            name: name.to_owned(),
            key: made.key,
            secret: made.webhook_secret,
        }
    }

    /// Sends a request as `who` (or with no key) and returns the status and JSON body.
    async fn call(
        &self,
        who: Option<&Tenant>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(who) = who {
            req = req.bearer_auth(&who.key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, body)
    }

    async fn get(&self, who: &Tenant, path: &str) -> (u16, Value) {
        self.call(Some(who), Method::GET, path, None).await
    }

    async fn post(&self, who: &Tenant, path: &str, body: Value) -> (u16, Value) {
        self.call(Some(who), Method::POST, path, Some(body)).await
    }

    /// Sends a signed webhook delivery.
    async fn deliver(
        &self,
        tenant: &str,
        secret: &str,
        hook: &str,
        delivery: &str,
        at: i64,
        body: &Value,
    ) -> (u16, Value) {
        let bytes = serde_json::to_vec(body).expect("json");
        let res = self
            .client
            .post(format!("{}/hooks/{hook}", self.base))
            .header(TENANT_HEADER, tenant)
            .header(webhook::TIMESTAMP_HEADER, at.to_string())
            .header(
                webhook::SIGNATURE_HEADER,
                webhook::sign(secret.as_bytes(), at, &bytes),
            )
            .header(webhook::DELIVERY_HEADER, delivery)
            .header("content-type", "application/json")
            .body(bytes)
            .send()
            .await
            .expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Waits (real time, at most 10 s) until the run has `status`.
    async fn until_status(&self, who: &Tenant, id: &str, status: &str) -> Value {
        for _ in 0..200 {
            let (_, run) = self.get(who, &format!("/v1/executions/{id}")).await;
            if run["status"] == status {
                return run;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let (_, run) = self.get(who, &format!("/v1/executions/{id}")).await;
        panic!("run {id} never reached {status}: {run:#}")
    }
}

/// A run that holds a day on a `wait`, then writes a record (undone on rollback).
fn holder(id: &str) -> Value {
    json!({
        "id": id, "name": "Holder", "kind": "custom",
        "input_schema": {"type": "object", "required": ["event_id"],
                         "properties": {"event_id": {"type": "string"}}},
        "steps": [
            {"id": "hold", "wait": {"duration": "1d"}},
            {"id": "note", "action": "records.put", "depends_on": ["hold"], "compensate": true,
             "input": {"collection": "notes", "key": "${input.event_id}",
                       "record": {"seen": true}}}
        ]
    })
}

/// Writes a record at once, then fails terminally and waits for an operator.
fn stuck(id: &str) -> Value {
    json!({
        "id": id, "name": "Stuck", "kind": "custom", "on_failure": "pause",
        "steps": [
            {"id": "write", "action": "records.put", "compensate": true,
             "input": {"collection": "notes", "key": "${input.key}", "record": {"n": 1}}},
            {"id": "boom", "action": "fail", "depends_on": ["write"],
             "input": {"message": "the venue API said no"}}
        ]
    })
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| {
                    x.get("execution_id")
                        .or_else(|| x.get("id"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn workflows_versions_and_the_alias_over_http() {
    let s = server().await;
    let acme = s.tenant("acme").await;

    // Given a new workflow, when it is created, then it is version 1 and listed.
    let (status, v1) = s.post(&acme, "/v1/workflows", holder("hold")).await;
    assert_eq!(status, 201, "{v1}");
    assert_eq!(
        (v1["number"].as_u64(), v1["state"].as_str()),
        (Some(1), Some("active"))
    );
    let (status, again) = s.post(&acme, "/v1/workflows", holder("hold")).await;
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("conflict")),
        "{again}"
    );
    let (_, list) = s.get(&acme, "/v1/workflows").await;
    assert_eq!(list["workflows"][0]["id"], "hold");
    assert_eq!(list["workflows"][0]["latest_version"], 1);

    // Publishing the same content returns version 1; a change makes version 2.
    let (status, same) = s
        .post(&acme, "/v1/workflows/hold/versions", holder("hold"))
        .await;
    assert_eq!((status, same["number"].as_u64()), (200, Some(1)));
    let mut changed = holder("hold");
    changed["name"] = json!("Holder, renamed");
    let (status, v2) = s.post(&acme, "/v1/workflows/hold/versions", changed).await;
    assert_eq!((status, v2["number"].as_u64()), (201, Some(2)), "{v2}");
    assert_ne!(v1["hash"], v2["hash"]);
    let (status, mismatch) = s
        .post(&acme, "/v1/workflows/other/versions", holder("hold"))
        .await;
    assert_eq!(status, 400);
    assert_eq!(mismatch["details"]["path"], "$.id");

    let (_, versions) = s.get(&acme, "/v1/workflows/hold/versions").await;
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(2));
    assert!(
        versions["versions"][0].get("definition").is_none(),
        "lists leave definitions out"
    );
    let (status, one) = s.get(&acme, "/v1/workflows/hold/versions/1").await;
    assert_eq!(
        (status, one["definition"]["name"].as_str()),
        (200, Some("Holder"))
    );
    let (status, bad) = s.get(&acme, "/v1/workflows/hold/versions/one").await;
    assert_eq!(status, 400, "{bad}");
    let (status, _) = s.get(&acme, "/v1/workflows/hold/versions/9").await;
    assert_eq!(status, 404);

    // The alias: the latest by default; set to 1 with version 2 as a 10% canary.
    let (_, alias) = s.get(&acme, "/v1/workflows/hold/alias").await;
    assert_eq!(alias["active"], 2);
    let (status, alias) = s
        .call(
            Some(&acme),
            Method::PUT,
            "/v1/workflows/hold/alias",
            Some(json!({"active": 1, "canary": {"version": 2, "weight": 10}})),
        )
        .await;
    assert_eq!(status, 200, "{alias}");
    assert_eq!(alias["canary"]["weight"], 10);
    let (status, refused) = s
        .call(
            Some(&acme),
            Method::PUT,
            "/v1/workflows/hold/alias",
            Some(json!({"active": 1, "canary": {"version": 2, "weight": 100}})),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    let (_, wf) = s.get(&acme, "/v1/workflows/hold").await;
    assert_eq!(
        wf["alias"]["canary"]["version"], 2,
        "the refused change wrote nothing"
    );

    // Deprecating the version the alias uses is refused; after moving the alias it is not,
    // and a start of the deprecated version names the active one.
    let (status, _) = s
        .post(&acme, "/v1/workflows/hold/versions/1/deprecate", json!({}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = s
        .call(
            Some(&acme),
            Method::PUT,
            "/v1/workflows/hold/alias",
            Some(json!({"active": 2})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, started) = s
        .post(
            &acme,
            "/v1/workflows/hold/executions",
            json!({"input": {"event_id": "e1"}, "version": 1, "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    let (status, dep) = s
        .post(&acme, "/v1/workflows/hold/versions/1/deprecate", json!({}))
        .await;
    assert_eq!(
        (status, dep["state"].as_str()),
        (200, Some("deprecated")),
        "{dep}"
    );
    let (status, refused) = s
        .post(
            &acme,
            "/v1/workflows/hold/executions",
            json!({"input": {"event_id": "e2"}, "version": 1}),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["details"]["active_version"], 2);
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("active version 2"))
    );

    // Retiring is refused while a run uses the version, with the count.
    let (status, inuse) = s
        .post(&acme, "/v1/workflows/hold/versions/1/retire", json!({}))
        .await;
    assert_eq!(status, 409, "{inuse}");
    assert_eq!(inuse["details"]["unfinished_runs"], 1);
    let id = started["execution_id"].as_str().expect("id");
    let (status, _) = s
        .post(
            &acme,
            &format!("/v1/executions/{id}/cancel"),
            json!({"compensate": false}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, retired) = s
        .post(&acme, "/v1/workflows/hold/versions/1/retire", json!({}))
        .await;
    assert_eq!(
        (status, retired["state"].as_str()),
        (200, Some("retired")),
        "{retired}"
    );
}

#[tokio::test]
async fn executions_start_once_per_key_and_take_every_operator_verb() {
    let s = server().await;
    let acme = s.tenant("acme").await;
    s.post(&acme, "/v1/workflows", holder("hold")).await;
    s.post(&acme, "/v1/workflows", stuck("stuck")).await;

    // A start with a key, twice: one run.
    let start = json!({"input": {"event_id": "berlin-2026"}, "idempotency_key": "launch-1"});
    let (status, first) = s
        .post(&acme, "/v1/workflows/hold/executions", start.clone())
        .await;
    assert_eq!(
        (status, first["created"].as_bool()),
        (201, Some(true)),
        "{first}"
    );
    let (status, second) = s.post(&acme, "/v1/workflows/hold/executions", start).await;
    assert_eq!((status, second["created"].as_bool()), (200, Some(false)));
    assert_eq!(first["execution_id"], second["execution_id"]);
    let id = first["execution_id"].as_str().expect("id").to_owned();

    // Bad input is refused with the schema's problem, and starts nothing.
    let (status, bad) = s
        .post(
            &acme,
            "/v1/workflows/hold/executions",
            json!({"input": {"event": 1}}),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["details"]["problems"][0]["message"].is_string(),
        "{bad}"
    );
    let (_, all) = s.get(&acme, "/v1/executions?workflow=hold").await;
    assert_eq!(ids(&all["executions"]), std::slice::from_ref(&id));

    // Get, history, filters.
    let run = s.until_status(&acme, &id, "running").await;
    assert_eq!(run["steps"]["hold"]["status"], "waiting", "{run:#}");
    let (_, history) = s.get(&acme, &format!("/v1/executions/{id}/history")).await;
    assert!(history["history"].as_array().is_some_and(|h| !h.is_empty()));
    let (_, none) = s.get(&acme, "/v1/executions?status=completed").await;
    assert_eq!(none["executions"], json!([]));
    let (status, bad) = s.get(&acme, "/v1/executions?status=asleep").await;
    assert_eq!(status, 400, "{bad}");
    let (status, _) = s.get(&acme, "/v1/executions?limit=0").await;
    assert_eq!(status, 400);

    // Pause and resume; a second pause... no: resume of a running run does not apply.
    let (status, paused) = s
        .post(&acme, &format!("/v1/executions/{id}/pause"), json!({}))
        .await;
    assert_eq!(
        (status, paused["status"].as_str()),
        (200, Some("paused")),
        "{paused}"
    );
    let (status, resumed) = s
        .call(
            Some(&acme),
            Method::POST,
            &format!("/v1/executions/{id}/resume"),
            None,
        )
        .await;
    assert_eq!(
        (status, resumed["status"].as_str()),
        (200, Some("running")),
        "{resumed}"
    );
    let (status, refused) = s
        .post(&acme, &format!("/v1/executions/{id}/resume"), json!({}))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("nothing changed"))
    );

    // A run that pauses on a failure: retry (fails again), skip with an output, completes.
    let (_, st) = s
        .post(
            &acme,
            "/v1/workflows/stuck/executions",
            json!({"input": {"key": "first"}}),
        )
        .await;
    let sid = st["execution_id"].as_str().expect("id").to_owned();
    s.until_status(&acme, &sid, "paused").await;
    let (status, unknown) = s
        .post(
            &acme,
            &format!("/v1/executions/{sid}/retry"),
            json!({"step": "nope"}),
        )
        .await;
    assert_eq!(status, 400, "{unknown}");
    let (status, _) = s
        .post(
            &acme,
            &format!("/v1/executions/{sid}/retry"),
            json!({"step": "boom"}),
        )
        .await;
    assert_eq!(status, 200);
    s.until_status(&acme, &sid, "paused").await;
    let (status, skipped) = s
        .post(
            &acme,
            &format!("/v1/executions/{sid}/skip"),
            json!({"step": "boom", "output": {"skipped": "by hand"}}),
        )
        .await;
    assert_eq!(status, 200, "{skipped}");
    let done = s.until_status(&acme, &sid, "completed").await;
    assert_eq!(done["steps"]["boom"]["output"]["skipped"], "by hand");

    // Another stuck run, rolled back: the record it wrote is undone.
    let (_, st) = s
        .post(
            &acme,
            "/v1/workflows/stuck/executions",
            json!({"input": {"key": "second"}}),
        )
        .await;
    let rid = st["execution_id"].as_str().expect("id").to_owned();
    s.until_status(&acme, &rid, "paused").await;
    let (status, rec) = s.get(&acme, "/v1/records/notes/second").await;
    assert_eq!((status, rec["n"].as_u64()), (200, Some(1)));
    let (status, _) = s
        .post(&acme, &format!("/v1/executions/{rid}/rollback"), json!({}))
        .await;
    assert_eq!(status, 200);
    s.until_status(&acme, &rid, "compensated").await;
    let (status, _) = s.get(&acme, "/v1/records/notes/second").await;
    assert_eq!(status, 404, "the rollback undid the write");

    // Cancel with compensation ends the holder cancelled; a second cancel does not apply.
    let (status, c) = s
        .post(&acme, &format!("/v1/executions/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{c}");
    s.until_status(&acme, &id, "cancelled").await;
    let (status, _) = s
        .post(&acme, &format!("/v1/executions/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 409);
    let (status, _) = s.get(&acme, "/v1/executions/ex-nothing").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn bad_requests_are_refused_with_a_sentence_and_write_nothing() {
    let s = server().await;
    let acme = s.tenant("acme").await;
    let url = |p: &str| format!("{}{p}", s.base);

    // No key, a malformed key, a wrong key: 401, the same for an unknown tenant.
    let (status, e) = s.call(None, Method::GET, "/v1/workflows", None).await;
    assert_eq!((status, e["code"].as_str()), (401, Some("unauthorized")));
    let forged = Tenant {
        name: "acme".into(),
        key: format!("efk_acme_{}", "0".repeat(64)),
        secret: String::new(),
    };
    let (status, wrong) = s.get(&forged, "/v1/workflows").await;
    assert_eq!(status, 401);
    let ghost = Tenant {
        name: "ghost".into(),
        key: format!("efk_ghost_{}", "0".repeat(64)),
        secret: String::new(),
    };
    let (status, unknown) = s.get(&ghost, "/v1/workflows").await;
    assert_eq!(
        (status, &unknown),
        (401, &wrong),
        "an unknown tenant looks like a wrong key"
    );

    // An invalid definition: 400 with each problem's path; nothing published.
    let mut def = holder("broken");
    def["steps"][1]["depends_on"] = json!(["nowhere"]);
    let (status, e) = s.post(&acme, "/v1/workflows", def).await;
    assert_eq!(status, 400, "{e}");
    assert_eq!(
        e["details"]["problems"][0]["path"], "$.steps[1].depends_on[0]",
        "{e}"
    );
    // An unknown field, named with its path.
    let mut def = holder("broken");
    def["steps"][0]["retries"] = json!(3);
    let (status, e) = s.post(&acme, "/v1/workflows", def).await;
    assert_eq!(status, 400);
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("retries")),
        "{e}"
    );
    assert_eq!(e["details"]["path"], "$.steps[0].retries", "{e}");
    let (_, list) = s.get(&acme, "/v1/workflows").await;
    assert_eq!(list["workflows"], json!([]), "nothing was written");

    // Too large, too deep, not JSON.
    let big = json!({"input": {"blob": "x".repeat(300 * 1024)}});
    let (status, e) = s.post(&acme, "/v1/workflows/x/executions", big).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (413, Some("payload_too_large")),
        "{e}"
    );
    let deep = format!("{{\"input\": {}1{}}}", "[".repeat(70), "]".repeat(70));
    let res = s
        .client
        .post(url("/v1/workflows/x/executions"))
        .bearer_auth(&acme.key)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 400);
    let e: Value = res.json().await.expect("json");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("levels deep")),
        "{e}"
    );
    let res = s
        .client
        .post(url("/v1/workflows"))
        .bearer_auth(&acme.key)
        .header("content-type", "text/plain")
        .body("id: x")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 415);
    let res = s
        .client
        .post(url("/v1/workflows"))
        .bearer_auth(&acme.key)
        .header("content-type", "application/json")
        .body("{\"id\": ")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status().as_u16(), 400);

    // No such path, wrong method: JSON too.
    let (status, e) = s.get(&acme, "/v1/nothing").await;
    assert_eq!((status, e["code"].as_str()), (404, Some("not_found")));
    let (status, e) = s
        .call(Some(&acme), Method::DELETE, "/v1/workflows", None)
        .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (_, list) = s.get(&acme, "/v1/workflows").await;
    assert_eq!(list["workflows"], json!([]));
}

#[tokio::test]
async fn a_tenant_can_neither_see_nor_touch_another_tenants_objects() {
    let s = server().await;
    let a = s.tenant("tenant-a").await;
    let b = s.tenant("tenant-b").await;
    let (status, _) = s.post(&b, "/v1/workflows", holder("secret-launch")).await;
    assert_eq!(status, 201);
    let (_, started) = s
        .post(
            &b,
            "/v1/workflows/secret-launch/executions",
            json!({"input": {"event_id": "e"}}),
        )
        .await;
    let id = started["execution_id"].as_str().expect("id").to_owned();
    s.call(
        Some(&b),
        Method::PUT,
        "/v1/records/events/e",
        Some(json!({"id": "e"})),
    )
    .await;

    // Every answer tenant A gets about B's objects is the answer for an object that never
    // existed, byte for byte.
    let pairs = [
        ("/v1/workflows/secret-launch", "/v1/workflows/never-was"),
        (
            "/v1/workflows/secret-launch/versions",
            "/v1/workflows/never-was/versions",
        ),
        (
            "/v1/workflows/secret-launch/versions/1",
            "/v1/workflows/never-was/versions/1",
        ),
        (
            "/v1/workflows/secret-launch/alias",
            "/v1/workflows/never-was/alias",
        ),
    ];
    for (theirs, nobodys) in pairs {
        let seen = s.get(&a, theirs).await;
        let none = s.get(&a, nobodys).await;
        assert_eq!(seen.0, 404, "{theirs}");
        assert_eq!(
            seen.1.to_string().replace("secret-launch", "X"),
            none.1.to_string().replace("never-was", "X"),
            "{theirs}"
        );
    }
    let seen = s.get(&a, &format!("/v1/executions/{id}")).await;
    let none = s.get(&a, "/v1/executions/ex-0").await;
    assert_eq!(seen.0, 404);
    assert_eq!(
        seen.1.to_string().replace(&id, "X"),
        none.1.to_string().replace("ex-0", "X")
    );
    let (status, _) = s.get(&a, &format!("/v1/executions/{id}/history")).await;
    assert_eq!(status, 404);
    let (status, _) = s.get(&a, "/v1/records/events/e").await;
    assert_eq!(status, 404);

    // Nor list, start, cancel or schedule them.
    let (_, list) = s.get(&a, "/v1/workflows").await;
    assert_eq!(list["workflows"], json!([]));
    let (_, runs) = s.get(&a, "/v1/executions").await;
    assert_eq!(runs["executions"], json!([]));
    let (_, schedules) = s.get(&a, "/v1/schedules").await;
    assert_eq!(schedules["schedules"], json!([]));
    let (status, _) = s
        .post(
            &a,
            "/v1/workflows/secret-launch/executions",
            json!({"input": {"event_id": "e"}}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .post(&a, &format!("/v1/executions/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 404);
    let (_, theirs) = s.get(&b, &format!("/v1/executions/{id}")).await;
    assert_eq!(theirs["status"], "running", "B's run went on untouched");
    // And B's secret does not sign A's hooks.
    let _ = &a.name;
}

#[tokio::test]
async fn a_signed_webhook_starts_exactly_one_run_and_refuses_the_rest() {
    let s = server().await;
    let acme = s.tenant("acme").await;
    let other = s.tenant("other").await;
    let mut def = holder("launch");
    def["triggers"] = json!([{"type": "webhook", "name": "launch-event"}]);
    let (status, e) = s.post(&acme, "/v1/workflows", def).await;
    assert_eq!(status, 201, "{e}");
    let now = s.clock.now().timestamp();
    let body = json!({"event_id": "berlin-2026"});

    let (status, accepted) = s
        .deliver("acme", &acme.secret, "launch-event", "d-1", now, &body)
        .await;
    assert_eq!(status, 202, "{accepted}");
    let run = accepted["executions"][0]["execution_id"].clone();
    // Delivered again: refused as seen, and still one run.
    let (status, replay) = s
        .deliver("acme", &acme.secret, "launch-event", "d-1", now, &body)
        .await;
    assert_eq!(status, 409, "{replay}");
    assert_eq!(replay["details"]["executions"][0], run);
    // Delivered twice at once: one of them starts a run.
    let (x, y) = tokio::join!(
        s.deliver("acme", &acme.secret, "launch-event", "d-2", now, &body),
        s.deliver("acme", &acme.secret, "launch-event", "d-2", now, &body),
    );
    assert!(x.0 == 202 || y.0 == 202, "{x:?} {y:?}");
    let (_, runs) = s.get(&acme, "/v1/executions?workflow=launch").await;
    assert_eq!(
        runs["executions"].as_array().map(Vec::len),
        Some(2),
        "{runs}"
    );

    // A wrong signature, a stale timestamp, another tenant's secret, an unknown tenant.
    let (status, e) = s
        .deliver("acme", "whsec_wrong", "launch-event", "d-3", now, &body)
        .await;
    assert_eq!(status, 401, "{e}");
    let bad_signature = e["message"].clone();
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("signature"))
    );
    let (status, e) = s
        .deliver(
            "acme",
            &acme.secret,
            "launch-event",
            "d-4",
            now - 301,
            &body,
        )
        .await;
    assert_eq!(status, 401);
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("301 s")),
        "{e}"
    );
    let (status, _) = s
        .deliver("acme", &other.secret, "launch-event", "d-5", now, &body)
        .await;
    assert_eq!(status, 401);
    let (status, ghost) = s
        .deliver("ghost", &acme.secret, "launch-event", "d-6", now, &body)
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        ghost["message"], bad_signature,
        "an unknown tenant looks like a bad signature"
    );
    // A hook nobody listens on, and an input the workflow refuses: nothing starts.
    let (status, _) = s
        .deliver("acme", &acme.secret, "nobody", "d-7", now, &body)
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .deliver(
            "acme",
            &acme.secret,
            "launch-event",
            "d-8",
            now,
            &json!({"x": 1}),
        )
        .await;
    assert_eq!(status, 400);
    let (_, runs) = s.get(&acme, "/v1/executions?workflow=launch").await;
    assert_eq!(runs["executions"].as_array().map(Vec::len), Some(2));
    // A refused delivery was not remembered: sent again, signed right, it is accepted.
    let (status, _) = s
        .deliver("acme", &acme.secret, "launch-event", "d-8", now, &body)
        .await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn a_canary_takes_its_weight_within_three_points_over_ten_thousand_starts() {
    let s = server().await;
    let acme = s.tenant("acme").await;
    s.post(&acme, "/v1/workflows", holder("hold")).await;
    let mut v2 = holder("hold");
    v2["name"] = json!("Holder v2");
    s.post(&acme, "/v1/workflows/hold/versions", v2).await;
    let (status, _) = s
        .call(
            Some(&acme),
            Method::PUT,
            "/v1/workflows/hold/alias",
            Some(json!({"active": 1, "canary": {"version": 2, "weight": 20}})),
        )
        .await;
    assert_eq!(status, 200);

    // 10,000 starts, 32 at a time.
    let mut on_canary = 0u32;
    let mut pending = tokio::task::JoinSet::new();
    for n in 0..10_000 {
        let (client, url, key) = (
            s.client.clone(),
            format!("{}/v1/workflows/hold/executions", s.base),
            acme.key.clone(),
        );
        pending.spawn(async move {
            let body =
                json!({"input": {"event_id": format!("e{n}")}, "idempotency_key": format!("k{n}")});
            let res = client
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .expect("send");
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.expect("json"))
        });
        if pending.len() >= 32 || n == 9_999 {
            while let Some(done) = pending.join_next().await {
                let (status, started) = done.expect("task");
                assert_eq!(status, 201, "{started}");
                if started["version"] == 2 {
                    on_canary += 1;
                }
            }
        }
    }
    let share = f64::from(on_canary) / 100.0;
    assert!(
        (share - 20.0).abs() <= 3.0,
        "{share}% of 10,000 starts went to the canary"
    );
}

#[tokio::test]
async fn migration_over_http_moves_runs_refuses_with_reasons_and_a_dry_run_changes_nothing() {
    let s = server().await;
    let acme = s.tenant("acme").await;
    s.post(&acme, "/v1/workflows", holder("hold")).await;
    // Version 2 renames `note` to `record_note` and adds `prepare` before `hold`, that is
    // before the frontier of runs waiting on `hold`: they need its output supplied.
    let mut v2 = holder("hold");
    v2["steps"][1]["id"] = json!("record_note");
    v2["steps"][0]["depends_on"] = json!(["prepare"]);
    v2["steps"].as_array_mut().expect("steps").insert(
        0,
        json!(
        {"id": "prepare", "action": "records.put",
         "input": {"collection": "prep", "key": "${input.event_id}", "record": {"ok": true}}}),
    );
    s.post(&acme, "/v1/workflows/hold/versions", v2).await;
    let mut runs = Vec::new();
    for n in 0..3 {
        let (_, st) = s
            .post(
                &acme,
                "/v1/workflows/hold/executions",
                json!({"input": {"event_id": format!("e{n}")}, "version": 1}),
            )
            .await;
        runs.push(st["execution_id"].as_str().expect("id").to_owned());
    }
    for id in &runs {
        s.until_status(&acme, id, "running").await;
    }

    // Without the rename the runs cannot move: each says why.
    let (status, report) = s
        .post(
            &acme,
            "/v1/workflows/hold/versions/1/migrate",
            json!({"to": 2, "dry_run": true}),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    let moves = report["executions"].as_array().expect("list");
    assert_eq!(moves.len(), 3);
    assert!(
        moves.iter().all(|m| m["can_move"] == false
            && m["reasons"][0]["message"]
                .as_str()
                .is_some_and(|r| r.contains("prepare"))),
        "{report:#}"
    );

    // A dry run with the mapping: can move, and nothing changed.
    let before = s.get(&acme, &format!("/v1/executions/{}", runs[0])).await.1;
    let mapping = json!({"renamed": {"note": "record_note"},
                         "supplied_outputs": {"prepare": {"collection": "prep", "previous": null}},
                         "note": "prepare was done by hand"});
    let (_, dry) = s
        .post(
            &acme,
            &format!("/v1/executions/{}/migrate", runs[0]),
            json!({"to": 2, "mapping": mapping, "dry_run": true}),
        )
        .await;
    assert_eq!(
        (dry["can_move"].as_bool(), dry["moved"].as_bool()),
        (Some(true), Some(false)),
        "{dry}"
    );
    assert_eq!(dry["summary"]["renamed"]["note"], "record_note");
    let after = s.get(&acme, &format!("/v1/executions/{}", runs[0])).await.1;
    assert_eq!(before, after, "a dry run changes nothing");

    // One run moved on its own, the rest in one call for the whole version.
    let (_, one) = s
        .post(
            &acme,
            &format!("/v1/executions/{}/migrate", runs[0]),
            json!({"to": 2, "mapping": mapping}),
        )
        .await;
    assert_eq!(one["moved"], true, "{one}");
    let (_, all) = s
        .post(
            &acme,
            "/v1/workflows/hold/versions/1/migrate",
            json!({"to": 2, "mapping": mapping}),
        )
        .await;
    assert_eq!(all["executions"].as_array().map(Vec::len), Some(2), "{all}");
    for id in &runs {
        let run = s.get(&acme, &format!("/v1/executions/{id}")).await.1;
        assert_eq!(run["version"], 2);
        assert!(run["steps"]["prepare"]["status"] == "succeeded");
        let history = run["history"].as_array().expect("history");
        assert!(
            history
                .iter()
                .any(|h| h["event"]["kind"]["type"] == "migrated"
                    || h["event"].to_string().contains("migrated")),
            "{run:#}"
        );
    }

    // Refusals: same version, unknown version, a finished run.
    let (status, _) = s
        .post(
            &acme,
            &format!("/v1/executions/{}/migrate", runs[0]),
            json!({"to": 2}),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = s
        .post(
            &acme,
            &format!("/v1/executions/{}/migrate", runs[0]),
            json!({"to": 7}),
        )
        .await;
    assert_eq!(status, 404);
    s.post(
        &acme,
        &format!("/v1/executions/{}/cancel", runs[1]),
        json!({"compensate": false}),
    )
    .await;
    s.until_status(&acme, &runs[1], "cancelled").await;
    let (status, _) = s
        .post(
            &acme,
            &format!("/v1/executions/{}/migrate", runs[1]),
            json!({"to": 1}),
        )
        .await;
    assert_eq!(status, 409);
    let (status, e) = s
        .post(
            &acme,
            &format!("/v1/executions/{}/migrate", runs[2]),
            json!({"to": 1, "mapping": {"renamed": 3}}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(e["details"]["path"], "$.mapping.renamed");
}

#[tokio::test]
async fn records_are_read_written_and_deleted_and_internal_ones_are_hidden() {
    let s = server().await;
    let acme = s.tenant("acme").await;
    let (status, _) = s
        .call(
            Some(&acme),
            Method::PUT,
            "/v1/records/events/e1",
            Some(json!({"id": "e1"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = s
        .call(
            Some(&acme),
            Method::PUT,
            "/v1/records/events/e1",
            Some(json!({"id": "e1", "n": 2})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, rec) = s.get(&acme, "/v1/records/events/e1").await;
    assert_eq!(rec["n"], 2);
    let (status, _) = s
        .call(
            Some(&acme),
            Method::PUT,
            "/v1/records/events/e2",
            Some(json!([1])),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = s.get(&acme, "/v1/records/_deliveries/x").await;
    assert_eq!(status, 404);
    let (status, _) = s
        .call(Some(&acme), Method::DELETE, "/v1/records/events/e1", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = s
        .call(Some(&acme), Method::DELETE, "/v1/records/events/e1", None)
        .await;
    assert_eq!(status, 404);
    let (status, health) = s.call(None, Method::GET, "/health", None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
}

#[tokio::test]
async fn a_daily_schedule_fires_at_nine_berlin_time_across_the_spring_change() {
    let s = server().await;
    let acme = s.tenant("acme").await;
    let mut def = holder("nurture");
    def["triggers"] = json!([{"type": "cron", "expression": "0 9 * * *",
                              "time_zone": "Europe/Berlin", "input": {"event_id": "daily"}}]);
    s.clock.set(t("2026-03-27T12:00:00Z"));
    let (status, e) = s.post(&acme, "/v1/workflows", def).await;
    assert_eq!(status, 201, "{e}");
    let (_, list) = s.get(&acme, "/v1/schedules").await;
    let schedule = &list["schedules"][0];
    assert_eq!(schedule["next_due"], "2026-03-28T08:00:00Z", "{list:#}");
    let id = schedule["id"].as_str().expect("id").to_owned();
    let plane = s.tenants.local_plane("acme").await.expect("plane");

    // Saturday 09:00 CET is 08:00Z; Sunday the clocks move; Monday 09:00 CEST is 07:00Z.
    let mut fired = Vec::new();
    for (now, expect) in [
        ("2026-03-28T07:59:00Z", 0),
        ("2026-03-28T08:00:00Z", 1),
        ("2026-03-28T08:00:00Z", 0),
        ("2026-03-29T06:59:00Z", 0),
        ("2026-03-29T07:00:00Z", 1),
        ("2026-03-30T06:59:00Z", 0),
        ("2026-03-30T07:00:00Z", 1),
    ] {
        s.clock.set(t(now));
        let report = plane.scheduler().tick(t(now)).await.expect("tick");
        assert_eq!(report.started.len(), expect, "at {now}: {report:?}");
        fired.extend(report.started.iter().map(|r| r.slot));
    }
    assert_eq!(
        fired,
        [
            t("2026-03-28T08:00:00Z"),
            t("2026-03-29T07:00:00Z"),
            t("2026-03-30T07:00:00Z")
        ]
    );
    let (_, runs) = s.get(&acme, "/v1/executions?workflow=nurture").await;
    assert_eq!(runs["executions"].as_array().map(Vec::len), Some(3));

    // Paused over HTTP, it fires nothing; resumed, it skips the missed day.
    let path = |verb: &str| format!("/v1/schedules/{id}/{verb}");
    let (status, paused) = s.post(&acme, &path("pause"), json!({})).await;
    assert_eq!(
        (status, paused["paused"].as_bool()),
        (200, Some(true)),
        "{paused}"
    );
    s.clock.set(t("2026-03-31T07:00:00Z"));
    let report = plane
        .scheduler()
        .tick(t("2026-03-31T07:00:00Z"))
        .await
        .expect("tick");
    assert!(report.started.is_empty());
    s.clock.set(t("2026-03-31T12:00:00Z"));
    let (status, resumed) = s.post(&acme, &path("resume"), json!({})).await;
    assert_eq!((status, resumed["paused"].as_bool()), (200, Some(false)));
    assert_eq!(resumed["next_due"], "2026-04-01T07:00:00Z");
    let (status, _) = s.post(&acme, "/v1/schedules/nope/pause", json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn changing_an_events_dates_replans_its_nurture_reminders() {
    let s = server().await;
    let acme = s.tenant("acme").await;
    let mut def = holder("nurture");
    def["triggers"] = json!([{"type": "event_relative", "field": "starts_at",
                              "offsets": ["-14d", "-7d", "-1d"], "at": "09:00"}]);
    s.post(&acme, "/v1/workflows", def).await;
    let event = |starts: &str| {
        json!({"id": "berlin-2026", "event_id": "berlin-2026",
        "name": "Rust Berlin", "starts_at": starts, "time_zone": "Europe/Berlin"})
    };
    s.call(
        Some(&acme),
        Method::PUT,
        "/v1/records/events/berlin-2026",
        Some(event("2026-09-20T10:00:00+02:00")),
    )
    .await;
    let planned = |list: &Value| -> Vec<String> {
        list["schedules"][0]["planned"]
            .as_array()
            .map(|p| {
                p.iter()
                    .filter_map(|r| r["fire_at"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = planned(&s.get(&acme, "/v1/schedules").await.1);
        if seen.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen,
        [
            "2026-09-06T07:00:00Z",
            "2026-09-13T07:00:00Z",
            "2026-09-19T07:00:00Z"
        ]
    );

    // The event moves a week later: the three reminders move with it.
    s.call(
        Some(&acme),
        Method::PUT,
        "/v1/records/events/berlin-2026",
        Some(event("2026-09-27T10:00:00+02:00")),
    )
    .await;
    for _ in 0..100 {
        seen = planned(&s.get(&acme, "/v1/schedules").await.1);
        if seen.first().map(String::as_str) == Some("2026-09-13T07:00:00Z") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        seen,
        [
            "2026-09-13T07:00:00Z",
            "2026-09-20T07:00:00Z",
            "2026-09-26T07:00:00Z"
        ]
    );
    let plane = s.tenants.local_plane("acme").await.expect("plane");
    let report = plane
        .scheduler()
        .tick(t("2026-09-06T07:00:00Z"))
        .await
        .expect("tick");
    assert!(report.started.is_empty(), "the old first reminder is gone");
    let report = plane
        .scheduler()
        .tick(t("2026-09-13T07:00:00Z"))
        .await
        .expect("tick");
    assert_eq!(report.started.len(), 1, "{report:?}");
}

/// One step that writes a record at once, with a correlation key and these dependencies.
fn follower(id: &str, dependencies: Value) -> Value {
    json!({
        "id": id, "name": id, "kind": "custom",
        "correlation_key": "${input.event_id}",
        "dependencies": dependencies,
        "steps": [
            {"id": "write", "action": "records.put",
             "input": {"collection": id, "key": "${input.event_id}", "record": {"done": true}}}
        ]
    })
}

#[tokio::test]
async fn each_kind_of_workflow_dependency_over_http() {
    let s = server().await;
    let acme = s.tenant("acme").await;
    // The launch writes a record and then waits for an operator on a failing step.
    let mut launch = stuck("launch");
    launch["correlation_key"] = json!("${input.event_id}");
    launch["steps"][0]["input"]["key"] = json!("${input.event_id}");
    let (status, e) = s.post(&acme, "/v1/workflows", launch).await;
    assert_eq!(status, 201, "{e}");
    for (id, deps) in [
        (
            "followup",
            json!([{"workflow": "launch", "type": "blocking"}]),
        ),
        (
            "nurture",
            json!([{"workflow": "launch", "type": "parallel"}]),
        ),
        (
            "thanks",
            json!([{"workflow": "launch", "type": "conditional",
                           "when": "output.write.key == 'big-one'"}]),
        ),
    ] {
        let (status, e) = s.post(&acme, "/v1/workflows", follower(id, deps)).await;
        assert_eq!(status, 201, "{e}");
    }
    let start = async |wf: &str, event: &str| {
        let body =
            json!({"input": {"event_id": event}, "idempotency_key": format!("{wf}-{event}")});
        s.post(&acme, &format!("/v1/workflows/{wf}/executions"), body)
            .await
    };
    let runs_of = async |wf: &str| s.get(&acme, &format!("/v1/executions?workflow={wf}")).await;

    // Parallel: starting the launch starts the nurture, once, even when started twice.
    let (_, a) = start("launch", "big-one").await;
    let a = a["execution_id"].as_str().expect("id").to_owned();
    start("launch", "big-one").await;
    s.until_status(&acme, &a, "paused").await;
    let mut nurture = Value::Null;
    for _ in 0..100 {
        nurture = runs_of("nurture").await.1;
        if nurture["executions"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        nurture["executions"].as_array().map(Vec::len),
        Some(1),
        "{nurture}"
    );

    // Blocking: the follow-up for the same event waits, visibly, on the launch's run.
    let (status, b) = start("followup", "big-one").await;
    assert_eq!(status, 201, "{b}");
    let b = b["execution_id"].as_str().expect("id").to_owned();
    let waiting = s.until_status(&acme, &b, "waiting_for_dependency").await;
    assert_eq!(waiting["correlation_key"], "big-one");
    assert_eq!(
        waiting["waiting_on"][0]["workflow"], "launch",
        "{waiting:#}"
    );
    assert_eq!(waiting["waiting_on"][0]["execution_id"], a.as_str());
    assert_eq!(waiting["steps"]["write"]["status"], "pending");

    // The launch completes (its failing step skipped by an operator): the follow-up runs,
    // and the conditional thank-you starts because the condition over its output holds.
    let (status, _) = s
        .post(
            &acme,
            &format!("/v1/executions/{a}/skip"),
            json!({"step": "boom"}),
        )
        .await;
    assert_eq!(status, 200);
    s.until_status(&acme, &a, "completed").await;
    s.until_status(&acme, &b, "completed").await;
    let mut thanks = Value::Null;
    for _ in 0..100 {
        thanks = runs_of("thanks").await.1;
        if thanks["executions"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        thanks["executions"].as_array().map(Vec::len),
        Some(1),
        "{thanks}"
    );

    // Another event whose launch is cancelled: its waiting follow-up ends cancelled, and the
    // condition (another event id) starts no thank-you.
    let (_, a2) = start("launch", "small-one").await;
    let a2 = a2["execution_id"].as_str().expect("id").to_owned();
    s.until_status(&acme, &a2, "paused").await;
    let (_, b2) = start("followup", "small-one").await;
    let b2 = b2["execution_id"].as_str().expect("id").to_owned();
    s.until_status(&acme, &b2, "waiting_for_dependency").await;
    s.post(
        &acme,
        &format!("/v1/executions/{a2}/skip"),
        json!({"step": "boom"}),
    )
    .await;
    s.until_status(&acme, &a2, "completed").await;
    s.until_status(&acme, &b2, "completed").await;
    let (_, thanks) = runs_of("thanks").await;
    assert_eq!(
        thanks["executions"].as_array().map(Vec::len),
        Some(1),
        "a false condition starts nothing"
    );
    let (_, a3) = start("launch", "cancelled-one").await;
    let a3 = a3["execution_id"].as_str().expect("id").to_owned();
    s.until_status(&acme, &a3, "paused").await;
    let (_, b3) = start("followup", "cancelled-one").await;
    let b3 = b3["execution_id"].as_str().expect("id").to_owned();
    s.until_status(&acme, &b3, "waiting_for_dependency").await;
    s.post(&acme, &format!("/v1/executions/{a3}/cancel"), json!({}))
        .await;
    let ended = s.until_status(&acme, &b3, "cancelled").await;
    assert!(ended["error"].to_string().contains(&a3), "{ended:#}");

    // A cycle is refused at publish, naming it, and nothing is written.
    let mut looped = stuck("launch");
    looped["correlation_key"] = json!("${input.event_id}");
    looped["dependencies"] = json!([{"workflow": "followup", "type": "blocking"}]);
    let (status, refused) = s.post(&acme, "/v1/workflows/launch/versions", looped).await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|m| m.contains("launch → followup → launch")),
        "{refused}"
    );
    let (_, versions) = s.get(&acme, "/v1/workflows/launch/versions").await;
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_workflows_figures_count_its_starts_ends_and_failed_steps_by_hour_and_day() {
    let s = server().await;
    let acme = s.tenant("acme").await;
    let other = s.tenant("other").await;
    let quick = json!({"id": "quick", "name": "Quick", "kind": "custom", "steps": [
        {"id": "save", "action": "records.put",
         "input": {"collection": "notes", "key": "${input.key}", "record": {"n": 1}}}]});
    s.post(&acme, "/v1/workflows", quick).await;
    s.post(&acme, "/v1/workflows", stuck("stuck")).await;

    // Given two quick runs that complete and one that stops on a failed step
    for key in ["a", "b"] {
        let (status, run) = s
            .post(
                &acme,
                "/v1/workflows/quick/executions",
                json!({"input": {"key": key}}),
            )
            .await;
        assert_eq!(status, 201, "{run}");
        let id = run["execution_id"].as_str().expect("id");
        s.until_status(&acme, id, "completed").await;
    }
    let (_, run) = s
        .post(
            &acme,
            "/v1/workflows/stuck/executions",
            json!({"input": {"key": "c"}}),
        )
        .await;
    let id = run["execution_id"].as_str().expect("id");
    s.until_status(&acme, id, "paused").await;

    // When the figures are read for the default range (the day up to the current hour's end)
    let (status, quick) = s.get(&acme, "/v1/workflows/quick/metrics").await;
    assert_eq!(status, 200, "{quick:#}");
    // Then both runs were counted, started and completed, with their durations
    let total = &quick["total"];
    assert_eq!(total["RunStarted"]["count"], 2, "{quick:#}");
    assert_eq!(total["RunCompleted"]["count"], 2, "{quick:#}");
    assert_eq!(total["RunDuration"]["unit"], "Milliseconds", "{quick:#}");
    assert_eq!(total["RunDuration"]["count"], 2, "{quick:#}");
    assert!(total["RunDuration"]["p50"].is_number(), "{quick:#}");
    assert!(total.get("StepFailed").is_none(), "{quick:#}");
    assert_eq!(quick["to"], "2026-06-01T11:00:00Z");
    let starts: Vec<&Value> = quick["periods"]
        .as_array()
        .expect("periods")
        .iter()
        .map(|p| &p["start"])
        .collect();
    assert_eq!(starts, [&json!("2026-06-01T10:00:00Z")]);
    // And the failed step is counted on its own workflow, which has not ended
    let (_, stuck) = s.get(&acme, "/v1/workflows/stuck/metrics").await;
    assert_eq!(stuck["total"]["StepFailed"]["count"], 1, "{stuck:#}");
    assert_eq!(stuck["total"]["RunStarted"]["count"], 1, "{stuck:#}");
    assert!(stuck["total"].get("RunCompleted").is_none(), "{stuck:#}");

    // When they are read by day, over a range that ends before the runs
    let (_, daily) = s
        .get(&acme, "/v1/workflows/quick/metrics?interval=day")
        .await;
    assert_eq!(daily["periods"][0]["start"], "2026-06-01T00:00:00Z");
    assert_eq!(daily["periods"][0]["figures"]["RunStarted"]["sum"], 2.0);
    let (_, before) = s
        .get(
            &acme,
            "/v1/workflows/quick/metrics?from=2026-05-01T00:00:00Z&to=2026-06-01T10:00:00Z",
        )
        .await;
    assert_eq!(before["periods"], json!([]), "{before:#}");
    assert_eq!(before["total"], json!({}), "{before:#}");

    // A bad range, an unknown parameter, a workflow not there, or another tenant's: refused
    for (path, want, parameter) in [
        (
            "/v1/workflows/quick/metrics?from=2026-06-02T00:00:00Z&to=2026-06-01T00:00:00Z",
            400,
            Some("from"),
        ),
        (
            "/v1/workflows/quick/metrics?from=2026-01-01T00:00:00Z",
            400,
            Some("from"),
        ),
        ("/v1/workflows/quick/metrics?since=yesterday", 400, None),
        ("/v1/workflows/quick/metrics?interval=week", 400, None),
        ("/v1/workflows/nope/metrics", 404, None),
    ] {
        let (status, body) = s.get(&acme, path).await;
        assert_eq!(status, want, "{path}: {body:#}");
        assert!(body["message"].is_string(), "{path}: {body:#}");
        if let Some(p) = parameter {
            assert_eq!(body["details"]["parameter"], p, "{path}: {body:#}");
        }
    }
    let (status, _) = s.get(&other, "/v1/workflows/quick/metrics").await;
    assert_eq!(status, 404);
}
