//! `eventflow schedules`, `schedules pause ID` and `schedules resume ID`: the real binary on a
//! real data directory.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn eventflow(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eventflow"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .expect("eventflow runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn listed(data: &Path) -> Vec<Value> {
    let out = eventflow(data, &["schedules", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("the list is JSON")
}

#[test]
fn schedules_are_listed_paused_and_resumed_by_id() {
    // Given a published workflow with a daily cron in Berlin and reminders before events.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let wf = dir.path().join("daily.json");
    let def = json!({"id": "daily", "name": "Daily", "kind": "custom",
        "triggers": [
            {"type": "cron", "expression": "0 9 * * *", "time_zone": "Europe/Berlin"},
            {"type": "webhook", "name": "daily"},
            {"type": "event_relative", "field": "starts_at", "offsets": ["-7d"], "at": "09:00"}
        ],
        "steps": [{"id": "later", "wait": {"duration": "3d"}}]});
    std::fs::write(&wf, def.to_string()).expect("write");
    let out = eventflow(&data, &["run", &wf.to_string_lossy(), "--follow", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // When the schedules are listed, then the cron and the event-relative trigger are there
    // (the webhook is no schedule), active, the cron with its next slot.
    let list = listed(&data);
    let ids: Vec<&str> = list.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, ["daily.0", "daily.2"]);
    assert_eq!(list[0]["kind"], "cron");
    assert_eq!(list[0]["paused"], false);
    assert!(list[0]["next_due"].is_string(), "{list:?}");
    assert_eq!(list[1]["kind"], "event_relative");
    let out = eventflow(&data, &["schedules"]);
    let s = text(&out.stdout);
    assert!(
        s.contains("daily.0") && s.contains("\"0 9 * * *\" in Europe/Berlin"),
        "{s}"
    );

    // When one is paused, then the list says so; resumed, it is active again.
    let out = eventflow(&data, &["schedules", "pause", "daily.0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("daily.0 is paused"));
    assert_eq!(listed(&data)[0]["paused"], true);
    let out = eventflow(&data, &["schedules", "resume", "daily.0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(listed(&data)[0]["paused"], false);

    // When the id is unknown, then exit 1 with a sentence saying how to list them.
    let out = eventflow(&data, &["schedules", "pause", "daily.1"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no schedule `daily.1`") && err.contains("`eventflow schedules` lists"),
        "{err}"
    );
}

#[test]
fn an_empty_data_directory_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = eventflow(&dir.path().join("none"), &["schedules"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("there is no data in"));
}
