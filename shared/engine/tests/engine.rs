//! Given / when / then tests of decide(): one rule each.

mod support;

use eventflow_engine::*;
use serde_json::json;
use support::*;

fn wf(steps: serde_json::Value) -> serde_json::Value {
    json!({"id": "t", "name": "test", "kind": "custom", "steps": steps})
}

fn wf_with(policy: &str, steps: serde_json::Value) -> serde_json::Value {
    json!({"id": "t", "name": "test", "kind": "custom", "on_failure": policy,
           "retry": {"max_attempts": 1}, "steps": steps})
}

// ---- DAG scheduling ------------------------------------------------------------------------

#[test]
fn ready_steps_are_dispatched_together_and_a_join_waits_for_all() {
    // Given a -> (b, c) -> d
    let (mut run, cmds) = Run::start(
        wf(json!([
            {"id": "a", "action": "act"},
            {"id": "b", "action": "act", "depends_on": ["a"]},
            {"id": "c", "action": "act", "depends_on": ["a"]},
            {"id": "d", "action": "act", "depends_on": ["b", "c"]}
        ])),
        json!({}),
    );
    // Then only the root runs first
    assert_eq!(steps_run(&cmds), names(&["a"]));
    // When a succeeds, then b and c are dispatched in the same decision
    assert_eq!(steps_run(&run.done("a")), names(&["b", "c"]));
    // When only b succeeds, nothing more runs
    assert!(steps_run(&run.done("b")).is_empty());
    // When c succeeds, the join runs
    assert_eq!(steps_run(&run.done("c")), names(&["d"]));
    let cmds = run.done("d");
    assert_eq!(finished(&cmds), Some(RunStatus::Completed));
    assert_eq!(run.cp.status, RunStatus::Completed);
}

#[test]
fn a_parallel_group_is_sugar_for_depending_on_each_member() {
    let (mut run, _) = Run::start(
        wf(json!([
            {"id": "a", "action": "act"},
            {"id": "email", "action": "act", "depends_on": ["a"], "parallel_group": "announce"},
            {"id": "hook", "action": "act", "depends_on": ["a"], "parallel_group": "announce"},
            {"id": "after", "action": "act", "depends_on": ["announce"]}
        ])),
        json!({}),
    );
    assert_eq!(steps_run(&run.done("a")), names(&["email", "hook"]));
    assert!(steps_run(&run.done("email")).is_empty());
    assert_eq!(steps_run(&run.done("hook")), names(&["after"]));
}

#[test]
fn a_false_condition_skips_the_step_and_its_dependents_still_run() {
    let (mut run, cmds) = Run::start(
        wf(json!([
            {"id": "a", "action": "act", "when": "input.vip"},
            {"id": "b", "action": "act", "depends_on": ["a"]}
        ])),
        json!({"vip": false}),
    );
    assert_eq!(steps_run(&cmds), names(&["b"]));
    assert_eq!(run.status("a"), StepStatus::Skipped);
    assert_eq!(
        run.cp.step("a").expect("a").skip_reason,
        Some(SkipReason::Condition)
    );
    assert_eq!(finished(&run.done("b")), Some(RunStatus::Completed));
}

#[test]
fn reading_the_output_of_a_skipped_step_fails_with_a_clear_error() {
    let (run, _) = Run::start(
        wf_with(
            "continue",
            json!([
                {"id": "a", "action": "act", "when": "false == true"},
                {"id": "b", "action": "act", "depends_on": ["a"], "input": {"url": "${steps.a.output.url}"}}
            ]),
        ),
        json!({}),
    );
    let b = run.cp.step("b").expect("b");
    assert_eq!(b.status, StepStatus::Failed);
    let err = b.error.as_ref().expect("error");
    assert_eq!(err.name, "SkippedStepReference");
    assert!(
        err.message.contains("step `a`, which was skipped"),
        "{}",
        err.message
    );
    assert_eq!(run.cp.status, RunStatus::CompletedWithErrors);
}

#[test]
fn inputs_are_evaluated_over_the_run_input_and_upstream_outputs() {
    let (mut run, _) = Run::start(
        wf(json!([
            {"id": "page", "action": "act", "output": {"url": "${result.location}"}},
            {"id": "mail", "action": "act", "depends_on": ["page"],
             "input": {"subject": "${'Tickets for ' + input.event.name}", "link": "${steps.page.output.url}"}}
        ])),
        json!({"event": {"name": "RustConf"}}),
    );
    let cmds = run.ok(
        "page",
        None,
        1,
        json!({"location": "https://x/e/1", "etag": "zz"}),
    );
    assert_eq!(
        run.cp.step("page").expect("page").output,
        Some(json!({"url": "https://x/e/1"}))
    );
    let input = cmds.iter().find_map(|c| match c {
        Command::RunStep { input, key, .. } => {
            assert_eq!(key, "ex1/mail/-/1");
            Some(input.clone())
        }
        _ => None,
    });
    assert_eq!(
        input,
        Some(json!({"subject": "Tickets for RustConf", "link": "https://x/e/1"}))
    );
}

