//! A small given/when/then harness over `decide()`: it keeps the checkpoint, a virtual clock
//! and the event log, and hands back the commands each event produced.

#![allow(dead_code, unreachable_pub)]

use chrono::{DateTime, Utc};
use eventflow_engine::*;
use serde_json::{Value, json};

pub fn registry() -> ActionRegistry {
    ActionRegistry::new(
        [
            ("act", false),
            ("undoable", true),
            ("email.send", true),
            ("http.request", false),
        ]
        .into_iter()
        .map(|(name, compensable)| ActionSpec {
            name: name.into(),
            compensable,
            summary: String::new(),
        }),
    )
}

pub fn version(def: Value) -> Version {
    let def: Definition = serde_json::from_value(def).expect("definition parses");
    Version::compile(def, 1, &registry()).unwrap_or_else(|p| panic!("invalid definition: {p:#?}"))
}

pub fn problems(def: Value) -> Vec<Problem> {
    let def: Definition = serde_json::from_value(def).expect("definition parses");
    validate(&def, &registry())
}

pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

pub struct Run {
    pub version: Version,
    pub cp: Checkpoint,
    pub now: DateTime<Utc>,
    pub log: Vec<(Event, DateTime<Utc>, u64)>,
    pub history: Vec<HistoryEntry>,
    next_id: u64,
}

impl Run {
    /// Given a workflow, when it starts with `input`: the run and the commands of `Started`.
    pub fn start(def: Value, input: Value) -> (Run, Vec<Command>) {
        Run::first(def, input, EventKind::Started)
    }

    /// Given a workflow, when a run of it begins with `first` instead of `Started`.
    pub fn first(def: Value, input: Value, first: EventKind) -> (Run, Vec<Command>) {
        let version = version(def);
        let cp = Checkpoint::new(&version, "ex1", input, t0());
        let mut run = Run {
            version,
            cp,
            now: t0(),
            log: Vec::new(),
            history: Vec::new(),
            next_id: 0,
        };
        let cmds = run.send(first);
        (run, cmds)
    }

    pub fn send(&mut self, kind: EventKind) -> Vec<Command> {
        self.next_id += 1;
        let event = Event::new(format!("e{}", self.next_id), kind);
        self.send_event(event)
    }

    pub fn send_event(&mut self, event: Event) -> Vec<Command> {
        let seed = 7;
        let placeholder = Checkpoint::new(&self.version, "", Value::Null, self.now);
        let cp = std::mem::replace(&mut self.cp, placeholder);
        let d = decide(&self.version, cp, event.clone(), self.now, seed);
        self.log.push((event, self.now, seed));
        if let Some(h) = d.history {
            self.history.push(h);
        }
        self.cp = d.checkpoint;
        d.commands
    }

    pub fn ok(
        &mut self,
        step: &str,
        item: Option<u32>,
        attempt: u32,
        output: Value,
    ) -> Vec<Command> {
        self.send(EventKind::StepSucceeded {
            step: step.into(),
            item,
            attempt,
            output,
        })
    }

    pub fn done(&mut self, step: &str) -> Vec<Command> {
        let attempt = self.cp.step(step).expect("step").attempt;
        self.ok(step, None, attempt, json!({}))
    }

    pub fn fail(
        &mut self,
        step: &str,
        item: Option<u32>,
        attempt: u32,
        retryable: bool,
    ) -> Vec<Command> {
        self.send(EventKind::StepFailed {
            step: step.into(),
            item,
            attempt,
            error: StepError {
                name: if retryable { "Unavailable" } else { "Rejected" }.into(),
                message: format!("{step} failed"),
                retryable,
            },
        })
    }

    pub fn compensated(&mut self, step: &str, item: Option<u32>, attempt: u32) -> Vec<Command> {
        self.send(EventKind::CompensationSucceeded {
            step: step.into(),
            item,
            attempt,
        })
    }

    /// Moves the clock to a scheduled timer and fires it.
    pub fn fire(&mut self, cmds: &[Command], kind: TimerKind) -> Vec<Command> {
        let (timer, at) = cmds
            .iter()
            .find_map(|c| match c {
                Command::ScheduleTimer { timer, at } if timer.kind == kind => {
                    Some((timer.clone(), *at))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no {kind:?} timer in {cmds:#?}"));
        self.now = self.now.max(at);
        self.send(EventKind::TimerFired { timer })
    }

    pub fn status(&self, step: &str) -> StepStatus {
        self.cp.step(step).expect("step").status
    }
}

/// The (step, item, attempt) of every RunStep command.
pub fn dispatched(cmds: &[Command]) -> Vec<(String, Option<u32>, u32)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::RunStep {
                step,
                item,
                attempt,
                ..
            } => Some((step.clone(), *item, *attempt)),
            _ => None,
        })
        .collect()
}

pub fn steps_run(cmds: &[Command]) -> Vec<String> {
    let mut s: Vec<String> = dispatched(cmds).into_iter().map(|(s, _, _)| s).collect();
    s.sort();
    s
}

pub fn compensations(cmds: &[Command]) -> Vec<String> {
    let mut s: Vec<String> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::RunCompensation { step, .. } => Some(step.clone()),
            _ => None,
        })
        .collect();
    s.sort();
    s
}

pub fn finished(cmds: &[Command]) -> Option<RunStatus> {
    cmds.iter().find_map(|c| match c {
        Command::Finish { status, .. } => Some(*status),
        _ => None,
    })
}

pub fn timers(cmds: &[Command]) -> Vec<(TimerKind, DateTime<Utc>)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::ScheduleTimer { timer, at } => Some((timer.kind, *at)),
            _ => None,
        })
        .collect()
}

pub fn names(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}
