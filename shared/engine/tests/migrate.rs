//! Given / when / then tests of moving running executions from one version to another.

mod support;

use std::collections::BTreeMap;

use eventflow_engine::migrate::{self, Origin, Summary};
use eventflow_engine::*;
use serde_json::{Value, json};
use support::*;

fn wf(steps: Value) -> Value {
    json!({"id": "t", "name": "test", "kind": "custom", "steps": steps})
}

fn version_n(def: Value, number: u32) -> Version {
    let def: Definition = serde_json::from_value(def).expect("definition parses");
    Version::compile(def, number, &registry())
        .unwrap_or_else(|p| panic!("invalid definition: {p:#?}"))
}

fn mapping(m: Value) -> Mapping {
    serde_json::from_value(m).expect("mapping parses")
}

fn messages(reasons: &[Reason]) -> Vec<String> {
    reasons.iter().map(|r| r.message.clone()).collect()
}

/// Asserts one reason contains every fragment.
fn has_reason(reasons: &[Reason], fragments: &[&str]) {
    assert!(
        reasons
            .iter()
            .any(|r| fragments.iter().all(|f| r.message.contains(f))),
        "no reason with {fragments:?} in {:#?}",
        messages(reasons)
    );
}

/// Version 1: reserve -> page -> mail -> notify.
fn v1() -> Value {
    wf(json!([
        {"id": "reserve", "action": "undoable", "compensate": true},
        {"id": "page", "action": "act", "depends_on": ["reserve"],
         "output": {"url": "${result.url}"}},
        {"id": "mail", "action": "act", "depends_on": ["page"],
         "input": {"link": "${steps.page.output.url}"}},
        {"id": "notify", "action": "act", "depends_on": ["mail"]}
    ]))
}

/// Version 2: `approve` added before `page` (renamed `web_page`), `audit` added after `mail`,
/// `notify` dropped.
fn v2() -> Version {
    version_n(
        wf(json!([
            {"id": "reserve", "action": "undoable", "compensate": true},
            {"id": "approve", "action": "act", "depends_on": ["reserve"]},
            {"id": "web_page", "action": "act", "depends_on": ["reserve", "approve"],
             "output": {"url": "${result.url}"}},
            {"id": "mail", "action": "act", "depends_on": ["web_page"],
             "input": {"link": "${steps.web_page.output.url}"}},
            {"id": "audit", "action": "act", "depends_on": ["mail"],
             "input": {"page": "${steps.web_page.output.url}",
                       "by": "${steps.approve.output.by}"}}
        ])),
        2,
    )
}

fn v2_mapping() -> Mapping {
    mapping(json!({
        "renamed": {"page": "web_page"},
        "supplied_outputs": {"approve": {"by": "ops"}},
        "note": "approval step added"
    }))
}

/// Given a run of version 1 with `reserve` and `page` done and `mail` in flight.
fn run_at_mail() -> Run {
    let (mut run, _) = Run::start(v1(), json!({}));
    run.done("reserve");
    run.ok("page", None, 1, json!({"url": "https://x/e/1"}));
    assert_eq!(run.status("mail"), StepStatus::Running);
    run
}

#[test]
fn a_run_moves_with_renames_added_steps_and_supplied_outputs() {
    let run = run_at_mail();
    let to = v2();
    // When it is checked against version 2
    let plan = migrate::check(&run.version, &to, &run.cp, &v2_mapping()).expect("can move");
    // Then the plan says what happens to every step
    assert_eq!(
        plan.summary,
        Summary {
            from: 1,
            to: 2,
            renamed: BTreeMap::from([("page".to_owned(), "web_page".to_owned())]),
            dropped: vec!["notify".into()],
            supplied: vec!["approve".into()],
            added: vec!["audit".into()],
            lost_compensations: vec![],
        }
    );
    let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["reserve", "approve", "web_page", "mail", "audit"]);
    assert_eq!(
        plan.steps[2].origin,
        Origin::Carried {
            step: "page".into()
        }
    );
    // When it is applied
    let (cp, _) = migrate::apply(plan, run.cp.clone(), run.now, "migrate-1").expect("applies");
    // Then the checkpoint is laid out on version 2's steps
    assert_eq!(cp.version, 2);
    assert_eq!(cp.seq, run.cp.seq + 1);
    let statuses: Vec<(&str, StepStatus)> =
        cp.steps.iter().map(|s| (s.id.as_str(), s.status)).collect();
    assert_eq!(
        statuses,
        [
            ("reserve", StepStatus::Succeeded),
            ("approve", StepStatus::Succeeded),
            ("web_page", StepStatus::Succeeded),
            ("mail", StepStatus::Running),
            ("audit", StepStatus::Pending),
        ]
    );
    let page = cp.step("web_page").expect("web_page");
    assert_eq!(page.output, Some(json!({"url": "https://x/e/1"})));
    assert_eq!(page.attempt, 1);
    assert_eq!(
        cp.step("approve").expect("approve").output,
        Some(json!({"by": "ops"}))
    );
}

