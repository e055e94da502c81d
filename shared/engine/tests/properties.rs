//! Properties of `decide()`, checked by a seeded simulator that proptest drives.
//!
//! Each case is a number of steps (1 to 50) and a seed. From the seed the simulator draws a
//! workflow (a random DAG whose steps have retry policies, compensations, `for_each` fan-outs,
//! `loop`s, `output` shaping, `parallel_group`s that later steps depend on, `when` conditions on
//! the input or on an upstream step's output, waits for a duration or until a day relative to
//! `input.starts_at` (or a date) with an offset, a local time and a time zone, timeouts and failure
//! policies), an input, and a host that answers every attempt (a loop's iterations too: their item
//! slot is the iteration, and an output's `done` sometimes ends the loop) with a success, a
//! retryable or a terminal failure, or never (the timeout fires, and sometimes the answer still
//! arrives late). Events are delivered in a random order, timers on a virtual clock, some events
//! twice or again long after; the checkpoint is written to JSON and read back between events; when
//! a run waits on an operator (paused, needs attention) the simulator plays one, and sometimes one
//! steps in unasked.
//!
//! Invariants, checked after every event:
//! - applying the same event twice: the second changes nothing and emits nothing;
//! - after a terminal status nothing is dispatched, and a decision that ends the run does not
//!   dispatch either;
//! - a step is dispatched only when each of its dependencies succeeded or was skipped (not
//!   because an upstream failed);
//! - every `RunStep` key (`execution/step/item/attempt`) and every `RunCompensation` key is
//!   emitted at most once, and every timer is scheduled at most once (a timer is named by what
//!   it is for, so a name used twice could fire the wrong wait);
//! - a compensation is dispatched and accepted only for a step (or item) that succeeded and is
//!   not yet compensated; when a rollback finishes, every succeeded step (or item) in its scope
//!   that has a compensation has been compensated exactly once;
//! - an event redelivered after it was applied changes nothing;
//! - a `for_each` never has more items (or item compensations) in flight than its concurrency;
//! - a loop dispatches iterations in order (the same one again or the next), never beyond
//!   `max_iterations` in a try, and its `iteration` counter is the iteration last dispatched
//!   (the next one while it waits out its delay); a result is accepted only for the current
//!   iteration, and a loop owes one compensation only when it ends with a success;
//! - a finished run has no step still running, waiting or compensating;
//! - the checkpoint reads back from JSON equal to what was written;
//! - a run is never stuck: while running or compensating something is always in flight;
//! - every run ends within a bounded number of events;
//! - replaying the event log from scratch (without any reload) gives the same commands, the
//!   same history and the same final checkpoint.
//!
//! `PROPTEST_CASES` sets the number of cases (default 10 000). A failure names its seed and
//! its number of steps; replay one case with a trace of every event:
//!
//! ```text
//! SIM_SEED=<seed> SIM_STEPS=<steps> cargo test -p eventflow-engine --test properties \
//!     -- replay_one_seed --nocapture
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};
use eventflow_engine::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

const EXECUTION: &str = "ex";
const MAX_STEPS: usize = 50;
const FLAGS: usize = 4;
const LISTS: usize = 4;
const GROUPS: usize = 3;
/// Loops with a `delay` (see `regressions.rs`:
/// a_loop_iteration_succeeding_during_a_rollback_does_not_start_the_next).
const LOOP_DELAYS: bool = true;
/// Loops whose iterations are retried (see `regressions.rs`:
/// an_operator_retry_of_a_loop_dispatches_an_attempt_key_never_used_before).
const LOOP_RETRIES: bool = true;
/// `output` shaping that fails on a success (see `regressions.rs`:
/// a_success_whose_output_shaping_fails_is_still_compensated).
const SHAPE_ERRORS: bool = true;

// ---- randomness -------------------------------------------------------------------------

/// SplitMix64: small, fast and the same everywhere.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    /// An independent stream of `seed` (steps draw from their own, so that a case with fewer
    /// steps is a prefix of the same workflow).
    fn new(seed: u64, stream: u64) -> Self {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xA24B_AED4_963E_E407));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// `0..n`; `n` must not be zero.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

// ---- the workflow -----------------------------------------------------------------------

fn registry() -> ActionRegistry {
    ActionRegistry::new(
        [("act", false), ("undoable", true), ("undo", false)]
            .into_iter()
            .map(|(name, compensable)| ActionSpec {
                name: name.into(),
                compensable,
                summary: String::new(),
            }),
    )
}

fn retry_policy(r: &mut Rng) -> Value {
    json!({
        "max_attempts": r.range(1, 3),
        "initial_interval": format!("{}s", r.range(1, 3)),
        "backoff_rate": 2.0,
        "max_interval": "10s",
        "jitter": r.pick(&["full", "none"]),
    })
}

/// What the generator knows of an earlier step.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    /// Only waits: no output.
    Wait,
    /// Fans out: its output is not one object.
    Fan,
    /// Runs once (or loops): its output is an object with `ok`.
    Single,
}

