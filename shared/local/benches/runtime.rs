//! The local runtime under load, fsync on every commit (redb's default durability).
//!
//! `cargo bench -p eventflow-local --bench runtime` (add `-- --seconds N` to change the
//! duration of each throughput phase, 10 by default). Reports:
//! (a) a workflow of 3 sequential durable steps, each a trivial action, at concurrency 1, 10
//!     and 50: workflows per second and p50/p90/p99 start-to-finish latency;
//! (b) one workflow fanning out to 100 parallel steps and joining: wall time p50;
//! (c) a 10,000-item for_each: wall time;
//! (d) peak RSS of the process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use eventflow_engine::{ActionRegistry, ActionSpec, Definition, RunStatus, Version};
use eventflow_local::LocalStore;
use eventflow_local::runtime::{Runtime, RuntimeConfig, SystemClock};
use eventflow_ports::{Action, ActionContext, ActionError, Message, Outbox, StoreResult};
use serde_json::{Value, json};

/// The trivial action: answers at once.
struct Noop;

#[async_trait]
impl Action for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }
    async fn execute(&self, _: &ActionContext, input: &Value) -> Result<Value, ActionError> {
        Ok(json!({"echo": input.get("n").cloned().unwrap_or(Value::Null)}))
    }
}

/// The benchmark sends no messages.
struct NoOutbox;

#[async_trait]
impl Outbox for NoOutbox {
    async fn send(&self, m: &Message) -> StoreResult<String> {
        Ok(m.key.clone())
    }
}

fn registry() -> ActionRegistry {
    ActionRegistry::new([ActionSpec {
        name: "noop".into(),
        compensable: false,
        summary: String::new(),
    }])
}

fn definition(v: Value) -> Definition {
    serde_json::from_value(v).expect("definition")
}

async fn runtime(dir: &std::path::Path) -> Runtime {
    let store = LocalStore::open(dir).expect("store");
    let mut actions: HashMap<&'static str, Arc<dyn Action>> = HashMap::new();
    actions.insert("noop", Arc::new(Noop));
    Runtime::start(
        store,
        Arc::new(SystemClock),
        registry(),
        actions,
        Arc::new(NoOutbox),
        RuntimeConfig::default(),
    )
    .await
    .expect("runtime")
}

async fn publish(rt: &Runtime, def: Value) -> Arc<Version> {
    let record = rt.publish(&definition(def)).await.expect("publish");
    rt.version(&record.workflow_id, record.number)
        .await
        .expect("version")
}

async fn run_once(rt: &Runtime, v: &Arc<Version>, input: Value) -> Duration {
    let t = Instant::now();
    let (_, done) = rt
        .start_and_watch(Arc::clone(v), input)
        .await
        .expect("start");
    let status = done.await.expect("finished");
    assert_eq!(status, RunStatus::Completed);
    t.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let mut seconds = 10u64;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--seconds") {
        seconds = args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(seconds);
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(bench(Duration::from_secs(seconds)));
}

/// Each workload gets a fresh data directory and runtime, as a new deployment would.
async fn bench(phase: Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(&dir.path().join("a")).await;
    println!(
        "eventflow local runtime benchmark (redb, fsync on commit), {}s per phase",
        phase.as_secs()
    );

    let seq = publish(
        &rt,
        json!({"id": "seq3", "name": "3 steps", "kind": "custom", "steps": [
            {"id": "a", "action": "noop", "input": {"n": 1}},
            {"id": "b", "action": "noop", "depends_on": ["a"], "input": {"n": 2}},
            {"id": "c", "action": "noop", "depends_on": ["b"], "input": {"n": 3}}
        ]}),
    )
    .await;
    println!("\n(a) 3 sequential durable steps");
    println!(
        "{:>11} {:>12} {:>10} {:>10} {:>10}",
        "concurrency", "workflows/s", "p50", "p90", "p99"
    );
    for concurrency in [1usize, 10, 50] {
        let deadline = Instant::now() + phase;
        let started = Instant::now();
        let mut clients = Vec::new();
        for _ in 0..concurrency {
            let rt = rt.clone();
            let v = Arc::clone(&seq);
            clients.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    lat.push(run_once(&rt, &v, json!({})).await);
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for c in clients {
            all.extend(c.await.expect("client"));
        }
        let elapsed = started.elapsed();
        all.sort();
        println!(
            "{:>11} {:>12.0} {:>10} {:>10} {:>10}",
            concurrency,
            all.len() as f64 / elapsed.as_secs_f64(),
            ms(percentile(&all, 0.50)),
            ms(percentile(&all, 0.90)),
            ms(percentile(&all, 0.99))
        );
    }

    rt.stop();
    let rt = runtime(&dir.path().join("b")).await;
    let mut fan_steps = vec![json!({"id": "start", "action": "noop"})];
    for i in 0..100 {
        fan_steps.push(json!({"id": format!("p{i}"), "action": "noop", "depends_on": ["start"], "input": {"n": i}}));
    }
    let all: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
    fan_steps.push(json!({"id": "join", "action": "noop", "depends_on": all}));
    let fan = publish(
        &rt,
        json!({"id": "fan100", "name": "fan-out 100", "kind": "custom", "steps": fan_steps}),
    )
    .await;
    let mut walls = Vec::new();
    for _ in 0..30 {
        walls.push(run_once(&rt, &fan, json!({})).await);
    }
    walls.sort();
    println!(
        "\n(b) fan-out to 100 parallel steps and join: p50 {} (p90 {}, 30 runs)",
        ms(percentile(&walls, 0.5)),
        ms(percentile(&walls, 0.9))
    );

    rt.stop();
    let rt = runtime(&dir.path().join("c")).await;
    let each = publish(
        &rt,
        json!({"id": "each10k", "name": "for_each 10k", "kind": "custom", "steps": [
            {"id": "notify", "action": "noop", "input": {"n": "${item.n}"},
             "for_each": {"items": "input.attendees", "concurrency": 100}}
        ]}),
    )
    .await;
    let attendees: Vec<Value> = (0..10_000)
        .map(|i| json!({"n": i, "email": format!("a{i}@example.org")}))
        .collect();
    let wall = run_once(&rt, &each, json!({"attendees": attendees})).await;
    println!(
        "\n(c) for_each over 10,000 items (concurrency 100): {}",
        ms(wall)
    );

    println!("\n(d) peak RSS: {:.1} MB", peak_rss_mb());
}
