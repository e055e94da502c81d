//! The DynamoDB store against moto server (`AWS_ENDPOINT_URL_DYNAMODB`, started by
//! `bash localstack/start.sh`): each test on its own table, given / when / then.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeDelta, Utc};
use eventflow_aws::dynamo::{DynamoStore, MAX_BODY_BYTES, create_table};
use eventflow_engine::*;
use eventflow_ports::*;
use serde_json::{Value, json};

const TENANT: &str = "acme";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn t0() -> DateTime<Utc> {
    t("2026-03-01T10:00:00Z")
}

/// A clock the test moves.
#[derive(Debug)]
struct TestClock(Mutex<Timestamp>);

impl TestClock {
    fn set(&self, now: Timestamp) {
        *self.0.lock().expect("clock") = now;
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock")
    }
}

/// A store of tenant `acme` on a new table of its own.
async fn store() -> DynamoStore {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB").is_ok(),
        "AWS_ENDPOINT_URL_DYNAMODB is not set: start the emulators with `eval \"$(bash localstack/start.sh)\"` (moto serves DynamoDB on 127.0.0.1:4567)"
    );
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let table = format!("eventflow-dynamo-{}", &suffix[suffix.len() - 12..]);
    create_table(&client, &table)
        .await
        .expect("create the table");
    // Creating it again is fine.
    create_table(&client, &table).await.expect("idempotent");
    DynamoStore::new(client, table, TENANT)
}

fn version(def: Value) -> Version {
    let def: Definition = serde_json::from_value(def).expect("definition");
    Version::compile(def, 1, &eventflow_actions::registry()).expect("valid")
}

fn two_steps() -> Version {
    version(
        json!({"id": "launch", "name": "launch", "kind": "custom", "steps": [
            {"id": "a", "action": "notify", "input": {"channel": "ops", "text": "a"}},
            {"id": "b", "action": "notify", "input": {"channel": "ops", "text": "b"}}
        ]}),
    )
}

fn attempt_key(execution: &str, step: &str, item: Option<u32>, attempt: u32) -> String {
    let item = item.map_or_else(|| "-".to_owned(), |i| i.to_string());
    format!("{execution}/{step}/{item}/{attempt}")
}

/// What a host commits for `event` applied to `cp`: the next checkpoint, its history, the
/// tasks and timers it asks for, and the answered attempt with its result.
fn apply(v: &Version, cp: &Checkpoint, id: &str, kind: EventKind, now: Timestamp) -> Commit {
    let answered = match &kind {
        EventKind::StepSucceeded {
            step,
            item,
            attempt,
            output,
        } => Some((
            attempt_key(&cp.execution_id, step, *item, *attempt),
            output.clone(),
        )),
        EventKind::StepFailed {
            step,
            item,
            attempt,
            error,
        } => Some((
            attempt_key(&cp.execution_id, step, *item, *attempt),
            json!({"error": error.name}),
        )),
        _ => None,
    };
    let first = matches!(kind, EventKind::Started);
    let d = decide(v, cp.clone(), Event::new(id, kind), now, 7);
    let mut commit = Commit {
        expected_seq: (!first).then_some(cp.seq),
        input: first.then(|| cp.input.clone()),
        history: d.history.into_iter().collect(),
        ..Commit::default()
    };
    for c in d.commands {
        match c {
            Command::RunStep { .. } | Command::RunCompensation { .. } => {
                commit.dispatched.push(Task {
                    execution_id: cp.execution_id.clone(),
                    workflow_id: cp.workflow_id.clone(),
                    version: cp.version,
                    command: c,
                    redelivered: false,
                })
            }
            Command::ScheduleTimer { timer, at } => commit.timers.push(TimerRecord {
                execution_id: cp.execution_id.clone(),
                timer,
                at,
            }),
            Command::EmitMetric { .. } => {
                commit
                    .metrics
                    .extend(metrics::Sample::of(&c, &cp.workflow_id, now))
            }
            Command::Finish { .. } => {}
        }
    }
    if let Some((key, output)) = answered {
        commit.answered.push(key.clone());
        commit.results.push((key, output));
    }
    commit.checkpoint = Some(d.checkpoint);
    commit
}

fn next_cp(c: &Commit) -> Checkpoint {
    c.checkpoint.clone().expect("a checkpoint")
}