/// A random workflow of `steps` steps: each depends on up to three earlier ones (or on a
/// parallel group of earlier ones).
fn definition(steps: usize, seed: u64) -> Value {
    let mut w = Rng::new(seed, 1);
    let mut def = json!({
        "id": "sim",
        "name": "simulated",
        "kind": "custom",
        "on_failure": w.pick(&["rollback", "rollback", "continue", "pause"]),
    });
    if w.chance(0.7) {
        def["retry"] = retry_policy(&mut w);
    }
    let mut ancestors: Vec<u64> = Vec::with_capacity(steps);
    let mut shapes: Vec<Shape> = Vec::with_capacity(steps);
    // Parallel groups: members, and whether a step already depends on the group (then it is
    // closed: a later member could depend on the step that depends on the group).
    let mut groups: Vec<(u64, bool)> = vec![(0, false); GROUPS];
    let mut list = Vec::with_capacity(steps);
    for i in 0..steps {
        let mut r = Rng::new(seed, 1000 + i as u64);
        let mut s = Map::new();
        s.insert("id".into(), json!(format!("s{i}")));
        let mut deps: Vec<String> = Vec::new();
        let mut mine = 0u64;
        if i > 0 {
            for _ in 0..r.below(4) {
                // Mostly recent steps, so that graphs are deep as well as wide.
                let d = if r.chance(0.5) {
                    i - 1 - r.below(i.min(3))
                } else {
                    r.below(i)
                };
                let name = format!("s{d}");
                if !deps.contains(&name) {
                    deps.push(name);
                    mine |= ancestors[d] | (1 << d);
                }
            }
            if r.chance(0.15) {
                let g = r.below(GROUPS);
                let (members, _) = groups[g];
                if members != 0 {
                    deps.push(format!("g{g}"));
                    groups[g].1 = true;
                    for (m, a) in ancestors.iter().enumerate() {
                        if members & (1 << m) != 0 {
                            mine |= a | (1 << m);
                        }
                    }
                }
            }
        }
        ancestors.push(mine);
        if !deps.is_empty() {
            s.insert("depends_on".into(), json!(deps));
        }
        if r.chance(0.12) {
            let g = r.below(GROUPS);
            if !groups[g].1 && !deps.contains(&format!("g{g}")) {
                groups[g].0 |= 1 << i;
                s.insert("parallel_group".into(), json!(format!("g{g}")));
            }
        }
        let shape;
        if r.chance(0.08) {
            // A step that only waits.
            s.insert("wait".into(), wait(&mut r));
            shape = Shape::Wait;
        } else {
            let undoable = r.chance(0.5);
            s.insert(
                "action".into(),
                json!(if undoable { "undoable" } else { "act" }),
            );
            let fan = r.chance(0.25);
            if fan {
                s.insert(
                    "for_each".into(),
                    json!({
                        "items": format!("input.lists.l{}", r.below(LISTS)),
                        "concurrency": r.range(1, 3),
                        "tolerated_failure": r.pick(&[0.0, 0.0, 0.25, 0.5, 1.0]),
                    }),
                );
                s.insert(
                    "input".into(),
                    json!({"item": "${item}", "index": "${index}"}),
                );
                shape = Shape::Fan;
            } else {
                s.insert("input".into(), json!({"n": i}));
                shape = Shape::Single;
                if r.chance(0.2) {
                    let mut until = format!("steps.s{i}.output.done");
                    if r.chance(0.3) {
                        until = format!("{until} || iteration >= {}", r.range(2, 3));
                    }
                    let mut lp = json!({
                        "until": until,
                        "max_iterations": r.range(1, 4),
                        "on_exhausted": r.pick(&["succeed", "fail"]),
                    });
                    if LOOP_DELAYS && r.chance(0.5) {
                        lp["delay"] = json!(format!("{}s", r.range(1, 3)));
                    }
                    s.insert("loop".into(), lp);
                    s.insert("input".into(), json!({"n": i, "iteration": "${iteration}"}));
                }
                if r.chance(0.25) {
                    let mut shape =
                        json!({"v": "${result.v}", "ok": "${result.ok}", "done": "${result.done}"});
                    if SHAPE_ERRORS && r.chance(0.1) {
                        // Reads what no result has: the success fails the step.
                        shape["x"] = json!("${result.missing}");
                    }
                    s.insert("output".into(), shape);
                }
            }
            if undoable && r.chance(0.7) {
                let c = if r.chance(0.6) {
                    json!(true)
                } else {
                    json!({"retry": retry_policy(&mut r)})
                };
                s.insert("compensate".into(), c);
            } else if !undoable && r.chance(0.35) {
                let mut c = json!({"action": "undo", "input": {"undo": i}});
                if fan && r.chance(0.5) {
                    c["input"] = json!({"undo": "${item}", "at": "${index}"});
                }
                if r.chance(0.5) {
                    c["retry"] = retry_policy(&mut r);
                }
                s.insert("compensate".into(), c);
            }
            if r.chance(0.6) {
                s.insert("retry".into(), retry_policy(&mut r));
            }
            if !LOOP_RETRIES && s.contains_key("loop") {
                s.insert("retry".into(), json!({"max_attempts": 1}));
            }
            if r.chance(0.3) {
                s.insert("timeout".into(), json!("30s"));
            }
            if r.chance(0.05) {
                s.insert("wait".into(), wait(&mut r));
            }
        }
        shapes.push(shape);
        if r.chance(0.15) {
            let flag = format!("input.flags.f{}", r.below(FLAGS));
            s.insert(
                "when".into(),
                json!(if r.chance(0.5) {
                    flag
                } else {
                    format!("!{flag}")
                }),
            );
        } else if r.chance(0.12) {
            // On an upstream step's output (only steps whose output is an object with `ok`).
            let readable: Vec<usize> = (0..i)
                .filter(|&a| mine & (1 << a) != 0 && shapes[a] == Shape::Single)
                .collect();
            if !readable.is_empty() {
                let a = r.pick(&readable);
                let not = if r.chance(0.3) { "!" } else { "" };
                s.insert(
                    "when".into(),
                    json!(format!(
                        "has(steps.s{a}.output) && {not}steps.s{a}.output.ok"
                    )),
                );
            }
        }
        if r.chance(0.35) {
            let policy = match r.below(10) {
                0..=2 => json!("rollback"),
                3..=5 => json!("continue"),
                6..=8 => json!("pause"),
                _ => {
                    // Itself or a step before it.
                    let choices: Vec<usize> = (0..i)
                        .filter(|&a| mine & (1 << a) != 0)
                        .chain([i])
                        .collect();
                    json!({"rollback_to": format!("s{}", r.pick(&choices))})
                }
            };
            s.insert("on_failure".into(), policy);
        }
        list.push(Value::Object(s));
    }
    def["steps"] = Value::Array(list);
    def
}