// ---- for_each --------------------------------------------------------------------------------

#[test]
fn for_each_keeps_at_most_concurrency_items_in_flight() {
    let (mut run, cmds) = Run::start(
        wf(json!([
            {"id": "mail", "action": "act", "input": {"to": "${item}", "n": "${index}"},
             "for_each": {"items": "input.attendees", "concurrency": 3}}
        ])),
        json!({"attendees": ["a", "b", "c", "d", "e"]}),
    );
    assert_eq!(
        dispatched(&cmds),
        vec![
            ("mail".into(), Some(0), 1),
            ("mail".into(), Some(1), 1),
            ("mail".into(), Some(2), 1)
        ]
    );
    // When item 1 finishes, then exactly one more (item 3) starts
    assert_eq!(
        dispatched(&run.ok("mail", Some(1), 1, json!({}))),
        vec![("mail".into(), Some(3), 1)]
    );
    assert_eq!(
        dispatched(&run.ok("mail", Some(0), 1, json!({}))),
        vec![("mail".into(), Some(4), 1)]
    );
    for n in [2, 3] {
        assert!(dispatched(&run.ok("mail", Some(n), 1, json!({}))).is_empty());
    }
    let cmds = run.ok("mail", Some(4), 1, json!({}));
    assert_eq!(finished(&cmds), Some(RunStatus::Completed));
    assert_eq!(
        run.cp.step("mail").expect("mail").output,
        Some(json!({"total": 5, "succeeded": 5, "failed": 0}))
    );
}

#[test]
fn for_each_tolerates_its_share_of_failures_and_no_more() {
    let def = |share: f64| {
        wf_with(
            "continue",
            json!([{"id": "m", "action": "act", "for_each": {"items": "input.l", "concurrency": 10, "tolerated_failure": share}}]),
        )
    };
    let input = json!({"l": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]});
    for (share, failures, expected) in [
        (0.2, 2, StepStatus::Succeeded),
        (0.2, 3, StepStatus::Failed),
        (0.0, 1, StepStatus::Failed),
    ] {
        let (mut run, _) = Run::start(def(share), input.clone());
        for n in 0..10 {
            if n < failures {
                run.fail("m", Some(n), 1, false);
            } else {
                run.ok("m", Some(n), 1, json!({}));
            }
        }
        let st = run.cp.step("m").expect("m");
        assert_eq!(st.status, expected, "share {share}, {failures} failures");
        assert_eq!(st.fan.as_ref().expect("fan").failed, failures);
    }
}

#[test]
fn a_big_fan_out_keeps_the_checkpoint_small() {
    let attendees: Vec<serde_json::Value> = (0..50_000)
        .map(|i| json!({"email": format!("attendee{i}@example.org"), "name": format!("Attendee {i}")}))
        .collect();
    let (mut run, cmds) = Run::start(
        wf(
            json!([{"id": "m", "action": "act", "input": {"to": "${item.email}"},
                    "for_each": {"items": "input.attendees", "concurrency": 50}}]),
        ),
        json!({"attendees": attendees}),
    );
    assert_eq!(dispatched(&cmds).len(), 50);
    for n in 0..25_000 {
        run.ok("m", Some(n), 1, json!({}));
    }
    // The checkpoint without its input (which the host stores on its own) is what grows with
    // the run; mid-fan-out it must hold counters, not items.
    let mut cp = run.cp.clone();
    cp.input = json!(null);
    let size = serde_json::to_vec(&cp).expect("json").len();
    assert!(size < 8 * 1024, "checkpoint is {size} bytes mid fan-out");
    // And the item list survives a reload: it is evaluated again, not stored.
    let reloaded: Checkpoint =
        serde_json::from_str(&serde_json::to_string(&run.cp).expect("json")).expect("reload");
    run.cp = reloaded;
    let next = run.ok("m", Some(25_000), 1, json!({}));
    let to = next.iter().find_map(|c| match c {
        Command::RunStep { input, item, .. } => {
            Some((item.unwrap_or_default(), input["to"].clone()))
        }
        _ => None,
    });
    assert_eq!(to, Some((25_050, json!("attendee25050@example.org"))));
}

// ---- loops and waits -------------------------------------------------------------------------

