//! `records.*`: each operation, its compensation, and what redelivery does to both.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::support::{World, action, assert_invalid};

fn event() -> Value {
    json!({"id": "berlin-2026", "name": "Rust Nation Berlin", "status": "draft", "registration": "closed"})
}

async fn run(world: &World, name: &str, step: &str, attempt: u32, input: &Value) -> Value {
    action(name)
        .execute(&world.attempt(step, None, attempt), input)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn undo(
    world: &World,
    name: &str,
    step: &str,
    input: &Value,
    output: Option<&Value>,
) -> Value {
    action(name)
        .compensate(&world.compensation(step, None, 1), input, output)
        .await
        .unwrap_or_else(|e| panic!("{name} compensation: {e}"))
}

// ---- records.put ---------------------------------------------------------------------------

#[tokio::test]
async fn put_creates_and_its_compensation_deletes_what_it_created() {
    let world = World::new();
    let input = json!({"collection": "events", "key": "berlin-2026", "record": event()});
    let out = run(&world, "records.put", "create_event", 1, &input).await;
    assert_eq!(
        out,
        json!({"collection": "events", "key": "berlin-2026", "previous": null})
    );
    assert_eq!(world.records.value("events", "berlin-2026"), Some(event()));

    let undone = undo(&world, "records.put", "create_event", &input, Some(&out)).await;
    assert_eq!(undone["outcome"], "deleted");
    assert_eq!(world.records.value("events", "berlin-2026"), None);
}

#[tokio::test]
async fn put_replaces_and_its_compensation_restores_what_it_replaced() {
    let world = World::new();
    let old = json!({"id": "berlin-2026", "name": "Old name"});
    world.records.insert("events", "berlin-2026", old.clone());
    let input = json!({"collection": "events", "key": "berlin-2026", "record": event()});
    let out = run(&world, "records.put", "create_event", 1, &input).await;
    assert_eq!(out["previous"], old);

    let undone = undo(&world, "records.put", "create_event", &input, Some(&out)).await;
    assert_eq!(undone["outcome"], "restored");
    assert_eq!(world.records.value("events", "berlin-2026"), Some(old));
}

#[tokio::test]
async fn put_delivered_twice_still_undoes_to_the_record_before_the_first_delivery() {
    let world = World::new();
    let old = json!({"id": "berlin-2026", "name": "Old name"});
    world.records.insert("events", "berlin-2026", old.clone());
    let input = json!({"collection": "events", "key": "berlin-2026", "record": event()});
    run(&world, "records.put", "create_event", 1, &input).await;
    // the same attempt again (a redelivery), then a retry
    let again = run(&world, "records.put", "create_event", 1, &input).await;
    let retry = run(&world, "records.put", "create_event", 2, &input).await;
    assert_eq!(again["previous"], old);
    assert_eq!(retry["previous"], old);

    undo(&world, "records.put", "create_event", &input, Some(&retry)).await;
    assert_eq!(world.records.value("events", "berlin-2026"), Some(old));
}

// ---- records.update ------------------------------------------------------------------------

#[tokio::test]
async fn update_merges_shallowly_and_its_compensation_restores_the_previous_values() {
    let world = World::new();
    world.records.insert("events", "berlin-2026", event());
    let input = json!({"collection": "events", "key": "berlin-2026",
                       "changes": {"status": "published", "registration": "open",
                                   "page_url": "https://rustnation.example/berlin-2026"}});
    let out = run(&world, "records.update", "open_registration", 1, &input).await;
    let updated = json!({"id": "berlin-2026", "name": "Rust Nation Berlin", "status": "published",
                         "registration": "open", "page_url": "https://rustnation.example/berlin-2026"});
    assert_eq!(out["record"], updated);
    assert_eq!(out["previous"], event());
    assert_eq!(world.records.value("events", "berlin-2026"), Some(updated));

    undo(
        &world,
        "records.update",
        "open_registration",
        &input,
        Some(&out),
    )
    .await;
    assert_eq!(world.records.value("events", "berlin-2026"), Some(event()));
}

#[tokio::test]
async fn update_redelivered_reports_and_undoes_to_the_record_before_the_first_delivery() {
    let world = World::new();
    world.records.insert("events", "berlin-2026", event());
    let input = json!({"collection": "events", "key": "berlin-2026",
                       "changes": {"status": "published"}});
    let first = run(&world, "records.update", "open_registration", 1, &input).await;
    let again = run(&world, "records.update", "open_registration", 1, &input).await;
    assert_eq!(
        again, first,
        "a redelivery answers as the first delivery did"
    );
    assert_eq!(again["previous"]["status"], "draft");

    undo(
        &world,
        "records.update",
        "open_registration",
        &input,
        Some(&again),
    )
    .await;
    assert_eq!(world.records.value("events", "berlin-2026"), Some(event()));
}

#[tokio::test]
async fn update_of_a_missing_record_creates_it_and_its_compensation_deletes_it() {
    let world = World::new();
    let input = json!({"collection": "sponsors", "key": "oxide-tools",
                       "changes": {"outreach": {"status": "replied"}}});
    let out = run(&world, "records.update", "record_outcome", 1, &input).await;
    assert_eq!(out["previous"], Value::Null);
    assert_eq!(
        world.records.value("sponsors", "oxide-tools"),
        Some(json!({"outreach": {"status": "replied"}}))
    );
    undo(
        &world,
        "records.update",
        "record_outcome",
        &input,
        Some(&out),
    )
    .await;
    assert_eq!(world.records.value("sponsors", "oxide-tools"), None);
}

#[tokio::test]
async fn update_of_a_record_that_is_not_an_object_is_terminal() {
    let world = World::new();
    world.records.insert("events", "odd", json!([1, 2]));
    let err = action("records.update")
        .execute(
            &world.attempt("s", None, 1),
            &json!({"collection": "events", "key": "odd", "changes": {"a": 1}}),
        )
        .await
        .expect_err("not an object");
    assert_eq!(err.name, "RecordNotAnObject");
    assert!(!err.retryable);
}

// ---- records.delete ------------------------------------------------------------------------

#[tokio::test]
async fn delete_removes_and_its_compensation_puts_it_back() {
    let world = World::new();
    let slot = json!({"event_id": "berlin-2026", "sponsor_id": "oxide-tools", "status": "held"});
    world
        .records
        .insert("sponsorship_slots", "berlin-2026/oxide-tools", slot.clone());
    let input = json!({"collection": "sponsorship_slots", "key": "berlin-2026/oxide-tools"});
    let out = run(&world, "records.delete", "release_slot", 1, &input).await;
    assert_eq!(out["deleted"], true);
    assert_eq!(out["previous"], slot);
    assert_eq!(
        world
            .records
            .value("sponsorship_slots", "berlin-2026/oxide-tools"),
        None
    );
    // redelivered: nothing left to delete, and it still says what it removed
    let again = run(&world, "records.delete", "release_slot", 1, &input).await;
    assert_eq!(again, out);

    undo(&world, "records.delete", "release_slot", &input, Some(&out)).await;
    assert_eq!(
        world
            .records
            .value("sponsorship_slots", "berlin-2026/oxide-tools"),
        Some(slot)
    );
}

#[tokio::test]
async fn delete_of_nothing_succeeds_and_its_compensation_leaves_nothing() {
    let world = World::new();
    let input = json!({"collection": "sponsorship_slots", "key": "none"});
    let out = run(&world, "records.delete", "release_slot", 1, &input).await;
    assert_eq!(out["deleted"], false);
    undo(&world, "records.delete", "release_slot", &input, Some(&out)).await;
    assert_eq!(world.records.value("sponsorship_slots", "none"), None);
}

// ---- compensations in general --------------------------------------------------------------

#[tokio::test]
async fn a_redelivered_compensation_does_not_undo_twice() {
    let world = World::new();
    let input = json!({"collection": "events", "key": "berlin-2026", "record": event()});
    let out = run(&world, "records.put", "create_event", 1, &input).await;
    undo(&world, "records.put", "create_event", &input, Some(&out)).await;
    // someone creates the event again by hand; the compensation is delivered once more
    world
        .records
        .insert("events", "berlin-2026", json!({"by": "hand"}));
    let again = undo(&world, "records.put", "create_event", &input, Some(&out)).await;
    assert_eq!(again["already_compensated"], true);
    assert_eq!(
        world.records.value("events", "berlin-2026"),
        Some(json!({"by": "hand"}))
    );
}

#[tokio::test]
async fn items_of_a_for_each_are_undone_without_an_output() {
    let world = World::new();
    let put = action("records.put");
    for (n, who) in ["amira", "jonas"].iter().enumerate() {
        let n = u32::try_from(n).expect("small");
        world
            .records
            .insert("attendees", who, json!({"name": who, "status": "invited"}));
        let input = json!({"collection": "attendees", "key": who, "record": {"name": who, "status": "confirmed"}});
        put.execute(&world.attempt("confirm", Some(n), 1), &input)
            .await
            .expect("put");
    }
    // the engine hands an item's compensation no output
    for (n, who) in ["amira", "jonas"].iter().enumerate() {
        let n = u32::try_from(n).expect("small");
        let input = json!({"collection": "attendees", "key": who, "record": {"name": who, "status": "confirmed"}});
        put.compensate(&world.compensation("confirm", Some(n), 1), &input, None)
            .await
            .expect("undone");
        assert_eq!(
            world.records.value("attendees", who),
            Some(json!({"name": who, "status": "invited"}))
        );
    }
}

#[tokio::test]
async fn a_step_run_again_after_its_compensation_captures_afresh() {
    let world = World::new();
    let input = json!({"collection": "events", "key": "berlin-2026", "record": event()});
    let out = run(&world, "records.put", "create_event", 1, &input).await;
    undo(&world, "records.put", "create_event", &input, Some(&out)).await;
    // a selective rollback ran the compensation; meanwhile the record was created elsewhere
    world
        .records
        .insert("events", "berlin-2026", json!({"by": "hand"}));
    let rerun = run(&world, "records.put", "create_event", 1, &input).await;
    assert_eq!(rerun["previous"], json!({"by": "hand"}));
}

#[tokio::test]
async fn without_journal_or_output_the_compensation_says_it_has_nothing_to_undo() {
    let world = World::new();
    let input = json!({"collection": "events", "key": "berlin-2026", "record": event()});
    let err = action("records.put")
        .compensate(&world.compensation("create_event", None, 1), &input, None)
        .await
        .expect_err("nothing recorded");
    assert_eq!(err.name, "NothingToUndo");
    assert!(!err.retryable);
}

#[tokio::test]
async fn a_loop_step_is_undone_from_its_output() {
    // A loop's attempts are journalled per iteration, its compensation has no item: the
    // output's `previous` is what is left.
    let world = World::new();
    world
        .records
        .insert("events", "berlin-2026", json!({"v": 1}));
    let input = json!({"collection": "events", "key": "berlin-2026", "record": {"v": 2}});
    let out = action("records.put")
        .execute(&world.attempt("poll", Some(1), 1), &input)
        .await
        .expect("put");
    action("records.put")
        .compensate(&world.compensation("poll", None, 1), &input, Some(&out))
        .await
        .expect("undone");
    assert_eq!(
        world.records.value("events", "berlin-2026"),
        Some(json!({"v": 1}))
    );
}

#[tokio::test]
async fn a_named_compensation_journals_apart_from_the_step_it_undoes() {
    // `compensate: {action: records.update, ...}` runs records.update forward with the
    // compensation's context: it must not take the step's journal entry for its own.
    let world = World::new();
    world
        .records
        .insert("sponsors", "oxide-tools", json!({"status": "prospect"}));
    let update = action("records.update");
    let step_input =
        json!({"collection": "sponsors", "key": "oxide-tools", "changes": {"status": "held"}});
    update
        .execute(&world.attempt("hold", None, 1), &step_input)
        .await
        .expect("updated");
    let undo_input =
        json!({"collection": "sponsors", "key": "oxide-tools", "changes": {"status": "released"}});
    let out = update
        .execute(&world.compensation("hold", None, 1), &undo_input)
        .await
        .expect("released");
    assert_eq!(out["previous"], json!({"status": "held"}));
    let journal = world.records.collection("_journal");
    assert_eq!(
        journal.keys().collect::<Vec<_>>(),
        ["exec-1/hold.compensate/-", "exec-1/hold/-"]
    );
    assert_eq!(
        journal["exec-1/hold/-"]["data"]["previous"],
        json!({"status": "prospect"})
    );
}

#[tokio::test]
async fn a_store_that_is_down_gives_a_retryable_error() {
    let world = World::new();
    world.records.down.store(true, Ordering::SeqCst);
    let err = action("records.get")
        .execute(
            &world.attempt("load", None, 1),
            &json!({"collection": "events", "key": "x"}),
        )
        .await
        .expect_err("down");
    assert_eq!(err.name, "StoreUnavailable");
    assert!(err.retryable);
}

// ---- records.get ---------------------------------------------------------------------------

#[tokio::test]
async fn get_says_whether_it_found_the_record() {
    let world = World::new();
    world
        .records
        .insert("deliverables", "berlin-2026", json!({"items": []}));
    let found = run(
        &world,
        "records.get",
        "load",
        1,
        &json!({"collection": "deliverables", "key": "berlin-2026"}),
    )
    .await;
    assert_eq!(found, json!({"found": true, "record": {"items": []}}));
    let missing = run(
        &world,
        "records.get",
        "load",
        1,
        &json!({"collection": "deliverables", "key": "nope"}),
    )
    .await;
    assert_eq!(missing, json!({"found": false, "record": null}));
}

// ---- input ---------------------------------------------------------------------------------

#[tokio::test]
async fn bad_input_is_refused_with_the_field() {
    let world = World::new();
    for (name, input, path) in [
        ("records.get", json!({"key": "x"}), "$.collection"),
        (
            "records.get",
            json!({"collection": "", "key": "x"}),
            "$.collection",
        ),
        (
            "records.get",
            json!({"collection": "_journal", "key": "x"}),
            "$.collection",
        ),
        (
            "records.get",
            json!({"collection": "my events", "key": "x"}),
            "$.collection",
        ),
        (
            "records.get",
            json!({"collection": "events", "key": 7}),
            "$.key",
        ),
        (
            "records.get",
            json!({"collection": "events", "key": "a\nb"}),
            "$.key",
        ),
        (
            "records.put",
            json!({"collection": "events", "key": "x"}),
            "$.record",
        ),
        (
            "records.put",
            json!({"collection": "events", "key": "x", "record": [1]}),
            "$.record",
        ),
        (
            "records.put",
            json!({"collection": "events", "key": "x", "record": {"big": "x".repeat(300_000)}}),
            "$.record",
        ),
        (
            "records.update",
            json!({"collection": "events", "key": "x", "changes": "a"}),
            "$.changes",
        ),
        (
            "records.delete",
            json!({"collection": "events", "key": "x", "record": {}}),
            "$.record",
        ),
    ] {
        let result = action(name)
            .execute(&world.attempt("s", None, 1), &input)
            .await;
        assert_invalid(result, path);
    }
    assert!(
        world.records.collection("_journal").is_empty(),
        "nothing journalled for refused input"
    );
}