/// A wait: for a duration, or until a day relative to `input.starts_at` (an instant) or
/// `input.starts_on` (a date) at a local time, in a fixed time zone or the input's.
fn wait(r: &mut Rng) -> Value {
    if r.chance(0.6) {
        return json!({"duration": format!("{}s", r.range(1, 5))});
    }
    let mut w =
        json!({"until": r.pick(&["input.starts_at", "input.starts_at", "input.starts_on"])});
    if r.chance(0.8) {
        w["offset"] = json!(r.pick(&["-1d", "-2d", "+0d", "-12h", "+1d"]));
    }
    if r.chance(0.7) {
        w["at"] = json!(r.pick(&["09:00", "02:30", "23:59", "00:00"]));
    }
    if r.chance(0.7) {
        w["time_zone"] = json!(r.pick(&[
            "Europe/Berlin",
            "America/New_York",
            "UTC",
            "${input.time_zone}"
        ]));
    }
    w
}

fn input(seed: u64) -> Value {
    let mut r = Rng::new(seed, 2);
    let mut flags = Map::new();
    for f in 0..FLAGS {
        flags.insert(format!("f{f}"), json!(r.chance(0.5)));
    }
    let mut lists = Map::new();
    for l in 0..LISTS {
        // Now and then a long list: more failures than the checkpoint lists one by one.
        let len = if r.chance(0.03) {
            r.range(33, 40)
        } else {
            r.range(0, 4)
        };
        let items: Vec<Value> = (0..len).map(|k| json!(format!("l{l}i{k}"))).collect();
        lists.insert(format!("l{l}"), Value::Array(items));
    }
    // From just before the start to six weeks on (the clocks change in between), at a random
    // minute, with a random UTC offset.
    let at = t0() + TimeDelta::minutes(r.range(0, 60 * 24 * 42) as i64 - 60 * 30);
    let zone =
        chrono::FixedOffset::east_opt(3600 * r.range(0, 4) as i32 - 3600 * 2).expect("an offset");
    let starts_at = at.with_timezone(&zone).to_rfc3339();
    let starts_on = at.format("%Y-%m-%d").to_string();
    let time_zone = r.pick(&["Europe/Berlin", "Australia/Sydney", "Asia/Kolkata"]);
    json!({
        "flags": flags,
        "lists": lists,
        "starts_at": starts_at,
        "starts_on": starts_on,
        "time_zone": time_zone,
    })
}

/// How the host and the operator behave in one case.
#[derive(Debug, Clone)]
struct Knobs {
    fail_retryable: f64,
    fail_terminal: f64,
    /// Of attempts with a timeout: no answer in time.
    no_answer: f64,
    /// Of attempts not answered in time: the answer arrives after the deadline.
    late_answer: f64,
    comp_fail_retryable: f64,
    comp_fail_terminal: f64,
    /// Chance the checkpoint goes through JSON after an event.
    reload: f64,
    /// Chance, per delivery, to deliver again an event that was applied before.
    redeliver: f64,
    /// Chance, per delivery, that an operator steps in unasked.
    operator: f64,
    /// Operator events the simulator may choose freely; beyond, it steers the run to its end.
    op_budget: u32,
    /// Chance an output says `done` (what ends a loop).
    done: f64,
}

impl Knobs {
    fn draw(steps: usize, seed: u64) -> Self {
        let mut r = Rng::new(seed, 3);
        let failing = r.pick(&[0.0, 0.1, 0.1, 0.25, 0.25, 0.5, 0.5, 0.9]);
        let comp_failing = r.pick(&[0.0, 0.0, 0.15, 0.4]);
        Knobs {
            fail_retryable: failing,
            fail_terminal: failing / 2.0,
            no_answer: r.pick(&[0.0, 0.2, 0.5]),
            late_answer: 0.5,
            comp_fail_retryable: comp_failing,
            comp_fail_terminal: comp_failing / 3.0,
            // Now and then (JSON is the simulator's main cost); small workflows sometimes after
            // every event.
            reload: if steps <= 12 && r.chance(0.15) {
                1.0
            } else {
                r.pick(&[0.0, 0.02, 0.05, 0.05, 0.1, 0.1, 0.15, 0.2, 0.3, 0.5])
            },
            redeliver: r.pick(&[0.0, 0.05, 0.2]),
            operator: r.pick(&[0.0, 0.01, 0.05]),
            op_budget: r.range(0, 8) as u32,
            done: r.pick(&[0.1, 0.35, 0.7]),
        }
    }
}