#[test]
fn a_loop_repeats_with_its_delay_until_the_condition_holds() {
    let (mut run, cmds) = Run::start(
        wf(
            json!([{"id": "follow_up", "action": "act", "input": {"n": "${iteration}"},
                    "loop": {"until": "steps.follow_up.output.replied", "max_iterations": 3, "delay": "4d"}}]),
        ),
        json!({}),
    );
    assert_eq!(dispatched(&cmds), vec![("follow_up".into(), Some(1), 1)]);
    let cmds = run.ok("follow_up", Some(1), 1, json!({"replied": false}));
    assert!(dispatched(&cmds).is_empty());
    assert_eq!(
        timers(&cmds),
        vec![(TimerKind::LoopDelay, t0() + chrono::TimeDelta::days(4))]
    );
    let cmds = run.fire(&cmds, TimerKind::LoopDelay);
    // Attempts number on across iterations: the second iteration's first attempt is 2.
    assert_eq!(dispatched(&cmds), vec![("follow_up".into(), Some(2), 2)]);
    let cmds = run.ok("follow_up", Some(2), 2, json!({"replied": true}));
    assert_eq!(finished(&cmds), Some(RunStatus::Completed));
    assert_eq!(run.cp.step("follow_up").expect("step").iteration, 2);
}

#[test]
fn a_loop_stops_at_max_iterations_failing_if_asked() {
    for (on_exhausted, expected) in [
        ("succeed", RunStatus::Completed),
        ("fail", RunStatus::CompletedWithErrors),
    ] {
        let (mut run, _) = Run::start(
            wf_with(
                "continue",
                json!([{"id": "l", "action": "act",
                        "loop": {"until": "false == true", "max_iterations": 2, "on_exhausted": on_exhausted}}]),
            ),
            json!({}),
        );
        run.ok("l", Some(1), 1, json!({}));
        let cmds = run.ok("l", Some(2), 2, json!({}));
        assert_eq!(finished(&cmds), Some(expected), "{on_exhausted}");
    }
}

#[test]
fn a_wait_for_a_duration_takes_no_real_time() {
    let (mut run, cmds) = Run::start(
        wf(
            json!([{"id": "w", "wait": {"duration": "7d"}}, {"id": "a", "action": "act", "depends_on": ["w"]}]),
        ),
        json!({}),
    );
    assert_eq!(
        timers(&cmds),
        vec![(TimerKind::Wait, t0() + chrono::TimeDelta::days(7))]
    );
    assert_eq!(run.status("w"), StepStatus::Waiting);
    let cmds = run.fire(&cmds, TimerKind::Wait);
    assert_eq!(steps_run(&cmds), names(&["a"]));
    assert_eq!(run.status("w"), StepStatus::Succeeded);
}

#[test]
fn a_wait_until_nine_in_berlin_a_week_before_the_event_crosses_daylight_saving() {
    let (run, cmds) = Run::start(
        wf(json!([{"id": "remind", "action": "act",
                    "wait": {"until": "input.event.starts_at", "offset": "-7d", "at": "09:00",
                             "time_zone": "${input.event.time_zone}"}}])),
        json!({"event": {"starts_at": "2026-04-02T10:00:00+02:00", "time_zone": "Europe/Berlin"}}),
    );
    // Before the change Berlin is UTC+1: 09:00 local is 08:00 UTC.
    let at = chrono::DateTime::parse_from_rfc3339("2026-03-26T08:00:00Z").expect("t");
    assert_eq!(
        timers(&cmds),
        vec![(TimerKind::Wait, at.with_timezone(&chrono::Utc))]
    );
    assert_eq!(run.status("remind"), StepStatus::Waiting);
}

#[test]
fn a_wait_until_an_instant_already_past_runs_at_once() {
    let (_, cmds) = Run::start(
        wf(json!([{"id": "late", "action": "act", "wait": {"until": "'2020-01-01T00:00:00Z'"}}])),
        json!({}),
    );
    assert_eq!(steps_run(&cmds), names(&["late"]));
}

// ---- retries and timeouts --------------------------------------------------------------------

#[test]
fn a_retryable_failure_is_retried_after_a_jittered_backoff_with_a_new_key() {
    let (mut run, _) = Run::start(
        wf(json!([{"id": "a", "action": "act",
                    "retry": {"max_attempts": 3, "initial_interval": "10s", "backoff_rate": 2.0}}])),
        json!({}),
    );
    let cmds = run.fail("a", None, 1, true);
    let (kind, at) = timers(&cmds)[0];
    assert_eq!(kind, TimerKind::Backoff);
    assert!(
        at >= t0() && at <= t0() + chrono::TimeDelta::seconds(10),
        "{at}"
    );
    let cmds = run.fire(&cmds, TimerKind::Backoff);
    let key = cmds.iter().find_map(|c| match c {
        Command::RunStep { key, .. } => Some(key.clone()),
        _ => None,
    });
    assert_eq!(key.as_deref(), Some("ex1/a/-/2"));
    let cmds = run.fail("a", None, 2, true);
    let cmds = run.fire(&cmds, TimerKind::Backoff);
    assert_eq!(dispatched(&cmds), vec![("a".into(), None, 3)]);
    // The third attempt was the last.
    let cmds = run.fail("a", None, 3, true);
    assert_eq!(run.status("a"), StepStatus::Failed);
    assert_eq!(finished(&cmds), Some(RunStatus::Failed));
    assert_eq!(run.cp.step("a").expect("a").retries, 2);
}