#[test]
fn a_moved_run_finishes_on_the_new_versions_steps() {
    // Given a run of version 1 moved to version 2 while `mail` is in flight
    let mut run = run_at_mail();
    let to = v2();
    let plan = migrate::check(&run.version, &to, &run.cp, &v2_mapping()).expect("can move");
    let (cp, _) = migrate::apply(plan, run.cp.clone(), run.now, "migrate-1").expect("applies");
    run.version = to;
    run.cp = cp;
    // When the attempt of `mail` in flight succeeds
    let cmds = run.ok("mail", None, 1, json!({}));
    // Then the step version 2 adds after it runs, reading the renamed and the supplied outputs,
    // and the dropped `notify` never does
    let input = cmds.iter().find_map(|c| match c {
        Command::RunStep { step, input, .. } if step == "audit" => Some(input.clone()),
        _ => None,
    });
    assert_eq!(
        input,
        Some(json!({"page": "https://x/e/1", "by": "ops"})),
        "{cmds:#?}"
    );
    assert_eq!(steps_run(&cmds), names(&["audit"]));
    // When it succeeds, the run completes
    let cmds = run.done("audit");
    assert_eq!(finished(&cmds), Some(RunStatus::Completed));
    assert!(run.cp.step("notify").is_none());
}

#[test]
fn a_rollback_after_the_move_undoes_what_ran_before_it() {
    // Given a moved run
    let mut run = run_at_mail();
    let to = v2();
    let plan = migrate::check(&run.version, &to, &run.cp, &v2_mapping()).expect("can move");
    let (cp, _) = migrate::apply(plan, run.cp.clone(), run.now, "migrate-1").expect("applies");
    run.version = to;
    run.cp = cp;
    // When `mail` fails for good under the default rollback policy
    let cmds = run.send(EventKind::StepFailed {
        step: "mail".into(),
        item: None,
        attempt: 1,
        error: StepError::terminal("Rejected", "no"),
    });
    // Then `reserve`, which ran on version 1, is compensated under its original key
    assert_eq!(compensations(&cmds), names(&["reserve"]));
    let key = cmds.iter().find_map(|c| match c {
        Command::RunCompensation { forward_key, .. } => Some(forward_key.clone()),
        _ => None,
    });
    assert_eq!(key.as_deref(), Some("ex1/reserve/-/1"));
    run.compensated("reserve", None, 1);
    assert_eq!(run.cp.status, RunStatus::Compensated);
}

#[test]
fn the_history_entry_records_the_move() {
    let run = run_at_mail();
    let to = v2();
    let plan = migrate::check(&run.version, &to, &run.cp, &v2_mapping()).expect("can move");
    let (cp, entry) = migrate::apply(plan, run.cp.clone(), run.now, "migrate-1").expect("applies");
    assert_eq!(entry.seq, cp.seq);
    assert_eq!(entry.at, run.now);
    assert_eq!(entry.event.id, "migrate-1");
    assert_eq!(
        entry.event.kind,
        EventKind::Migrated {
            from: 1,
            to: 2,
            renamed: BTreeMap::from([("page".to_owned(), "web_page".to_owned())]),
            dropped: vec!["notify".into()],
            supplied: vec!["approve".into()],
            note: Some("approval step added".into()),
        }
    );
    assert_eq!(
        entry.changes,
        [Change::Step {
            step: "approve".into(),
            item: None,
            from: StepStatus::Pending,
            to: StepStatus::Succeeded,
            attempt: 0,
            error: None,
        }]
    );
    // And decide() leaves the event alone: it is applied by the host, not by the engine
    let d = decide(&to, cp.clone(), entry.event, run.now, 1);
    assert!(d.history.is_none());
    assert_eq!(d.checkpoint, cp);
}

