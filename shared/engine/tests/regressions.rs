//! Regressions: engine bugs the property test (`tests/properties.rs`) found, each reduced to a
//! small, deterministic given / when / then case that failed before its fix.

use chrono::{DateTime, Utc};
use eventflow_engine::*;
use serde_json::{Value, json};

// ---- a small harness --------------------------------------------------------------------

fn registry() -> ActionRegistry {
    ActionRegistry::new([("act", false), ("undoable", true)].into_iter().map(
        |(name, compensable)| ActionSpec {
            name: name.into(),
            compensable,
            summary: String::new(),
        },
    ))
}

fn t0() -> Timestamp {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .expect("a time")
        .with_timezone(&Utc)
}

/// What one event did.
#[derive(Debug)]
struct Step {
    commands: Vec<Command>,
    applied: bool,
}

impl Step {
    /// `(key, step, item)` of every `RunStep`.
    fn runs(&self) -> Vec<(String, String, Option<u32>)> {
        self.commands
            .iter()
            .filter_map(|c| match c {
                Command::RunStep {
                    key, step, item, ..
                } => Some((key.clone(), step.clone(), *item)),
                _ => None,
            })
            .collect()
    }

    fn run_keys(&self) -> Vec<String> {
        self.runs().into_iter().map(|(k, _, _)| k).collect()
    }

    /// `(step, item)` of every `RunCompensation`.
    fn compensations(&self) -> Vec<(String, Option<u32>)> {
        self.commands
            .iter()
            .filter_map(|c| match c {
                Command::RunCompensation { step, item, .. } => Some((step.clone(), *item)),
                _ => None,
            })
            .collect()
    }

    fn compensation_keys(&self) -> Vec<String> {
        self.commands
            .iter()
            .filter_map(|c| match c {
                Command::RunCompensation { key, .. } => Some(key.clone()),
                _ => None,
            })
            .collect()
    }