/// Starts `execution` of `v` on `input` and commits it.
async fn start(store: &DynamoStore, v: &Version, execution: &str, input: Value) -> Commit {
    let cp = Checkpoint::new(v, execution, input, t0());
    let mut c = apply(
        v,
        &cp,
        &format!("{execution}/started"),
        EventKind::Started,
        t0(),
    );
    c.start_key = Some(format!("start-{execution}"));
    store.commit(vec![c.clone()]).await.expect("start");
    c
}

fn ok(step: &str, item: Option<u32>) -> EventKind {
    EventKind::StepSucceeded {
        step: step.into(),
        item,
        attempt: 1,
        output: json!({"sent": true}),
    }
}

fn failed(step: &str, item: Option<u32>) -> EventKind {
    EventKind::StepFailed {
        step: step.into(),
        item,
        attempt: 1,
        error: StepError::terminal("Rejected", "no such mailbox"),
    }
}

/// Every item of a partition, straight from the table.
async fn partition(store: &DynamoStore, pk: &str) -> Vec<HashMap<String, AttributeValue>> {
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = store
            .client()
            .query()
            .table_name(store.table())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.into()))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("query");
        out.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return out,
        }
    }
}

/// An item's size as DynamoDB counts it: names and values.
fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::N(n) => n.len(),
                    AttributeValue::B(b) => b.as_ref().len(),
                    _ => 64,
                }
        })
        .sum()
}