// ---- the simulator ----------------------------------------------------------------------

fn t0() -> Timestamp {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .expect("a time")
        .with_timezone(&Utc)
}

/// An event the host or a timer will deliver; `at` holds it back until the clock gets there.
#[derive(Debug, Clone)]
struct Pending {
    event: Event,
    at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
struct Logged {
    event: Event,
    now: Timestamp,
    seed: u64,
    commands: Vec<Command>,
    history: Option<HistoryEntry>,
}

struct Sim<'v> {
    v: &'v Version,
    seed: u64,
    steps: usize,
    rng: Rng,
    knobs: Knobs,
    input: Value,
    cp: Checkpoint,
    now: Timestamp,
    pool: Vec<Pending>,
    /// Events that changed the state, to deliver again.
    accepted: Vec<Event>,
    log: Vec<Logged>,
    run_keys: HashSet<String>,
    compensation_keys: HashSet<String>,
    timers: HashSet<String>,
    /// Successes of steps (or items) with a compensation, not yet compensated.
    owed: HashMap<(usize, Option<u32>), u32>,
    /// For each loop step, the iteration last dispatched.
    loop_hi: Vec<u32>,
    ops: u32,
    ids: u64,
    trace: bool,
}

fn dispatches(commands: &[Command]) -> bool {
    commands
        .iter()
        .any(|c| matches!(c, Command::RunStep { .. } | Command::RunCompensation { .. }))
}

fn timer_name(t: &Timer) -> String {
    format!("{:?}/{}/{:?}/{}", t.kind, t.step, t.item, t.attempt)
}

impl<'v> Sim<'v> {
    fn new(v: &'v Version, steps: usize, seed: u64, trace: bool) -> Self {
        let input = input(seed);
        Sim {
            v,
            seed,
            steps,
            rng: Rng::new(seed, 4),
            knobs: Knobs::draw(steps, seed),
            cp: Checkpoint::new(v, EXECUTION, input.clone(), t0()),
            input,
            now: t0(),
            pool: Vec::new(),
            accepted: Vec::new(),
            log: Vec::new(),
            run_keys: HashSet::new(),
            compensation_keys: HashSet::new(),
            timers: HashSet::new(),
            owed: HashMap::new(),
            loop_hi: vec![0; v.steps().len()],
            ops: 0,
            ids: 0,
            trace,
        }
    }

    /// A failure message that says how to reproduce it.
    fn fail(&self, what: String) -> String {
        let mut m = format!(
            "{what}\n  seed {} with {} steps, after {} events (status {:?})\n  reproduce: \
             SIM_SEED={} SIM_STEPS={} cargo test -p eventflow-engine --test properties -- \
             replay_one_seed --nocapture\n  last events:",
            self.seed,
            self.steps,
            self.log.len(),
            self.cp.status,
            self.seed,
            self.steps
        );
        for l in self.log.iter().rev().take(8).rev() {
            let _ = write!(
                m,
                "\n    {:?}{}",
                l.event.kind,
                if l.history.is_some() {
                    ""
                } else {
                    " (ignored)"
                }
            );
        }
        m
    }

    fn event(&mut self, kind: EventKind) -> Event {
        self.ids += 1;
        Event::new(format!("e{}", self.ids), kind)
    }

    fn index(&self, step: &str) -> Result<usize, String> {
        self.v
            .step_index(step)
            .ok_or_else(|| self.fail(format!("a command names an unknown step `{step}`")))
    }

    fn has_compensation(&self, i: usize) -> bool {
        self.v.steps()[i].compensation.is_some()
    }

