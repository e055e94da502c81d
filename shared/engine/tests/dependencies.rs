//! Given / when / then tests of a run that waits for runs of other workflows (blocking
//! dependencies): `Blocked`, `DependencyMet`, `DependencyFailed`, and cancel while waiting.

mod support;

use eventflow_engine::*;
use serde_json::json;
use support::*;

fn wf() -> serde_json::Value {
    json!({"id": "followup", "name": "follow-up", "kind": "custom",
    "correlation_key": "${input.event}",
    "dependencies": [
        {"workflow": "launch", "type": "blocking"},
        {"workflow": "outreach", "type": "blocking"}
    ],
    "steps": [
        {"id": "a", "action": "act"},
        {"id": "b", "action": "act", "depends_on": ["a"]}
    ]})
}

fn upstream(workflow: &str, execution_id: Option<&str>) -> Upstream {
    Upstream {
        workflow: workflow.into(),
        execution_id: execution_id.map(Into::into),
    }
}

fn blocked() -> (Run, Vec<Command>) {
    Run::first(
        wf(),
        json!({"event": "evt-1"}),
        EventKind::Blocked {
            on: vec![upstream("launch", Some("ex-a")), upstream("outreach", None)],
        },
    )
}

fn met(workflow: &str, execution_id: &str) -> EventKind {
    EventKind::DependencyMet {
        workflow: workflow.into(),
        execution_id: execution_id.into(),
        status: RunStatus::CompletedWithErrors,
    }
}

fn run_changes(run: &Run) -> Vec<(RunStatus, RunStatus)> {
    run.history
        .iter()
        .flat_map(|h| &h.changes)
        .filter_map(|c| match c {
            Change::Run { from, to } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_blocked_run_waits_and_dispatches_nothing() {
    let (run, cmds) = blocked();
    // It counts as started, and nothing runs.
    assert_eq!(cmds, vec![Command::metric("RunStarted", 1.0, "Count")]);
    assert_eq!(run.cp.status, RunStatus::WaitingForDependency);
    assert_eq!(run.cp.status.as_str(), "waiting_for_dependency");
    assert!(!run.cp.status.is_terminal());
    assert_eq!(
        run.cp.waiting_on,
        vec![upstream("launch", Some("ex-a")), upstream("outreach", None)]
    );
    assert_eq!(
        run_changes(&run),
        vec![(RunStatus::Running, RunStatus::WaitingForDependency)]
    );
}

#[test]
fn the_run_starts_as_after_started_once_every_dependency_is_met() {
    let (mut run, _) = blocked();
    // When one of two dependencies is met, the run still waits
    assert!(run.send(met("launch", "ex-a")).is_empty());
    assert_eq!(run.cp.status, RunStatus::WaitingForDependency);
    assert_eq!(run.cp.waiting_on, vec![upstream("outreach", None)]);
    // When the second is met, the roots are dispatched as after Started
    let cmds = run.send(met("outreach", "ex-o"));
    assert_eq!(steps_run(&cmds), names(&["a"]));
    assert_eq!(run.cp.status, RunStatus::Running);
    assert!(run.cp.waiting_on.is_empty());
    // And the run goes on to complete
    run.done("a");
    assert_eq!(finished(&run.done("b")), Some(RunStatus::Completed));
    // Every transition is in the history
    let deps: Vec<_> = run
        .history
        .iter()
        .flat_map(|h| &h.changes)
        .filter_map(|c| match c {
            Change::Dependency {
                workflow,
                execution_id,
                status,
            } => Some((workflow.as_str(), execution_id.as_deref(), *status)),
            _ => None,
        })
        .collect();
    let done = RunStatus::CompletedWithErrors;
    assert_eq!(
        deps,
        vec![
            ("launch", Some("ex-a"), done),
            ("outreach", Some("ex-o"), done)
        ]
    );
    assert_eq!(
        run_changes(&run),
        vec![
            (RunStatus::Running, RunStatus::WaitingForDependency),
            (RunStatus::WaitingForDependency, RunStatus::Running),
            (RunStatus::Running, RunStatus::Completed)
        ]
    );
}

#[test]
fn a_failed_dependency_ends_the_run_cancelled_naming_the_upstream_run() {
    let (mut run, _) = blocked();
    let cmds = run.send(EventKind::DependencyFailed {
        workflow: "launch".into(),
        execution_id: Some("ex-a".into()),
        status: RunStatus::Compensated,
    });
    assert_eq!(finished(&cmds), Some(RunStatus::Cancelled));
    assert!(steps_run(&cmds).is_empty());
    assert_eq!(run.cp.status, RunStatus::Cancelled);
    let error = run.cp.error.as_ref().expect("an error");
    assert_eq!(error.step, DEPENDENCY_ERROR_STEP);
    assert_eq!(error.error.name, "DependencyFailed");
    assert!(
        error.error.message.contains("`launch`")
            && error.error.message.contains("run ex-a ended compensated"),
        "{}",
        error.error.message
    );
    let Some(Command::Finish { error: Some(e), .. }) = cmds.first() else {
        panic!("the finish carries the error: {cmds:?}");
    };
    assert_eq!(e.error.name, "DependencyFailed");
}

#[test]
fn cancelling_a_waiting_run_ends_it_with_nothing_to_undo() {
    for compensate in [false, true] {
        let (mut run, _) = blocked();
        let cmds = run.send(EventKind::Cancel { compensate });
        assert_eq!(finished(&cmds), Some(RunStatus::Cancelled));
        assert!(compensations(&cmds).is_empty() && steps_run(&cmds).is_empty());
        assert!(run.cp.steps.iter().all(|s| s.status == StepStatus::Pending));
        // A late release changes nothing
        assert!(run.send(met("launch", "ex-a")).is_empty());
        assert_eq!(run.cp.status, RunStatus::Cancelled);
    }
}

#[test]
fn events_that_do_not_match_the_wait_change_nothing() {
    let (mut run, _) = blocked();
    let seq = run.cp.seq;
    // A dependency the run does not wait for, a second Blocked, a Started, operator events
    // that need a running run
    for kind in [
        met("sponsors", "ex-s"),
        EventKind::DependencyFailed {
            workflow: "sponsors".into(),
            execution_id: None,
            status: RunStatus::Failed,
        },
        EventKind::Blocked {
            on: vec![upstream("launch", None)],
        },
        EventKind::Started,
        EventKind::Pause,
        EventKind::Resume,
        EventKind::RetryStep { step: "a".into() },
        EventKind::SkipStep {
            step: "a".into(),
            output: None,
        },
        EventKind::Rollback { to: None },
    ] {
        assert!(run.send(kind.clone()).is_empty(), "{kind:?}");
        assert_eq!(run.cp.seq, seq, "{kind:?} changed the run");
    }
    assert_eq!(run.cp.status, RunStatus::WaitingForDependency);
    // A met dependency delivered twice counts once
    run.send(met("launch", "ex-a"));
    let seq = run.cp.seq;
    assert!(run.send(met("launch", "ex-a")).is_empty());
    assert_eq!(run.cp.seq, seq);
    assert_eq!(run.cp.status, RunStatus::WaitingForDependency);
}

#[test]
fn blocked_is_only_a_first_event() {
    let (mut run, _) = Run::start(wf(), json!({"event": "evt-1"}));
    let seq = run.cp.seq;
    assert!(
        run.send(EventKind::Blocked {
            on: vec![upstream("launch", None)]
        })
        .is_empty()
    );
    assert_eq!((run.cp.seq, run.cp.status), (seq, RunStatus::Running));
}
