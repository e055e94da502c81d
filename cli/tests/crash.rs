//! Crash safety, for real: `eventflow run` is killed with SIGKILL at many points of a run and
//! started again (`eventflow resume`) until the run finishes.
//!
//! Given a workflow whose steps call a recording HTTP server on 127.0.0.1, then: the run
//! completes; every call carries the attempt's idempotency key, and each step (or item) was
//! called with one key only however often it was retried after a crash; a step seen succeeded
//! in the store is never called again; and every history entry recorded before a crash is
//! still there, unchanged, at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Call {
    path: String,
    key: Option<String>,
    at: Instant,
}

type Calls = Arc<Mutex<Vec<Call>>>;

/// A server that records every call and answers after a short delay, so that kills land
/// while calls are in flight.
fn start_server() -> (u16, Calls) {
    let calls: Calls = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let recorded = Arc::clone(&calls);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio");
        rt.block_on(async move {
            let app =
                Router::new().fallback(any(move |uri: axum::http::Uri, headers: HeaderMap| {
                    let recorded = Arc::clone(&recorded);
                    async move {
                        recorded.lock().expect("lock").push(Call {
                            path: uri.path().to_owned(),
                            key: headers
                                .get("idempotency-key")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned),
                            at: Instant::now(),
                        });
                        tokio::time::sleep(Duration::from_millis(25)).await;
                        (StatusCode::OK, axum::Json(json!({"ok": true})))
                    }
                }));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr").port())
                .expect("port");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    let port = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server port");
    (port, calls)
}

fn workflow(port: u16) -> Value {
    let call = |path: &str| json!({"method": "POST", "url": format!("http://127.0.0.1:{port}/{path}"), "body": {"step": path}});
    json!({
        "id": "crashy", "name": "Crash test", "kind": "custom",
        "retry": {"max_attempts": 5, "initial_interval": "100ms", "max_interval": "1s"},
        "steps": [
            {"id": "create", "action": "http.request", "input": call("create")},
            {"id": "left", "action": "http.request", "depends_on": ["create"], "input": call("left")},
            {"id": "right", "action": "http.request", "depends_on": ["create"], "input": call("right")},
            {"id": "join", "action": "http.request", "depends_on": ["left", "right"], "input": call("join")},
            {"id": "fan", "action": "http.request", "depends_on": ["join"],
             "for_each": {"items": "input.items", "concurrency": 4},
             "input": {"method": "POST", "url": format!("${{'http://127.0.0.1:{port}/fan/' + string(item)}}")}},
            {"id": "last", "action": "http.request", "depends_on": ["fan"], "input": call("last")}
        ]
    })
}

fn eventflow(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventflow"));
    cmd.args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::null());
    cmd
}

fn status(dir: &Path, id: &str) -> Value {
    let out = eventflow(dir, &["status", id, "--json"])
        .output()
        .expect("status");
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status json")
}

fn kill_after(mut child: Child, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    // SIGKILL: no chance to clean up.
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_run_killed_again_and_again_finishes_without_redoing_what_succeeded() {
    let (port, calls) = start_server();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let wf = dir.path().join("crashy.json");
    std::fs::write(&wf, workflow(port).to_string()).expect("write workflow");
    let input = json!({"items": (0..16).collect::<Vec<u32>>()}).to_string();

    // The run is created first (its id is printed once the start is durable), then the
    // process is killed at points spread over the run: mid-branch, mid-fan-out, ...
    let mut first = eventflow(
        &data,
        &[
            "run",
            &wf.to_string_lossy(),
            "--input",
            &input,
            "--follow",
            "60",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn run");
    let stdout = first.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the run starts");
    let id = line
        .split_whitespace()
        .nth(1)
        .filter(|w| w.starts_with("ex-"))
        .unwrap_or_else(|| panic!("no run id in {line:?}"))
        .to_owned();
    let kills = [30u64, 90, 150, 60, 220, 130, 310, 80, 170, 260];
    let mut snapshots: Vec<(Instant, BTreeSet<String>, Vec<Value>)> = Vec::new();
    let mut first = Some(first);
    for ms in kills {
        let child = first.take().unwrap_or_else(|| {
            eventflow(&data, &["resume", "--follow", "60"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn resume")
        });
        kill_after(child, ms);
        let s = status(&data, &id);
        let succeeded: BTreeSet<String> = s["steps"]
            .as_object()
            .expect("steps")
            .iter()
            .filter(|(_, v)| v["status"] == "succeeded")
            .map(|(k, _)| k.clone())
            .collect();
        let history = s["history"].as_array().cloned().unwrap_or_default();
        snapshots.push((Instant::now(), succeeded, history));
    }

    // Then let it finish.
    let out = eventflow(&data, &["resume", "--follow", "60"])
        .output()
        .expect("resume");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fin = status(&data, &id);
    assert_eq!(fin["status"], "completed", "{fin:#}");

    let calls = calls.lock().expect("lock").clone();
    // Every call carries a key; each step or item was called with exactly one key.
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in &calls {
        let key = c
            .key
            .clone()
            .unwrap_or_else(|| panic!("a call to {} had no idempotency key", c.path));
        keys.entry(c.path.clone()).or_default().insert(key);
    }
    let expected: BTreeSet<String> = ["/create", "/left", "/right", "/join", "/last"]
        .into_iter()
        .map(str::to_owned)
        .chain((0..16).map(|i| format!("/fan/{i}")))
        .collect();
    assert_eq!(
        keys.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "every action ran at least once"
    );
    for (path, ks) in &keys {
        assert_eq!(ks.len(), 1, "{path} was called with several keys: {ks:?}");
    }
    // A step seen succeeded is never called again afterwards.
    for (at, succeeded, _) in &snapshots {
        for step in succeeded {
            let again: Vec<&Call> = calls
                .iter()
                .filter(|c| {
                    c.at > *at
                        && c.path.trim_start_matches('/').split('/').next() == Some(step.as_str())
                })
                .collect();
            assert!(
                again.is_empty(),
                "{step} had succeeded but was called again: {again:?}"
            );
        }
    }
    // Nothing recorded is lost: each snapshot's history is a prefix of the final one.
    let final_history = fin["history"].as_array().expect("history");
    for (i, h) in final_history.iter().enumerate() {
        assert_eq!(h["seq"], json!(i + 1), "history has a gap");
    }
    for (_, _, history) in &snapshots {
        assert!(history.len() <= final_history.len());
        assert_eq!(
            history.as_slice(),
            &final_history[..history.len()],
            "a recorded entry changed"
        );
    }
    assert!(
        snapshots
            .iter()
            .filter(|(_, s, _)| !s.is_empty() && s.len() < 6)
            .count()
            >= 2,
        "the kills should land mid-run at least twice; adjust the kill points"
    );
}