#[test]
fn every_reason_a_run_cannot_move_is_listed() {
    // Given a run with r, c and s done and x, y and z in flight
    let (mut run, _) = Run::start(
        wf(json!([
            {"id": "r", "action": "undoable", "compensate": true},
            {"id": "c", "action": "undoable", "compensate": true},
            {"id": "s", "action": "act"},
            {"id": "x", "action": "act", "depends_on": ["r", "c", "s"]},
            {"id": "y", "action": "act", "depends_on": ["r", "c", "s"]},
            {"id": "z", "action": "act", "depends_on": ["r", "c", "s"]},
            {"id": "w", "action": "act", "depends_on": ["x", "y", "z"]}
        ])),
        json!({}),
    );
    for s in ["r", "c", "s"] {
        run.done(s);
    }
    // And a version 2 that drops x (in flight) and c (done, with a compensation), renames y
    // (in flight), gives z another action, adds n before r and makes s depend on z, which has
    // not finished; and reuses the id `y` for a new step
    let to = version_n(
        wf(json!([
            {"id": "n", "action": "act"},
            {"id": "r", "action": "undoable", "compensate": true, "depends_on": ["n"]},
            {"id": "z", "action": "http.request", "depends_on": ["r"]},
            {"id": "s", "action": "act", "depends_on": ["z"]},
            {"id": "y2", "action": "act", "depends_on": ["r", "s"]},
            {"id": "y", "action": "act"},
            {"id": "w", "action": "act", "depends_on": ["y2", "z"]}
        ])),
        2,
    );
    // And a mapping that names steps neither version has
    let m = mapping(json!({
        "renamed": {"y": "y2", "ghost": "g"},
        "supplied_outputs": {"nope": 1, "s": 2},
        "accept_lost_compensations": ["phantom"]
    }));
    // When it is checked
    let reasons = migrate::check(&run.version, &to, &run.cp, &m).expect_err("cannot move");
    // Then every reason is listed, each naming its step
    has_reason(&reasons, &["step `x` is running", "drops it"]);
    has_reason(&reasons, &["step `y` is running", "renamed to `y2`"]);
    has_reason(
        &reasons,
        &["step `y` is renamed to `y2`", "another step named `y`"],
    );
    has_reason(
        &reasons,
        &["step `z` is running with action `act`", "`http.request`"],
    );
    has_reason(
        &reasons,
        &["step `c`", "drops it", "accept_lost_compensations"],
    );
    has_reason(
        &reasons,
        &["step `n` is new in version 2", "`r`", "supplied_outputs"],
    );
    has_reason(
        &reasons,
        &["step `s` is succeeded", "depends on `z`", "running"],
    );
    has_reason(
        &reasons,
        &["renames step `ghost`, which version 1 does not have"],
    );
    has_reason(&reasons, &["`ghost` to `g`, which version 2 does not have"]);
    has_reason(
        &reasons,
        &["output for step `nope`, which version 2 does not have"],
    );
    has_reason(
        &reasons,
        &["output for step `s`", "only for steps version 2 adds"],
    );
    has_reason(&reasons, &["`phantom`, which version 1 does not have"]);
    assert_eq!(reasons.len(), 12, "{:#?}", messages(&reasons));
    let steps: Vec<Option<&str>> = reasons.iter().map(|r| r.step.as_deref()).collect();
    assert!(steps.iter().all(Option::is_some), "{steps:?}");

    // And a run that cannot move at all says why
    let done = {
        let (mut run, _) = Run::start(wf(json!([{"id": "a", "action": "act"}])), json!({}));
        run.done("a");
        run
    };
    let same = version_n(wf(json!([{"id": "a", "action": "act"}])), 1);
    let reasons = migrate::check(&done.version, &same, &done.cp, &Mapping::default())
        .expect_err("cannot move");
    has_reason(
        &reasons,
        &["execution `ex1` is completed", "running or paused"],
    );
    has_reason(&reasons, &["from version 1 to the same version"]);
    let other = version_n(
        json!({"id": "u", "name": "u", "kind": "custom", "steps": [{"id": "a", "action": "act"}]}),
        3,
    );
    let mut cp = done.cp.clone();
    cp.version = 7;
    let reasons =
        migrate::check(&done.version, &other, &cp, &Mapping::default()).expect_err("cannot move");
    has_reason(
        &reasons,
        &["workflow `t`", "workflow `u`", "its own workflow"],
    );
    has_reason(&reasons, &["runs version 7, not version 1"]);
}

