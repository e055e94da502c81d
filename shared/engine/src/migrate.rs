//! Moving a running execution from one version of its workflow to another.
//!
//! A run is pinned to the version it started on; migration moves it on purpose, with a
//! [`Mapping`] that says what the new version's steps are to the old one's. [`check`] lists
//! every reason the run cannot move (each a sentence naming the step) or returns a [`Plan`];
//! [`apply`] lays the checkpoint out on the new version's steps and returns the history entry
//! that records the move; [`dry_run`] checks many runs and changes nothing.
//!
//! The rules:
//!
//! - Only a `running` or `paused` run moves; a finished, compensating or needs-attention run
//!   does not. Its input must suit the new version's `input_schema`.
//! - A step keeps its id unless the mapping renames it. A step of the old version that the new
//!   one does not have (and is not renamed) is dropped; a step of the new version that no old
//!   step maps to is added.
//! - A step in flight (running or waiting) cannot be dropped or renamed: its results and
//!   timers name it. Its action, `for_each` (items) and `loop` must stay the same. A step that
//!   has run keeps its `for_each` and `loop` shape too, since its compensation undoes it item by
//!   item or by the key of its last iteration.
//! - A step with something to undo (it succeeded, or some of its items did) cannot lose its
//!   compensation, by being dropped or because the new version has none, unless the mapping
//!   lists it in `accept_lost_compensations`.
//! - An added step after the run's frontier simply runs when its dependencies have finished.
//!   An added step that comes before a step that has already run (its frontier) needs an output
//!   in `supplied_outputs`: it then counts as succeeded, with attempt 0.
//! - A step that has already run must have, in the new version, dependencies that have all
//!   succeeded (or been skipped by condition or by an operator): the order is kept.
//!
//! After the move the run goes on under the new version with decide(). Steps that became ready
//! (an added step after steps that have all finished) are started by the run's next event.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::state::{
    Change, Checkpoint, Event, EventKind, HistoryEntry, ItemsCache, RunStatus, SkipReason,
    StepState, StepStatus,
};
use crate::version::{CompiledStep, Version};

/// How the steps of version B relate to those of version A.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Steps renamed: the id in A to the id in B.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub renamed: BTreeMap<String, String>,
    /// Outputs for steps B adds before the run's frontier (the id in B): they count as
    /// succeeded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub supplied_outputs: BTreeMap<String, Value>,
    /// Steps of A whose compensation may be lost (B drops the step or gives it none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept_lost_compensations: Vec<String>,
    /// Why the runs move, kept in their history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One reason a run cannot move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The step it is about, when it is about one (its id in A, or in B for a step B adds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub message: String,
}

impl Reason {
    fn run(message: String) -> Self {
        Reason {
            step: None,
            message,
        }
    }