    /// Applies `event` and checks everything a single transition must satisfy.
    fn apply(&mut self, event: Event) -> Result<bool, String> {
        let seed = self.rng.next();
        let before = &self.cp;
        let d = decide(self.v, self.cp.clone(), event.clone(), self.now, seed);
        if self.trace {
            eprintln!(
                "#{} {} {:?}{}",
                self.log.len(),
                self.now.format("%H:%M:%S%.3f"),
                event.kind,
                if d.history.is_some() {
                    ""
                } else {
                    "  (ignored)"
                }
            );
            for c in &d.commands {
                eprintln!("      -> {c:?}");
            }
            if d.checkpoint.status != before.status {
                eprintln!("      run {:?} -> {:?}", before.status, d.checkpoint.status);
            }
        }
        self.log.push(Logged {
            event: event.clone(),
            now: self.now,
            seed,
            commands: d.commands.clone(),
            history: d.history.clone(),
        });

        // The same event again changes nothing.
        let again = decide(
            self.v,
            d.checkpoint.clone(),
            event.clone(),
            self.now,
            seed.rotate_left(17),
        );
        if !again.commands.is_empty() || again.history.is_some() || again.checkpoint != d.checkpoint
        {
            return Err(self.fail(format!(
                "applying {:?} a second time was not a no-op: commands {:?}",
                event.kind, again.commands
            )));
        }

        if before.status.is_terminal() {
            if dispatches(&d.commands) || d.history.is_some() || d.checkpoint != *before {
                return Err(self.fail(format!(
                    "{:?} changed a run that was already {:?}: commands {:?}",
                    event.kind, before.status, d.commands
                )));
            }
        } else if d.checkpoint.status.is_terminal() && dispatches(&d.commands) {
            return Err(self.fail(format!(
                "the decision that ended the run ({:?}) also dispatched: {:?}",
                d.checkpoint.status, d.commands
            )));
        }

        // What the event did, before what it caused: a success may be undone at once.
        let applied = d.history.is_some();
        if applied {
            match &event.kind {
                EventKind::StepSucceeded { step, item, .. } => {
                    let i = self.index(step)?;
                    if self.v.steps()[i].repeat.is_some() {
                        // An iteration: the step is done (and owes one compensation) only
                        // when the loop ends with a success.
                        let was = self.cp.steps[i].iteration;
                        if *item != Some(was) {
                            return Err(self.fail(format!(
                                "{step}: iteration {item:?} accepted but the step was at \
                                 iteration {was}"
                            )));
                        }
                        let st = &d.checkpoint.steps[i];
                        // (A rollback under way may start undoing it at once.)
                        // A loop that failed after its iterations acted (its output could
                        // not be shaped, or it ran out of iterations) is undone too.
                        let ended_well =
                            matches!(st.status, StepStatus::Succeeded | StepStatus::Compensating)
                                || (st.status == StepStatus::Failed && st.took_effect);
                        // A step's effect is one thing: a success after an operator's retry
                        // replaces the earlier one, and one compensation undoes the step.
                        if ended_well && self.has_compensation(i) {
                            self.owed.insert((i, None), 1);
                        }
                    } else if self.has_compensation(i) {
                        match item {
                            Some(_) => *self.owed.entry((i, *item)).or_default() += 1,
                            None => {
                                self.owed.insert((i, None), 1);
                            }
                        }
                    }
                }
                EventKind::CompensationSucceeded { step, item, .. } => {
                    let i = self.index(step)?;
                    match self.owed.get_mut(&(i, *item)) {
                        Some(n) if *n > 0 => *n -= 1,
                        _ => {
                            return Err(self.fail(format!(
                                "compensation of {step} item {item:?} accepted, but it has no \
                                 success left to undo"
                            )));
                        }
                    }
                }
                _ => {}
            }
            self.accepted.push(event.clone());
        }

        for c in &d.commands {
            match c {
                Command::RunStep {
                    key,
                    step,
                    item,
                    attempt,
                    ..
                } => {
                    let i = self.index(step)?;
                    // `execution/step/item/attempt` (`-` without an item).
                    let expected = format!(
                        "{EXECUTION}/{step}/{}/{attempt}",
                        item.map_or_else(|| "-".to_owned(), |n| n.to_string())
                    );
                    if *key != expected {
                        return Err(self.fail(format!("RunStep key {key}, expected {expected}")));
                    }
                    if !self.run_keys.insert(key.clone()) {
                        return Err(self.fail(format!(
                            "RunStep {key} was dispatched a second time (after {:?})",
                            event.kind
                        )));
                    }
                    if let Some(lp) = &self.v.steps()[i].repeat {
                        let n = item.unwrap_or(0);
                        let hi = self.loop_hi[i];
                        if n == 0 || n > lp.max_iterations {
                            return Err(self.fail(format!(
                                "{key}: loop iteration {item:?} of at most {}",
                                lp.max_iterations
                            )));
                        }
                        if n != 1 && n != hi && n != hi + 1 {
                            return Err(self.fail(format!(
                                "{key}: iteration {n} dispatched after iteration {hi}"
                            )));
                        }
                        if d.checkpoint.steps[i].iteration != n {
                            return Err(self.fail(format!(
                                "{key}: iteration {n} dispatched, the step's counter says {}",
                                d.checkpoint.steps[i].iteration
                            )));
                        }
                        self.loop_hi[i] = n;
                    } else if self.v.steps()[i].for_each.is_none() && item.is_some() {
                        return Err(self.fail(format!("{key}: an item for a single step")));
                    }
                    for &dep in &self.v.steps()[i].deps {
                        let ds = &d.checkpoint.steps[dep];
                        let ok = ds.status == StepStatus::Succeeded
                            || (ds.status == StepStatus::Skipped
                                && ds.skip_reason != Some(SkipReason::UpstreamFailed));
                        if !ok {
                            return Err(self.fail(format!(
                                "{step} was dispatched while its dependency {} is {:?} ({:?})",
                                ds.id, ds.status, ds.skip_reason
                            )));
                        }
                    }
                }
                Command::RunCompensation {
                    key, step, item, ..
                } => {
                    let i = self.index(step)?;
                    if !self.compensation_keys.insert(key.clone()) {
                        return Err(self.fail(format!(
                            "RunCompensation {key} was dispatched a second time (after {:?})",
                            event.kind
                        )));
                    }
                    if self.owed.get(&(i, *item)).copied().unwrap_or(0) == 0 {
                        return Err(self.fail(format!(
                            "compensation of {step} item {item:?} dispatched, but it has no \
                             success left to undo"
                        )));
                    }
                }
                Command::ScheduleTimer { timer, at } => {
                    if !self.timers.insert(timer_name(timer)) {
                        return Err(self.fail(format!(
                            "timer {timer:?} was scheduled a second time (after {:?})",
                            event.kind
                        )));
                    }
                    if *at < self.now {
                        return Err(self.fail(format!("timer {timer:?} scheduled in the past")));
                    }
                }
                _ => {}
            }
        }

        // A rollback that finished: everything in its scope is undone.
        let began = d.history.as_ref().is_some_and(|h| {
            h.changes.iter().any(|c| {
                matches!(
                    c,
                    Change::Run {
                        to: RunStatus::Compensating,
                        ..
                    }
                )
            })
        });
        if (before.rollback.is_some() || began) && d.checkpoint.rollback.is_none() {
            let target = match d.checkpoint.status {
                RunStatus::Paused => d
                    .checkpoint
                    .paused_at
                    .as_deref()
                    .and_then(|t| self.v.step_index(t)),
                _ => None,
            };
            let mut left: Vec<_> = self
                .owed
                .iter()
                .filter(|&(&(i, _), &n)| {
                    n > 0 && target.is_none_or(|t| i == t || self.v.follows(i, t))
                })
                .map(|(&(i, item), &n)| (format!("s{i}"), item, n))
                .collect();
            if !left.is_empty() {
                left.sort();
                return Err(self.fail(format!(
                    "the rollback finished ({:?}) but these (step, item, successes) were not \
                     compensated: {left:?}",
                    d.checkpoint.status
                )));
            }
        }

        for (k, st) in d.checkpoint.steps.iter().enumerate() {
            if let Some(lp) = &self.v.steps()[k].repeat {
                // The counter is the iteration last dispatched, or the next one while the
                // loop waits out its delay.
                let hi = self.loop_hi[k];
                let ok = match (st.status, st.timer) {
                    (StepStatus::Running | StepStatus::Succeeded, _) => st.iteration == hi,
                    (StepStatus::Waiting, Some(TimerKind::LoopDelay)) => {
                        st.iteration == hi + 1 && st.iteration <= lp.max_iterations
                    }
                    _ => st.iteration <= lp.max_iterations,
                };
                if !ok {
                    return Err(self.fail(format!(
                        "{}: {:?} ({:?}) at iteration {}, but iteration {hi} was the last \
                         dispatched (at most {})",
                        st.id, st.status, st.timer, st.iteration, lp.max_iterations
                    )));
                }
            }
            let Some(fe) = &self.v.steps()[k].for_each else {
                continue;
            };
            let limit = fe.concurrency as usize;
            let fan = st.fan.as_ref().map_or(0, |f| f.in_flight.len());
            let comp = st.compensation.as_ref().map_or(0, |c| c.in_flight.len());
            if fan > limit || comp > limit {
                return Err(self.fail(format!(
                    "{}: {fan} items and {comp} compensations in flight, concurrency {limit}",
                    st.id
                )));
            }
        }
        if d.checkpoint.status.is_terminal()
            && let Some(st) = d.checkpoint.steps.iter().find(|s| {
                matches!(
                    s.status,
                    StepStatus::Running | StepStatus::Waiting | StepStatus::Compensating
                )
            })
        {
            return Err(self.fail(format!(
                "the run is {:?} but step {} is still {:?}",
                d.checkpoint.status, st.id, st.status
            )));
        }

        self.respond(&d.commands);
        self.cp = d.checkpoint;
        if self.rng.chance(self.knobs.reload) {
            let text = serde_json::to_string(&self.cp).map_err(|e| self.fail(e.to_string()))?;
            let back: Checkpoint =
                serde_json::from_str(&text).map_err(|e| self.fail(e.to_string()))?;
            if back != self.cp {
                return Err(self.fail(format!(
                    "the checkpoint changed through JSON: {}",
                    difference(&self.cp, &back)
                )));
            }
            self.cp = back;
        }
        Ok(applied)
    }

