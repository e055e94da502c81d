//! The redb store: conditional checkpoints, atomic commits, timers, versions, records.

use chrono::{DateTime, Utc};
use eventflow_engine::*;
use eventflow_local::LocalStore;
use eventflow_ports::*;
use serde_json::json;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn version() -> Version {
    let def: Definition = serde_json::from_value(json!({"id": "w", "name": "w", "kind": "custom",
        "steps": [{"id": "a", "action": "notify"}]}))
    .expect("def");
    Version::compile(def, 1, &eventflow_actions::registry()).expect("valid")
}

fn timer(step: &str, at: &str) -> TimerRecord {
    TimerRecord {
        execution_id: "ex1".into(),
        timer: Timer {
            kind: TimerKind::Wait,
            step: step.into(),
            item: None,
            attempt: 0,
        },
        at: t(at),
    }
}

#[tokio::test]
async fn a_checkpoint_is_written_only_over_the_sequence_it_expects() {
    let dir = tempfile::tempdir().expect("dir");
    let store = LocalStore::open(dir.path()).expect("open");
    let v = version();
    let mut cp = Checkpoint::new(
        &v,
        "ex1",
        json!({"big": [1, 2, 3]}),
        t("2026-01-01T00:00:00Z"),
    );
    store
        .commit(vec![Commit {
            checkpoint: Some(cp.clone()),
            input: Some(cp.input.clone()),
            ..Commit::default()
        }])
        .await
        .expect("create");
    // A second creation of the same run loses.
    let err = store
        .commit(vec![Commit {
            checkpoint: Some(cp.clone()),
            ..Commit::default()
        }])
        .await
        .expect_err("conflict");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    cp.seq = 1;
    store
        .commit(vec![Commit {
            checkpoint: Some(cp.clone()),
            expected_seq: Some(0),
            ..Commit::default()
        }])
        .await
        .expect("advance");
    // A writer that read seq 0 too is refused, and nothing of its commit is written.
    let stale = Commit {
        checkpoint: Some(cp.clone()),
        expected_seq: Some(0),
        results: vec![("ex1/a/-/1".into(), json!({"ok": true}))],
        ..Commit::default()
    };
    assert!(matches!(
        store.commit(vec![stale]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.result("ex1/a/-/1").await.expect("read"), None);
    let loaded = store
        .checkpoint("ex1")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(loaded.seq, 1);
    assert_eq!(
        loaded.input,
        json!({"big": [1, 2, 3]}),
        "the input is stored once and re-attached"
    );
}

#[tokio::test]
async fn timers_come_due_in_order_and_go_once_fired() {
    let dir = tempfile::tempdir().expect("dir");
    let store = LocalStore::open(dir.path()).expect("open");
    let (late, early) = (
        timer("b", "2026-01-03T00:00:00Z"),
        timer("a", "2026-01-02T00:00:00Z"),
    );
    store
        .commit(vec![Commit {
            timers: vec![late.clone(), early.clone()],
            ..Commit::default()
        }])
        .await
        .expect("commit");
    assert_eq!(store.next().await.expect("next"), Some(early.clone()));
    let due = store.due(t("2026-01-02T12:00:00Z"), 10).await.expect("due");
    assert_eq!(due, vec![early.clone()]);
    store
        .commit(vec![Commit {
            fired: vec![early],
            ..Commit::default()
        }])
        .await
        .expect("fire");
    assert_eq!(
        store.due(t("2027-01-01T00:00:00Z"), 10).await.expect("due"),
        vec![late]
    );
}

#[tokio::test]
async fn tasks_stay_until_answered() {
    let dir = tempfile::tempdir().expect("dir");
    let store = LocalStore::open(dir.path()).expect("open");
    let task = Task {
        execution_id: "ex1".into(),
        workflow_id: "w".into(),
        version: 1,
        command: Command::RunStep {
            key: "ex1/a/-/1".into(),
            step: "a".into(),
            item: None,
            attempt: 1,
            action: "notify".into(),
            input: json!({}),
            timeout: None,
        },
        redelivered: false,
    };
    store
        .commit(vec![Commit {
            dispatched: vec![task.clone()],
            ..Commit::default()
        }])
        .await
        .expect("dispatch");
    assert_eq!(store.pending_tasks().await.expect("tasks"), vec![task]);
    store
        .commit(vec![Commit {
            answered: vec!["ex1/a/-/1".into()],
            results: vec![("ex1/a/-/1".into(), json!({"sent": 1}))],
            ..Commit::default()
        }])
        .await
        .expect("answer");
    assert!(store.pending_tasks().await.expect("tasks").is_empty());
    assert_eq!(
        store.result("ex1/a/-/1").await.expect("result"),
        Some(json!({"sent": 1}))
    );
}

#[tokio::test]
async fn publishing_is_once_per_content_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("dir");
    let store = LocalStore::open(dir.path()).expect("open");
    let def = version().definition().clone();
    let now = t("2026-01-01T00:00:00Z");
    let v1 = store.publish(&def, "h1", now).await.expect("v1");
    let again = store.publish(&def, "h1", now).await.expect("same");
    assert_eq!((v1.number, again.number), (1, 1));
    let mut changed = def.clone();
    changed.name = "renamed".into();
    let v2 = store.publish(&changed, "h2", now).await.expect("v2");
    assert_eq!(v2.number, 2);
    assert_eq!(
        store
            .version("w", 1)
            .await
            .expect("get")
            .map(|v| v.definition.name),
        Some("w".into())
    );
    assert_eq!(
        store.latest("w").await.expect("latest").map(|v| v.number),
        Some(2)
    );
    let mut other = def.clone();
    other.id = "a-first".into();
    store.publish(&other, "h3", now).await.expect("other");
    other.id = "w-2".into();
    store.publish(&other, "h4", now).await.expect("other");
    assert_eq!(
        store.workflows().await.expect("workflows"),
        ["a-first", "w", "w-2"],
        "each workflow once, in order, whatever its number of versions"
    );
}

#[tokio::test]
async fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let _first = LocalStore::open(dir.path()).expect("open");
    let err = LocalStore::open(dir.path()).expect_err("in use");
    assert!(
        err.to_string()
            .contains("in use by another eventflow process"),
        "{err}"
    );
}