fn sk(item: &HashMap<String, AttributeValue>) -> String {
    item.get("sk")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

// ---- versions ------------------------------------------------------------------------------

#[tokio::test]
async fn a_version_is_put_once_and_never_overwritten() {
    // Given a store and a definition
    let store = store().await;
    let def = two_steps().definition().clone();
    // When it is published twice
    let v1 = store.publish(&def, "h1", t0()).await.expect("v1");
    let again = store.publish(&def, "h1", t0()).await.expect("again");
    // Then the second returns the first
    assert_eq!(v1.number, 1);
    assert_eq!(again, v1);
    // When a changed definition is published
    let mut changed = def.clone();
    changed.name = "renamed".into();
    let v2 = store.publish(&changed, "h2", t0()).await.expect("v2");
    // Then it is the next version, and the first is untouched
    assert_eq!(v2.number, 2);
    let stored = store.version("launch", 1).await.expect("get").expect("v1");
    assert_eq!(stored.definition.name, "launch");
    assert_eq!(stored, v1);
    assert_eq!(
        store.latest("launch").await.expect("latest"),
        Some(v2.clone())
    );
    // And a put of an existing version number is refused by the table itself
    let refused = store
        .client()
        .put_item()
        .table_name(store.table())
        .item("pk", AttributeValue::S(format!("{TENANT}#WF#launch")))
        .item("sk", AttributeValue::S("V#0000000001".into()))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    assert!(refused.is_err(), "an existing version was overwritten");

    // When two publishers race with different content
    let (mut x, mut y) = (def.clone(), def.clone());
    x.name = "x".into();
    y.name = "y".into();
    let other = store.clone();
    let (rx, ry) = tokio::join!(store.publish(&x, "hx", t0()), other.publish(&y, "hy", t0()));
    let (rx, ry) = (rx.expect("x"), ry.expect("y"));
    // Then each gets its own number and keeps its own definition
    let mut numbers = [rx.number, ry.number];
    numbers.sort();
    assert_eq!(numbers, [3, 4]);
    for r in [&rx, &ry] {
        let stored = store.version("launch", r.number).await.expect("get");
        assert_eq!(stored.as_ref(), Some(r));
    }
    // When two publishers race with the same content, they get the same version
    let mut z = def.clone();
    z.name = "z".into();
    let (a, b) = tokio::join!(store.publish(&z, "hz", t0()), other.publish(&z, "hz", t0()));
    assert_eq!(a.expect("a"), b.expect("b"));
    assert_eq!(store.versions("launch").await.expect("versions").len(), 5);

    // States and aliases
    store
        .set_state("launch", 1, VersionState::Deprecated)
        .await
        .expect("deprecate");
    assert_eq!(
        store.state("launch", 1).await.expect("state"),
        VersionState::Deprecated
    );
    let versions = store.versions("launch").await.expect("versions");
    assert_eq!(
        versions
            .iter()
            .map(|(v, s)| (v.number, *s))
            .collect::<Vec<_>>(),
        [
            (1, VersionState::Deprecated),
            (2, VersionState::Active),
            (3, VersionState::Active),
            (4, VersionState::Active),
            (5, VersionState::Active)
        ]
    );
    assert_eq!(
        store.version("launch", 1).await.expect("get"),
        Some(v1),
        "a state change leaves the definition as it was"
    );
    assert!(matches!(
        store.set_state("launch", 9, VersionState::Retired).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.alias("launch").await.expect("alias"), None);
    let alias = Alias {
        workflow_id: "launch".into(),
        active: 2,
        canary: Some(Canary {
            version: 3,
            weight: 10,
        }),
    };
    store.set_alias(&alias).await.expect("set alias");
    assert_eq!(store.alias("launch").await.expect("alias"), Some(alias));
    let mut first = def.clone();
    first.id = "a-first".into();
    store.publish(&first, "h-first", t0()).await.expect("other");
    assert_eq!(
        store.workflows().await.expect("workflows"),
        ["a-first", "launch"]
    );
}

// ---- checkpoints ---------------------------------------------------------------------------

#[tokio::test]
async fn of_two_writers_of_one_checkpoint_one_wins_and_the_other_reapplies() {
    // Given a run with two steps in flight
    let clock = Arc::new(TestClock(Mutex::new(t0())));
    let store = store().await.with_clock(clock.clone());
    let v = two_steps();
    let started = start(&store, &v, "ex1", json!({"event": "RustConf"})).await;
    let read = store
        .checkpoint("ex1")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read, next_cp(&started));
    assert_eq!(read.input, json!({"event": "RustConf"}));
    assert_eq!(
        store.execution_for_key("start-ex1").await.expect("key"),
        Some("ex1".into())
    );
    // When two writers apply different events to the same checkpoint at once
    let now = t0() + TimeDelta::seconds(5);
    let ca = apply(&v, &read, "a-done", ok("a", None), now);
    let cb = apply(&v, &read, "b-done", ok("b", None), now);
    let other = store.clone();
    let (ra, rb) = tokio::join!(
        store.commit(vec![ca.clone()]),
        other.commit(vec![cb.clone()])
    );
    // Then exactly one wins, and the other is told of a conflict naming the run
    let (loser_event, loser_kind, loser_key, err) = match (ra, rb) {
        (Ok(()), Err(e)) => ("b-done", ok("b", None), "ex1/b/-/1", e),
        (Err(e), Ok(())) => ("a-done", ok("a", None), "ex1/a/-/1", e),
        other => panic!("exactly one commit must win: {other:?}"),
    };
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("ex1")),
        "{err}"
    );
    // And the loser wrote nothing: its result is not recorded, its task still pending
    assert_eq!(store.result(loser_key).await.expect("result"), None);
    clock.set(t0() + TimeDelta::hours(1));
    let pending: Vec<String> = store
        .pending_tasks()
        .await
        .expect("tasks")
        .iter()
        .map(|t| t.key().to_owned())
        .collect();
    assert_eq!(pending, [loser_key]);
    // When the loser re-reads and re-applies its event
    let current = store
        .checkpoint("ex1")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(current.seq, 2);
    let again = apply(&v, &current, loser_event, loser_kind, now);
    store.commit(vec![again.clone()]).await.expect("re-applied");
    // Then nothing is lost: both steps succeeded, the history holds both events in order
    let end = store
        .checkpoint("ex1")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(end, next_cp(&again));
    assert_eq!(end.status, RunStatus::Completed);
    let history = store.history("ex1").await.expect("history");
    assert_eq!(history.iter().map(|h| h.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let mut events: Vec<&str> = history.iter().map(|h| h.event.id.as_str()).collect();
    events.sort();
    assert_eq!(events, ["a-done", "b-done", "ex1/started"]);
    for key in ["ex1/a/-/1", "ex1/b/-/1"] {
        assert_eq!(
            store.result(key).await.expect("result"),
            Some(json!({"sent": true}))
        );
    }
    clock.set(t0() + TimeDelta::days(1));
    assert!(store.pending_tasks().await.expect("tasks").is_empty());
    // And the run's figures were counted once: the refused commit added none
    let hours = store
        .metrics("launch", t0(), t0() + TimeDelta::hours(1))
        .await
        .expect("metrics");
    assert_eq!(hours.len(), 1);
    assert_eq!(hours[0].hour, t0());
    let counts: Vec<(&str, u64)> = hours[0]
        .figures
        .iter()
        .map(|(name, f)| (name.as_str(), f.count))
        .collect();
    assert_eq!(
        counts,
        [("RunCompleted", 1), ("RunDuration", 1), ("RunStarted", 1)]
    );
    let duration = &hours[0].figures["RunDuration"];
    assert_eq!(
        (duration.unit.as_str(), duration.sum),
        ("Milliseconds", 5_000.0)
    );
    assert_eq!(
        duration.buckets[metrics::bucket_of(5_000.0)],
        metrics::Bucket {
            count: 1,
            sum: 5_000.0
        }
    );
    // And another hour, or another workflow, has none
    assert!(
        store
            .metrics(
                "launch",
                t0() + TimeDelta::hours(1),
                t0() + TimeDelta::hours(2)
            )
            .await
            .expect("metrics")
            .is_empty()
    );
    // And a new run cannot take an existing run's place
    let err = store
        .commit(vec![started])
        .await
        .expect_err("the run exists");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
}

#[tokio::test]
async fn results_are_idempotency_records_and_a_redelivered_commit_changes_nothing() {
    // Given a run with a task in flight
    let store = store().await;
    let clock = Arc::new(TestClock(Mutex::new(t0())));
    let store = store.with_clock(clock.clone());
    let v = two_steps();
    let started = start(&store, &v, "ex1", json!({})).await;
    assert_eq!(store.result("ex1/a/-/1").await.expect("result"), None);
    // Then the run's tasks are pending once it made no progress for its deadline (15
    // minutes, rounded up to 5: from 10:00:00 that is 10:15), not before
    assert!(store.pending_tasks().await.expect("tasks").is_empty());
    clock.set(t0() + TimeDelta::minutes(16));
    let pending = store.pending_tasks().await.expect("tasks");
    assert_eq!(pending, started.dispatched);
    // When the answer of a is committed
    let answer = apply(&v, &next_cp(&started), "a-done", ok("a", None), t0());
    store.commit(vec![answer.clone()]).await.expect("answer");
    // Then its result is recorded, and the run, having made progress, is not stuck; once
    // it makes none for another deadline (written at 10:16: 10:35), only b's task is pending
    assert_eq!(
        store.result("ex1/a/-/1").await.expect("result"),
        Some(json!({"sent": true}))
    );
    assert!(store.pending_tasks().await.expect("tasks").is_empty());
    clock.set(t0() + TimeDelta::minutes(32));
    assert!(store.pending_tasks().await.expect("tasks").is_empty());
    clock.set(t0() + TimeDelta::minutes(35));
    let pending = store.pending_tasks().await.expect("tasks");
    assert_eq!(
        pending.iter().map(Task::key).collect::<Vec<_>>(),
        ["ex1/b/-/1"]
    );
    let before = (
        store.checkpoint("ex1").await.expect("cp"),
        store.history("ex1").await.expect("history"),
    );
    // When the same commit is delivered again
    let err = store
        .commit(vec![answer])
        .await
        .expect_err("already applied");
    // Then it is a conflict and nothing changed
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    let after = (
        store.checkpoint("ex1").await.expect("cp"),
        store.history("ex1").await.expect("history"),
    );
    assert_eq!(after, before);
    assert_eq!(
        store.result("ex1/a/-/1").await.expect("result"),
        Some(json!({"sent": true}))
    );
    assert_eq!(store.pending_tasks().await.expect("tasks"), pending);
    // And a commit with only a result (a worker's, no checkpoint) applied twice is the same
    let only = Commit {
        answered: vec!["ex1/b/-/1".into()],
        results: vec![("ex1/b/-/1".into(), json!({"n": 1}))],
        ..Commit::default()
    };
    store.commit(vec![only.clone()]).await.expect("once");
    store.commit(vec![only]).await.expect("twice");
    assert_eq!(
        store.result("ex1/b/-/1").await.expect("result"),
        Some(json!({"n": 1}))
    );
    // And b is still pending: what a run waits for follows its checkpoint, and its answer has
    // not been applied (sent again, the worker answers from the recorded result)
    assert_eq!(
        store
            .pending_tasks()
            .await
            .expect("tasks")
            .iter()
            .map(Task::key)
            .collect::<Vec<_>>(),
        ["ex1/b/-/1"]
    );
}

fn timer(execution: &str, step: &str, at: Timestamp) -> TimerRecord {
    TimerRecord {
        execution_id: execution.into(),
        timer: Timer {
            kind: TimerKind::Wait,
            step: step.into(),
            item: None,
            attempt: 0,
        },
        at,
    }
}

#[tokio::test]
async fn timers_come_due_through_the_index_in_time_order_and_go_once_fired() {
    // Given twenty timers of several runs, set in no particular order
    let store = store().await;
    let timers: Vec<TimerRecord> = (0..20)
        .map(|i| {
            let minutes = (i * 7) % 20;
            timer(
                &format!("ex{}", i % 3),
                &format!("s{i}"),
                t0() + TimeDelta::minutes(minutes) + TimeDelta::milliseconds(i),
            )
        })
        .collect();
    store
        .commit(vec![Commit {
            timers: timers.clone(),
            ..Commit::default()
        }])
        .await
        .expect("set");
    let mut ordered = timers.clone();
    ordered.sort_by_key(|t| t.at);
    // And one of another tenant, earlier than all
    let other = store.for_tenant("globex");
    let theirs = timer("ex0", "theirs", t0() - TimeDelta::hours(1));
    other
        .commit(vec![Commit {
            timers: vec![theirs.clone()],
            ..Commit::default()
        }])
        .await
        .expect("other tenant");
    // When the scheduler asks what is due at minute 10
    let due = store
        .due(t0() + TimeDelta::minutes(10), 100)
        .await
        .expect("due");
    // Then it gets exactly the timers due by then, earliest first, its own only
    let expected: Vec<TimerRecord> = ordered
        .iter()
        .filter(|t| t.at <= t0() + TimeDelta::minutes(10))
        .cloned()
        .collect();
    assert_eq!(due, expected);
    assert_eq!(
        store.due(t0() + TimeDelta::hours(1), 5).await.expect("due"),
        ordered[..5]
    );
    assert_eq!(store.next().await.expect("next"), Some(ordered[0].clone()));
    assert_eq!(other.next().await.expect("next"), Some(theirs.clone()));
    let all = store
        .due_timers_of_all_tenants(t0() + TimeDelta::minutes(1), 100)
        .await
        .expect("all");
    assert_eq!(all[0], ("globex".to_owned(), theirs));
    // When the first three fire
    store
        .commit(vec![Commit {
            fired: ordered[..3].to_vec(),
            ..Commit::default()
        }])
        .await
        .expect("fire");
    // Then they are gone
    assert_eq!(
        store
            .due(t0() + TimeDelta::hours(1), 100)
            .await
            .expect("due"),
        ordered[3..]
    );
    // When a timer is set again for another time, it moves
    let mut moved = ordered[3].clone();
    moved.at = t0() + TimeDelta::hours(2);
    store
        .commit(vec![Commit {
            fired: vec![ordered[3].clone()],
            timers: vec![moved.clone()],
            ..Commit::default()
        }])
        .await
        .expect("move");
    assert_eq!(store.next().await.expect("next"), Some(ordered[4].clone()));
    let late = store
        .due(t0() + TimeDelta::hours(3), 100)
        .await
        .expect("due");
    assert_eq!(late.last(), Some(&moved));
    assert_eq!(late.len(), 17);
}

// ---- a large fan-out -----------------------------------------------------------------------

#[tokio::test]
async fn a_fifty_thousand_item_for_each_keeps_every_item_under_400_kb() {
    // Given a for_each over 50,000 attendees
    let store = store().await;
    let v = version(
        json!({"id": "mailing", "name": "mailing", "kind": "custom", "steps": [
            {"id": "m", "action": "email.send",
             "input": {"to": ["${item.email}"], "subject": "Welcome", "text": "${'Hello ' + item.name}"},
             "for_each": {"items": "input.attendees", "concurrency": 50, "tolerated_failure": 0.5}}
        ]}),
    );
    let attendees: Vec<Value> = (0..50_000)
        .map(|i| json!({"email": format!("attendee{i}@example.org"), "name": format!("Attendee {i}")}))
        .collect();
    let input = json!({"attendees": attendees});
    // When it starts and items succeed and fail, each event committed
    let mut c = start(&store, &v, "big", input.clone()).await;
    let mut history = c.history.clone();
    for n in 0..240u32 {
        let kind = if n % 4 == 3 {
            failed("m", Some(n))
        } else {
            ok("m", Some(n))
        };
        let now = t0() + TimeDelta::seconds(i64::from(n));
        c = apply(&v, &next_cp(&c), &format!("e{n}"), kind, now);
        history.extend(c.history.clone());
        store.commit(vec![c.clone()]).await.expect("commit");
    }
    // Then every stored item of the run is under 400 KB, the input in several chunks
    let items = partition(&store, &format!("{TENANT}#EX#big")).await;
    let largest = items.iter().map(item_size).max().unwrap_or(0);
    assert!(largest < 400 * 1024, "an item is {largest} bytes");
    let chunks = items.iter().filter(|i| sk(i).starts_with("IN#")).count();
    assert!(chunks >= 10, "{chunks} input chunks");
    let cp_size = items
        .iter()
        .find(|i| sk(i) == "CP")
        .map(item_size)
        .expect("checkpoint");
    assert!(cp_size < 16 * 1024, "the checkpoint is {cp_size} bytes");
    // And the run reads back equal: checkpoint with its input, and its history
    let read = store
        .checkpoint("big")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read, next_cp(&c));
    assert_eq!(read.input, input);
    let fan = read.step("m").and_then(|s| s.fan.clone()).expect("fan");
    assert_eq!((fan.succeeded, fan.failed), (180, 60));
    assert_eq!(store.history("big").await.expect("history"), history);
    // And a run whose fan-out records the most failures it can still fits in an item
    let mut worst = next_cp(&c);
    if let Some(fan) = worst.steps[0].fan.as_mut() {
        fan.failed_items = (0..MAX_FAILED_ITEM_INDICES as u32)
            .map(|i| 40_000 + i)
            .collect();
    }
    worst.input = Value::Null;
    let size = serde_json::to_vec(&worst).expect("json").len();
    assert!(
        size < MAX_BODY_BYTES,
        "the largest checkpoint is {size} bytes"
    );
}