#[test]
fn a_lost_compensation_can_be_accepted() {
    // Given a run with `reserve` done and a version 2 that drops it
    let (mut run, _) = Run::start(
        wf(json!([
            {"id": "reserve", "action": "undoable", "compensate": true},
            {"id": "mail", "action": "act", "depends_on": ["reserve"]}
        ])),
        json!({}),
    );
    run.done("reserve");
    let to = version_n(wf(json!([{"id": "mail", "action": "act"}])), 2);
    // When the mapping does not accept it, the move is refused
    let reasons =
        migrate::check(&run.version, &to, &run.cp, &Mapping::default()).expect_err("refused");
    has_reason(&reasons, &["step `reserve` has a compensation", "drops it"]);
    // When it does, the run moves and the loss is in the plan
    let m = mapping(json!({"accept_lost_compensations": ["reserve"]}));
    let plan = migrate::check(&run.version, &to, &run.cp, &m).expect("moves");
    assert_eq!(plan.summary.lost_compensations, ["reserve"]);
    assert_eq!(plan.summary.dropped, ["reserve"]);
    // And a version that keeps the step without a compensation is the same loss
    let to = version_n(
        wf(json!([
            {"id": "reserve", "action": "undoable"},
            {"id": "mail", "action": "act", "depends_on": ["reserve"]}
        ])),
        3,
    );
    let reasons =
        migrate::check(&run.version, &to, &run.cp, &Mapping::default()).expect_err("refused");
    has_reason(&reasons, &["gives `reserve` no compensation"]);
}

#[test]
fn a_step_added_after_the_frontier_needs_no_output_and_runs_next() {
    // Given a run with `a` done and `b` in flight, and a version adding `c` after `a`
    let (mut run, _) = Run::start(
        wf(json!([
            {"id": "a", "action": "act"},
            {"id": "b", "action": "act", "depends_on": ["a"]}
        ])),
        json!({}),
    );
    run.done("a");
    let to = version_n(
        wf(json!([
            {"id": "a", "action": "act"},
            {"id": "b", "action": "act", "depends_on": ["a"]},
            {"id": "c", "action": "act", "depends_on": ["a"]}
        ])),
        2,
    );
    let plan = migrate::check(&run.version, &to, &run.cp, &Mapping::default()).expect("moves");
    assert_eq!(plan.summary.added, ["c"]);
    let (cp, _) = migrate::apply(plan, run.cp.clone(), run.now, "m").expect("applies");
    run.version = to;
    run.cp = cp;
    // When the run's next event arrives, `c` starts
    let cmds = run.done("b");
    assert_eq!(steps_run(&cmds), names(&["c"]));
    assert_eq!(finished(&run.done("c")), Some(RunStatus::Completed));
}