#[test]
fn a_non_retryable_error_fails_at_once() {
    for (retryable, name) in [(false, "Rejected"), (true, "Unavailable")] {
        let (mut run, _) = Run::start(
            wf(json!([{"id": "a", "action": "act",
                        "retry": {"max_attempts": 5, "non_retryable": ["Unavailable"]}}])),
            json!({}),
        );
        let cmds = run.fail("a", None, 1, retryable);
        assert!(timers(&cmds).is_empty(), "{name} was retried");
        assert_eq!(run.status("a"), StepStatus::Failed, "{name}");
    }
}

#[test]
fn a_timeout_is_a_retryable_failure() {
    let (mut run, cmds) = Run::start(
        wf(json!([{"id": "a", "action": "act", "timeout": "30s",
                    "retry": {"max_attempts": 2, "initial_interval": "1s", "jitter": "none"}}])),
        json!({}),
    );
    assert_eq!(
        timers(&cmds),
        vec![(TimerKind::Timeout, t0() + chrono::TimeDelta::seconds(30))]
    );
    let cmds = run.fire(&cmds, TimerKind::Timeout);
    assert_eq!(timers(&cmds)[0].0, TimerKind::Backoff);
    let retry_at = t0() + chrono::TimeDelta::seconds(31);
    assert_eq!(timers(&cmds)[0].1, retry_at);
    // The late answer of the timed-out attempt is ignored.
    let late = run.ok("a", None, 1, json!({}));
    assert!(late.is_empty());
    assert_eq!(run.status("a"), StepStatus::Waiting);
    let cmds = run.fire(&cmds, TimerKind::Backoff);
    assert_eq!(dispatched(&cmds), vec![("a".into(), None, 2)]);
}

// ---- idempotency and history -----------------------------------------------------------------

#[test]
fn an_event_applied_twice_changes_nothing_and_emits_nothing() {
    let (mut run, _) = Run::start(
        wf(
            json!([{"id": "a", "action": "act"}, {"id": "b", "action": "act", "depends_on": ["a"]}]),
        ),
        json!({}),
    );
    let event = Event::new(
        "ev-a-1",
        EventKind::StepSucceeded {
            step: "a".into(),
            item: None,
            attempt: 1,
            output: json!({}),
        },
    );
    assert_eq!(steps_run(&run.send_event(event.clone())), names(&["b"]));
    let before = run.cp.clone();
    let history = run.history.len();
    assert!(run.send_event(event).is_empty());
    assert_eq!(run.cp, before);
    assert_eq!(run.history.len(), history);
    // A duplicated operator event is recognised by its id.
    let pause = Event::new("op-1", EventKind::Pause);
    run.send_event(pause.clone());
    run.send(EventKind::Resume);
    run.send_event(pause);
    assert_eq!(run.cp.status, RunStatus::Running);
}

/// The (name, value, unit) of every EmitMetric command.
fn metrics(cmds: &[Command]) -> Vec<(String, f64, String)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::EmitMetric { name, value, unit } => Some((name.clone(), *value, unit.clone())),
            _ => None,
        })
        .collect()
}

fn count(name: &str) -> (String, f64, String) {
    (name.into(), 1.0, "Count".into())
}

#[test]
fn a_run_counts_its_start_once_and_its_end_with_its_status_and_duration() {
    // Given a two-step workflow, when it starts
    let (mut run, cmds) = Run::start(
        wf(
            json!([{"id": "a", "action": "act"}, {"id": "b", "action": "act", "depends_on": ["a"]}]),
        ),
        json!({}),
    );
    // Then the start is counted, once
    assert_eq!(metrics(&cmds), vec![count("RunStarted")]);
    assert!(run.send(EventKind::Started).is_empty(), "a second start");
    assert!(metrics(&run.done("a")).is_empty());
    // When the last step succeeds 90 seconds in, the end is counted with its duration
    run.now = t0() + chrono::TimeDelta::seconds(90);
    let cmds = run.done("b");
    assert_eq!(
        metrics(&cmds),
        vec![
            count("RunCompleted"),
            ("RunDuration".into(), 90_000.0, "Milliseconds".into())
        ]
    );
}

