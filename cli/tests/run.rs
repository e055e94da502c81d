//! `eventflow run` and the verbs around it, as a user types them: the real binary on a real
//! data directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// `eventflow run WORKFLOW --input <the example input>`.
fn run_on_input(data: &Path, workflow: &Path) -> Output {
    eventflow(
        data,
        &[
            "run",
            &workflow.to_string_lossy(),
            "--input",
            &input().to_string(),
        ],
    )
}

/// `eventflow status ID --json`, parsed.
fn status_json(data: &Path, id: &str) -> Value {
    serde_json::from_slice(&eventflow(data, &["status", id, "--json"]).stdout).expect("status json")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(v).expect("json")).expect("write");
    p
}

fn launch() -> Value {
    json!({
        "id": "mini-launch", "name": "Mini launch", "kind": "event_launch",
        "input_schema": {"type": "object", "required": ["event", "attendees"],
            "properties": {"event": {"type": "object", "required": ["id", "name"]},
                           "attendees": {"type": "array"}}},
        "steps": [
            {"id": "create_event", "action": "records.put", "compensate": true,
             "input": {"collection": "events", "key": "${input.event.id}", "record": {"name": "${input.event.name}"}}},
            {"id": "welcome", "action": "email.send", "depends_on": ["create_event"],
             "for_each": {"items": "input.attendees", "concurrency": 2},
             "input": {"from": "team@example.org", "to": "${item}", "subject": "${'Welcome to ' + input.event.name}", "text": "See you there."}},
            {"id": "tell_team", "action": "notify", "depends_on": ["welcome"],
             "input": {"channel": "ops", "text": "launched"}}
        ]
    })
}

fn input() -> Value {
    json!({"event": {"id": "meetup-1", "name": "Rust Meetup"}, "attendees": ["a@example.org", "b@example.org", "c@example.org"]})
}

#[test]
fn a_run_completes_and_every_verb_reports_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let wf = write(dir.path(), "launch.json", &launch());
    let inp = write(dir.path(), "input.json", &input());

    let out = eventflow(
        &data,
        &[
            "run",
            &wf.to_string_lossy(),
            "--input",
            &inp.to_string_lossy(),
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ex: Value = serde_json::from_slice(&out.stdout).expect("--json prints the execution");
    assert_eq!(ex["status"], "completed");
    assert_eq!(ex["workflow"], "mini-launch");
    assert_eq!(ex["version"], 1);
    assert_eq!(ex["input"], input());
    let welcome = &ex["steps"]["welcome"];
    assert_eq!(welcome["status"], "succeeded");
    assert_eq!(welcome["for_each"]["total"], 3);
    assert_eq!(welcome["for_each"]["succeeded"], 3);
    assert!(welcome["started_at"].is_string() && welcome["finished_at"].is_string());
    assert_eq!(ex["steps"]["create_event"]["attempts"], 1);
    assert_eq!(ex["steps"]["create_event"]["output"]["key"], "meetup-1");
    assert!(ex["history"].as_array().is_some_and(|h| h.len() >= 5));
    let id = ex["id"].as_str().expect("id").to_owned();

    let status = eventflow(&data, &["status", &id]);
    assert!(
        text(&status.stdout).contains("completed"),
        "{}",
        text(&status.stdout)
    );
    let history = eventflow(&data, &["history", &id]);
    let h = text(&history.stdout);
    assert!(h.contains("started") && h.contains("step_succeeded"), "{h}");
    let list = eventflow(
        &data,
        &["list", "--status", "completed", "--workflow", "mini-launch"],
    );
    assert!(text(&list.stdout).contains(&id));
    let none = eventflow(&data, &["list", "--status", "failed"]);
    assert!(!text(&none.stdout).contains(&id));
    // The workflow's figures: one run started and completed, in the current hour.
    let figures = eventflow(&data, &["metrics", "mini-launch"]);
    assert!(figures.status.success(), "{}", text(&figures.stderr));
    let f = text(&figures.stdout);
    assert!(
        f.lines()
            .any(|l| l.starts_with("total") && l.contains("RunCompleted")),
        "{f}"
    );
    assert!(
        f.contains("RunStarted") && f.contains("count 1, mean"),
        "{f}"
    );
    let figures = eventflow(
        &data,
        &["metrics", "mini-launch", "--json", "--interval", "day"],
    );
    let report: Value = serde_json::from_slice(&figures.stdout).expect("a JSON report");
    assert_eq!(report["total"]["RunStarted"]["count"], 1, "{report:#}");
    assert_eq!(report["total"]["RunDuration"]["count"], 1, "{report:#}");
    assert_eq!(report["interval"], "day", "{report:#}");
    for (args, says) in [
        (
            vec!["metrics", "mini-launch", "--interval", "week"],
            "use hour or day",
        ),
        (
            vec!["metrics", "mini-launch", "--from", "yesterday"],
            "RFC 3339",
        ),
        (
            vec!["metrics", "no-such-workflow"],
            "no workflow no-such-workflow",
        ),
    ] {
        let out = eventflow(&data, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let outbox = eventflow(&data, &["outbox"]);
    let o = text(&outbox.stdout);
    assert_eq!(o.matches("Welcome to Rust Meetup").count(), 3, "{o}");
    assert!(o.contains("notify"), "{o}");
    let emls = std::fs::read_dir(data.join("outbox"))
        .expect("outbox dir")
        .count();
    assert_eq!(emls, 4);
}

#[test]
fn the_live_view_shows_steps_and_a_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let wf = write(dir.path(), "launch.json", &launch());
    let out = run_on_input(&data, &wf);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("create_event") && s.contains("succeeded"), "{s}");
    assert!(s.contains("welcome: for each of 3 items"), "{s}");
    assert!(s.contains("status       completed"), "{s}");
    assert!(
        s.contains("steps        3 succeeded, 0 skipped, 0 failed, 0 compensated"),
        "{s}"
    );
}

#[test]
fn a_failure_is_rolled_back_and_the_exit_code_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut def = launch();
    def["steps"].as_array_mut().expect("steps").push(json!(
        {"id": "boom", "action": "fail", "depends_on": ["tell_team"], "input": {"message": "no venue"},
         "retry": {"max_attempts": 1}}
    ));
    let wf = write(dir.path(), "launch.json", &def);
    let out = run_on_input(&data, &wf);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("create_event") && s.contains("compensated"),
        "{s}"
    );
    assert!(s.contains("status       compensated"), "{s}");
    assert!(
        s.contains("error        boom failed: Fail: no venue"),
        "{s}"
    );
}

