//! `eventflow serve` as a real process: a tenant made with `eventflow tenant create`, a launch
//! published and started over HTTP and by a signed webhook, a graceful stop on SIGTERM, and
//! the runs still there after a restart.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use eventflow_api::{http::TENANT_HEADER, webhook};
use serde_json::{Value, json};

fn eventflow(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eventflow"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .expect("eventflow runs")
}

/// Starts `eventflow serve --port 0` and returns it with the address it printed.
fn serve(data: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventflow"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("address");
    let base = line.trim().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    (child, base)
}

/// SIGTERM, then the exit status.
fn terminate(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    child.wait().expect("exit")
}

fn launch() -> Value {
    json!({
        "id": "mini-launch", "name": "Mini launch", "kind": "event_launch",
        "input_schema": {"type": "object", "required": ["event"],
            "properties": {"event": {"type": "object", "required": ["id", "name"]}}},
        "triggers": [{"type": "webhook", "name": "new-event"}],
        "steps": [
            {"id": "create_event", "action": "records.put", "compensate": true,
             "input": {"collection": "events", "key": "${input.event.id}",
                       "record": {"name": "${input.event.name}"}}},
            {"id": "tell_team", "action": "notify", "depends_on": ["create_event"],
             "input": {"channel": "ops", "text": "${'launched ' + input.event.name}"}}
        ]
    })
}

async fn until_completed(client: &reqwest::Client, base: &str, key: &str, id: &str) -> Value {
    for _ in 0..200 {
        let run: Value = client
            .get(format!("{base}/v1/executions/{id}"))
            .bearer_auth(key)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if run["status"] == "completed" {
            return run;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("run {id} did not complete")
}

#[tokio::test]
async fn serve_runs_launches_from_the_api_and_webhooks_and_keeps_them_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let made = eventflow(&data, &["tenant", "create", "acme"]);
    assert!(made.status.success());
    let printed = String::from_utf8_lossy(&made.stdout).into_owned();
    let mut lines = printed.lines();
    let key = lines.next().expect("key").to_owned();
    let secret = lines.next().expect("secret").to_owned();

    let (child, base) = serve(&data);
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/v1/workflows"))
        .bearer_auth(&key)
        .json(&launch())
        .send()
        .await
        .expect("create");
    assert_eq!(res.status().as_u16(), 201);

    // Started over the API...
    let started: Value = client
        .post(format!("{base}/v1/workflows/mini-launch/executions"))
        .bearer_auth(&key)
        .json(
            &json!({"input": {"event": {"id": "rust-berlin", "name": "Rust Berlin"}},
                      "idempotency_key": "launch-rust-berlin"}),
        )
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    let by_api = started["execution_id"].as_str().expect("id").to_owned();
    let run = until_completed(&client, &base, &key, &by_api).await;
    assert_eq!(run["steps"]["create_event"]["status"], "succeeded");

    // ... and by a signed webhook.
    let body = serde_json::to_vec(&json!({"event": {"id": "rust-paris", "name": "Rust Paris"}}))
        .expect("body");
    let now = chrono::Utc::now().timestamp();
    let res = client
        .post(format!("{base}/hooks/new-event"))
        .header(TENANT_HEADER, "acme")
        .header(webhook::TIMESTAMP_HEADER, now.to_string())
        .header(
            webhook::SIGNATURE_HEADER,
            webhook::sign(secret.as_bytes(), now, &body),
        )
        .header(webhook::DELIVERY_HEADER, "delivery-1")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("hook");
    assert_eq!(res.status().as_u16(), 202);
    let accepted: Value = res.json().await.expect("json");
    let by_hook = accepted["executions"][0]["execution_id"]
        .as_str()
        .expect("id")
        .to_owned();
    until_completed(&client, &base, &key, &by_hook).await;
    let record: Value = client
        .get(format!("{base}/v1/records/events/rust-paris"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("record")
        .json()
        .await
        .expect("json");
    assert_eq!(record["name"], "Rust Paris");

    // SIGTERM stops it cleanly; a restart serves the same runs, and the key still starts
    // nothing new.
    assert!(terminate(child).success());
    let (child, base) = serve(&data);
    let runs: Value = client
        .get(format!(
            "{base}/v1/executions?workflow=mini-launch&status=completed"
        ))
        .bearer_auth(&key)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(
        runs["executions"].as_array().map(Vec::len),
        Some(2),
        "{runs}"
    );
    let again: Value = client
        .post(format!("{base}/v1/workflows/mini-launch/executions"))
        .bearer_auth(&key)
        .json(
            &json!({"input": {"event": {"id": "rust-berlin", "name": "Rust Berlin"}},
                      "idempotency_key": "launch-rust-berlin"}),
        )
        .send()
        .await
        .expect("start")
        .json()
        .await
        .expect("json");
    assert_eq!(again["execution_id"], by_api.as_str());
    assert_eq!(again["created"], false);
    assert!(terminate(child).success());
}