#[test]
fn a_step_failing_for_good_is_counted_and_so_is_the_rollback_it_ends_in() {
    // Given a -> b, rolled back on failure
    let (mut run, _) = Run::start(
        wf_with(
            "rollback",
            json!([{"id": "a", "action": "undoable", "compensate": true},
                   {"id": "b", "action": "act", "depends_on": ["a"]}]),
        ),
        json!({}),
    );
    run.done("a");
    // When b fails for good, the failure is counted and the rollback begins
    let cmds = run.fail("b", None, 1, false);
    assert_eq!(metrics(&cmds), vec![count("StepFailed")]);
    assert_eq!(compensations(&cmds), names(&["a"]));
    // When a is compensated, the run ends compensated
    let cmds = run.compensated("a", None, 1);
    let names: Vec<_> = metrics(&cmds).into_iter().map(|m| m.0).collect();
    assert_eq!(names, ["RunCompensated", "RunDuration"]);
}

#[test]
fn every_applied_event_appends_a_history_entry_saying_what_changed() {
    let (mut run, _) = Run::start(wf(json!([{"id": "a", "action": "act"}])), json!({}));
    run.done("a");
    let seqs: Vec<u64> = run.history.iter().map(|h| h.seq).collect();
    assert_eq!(seqs, vec![1, 2]);
    assert!(run.history[0].changes.iter().any(|c| matches!(c,
        Change::Step { step, from: StepStatus::Pending, to: StepStatus::Running, .. } if step == "a")));
    assert!(run.history[1].changes.iter().any(|c| matches!(
        c,
        Change::Run {
            from: RunStatus::Running,
            to: RunStatus::Completed
        }
    )));
    assert_eq!(run.cp.seq, 2);
}

#[test]
fn replaying_the_log_from_scratch_gives_the_same_checkpoint() {
    let def = wf(json!([
        {"id": "a", "action": "act", "retry": {"max_attempts": 2}},
        {"id": "b", "action": "act", "depends_on": ["a"], "for_each": {"items": "input.l", "concurrency": 2}}
    ]));
    let (mut run, _) = Run::start(def.clone(), json!({"l": [1, 2, 3]}));
    let cmds = run.fail("a", None, 1, true);
    run.fire(&cmds, TimerKind::Backoff);
    run.ok("a", None, 2, json!({"x": 1}));
    for n in 0..3 {
        run.ok("b", Some(n), 1, json!({}));
    }
    let version = version(def);
    let mut cp = Checkpoint::new(&version, "ex1", json!({"l": [1, 2, 3]}), t0());
    for (event, now, seed) in &run.log {
        cp = decide(&version, cp, event.clone(), *now, *seed).checkpoint;
    }
    assert_eq!(cp, run.cp);
    assert_eq!(cp.status, RunStatus::Completed);
}

// ---- failure policies and compensation -------------------------------------------------------

fn saga() -> serde_json::Value {
    // a -> b -> d, a -> c (c independent of b); d fails.
    json!([
        {"id": "a", "action": "undoable", "compensate": true},
        {"id": "b", "action": "undoable", "depends_on": ["a"], "compensate": true},
        {"id": "c", "action": "undoable", "depends_on": ["a"], "compensate": true},
        {"id": "n", "action": "act", "depends_on": ["a"]},
        {"id": "d", "action": "act", "depends_on": ["b", "c", "n"]}
    ])
}

#[test]
fn rollback_compensates_succeeded_steps_in_reverse_order_branches_in_parallel() {
    let (mut run, _) = Run::start(wf_with("rollback", saga()), json!({}));
    run.done("a");
    run.done("b");
    run.done("c");
    run.done("n");
    // When d fails for good
    let cmds = run.fail("d", None, 1, false);
    assert_eq!(run.cp.status, RunStatus::Compensating);
    // Then b and c (independent) are undone together; a waits for both; n has no compensation
    assert_eq!(compensations(&cmds), names(&["b", "c"]));
    assert!(compensations(&run.compensated("b", None, 1)).is_empty());
    assert_eq!(compensations(&run.compensated("c", None, 1)), names(&["a"]));
    let cmds = run.compensated("a", None, 1);
    assert_eq!(finished(&cmds), Some(RunStatus::Compensated));
    assert_eq!(run.status("n"), StepStatus::Succeeded);
    assert_eq!(run.status("d"), StepStatus::Failed);
    assert_eq!(run.cp.error.as_ref().map(|e| e.step.as_str()), Some("d"));
}