    /// The host: answers what was dispatched, and the timers.
    fn respond(&mut self, commands: &[Command]) {
        for c in commands {
            match c {
                Command::RunStep {
                    step,
                    item,
                    attempt,
                    timeout,
                    ..
                } => {
                    let k = &self.knobs;
                    let (fail_t, fail_r, no_answer, late) = (
                        k.fail_terminal,
                        k.fail_retryable,
                        k.no_answer,
                        k.late_answer,
                    );
                    let mut at = None;
                    if let Some(t) = timeout
                        && self.rng.chance(no_answer)
                    {
                        if !self.rng.chance(late) {
                            continue;
                        }
                        at = Some(self.now + t.chrono() + TimeDelta::seconds(1));
                    }
                    let (step, item, attempt) = (step.clone(), *item, *attempt);
                    let kind = if self.rng.chance(fail_t) {
                        EventKind::StepFailed {
                            step,
                            item,
                            attempt,
                            error: StepError::terminal("Rejected", "no"),
                        }
                    } else if self.rng.chance(fail_r) {
                        EventKind::StepFailed {
                            step,
                            item,
                            attempt,
                            error: StepError::retryable("Unavailable", "later"),
                        }
                    } else {
                        EventKind::StepSucceeded {
                            step,
                            item,
                            attempt,
                            output: json!({
                                "v": attempt,
                                "ok": self.rng.chance(0.6),
                                "done": self.rng.chance(self.knobs.done),
                            }),
                        }
                    };
                    let event = self.event(kind);
                    self.pool.push(Pending { event, at });
                }
                Command::RunCompensation {
                    step,
                    item,
                    attempt,
                    ..
                } => {
                    let (fail_t, fail_r) = (
                        self.knobs.comp_fail_terminal,
                        self.knobs.comp_fail_retryable,
                    );
                    let (step, item, attempt) = (step.clone(), *item, *attempt);
                    let kind = if self.rng.chance(fail_t) {
                        EventKind::CompensationFailed {
                            step,
                            item,
                            attempt,
                            error: StepError::terminal("Refused", "cannot undo"),
                        }
                    } else if self.rng.chance(fail_r) {
                        EventKind::CompensationFailed {
                            step,
                            item,
                            attempt,
                            error: StepError::retryable("Unavailable", "later"),
                        }
                    } else {
                        EventKind::CompensationSucceeded {
                            step,
                            item,
                            attempt,
                        }
                    };
                    let event = self.event(kind);
                    self.pool.push(Pending { event, at: None });
                }
                Command::ScheduleTimer { timer, at } => {
                    let event = self.event(EventKind::TimerFired {
                        timer: timer.clone(),
                    });
                    self.pool.push(Pending {
                        event,
                        at: Some(*at),
                    });
                }
                _ => {}
            }
        }
    }

