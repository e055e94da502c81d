//! `fail`: fails attempts `1..=times`, then succeeds; without `times`, always fails.

use serde_json::json;

use crate::support::{World, action, assert_invalid};

#[tokio::test]
async fn it_fails_the_first_times_attempts_then_succeeds_with_the_attempt() {
    let world = World::new();
    let input = json!({"message": "flaky", "retryable": true, "times": 2});
    for attempt in 1..=2 {
        let err = action("fail")
            .execute(&world.attempt("flaky", None, attempt), &input)
            .await
            .expect_err("fails");
        assert_eq!(err.name, "Fail");
        assert_eq!(err.message, "flaky");
        assert!(err.retryable);
    }
    let out = action("fail")
        .execute(&world.attempt("flaky", None, 3), &input)
        .await
        .expect("the third attempt succeeds");
    assert_eq!(out, json!({"attempt": 3}));
}

#[tokio::test]
async fn without_times_it_always_fails_terminally_by_default() {
    let world = World::new();
    for attempt in [1, 2, 50] {
        let err = action("fail")
            .execute(&world.attempt("boom", None, attempt), &json!({}))
            .await
            .expect_err("fails");
        assert_eq!(err.name, "Fail");
        assert!(!err.retryable);
        assert_eq!(err.message, "failed as told");
    }
}

#[tokio::test]
async fn zero_times_succeeds_at_once() {
    let world = World::new();
    let out = action("fail")
        .execute(&world.attempt("flaky", None, 1), &json!({"times": 0.0}))
        .await
        .expect("succeeds");
    assert_eq!(out, json!({"attempt": 1}));
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field() {
    let world = World::new();
    for (input, path) in [
        (json!({"times": -1}), "$.times"),
        (json!({"times": "2"}), "$.times"),
        (json!({"retryable": "yes"}), "$.retryable"),
        (json!({"message": 3}), "$.message"),
        (json!([]), "$"),
    ] {
        let result = action("fail")
            .execute(&world.attempt("s", None, 1), &input)
            .await;
        assert_invalid(result, path);
    }
}
