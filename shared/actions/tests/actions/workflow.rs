//! `workflow.start`: starting once per key, and cancelling on compensation.

use serde_json::json;

use crate::support::{World, action, assert_invalid};

#[tokio::test]
async fn it_starts_the_run_once_per_key_and_retries_converge() {
    let world = World::new();
    let input = json!({"workflow": "attendee-nurture", "input": {"event": {"id": "berlin-2026"}}});
    let start = action("workflow.start");
    let first = start
        .execute(&world.attempt("schedule_nurture", None, 1), &input)
        .await
        .expect("started");
    let retry = start
        .execute(&world.attempt("schedule_nurture", None, 2), &input)
        .await
        .expect("started");
    assert_eq!(first["execution_id"], "run-1");
    assert_eq!(
        retry["execution_id"], "run-1",
        "a retry finds the run it started"
    );
    assert_eq!(first["idempotency_key"], "exec-1/schedule_nurture/-");
    let started = world.workflows.started.lock().expect("lock").clone();
    assert_eq!(started.len(), 1);
    let run = &started["exec-1/schedule_nurture/-"];
    assert_eq!(run.workflow, "attendee-nurture");
    assert_eq!(run.input, json!({"event": {"id": "berlin-2026"}}));
}

#[tokio::test]
async fn a_given_key_is_used_as_it_is() {
    let world = World::new();
    let input =
        json!({"workflow": "attendee-nurture", "idempotency_key": "attendee-nurture/berlin-2026"});
    let out = action("workflow.start")
        .execute(&world.attempt("schedule_nurture", None, 1), &input)
        .await
        .expect("started");
    assert_eq!(out["idempotency_key"], "attendee-nurture/berlin-2026");
    let started = world.workflows.started.lock().expect("lock").clone();
    assert_eq!(started["attendee-nurture/berlin-2026"].input, json!({}));
}

#[tokio::test]
async fn the_compensation_cancels_the_run_once() {
    let world = World::new();
    let input = json!({"workflow": "attendee-nurture", "input": {}});
    let start = action("workflow.start");
    let out = start
        .execute(&world.attempt("schedule_nurture", Some(2), 1), &input)
        .await
        .expect("started");
    // an item: no output; the journal knows the run
    let comp = world.compensation("schedule_nurture", Some(2), 1);
    let undone = start
        .compensate(&comp, &input, None)
        .await
        .expect("cancelled");
    assert_eq!(undone["cancelled"], out["execution_id"]);
    let again = start
        .compensate(&comp, &input, None)
        .await
        .expect("cancelled");
    assert_eq!(again["already_compensated"], true);
    assert_eq!(*world.workflows.cancelled.lock().expect("lock"), ["run-1"]);
}

#[tokio::test]
async fn errors_of_the_host_come_through_as_they_are() {
    let world = World::new();
    let err = action("workflow.start")
        .execute(
            &world.attempt("s", None, 1),
            &json!({"workflow": "no-such-workflow"}),
        )
        .await
        .expect_err("unknown");
    assert_eq!(err.name, "UnknownWorkflow");
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field() {
    let world = World::new();
    for (input, path) in [
        (json!({}), "$.workflow"),
        (json!({"workflow": "attendee nurture"}), "$.workflow"),
        (
            json!({"workflow": "a", "idempotency_key": ""}),
            "$.idempotency_key",
        ),
        (
            json!({"workflow": "a", "idempotency_key": "a\nb"}),
            "$.idempotency_key",
        ),
    ] {
        let result = action("workflow.start")
            .execute(&world.attempt("s", None, 1), &input)
            .await;
        assert_invalid(result, path);
    }
    assert!(world.workflows.started.lock().expect("lock").is_empty());
}