    fn step(step: &str, message: String) -> Self {
        Reason {
            step: Some(step.to_owned()),
            message,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Where the state of one step of B comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Origin {
    /// The state of A's step `step` (the same id, or renamed).
    Carried { step: String },
    /// Added by B before the frontier: succeeded with this output.
    Supplied { output: Value },
    /// Added by B: it runs when its dependencies have finished.
    Added,
}

/// One step of B in a [`Plan`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub id: String,
    #[serde(flatten)]
    pub origin: Origin,
}

/// What a move will do, in a few lists.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub from: u32,
    pub to: u32,
    /// Renames that apply to this run, old id to new id.
    pub renamed: BTreeMap<String, String>,
    /// Steps of A that B does not have.
    pub dropped: Vec<String>,
    /// Steps B adds that count as succeeded with a supplied output.
    pub supplied: Vec<String>,
    /// Steps B adds that will run.
    pub added: Vec<String>,
    /// Steps whose compensation is lost, as the mapping accepted.
    pub lost_compensations: Vec<String>,
}

/// A checked move of one run; [`apply`] carries it out on the checkpoint it was made for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub execution_id: String,
    /// The checkpoint's `seq` when the plan was made: the plan is for that state only.
    pub seq: u64,
    pub summary: Summary,
    /// B's steps, in B's order.
    pub steps: Vec<PlannedStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn in_flight(status: StepStatus) -> bool {
    matches!(
        status,
        StepStatus::Running | StepStatus::Waiting | StepStatus::Compensating
    )
}

/// Whether the step has done something its compensation would undo.
fn owes_compensation(cs: &CompiledStep, st: &StepState) -> bool {
    if cs.compensation.is_none() {
        return false;
    }
    let items_done = st.fan.as_ref().is_some_and(|f| f.succeeded > 0);
    match st.status {
        StepStatus::Succeeded => st.fan.is_none() || items_done,
        StepStatus::Pending => false,
        _ => items_done,
    }
}

/// Whether a step's status says it has begun (its dependencies were all done then).
fn started(st: &StepState) -> bool {
    match st.status {
        StepStatus::Pending => false,
        // An operator may skip a step whose dependencies have not finished; a step skipped
        // because one failed is not run at all.
        StepStatus::Skipped => st.skip_reason == Some(SkipReason::Condition),
        _ => true,
    }
}

fn dep_ok(st: &StepState) -> bool {
    match st.status {
        StepStatus::Succeeded => true,
        StepStatus::Skipped => st.skip_reason != Some(SkipReason::UpstreamFailed),
        _ => false,
    }
}

fn items_source(cs: &CompiledStep) -> Option<&str> {
    cs.for_each.as_ref().map(|f| f.items.source())
}

/// Checks that `cp`, a run of `from`, can move to `to` under `mapping`: the plan, or every
/// reason it cannot.
pub fn check(
    from: &Version,
    to: &Version,
    cp: &Checkpoint,
    mapping: &Mapping,
) -> Result<Plan, Vec<Reason>> {
    let mut reasons = Vec::new();
    let exec = &cp.execution_id;

    // ---- the run -----------------------------------------------------------------------
    if from.workflow_id != to.workflow_id {
        reasons.push(Reason::run(format!(
            "version {} is of workflow `{}` and version {} of workflow `{}`; a run moves only \
             between versions of its own workflow",
            from.number, from.workflow_id, to.number, to.workflow_id
        )));
    }
    if cp.workflow_id != from.workflow_id {
        reasons.push(Reason::run(format!(
            "execution `{exec}` is a run of workflow `{}`, not of `{}`",
            cp.workflow_id, from.workflow_id
        )));
    }
    if cp.version != from.number {
        reasons.push(Reason::run(format!(
            "execution `{exec}` runs version {}, not version {}",
            cp.version, from.number
        )));
    }
    if from.number == to.number {
        reasons.push(Reason::run(format!(
            "execution `{exec}` would move from version {} to the same version",
            from.number
        )));
    }
    if !matches!(cp.status, RunStatus::Running | RunStatus::Paused) {
        reasons.push(Reason::run(format!(
            "execution `{exec}` is {}; only a running or paused run can move",
            cp.status.as_str()
        )));
    }

    if let Err(problems) = to.check_input(&cp.input) {
        for p in problems {
            reasons.push(Reason::run(format!(
                "the input of execution `{exec}` does not suit version {}: {}: {}",
                to.number, p.path, p.message
            )));
        }
    }

    // ---- the mapping -------------------------------------------------------------------
    for (a, b) in &mapping.renamed {
        if from.step_index(a).is_none() {
            reasons.push(Reason::step(
                a,
                format!(
                    "the mapping renames step `{a}`, which version {} does not have",
                    from.number
                ),
            ));
        }
        if to.step_index(b).is_none() {
            reasons.push(Reason::step(
                a,
                format!(
                    "the mapping renames step `{a}` to `{b}`, which version {} does not have",
                    to.number
                ),
            ));
        }
    }
    for a in &mapping.accept_lost_compensations {
        if from.step_index(a).is_none() {
            reasons.push(Reason::step(
                a,
                format!(
                    "the mapping accepts losing the compensation of step `{a}`, which version {} \
                     does not have",
                    from.number
                ),
            ));
        }
    }

    // Where each step of A goes: B's id, or dropped.
    let target = |a: &str| -> Option<String> {
        match mapping.renamed.get(a) {
            Some(b) => to.step_index(b).map(|_| b.clone()),
            None => to.step_index(a).map(|_| a.to_owned()),
        }
    };
    let states: HashMap<&str, &StepState> = cp.steps.iter().map(|s| (s.id.as_str(), s)).collect();
    // B id -> A id.
    let mut carried: BTreeMap<String, String> = BTreeMap::new();
    let mut summary = Summary {
        from: from.number,
        to: to.number,
        ..Summary::default()
    };
    for cs_a in from.steps() {
        let a = cs_a.id.as_str();
        let Some(st) = states.get(a).copied() else {
            reasons.push(Reason::step(
                a,
                format!(
                    "execution `{exec}` has no state for step `{a}` of version {}",
                    from.number
                ),
            ));
            continue;
        };
        let status = st.status.as_str();
        let Some(b) = target(a) else {
            summary.dropped.push(a.to_owned());
            if in_flight(st.status) {
                reasons.push(Reason::step(
                    a,
                    format!(
                        "step `{a}` is {status} and version {} drops it; move the run once it \
                         has finished",
                        to.number
                    ),
                ));
            } else if owes_compensation(cs_a, st) {
                lost_compensation(
                    &mut reasons,
                    &mut summary,
                    mapping,
                    a,
                    format!(
                        "step `{a}` has a compensation and something to undo, and version {} drops it",
                        to.number
                    ),
                );
            }
            continue;
        };
        if let Some(other) = carried.insert(b.clone(), a.to_owned()) {
            reasons.push(Reason::step(
                a,
                format!(
                    "steps `{other}` and `{a}` would both become step `{b}` of version {}",
                    to.number
                ),
            ));
        }
        if b != a {
            summary.renamed.insert(a.to_owned(), b.clone());
            if in_flight(st.status) {
                reasons.push(Reason::step(
                    a,
                    format!(
                        "step `{a}` is {status} and would be renamed to `{b}`, but its results \
                         and timers name `{a}`; move the run once it has finished"
                    ),
                ));
            }
            if st.status != StepStatus::Pending && to.step_index(a).is_some() {
                reasons.push(Reason::step(
                    a,
                    format!(
                        "step `{a}` is renamed to `{b}`, but version {} has another step named \
                         `{a}`; late results of the old step would reach it, so a run that has \
                         begun `{a}` cannot reuse its id",
                        to.number
                    ),
                ));
            }
        }
        let Some(cs_b) = to.step_index(&b).map(|j| &to.steps()[j]) else {
            continue;
        };
        if in_flight(st.status) && cs_a.action != cs_b.action {
            reasons.push(Reason::step(
                a,
                format!(
                    "step `{a}` is {status} with action `{}`, and version {} gives it action `{}`; \
                     move the run once it has finished",
                    cs_a.action.as_deref().unwrap_or("none"),
                    to.number,
                    cs_b.action.as_deref().unwrap_or("none")
                ),
            ));
        }
        if st.status != StepStatus::Pending {
            if items_source(cs_a) != items_source(cs_b) {
                let shape = |cs: &CompiledStep| match items_source(cs) {
                    Some(src) => format!("a for_each over `{src}`"),
                    None => "no for_each".to_owned(),
                };
                reasons.push(Reason::step(
                    a,
                    format!(
                        "step `{a}` is {status} as {}, and version {} gives it {}; its items \
                         could not be followed or undone",
                        shape(cs_a),
                        to.number,
                        shape(cs_b)
                    ),
                ));
            }
            if cs_a.repeat.is_some() != cs_b.repeat.is_some() {
                let shape = |cs: &CompiledStep| {
                    if cs.repeat.is_some() {
                        "a loop"
                    } else {
                        "no loop"
                    }
                };
                reasons.push(Reason::step(
                    a,
                    format!(
                        "step `{a}` is {status} with {}, and version {} gives it {}; its \
                         iterations could not be followed or undone",
                        shape(cs_a),
                        to.number,
                        shape(cs_b)
                    ),
                ));
            }
        }
        if cs_b.compensation.is_none() && owes_compensation(cs_a, st) {
            lost_compensation(
                &mut reasons,
                &mut summary,
                mapping,
                a,
                format!(
                    "step `{a}` has something to undo, and version {} gives `{b}` no compensation",
                    to.number
                ),
            );
        }
    }

    // ---- B's steps ---------------------------------------------------------------------
    for b in mapping.supplied_outputs.keys() {
        if to.step_index(b).is_none() {
            reasons.push(Reason::step(
                b,
                format!(
                    "the mapping supplies an output for step `{b}`, which version {} does not \
                     have",
                    to.number
                ),
            ));
        } else if let Some(a) = carried.get(b) {
            reasons.push(Reason::step(
                b,
                format!(
                    "the mapping supplies an output for step `{b}`, but it is step `{a}` of \
                     version {}; outputs are supplied only for steps version {} adds",
                    from.number, to.number
                ),
            ));
        }
    }
    let mut steps = Vec::with_capacity(to.steps().len());
    // The status each step of B will have, for the order check.
    let mut layout: Vec<StepState> = Vec::with_capacity(to.steps().len());
    for cs_b in to.steps() {
        let b = cs_b.id.clone();
        let (origin, st) = if let Some(a) = carried.get(&b) {
            let st = states.get(a.as_str()).map_or_else(
                || StepState::new(&b),
                |s| StepState {
                    id: b.clone(),
                    ..(*s).clone()
                },
            );
            (Origin::Carried { step: a.clone() }, st)
        } else if let Some(output) = mapping.supplied_outputs.get(&b) {
            summary.supplied.push(b.clone());
            let st = StepState {
                status: StepStatus::Succeeded,
                output: Some(output.clone()),
                ..StepState::new(&b)
            };
            (
                Origin::Supplied {
                    output: output.clone(),
                },
                st,
            )
        } else {
            summary.added.push(b.clone());
            (Origin::Added, StepState::new(&b))
        };
        steps.push(PlannedStep { id: b, origin });
        layout.push(st);
    }
    // The order: whatever has begun comes after dependencies that are done.
    let mut before_frontier: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (j, cs_b) in to.steps().iter().enumerate() {
        if !started(&layout[j]) {
            continue;
        }
        for &d in &cs_b.deps {
            if dep_ok(&layout[d]) {
                continue;
            }
            let dep = to.steps()[d].id.as_str();
            if matches!(steps[d].origin, Origin::Added) {
                before_frontier.entry(dep).or_default().push(&cs_b.id);
            } else {
                let name = match &steps[j].origin {
                    Origin::Carried { step } if step != &cs_b.id => {
                        format!("`{step}` (`{}` in version {})", cs_b.id, to.number)
                    }
                    _ => format!("`{}`", cs_b.id),
                };
                reasons.push(Reason::step(
                    &cs_b.id,
                    format!(
                        "step {name} is {}, but in version {} it depends on `{dep}`, which is \
                         {}; the run would be out of order",
                        layout[j].status.as_str(),
                        to.number,
                        layout[d].status.as_str()
                    ),
                ));
            }
        }
    }
    for (dep, after) in before_frontier {
        let after: Vec<String> = after.iter().map(|s| format!("`{s}`")).collect();
        reasons.push(Reason::step(
            dep,
            format!(
                "step `{dep}` is new in version {} and comes before {}, which the run has already \
                 begun; supply its output in supplied_outputs",
                to.number,
                after.join(", ")
            ),
        ));
    }

    if reasons.is_empty() {
        Ok(Plan {
            execution_id: cp.execution_id.clone(),
            seq: cp.seq,
            summary,
            steps,
            note: mapping.note.clone(),
        })
    } else {
        Err(reasons)
    }
}

fn lost_compensation(
    reasons: &mut Vec<Reason>,
    summary: &mut Summary,
    mapping: &Mapping,
    a: &str,
    why: String,
) {
    if mapping.accept_lost_compensations.iter().any(|s| s == a) {
        summary.lost_compensations.push(a.to_owned());
    } else {
        reasons.push(Reason::step(
            a,
            format!(
                "{why}; a rollback could no longer undo it (list `{a}` in \
                 accept_lost_compensations to accept that)"
            ),
        ));
    }
}

/// Carries out `plan` on `cp`, the checkpoint it was made for: the checkpoint laid out on the
/// new version's steps, and the history entry recording the move. Refused when the run has
/// moved on since the plan was made (check it again).
pub fn apply(
    plan: Plan,
    mut cp: Checkpoint,
    now: DateTime<Utc>,
    event_id: &str,
) -> Result<(Checkpoint, HistoryEntry), Reason> {
    if cp.execution_id != plan.execution_id || cp.seq != plan.seq || cp.version != plan.summary.from
    {
        return Err(Reason::run(format!(
            "the plan is for execution `{}` at seq {} on version {}, and the checkpoint is \
             execution `{}` at seq {} on version {}; check the run again",
            plan.execution_id, plan.seq, plan.summary.from, cp.execution_id, cp.seq, cp.version
        )));
    }
    let mut old: HashMap<String, StepState> = std::mem::take(&mut cp.steps)
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let mut changes = Vec::new();
    let mut steps = Vec::with_capacity(plan.steps.len());
    for ps in plan.steps {
        let st = match ps.origin {
            Origin::Carried { step } => {
                let mut st = old.remove(&step).unwrap_or_else(|| StepState::new(&ps.id));
                st.id = ps.id;
                // The item list is evaluated again under the new version.
                if let Some(fan) = st.fan.as_mut() {
                    fan.items = ItemsCache::default();
                }
                st
            }
            Origin::Supplied { output } => {
                changes.push(Change::Step {
                    step: ps.id.clone(),
                    item: None,
                    from: StepStatus::Pending,
                    to: StepStatus::Succeeded,
                    attempt: 0,
                    error: None,
                });
                StepState {
                    status: StepStatus::Succeeded,
                    output: Some(output),
                    started_at: Some(now),
                    finished_at: Some(now),
                    ..StepState::new(&ps.id)
                }
            }
            Origin::Added => StepState::new(&ps.id),
        };
        steps.push(st);
    }
    cp.steps = steps;
    let summary = plan.summary;
    let rename = |id: &mut String| {
        if let Some(b) = summary.renamed.get(id.as_str()) {
            id.clone_from(b);
        }
    };
    if let Some(at) = cp.paused_at.as_mut() {
        rename(at);
    }
    if cp
        .paused_at
        .as_ref()
        .is_some_and(|at| summary.dropped.contains(at))
    {
        cp.paused_at = None;
    }
    if let Some(e) = cp.error.as_mut() {
        rename(&mut e.step);
    }
    if let Some(e) = cp.compensation_error.as_mut() {
        rename(&mut e.step);
    }
    if let Some(to) = cp.rollback.as_mut().and_then(|r| r.to.as_mut()) {
        rename(to);
    }
    cp.version = summary.to;
    cp.seq += 1;
    cp.updated_at = now;
    let event = Event::new(
        event_id,
        EventKind::Migrated {
            from: summary.from,
            to: summary.to,
            renamed: summary.renamed,
            dropped: summary.dropped,
            supplied: summary.supplied,
            note: plan.note,
        },
    );
    let entry = HistoryEntry {
        seq: cp.seq,
        at: now,
        seed: 0,
        event,
        changes,
    };
    Ok((cp, entry))
}

/// Checks every run in `checkpoints` against the move, changing nothing: per execution id,
/// what the move would do or every reason it cannot.
pub fn dry_run<'c>(
    from: &Version,
    to: &Version,
    checkpoints: impl IntoIterator<Item = &'c Checkpoint>,
    mapping: &Mapping,
) -> Vec<(String, Result<Summary, Vec<Reason>>)> {
    checkpoints
        .into_iter()
        .map(|cp| {
            (
                cp.execution_id.clone(),
                check(from, to, cp, mapping).map(|p| p.summary),
            )
        })
        .collect()
}
