//! decide() throughput: a 20-step DAG run start to finish, and a 10,000-item for_each.
//!
//! `cargo bench -p eventflow-engine --bench decide`. Throughput is reported in step
//! transitions (status changes of a step or of a for_each item: dispatched, succeeded).

use std::hint::black_box;

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use eventflow_engine::*;
use serde_json::{Value, json};

fn registry() -> ActionRegistry {
    ActionRegistry::new([ActionSpec {
        name: "act".into(),
        compensable: true,
        summary: String::new(),
    }])
}

fn compile(def: Value) -> Version {
    let def: Definition = serde_json::from_value(def).expect("definition");
    Version::compile(def, 1, &registry()).expect("valid")
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

/// A 20-step DAG: four layers of five steps, each depending on two of the layer before;
/// inputs are literals and expressions over the run input and an upstream output.
fn dag(expressions: bool) -> Version {
    let mut steps = Vec::new();
    for layer in 0..4 {
        for k in 0..5 {
            let id = format!("s{layer}_{k}");
            let mut step = json!({"id": id, "action": "act", "compensate": true,
                                  "retry": {"max_attempts": 3}});
            if layer > 0 {
                let a = format!("s{}_{}", layer - 1, k);
                let b = format!("s{}_{}", layer - 1, (k + 1) % 5);
                step["input"] = if expressions {
                    json!({"event": "${input.event.id}", "from": format!("${{steps.{a}.output.n}}")})
                } else {
                    json!({"event": "evt-1", "n": k})
                };
                step["depends_on"] = json!([a, b]);
            }
            steps.push(step);
        }
    }
    compile(json!({"id": "bench", "name": "bench", "kind": "custom", "steps": steps}))
}

/// Runs the DAG to completion, answering every dispatch with success.
fn run_dag(v: &Version, input: &Value) -> (Checkpoint, usize) {
    let mut cp = Checkpoint::new(v, "ex", input.clone(), t0());
    let mut pending = Vec::new();
    let mut transitions = 0;
    let mut n = 0u64;
    let mut event = Event::new("start", EventKind::Started);
    loop {
        let d = decide(v, cp, event, t0(), n);
        cp = d.checkpoint;
        transitions += d.history.map_or(0, |h| h.changes.len());
        for c in d.commands {
            if let Command::RunStep { step, attempt, .. } = c {
                pending.push((step, attempt));
            }
        }
        let Some((step, attempt)) = pending.pop() else {
            break;
        };
        n += 1;
        event = Event::new(
            format!("e{n}"),
            EventKind::StepSucceeded {
                step,
                item: None,
                attempt,
                output: json!({"n": n}),
            },
        );
    }
    assert_eq!(cp.status, RunStatus::Completed);
    (cp, transitions)
}

fn fan_out(v: &Version, input: &Value) -> Checkpoint {
    let mut cp = Checkpoint::new(v, "ex", input.clone(), t0());
    let mut pending = std::collections::VecDeque::new();
    let mut event = Event::new("start", EventKind::Started);
    let mut n = 0u64;
    loop {
        let d = decide(v, cp, event, t0(), n);
        cp = d.checkpoint;
        for c in d.commands {
            if let Command::RunStep { item, attempt, .. } = c {
                pending.push_back((item, attempt));
            }
        }
        let Some((item, attempt)) = pending.pop_front() else {
            break;
        };
        n += 1;
        event = Event::new(
            format!("e{n}"),
            EventKind::StepSucceeded {
                step: "notify".into(),
                item,
                attempt,
                output: Value::Null,
            },
        );
    }
    assert_eq!(cp.status, RunStatus::Completed);
    cp
}

fn benches(c: &mut Criterion) {
    let input = json!({"event": {"id": "evt-1"}});
    for (name, expressions) in [
        ("dag20_literal_inputs", false),
        ("dag20_expression_inputs", true),
    ] {
        let v = dag(expressions);
        let (_, transitions) = run_dag(&v, &input);
        let mut g = c.benchmark_group("decide");
        g.throughput(Throughput::Elements(transitions as u64));
        g.bench_function(name, |b| b.iter(|| black_box(run_dag(&v, &input))));
        g.finish();
    }

    let attendees: Vec<Value> = (0..10_000)
        .map(|i| json!({"email": format!("a{i}@example.org"), "name": format!("Attendee {i}")}))
        .collect();
    let input = json!({"attendees": attendees});
    let v = compile(
        json!({"id": "fan", "name": "fan", "kind": "custom", "steps": [
            {"id": "notify", "action": "act", "input": {"to": "${item.email}"},
             "for_each": {"items": "input.attendees", "concurrency": 50}}
        ]}),
    );
    let mut g = c.benchmark_group("for_each");
    g.sample_size(20);
    g.bench_function("10000_items", |b| {
        b.iter_batched(
            || (),
            |()| black_box(fan_out(&v, &input)),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(decide_benches, benches);
criterion_main!(decide_benches);
