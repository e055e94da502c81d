//! `decide()`: the transition function of a run.
//!
//! `decide(version, checkpoint, event, now, seed) -> (checkpoint', commands, history entry)`.
//! No clock is read, nothing random is drawn except from `seed`, nothing is written: the host
//! applies the commands. The same inputs always give the same outputs, which is what replay,
//! simulation and fault testing rest on.
//!
//! An event that does not match the state (a duplicate, a result for an attempt that is no
//! longer current, a timer whose purpose has passed, an operator event already applied) changes
//! nothing and emits nothing.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::expr::{Scope, StepView, Template};
use crate::retry::{draw, next_delay};
use crate::state::*;
use crate::version::{CompiledStep, CompiledWait, Policy, TimeZone, Version};

/// The most items a `for_each` may fan out over.
pub const MAX_ITEMS: usize = 100_000;

impl Checkpoint {
    /// A new run of `version`, before its `Started` event.
    pub fn new(version: &Version, execution_id: &str, input: Value, now: Timestamp) -> Self {
        Checkpoint {
            execution_id: execution_id.to_owned(),
            workflow_id: version.workflow_id.clone(),
            version: version.number,
            status: RunStatus::Running,
            input,
            seq: 0,
            created_at: now,
            updated_at: now,
            steps: version
                .steps()
                .iter()
                .map(|s| StepState::new(&s.id))
                .collect(),
            paused_at: None,
            rollback: None,
            error: None,
            compensation_error: None,
            recent_events: Vec::new(),
            correlation_key: None,
            waiting_on: Vec::new(),
        }
    }

    pub fn step(&self, id: &str) -> Option<&StepState> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// Applies `event` to `checkpoint`.
pub fn decide(
    version: &Version,
    checkpoint: Checkpoint,
    event: Event,
    now: Timestamp,
    seed: u64,
) -> Decision {
    let mut m = Machine {
        v: version,
        cp: checkpoint,
        now,
        seed,
        commands: Vec::new(),
        changes: Vec::new(),
    };
    let first = m.cp.seq == 0;
    if !m.apply(&event) {
        return Decision {
            checkpoint: m.cp,
            commands: Vec::new(),
            history: None,
        };
    }
    if first {
        m.commands
            .insert(0, Command::metric("RunStarted", 1.0, "Count"));
    }
    m.progress();
    if event.kind.needs_id_check() {
        if m.cp.recent_events.len() >= RECENT_EVENT_IDS {
            m.cp.recent_events.remove(0);
        }
        m.cp.recent_events.push(event.id.clone());
    }
    m.cp.seq += 1;
    m.cp.updated_at = now;
    let history = HistoryEntry {
        seq: m.cp.seq,
        at: now,
        seed,
        event,
        changes: m.changes,
    };
    Decision {
        checkpoint: m.cp,
        commands: m.commands,
        history: Some(history),
    }
}

struct Machine<'a> {
    v: &'a Version,
    cp: Checkpoint,
    now: Timestamp,
    seed: u64,
    commands: Vec<Command>,
    changes: Vec<Change>,
}

/// The steps of a run as expressions see them.
struct View<'a> {
    v: &'a Version,
    steps: &'a [StepState],
}

impl StepView for View<'_> {
    fn view(&self, id: &str) -> Option<Value> {
        let st = &self.steps[self.v.step_index(id)?];
        let mut map = serde_json::Map::new();
        map.insert("status".into(), Value::from(st.status.as_str()));
        if let Some(out) = &st.output {
            map.insert("output".into(), out.clone());
        }
        Some(Value::Object(map))
    }
}