#[tokio::test]
async fn an_item_over_the_limit_is_refused_by_name_and_nothing_of_its_commit_is_written() {
    // Given a run
    let store = store().await;
    let v = two_steps();
    let started = start(&store, &v, "ex1", json!({})).await;
    // When an answer carries a 360 KB output
    let big = json!({"blob": "x".repeat(360 * 1024)});
    let mut c = apply(&v, &next_cp(&started), "a-done", ok("a", None), t0());
    c.results[0].1 = big;
    let err = store.commit(vec![c]).await.expect_err("too large");
    // Then the error names the item and its size, and nothing was written
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("{TENANT}#EX#ex1/R#ex1/a/-/1")),
        "{msg}"
    );
    assert!(msg.contains("bytes"), "{msg}");
    assert_eq!(store.result("ex1/a/-/1").await.expect("result"), None);
    assert_eq!(
        store.checkpoint("ex1").await.expect("cp").map(|c| c.seq),
        Some(1)
    );
    assert_eq!(store.history("ex1").await.expect("history").len(), 1);
}

// ---- crashes -------------------------------------------------------------------------------

/// The log item of a commit of one entry as a writer that crashed before its checkpoint
/// leaves it (the layout `dynamo/log.rs` describes).
async fn leave_history(store: &DynamoStore, entry: &HistoryEntry, written_at_ms: i64) {
    let n = |v: u64| AttributeValue::N(v.to_string());
    store
        .client()
        .put_item()
        .table_name(store.table())
        .item("pk", AttributeValue::S(format!("{TENANT}#EX#ex1")))
        .item("sk", AttributeValue::S(format!("H#{:012}#000", entry.seq)))
        .item(
            "body",
            AttributeValue::S(json!({"entries": [entry]}).to_string()),
        )
        .item("first", n(entry.seq))
        .item("last", n(entry.seq))
        .item("part", n(0))
        .item("parts", n(1))
        .item(
            "commit",
            AttributeValue::S(format!("crashed-{written_at_ms}")),
        )
        .item("event_id", AttributeValue::S(entry.event.id.clone()))
        .item("written_at", AttributeValue::N(written_at_ms.to_string()))
        .send()
        .await
        .expect("put");
}