    fn timer(&self, kind: TimerKind) -> (Timer, Timestamp) {
        self.commands
            .iter()
            .find_map(|c| match c {
                Command::ScheduleTimer { timer, at } if timer.kind == kind => {
                    Some((timer.clone(), *at))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {kind:?} timer in {:#?}", self.commands))
    }
}

struct Run {
    version: Version,
    cp: Checkpoint,
    now: Timestamp,
    ids: u64,
}

impl Run {
    fn start(steps: Value, input: Value) -> (Run, Step) {
        let def: Definition = serde_json::from_value(json!({
            "id": "bug", "name": "bug", "kind": "custom", "steps": steps,
        }))
        .expect("the definition parses");
        let version = Version::compile(def, 1, &registry())
            .unwrap_or_else(|p| panic!("invalid definition: {p:#?}"));
        let cp = Checkpoint::new(&version, "ex", input, t0());
        let mut run = Run {
            version,
            cp,
            now: t0(),
            ids: 0,
        };
        let first = run.send(EventKind::Started);
        (run, first)
    }

    fn send(&mut self, kind: EventKind) -> Step {
        self.ids += 1;
        self.deliver(Event::new(format!("e{}", self.ids), kind))
    }

    fn deliver(&mut self, event: Event) -> Step {
        let placeholder = Checkpoint::new(&self.version, "", Value::Null, self.now);
        let cp = std::mem::replace(&mut self.cp, placeholder);
        let d = decide(&self.version, cp, event, self.now, 7);
        self.cp = d.checkpoint;
        Step {
            commands: d.commands,
            applied: d.history.is_some(),
        }
    }

    fn ok(&mut self, step: &str, item: Option<u32>, attempt: u32) -> Step {
        self.send(EventKind::StepSucceeded {
            step: step.into(),
            item,
            attempt,
            output: json!({"done": true}),
        })
    }

    fn fail(&mut self, step: &str, item: Option<u32>, attempt: u32, retryable: bool) -> Step {
        let error = if retryable {
            StepError::retryable("Unavailable", "try later")
        } else {
            StepError::terminal("Rejected", "no")
        };
        self.send(EventKind::StepFailed {
            step: step.into(),
            item,
            attempt,
            error,
        })
    }

    fn compensated(&mut self, step: &str, item: Option<u32>, attempt: u32) -> Step {
        self.send(EventKind::CompensationSucceeded {
            step: step.into(),
            item,
            attempt,
        })
    }

    fn compensation_failed(&mut self, step: &str, item: Option<u32>, attempt: u32) -> Step {
        self.send(EventKind::CompensationFailed {
            step: step.into(),
            item,
            attempt,
            error: StepError::terminal("Refused", "cannot undo"),
        })
    }

    /// Moves the clock to `at` and fires `timer`.
    fn fire(&mut self, timer: Timer, at: Timestamp) -> Step {
        self.now = self.now.max(at);
        self.send(EventKind::TimerFired { timer })
    }

    fn status(&self, step: &str) -> StepStatus {
        self.cp.step(step).expect("a step").status
    }
}

fn once(retry_max: u32) -> Value {
    json!({"max_attempts": retry_max, "initial_interval": "1s", "jitter": "none"})
}

// ---- 1. a new try of a step reuses the attempt numbers of the one before ---------------------
//
// After an operator's RetryStep, a selective rollback or a compensation retry, attempts are
// numbered from 1 again: the same idempotency key ("the same key means the same attempt"), the
// same timers and the same (step, item, attempt) in results. A host that deduplicates by key
// hands back the old result; a late result or a redelivered timer of the earlier try is taken
// for the new one.

#[test]
fn an_operator_retry_dispatches_an_attempt_key_never_used_before() {
    // Given a step that fails for good and pauses the run
    let (mut run, first) = Run::start(
        json!([{"id": "a", "action": "act", "retry": once(1), "on_failure": "pause"}]),
        json!({}),
    );
    let first_keys = first.run_keys();
    run.fail("a", None, 1, false);
    assert_eq!(run.cp.status, RunStatus::Paused);
    // When an operator retries it
    let retry = run.send(EventKind::RetryStep { step: "a".into() });
    // Then the new attempt has a key of its own
    assert_eq!(retry.run_keys().len(), 1, "{:?}", retry.commands);
    for key in retry.run_keys() {
        assert!(
            !first_keys.contains(&key),
            "the retry reuses the key {key} of the attempt that failed"
        );
    }
}

#[test]
fn a_late_result_from_before_an_operator_retry_is_not_taken_for_the_new_attempt() {
    // Given a step whose only attempt timed out, and an operator's retry
    let (mut run, first) = Run::start(
        json!([{"id": "a", "action": "act", "retry": once(1), "timeout": "30s",
                "on_failure": "pause"}]),
        json!({}),
    );
    let (timeout, at) = first.timer(TimerKind::Timeout);
    run.fire(timeout, at);
    assert_eq!(run.cp.status, RunStatus::Paused);
    run.send(EventKind::RetryStep { step: "a".into() });
    assert_eq!(run.status("a"), StepStatus::Running);
    // When the answer to the attempt that timed out arrives after all
    let late = run.ok("a", None, 1);
    // Then it is not the result of the new attempt
    assert!(
        !late.applied,
        "the late result of the first try was applied"
    );
    assert_eq!(run.status("a"), StepStatus::Running);
}

#[test]
fn a_step_run_again_after_a_selective_rollback_gets_attempt_keys_never_used_before() {
    // Given a -> b, where b's failure rolls back to a
    let (mut run, first) = Run::start(
        json!([
            {"id": "a", "action": "undoable", "compensate": true},
            {"id": "b", "action": "act", "depends_on": ["a"], "retry": once(1),
             "on_failure": {"rollback_to": "a"}}
        ]),
        json!({}),
    );
    let first_keys = first.run_keys();
    run.ok("a", None, 1);
    run.fail("b", None, 1, false);
    run.compensated("a", None, 1);
    assert_eq!(run.cp.status, RunStatus::Paused);
    // When the operator resumes from a
    let again = run.send(EventKind::Resume);
    // Then a runs under a new key
    assert_eq!(again.run_keys().len(), 1, "{:?}", again.commands);
    for key in again.run_keys() {
        assert!(
            !first_keys.contains(&key),
            "the second run of a reuses the key {key}"
        );
    }
}

#[test]
fn a_stale_wait_timer_does_not_cut_short_the_wait_of_a_retried_step() {
    // Given a step that waits an hour, then fails and is retried by an operator
    let (mut run, first) = Run::start(
        json!([{"id": "w", "action": "act", "wait": {"duration": "1h"}, "retry": once(1),
                "on_failure": "pause"}]),
        json!({}),
    );
    let (wait, at) = first.timer(TimerKind::Wait);
    let timer_event = Event::new("timer-1", EventKind::TimerFired { timer: wait });
    run.now = at;
    run.deliver(timer_event.clone());
    run.fail("w", None, 1, false);
    let retry = run.send(EventKind::RetryStep { step: "w".into() });
    assert_eq!(run.status("w"), StepStatus::Waiting, "{:?}", retry.commands);
    // When the first wait's timer is delivered again (timers are delivered at least once)
    let stale = run.deliver(timer_event);
    // Then the new wait goes on
    assert!(stale.runs().is_empty(), "{:?}", stale.commands);
    assert_eq!(run.status("w"), StepStatus::Waiting);
}

#[test]
fn retrying_a_failed_compensation_dispatches_a_key_never_used_before() {
    // Given a compensation that failed for good
    let (mut run, _) = Run::start(
        json!([
            {"id": "a", "action": "undoable", "compensate": {"retry": once(1)}},
            {"id": "b", "action": "act", "depends_on": ["a"], "retry": once(1)}
        ]),
        json!({}),
    );
    run.ok("a", None, 1);
    let rollback = run.fail("b", None, 1, false);
    let first_keys = rollback.compensation_keys();
    run.compensation_failed("a", None, 1);
    assert_eq!(run.cp.status, RunStatus::NeedsAttention);
    // When an operator retries it
    let retry = run.send(EventKind::RetryStep { step: "a".into() });
    // Then the new attempt has a key of its own
    assert_eq!(retry.compensation_keys().len(), 1, "{:?}", retry.commands);
    for key in retry.compensation_keys() {
        assert!(
            !first_keys.contains(&key),
            "the retried compensation reuses the key {key}"
        );
    }
}

// ---- 2. a null output is lost when the checkpoint is reloaded ------------------------------
//
// A step with only a wait (or an action whose result is null) keeps `output: Some(null)`; it
// is written as `"output": null` and read back as `None`, so `has(steps.<id>.output)` changes
// with a reload and two hosts decide differently.

#[test]
fn a_null_output_survives_a_reload_of_the_checkpoint() {
    // Given a wait-only step w, a step x, and c reading whether w has an output
    let steps = json!([
        {"id": "w", "wait": {"duration": "1s"}},
        {"id": "x", "action": "act"},
        {"id": "c", "action": "act", "depends_on": ["w", "x"], "when": "has(steps.w.output)"}
    ]);
    let (mut kept, first) = Run::start(steps.clone(), json!({}));
    let (mut reloaded, _) = Run::start(steps, json!({}));
    let (wait, at) = first.timer(TimerKind::Wait);
    kept.fire(wait.clone(), at);
    reloaded.fire(wait, at);
    // When one host writes the checkpoint to JSON and reads it back
    let text = serde_json::to_string(&reloaded.cp).expect("JSON");
    reloaded.cp = serde_json::from_str(&text).expect("a checkpoint");
    // Then both hosts decide the same, and it is the same checkpoint
    let before = reloaded.cp.clone();
    let a = kept.ok("x", None, 1);
    let b = reloaded.ok("x", None, 1);
    assert_eq!(
        a.commands, b.commands,
        "c runs on one host and not on the other"
    );
    assert_eq!(before.step("w"), kept.cp.step("w"));
}

// ---- 3. retrying one failed compensation ends the rollback though another failed -----------
//
// RetryStep on a step whose compensation failed clears the run's compensation error; once that
// one compensation succeeds, the rollback finishes as if everything had been undone, leaving
// the other failed compensation behind.

#[test]
fn retrying_one_failed_compensation_does_not_end_the_rollback_while_another_has_failed() {
    // Given two compensations that both failed for good
    let (mut run, _) = Run::start(
        json!([
            {"id": "a", "action": "undoable", "compensate": {"retry": once(1)}},
            {"id": "b", "action": "undoable", "compensate": {"retry": once(1)}},
            {"id": "c", "action": "act", "depends_on": ["a", "b"], "retry": once(1)}
        ]),
        json!({}),
    );
    run.ok("a", None, 1);
    run.ok("b", None, 1);
    run.fail("c", None, 1, false);
    run.compensation_failed("a", None, 1);
    run.compensation_failed("b", None, 1);
    assert_eq!(run.cp.status, RunStatus::NeedsAttention);
    // When an operator retries a's compensation and it succeeds
    run.send(EventKind::RetryStep { step: "a".into() });
    let done = run.compensated("a", None, 2);
    let done = if done.applied {
        done
    } else {
        run.compensated("a", None, 1)
    };
    // Then the run still needs attention: b has not been undone
    assert_eq!(run.status("b"), StepStatus::CompensationFailed);
    assert_eq!(
        run.cp.status,
        RunStatus::NeedsAttention,
        "{:?}",
        done.commands
    );
}

// ---- 4. an item waiting to retry when a rollback begins is compensated ---------------------
//
// begin_rollback drops the items of a for_each that wait on a backoff, but compensation undoes
// every dispatched item not listed as failed, so an item that never succeeded is "undone".

#[test]
fn an_item_waiting_to_retry_when_a_rollback_begins_is_not_compensated() {
    // Given a for_each whose item 0 succeeded and item 1 waits to retry
    let (mut run, _) = Run::start(
        json!([
            {"id": "f", "action": "undoable", "compensate": true, "retry": once(2),
             "for_each": {"items": "input.items", "concurrency": 2}},
            {"id": "g", "action": "act", "retry": once(1)}
        ]),
        json!({"items": ["x", "y"]}),
    );
    run.ok("f", Some(0), 1);
    run.fail("f", Some(1), 1, true);
    // When another step fails and the run rolls back
    let rollback = run.fail("g", None, 1, false);
    // Then only item 0 is compensated
    assert_eq!(run.cp.status, RunStatus::Compensating);
    assert_eq!(rollback.compensations(), vec![("f".to_owned(), Some(0))]);
}

// ---- 5. a for_each compensation stops halfway when another compensation fails --------------
//
// Once any compensation has failed for good, advance_compensation no longer fills fan-out
// compensations; one that had items left stays Compensating with nothing in flight, so the run
// never reaches needs_attention: it is stuck.

#[test]
fn a_for_each_compensation_goes_on_when_another_compensation_fails_for_good() {
    // Given a for_each f (one item at a time) and a step g, both to compensate
    let (mut run, _) = Run::start(
        json!([
            {"id": "f", "action": "undoable", "compensate": true,
             "for_each": {"items": "input.items", "concurrency": 1}},
            {"id": "g", "action": "undoable", "compensate": {"retry": once(1)}},
            {"id": "h", "action": "act", "depends_on": ["f", "g"], "retry": once(1)}
        ]),
        json!({"items": ["x", "y"]}),
    );
    run.ok("f", Some(0), 1);
    run.ok("f", Some(1), 1);
    run.ok("g", None, 1);
    let rollback = run.fail("h", None, 1, false);
    assert_eq!(
        rollback.compensations(),
        vec![("f".to_owned(), Some(0)), ("g".to_owned(), None)]
    );
    // When g's compensation fails for good, then f's first item is undone
    run.compensation_failed("g", None, 1);
    let next = run.compensated("f", Some(0), 1);
    // Then f's second item is compensated too, or the run asks for attention: it is not left
    // compensating with nothing in flight
    assert!(
        next.compensations().contains(&("f".to_owned(), Some(1)))
            || run.cp.status == RunStatus::NeedsAttention,
        "stuck: {:?} with f {:?} and commands {:?}",
        run.cp.status,
        run.status("f"),
        next.commands
    );
}

// ---- 6. a selective rollback waits for ever on a step outside it -------------------------
//
// advance_compensation waits until no step is Running, including steps outside a selective
// rollback. A for_each outside it with an item waiting on a backoff stays Running: its backoff
// only marks the item due while the run compensates, so nothing ever moves.

#[test]
fn a_selective_rollback_does_not_wait_for_a_step_outside_it_that_waits_to_retry() {
    // Given a -> b (b rolls back to a), and an unrelated for_each f
    let (mut run, _) = Run::start(
        json!([
            {"id": "a", "action": "undoable", "compensate": true},
            {"id": "b", "action": "act", "depends_on": ["a"], "retry": once(1),
             "on_failure": {"rollback_to": "a"}},
            {"id": "f", "action": "act", "retry": once(2),
             "for_each": {"items": "input.items", "concurrency": 2}}
        ]),
        json!({"items": ["x", "y"]}),
    );
    run.ok("a", None, 1);
    let backoff = run.fail("f", Some(0), 1, true);
    let (timer, at) = backoff.timer(TimerKind::Backoff);
    run.ok("f", Some(1), 1);
    // When b fails and everything outstanding has been delivered
    let mut compensations = run.fail("b", None, 1, false).compensations();
    compensations.extend(run.fire(timer, at).compensations());
    // Then a has been compensated
    assert!(
        compensations.contains(&("a".to_owned(), None)),
        "stuck: {:?}, a {:?}, f {:?}",
        run.cp.status,
        run.status("a"),
        run.status("f")
    );
}

// ---- 7. a skipped for_each is never compensated ---------------------------------------------
//
// owes_compensation counts a Failed or Cancelled for_each with succeeded items, but not one an
// operator skipped after it failed: its succeeded items are never undone.

#[test]
fn a_skipped_for_each_is_compensated_for_the_items_that_succeeded() {
    // Given a for_each whose item 0 succeeded and item 1 failed, skipped by an operator
    let (mut run, _) = Run::start(
        json!([
            {"id": "f", "action": "undoable", "compensate": true, "retry": once(1),
             "on_failure": "pause", "for_each": {"items": "input.items", "concurrency": 2}},
            {"id": "later", "wait": {"duration": "1h"}}
        ]),
        json!({"items": ["x", "y"]}),
    );
    run.ok("f", Some(0), 1);
    run.fail("f", Some(1), 1, false);
    assert_eq!(run.cp.status, RunStatus::Paused);
    run.send(EventKind::SkipStep {
        step: "f".into(),
        output: None,
    });
    // When an operator rolls the run back
    let rollback = run.send(EventKind::Rollback { to: None });
    // Then item 0 is compensated
    assert_eq!(
        rollback.compensations(),
        vec![("f".to_owned(), Some(0))],
        "run {:?}",
        run.cp.status
    );
}

// ---- 8. retrying a failed for_each runs again the items that succeeded ----------------------
//
// RetryStep resets the whole step: items that succeeded are dispatched again and the record of
// their first success is lost, so a later rollback undoes at most the last one.

#[test]
fn retrying_a_failed_for_each_runs_only_the_items_that_did_not_succeed() {
    // Given a for_each whose item 0 succeeded and item 1 failed
    let (mut run, _) = Run::start(
        json!([
            {"id": "f", "action": "undoable", "compensate": true, "retry": once(1),
             "on_failure": "pause", "for_each": {"items": "input.items", "concurrency": 2}}
        ]),
        json!({"items": ["x", "y"]}),
    );
    run.ok("f", Some(0), 1);
    run.fail("f", Some(1), 1, false);
    // When an operator retries it
    let retry = run.send(EventKind::RetryStep { step: "f".into() });
    // Then only item 1 runs again
    let items: Vec<Option<u32>> = retry.runs().into_iter().map(|(_, _, i)| i).collect();
    assert_eq!(items, vec![Some(1)]);
}

// ---- 9. cancelling without compensation during a rollback ---------------------------------
//
// Cancel { compensate: false } marks running and waiting steps cancelled but not those being
// compensated: the run is over and a step still says "compensating".

#[test]
fn cancelling_without_compensation_during_a_rollback_leaves_no_step_compensating() {
    // Given a rollback under way
    let (mut run, _) = Run::start(
        json!([
            {"id": "a", "action": "undoable", "compensate": true},
            {"id": "b", "action": "act", "depends_on": ["a"], "retry": once(1)}
        ]),
        json!({}),
    );
    run.ok("a", None, 1);
    run.fail("b", None, 1, false);
    assert_eq!(run.status("a"), StepStatus::Compensating);
    // When an operator cancels without compensation
    run.send(EventKind::Cancel { compensate: false });
    // Then the run is over and no step is left compensating
    assert_eq!(run.cp.status, RunStatus::Cancelled);
    assert_ne!(run.status("a"), StepStatus::Compensating);
}

// ---- 10. failed items beyond the recorded ones are compensated -----------------------------
//
// A for_each listed at most MAX_RECORDED_ITEM_FAILURES failed items; compensation undid every
// dispatched item not listed, so failed items beyond that bound were "undone" too. (The
// property test reaches this with its occasional lists of 33 to 40 items.)

#[test]
fn failed_items_beyond_the_recorded_ones_are_not_compensated() {
    let n = MAX_RECORDED_ITEM_FAILURES as u32 + 2;
    let items: Vec<Value> = (0..n).map(|k| json!(k)).collect();
    // Given a for_each that tolerates failures, where only item 0 succeeds
    let (mut run, _) = Run::start(
        json!([
            {"id": "f", "action": "undoable", "compensate": true, "retry": once(1),
             "for_each": {"items": "input.items", "concurrency": n, "tolerated_failure": 1.0}},
            {"id": "g", "action": "act", "depends_on": ["f"], "retry": once(1)}
        ]),
        json!({ "items": items }),
    );
    run.ok("f", Some(0), 1);
    for k in 1..n {
        run.fail("f", Some(k), 1, false);
    }
    assert_eq!(run.status("f"), StepStatus::Succeeded);
    // When the next step fails and the run rolls back
    let rollback = run.fail("g", None, 1, false);
    // Then only item 0 is compensated
    assert_eq!(rollback.compensations(), vec![("f".to_owned(), Some(0))]);
}

// ---- 11. a loop iteration that succeeds during a rollback starts the next one -----------------
//
// A rollback waits for what is in flight. A loop iteration that then succeeds without meeting
// `until` schedules the loop's delay for the next iteration: the rollback finishes, the run is
// over (Failed) and the loop step is left Waiting on a LoopDelay timer.

#[test]
fn a_loop_iteration_succeeding_during_a_rollback_does_not_start_the_next() {
    // Given a loop with a delay in flight, and a step beside it that fails for good
    let (mut run, _) = Run::start(
        json!([
            {"id": "l", "action": "act", "retry": once(1),
             "loop": {"until": "steps.l.output.done", "max_iterations": 3, "delay": "2s"}},
            {"id": "b", "action": "act", "retry": once(1)}
        ]),
        json!({}),
    );
    run.fail("b", None, 1, false);
    assert_eq!(run.cp.status, RunStatus::Compensating);
    // When the loop's first iteration succeeds without meeting `until`
    let done = run.send(EventKind::StepSucceeded {
        step: "l".into(),
        item: Some(1),
        attempt: 1,
        output: json!({"done": false}),
    });
    // Then no next iteration is scheduled, and once the run is over no step is left waiting
    let delay = |c: &&Command| match c {
        Command::ScheduleTimer { timer, .. } => timer.kind == TimerKind::LoopDelay,
        _ => false,
    };
    let delays: Vec<_> = done.commands.iter().filter(delay).collect();
    assert!(delays.is_empty(), "{delays:?}");
    if run.cp.status.is_terminal() {
        assert_ne!(run.status("l"), StepStatus::Waiting);
    }
}

// ---- 12. a new try of a loop reuses an attempt key of an earlier iteration ---------------------
//
// Each loop iteration numbers its attempts from `base + 1` again, and a new try (an operator's
// retry, a selective rollback) starts after `max(attempt, base + 1)`: the latest attempt of the
// last iteration, not the highest of any iteration. Iteration 1 of the new try then takes a
// key (`execution/step/1/attempt`) an earlier iteration 1 already used.

#[test]
fn an_operator_retry_of_a_loop_dispatches_an_attempt_key_never_used_before() {
    // Given a loop whose first iteration needed two attempts and whose second fails for good
    let (mut run, first) = Run::start(
        json!([{"id": "l", "action": "act", "retry": once(2), "on_failure": "pause",
                "loop": {"until": "steps.l.output.done", "max_iterations": 3}}]),
        json!({}),
    );
    let mut used = first.run_keys();
    let failed = run.fail("l", Some(1), 1, true);
    let (timer, at) = failed.timer(TimerKind::Backoff);
    used.extend(run.fire(timer, at).run_keys());
    used.extend(
        run.send(EventKind::StepSucceeded {
            step: "l".into(),
            item: Some(1),
            attempt: 2,
            output: json!({"done": false}),
        })
        .run_keys(),
    );
    // Attempts number on across iterations.
    assert_eq!(used, vec!["ex/l/1/1", "ex/l/1/2", "ex/l/2/3"]);
    run.fail("l", Some(2), 3, false);
    assert_eq!(run.cp.status, RunStatus::Paused);
    // When an operator retries it
    let retry = run.send(EventKind::RetryStep { step: "l".into() });
    // Then the new first iteration runs under a key never used before
    let keys = retry.run_keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(!used.contains(&keys[0]), "{keys:?} reuses one of {used:?}");
}

// ---- 13. an action that succeeded but whose output shaping failed is never undone -------------
//
// When `output` shaping fails (an ExpressionError) on a success, the step is marked Failed.
// But the action did run and its effects are real; a rollback compensates only Succeeded
// steps, so those effects are never undone.

#[test]
fn a_success_whose_output_shaping_fails_is_still_compensated() {
    // Given a compensable step whose output shaping reads a field the result lacks
    let (mut run, _) = Run::start(
        json!([{"id": "a", "action": "undoable", "compensate": true, "retry": once(1),
                "output": {"x": "${result.missing}"}}]),
        json!({}),
    );
    // When its action succeeds, the shaping fails and the run rolls back
    let done = run.ok("a", None, 1);
    assert_eq!(
        run.cp.error.as_ref().map(|e| e.error.name.as_str()),
        Some("ExpressionError")
    );
    // Then the action's effects are undone
    assert_eq!(done.compensations(), vec![("a".to_owned(), None)]);
    assert_eq!(run.status("a"), StepStatus::Compensating);
}