    fn steps_in(&self, statuses: &[StepStatus]) -> Vec<String> {
        self.cp
            .steps
            .iter()
            .filter(|s| statuses.contains(&s.status))
            .map(|s| s.id.clone())
            .collect()
    }

    /// What an operator does now; `None` when the simulator has no reason to step in.
    fn operator(&mut self, asked: bool) -> Option<EventKind> {
        let free = self.ops < self.knobs.op_budget;
        if !free && !asked {
            return None;
        }
        self.ops += 1;
        let r = &mut self.rng;
        let compensate = r.chance(0.5);
        let any_step = format!("s{}", r.below(self.cp.steps.len()));
        let to = if r.chance(0.5) { None } else { Some(any_step) };
        let failed = self.steps_in(&[StepStatus::Failed]);
        let skippable =
            self.steps_in(&[StepStatus::Failed, StepStatus::Pending, StepStatus::Waiting]);
        let comp_failed = self.steps_in(&[StepStatus::CompensationFailed]);
        let r = &mut self.rng;
        let kind = match self.cp.status {
            RunStatus::Paused if !free => {
                if r.chance(0.7) {
                    EventKind::Resume
                } else {
                    EventKind::Cancel { compensate: true }
                }
            }
            RunStatus::Paused => {
                let here = self.cp.paused_at.clone();
                match r.below(10) {
                    0..=2 => match here.or_else(|| (!failed.is_empty()).then(|| r.pick(&failed))) {
                        Some(step) => EventKind::RetryStep { step },
                        None => EventKind::Resume,
                    },
                    3..=4 => match (!skippable.is_empty()).then(|| r.pick(&skippable)) {
                        Some(step) => EventKind::SkipStep {
                            step,
                            output: r
                                .chance(0.5)
                                .then(|| json!({"skipped": true, "ok": false, "done": true})),
                        },
                        None => EventKind::Resume,
                    },
                    5..=6 => EventKind::Resume,
                    7..=8 => EventKind::Rollback { to },
                    _ => EventKind::Cancel { compensate },
                }
            }
            RunStatus::NeedsAttention if !free => EventKind::Cancel { compensate: false },
            RunStatus::NeedsAttention => match r.below(6) {
                0..=2 if !comp_failed.is_empty() => EventKind::RetryStep {
                    step: r.pick(&comp_failed),
                },
                0..=3 => EventKind::Rollback { to: None },
                4 => EventKind::Cancel { compensate: true },
                _ => EventKind::Cancel { compensate: false },
            },
            RunStatus::Running => match r.below(10) {
                0..=3 => EventKind::Pause,
                4 if !failed.is_empty() => EventKind::RetryStep {
                    step: r.pick(&failed),
                },
                4..=5 if !skippable.is_empty() => EventKind::SkipStep {
                    step: r.pick(&skippable),
                    output: None,
                },
                4..=7 => EventKind::Rollback { to },
                _ => EventKind::Cancel { compensate },
            },
            // Nothing an operator may do while compensating but stop it all; try it rarely.
            RunStatus::Compensating => match r.below(4) {
                0 => EventKind::Cancel { compensate: false },
                1 => EventKind::Pause,
                2 => EventKind::Rollback { to: None },
                _ => return None,
            },
            _ => return None,
        };
        Some(kind)
    }