#[tokio::test]
async fn a_crash_between_history_and_checkpoint_leaves_them_consistent() {
    // Given a run, and a writer that wrote the history of an event and crashed
    let store = store().await;
    let v = two_steps();
    let started = start(&store, &v, "ex1", json!({})).await;
    let later = t0() + TimeDelta::seconds(1);
    let crashed = apply(&v, &next_cp(&started), "a-done", ok("a", None), t0());
    leave_history(&store, &crashed.history[0], t0().timestamp_millis()).await;
    // Then the history stops at the checkpoint
    assert_eq!(
        store.history("ex1").await.expect("history"),
        started.history
    );
    // When the same event is applied again (later, so its entry differs) and committed
    let again = apply(&v, &next_cp(&started), "a-done", ok("a", None), later);
    assert_ne!(again.history, crashed.history);
    store.commit(vec![again.clone()]).await.expect("re-applied");
    // Then history and checkpoint agree
    let mut expected = started.history.clone();
    expected.extend(again.history.clone());
    assert_eq!(store.history("ex1").await.expect("history"), expected);
    assert_eq!(
        store.checkpoint("ex1").await.expect("cp"),
        Some(next_cp(&again))
    );

    // Given a fresh entry of another event beyond the checkpoint (a writer mid-commit)
    let cp = next_cp(&again);
    let theirs = apply(&v, &cp, "b-theirs", ok("b", None), later);
    leave_history(
        &store,
        &theirs.history[0],
        chrono::Utc::now().timestamp_millis(),
    )
    .await;
    // When another event is committed at that sequence number
    let mine = apply(&v, &cp, "b-mine", ok("b", None), later);
    let err = store
        .commit(vec![mine.clone()])
        .await
        .expect_err("in flight");
    // Then it waits its turn: a conflict, and the other writer's entry is left alone
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("ex1")),
        "{err}"
    );
    // Given instead an old entry of another event (a writer that crashed long ago)
    leave_history(&store, &theirs.history[0], 0).await;
    // When the event is committed, then it replaces the orphan
    store
        .commit(vec![mine.clone()])
        .await
        .expect("replaces the orphan");
    let history = store.history("ex1").await.expect("history");
    assert_eq!(history.last(), mine.history.last());
    assert_eq!(history.len(), 3);
}

