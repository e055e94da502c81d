//! Workflow dependencies on a real store and runtime with the real actions: blocking (waits in
//! `waiting_for_dependency`, released or cancelled by the upstream run), parallel (started
//! once per upstream run), conditional (started only when its condition holds), a cycle
//! refused at publish, and dependent starts made after a restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventflow_engine::{
    Change, Checkpoint, DEPENDENCY_ERROR_STEP, Definition, RunStatus, StepStatus, Timestamp,
    Upstream,
};
use eventflow_local::LocalStore;
use eventflow_local::outbox::FileOutbox;
use eventflow_local::runtime::{PublishError, Runtime, RuntimeConfig, StartError};
use eventflow_ports::{
    Clock, Commit, DependentStart, ExecutionStore, ExecutionSummary, VersionStore,
};
use serde_json::{Value, json};

fn t(s: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

/// A clock the test moves by hand.
struct VirtualClock(Mutex<Timestamp>);

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock")
    }
}

struct Host {
    dir: tempfile::TempDir,
    clock: Arc<VirtualClock>,
    runtime: Runtime,
}

async fn runtime_on(store: LocalStore, clock: Arc<VirtualClock>) -> Runtime {
    let http = eventflow_actions::http_client().expect("http client");
    Runtime::start(
        store,
        clock,
        eventflow_actions::registry(),
        eventflow_actions::actions(http),
        Arc::new(FileOutbox::new(
            std::env::temp_dir().join("eventflow-deps-outbox"),
        )),
        RuntimeConfig::default(),
    )
    .await
    .expect("runtime")
}

impl Host {
    async fn start() -> Host {
        let dir = tempfile::tempdir().expect("dir");
        let store = LocalStore::open(dir.path()).expect("open");
        let clock = Arc::new(VirtualClock(Mutex::new(t("2026-05-01T09:00:00Z"))));
        let runtime = runtime_on(store, clock.clone()).await;
        Host {
            dir,
            clock,
            runtime,
        }
    }

    async fn publish(&self, def: Value) {
        let def: Definition = serde_json::from_value(def).expect("definition");
        self.runtime.publish(&def).await.expect("publish");
    }

    async fn start_run(&self, workflow: &str, input: Value, key: Option<&str>) -> String {
        let version = self.runtime.version(workflow, 1).await.expect("version");
        self.runtime
            .start_run(version, input, key.map(str::to_owned))
            .await
            .expect("start")
    }

    async fn checkpoint(&self, id: &str) -> Checkpoint {
        self.runtime
            .store()
            .checkpoint(id)
            .await
            .expect("checkpoint")
            .expect("the run exists")
    }