#[test]
fn a_step_that_ran_keeps_its_for_each_and_loop_shape() {
    // Given a run whose fan-out `f` is in flight and whose loop `l` succeeded
    let (mut run, _) = Run::start(
        wf(json!([
            {"id": "l", "action": "act", "loop": {"until": "true", "max_iterations": 3}},
            {"id": "f", "action": "act", "depends_on": ["l"],
             "for_each": {"items": "input.people", "concurrency": 1}}
        ])),
        json!({"people": [1, 2]}),
    );
    run.ok("l", Some(1), 1, json!({}));
    assert_eq!(run.status("l"), StepStatus::Succeeded);
    assert_eq!(run.status("f"), StepStatus::Running);
    // When version 2 makes them plain steps
    let to = version_n(
        wf(json!([
            {"id": "l", "action": "act"},
            {"id": "f", "action": "act", "depends_on": ["l"]}
        ])),
        2,
    );
    let reasons =
        migrate::check(&run.version, &to, &run.cp, &Mapping::default()).expect_err("refused");
    // Then both are refused
    has_reason(&reasons, &["step `l` is succeeded with a loop", "no loop"]);
    has_reason(
        &reasons,
        &[
            "step `f` is running as a for_each over `input.people`",
            "no for_each",
        ],
    );
    assert_eq!(reasons.len(), 2, "{:#?}", messages(&reasons));
}

#[test]
fn a_paused_run_moves_and_stays_paused_at_the_renamed_step() {
    // Given a run paused at its failed step `b`
    let (mut run, _) = Run::start(
        json!({"id": "t", "name": "test", "kind": "custom", "on_failure": "pause",
               "retry": {"max_attempts": 1},
               "steps": [{"id": "a", "action": "act"},
                         {"id": "b", "action": "act", "depends_on": ["a"]}]}),
        json!({}),
    );
    run.done("a");
    run.fail("b", None, 1, false);
    assert_eq!(run.cp.status, RunStatus::Paused);
    assert_eq!(run.cp.paused_at.as_deref(), Some("b"));
    // When it moves to a version that renames b
    let to = version_n(
        json!({"id": "t", "name": "test", "kind": "custom", "on_failure": "pause",
               "retry": {"max_attempts": 1},
               "steps": [{"id": "a", "action": "act"},
                         {"id": "b2", "action": "act", "depends_on": ["a"]}]}),
        2,
    );
    let m = mapping(json!({"renamed": {"b": "b2"}}));
    let plan = migrate::check(&run.version, &to, &run.cp, &m).expect("moves");
    let (cp, _) = migrate::apply(plan, run.cp.clone(), run.now, "m").expect("applies");
    // Then it is paused at the new id, and a retry of it runs the step on, numbered on
    assert_eq!(cp.paused_at.as_deref(), Some("b2"));
    assert_eq!(cp.error.as_ref().map(|e| e.step.as_str()), Some("b2"));
    run.version = to;
    run.cp = cp;
    let cmds = run.send(EventKind::RetryStep { step: "b2".into() });
    assert_eq!(dispatched(&cmds), [("b2".to_owned(), None, 2)]);
}

#[test]
fn a_dry_run_reports_every_execution_and_changes_nothing() {
    // Given one run that can move and one that cannot
    let movable = run_at_mail();
    let (mut stuck, _) = Run::start(v1(), json!({}));
    stuck.cp.execution_id = "ex2".into();
    stuck.done("reserve");
    let cps = vec![movable.cp.clone(), stuck.cp.clone()];
    let before = cps.clone();
    let to = v2();
    // When a dry run checks them
    let report = migrate::dry_run(&movable.version, &to, &cps, &v2_mapping());
    // Then each is reported, and no checkpoint changed
    assert_eq!(cps, before);
    assert_eq!(report.len(), 2);
    assert_eq!(report[0].0, "ex1");
    assert_eq!(
        report[0].1.as_ref().map(|s| s.added.clone()),
        Ok(vec!["audit".into()])
    );
    assert_eq!(report[1].0, "ex2");
    // `page` is in flight in ex2 and would be renamed
    let reasons = report[1].1.as_ref().expect_err("cannot move");
    has_reason(
        reasons,
        &["step `page` is running", "renamed to `web_page`"],
    );
}