#[test]
fn rollback_lets_in_flight_steps_settle_first() {
    let (mut run, _) = Run::start(wf_with("rollback", saga()), json!({}));
    run.done("a");
    // b, c, n in flight; b fails
    let cmds = run.fail("b", None, 1, false);
    assert!(
        compensations(&cmds).is_empty(),
        "nothing undone while c and n are in flight"
    );
    assert!(dispatched(&cmds).is_empty());
    run.done("n");
    // c succeeds after the failure: it is undone too, before a
    let cmds = run.done("c");
    assert_eq!(compensations(&cmds), names(&["c"]));
    assert_eq!(compensations(&run.compensated("c", None, 1)), names(&["a"]));
    assert_eq!(
        finished(&run.compensated("a", None, 1)),
        Some(RunStatus::Compensated)
    );
    assert_eq!(run.status("d"), StepStatus::Pending);
}

#[test]
fn a_compensation_failing_for_good_needs_attention_and_keeps_both_errors() {
    let (mut run, _) = Run::start(
        wf_with(
            "rollback",
            json!([
                {"id": "a", "action": "undoable", "compensate": {"retry": {"max_attempts": 2, "jitter": "none"}}},
                {"id": "b", "action": "act", "depends_on": ["a"]}
            ]),
        ),
        json!({}),
    );
    run.done("a");
    let cmds = run.fail("b", None, 1, false);
    assert_eq!(compensations(&cmds), names(&["a"]));
    let fail = |run: &mut Run, attempt| {
        run.send(EventKind::CompensationFailed {
            step: "a".into(),
            item: None,
            attempt,
            error: StepError::retryable("Unavailable", "down"),
        })
    };
    let cmds = fail(&mut run, 1);
    let cmds = run.fire(&cmds, TimerKind::CompensationBackoff);
    assert_eq!(compensations(&cmds), names(&["a"]));
    let cmds = fail(&mut run, 2);
    assert_eq!(finished(&cmds), Some(RunStatus::NeedsAttention));
    assert_eq!(run.status("a"), StepStatus::CompensationFailed);
    assert_eq!(run.cp.error.as_ref().map(|e| e.step.as_str()), Some("b"));
    assert_eq!(
        run.cp
            .compensation_error
            .as_ref()
            .map(|e| e.error.message.as_str()),
        Some("down")
    );
    // An operator rolls back again: the compensation is attempted anew, as attempt 3 (the
    // numbering goes on, so its key is new), and a late answer to attempt 1 changes nothing.
    let cmds = run.send(EventKind::Rollback { to: None });
    assert_eq!(compensations(&cmds), names(&["a"]));
    assert!(run.compensated("a", None, 1).is_empty());
    assert_eq!(
        finished(&run.compensated("a", None, 3)),
        Some(RunStatus::Compensated)
    );
}

#[test]
fn selective_rollback_undoes_what_follows_and_pauses_there_for_a_retry() {
    let (mut run, _) = Run::start(
        wf_with(
            "rollback",
            json!([
                {"id": "a", "action": "undoable", "compensate": true},
                {"id": "b", "action": "undoable", "depends_on": ["a"], "compensate": true},
                {"id": "c", "action": "undoable", "depends_on": ["b"], "compensate": true},
                {"id": "d", "action": "act", "depends_on": ["c"], "on_failure": {"rollback_to": "b"}}
            ]),
        ),
        json!({}),
    );
    run.done("a");
    run.done("b");
    run.done("c");
    let cmds = run.fail("d", None, 1, false);
    assert_eq!(compensations(&cmds), names(&["c"]));
    assert_eq!(compensations(&run.compensated("c", None, 1)), names(&["b"]));
    let cmds = run.compensated("b", None, 1);
    assert!(finished(&cmds).is_none());
    assert_eq!(run.cp.status, RunStatus::Paused);
    assert_eq!(run.cp.paused_at.as_deref(), Some("b"));
    assert_eq!(run.status("a"), StepStatus::Succeeded, "a precedes b: kept");
    assert_eq!(run.status("b"), StepStatus::Pending);
    // When the operator retries b, the run goes forward from there
    let cmds = run.send(EventKind::RetryStep { step: "b".into() });
    assert_eq!(steps_run(&cmds), names(&["b"]));
}

#[test]
fn continue_skips_dependents_and_lets_other_branches_finish() {
    let (mut run, _) = Run::start(
        wf_with(
            "continue",
            json!([
                {"id": "a", "action": "act"},
                {"id": "b", "action": "act", "depends_on": ["a"]},
                {"id": "c", "action": "act"},
                {"id": "d", "action": "act", "depends_on": ["c"]}
            ]),
        ),
        json!({}),
    );
    run.fail("a", None, 1, false);
    assert_eq!(run.status("b"), StepStatus::Skipped);
    assert_eq!(
        run.cp.step("b").expect("b").skip_reason,
        Some(SkipReason::UpstreamFailed)
    );
    assert_eq!(steps_run(&run.done("c")), names(&["d"]));
    assert_eq!(
        finished(&run.done("d")),
        Some(RunStatus::CompletedWithErrors)
    );
}

