//! `notify`: a message of kind `notify` in the outbox.

use serde_json::json;

use crate::support::{World, action, assert_invalid};

#[tokio::test]
async fn it_posts_to_the_channel_with_its_items() {
    let world = World::new();
    let out = action("notify")
        .execute(
            &world.attempt("escalate_overdue", None, 1),
            &json!({
                "channel": "event-ops",
                "severity": "warning",
                "text": "Rust Nation: 1 deliverable is overdue.\nOwners have until 17:00.",
                "items": [{"title": "Sponsor logo", "owner": "amira@ferrous-cloud.example"}, "plain"]
            }),
        )
        .await
        .expect("posted");
    assert_eq!(out["channel"], "event-ops");
    assert_eq!(out["severity"], "warning");
    let sent = world.outbox.sent();
    assert_eq!(sent.len(), 1);
    let m = &sent[0];
    assert_eq!(m.kind, "notify");
    assert_eq!(m.to, ["event-ops"]);
    assert_eq!(m.from, "eventflow");
    assert_eq!(
        m.subject,
        "[warning] Rust Nation: 1 deliverable is overdue."
    );
    assert!(
        m.text
            .starts_with("Rust Nation: 1 deliverable is overdue.\nOwners"),
        "{}",
        m.text
    );
    assert!(
        m.text.contains(
            "\n- {\"owner\":\"amira@ferrous-cloud.example\",\"title\":\"Sponsor logo\"}\n- plain\n"
        ),
        "{}",
        m.text
    );
    assert_eq!(m.key, "exec-1/escalate_overdue/-/1");
}

#[tokio::test]
async fn the_same_key_twice_posts_once() {
    let world = World::new();
    let ctx = world.attempt("tell_team", None, 1);
    let input = json!({"channel": "event-ops", "text": "launched"});
    action("notify")
        .execute(&ctx, &input)
        .await
        .expect("posted");
    action("notify")
        .execute(&ctx, &input)
        .await
        .expect("posted");
    let sent = world.outbox.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].subject, "[info] launched");
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field() {
    let world = World::new();
    for (input, path) in [
        (json!({"text": "x"}), "$.channel"),
        (json!({"channel": "event ops", "text": "x"}), "$.channel"),
        (json!({"channel": "ops"}), "$.text"),
        (
            json!({"channel": "ops", "text": "x", "severity": "fatal"}),
            "$.severity",
        ),
        (
            json!({"channel": "ops", "text": "x", "items": "a"}),
            "$.items",
        ),
    ] {
        let result = action("notify")
            .execute(&world.attempt("s", None, 1), &input)
            .await;
        assert_invalid(result, path);
    }
    assert!(world.outbox.sent().is_empty());
}