// ---- listing, tenants, records, dependent starts -------------------------------------------

#[tokio::test]
async fn runs_are_listed_oldest_first_with_filters() {
    let store = store().await;
    let v = two_steps();
    let s1 = start(&store, &v, "ex1", json!({})).await;
    let cp = Checkpoint::new(&v, "ex2", json!({}), t0() + TimeDelta::minutes(1));
    let s2 = apply(&v, &cp, "ex2/started", EventKind::Started, cp.created_at);
    store.commit(vec![s2.clone()]).await.expect("ex2");
    let a = apply(
        &v,
        &next_cp(&s2),
        "a",
        ok("a", None),
        t0() + TimeDelta::minutes(2),
    );
    let b = apply(
        &v,
        &next_cp(&a),
        "b",
        ok("b", None),
        t0() + TimeDelta::minutes(3),
    );
    store.commit(vec![a, b.clone()]).await.expect("ex2 done");
    let all = store.list(None, None).await.expect("list");
    assert_eq!(
        all.iter()
            .map(|s| s.execution_id.as_str())
            .collect::<Vec<_>>(),
        ["ex1", "ex2"]
    );
    assert_eq!(all[1].updated_at, next_cp(&b).updated_at);
    assert_eq!(all[1].created_at, t0() + TimeDelta::minutes(1));
    assert_eq!(all[0].status, next_cp(&s1).status);
    let done = store
        .list(Some(RunStatus::Completed), None)
        .await
        .expect("list");
    assert_eq!(
        done.iter()
            .map(|s| s.execution_id.as_str())
            .collect::<Vec<_>>(),
        ["ex2"]
    );
    assert!(
        store
            .list(None, Some("other"))
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        store.list(None, Some("launch")).await.expect("list").len(),
        2
    );
}