#[tokio::test]
async fn records_put_returns_what_it_replaced() {
    let dir = tempfile::tempdir().expect("dir");
    let store = LocalStore::open(dir.path()).expect("open");
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
    assert_eq!(
        store.delete("events", "e1").await.expect("del"),
        Some(json!({"v": 2}))
    );
    assert_eq!(store.get("events", "e1").await.expect("get"), None);
}

fn sample(workflow: &str, at: &str, name: &str, value: f64, unit: &str) -> metrics::Sample {
    metrics::Sample {
        workflow_id: workflow.into(),
        at: t(at),
        name: name.into(),
        value,
        unit: unit.into(),
    }
}

#[tokio::test]
async fn metrics_are_summed_per_hour_with_their_commit_and_not_when_it_is_refused() {
    // Given a run created with a start counted at 09:10
    let dir = tempfile::tempdir().expect("dir");
    let store = LocalStore::open(dir.path()).expect("open");
    let mut cp = Checkpoint::new(&version(), "ex1", json!({}), t("2026-11-26T09:00:00Z"));
    let started = sample("w", "2026-11-26T09:10:00Z", "RunStarted", 1.0, "Count");
    store
        .commit(vec![Commit {
            checkpoint: Some(cp.clone()),
            metrics: vec![started.clone()],
            ..Commit::default()
        }])
        .await
        .expect("create");
    // When two commits of one call end runs in the same hour and the next
    cp.seq = 1;
    let ended = |at: &str, ms: f64| {
        vec![
            sample("w", at, "RunCompleted", 1.0, "Count"),
            sample("w", at, "RunDuration", ms, "Milliseconds"),
        ]
    };
    store
        .commit(vec![
            Commit {
                checkpoint: Some(cp.clone()),
                expected_seq: Some(0),
                metrics: ended("2026-11-26T09:50:00Z", 2_000.0),
                ..Commit::default()
            },
            Commit {
                metrics: ended("2026-11-26T10:05:00Z", 40_000.0),
                ..Commit::default()
            },
        ])
        .await
        .expect("end");
    // And a stale writer's commit is refused
    let stale = Commit {
        checkpoint: Some(cp.clone()),
        expected_seq: Some(0),
        metrics: vec![started],
        ..Commit::default()
    };
    assert!(store.commit(vec![stale]).await.is_err());
    // Then each hour holds its own figures, and the refused commit added none
    let hours = store
        .metrics("w", t("2026-11-26T00:00:00Z"), t("2026-11-27T00:00:00Z"))
        .await
        .expect("read");
    let at: Vec<_> = hours.iter().map(|a| a.hour).collect();
    assert_eq!(
        at,
        vec![t("2026-11-26T09:00:00Z"), t("2026-11-26T10:00:00Z")]
    );
    let nine = &hours[0].figures;
    assert_eq!((nine["RunStarted"].count, nine["RunStarted"].sum), (1, 1.0));
    assert_eq!(nine["RunDuration"].sum, 2_000.0);
    assert_eq!(
        nine["RunDuration"].buckets[metrics::bucket_of(2_000.0)].count,
        1
    );
    assert_eq!(hours[1].figures["RunDuration"].sum, 40_000.0);
    assert!(!hours[1].figures.contains_key("RunStarted"));
    // And a range takes the hours that start in it, its end excluded
    let ten = store
        .metrics("w", t("2026-11-26T09:30:00Z"), t("2026-11-26T11:00:00Z"))
        .await
        .expect("read");
    assert_eq!(ten.len(), 1);
    assert_eq!(ten[0].hour, t("2026-11-26T10:00:00Z"));
    let none = store
        .metrics("w", t("2026-11-26T08:00:00Z"), t("2026-11-26T09:00:00Z"))
        .await
        .expect("read");
    assert!(none.is_empty());
    assert!(
        store
            .metrics(
                "other",
                t("2026-11-26T00:00:00Z"),
                t("2026-11-27T00:00:00Z")
            )
            .await
            .expect("read")
            .is_empty()
    );
}