#[test]
fn pause_waits_for_an_operator_who_can_retry_skip_or_resume() {
    let def = wf_with(
        "pause",
        json!([
            {"id": "a", "action": "act"},
            {"id": "b", "action": "act", "depends_on": ["a"], "input": {"v": "${steps.a.output.v}"}}
        ]),
    );
    // Retry: a new attempt of the same step
    let (mut run, _) = Run::start(def.clone(), json!({}));
    run.fail("a", None, 1, false);
    assert_eq!(run.cp.status, RunStatus::Paused);
    assert_eq!(run.cp.paused_at.as_deref(), Some("a"));
    let cmds = run.send(EventKind::RetryStep { step: "a".into() });
    assert_eq!(dispatched(&cmds), vec![("a".into(), None, 2)]);
    assert_eq!(run.cp.status, RunStatus::Running);
    // Skip with a supplied output: dependents run on it
    let (mut run, _) = Run::start(def.clone(), json!({}));
    run.fail("a", None, 1, false);
    let cmds = run.send(EventKind::SkipStep {
        step: "a".into(),
        output: Some(json!({"v": 42})),
    });
    let input = cmds.iter().find_map(|c| match c {
        Command::RunStep { input, .. } => Some(input.clone()),
        _ => None,
    });
    assert_eq!(input, Some(json!({"v": 42})));
    // Resume: the failure stands, dependents are skipped
    let (mut run, _) = Run::start(def, json!({}));
    run.fail("a", None, 1, false);
    let cmds = run.send(EventKind::Resume);
    assert_eq!(finished(&cmds), Some(RunStatus::CompletedWithErrors));
}

#[test]
fn an_operator_pause_holds_new_dispatches_until_resume() {
    let (mut run, _) = Run::start(
        wf(
            json!([{"id": "a", "action": "act"}, {"id": "b", "action": "act", "depends_on": ["a"]}]),
        ),
        json!({}),
    );
    run.send(EventKind::Pause);
    assert!(run.done("a").is_empty(), "a's result is kept, b waits");
    assert_eq!(run.status("a"), StepStatus::Succeeded);
    assert_eq!(steps_run(&run.send(EventKind::Resume)), names(&["b"]));
}

#[test]
fn a_timer_due_while_paused_runs_on_resume() {
    let (mut run, cmds) = Run::start(
        wf(json!([{"id": "w", "action": "act", "wait": {"duration": "1h"}}])),
        json!({}),
    );
    run.send(EventKind::Pause);
    assert!(run.fire(&cmds, TimerKind::Wait).is_empty());
    assert_eq!(steps_run(&run.send(EventKind::Resume)), names(&["w"]));
}

#[test]
fn cancel_with_or_without_compensation() {
    let def = wf(json!([
        {"id": "a", "action": "undoable", "compensate": true},
        {"id": "b", "action": "act", "depends_on": ["a"]}
    ]));
    let (mut run, _) = Run::start(def.clone(), json!({}));
    run.done("a");
    let cmds = run.send(EventKind::Cancel { compensate: false });
    assert_eq!(finished(&cmds), Some(RunStatus::Cancelled));
    assert!(compensations(&cmds).is_empty());
    assert_eq!(run.status("b"), StepStatus::Cancelled);
    // Nothing happens after a terminal status.
    assert!(run.done("b").is_empty());

    let (mut run, _) = Run::start(def, json!({}));
    run.done("a");
    run.send(EventKind::Cancel { compensate: true });
    let cmds = run.done("b");
    assert_eq!(compensations(&cmds), names(&["a"]));
    assert_eq!(
        finished(&run.compensated("a", None, 1)),
        Some(RunStatus::Cancelled)
    );
    assert_eq!(run.status("a"), StepStatus::Compensated);
}