#[test]
fn a_plan_is_refused_once_the_run_has_moved_on() {
    let mut run = run_at_mail();
    let to = v2();
    let plan = migrate::check(&run.version, &to, &run.cp, &v2_mapping()).expect("can move");
    run.ok("mail", None, 1, json!({}));
    let err = migrate::apply(plan, run.cp.clone(), run.now, "m").expect_err("stale");
    assert!(err.message.contains("check the run again"), "{err}");
}

#[test]
fn a_mapping_refuses_unknown_fields() {
    let err = serde_json::from_value::<Mapping>(json!({"rename": {}})).expect_err("refused");
    assert!(err.to_string().contains("rename"), "{err}");
}

#[test]
fn a_run_whose_input_does_not_suit_the_new_version_stays() {
    // Given a running run started without a `venue`
    let (run, _) = Run::start(wf(json!([{"id": "a", "action": "act"}])), json!({}));
    // When version 2 requires one
    let to = version_n(
        json!({"id": "t", "name": "test", "kind": "custom",
               "input_schema": {"type": "object", "required": ["venue"]},
               "steps": [{"id": "a", "action": "act"}]}),
        2,
    );
    let reasons =
        migrate::check(&run.version, &to, &run.cp, &Mapping::default()).expect_err("refused");
    // Then the move is refused, saying what is missing
    has_reason(
        &reasons,
        &["input of execution `ex1`", "version 2", "venue"],
    );
}

#[test]
fn a_step_supplied_after_the_frontier_keeps_the_order() {
    // Given a run with `a` in flight and a version adding `n` after it
    let (run, _) = Run::start(wf(json!([{"id": "a", "action": "act"}])), json!({}));
    let to = version_n(
        wf(json!([
            {"id": "a", "action": "act"},
            {"id": "n", "action": "act", "depends_on": ["a"]}
        ])),
        2,
    );
    // When the mapping supplies an output for `n` anyway
    let m = mapping(json!({"supplied_outputs": {"n": {}}}));
    let reasons = migrate::check(&run.version, &to, &run.cp, &m).expect_err("refused");
    // Then it is refused: `n` would have succeeded before `a` finished
    has_reason(
        &reasons,
        &["step `n` is succeeded", "depends on `a`, which is running"],
    );
}

#[test]
fn the_mapping_has_a_json_schema() {
    let schema = serde_json::to_value(schemars::schema_for!(Mapping)).expect("schema");
    let props = schema["properties"].as_object().expect("properties");
    let mut keys: Vec<&str> = props.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "accept_lost_compensations",
            "note",
            "renamed",
            "supplied_outputs"
        ]
    );
    assert_eq!(schema["additionalProperties"], json!(false));
}

/// Drives a run to its end, answering every command: each attempt succeeds, each timer fires
/// when due. Returns the events with their times.
fn script(version: &Version, input: Value) -> Vec<(Event, chrono::DateTime<chrono::Utc>)> {
    let mut cp = Checkpoint::new(version, "ex1", input, t0());
    let mut now = t0();
    let mut queue = std::collections::VecDeque::from([EventKind::Started]);
    let mut log = Vec::new();
    let mut n = 0;
    while let Some(kind) = queue.pop_front() {
        n += 1;
        assert!(n < 1000, "the run does not end");
        if let EventKind::TimerFired { .. } = &kind {
            now += chrono::Duration::hours(1);
        }
        let event = Event::new(format!("e{n}"), kind);
        log.push((event.clone(), now));
        let d = decide(version, cp, event, now, 3);
        cp = d.checkpoint;
        for c in d.commands {
            match c {
                Command::RunStep {
                    step,
                    item,
                    attempt,
                    ..
                } => queue.push_back(EventKind::StepSucceeded {
                    step,
                    item,
                    attempt,
                    output: json!({"ok": true}),
                }),
                Command::ScheduleTimer { timer, .. } if timer.kind != TimerKind::Timeout => {
                    queue.push_back(EventKind::TimerFired { timer });
                }
                _ => {}
            }
        }
    }
    assert_eq!(cp.status, RunStatus::Completed);
    log
}