#[test]
fn a_long_wait_ends_the_follow_and_says_how_to_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let wf = write(
        dir.path(),
        "wait.json",
        &json!({"id": "waits", "name": "w", "kind": "custom",
        "steps": [{"id": "later", "wait": {"duration": "3d"}}, {"id": "then", "action": "notify", "depends_on": ["later"],
                   "input": {"channel": "ops", "text": "hi"}}]}),
    );
    let t = Instant::now();
    let out = eventflow(&data, &["run", &wf.to_string_lossy(), "--follow", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(t.elapsed() < Duration::from_secs(30));
    let s = text(&out.stdout);
    assert!(
        s.contains("waiting      until") && s.contains("eventflow resume"),
        "{s}"
    );
    let list = eventflow(&data, &["list", "--status", "running"]);
    assert!(
        text(&list.stdout).contains("waits"),
        "the run is kept: {}",
        text(&list.stdout)
    );
}

#[test]
fn refused_requests_say_why_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let wf = write(dir.path(), "launch.json", &launch());
    let w = wf.to_string_lossy().into_owned();
    let bad_def = write(
        dir.path(),
        "bad.json",
        &json!({"id": "b", "name": "b", "kind": "custom",
        "steps": [{"id": "a", "action": "notify", "depends_on": ["ghost"]}]}),
    );
    let yaml = dir.path().join("broken.yaml");
    std::fs::write(&yaml, "id: [unclosed\n").expect("write");
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec![
                "run".into(),
                dir.path().join("nope.json").to_string_lossy().into_owned(),
            ],
            2,
            "cannot read the file",
        ),
        (
            vec!["run".into(), bad_def.to_string_lossy().into_owned()],
            1,
            "$.steps[0].depends_on[0]",
        ),
        (
            vec!["run".into(), yaml.to_string_lossy().into_owned()],
            1,
            "broken.yaml",
        ),
        (
            vec![
                "run".into(),
                w.clone(),
                "--input".into(),
                "{\"event\": ".into(),
            ],
            1,
            "JSON text is not valid",
        ),
        (
            vec![
                "run".into(),
                w.clone(),
                "--input".into(),
                "{\"event\": {\"id\": 1}}".into(),
            ],
            1,
            "input_schema",
        ),
        (
            vec![
                "run".into(),
                w.clone(),
                "--input".into(),
                dir.path()
                    .join("missing.json")
                    .to_string_lossy()
                    .into_owned(),
            ],
            2,
            "missing.json",
        ),
        (
            vec!["status".into(), "ex-unknown".into()],
            1,
            "there is no data in",
        ),
    ];
    for (args, code, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = eventflow(&data, &args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!data.exists(), "{args:?} wrote to the data directory");
    }
    // An unknown id in a data directory that exists.
    let ok = run_on_input(&data, &wf);
    assert!(ok.status.success());
    let out = eventflow(&data, &["status", "ex-nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("there is no run ex-nope"),
        "{}",
        text(&out.stderr)
    );
    // A data directory that cannot be created.
    let file = write(dir.path(), "plain-file", &json!(1));
    let out = eventflow(
        &file.join("sub"),
        &["run", &w, "--input", &input().to_string()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot use the data directory"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_data_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // A run that waits five minutes, followed for ten: the process stays.
    let wf = write(
        dir.path(),
        "wait.json",
        &json!({"id": "waits", "name": "w", "kind": "custom",
        "steps": [{"id": "later", "wait": {"duration": "5m"}}]}),
    );
    let mut holder = Command::new(env!("CARGO_BIN_EXE_eventflow"))
        .args([
            "run",
            &wf.to_string_lossy(),
            "--follow",
            "600",
            "--data-dir",
        ])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refused = None;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        if !data.join("eventflow.redb").exists() {
            continue;
        }
        let out = eventflow(&data, &["list"]);
        if out.status.code() == Some(2) {
            refused = Some(text(&out.stderr));
            break;
        }
    }
    let _ = holder.kill();
    let _ = holder.wait();
    let msg = refused.expect("a second process was refused");
    assert!(
        msg.contains("is in use by another eventflow process"),
        "{msg}"
    );
}

#[test]
fn a_published_workflow_runs_again_by_its_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let wf = write(dir.path(), "launch.json", &launch());
    let first = run_on_input(&data, &wf);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let again = eventflow(
        &data,
        &["run", "mini-launch", "--input", &input().to_string()],
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("of mini-launch v1 started"),
        "{}",
        text(&again.stdout)
    );
    let unknown = eventflow(&data, &["run", "no-such-flow"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr).contains("neither a definition file nor a workflow published"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn versions_are_deprecated_retired_and_chosen_by_the_alias() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let v1 = json!({"id": "nurture", "name": "Nurture", "kind": "attendee_nurture",
        "steps": [{"id": "later", "wait": {"duration": "3d"}}]});
    let mut v2 = v1.clone();
    v2["name"] = json!("Nurture, second cut");
    let f1 = write(dir.path(), "v1.json", &v1);
    let run = |file: &Path| eventflow(&data, &["run", &file.to_string_lossy(), "--follow", "0"]);
    // v1 runs and stays waiting; v2 is published by running it.
    assert!(run(&f1).status.success());
    let f2 = write(dir.path(), "v2.json", &v2);
    assert!(run(&f2).status.success());
    let listed = text(&eventflow(&data, &["versions", "nurture"]).stdout);
    assert!(
        listed.contains("v1")
            && listed.contains("v2    active      ")
            && listed.contains("<- new starts"),
        "{listed}"
    );

    // The alias points at v2 (the latest): v2 cannot be deprecated while it takes starts.
    let out = eventflow(&data, &["deprecate", "nurture", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("point the alias at another version first"),
        "{}",
        text(&out.stderr)
    );
    // v1 can; then it starts nothing new, and the refusal names the active version.
    assert!(
        eventflow(&data, &["deprecate", "nurture", "1"])
            .status
            .success()
    );
    let out = run(&f1);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("start the active version 2"),
        "{}",
        text(&out.stderr)
    );
    // It cannot be a canary either.
    let out = eventflow(
        &data,
        &[
            "alias", "nurture", "--active", "2", "--canary", "1", "--weight", "10",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    // Its run still waits, so it cannot be retired; the refusal gives the count.
    let out = eventflow(&data, &["retire", "nurture", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("still has 1 unfinished run"),
        "{}",
        text(&out.stderr)
    );
    // Starting by id goes through the alias.
    let out = eventflow(&data, &["run", "nurture", "--follow", "0"]);
    assert!(
        text(&out.stdout).contains("of nurture v2 started"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_tenant_key_is_shown_once_and_only_its_hash_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = eventflow(&data, &["tenant", "create", "acme-events"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let mut lines = printed.lines();
    let key = lines.next().unwrap_or_default().to_owned();
    assert!(
        key.starts_with("efk_acme-events_") && key.len() > 60,
        "{key}"
    );
    let webhook_secret = lines.next().unwrap_or_default();
    assert!(webhook_secret.starts_with("whsec_"), "{printed}");
    let again = eventflow(&data, &["tenant", "create", "acme-events"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("exists"),
        "{}",
        text(&again.stderr)
    );
    let bad = eventflow(&data, &["tenant", "create", "Not A Name"]);
    assert_eq!(bad.status.code(), Some(1));
    // The key itself is nowhere in the data directory.
    let db = std::fs::read(data.join("eventflow.redb")).expect("db");
    let secret = key.rsplit('_').next().expect("secret");
    assert!(
        !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the key was stored"
    );
}

#[test]
fn waiting_runs_move_to_a_new_version_after_a_dry_run_that_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // v1 waits, then tells the team; v2 renames that step and adds one after it.
    let v1 = json!({"id": "remind", "name": "Remind", "kind": "attendee_nurture", "steps": [
        {"id": "later", "wait": {"duration": "3d"}},
        {"id": "tell", "action": "notify", "depends_on": ["later"], "input": {"channel": "ops", "text": "hi"}}
    ]});
    let v2 = json!({"id": "remind", "name": "Remind", "kind": "attendee_nurture", "steps": [
        {"id": "later", "wait": {"duration": "3d"}},
        {"id": "tell_team", "action": "notify", "depends_on": ["later"], "input": {"channel": "ops", "text": "hi"}},
        {"id": "log", "action": "notify", "depends_on": ["tell_team"], "input": {"channel": "log", "text": "done"}}
    ]});
    let f1 = write(dir.path(), "v1.json", &v1);
    let out = eventflow(
        &data,
        &["run", &f1.to_string_lossy(), "--json", "--follow", "0"],
    );
    let id = serde_json::from_slice::<Value>(&out.stdout).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let f2 = write(dir.path(), "v2.json", &v2);
    let pub2 = eventflow(&data, &["run", &f2.to_string_lossy(), "--follow", "0"]);
    assert!(pub2.status.success(), "{}", text(&pub2.stderr));
    let mapping = write(
        dir.path(),
        "mapping.json",
        &json!({"renamed": {"tell": "tell_team"}}),
    );
    let m = mapping.to_string_lossy().into_owned();

    // A mapping naming an unknown step: every reason, exit 1, nothing moved.
    let bad = write(
        dir.path(),
        "bad.json",
        &json!({"renamed": {"ghost": "tell_team"}}),
    );
    let out = eventflow(
        &data,
        &[
            "migrate",
            "remind",
            "--from",
            "1",
            "--to",
            "2",
            "--mapping",
            &bad.to_string_lossy(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(&format!("{id}: cannot move")),
        "{}",
        text(&out.stdout)
    );
    let before = status_json(&data, &id);
    assert_eq!(before["version"], 1);

    // The dry run reports and changes nothing.
    let out = eventflow(
        &data,
        &[
            "migrate",
            "remind",
            "--from",
            "1",
            "--to",
            "2",
            "--mapping",
            &m,
            "--dry-run",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("can move v1 -> v2 (renamed tell->tell_team; added log)"),
        "{}",
        text(&out.stdout)
    );
    let after_dry: Value = status_json(&data, &id);
    assert_eq!(after_dry, before, "the dry run changed the run");

    // The move: the run is on v2 under the new step ids, and its history says so.
    let out = eventflow(
        &data,
        &[
            "migrate",
            "remind",
            "--from",
            "1",
            "--to",
            "2",
            "--mapping",
            &m,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(&format!("{id}: moved v1 -> v2")),
        "{}",
        text(&out.stdout)
    );
    let moved: Value = status_json(&data, &id);
    assert_eq!(moved["version"], 2);
    assert!(moved["steps"].get("tell_team").is_some() && moved["steps"].get("tell").is_none());
    let last = moved["history"]
        .as_array()
        .and_then(|h| h.last())
        .expect("history");
    assert_eq!(last["event"]["type"], "migrated", "{last:#}");
}

#[test]
fn an_operator_retries_skips_and_cancels_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // `fail` fails its first attempt, for good, and the run pauses there.
    let wf = write(
        dir.path(),
        "ops.json",
        &json!({"id": "ops", "name": "Ops", "kind": "custom",
        "on_failure": "pause", "retry": {"max_attempts": 1},
        "steps": [
            {"id": "save", "action": "records.put", "compensate": true,
             "input": {"collection": "events", "key": "e1", "record": {"v": 1}}},
            {"id": "flaky", "action": "fail", "depends_on": ["save"], "input": {"times": 1, "message": "down"}},
            {"id": "after", "action": "notify", "depends_on": ["flaky"], "input": {"channel": "ops", "text": "${has(steps.flaky.output.manual) ? 'skipped by hand' : 'ran'}"}}
        ]}),
    );
    let start = |data: &Path| {
        let out = eventflow(data, &["run", &wf.to_string_lossy(), "--json"]);
        let ex: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(ex["status"], "paused", "{ex:#}");
        ex["id"].as_str().expect("id").to_owned()
    };

    let id = start(&data);
    let out = eventflow(&data, &["retry", &id, "flaky"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("status       completed"),
        "{}",
        text(&out.stdout)
    );

    let id = start(&data);
    let out = eventflow(
        &data,
        &["skip", &id, "flaky", "--output", "{\"manual\": true}"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s: Value = status_json(&data, &id);
    assert_eq!(s["status"], "completed");
    assert_eq!(s["steps"]["flaky"]["status"], "skipped");

    let id = start(&data);
    let out = eventflow(&data, &["cancel", &id, "--compensate"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    let s: Value = status_json(&data, &id);
    assert_eq!(s["status"], "cancelled");
    assert_eq!(s["steps"]["save"]["status"], "compensated");
    // A finished run takes no more operator events, and says so.
    let out = eventflow(&data, &["retry", &id, "flaky"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nothing changed"),
        "{}",
        text(&out.stderr)
    );
    let out = eventflow(&data, &["retry", &id, "nope"]);
    assert!(
        text(&out.stderr).contains("has no step nope"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn workflows_are_published_from_files_and_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let file = write(dir.path(), "launch.json", &launch());
    // Given a definition file, when it is published twice, then one version, then unchanged
    let out = eventflow(&data, &["publish", file.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "mini-launch v1: published");
    let out = eventflow(&data, &["publish", file.to_str().expect("path")]);
    assert_eq!(text(&out.stdout).trim(), "mini-launch v1: unchanged");
    // And a changed one is version 2, listed as the latest and the one new starts use
    let mut changed = launch();
    changed["name"] = json!("Mini launch, again");
    let file = write(dir.path(), "launch.json", &changed);
    let out = eventflow(&data, &["publish", file.to_str().expect("path")]);
    assert_eq!(text(&out.stdout).trim(), "mini-launch v2: published");
    let out = eventflow(&data, &["workflows"]);
    let listed = text(&out.stdout);
    assert!(
        listed.contains("mini-launch")
            && listed.contains("latest v2")
            && listed.contains("new starts v2"),
        "{listed}"
    );
    // And a batch with one invalid file publishes nothing
    let mut broken = launch();
    broken["id"] = json!("other");
    broken["steps"][1]["depends_on"] = json!(["nowhere"]);
    let bad = write(dir.path(), "broken.json", &broken);
    let mut fine = launch();
    fine["id"] = json!("fine");
    let good = write(dir.path(), "fine.json", &fine);
    let out = eventflow(
        &data,
        &[
            "publish",
            good.to_str().expect("path"),
            bad.to_str().expect("path"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(!text(&eventflow(&data, &["workflows"]).stdout).contains("fine"));
}