    /// Runs the case to its end, then checks the end and the replay.
    fn run(&mut self) -> Result<(), String> {
        let started = self.event(EventKind::Started);
        self.apply(started)?;
        let limit = 3_000 + 600 * self.steps;
        while !self.cp.status.is_terminal() {
            if self.log.len() > limit {
                return Err(self.fail(format!("the run did not end within {limit} events")));
            }
            let waits_on_operator = matches!(
                self.cp.status,
                RunStatus::Paused | RunStatus::NeedsAttention
            );
            if waits_on_operator && (self.pool.is_empty() || self.rng.chance(0.2)) {
                let kind = self
                    .operator(true)
                    .ok_or_else(|| self.fail("no operator event for a waiting run".into()))?;
                let event = self.event(kind);
                self.apply(event)?;
                continue;
            }
            if self.pool.is_empty() {
                return Err(self.fail(format!(
                    "the run is stuck: {:?} with nothing in flight; steps {:?}",
                    self.cp.status,
                    self.cp
                        .steps
                        .iter()
                        .map(|s| (s.id.as_str(), s.status))
                        .collect::<Vec<_>>()
                )));
            }
            if self.rng.chance(self.knobs.operator)
                && let Some(kind) = self.operator(false)
            {
                let event = self.event(kind);
                self.apply(event)?;
                continue;
            }
            if !self.accepted.is_empty() && self.rng.chance(self.knobs.redeliver) {
                let event = self.rng.pick(&self.accepted);
                if self.apply(event.clone())? {
                    return Err(self.fail(format!(
                        "{:?}, applied before, was applied again when redelivered",
                        event.kind
                    )));
                }
                continue;
            }
            self.deliver()?;
        }
        // Late events and redeliveries after the end change nothing.
        for _ in 0..4 {
            if !self.pool.is_empty() {
                self.deliver()?;
            }
            if !self.accepted.is_empty() {
                let event = self.rng.pick(&self.accepted);
                self.apply(event)?;
            }
        }
        self.replay()
    }

    /// Delivers one pending event: most often one that is due now, else any, moving the clock
    /// to its time.
    fn deliver(&mut self) -> Result<bool, String> {
        let untimed: Vec<usize> = (0..self.pool.len())
            .filter(|&k| self.pool[k].at.is_none())
            .collect();
        let k = if !untimed.is_empty() && self.rng.chance(0.75) {
            self.rng.pick(&untimed)
        } else {
            self.rng.below(self.pool.len())
        };
        let p = self.pool.swap_remove(k);
        let step = TimeDelta::milliseconds(self.rng.range(0, 999) as i64);
        self.now = match p.at {
            Some(at) => self.now.max(at),
            None => self.now + step,
        };
        self.apply(p.event)
    }

    /// The event log applied from scratch, without reloads, gives the same run.
    fn replay(&self) -> Result<(), String> {
        let mut cp = Checkpoint::new(self.v, EXECUTION, self.input.clone(), t0());
        for (n, l) in self.log.iter().enumerate() {
            let d = decide(self.v, cp, l.event.clone(), l.now, l.seed);
            if d.commands != l.commands || d.history != l.history {
                return Err(self.fail(format!(
                    "replaying event #{n} ({:?}) gave other commands or history:\n  run:    \
                     {:?}\n  replay: {:?}",
                    l.event.kind, l.commands, d.commands
                )));
            }
            cp = d.checkpoint;
        }
        if cp != self.cp {
            return Err(self.fail(format!(
                "the replayed checkpoint differs from the run's: {}",
                difference(&self.cp, &cp)
            )));
        }
        Ok(())
    }
}

/// Where two checkpoints differ, as Rust debug text of the first differing step (or the whole).
fn difference(a: &Checkpoint, b: &Checkpoint) -> String {
    for (x, y) in a.steps.iter().zip(&b.steps) {
        if x != y {
            return format!("\n  one:   {x:?}\n  other: {y:?}");
        }
    }
    format!("\n  one:   {a:?}\n  other: {b:?}")
}

/// One case: the workflow of `steps` steps drawn from `seed`, run to its end.
fn simulate(steps: usize, seed: u64, trace: bool) -> Result<(), String> {
    let def: Definition = serde_json::from_value(definition(steps, seed))
        .map_err(|e| format!("seed {seed}: the generated definition does not parse: {e}"))?;
    if trace {
        eprintln!(
            "definition: {}",
            serde_json::to_string_pretty(&def).unwrap_or_default()
        );
        eprintln!("input: {}", input(seed));
        eprintln!("knobs: {:?}", Knobs::draw(steps, seed));
    }
    let version = Version::compile(def, 1, &registry())
        .map_err(|p| format!("seed {seed}: the generated definition is invalid: {p:#?}"))?;
    Sim::new(&version, steps, seed, trace).run()
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(10_000)
}

proptest! {
    // A failure names its seed (replay it with `replay_one_seed`); no regression file is
    // written into the source tree.
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Mostly small workflows, a quarter of them up to 50 steps (the cost grows with the square
    /// of the size: each event copies and compares a checkpoint that holds every step).
    #[test]
    fn random_runs_keep_the_engine_invariants(
        steps in prop_oneof![3 => 1..=12usize, 1 => 13..=MAX_STEPS],
        seed in any::<u64>(),
    ) {
        simulate(steps, seed, false).map_err(TestCaseError::fail)?;
    }
}

/// Replays the case named by `SIM_SEED` (and `SIM_STEPS`, default 50) with a trace.
#[test]
fn replay_one_seed() {
    let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) else {
        return;
    };
    let steps = std::env::var("SIM_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(MAX_STEPS);
    if let Err(e) = simulate(steps, seed, true) {
        panic!("{e}");
    }
}