/// `now + d`, saturating at the end of time instead of overflowing.
fn later(now: Timestamp, d: crate::Duration) -> Timestamp {
    now.checked_add_signed(d.chrono())
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

fn dep_ok(st: &StepState) -> Option<bool> {
    match st.status {
        StepStatus::Succeeded => Some(true),
        StepStatus::Skipped => Some(st.skip_reason != Some(SkipReason::UpstreamFailed)),
        StepStatus::Failed | StepStatus::Cancelled => Some(false),
        _ => None,
    }
}

fn is_settled(status: StepStatus) -> bool {
    matches!(
        status,
        StepStatus::Succeeded | StepStatus::Skipped | StepStatus::Failed | StepStatus::Cancelled
    )
}

impl Machine<'_> {
    // ---- bookkeeping -------------------------------------------------------------------

    fn cs(&self, i: usize) -> &CompiledStep {
        &self.v.steps()[i]
    }

    fn set_status(&mut self, i: usize, to: StepStatus, error: Option<StepError>) {
        let st = &mut self.cp.steps[i];
        let from = st.status;
        st.status = to;
        self.changes.push(Change::Step {
            step: st.id.clone(),
            item: None,
            from,
            to,
            attempt: st.attempt,
            error,
        });
    }

    fn set_run(&mut self, to: RunStatus) {
        let from = self.cp.status;
        if from != to {
            self.cp.status = to;
            self.changes.push(Change::Run { from, to });
        }
    }

    fn attempt_change(
        &mut self,
        i: usize,
        item: Option<u32>,
        attempt: u32,
        outcome: AttemptOutcome,
        error: Option<StepError>,
    ) {
        self.changes.push(Change::Attempt {
            step: self.cp.steps[i].id.clone(),
            item,
            attempt,
            outcome,
            error,
        });
    }

    fn key(&self, i: usize, item: Option<u32>, attempt: u32) -> String {
        let item = item.map_or_else(|| "-".to_owned(), |n| n.to_string());
        format!("{}/{item}/{attempt}", self.step_key(i))
    }

    /// `execution/step`.
    fn step_key(&self, i: usize) -> String {
        format!("{}/{}", self.cp.execution_id, self.cp.steps[i].id)
    }

    fn timer(
        &mut self,
        i: usize,
        kind: TimerKind,
        item: Option<u32>,
        attempt: u32,
        after: crate::Duration,
    ) {
        let at = later(self.now, after);
        self.commands.push(Command::ScheduleTimer {
            timer: Timer {
                kind,
                step: self.cp.steps[i].id.clone(),
                item,
                attempt,
            },
            at,
        });
    }

    fn jitter(&self, i: usize, item: Option<u32>, attempt: u32) -> f64 {
        let salt =
            ((i as u64) << 40) ^ (u64::from(item.unwrap_or(u32::MAX)) << 8) ^ u64::from(attempt);
        draw(self.seed, salt)
    }

    /// The item slot of a step's attempt: its loop iteration, if it loops.
    fn slot(&self, i: usize) -> Option<u32> {
        self.cs(i)
            .repeat
            .as_ref()
            .map(|_| self.cp.steps[i].iteration)
    }

    fn eval(
        &self,
        t: &Template,
        i: usize,
        item: Option<(u32, &Value)>,
        result: Option<&Value>,
        now: Timestamp,
    ) -> Result<Value, StepError> {
        let view = View {
            v: self.v,
            steps: &self.cp.steps,
        };
        let st = &self.cp.steps[i];
        let scope = Scope {
            input: &self.cp.input,
            steps: &view,
            item: item.map(|(_, v)| v),
            index: item.map(|(n, _)| n),
            iteration: self.cs(i).repeat.as_ref().map(|_| st.iteration),
            result,
            output: None,
            event: None,
            now,
        };
        t.eval(&scope).map_err(|e| self.expression_error(t, e))
    }

    /// A clear error for an expression that failed, naming a skipped step it reads.
    fn expression_error(&self, t: &Template, e: crate::ExprError) -> StepError {
        for (_, expr) in t.exprs() {
            for id in expr.reads().steps.keys() {
                if let Some(j) = self.v.step_index(id)
                    && self.cp.steps[j].status == StepStatus::Skipped
                {
                    return StepError::terminal(
                        "SkippedStepReference",
                        format!(
                            "`{}` reads the output of step `{id}`, which was skipped; guard it with has(steps.{id}.output) or depend on a step that always runs",
                            expr.source()
                        ),
                    );
                }
            }
        }
        StepError::terminal("ExpressionError", e.to_string())
    }

    fn cond(&self, i: usize, e: &crate::Expr) -> Result<bool, StepError> {
        let view = View {
            v: self.v,
            steps: &self.cp.steps,
        };
        let st = &self.cp.steps[i];
        let scope = Scope {
            iteration: self.cs(i).repeat.as_ref().map(|_| st.iteration),
            ..Scope::new(&self.cp.input, &view, self.now)
        };
        e.eval_bool(&scope)
            .map_err(|err| StepError::terminal("ExpressionError", err.to_string()))
    }

    // ---- applying events ---------------------------------------------------------------

    fn apply(&mut self, event: &Event) -> bool {
        if self.cp.status.is_terminal() {
            return false;
        }
        if event.kind.needs_id_check() && self.cp.recent_events.iter().any(|e| e == &event.id) {
            return false;
        }
        match &event.kind {
            EventKind::Started => self.cp.seq == 0,
            EventKind::StepSucceeded {
                step,
                item,
                attempt,
                output,
            } => self.on_success(step, *item, *attempt, output),
            EventKind::StepFailed {
                step,
                item,
                attempt,
                error,
            } => self.on_failure(step, *item, *attempt, error),
            EventKind::CompensationSucceeded {
                step,
                item,
                attempt,
            } => self.on_compensated(step, *item, *attempt),
            EventKind::CompensationFailed {
                step,
                item,
                attempt,
                error,
            } => self.on_compensation_failed(step, *item, *attempt, error),
            EventKind::TimerFired { timer } => self.on_timer(timer),
            EventKind::Pause => {
                if self.cp.status != RunStatus::Running {
                    return false;
                }
                self.set_run(RunStatus::Paused);
                true
            }
            EventKind::Resume => {
                if self.cp.status != RunStatus::Paused {
                    return false;
                }
                self.cp.paused_at = None;
                self.set_run(RunStatus::Running);
                true
            }
            EventKind::Cancel { compensate } => self.on_cancel(*compensate),
            EventKind::RetryStep { step } => self.on_retry(step),
            EventKind::SkipStep { step, output } => self.on_skip(step, output.clone()),
            EventKind::Rollback { to } => self.on_rollback(to.as_deref()),
            EventKind::Blocked { on } => {
                if self.cp.seq != 0 || on.is_empty() {
                    return false;
                }
                self.cp.waiting_on.clone_from(on);
                self.set_run(RunStatus::WaitingForDependency);
                true
            }
            EventKind::DependencyMet {
                workflow,
                execution_id,
                status,
            } => self.on_dependency_met(workflow, execution_id, *status),
            EventKind::DependencyFailed {
                workflow,
                execution_id,
                status,
            } => self.on_dependency_failed(workflow, execution_id.as_deref(), *status),
            EventKind::Migrated { .. } => false,
        }
    }

    fn waits_for(&self, workflow: &str) -> Option<usize> {
        if self.cp.status != RunStatus::WaitingForDependency {
            return None;
        }
        self.cp
            .waiting_on
            .iter()
            .position(|u| u.workflow == workflow)
    }

    fn on_dependency_met(&mut self, workflow: &str, execution_id: &str, status: RunStatus) -> bool {
        let Some(k) = self.waits_for(workflow) else {
            return false;
        };
        self.cp.waiting_on.remove(k);
        self.changes.push(Change::Dependency {
            workflow: workflow.to_owned(),
            execution_id: Some(execution_id.to_owned()),
            status,
        });
        if self.cp.waiting_on.is_empty() {
            // From here on the run is exactly as after `Started`.
            self.set_run(RunStatus::Running);
        }
        true
    }

    fn on_dependency_failed(
        &mut self,
        workflow: &str,
        execution_id: Option<&str>,
        status: RunStatus,
    ) -> bool {
        if self.waits_for(workflow).is_none() {
            return false;
        }
        self.cp.waiting_on.clear();
        self.changes.push(Change::Dependency {
            workflow: workflow.to_owned(),
            execution_id: execution_id.map(str::to_owned),
            status,
        });
        let run = execution_id.map_or_else(|| "its run".to_owned(), |id| format!("run {id}"));
        self.cp.error = Some(RunError {
            step: DEPENDENCY_ERROR_STEP.to_owned(),
            item: None,
            error: StepError::terminal(
                "DependencyFailed",
                format!(
                    "this run waited for workflow `{workflow}`, and {run} ended {}; start `{workflow}` again for this key, then start this workflow again",
                    status.as_str()
                ),
            ),
        });
        self.finish(RunStatus::Cancelled);
        true
    }

    /// The step whose attempt `(item, attempt)` is in flight now; `None` for a duplicate or
    /// an attempt that is no longer current.
    fn in_flight(&self, step: &str, item: Option<u32>, attempt: u32) -> Option<usize> {
        let i = self.v.step_index(step)?;
        self.cp.steps[i]
            .awaits_attempt(item, attempt, self.slot(i))
            .then_some(i)
    }

    fn on_success(&mut self, step: &str, item: Option<u32>, attempt: u32, output: &Value) -> bool {
        let Some(i) = self.in_flight(step, item, attempt) else {
            return false;
        };
        if let Some(fan) = self.cp.steps[i].fan.as_mut() {
            fan.in_flight
                .retain(|r| Some(r.index) != item || r.attempt != attempt);
            fan.succeeded += 1;
            self.attempt_change(i, item, attempt, AttemptOutcome::Succeeded, None);
            self.settle_fan(i);
            return true;
        }
        let shaped = match &self.cs(i).output {
            Some(t) => self.eval(t, i, None, Some(output), self.now),
            None => Ok(output.clone()),
        };
        let shaped = match shaped {
            Ok(v) => v,
            Err(e) => {
                // The action did act: a rollback must still undo it.
                self.cp.steps[i].took_effect = true;
                self.fail_step(i, None, e);
                return true;
            }
        };
        self.cp.steps[i].output = Some(shaped);
        let Some(lp) = self.cs(i).repeat.clone() else {
            self.succeed(i);
            return true;
        };
        self.attempt_change(i, item, attempt, AttemptOutcome::Succeeded, None);
        let iteration = self.cp.steps[i].iteration;
        match self.cond(i, &lp.until) {
            Err(e) => self.fail_step(i, None, e),
            Ok(true) => self.succeed(i),
            Ok(false) if iteration >= lp.max_iterations => match lp.on_exhausted {
                crate::LoopExhausted::Succeed => self.succeed(i),
                crate::LoopExhausted::Fail => {
                    // Its iterations acted: a rollback undoes them.
                    self.cp.steps[i].took_effect = true;
                    self.fail_step(
                        i,
                        None,
                        StepError::terminal(
                            "LoopExhausted",
                            format!(
                                "the loop ran {iteration} times and `{}` never held",
                                lp.until.source()
                            ),
                        ),
                    );
                }
            },
            // A rollback (or a cancel with compensation) dispatches nothing new: the loop ends
            // here, and what its iterations did is undone with the rest.
            Ok(false) if !matches!(self.cp.status, RunStatus::Running | RunStatus::Paused) => {
                self.succeed(i);
            }
            Ok(false) => {
                let paused = self.cp.status == RunStatus::Paused;
                let st = &mut self.cp.steps[i];
                st.iteration += 1;
                // Attempts number on across iterations, so no key is used twice; the retry
                // policy counts each iteration's tries from here.
                st.base = st.attempt;
                st.attempt = st.base + 1;
                let (next, first) = (st.iteration, st.attempt);
                match lp.delay {
                    Some(d) if d > crate::Duration::ZERO => {
                        self.wait_on(i, TimerKind::LoopDelay);
                        self.timer(i, TimerKind::LoopDelay, Some(next), first, d);
                    }
                    // Paused: the next iteration goes out when the run is continued.
                    _ if paused => {
                        self.wait_on(i, TimerKind::LoopDelay);
                        self.cp.steps[i].due = true;
                    }
                    _ => self.dispatch(i, Some(next), first),
                }
            }
        }
        true
    }

    fn on_failure(
        &mut self,
        step: &str,
        item: Option<u32>,
        attempt: u32,
        error: &StepError,
    ) -> bool {
        let Some(i) = self.in_flight(step, item, attempt) else {
            return false;
        };
        self.attempt_failed(i, item, attempt, error.clone());
        true
    }

    /// An attempt failed: retry it after a backoff, or fail it for good.
    fn attempt_failed(&mut self, i: usize, item: Option<u32>, attempt: u32, error: StepError) {
        let retry_allowed = matches!(self.cp.status, RunStatus::Running | RunStatus::Paused);
        let delay = if retry_allowed {
            next_delay(
                &self.cs(i).retry,
                attempt.saturating_sub(self.cp.steps[i].base),
                &error,
                self.jitter(i, item, attempt),
            )
        } else {
            None
        };
        let fan_step = self.cs(i).for_each.is_some();
        match delay {
            Some(d) => {
                self.attempt_change(
                    i,
                    item,
                    attempt,
                    AttemptOutcome::RetryScheduled,
                    Some(error.clone()),
                );
                if fan_step {
                    let n = item.unwrap_or_default();
                    let fan = self.cp.steps[i].fan.as_mut().expect("fan");
                    fan.retries += 1;
                    if let Some(r) = fan.in_flight.iter_mut().find(|r| r.index == n) {
                        r.attempt = attempt + 1;
                        r.backoff = true;
                    }
                } else {
                    let st = &mut self.cp.steps[i];
                    st.retries += 1;
                    st.attempt = attempt + 1;
                    st.error = Some(error);
                    self.wait_on(i, TimerKind::Backoff);
                }
                self.timer(i, TimerKind::Backoff, item, attempt + 1, d);
            }
            None if fan_step => {
                self.attempt_change(
                    i,
                    item,
                    attempt,
                    AttemptOutcome::Failed,
                    Some(error.clone()),
                );
                let n = item.unwrap_or_default();
                let tolerated = self
                    .cs(i)
                    .for_each
                    .as_ref()
                    .map_or(0.0, |f| f.tolerated_failure);
                let fan = self.cp.steps[i].fan.as_mut().expect("fan");
                fan.in_flight.retain(|r| r.index != n);
                fan.failed += 1;
                fan.record_failed(n);
                if fan.failures.len() < MAX_RECORDED_ITEM_FAILURES {
                    fan.failures.push(ItemFailure { index: n, error });
                }
                if f64::from(fan.failed) > (tolerated * f64::from(fan.total)).floor() {
                    fan.tripped = true;
                }
                self.settle_fan(i);
            }
            None => self.fail_step(i, item, error),
        }
    }

    fn wait_on(&mut self, i: usize, kind: TimerKind) {
        let st = &mut self.cp.steps[i];
        st.timer = Some(kind);
        st.due = false;
        if st.status != StepStatus::Waiting {
            self.set_status(i, StepStatus::Waiting, None);
        }
    }

    fn on_timer(&mut self, timer: &Timer) -> bool {
        let Some(i) = self.v.step_index(&timer.step) else {
            return false;
        };
        let running = self.cp.status == RunStatus::Running;
        match timer.kind {
            TimerKind::Timeout => {
                if self
                    .in_flight(&timer.step, timer.item, timer.attempt)
                    .is_none()
                {
                    return false;
                }
                let limit = self.cs(i).timeout.unwrap_or_default();
                self.attempt_failed(
                    i,
                    timer.item,
                    timer.attempt,
                    StepError::retryable(
                        "Timeout",
                        format!("the attempt did not finish within {limit}"),
                    ),
                );
                true
            }
            TimerKind::Backoff if self.cs(i).for_each.is_some() => {
                let st = &mut self.cp.steps[i];
                if st.status != StepStatus::Running {
                    return false;
                }
                let Some(fan) = st.fan.as_mut() else {
                    return false;
                };
                let Some(r) = fan.in_flight.iter_mut().find(|r| {
                    Some(r.index) == timer.item && r.attempt == timer.attempt && r.backoff && !r.due
                }) else {
                    return false;
                };
                if running {
                    r.backoff = false;
                    let (n, attempt) = (r.index, r.attempt);
                    self.dispatch(i, Some(n), attempt);
                } else {
                    r.due = true;
                }
                true
            }
            TimerKind::Wait | TimerKind::Backoff | TimerKind::LoopDelay => {
                let st = &self.cp.steps[i];
                let item = self.slot(i).filter(|_| timer.kind != TimerKind::Wait);
                if st.status != StepStatus::Waiting
                    || st.timer != Some(timer.kind)
                    || st.due
                    || st.attempt != timer.attempt
                    || item != timer.item
                {
                    return false;
                }
                if running {
                    self.timer_done(i);
                } else {
                    self.cp.steps[i].due = true;
                }
                true
            }
            TimerKind::CompensationBackoff => {
                let st = &mut self.cp.steps[i];
                if st.status != StepStatus::Compensating {
                    return false;
                }
                let Some(comp) = st.compensation.as_mut() else {
                    return false;
                };
                match timer.item.filter(|_| st.fan.is_some()) {
                    Some(n) => {
                        let Some(r) = comp
                            .in_flight
                            .iter_mut()
                            .find(|r| r.index == n && r.attempt == timer.attempt && r.backoff)
                        else {
                            return false;
                        };
                        r.backoff = false;
                        self.dispatch_compensation(i, Some(n), timer.attempt);
                    }
                    None => {
                        if !comp.backoff || comp.attempt != timer.attempt {
                            return false;
                        }
                        comp.backoff = false;
                        self.dispatch_compensation(i, None, timer.attempt);
                    }
                }
                true
            }
        }
    }

    /// The timer a waiting step was waiting on has come due and the run may go on.
    fn timer_done(&mut self, i: usize) {
        let st = &mut self.cp.steps[i];
        let kind = st.timer.take();
        st.due = false;
        let (attempt, item) = (st.attempt, self.slot(i));
        match kind {
            Some(TimerKind::Wait) => self.begin_action(i),
            Some(TimerKind::Backoff | TimerKind::LoopDelay) => self.dispatch(i, item, attempt),
            _ => {}
        }
    }

    fn on_compensated(&mut self, step: &str, item: Option<u32>, attempt: u32) -> bool {
        let Some(i) = self.v.step_index(step) else {
            return false;
        };
        if !self.cp.steps[i].awaits_compensation(item, attempt) {
            return false;
        }
        let st = &mut self.cp.steps[i];
        let is_fan = st.fan.is_some();
        let Some(comp) = st.compensation.as_mut() else {
            return false;
        };
        if is_fan {
            if let Some(pos) = comp
                .in_flight
                .iter()
                .position(|r| Some(r.index) == item && r.attempt == attempt && !r.backoff)
            {
                comp.in_flight.swap_remove(pos);
            }
            comp.done += 1;
            self.attempt_change(i, item, attempt, AttemptOutcome::Compensated, None);
            self.settle_compensation(i);
        } else {
            comp.done = 1;
            self.cp.steps[i].finished_at = Some(self.now);
            self.set_status(i, StepStatus::Compensated, None);
        }
        true
    }

    fn on_compensation_failed(
        &mut self,
        step: &str,
        item: Option<u32>,
        attempt: u32,
        error: &StepError,
    ) -> bool {
        let Some(i) = self.v.step_index(step) else {
            return false;
        };
        let st = &self.cp.steps[i];
        if !st.awaits_compensation(item, attempt) {
            return false;
        }
        let is_fan = st.fan.is_some();
        let retry = self
            .cs(i)
            .compensation
            .as_ref()
            .map(|c| c.retry.clone())
            .unwrap_or_default();
        let base = st.compensation.as_ref().map_or(0, |c| c.base);
        match next_delay(
            &retry,
            attempt.saturating_sub(base),
            error,
            self.jitter(i, item, attempt ^ 0x8000_0000),
        ) {
            Some(d) => {
                self.attempt_change(
                    i,
                    item,
                    attempt,
                    AttemptOutcome::CompensationRetryScheduled,
                    Some(error.clone()),
                );
                let comp = self.cp.steps[i]
                    .compensation
                    .as_mut()
                    .expect("compensation");
                match item.filter(|_| is_fan) {
                    Some(n) => {
                        if let Some(r) = comp.in_flight.iter_mut().find(|r| r.index == n) {
                            r.attempt = attempt + 1;
                            r.backoff = true;
                        }
                        comp.attempt = comp.attempt.max(attempt + 1);
                    }
                    None => {
                        comp.attempt = attempt + 1;
                        comp.backoff = true;
                    }
                }
                self.timer(i, TimerKind::CompensationBackoff, item, attempt + 1, d);
            }
            None => {
                self.attempt_change(
                    i,
                    item,
                    attempt,
                    AttemptOutcome::CompensationFailed,
                    Some(error.clone()),
                );
                let comp = self.cp.steps[i]
                    .compensation
                    .as_mut()
                    .expect("compensation");
                comp.error = Some(error.clone());
                if let Some(n) = item.filter(|_| is_fan) {
                    comp.in_flight.retain(|r| r.index != n);
                    comp.failed_items.push(n);
                }
                if self.cp.compensation_error.is_none() {
                    self.cp.compensation_error = Some(RunError {
                        step: step.to_owned(),
                        item,
                        error: error.clone(),
                    });
                }
                self.settle_compensation(i);
            }
        }
        true
    }

    fn on_cancel(&mut self, compensate: bool) -> bool {
        if self.cp.status == RunStatus::WaitingForDependency {
            // Nothing ran, so nothing is undone.
            self.cp.waiting_on.clear();
            self.finish(RunStatus::Cancelled);
            return true;
        }
        if compensate {
            if self.cp.status == RunStatus::Compensating {
                return false;
            }
            self.begin_rollback(RollbackReason::Cancel, None);
            return true;
        }
        for i in 0..self.cp.steps.len() {
            if matches!(
                self.cp.steps[i].status,
                StepStatus::Waiting | StepStatus::Running | StepStatus::Compensating
            ) {
                self.set_status(i, StepStatus::Cancelled, None);
            }
        }
        self.finish(RunStatus::Cancelled);
        true
    }

    fn on_retry(&mut self, step: &str) -> bool {
        let Some(i) = self.v.step_index(step) else {
            return false;
        };
        match (self.cp.status, self.cp.steps[i].status) {
            (RunStatus::Running | RunStatus::Paused, StepStatus::Failed) => {
                if !self.retry_failed_items(i) {
                    self.reset_step(i);
                }
                // Dependents skipped because this step failed get another chance.
                for j in 0..self.cp.steps.len() {
                    let st = &self.cp.steps[j];
                    if self.v.follows(j, i)
                        && st.status == StepStatus::Skipped
                        && st.skip_reason == Some(SkipReason::UpstreamFailed)
                    {
                        self.reset_step(j);
                    }
                }
                if self.cp.error.as_ref().is_some_and(|e| e.step == step) {
                    self.cp.error = None;
                }
                self.cp.paused_at = None;
                self.set_run(RunStatus::Running);
                true
            }
            (RunStatus::Paused, StepStatus::Pending)
                if self.cp.paused_at.as_deref() == Some(step) =>
            {
                self.cp.paused_at = None;
                self.set_run(RunStatus::Running);
                true
            }
            (RunStatus::NeedsAttention, StepStatus::CompensationFailed) => {
                self.retry_compensation(i);
                // Another compensation may still have failed: keep its error.
                self.cp.compensation_error = self.cp.steps.iter().find_map(|s| {
                    (s.status == StepStatus::CompensationFailed).then(|| RunError {
                        step: s.id.clone(),
                        item: None,
                        error: s
                            .compensation
                            .as_ref()
                            .and_then(|c| c.error.clone())
                            .unwrap_or_else(|| StepError::terminal("CompensationFailed", "")),
                    })
                });
                self.set_run(RunStatus::Compensating);
                true
            }
            _ => false,
        }
    }

    /// Retries only the items of a failed `for_each` that did not succeed, when they are all
    /// known; `false` when the step must start over whole.
    fn retry_failed_items(&mut self, i: usize) -> bool {
        let st = &mut self.cp.steps[i];
        let Some(fan) = st.fan.as_mut() else {
            return false;
        };
        if fan.failures_truncated {
            return false;
        }
        let mut queue = std::mem::take(&mut fan.failed_items);
        queue.reverse();
        fan.retry_queue = queue;
        fan.failed = 0;
        fan.failures.clear();
        fan.tripped = false;
        st.base = st.attempt;
        st.error = None;
        st.finished_at = None;
        st.output = None;
        self.set_status(i, StepStatus::Running, None);
        true
    }

    fn reset_step(&mut self, i: usize) {
        let from = self.cp.steps[i].status;
        // Numbering goes on past everything used so far (a wait's timer is named by the
        // base too), so no key or timer of the earlier try is ever taken for the new one.
        let old = &mut self.cp.steps[i];
        let (retries, base) = (old.retries, old.attempt.max(old.base + 1));
        // Kept only for its attempt numbers (see start_compensation).
        let compensation = old.compensation.take();
        // An action that acted before still needs undoing if the new try does not act; one
        // compensation undoes the step either way.
        let took_effect = old.took_effect && old.status != StepStatus::Compensated;
        self.cp.steps[i] = StepState {
            retries,
            attempt: base,
            base,
            took_effect,
            compensation,
            ..StepState::new(&self.cs(i).id)
        };
        self.changes.push(Change::Step {
            step: self.cp.steps[i].id.clone(),
            item: None,
            from,
            to: StepStatus::Pending,
            attempt: 0,
            error: None,
        });
    }

    /// An operator asks again for a compensation that failed for good: attempts are numbered
    /// on, so the new ones have keys of their own.
    fn retry_compensation(&mut self, i: usize) {
        let st = &mut self.cp.steps[i];
        let is_fan = st.fan.is_some();
        let mut first = 1;
        if let Some(comp) = st.compensation.as_mut() {
            comp.error = None;
            comp.backoff = false;
            comp.base = comp.attempt;
            first = comp.base + 1;
            let failed = std::mem::take(&mut comp.failed_items);
            comp.retry_queue.extend(failed);
        }
        self.set_status(i, StepStatus::Compensating, None);
        if !is_fan {
            self.dispatch_compensation(i, None, first);
        }
    }

    fn on_skip(&mut self, step: &str, output: Option<Value>) -> bool {
        let Some(i) = self.v.step_index(step) else {
            return false;
        };
        if !matches!(self.cp.status, RunStatus::Running | RunStatus::Paused)
            || !matches!(
                self.cp.steps[i].status,
                StepStatus::Failed | StepStatus::Pending | StepStatus::Waiting
            )
        {
            return false;
        }
        let st = &mut self.cp.steps[i];
        st.skip_reason = Some(SkipReason::Operator);
        st.output = output;
        st.timer = None;
        st.due = false;
        st.finished_at = Some(self.now);
        self.set_status(i, StepStatus::Skipped, None);
        if self.cp.error.as_ref().is_some_and(|e| e.step == step) {
            self.cp.error = None;
        }
        if self.cp.status == RunStatus::Paused {
            self.cp.paused_at = None;
            self.set_run(RunStatus::Running);
        }
        true
    }

    fn on_rollback(&mut self, to: Option<&str>) -> bool {
        let target = match to {
            Some(id) => match self.v.step_index(id) {
                Some(t) => Some(t),
                None => return false,
            },
            None => None,
        };
        match self.cp.status {
            RunStatus::Running | RunStatus::Paused => {
                self.begin_rollback(RollbackReason::Operator, target);
                true
            }
            RunStatus::NeedsAttention => {
                for i in 0..self.cp.steps.len() {
                    if self.cp.steps[i].status == StepStatus::CompensationFailed {
                        self.retry_compensation(i);
                    }
                }
                self.cp.compensation_error = None;
                self.set_run(RunStatus::Compensating);
                true
            }
            _ => false,
        }
    }

    // ---- moving forward ----------------------------------------------------------------

    fn progress(&mut self) {
        loop {
            let before = self.cp.status;
            match before {
                RunStatus::Running => self.advance(),
                RunStatus::Compensating => self.advance_compensation(),
                _ => return,
            }
            if self.cp.status == before {
                return;
            }
        }
    }

    fn advance(&mut self) {
        for k in 0..self.v.order().len() {
            if self.cp.status != RunStatus::Running {
                return;
            }
            let i = self.v.order()[k];
            match self.cp.steps[i].status {
                StepStatus::Pending => {
                    let mut ready = true;
                    let mut blocked = false;
                    for &d in &self.cs(i).deps {
                        match dep_ok(&self.cp.steps[d]) {
                            Some(true) => {}
                            Some(false) => blocked = true,
                            None => ready = false,
                        }
                    }
                    if blocked {
                        let st = &mut self.cp.steps[i];
                        st.skip_reason = Some(SkipReason::UpstreamFailed);
                        st.finished_at = Some(self.now);
                        self.set_status(i, StepStatus::Skipped, None);
                    } else if ready {
                        self.start_step(i);
                    }
                }
                StepStatus::Waiting if self.cp.steps[i].due => self.timer_done(i),
                StepStatus::Running if self.cp.steps[i].fan.is_some() => self.fill_fan(i),
                _ => {}
            }
        }
        if self.cp.status == RunStatus::Running
            && self.cp.steps.iter().all(|s| is_settled(s.status))
        {
            let failed = self.cp.steps.iter().any(|s| s.status == StepStatus::Failed);
            self.finish(if failed {
                RunStatus::CompletedWithErrors
            } else {
                RunStatus::Completed
            });
        }
    }

    fn start_step(&mut self, i: usize) {
        self.cp.steps[i].started_at = Some(self.now);
        if let Some(when) = &self.cs(i).when {
            match self.cond(i, when) {
                Ok(true) => {}
                Ok(false) => {
                    let st = &mut self.cp.steps[i];
                    st.skip_reason = Some(SkipReason::Condition);
                    st.finished_at = Some(self.now);
                    self.set_status(i, StepStatus::Skipped, None);
                    return;
                }
                Err(e) => {
                    self.fail_step(i, None, e);
                    return;
                }
            }
        }
        let Some(wait) = self.cs(i).wait.clone() else {
            self.begin_action(i);
            return;
        };
        match self.wake_at(&wait) {
            Ok(at) if at > self.now => {
                self.wait_on(i, TimerKind::Wait);
                self.commands.push(Command::ScheduleTimer {
                    timer: Timer {
                        kind: TimerKind::Wait,
                        step: self.cs(i).id.clone(),
                        item: None,
                        attempt: self.cp.steps[i].attempt,
                    },
                    at,
                });
            }
            Ok(_) => self.begin_action(i),
            Err(e) => self.fail_step(i, None, e),
        }
    }

    fn wake_at(&self, wait: &CompiledWait) -> Result<Timestamp, StepError> {
        let bad = |m: String| StepError::terminal("WaitError", m);
        match wait {
            CompiledWait::For(d) => Ok(later(self.now, *d)),
            CompiledWait::Until {
                instant,
                offset,
                at,
                time_zone,
            } => {
                let view = View {
                    v: self.v,
                    steps: &self.cp.steps,
                };
                let scope = Scope::new(&self.cp.input, &view, self.now);
                let tz = match time_zone {
                    TimeZone::Fixed(tz) => *tz,
                    TimeZone::Expr(e) => {
                        let v = e.eval(&scope).map_err(|e| bad(e.to_string()))?;
                        v.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                            bad(format!(
                                "`{}` gave {v}, which is not an IANA time zone",
                                e.source()
                            ))
                        })?
                    }
                };
                let base = instant.eval(&scope).map_err(|e| {
                    let t = Template::Expr(instant.clone());
                    let se = self.expression_error(&t, e);
                    bad(se.message)
                })?;
                let base = crate::time::parse_instant(&base, tz).map_err(bad)?;
                crate::time::shift(base, *offset, *at, tz).map_err(bad)
            }
        }
    }

    fn begin_action(&mut self, i: usize) {
        if self.cs(i).action.is_none() {
            self.cp.steps[i].output = Some(Value::Null);
            self.succeed(i);
            return;
        }
        if self.cs(i).for_each.is_some() {
            let items = match self.items(i) {
                Ok(items) => items,
                Err(e) => {
                    self.fail_step(i, None, e);
                    return;
                }
            };
            let total = u32::try_from(items.len()).unwrap_or(u32::MAX);
            let mut fan = FanOut {
                total,
                ..FanOut::default()
            };
            fan.items.0 = Some(items);
            self.cp.steps[i].fan = Some(Box::new(fan));
            self.set_status(i, StepStatus::Running, None);
            self.fill_fan(i);
            self.settle_fan(i);
            return;
        }
        let slot = if self.cs(i).repeat.is_some() {
            self.cp.steps[i].iteration = 1;
            Some(1)
        } else {
            None
        };
        let first = self.cp.steps[i].base + 1;
        self.dispatch(i, slot, first);
    }

    /// The evaluated item list of a `for_each`, from the cache or evaluated again.
    fn items(&mut self, i: usize) -> Result<Arc<Vec<Value>>, StepError> {
        if let Some(items) = self.cp.steps[i]
            .fan
            .as_ref()
            .and_then(|f| f.items.0.clone())
        {
            return Ok(items);
        }
        let fe = self.cs(i).for_each.as_ref().expect("for_each");
        let started = self.cp.steps[i].started_at.unwrap_or(self.now);
        let t = Template::Expr(Box::new(fe.items.clone()));
        let value = self.eval(&t, i, None, None, started)?;
        let Value::Array(items) = value else {
            return Err(StepError::terminal(
                "ExpressionError",
                format!("for_each items `{}` must give a list", fe.items.source()),
            ));
        };
        if items.len() > MAX_ITEMS {
            return Err(StepError::terminal(
                "TooManyItems",
                format!(
                    "for_each gave {} items, the limit is {MAX_ITEMS}; split the list",
                    items.len()
                ),
            ));
        }
        let items = Arc::new(items);
        if let Some(fan) = self.cp.steps[i].fan.as_mut() {
            fan.items.0 = Some(Arc::clone(&items));
        }
        Ok(items)
    }

    fn fill_fan(&mut self, i: usize) {
        let concurrency = self.cs(i).for_each.as_ref().map_or(1, |f| f.concurrency) as usize;
        // Items whose backoff came due while the run was paused.
        let due: Vec<(u32, u32)> = self.cp.steps[i]
            .fan
            .as_mut()
            .map(|f| {
                f.in_flight
                    .iter_mut()
                    .filter(|r| r.due)
                    .map(|r| {
                        r.due = false;
                        r.backoff = false;
                        (r.index, r.attempt)
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (n, attempt) in due {
            self.dispatch(i, Some(n), attempt);
        }
        let first = self.cp.steps[i].base + 1;
        loop {
            let Some(fan) = self.cp.steps[i].fan.as_mut() else {
                return;
            };
            if fan.tripped || fan.in_flight.len() >= concurrency {
                return;
            }
            // Items an operator asked to run again come first.
            let n = if let Some(n) = fan.retry_queue.pop() {
                n
            } else if fan.next < fan.total {
                fan.next += 1;
                fan.next - 1
            } else {
                return;
            };
            fan.in_flight.push(ItemRun {
                index: n,
                attempt: first,
                backoff: false,
                due: false,
            });
            self.dispatch(i, Some(n), first);
        }
    }

    /// Finishes a `for_each` whose items have all settled.
    fn settle_fan(&mut self, i: usize) {
        let Some(fan) = self.cp.steps[i].fan.as_ref() else {
            return;
        };
        if !fan.in_flight.is_empty() {
            return;
        }
        let done = fan.tripped || (fan.next >= fan.total && fan.retry_queue.is_empty());
        if !done {
            if matches!(self.cp.status, RunStatus::Compensating) || self.cp.status.is_terminal() {
                self.cp.steps[i].finished_at = Some(self.now);
                self.set_status(i, StepStatus::Cancelled, None);
            }
            return;
        }
        let tolerated = self
            .cs(i)
            .for_each
            .as_ref()
            .map_or(0.0, |f| f.tolerated_failure);
        let (total, succeeded, failed) = (fan.total, fan.succeeded, fan.failed);
        let output = json!({"total": total, "succeeded": succeeded, "failed": failed});
        if f64::from(failed) > (tolerated * f64::from(total)).floor() {
            let first = fan
                .failures
                .first()
                .map(|f| f.error.message.clone())
                .unwrap_or_default();
            self.cp.steps[i].output = Some(output);
            self.fail_step(
                i,
                None,
                StepError::terminal(
                    "TooManyItemsFailed",
                    format!(
                        "{failed} of {total} items failed, {:.0}% tolerated; first failure: {first}",
                        tolerated * 100.0
                    ),
                ),
            );
        } else {
            self.cp.steps[i].output = Some(output);
            self.succeed(i);
        }
    }

    fn dispatch(&mut self, i: usize, item: Option<u32>, attempt: u32) {
        let fan_item = self.cs(i).for_each.is_some();
        let input = if fan_item {
            let n = item.unwrap_or_default();
            match self.items(i) {
                Ok(items) => match items.get(n as usize) {
                    Some(value) => {
                        self.eval(&self.cs(i).input, i, Some((n, value)), None, self.now)
                    }
                    None => Err(StepError::terminal(
                        "ItemMissing",
                        format!("item {n} no longer exists"),
                    )),
                },
                Err(e) => Err(e),
            }
        } else {
            self.eval(&self.cs(i).input, i, None, None, self.now)
        };
        let st = &mut self.cp.steps[i];
        if fan_item {
            st.attempt = st.attempt.max(attempt);
        } else {
            st.attempt = attempt;
            st.timer = None;
        }
        if st.status != StepStatus::Running {
            self.set_status(i, StepStatus::Running, None);
        }
        let input = match input {
            Ok(v) => v,
            Err(e) => {
                self.attempt_failed(i, item, attempt, e);
                return;
            }
        };
        self.attempt_change(i, item, attempt, AttemptOutcome::Dispatched, None);
        let cs = self.cs(i);
        let (action, timeout) = (cs.action.clone().unwrap_or_default(), cs.timeout);
        self.commands.push(Command::RunStep {
            key: self.key(i, item, attempt),
            step: cs.id.clone(),
            item,
            attempt,
            action,
            input,
            timeout,
        });
        if let Some(t) = timeout {
            self.timer(i, TimerKind::Timeout, item, attempt, t);
        }
    }

    fn succeed(&mut self, i: usize) {
        let st = &mut self.cp.steps[i];
        st.finished_at = Some(self.now);
        st.error = None;
        st.timer = None;
        self.set_status(i, StepStatus::Succeeded, None);
    }

    /// A step failed for good: apply its failure policy.
    fn fail_step(&mut self, i: usize, item: Option<u32>, error: StepError) {
        let st = &mut self.cp.steps[i];
        st.finished_at = Some(self.now);
        st.error = Some(error.clone());
        st.timer = None;
        self.set_status(i, StepStatus::Failed, Some(error.clone()));
        self.commands
            .push(Command::metric("StepFailed", 1.0, "Count"));
        if self.cp.error.is_none() {
            self.cp.error = Some(RunError {
                step: self.cs(i).id.clone(),
                item,
                error,
            });
        }
        if !matches!(self.cp.status, RunStatus::Running | RunStatus::Paused) {
            return;
        }
        match self.cs(i).on_failure {
            Policy::Continue => {}
            Policy::Pause => {
                self.cp.paused_at = Some(self.cs(i).id.clone());
                self.set_run(RunStatus::Paused);
            }
            Policy::Rollback => self.begin_rollback(RollbackReason::Failure, None),
            Policy::RollbackTo(t) => self.begin_rollback(RollbackReason::Failure, Some(t)),
        }
    }

    fn finish(&mut self, status: RunStatus) {
        self.set_run(status);
        let error = self
            .cp
            .compensation_error
            .clone()
            .or_else(|| self.cp.error.clone());
        self.commands.push(Command::Finish { status, error });
        let ms = (self.now - self.cp.created_at).num_milliseconds().max(0);
        self.commands
            .push(Command::metric(status.metric_name(), 1.0, "Count"));
        self.commands
            .push(Command::metric("RunDuration", ms as f64, "Milliseconds"));
    }

    // ---- compensation ------------------------------------------------------------------

    fn in_scope(&self, j: usize) -> bool {
        match self.cp.rollback.as_ref().and_then(|r| r.to.as_deref()) {
            None => true,
            Some(t) => self
                .v
                .step_index(t)
                .is_some_and(|t| j == t || self.v.follows(j, t)),
        }
    }

    fn begin_rollback(&mut self, reason: RollbackReason, to: Option<usize>) {
        self.cp.rollback = Some(Rollback {
            reason,
            to: to.map(|t| self.cs(t).id.clone()),
        });
        self.cp.paused_at = None;
        self.set_run(RunStatus::Compensating);
        for j in 0..self.cp.steps.len() {
            if !self.in_scope(j) {
                continue;
            }
            match self.cp.steps[j].status {
                StepStatus::Waiting => {
                    let st = &mut self.cp.steps[j];
                    st.timer = None;
                    st.due = false;
                    st.finished_at = Some(self.now);
                    self.set_status(j, StepStatus::Cancelled, None);
                }
                StepStatus::Running => {
                    // Items waiting to retry are not in flight: they will not run now, and
                    // since they did not succeed there is nothing of theirs to undo.
                    if let Some(fan) = self.cp.steps[j].fan.as_mut() {
                        let waiting: Vec<u32> = fan
                            .in_flight
                            .iter()
                            .filter(|r| r.backoff)
                            .map(|r| r.index)
                            .collect();
                        fan.in_flight.retain(|r| !r.backoff);
                        let queued = std::mem::take(&mut fan.retry_queue);
                        for n in waiting.into_iter().chain(queued) {
                            fan.record_failed(n);
                        }
                    }
                    self.settle_fan(j);
                }
                _ => {}
            }
        }
    }

    /// Whether a step has something to undo, and has not yet been undone.
    fn owes_compensation(&self, j: usize) -> bool {
        let st = &self.cp.steps[j];
        if self.cs(j).compensation.is_none() || !self.in_scope(j) {
            return false;
        }
        match st.status {
            StepStatus::Succeeded => st.fan.as_ref().is_none_or(|f| f.succeeded > 0),
            StepStatus::Failed | StepStatus::Cancelled | StepStatus::Skipped => {
                st.took_effect || st.fan.as_ref().is_some_and(|f| f.succeeded > 0)
            }
            StepStatus::Compensating => true,
            _ => false,
        }
    }

    /// A compensation failed for good (or is failing, items still in flight).
    fn compensation_failed(&self) -> bool {
        self.cp.steps.iter().any(|s| {
            s.status == StepStatus::CompensationFailed
                || (s.status == StepStatus::Compensating
                    && s.compensation.as_ref().is_some_and(|c| c.error.is_some()))
        })
    }

    fn advance_compensation(&mut self) {
        // Let what is in flight settle first: its result decides what needs undoing. Items
        // only waiting to retry (outside a selective rollback) are not in flight.
        let in_flight = |s: &StepState| {
            s.status == StepStatus::Running
                && s.fan
                    .as_ref()
                    .is_none_or(|f| f.in_flight.iter().any(|r| !r.backoff))
        };
        if self.cp.steps.iter().any(in_flight) {
            return;
        }
        let n = self.cp.steps.len();
        // Once a compensation has failed for good nothing new starts, but what was started
        // goes on, so the run stops with as much undone as could be.
        if !self.compensation_failed() {
            for j in 0..n {
                if !self.owes_compensation(j) || self.cp.steps[j].status == StepStatus::Compensating
                {
                    continue;
                }
                let blocked = (0..n).any(|k| self.v.follows(k, j) && self.owes_compensation(k));
                if !blocked {
                    self.start_compensation(j);
                }
            }
        }
        for j in 0..n {
            if self.cp.steps[j].status == StepStatus::Compensating && self.cp.steps[j].fan.is_some()
            {
                self.fill_compensation(j);
            }
        }
        if self
            .cp
            .steps
            .iter()
            .any(|s| s.status == StepStatus::Compensating)
        {
            return;
        }
        if self.compensation_failed() {
            self.set_run(RunStatus::NeedsAttention);
            let error = self.cp.compensation_error.clone();
            self.commands.push(Command::Finish {
                status: RunStatus::NeedsAttention,
                error,
            });
            return;
        }
        if (0..n).any(|j| self.owes_compensation(j)) {
            return;
        }
        self.finish_rollback();
    }

    fn start_compensation(&mut self, j: usize) {
        // A step run again after a selective rollback may be undone a second time: its
        // compensation attempts number on from the first time's.
        let base = self.cp.steps[j]
            .compensation
            .as_ref()
            .map_or(0, |c| c.attempt);
        self.cp.steps[j].compensation = Some(Box::new(CompensationState {
            attempt: base,
            base,
            ..CompensationState::default()
        }));
        self.set_status(j, StepStatus::Compensating, None);
        if self.cp.steps[j].fan.is_some() {
            self.fill_compensation(j);
        } else {
            self.dispatch_compensation(j, None, base + 1);
        }
    }

    /// Dispatches compensations of a fan-out's items, skipping those known to have failed.
    fn fill_compensation(&mut self, j: usize) {
        let concurrency = self.cs(j).for_each.as_ref().map_or(1, |f| f.concurrency) as usize;
        loop {
            let st = &mut self.cp.steps[j];
            let (Some(fan), Some(comp)) = (st.fan.as_ref(), st.compensation.as_mut()) else {
                return;
            };
            if comp.error.is_some() || comp.in_flight.len() >= concurrency {
                break;
            }
            let first = comp.base + 1;
            let n = if let Some(n) = comp.retry_queue.pop() {
                n
            } else {
                while comp.next < fan.next && fan.item_failed(comp.next) {
                    comp.next += 1;
                }
                if comp.next >= fan.next {
                    break;
                }
                comp.next += 1;
                comp.next - 1
            };
            comp.attempt = comp.attempt.max(first);
            comp.in_flight.push(ItemRun {
                index: n,
                attempt: first,
                backoff: false,
                due: false,
            });
            self.dispatch_compensation(j, Some(n), first);
        }
        self.settle_compensation(j);
    }

    fn settle_compensation(&mut self, j: usize) {
        let st = &self.cp.steps[j];
        let Some(comp) = st.compensation.as_ref() else {
            return;
        };
        if !comp.in_flight.is_empty() {
            return;
        }
        if comp.error.is_some() {
            if st.fan.is_none() || comp.in_flight.is_empty() {
                let e = comp.error.clone();
                self.set_status(j, StepStatus::CompensationFailed, e);
            }
            return;
        }
        let all_dispatched = match st.fan.as_ref() {
            Some(fan) => {
                let mut next = comp.next;
                while next < fan.next && fan.item_failed(next) {
                    next += 1;
                }
                next >= fan.next && comp.retry_queue.is_empty()
            }
            None => false,
        };
        if all_dispatched {
            self.cp.steps[j].finished_at = Some(self.now);
            self.set_status(j, StepStatus::Compensated, None);
        }
    }

    fn dispatch_compensation(&mut self, j: usize, item: Option<u32>, attempt: u32) {
        let Some(comp_def) = self.cs(j).compensation.clone() else {
            return;
        };
        let started = self.cp.steps[j].started_at.unwrap_or(self.now);
        let item_value = match item {
            Some(n) => match self.items(j) {
                Ok(items) => items.get(n as usize).cloned().map(|v| (n, v)),
                Err(_) => None,
            },
            None => None,
        };
        let item_ref = item_value.as_ref().map(|(n, v)| (*n, v));
        let input = match (&comp_def.input, comp_def.builtin) {
            (Some(t), _) => self.eval(t, j, item_ref, None, self.now),
            (None, true) => self.eval(&self.cs(j).input, j, item_ref, None, started),
            (None, false) => Ok(Value::Null),
        };
        if let Some(comp) = self.cp.steps[j].compensation.as_mut()
            && item.is_none()
        {
            comp.attempt = attempt;
        }
        let input = match input {
            Ok(v) => v,
            Err(e) => {
                let comp = self.cp.steps[j]
                    .compensation
                    .as_mut()
                    .expect("compensation");
                comp.error = Some(e.clone());
                if let Some(n) = item {
                    comp.in_flight.retain(|r| r.index != n);
                    comp.failed_items.push(n);
                }
                if self.cp.compensation_error.is_none() {
                    self.cp.compensation_error = Some(RunError {
                        step: self.cs(j).id.clone(),
                        item,
                        error: e,
                    });
                }
                self.settle_compensation(j);
                return;
            }
        };
        self.attempt_change(
            j,
            item,
            attempt,
            AttemptOutcome::CompensationDispatched,
            None,
        );
        let st = &self.cp.steps[j];
        let forward_key = match item {
            Some(n) => format!("{}/{n}", self.step_key(j)),
            None => self.key(j, self.slot(j), st.attempt),
        };
        let output = if item.is_none() {
            st.output.clone()
        } else {
            None
        };
        let key = format!(
            "{}.compensate/{}/{attempt}",
            self.step_key(j),
            item.map_or_else(|| "-".to_owned(), |n| n.to_string())
        );
        self.commands.push(Command::RunCompensation {
            key,
            step: st.id.clone(),
            item,
            attempt,
            action: comp_def.action,
            builtin: comp_def.builtin,
            input,
            output,
            forward_key,
        });
    }

    fn finish_rollback(&mut self) {
        let Some(rollback) = self.cp.rollback.take() else {
            return;
        };
        if let Some(to) = rollback.to.as_deref().and_then(|t| self.v.step_index(t)) {
            // Selective: everything from the target on starts again once an operator says so.
            for j in 0..self.cp.steps.len() {
                if j == to || self.v.follows(j, to) {
                    self.reset_step(j);
                }
            }
            self.cp.error = None;
            self.cp.paused_at = Some(self.cs(to).id.clone());
            self.set_run(RunStatus::Paused);
            return;
        }
        let status = match rollback.reason {
            RollbackReason::Cancel => RunStatus::Cancelled,
            RollbackReason::Operator => RunStatus::Compensated,
            RollbackReason::Failure => {
                if self
                    .cp
                    .steps
                    .iter()
                    .any(|s| s.status == StepStatus::Compensated)
                {
                    RunStatus::Compensated
                } else {
                    RunStatus::Failed
                }
            }
        };
        self.finish(status);
    }
}