#[tokio::test]
async fn a_tenant_sees_nothing_of_another() {
    // Given a tenant with a version, a run, a record and a timer
    let clock = Arc::new(TestClock(Mutex::new(t0())));
    let acme = store().await.with_clock(clock.clone());
    let v = two_steps();
    acme.publish(v.definition(), "h1", t0())
        .await
        .expect("publish");
    let started = start(&acme, &v, "ex1", json!({})).await;
    acme.put("events", "e1", &json!({"v": 1}))
        .await
        .expect("put");
    acme.commit(vec![Commit {
        timers: vec![timer("ex1", "a", t0())],
        answered: vec![],
        results: vec![("ex1/a/-/1".into(), json!({}))],
        ..Commit::default()
    }])
    .await
    .expect("timer");
    // When another tenant's store on the same table looks
    clock.set(t0() + TimeDelta::days(1));
    let globex = acme.for_tenant("globex");
    // Then it sees none of it
    assert!(globex.workflows().await.expect("workflows").is_empty());
    assert_eq!(globex.latest("launch").await.expect("latest"), None);
    assert_eq!(globex.version("launch", 1).await.expect("version"), None);
    assert_eq!(globex.checkpoint("ex1").await.expect("cp"), None);
    assert!(globex.history("ex1").await.expect("history").is_empty());
    assert!(globex.list(None, None).await.expect("list").is_empty());
    assert_eq!(globex.get("events", "e1").await.expect("get"), None);
    assert_eq!(globex.result("ex1/a/-/1").await.expect("result"), None);
    assert_eq!(
        globex.execution_for_key("start-ex1").await.expect("key"),
        None
    );
    assert!(globex.pending_tasks().await.expect("tasks").is_empty());
    assert!(
        globex
            .due(t0() + TimeDelta::days(1), 10)
            .await
            .expect("due")
            .is_empty()
    );
    assert_eq!(globex.next().await.expect("next"), None);
    // And the first tenant still sees its own
    assert_eq!(
        acme.pending_tasks().await.expect("tasks"),
        started.dispatched
    );
    // Tenants themselves
    let record = TenantRecord {
        tenant: "globex".into(),
        key_hash: "sha256:abc".into(),
        created_at: t0(),
        webhook_secret: "s3cret".into(),
    };
    acme.create_tenant(&record).await.expect("create");
    assert!(matches!(
        globex.create_tenant(&record).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(globex.tenant("globex").await.expect("tenant"), Some(record));
    assert_eq!(globex.tenant("initech").await.expect("tenant"), None);
}

#[tokio::test]
async fn records_put_get_and_delete_return_what_they_replaced() {
    let store = store().await;
    assert_eq!(store.get("events", "e1").await.expect("get"), None);
    assert_eq!(
        store
            .put("events", "e1", &json!({"v": 1}))
            .await
            .expect("put"),
        None
    );
    assert_eq!(
        store
            .put("events", "e1", &json!({"v": 2}))
            .await
            .expect("put"),
        Some(json!({"v": 1}))
    );
    assert_eq!(
        store.get("events", "e1").await.expect("get"),
        Some(json!({"v": 2}))
    );
    assert_eq!(store.get("sponsors", "e1").await.expect("get"), None);
    assert_eq!(
        store.delete("events", "e1").await.expect("delete"),
        Some(json!({"v": 2}))
    );
    assert_eq!(store.delete("events", "e1").await.expect("delete"), None);
    assert_eq!(store.get("events", "e1").await.expect("get"), None);
}

#[tokio::test]
async fn a_dependent_start_is_kept_until_its_run_exists() {
    // Given a commit that owes a start of another workflow
    let store = store().await;
    let v = two_steps();
    let owed = DependentStart {
        key: "dep/up-1/launch".into(),
        workflow: "launch".into(),
        input: json!({"event": "e1"}),
    };
    store
        .commit(vec![Commit {
            dependent_starts: vec![owed.clone()],
            ..Commit::default()
        }])
        .await
        .expect("owe");
    assert_eq!(
        store.dependent_starts().await.expect("owed"),
        std::slice::from_ref(&owed)
    );
    // When the run with that start key is created
    let cp = Checkpoint::new(&v, "down-1", owed.input.clone(), t0());
    let mut c = apply(&v, &cp, "down-1/started", EventKind::Started, t0());
    c.start_key = Some(owed.key.clone());
    store.commit(vec![c]).await.expect("start");
    // Then it is owed no more
    assert!(store.dependent_starts().await.expect("owed").is_empty());
    assert_eq!(
        store.execution_for_key(&owed.key).await.expect("key"),
        Some("down-1".into())
    );
    // And a start key is never given to a second run
    let cp = Checkpoint::new(&v, "down-2", owed.input.clone(), t0());
    let mut c = apply(&v, &cp, "down-2/started", EventKind::Started, t0());
    c.start_key = Some(owed.key.clone());
    let err = store.commit(vec![c]).await.expect_err("key taken");
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("down-1")),
        "{err}"
    );
    assert_eq!(store.checkpoint("down-2").await.expect("cp"), None);
}
