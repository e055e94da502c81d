//! `email.send`: the message, its correction, and sending once per key.

use serde_json::{Value, json};

use crate::support::{World, action, assert_invalid};

fn announcement() -> Value {
    json!({
        "from": "Lena Vogel <lena@rustnation.example>",
        "to": ["list@rustnation.example", "press@rustnation.example"],
        "subject": "Rust Nation Berlin: registration is open",
        "text": "Hello,\n\nregistration is open.\n",
        "correction": {
            "subject": "Correction: Rust Nation Berlin is not open yet",
            "text": "Our earlier message went out too early.\n"
        }
    })
}

#[tokio::test]
async fn it_sends_one_message_keyed_by_the_attempt() {
    let world = World::new();
    let out = action("email.send")
        .execute(&world.attempt("announce", None, 1), &announcement())
        .await
        .expect("sent");
    let sent = world.outbox.sent();
    assert_eq!(sent.len(), 1);
    let m = &sent[0];
    assert_eq!(m.key, "exec-1/announce/-/1");
    assert_eq!(m.kind, "email");
    assert_eq!(m.from, "Lena Vogel <lena@rustnation.example>");
    assert_eq!(
        m.to,
        ["list@rustnation.example", "press@rustnation.example"]
    );
    assert_eq!(m.subject, "Rust Nation Berlin: registration is open");
    assert_eq!(m.text, "Hello,\n\nregistration is open.\n");
    assert_eq!(out["message_id"], "<1@outbox.test>");
    assert_eq!(
        out["to"],
        json!(["list@rustnation.example", "press@rustnation.example"])
    );
}

#[tokio::test]
async fn the_same_key_twice_sends_one_message_and_answers_the_same() {
    let world = World::new();
    let email = action("email.send");
    let ctx = world.attempt("announce", None, 1);
    let first = email.execute(&ctx, &announcement()).await.expect("sent");
    let again = email.execute(&ctx, &announcement()).await.expect("sent");
    assert_eq!(world.outbox.sent().len(), 1);
    assert_eq!(again, first);
}

#[tokio::test]
async fn a_single_recipient_may_be_a_string() {
    let world = World::new();
    let mut input = announcement();
    input["to"] = json!("amira@ferrous-cloud.example");
    let out = action("email.send")
        .execute(&world.attempt("thank", Some(3), 1), &input)
        .await
        .expect("sent");
    assert_eq!(out["to"], json!(["amira@ferrous-cloud.example"]));
    assert_eq!(world.outbox.sent()[0].key, "exec-1/thank/3/1");
}

#[tokio::test]
async fn the_compensation_sends_the_correction_to_the_same_people() {
    let world = World::new();
    let email = action("email.send");
    let out = email
        .execute(&world.attempt("announce", None, 1), &announcement())
        .await
        .expect("sent");
    let undone = email
        .compensate(
            &world.compensation("announce", None, 1),
            &announcement(),
            Some(&out),
        )
        .await
        .expect("corrected");
    let sent = world.outbox.sent();
    assert_eq!(sent.len(), 2);
    let correction = &sent[1];
    assert_eq!(correction.key, "exec-1/announce.compensate/-/1");
    assert_eq!(correction.to, sent[0].to);
    assert_eq!(correction.from, sent[0].from);
    assert_eq!(
        correction.subject,
        "Correction: Rust Nation Berlin is not open yet"
    );
    assert_eq!(correction.text, "Our earlier message went out too early.\n");
    assert_eq!(undone["corrects"], out["message_id"]);
}

#[tokio::test]
async fn without_a_correction_given_a_default_one_is_sent() {
    let world = World::new();
    let mut input = announcement();
    input
        .as_object_mut()
        .expect("an object")
        .remove("correction");
    // an item of a for_each: no output
    action("email.send")
        .compensate(&world.compensation("announce", Some(0), 1), &input, None)
        .await
        .expect("corrected");
    let sent = world.outbox.sent();
    assert_eq!(
        sent[0].subject,
        "Correction: Rust Nation Berlin: registration is open"
    );
    assert!(sent[0].text.contains("disregard"), "{}", sent[0].text);
}

#[tokio::test]
async fn a_redelivered_compensation_sends_one_correction() {
    let world = World::new();
    let email = action("email.send");
    let ctx = world.compensation("announce", None, 1);
    email
        .compensate(&ctx, &announcement(), None)
        .await
        .expect("corrected");
    email
        .compensate(&ctx, &announcement(), None)
        .await
        .expect("corrected");
    assert_eq!(world.outbox.sent().len(), 1);
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_and_nothing_is_sent() {
    let world = World::new();
    let with = |field: &str, value: Value| {
        let mut input = announcement();
        input[field] = value;
        input
    };
    let without = |field: &str| {
        let mut input = announcement();
        input.as_object_mut().expect("an object").remove(field);
        input
    };
    let many: Vec<String> = (0..51).map(|n| format!("a{n}@example.org")).collect();
    for (input, path) in [
        (without("from"), "$.from"),
        (without("to"), "$.to"),
        (without("subject"), "$.subject"),
        (without("text"), "$.text"),
        (with("from", json!("lena")), "$.from"),
        (with("to", json!([])), "$.to"),
        (
            with("to", json!(["ok@example.org", "not an address"])),
            "$.to[1]",
        ),
        (with("to", json!(["ok@example.org", 3])), "$.to[1]"),
        (with("to", json!(many)), "$.to"),
        (with("subject", json!("two\nlines")), "$.subject"),
        (with("text", json!(["a"])), "$.text"),
        (with("correction", json!("oops")), "$.correction"),
        (
            with("correction", json!({"subjet": "x"})),
            "$.correction.subjet",
        ),
        (with("cc", json!("x@example.org")), "$.cc"),
    ] {
        let result = action("email.send")
            .execute(&world.attempt("s", None, 1), &input)
            .await;
        assert_invalid(result, path);
    }
    assert!(world.outbox.sent().is_empty());
}
