//! Workflow dependencies on the local host: who depends on a workflow (read from the active
//! versions), where a blocking dependency stands for a correlation key, what a finished run
//! starts, and the refusal of a cycle at publish time.
//!
//! Semantics, with B declaring a dependency on A:
//! - blocking: a start of B for key K is met once a run of A for K has completed (`completed`
//!   or `completed_with_errors`). Until then B waits in `waiting_for_dependency`. When no run
//!   of A for K is left unfinished and none completed (they failed, were compensated or
//!   cancelled), B ends `cancelled` with a `DependencyFailed` error naming A's run.
//! - parallel: creating a run of A starts a run of B on A's input (or the dependency's input
//!   template), with the idempotency key `<A's execution>/parallel/<B>`.
//! - conditional: a run of A that completes starts a run of B when `when` holds over its
//!   `input` and `output` (the outputs of its steps, by step id), with the key
//!   `<A's execution>/conditional/<B>`.

use std::collections::HashMap;
use std::sync::Arc;

use eventflow_engine::{
    Checkpoint, CompiledDependency, Definition, DependencyKind, RunStatus, Version,
};
use eventflow_ports::versions::current_alias;
use eventflow_ports::{DependentStart, StoreError, StoreResult, VersionStore};
use serde_json::{Map, Value};

use crate::runtime::Runtime;
use crate::store::LocalStore;

/// Why a definition was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Its dependencies, with those of the other workflows' latest versions, make a cycle.
    #[error(
        "publishing {workflow} would make a cycle of workflow dependencies: {}; a run would start or wait for itself forever, so remove one of these blocking or parallel dependencies",
        .cycle.join(" → ")
    )]
    Cycle {
        workflow: String,
        /// The workflows along the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Refuses `def` when it closes a cycle with the latest versions of the other workflows.
pub(crate) async fn check_cycles(store: &LocalStore, def: &Definition) -> Result<(), PublishError> {
    match eventflow_ports::versions::dependency_cycle(store, def).await? {
        Some(cycle) => Err(PublishError::Cycle {
            workflow: def.id.clone(),
            cycle,
        }),
        None => Ok(()),
    }
}

/// A workflow that depends on another, through the active version's dependency `index`.
pub(crate) struct Dependent {
    version: Arc<Version>,
    index: usize,
}

impl Dependent {
    fn dependency(&self) -> &CompiledDependency {
        &self.version.dependencies()[self.index]
    }
}

/// For each workflow, the workflows whose active version depends on it.
#[derive(Default)]
pub(crate) struct Dependents(HashMap<String, Vec<Dependent>>);

impl Dependents {
    /// Reads the active version of every workflow.
    pub(crate) async fn load(rt: &Runtime) -> StoreResult<Dependents> {
        let store = rt.store();
        let mut map: HashMap<String, Vec<Dependent>> = HashMap::new();
        for id in store.workflows().await? {
            let alias = match current_alias(store, &id).await {
                Ok(alias) => alias,
                Err(e) => {
                    tracing::warn!(workflow = id, error = %e, "no active version; its dependencies are ignored");
                    continue;
                }
            };
            let version = match rt.version(&id, alias.active).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(workflow = id, error = %e, "its dependencies are ignored");
                    continue;
                }
            };
            for (index, dep) in version.dependencies().iter().enumerate() {
                map.entry(dep.workflow.clone())
                    .or_default()
                    .push(Dependent {
                        version: Arc::clone(&version),
                        index,
                    });
            }
        }
        Ok(Dependents(map))
    }

    fn of(&self, workflow: &str, kind: DependencyKind) -> impl Iterator<Item = &Dependent> {
        self.0
            .get(workflow)
            .into_iter()
            .flatten()
            .filter(move |d| d.dependency().kind == kind)
    }

    /// The workflows that wait (blocking) for runs of `workflow`.
    pub(crate) fn blocked_by<'d>(&'d self, workflow: &str) -> impl Iterator<Item = &'d str> {
        self.of(workflow, DependencyKind::Blocking)
            .map(|d| d.version.workflow_id.as_str())
    }

    /// The runs that creating the run `cp` starts (parallel dependencies).
    pub(crate) fn on_start(&self, cp: &Checkpoint) -> Vec<DependentStart> {
        self.of(&cp.workflow_id, DependencyKind::Parallel)
            .filter_map(|d| start(d, cp, "parallel", None))
            .collect()
    }

    /// The runs that the run `cp`, which just finished, starts (conditional dependencies).
    pub(crate) fn on_finish(&self, cp: &Checkpoint) -> Vec<DependentStart> {
        if !matches!(
            cp.status,
            RunStatus::Completed | RunStatus::CompletedWithErrors
        ) {
            return Vec::new();
        }
        let output = run_output(cp);
        self.of(&cp.workflow_id, DependencyKind::Conditional)
            .filter(|d| match d.dependency().holds(&cp.input, Some(&output)) {
                Ok(holds) => holds,
                Err(e) => {
                    tracing::warn!(
                        execution_id = cp.execution_id,
                        dependent = d.version.workflow_id,
                        error = %e,
                        "a dependency's condition failed; the dependent workflow is not started"
                    );
                    false
                }
            })
            .filter_map(|d| start(d, cp, "conditional", Some(&output)))
            .collect()
    }
}

fn start(
    d: &Dependent,
    cp: &Checkpoint,
    how: &str,
    output: Option<&Value>,
) -> Option<DependentStart> {
    let workflow = d.version.workflow_id.clone();
    match d.dependency().input_for(&cp.input, output) {
        Ok(input) => Some(DependentStart {
            key: format!("{}/{how}/{workflow}", cp.execution_id),
            workflow,
            input,
        }),
        Err(e) => {
            tracing::warn!(
                execution_id = cp.execution_id,
                dependent = workflow,
                error = %e,
                "a dependency's input failed; the dependent workflow is not started"
            );
            None
        }
    }
}

/// A finished run's output as dependencies see it: the output of each step that has one.
pub(crate) fn run_output(cp: &Checkpoint) -> Value {
    let steps: Map<String, Value> = cp
        .steps
        .iter()
        .filter_map(|s| s.output.clone().map(|o| (s.id.clone(), o)))
        .collect();
    Value::Object(steps)
}

/// Where a blocking dependency on `workflow` stands for a correlation key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Standing {
    /// A run completed: it, and whether with errors.
    Met(String, RunStatus),
    /// No run finished yet: the one under way, if any.
    Pending(Option<String>),
    /// Every run ended without completing: the latest, and how it ended.
    Failed(String, RunStatus),
}

pub(crate) async fn standing(
    store: &LocalStore,
    workflow: &str,
    key: &str,
) -> StoreResult<Standing> {
    let runs = store.correlated(workflow, key).await?;
    if let Some((id, status)) = runs
        .iter()
        .find(|(_, s)| matches!(s, RunStatus::Completed | RunStatus::CompletedWithErrors))
    {
        return Ok(Standing::Met(id.clone(), *status));
    }
    if let Some((id, _)) = runs.iter().rev().find(|(_, s)| !s.is_terminal()) {
        return Ok(Standing::Pending(Some(id.clone())));
    }
    Ok(match runs.last() {
        Some((id, status)) => Standing::Failed(id.clone(), *status),
        None => Standing::Pending(None),
    })
}