    /// Waits (a few seconds at most) for the run to reach `status`.
    async fn reaches(&self, id: &str, status: RunStatus) -> Checkpoint {
        for _ in 0..500 {
            let cp = self.checkpoint(id).await;
            if cp.status == status {
                return cp;
            }
            // Wakes the driver, which fires timers due on the virtual clock.
            self.runtime.state(id).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let cp = self.checkpoint(id).await;
        panic!("{id} is {:?}, not {status:?}: {cp:#?}", cp.status);
    }

    async fn runs(&self, workflow: &str) -> Vec<ExecutionSummary> {
        self.runtime
            .store()
            .list(None, Some(workflow))
            .await
            .expect("list")
    }

    /// Waits for `workflow` to have `n` runs, then a little more to see no other come.
    async fn has_runs(&self, workflow: &str, n: usize) -> Vec<ExecutionSummary> {
        for _ in 0..500 {
            if self.runs(workflow).await.len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let runs = self.runs(workflow).await;
        assert_eq!(runs.len(), n, "{workflow}: {runs:#?}");
        runs
    }

    /// Waits until the launch run `id` holds (its last step waits on its timer).
    async fn holds(&self, id: &str) {
        for _ in 0..500 {
            let cp = self.checkpoint(id).await;
            if cp
                .step("hold")
                .is_some_and(|s| s.status == StepStatus::Waiting)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{id} never holds: {:#?}", self.checkpoint(id).await);
    }

    fn advance_days(&self, days: i64) {
        let mut now = self.clock.0.lock().expect("clock");
        *now += chrono::TimeDelta::days(days);
    }
}

/// The upstream workflow: records the event, then (unless told to fail) holds for a day.
fn launch() -> Value {
    json!({
        "id": "launch", "name": "launch", "kind": "event_launch",
        "correlation_key": "${input.event}",
        "retry": {"max_attempts": 1},
        "steps": [
            {"id": "record", "action": "records.put",
             "input": {"collection": "events", "key": "${input.event}", "record": {"name": "${input.event}"}}},
            {"id": "check", "action": "fail", "depends_on": ["record"],
             "input": {"times": "${has(input.fails) ? 5 : 0}"}},
            {"id": "hold", "depends_on": ["check"], "wait": {"duration": "1d"}}
        ]
    })
}

/// A workflow of one step that succeeds at once, with these dependencies.
fn dependent(id: &str, key: bool, dependencies: Value) -> Value {
    let mut def = json!({
        "id": id, "name": id, "kind": "custom",
        "dependencies": dependencies,
        "steps": [{"id": "go", "action": "fail", "input": {"times": 0}}]
    });
    if key {
        def["correlation_key"] = json!("${input.event}");
    }
    def
}

fn dependency_changes(entries: &[eventflow_engine::HistoryEntry]) -> Vec<(String, RunStatus)> {
    entries
        .iter()
        .flat_map(|h| &h.changes)
        .filter_map(|c| match c {
            Change::Dependency {
                workflow, status, ..
            } => Some((workflow.clone(), *status)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_blocking_dependency_waits_for_the_upstream_run_of_its_key_and_is_released() {
    let host = Host::start().await;
    host.publish(launch()).await;
    host.publish(dependent(
        "followup",
        true,
        json!([{"workflow": "launch", "type": "blocking"}]),
    ))
    .await;
    // Given a launch under way for evt-1
    let a = host
        .start_run("launch", json!({"event": "evt-1"}), None)
        .await;
    host.holds(&a).await;
    // When follow-ups start for evt-1 and for evt-2 (no launch at all)
    let b1 = host
        .start_run("followup", json!({"event": "evt-1"}), None)
        .await;
    let b2 = host
        .start_run("followup", json!({"event": "evt-2"}), None)
        .await;
    // Then both wait, saying for what
    let cp = host.reaches(&b1, RunStatus::WaitingForDependency).await;
    assert_eq!(cp.correlation_key.as_deref(), Some("evt-1"));
    assert_eq!(
        cp.waiting_on,
        vec![Upstream {
            workflow: "launch".into(),
            execution_id: Some(a.clone())
        }]
    );
    assert!(cp.steps.iter().all(|s| s.attempt == 0), "nothing ran");
    let cp2 = host.reaches(&b2, RunStatus::WaitingForDependency).await;
    assert_eq!(cp2.waiting_on[0].execution_id, None);
    // When the launch completes (its day of waiting passes)
    host.advance_days(2);
    host.reaches(&a, RunStatus::Completed).await;
    // Then the follow-up for evt-1 runs to completion; the one for evt-2 still waits
    host.reaches(&b1, RunStatus::Completed).await;
    let history = host.runtime.store().history(&b1).await.expect("history");
    assert_eq!(
        dependency_changes(&history),
        vec![("launch".to_owned(), RunStatus::Completed)]
    );
    assert_eq!(
        host.checkpoint(&b2).await.status,
        RunStatus::WaitingForDependency
    );
    // And a follow-up started after the launch completed does not wait at all
    let b3 = host
        .start_run("followup", json!({"event": "evt-1"}), None)
        .await;
    let cp3 = host.reaches(&b3, RunStatus::Completed).await;
    assert!(cp3.waiting_on.is_empty());
    let history = host.runtime.store().history(&b3).await.expect("history");
    assert!(
        !history.iter().flat_map(|h| &h.changes).any(|c| matches!(
            c,
            Change::Run {
                to: RunStatus::WaitingForDependency,
                ..
            }
        )),
        "{history:#?}"
    );
}

#[tokio::test]
async fn an_upstream_run_that_fails_cancels_the_waiting_run_naming_it() {
    let host = Host::start().await;
    host.publish(launch()).await;
    host.publish(dependent(
        "followup",
        true,
        json!([{"workflow": "launch", "type": "blocking"}]),
    ))
    .await;
    // Given a follow-up waiting before any launch exists
    let b = host
        .start_run("followup", json!({"event": "evt-9"}), None)
        .await;
    host.reaches(&b, RunStatus::WaitingForDependency).await;
    // When the launch for its event fails
    let a = host
        .start_run("launch", json!({"event": "evt-9", "fails": true}), None)
        .await;
    let upstream = host.reaches(&a, RunStatus::Failed).await;
    // Then the follow-up ends cancelled, its error naming the launch run and how it ended
    let cp = host.reaches(&b, RunStatus::Cancelled).await;
    let error = cp.error.expect("an error");
    assert_eq!(error.step, DEPENDENCY_ERROR_STEP);
    assert_eq!(error.error.name, "DependencyFailed");
    assert!(
        error.error.message.contains(&upstream.execution_id)
            && error.error.message.contains("ended failed"),
        "{}",
        error.error.message
    );
    assert!(cp.steps.iter().all(|s| s.attempt == 0), "nothing ran");
    // And a follow-up started afterwards ends the same way at once
    let late = host
        .start_run("followup", json!({"event": "evt-9"}), None)
        .await;
    let cp = host.reaches(&late, RunStatus::Cancelled).await;
    assert_eq!(
        cp.error.map(|e| e.error.name).as_deref(),
        Some("DependencyFailed")
    );
}

#[tokio::test]
async fn a_parallel_dependent_starts_once_per_upstream_run_even_when_the_start_repeats() {
    let host = Host::start().await;
    host.publish(launch()).await;
    host.publish(dependent(
        "nurture",
        false,
        json!([{"workflow": "launch", "type": "parallel",
                "input": {"event": "${input.event}", "from": "launch"}}]),
    ))
    .await;
    // When the launch is started three times with the same idempotency key
    let a = host
        .start_run("launch", json!({"event": "evt-1"}), Some("hook-1"))
        .await;
    for _ in 0..2 {
        let again = host
            .start_run("launch", json!({"event": "evt-1"}), Some("hook-1"))
            .await;
        assert_eq!(again, a);
    }
    // Then one nurture run starts, at once (the launch is still running), on the template
    let runs = host.has_runs("nurture", 1).await;
    assert_eq!(host.checkpoint(&a).await.status, RunStatus::Running);
    let cp = host
        .reaches(&runs[0].execution_id, RunStatus::Completed)
        .await;
    assert_eq!(cp.input, json!({"event": "evt-1", "from": "launch"}));
    let key = format!("{a}/parallel/nurture");
    assert_eq!(
        host.runtime
            .store()
            .execution_for_key(&key)
            .await
            .expect("key"),
        Some(runs[0].execution_id.clone())
    );
    // And another launch starts another nurture run
    host.start_run("launch", json!({"event": "evt-2"}), Some("hook-2"))
        .await;
    host.has_runs("nurture", 2).await;
    assert!(
        host.runtime
            .store()
            .dependent_starts()
            .await
            .expect("read")
            .is_empty()
    );
}

#[tokio::test]
async fn a_conditional_dependent_starts_only_when_its_condition_holds_on_completion() {
    let host = Host::start().await;
    host.publish(launch()).await;
    host.publish(dependent(
        "sponsors",
        false,
        json!([{"workflow": "launch", "type": "conditional",
                "when": "input.event == 'evt-yes' && output.check.attempt == 1",
                "input": {"event": "${input.event}", "checked": "${output.check}"}}]),
    ))
    .await;
    // When a launch whose condition is false completes
    let no = host
        .start_run("launch", json!({"event": "evt-no"}), None)
        .await;
    host.holds(&no).await;
    host.advance_days(2);
    host.reaches(&no, RunStatus::Completed).await;
    // Then nothing starts
    host.has_runs("sponsors", 0).await;
    // When one whose condition holds completes
    let yes = host
        .start_run("launch", json!({"event": "evt-yes"}), None)
        .await;
    host.holds(&yes).await;
    // Then nothing starts before it completes, and one run after
    host.has_runs("sponsors", 0).await;
    host.advance_days(2);
    host.reaches(&yes, RunStatus::Completed).await;
    let runs = host.has_runs("sponsors", 1).await;
    let cp = host.checkpoint(&runs[0].execution_id).await;
    assert_eq!(
        cp.input,
        json!({"event": "evt-yes", "checked": {"attempt": 1}})
    );
    assert_eq!(
        host.runtime
            .store()
            .execution_for_key(&format!("{yes}/conditional/sponsors"))
            .await
            .expect("key"),
        Some(runs[0].execution_id.clone())
    );
}

#[tokio::test]
async fn a_cycle_between_workflows_is_refused_at_publish_and_nothing_is_written() {
    let host = Host::start().await;
    host.publish(launch()).await;
    host.publish(dependent(
        "nurture",
        true,
        json!([{"workflow": "launch", "type": "parallel"}]),
    ))
    .await;
    // When launch is published again waiting (blocking) for nurture
    let mut looped = launch();
    looped["dependencies"] = json!([{"workflow": "nurture", "type": "blocking"}]);
    let def: Definition = serde_json::from_value(looped).expect("definition");
    let err = host.runtime.publish(&def).await.expect_err("a cycle");
    // Then it is refused with the cycle named
    match &err {
        PublishError::Cycle { workflow, cycle } => {
            assert_eq!(workflow, "launch");
            assert_eq!(cycle.first(), cycle.last());
            assert!(
                cycle.len() == 3 && cycle.contains(&"nurture".to_owned()),
                "{cycle:?}"
            );
        }
        other => panic!("not a cycle: {other}"),
    }
    let message = err.to_string();
    assert!(message.contains("launch → nurture → launch"), "{message}");
    // And nothing was written: launch still has its one version
    let versions = host.runtime.store().versions("launch").await.expect("read");
    assert_eq!(versions.len(), 1);
    assert!(versions[0].0.definition.dependencies.is_empty());
    // A longer cycle, through a workflow published in between, is refused the same way
    host.publish(dependent(
        "closer",
        true,
        json!([{"workflow": "nurture", "type": "parallel"}]),
    ))
    .await;
    let mut back = launch();
    back["dependencies"] = json!([{"workflow": "closer", "type": "parallel"}]);
    let back: Definition = serde_json::from_value(back).expect("definition");
    let err = host.runtime.publish(&back).await.expect_err("a cycle");
    assert!(
        err.to_string()
            .contains("launch → nurture → closer → launch"),
        "{err}"
    );
    assert_eq!(
        host.runtime
            .store()
            .versions("launch")
            .await
            .expect("read")
            .len(),
        1
    );
}

#[tokio::test]
async fn a_start_whose_correlation_key_cannot_be_computed_is_refused_with_a_sentence() {
    let host = Host::start().await;
    host.publish(dependent(
        "followup",
        true,
        json!([{"workflow": "launch", "type": "blocking"}]),
    ))
    .await;
    let version = host.runtime.version("followup", 1).await.expect("version");
    let err = host
        .runtime
        .start_run(version, json!({"event": ["a", "list"]}), None)
        .await
        .expect_err("refused");
    let StartError::Invalid(_) = err else {
        panic!("not a refusal: {err}");
    };
    let message = err.to_string();
    assert!(
        message.contains("$.correlation_key") && message.contains("non-empty string or a number"),
        "{message}"
    );
    assert!(host.runs("followup").await.is_empty());
}

#[tokio::test]
async fn a_dependent_start_recorded_before_a_crash_is_made_once_after_the_restart() {
    let host = Host::start().await;
    host.publish(dependent("nurture", false, json!([]))).await;
    let store = host.runtime.store().clone();
    host.runtime.stop();
    // Given a dependent start recorded by an upstream run's commit, not yet made
    store
        .commit(vec![Commit {
            dependent_starts: vec![DependentStart {
                key: "ex-upstream/parallel/nurture".into(),
                workflow: "nurture".into(),
                input: json!({"event": "evt-7"}),
            }],
            ..Commit::default()
        }])
        .await
        .expect("commit");
    assert_eq!(store.dependent_starts().await.expect("read").len(), 1);
    // When the runtime starts again, twice
    for _ in 0..2 {
        let rt = runtime_on(store.clone(), host.clock.clone()).await;
        let again = Host {
            dir: tempfile::tempdir().expect("dir"),
            clock: host.clock.clone(),
            runtime: rt.clone(),
        };
        // Then the run is made once, and the record is gone
        let runs = again.has_runs("nurture", 1).await;
        again
            .reaches(&runs[0].execution_id, RunStatus::Completed)
            .await;
        assert!(store.dependent_starts().await.expect("read").is_empty());
        rt.stop();
    }
    drop(host.dir);
}

#[tokio::test]
async fn dependencies_follow_the_active_version_through_publishes_and_alias_changes() {
    let host = Host::start().await;
    host.publish(launch()).await;
    host.publish(dependent(
        "nurture",
        false,
        json!([{"workflow": "launch", "type": "parallel"}]),
    ))
    .await;
    host.start_run("launch", json!({"event": "evt-1"}), None)
        .await;
    host.has_runs("nurture", 1).await;
    // When nurture's version 2, without the dependency, becomes active by being published
    host.publish(dependent("nurture", false, json!([]))).await;
    host.start_run("launch", json!({"event": "evt-2"}), None)
        .await;
    // Then a launch starts no nurture run
    host.has_runs("nurture", 1).await;
    // When the alias points back at version 1, launches start nurture runs again
    eventflow_ports::versions::set_alias(host.runtime.store(), "nurture", 1, None)
        .await
        .expect("alias");
    host.start_run("launch", json!({"event": "evt-3"}), None)
        .await;
    host.has_runs("nurture", 2).await;
}