#[test]
fn moving_to_an_identical_version_at_any_point_changes_nothing_the_run_does() {
    // Given a workflow with a wait, a fan-out, a loop and a compensation
    let def = wf(json!([
        {"id": "a", "action": "act"},
        {"id": "w", "action": "act", "depends_on": ["a"], "wait": {"duration": "1h"}},
        {"id": "f", "action": "undoable", "compensate": true, "depends_on": ["w"],
         "for_each": {"items": "input.people", "concurrency": 2}},
        {"id": "l", "action": "act", "depends_on": ["a"],
         "loop": {"until": "iteration >= 2", "max_iterations": 3, "delay": "1h"}},
        {"id": "z", "action": "act", "depends_on": ["f", "l"]}
    ]));
    let v1 = version_n(def.clone(), 1);
    let v2 = version_n(def, 2);
    let input = json!({"people": [1, 2, 3]});
    let log = script(&v1, input.clone());
    assert!(log.len() >= 11, "{} events", log.len());
    let replay = |split: Option<usize>| {
        let mut cp = Checkpoint::new(&v1, "ex1", input.clone(), t0());
        let mut version = &v1;
        let mut commands = Vec::new();
        for (k, (event, now)) in log.iter().enumerate() {
            if split == Some(k) {
                let plan = migrate::check(&v1, &v2, &cp, &Mapping::default())
                    .unwrap_or_else(|r| panic!("cannot move before event {k}: {r:#?}"));
                assert!(plan.summary.added.is_empty() && plan.summary.dropped.is_empty());
                cp = migrate::apply(plan, cp, *now, "m").expect("applies").0;
                version = &v2;
            }
            let d = decide(version, cp, event.clone(), *now, 3);
            cp = d.checkpoint;
            commands.push(d.commands);
        }
        (cp, commands)
    };
    let (plain, plain_commands) = replay(None);
    // When the run moves before any one of its events after the first
    for k in 1..log.len() {
        let (mut moved, commands) = replay(Some(k));
        // Then it issues the same commands and ends in the same state, on version 2
        assert_eq!(commands, plain_commands, "moved before event {k}");
        assert_eq!(moved.version, 2);
        assert_eq!(moved.seq, plain.seq + 1);
        moved.version = 1;
        moved.seq = plain.seq;
        assert_eq!(moved, plain, "moved before event {k}");
    }
}

#[test]
fn a_chain_of_steps_added_before_the_frontier_needs_an_output_for_each() {
    // Given a run with `a` done and `b` in flight
    let (mut run, _) = Run::start(
        wf(json!([
            {"id": "a", "action": "act"},
            {"id": "b", "action": "act", "depends_on": ["a"]}
        ])),
        json!({}),
    );
    run.done("a");
    // And a version adding m -> n before `b`
    let to = version_n(
        wf(json!([
            {"id": "a", "action": "act"},
            {"id": "m", "action": "act", "depends_on": ["a"]},
            {"id": "n", "action": "act", "depends_on": ["m"]},
            {"id": "b", "action": "act", "depends_on": ["n"]}
        ])),
        2,
    );
    // When only `n` has an output, `m` is asked for
    let m = mapping(json!({"supplied_outputs": {"n": 1}}));
    let reasons = migrate::check(&run.version, &to, &run.cp, &m).expect_err("refused");
    has_reason(&reasons, &["step `m` is new in version 2", "before `n`"]);
    assert_eq!(reasons.len(), 1, "{:#?}", messages(&reasons));
    // When both have one, the run moves
    let m = mapping(json!({"supplied_outputs": {"m": 0, "n": 1}}));
    let plan = migrate::check(&run.version, &to, &run.cp, &m).expect("moves");
    assert_eq!(plan.summary.supplied, ["m", "n"]);
}

#[test]
fn two_steps_cannot_become_one() {
    let (run, _) = Run::start(
        wf(json!([{"id": "a", "action": "act"}, {"id": "b", "action": "act"}])),
        json!({}),
    );
    let to = version_n(wf(json!([{"id": "b", "action": "act"}])), 2);
    let m = mapping(json!({"renamed": {"a": "b"}}));
    let reasons = migrate::check(&run.version, &to, &run.cp, &m).expect_err("refused");
    has_reason(&reasons, &["steps `a` and `b` would both become step `b`"]);
}