#[test]
fn a_fan_out_is_compensated_item_by_item_except_the_items_that_failed() {
    let (mut run, _) = Run::start(
        wf_with(
            "rollback",
            json!([
                {"id": "m", "action": "email.send", "input": {"to": "${item}"}, "compensate": true,
                 "for_each": {"items": "input.l", "concurrency": 2, "tolerated_failure": 0.5}},
                {"id": "z", "action": "act", "depends_on": ["m"]}
            ]),
        ),
        json!({"l": ["a@x", "b@x", "c@x"]}),
    );
    run.ok("m", Some(0), 1, json!({}));
    run.fail("m", Some(1), 1, false);
    run.ok("m", Some(2), 1, json!({}));
    assert_eq!(run.status("m"), StepStatus::Succeeded);
    let cmds = run.fail("z", None, 1, false);
    let items: Vec<(Option<u32>, serde_json::Value)> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::RunCompensation {
                item,
                input,
                builtin,
                forward_key,
                ..
            } => {
                assert!(builtin);
                assert!(forward_key.starts_with("ex1/m/"));
                Some((*item, input["to"].clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        items,
        vec![(Some(0), json!("a@x")), (Some(2), json!("c@x"))]
    );
    run.compensated("m", Some(0), 1);
    assert_eq!(
        finished(&run.compensated("m", Some(2), 1)),
        Some(RunStatus::Compensated)
    );
}

#[test]
fn a_failure_with_nothing_to_undo_ends_failed() {
    let (mut run, _) = Run::start(
        wf_with("rollback", json!([{"id": "a", "action": "act"}])),
        json!({}),
    );
    assert_eq!(
        finished(&run.fail("a", None, 1, false)),
        Some(RunStatus::Failed)
    );
}

#[test]
fn a_step_started_over_gets_new_idempotency_keys() {
    let (mut run, _) = Run::start(
        wf_with("pause", json!([{"id": "a", "action": "act"}])),
        json!({}),
    );
    run.fail("a", None, 1, false);
    let cmds = run.send(EventKind::RetryStep { step: "a".into() });
    let key = cmds.iter().find_map(|c| match c {
        Command::RunStep { key, .. } => Some(key.clone()),
        _ => None,
    });
    assert_eq!(
        key.as_deref(),
        Some("ex1/a/-/2"),
        "not the first run's ex1/a/-/1"
    );
}

// ---- what a run waits for -------------------------------------------------------------------

/// The attempt and compensation commands among `cmds`.
fn attempts(cmds: &[Command]) -> Vec<Command> {
    cmds.iter()
        .filter(|c| matches!(c, Command::RunStep { .. } | Command::RunCompensation { .. }))
        .cloned()
        .collect()
}

#[test]
fn a_run_awaits_exactly_the_attempts_it_dispatched_and_has_not_had_answered() {
    // Given a for_each of three items, two at a time, then a loop
    let (mut run, cmds) = Run::start(
        wf(json!([
            {"id": "mail", "action": "act", "input": {"to": "${item}"},
             "for_each": {"items": "input.to", "concurrency": 2}},
            {"id": "poll", "action": "act", "depends_on": ["mail"],
             "loop": {"until": "steps.poll.output.done", "max_iterations": 3}}
        ])),
        json!({"to": ["a", "b", "c"]}),
    );
    let first = attempts(&cmds);
    assert_eq!(first.len(), 2);
    assert!(
        first.iter().all(|c| run.cp.awaits(c)),
        "both items in flight"
    );
    // When item 0 is answered, then it is awaited no more; item 1 and the new item 2 are
    let third = attempts(&run.ok("mail", Some(0), 1, json!({})));
    assert!(!run.cp.awaits(&first[0]));
    assert!(run.cp.awaits(&first[1]) && run.cp.awaits(&third[0]));
    assert_eq!(run.cp.awaited(), 2);
    run.ok("mail", Some(1), 1, json!({}));
    // And the loop's first iteration is awaited until answered, then its second is
    let iteration1 = attempts(&run.ok("mail", Some(2), 1, json!({})));
    assert!(run.cp.awaits(&iteration1[0]));
    assert_eq!(run.cp.awaited(), 1);
    let iteration2 = attempts(&run.ok("poll", Some(1), 1, json!({"done": false})));
    assert!(!run.cp.awaits(&iteration1[0]) && run.cp.awaits(&iteration2[0]));
    // And nothing is awaited once the run has finished
    let cmds = run.ok("poll", Some(2), 2, json!({"done": true}));
    assert_eq!(finished(&cmds), Some(RunStatus::Completed));
    assert!(!run.cp.awaits(&iteration2[0]));
    assert_eq!(run.cp.awaited(), 0);
}

#[test]
fn a_rolling_back_run_awaits_its_compensations_in_flight() {
    // Given a saga whose last step fails for good, and b and c being undone
    let (mut run, _) = Run::start(wf_with("rollback", saga()), json!({}));
    for step in ["a", "b", "c", "n"] {
        run.done(step);
    }
    let undo = attempts(&run.fail("d", None, 1, false));
    assert_eq!(undo.len(), 2);
    assert!(undo.iter().all(|c| run.cp.awaits(c)));
    // When b's compensation is answered, then only c's is awaited
    run.compensated("b", None, 1);
    let awaited: Vec<bool> = undo.iter().map(|c| run.cp.awaits(c)).collect();
    assert_eq!(awaited, vec![false, true]);
    assert_eq!(run.cp.awaited(), 1);
}
