//! Running one task (an action attempt or a compensation) and turning its outcome into the
//! event that answers it: the same for every host.

use std::collections::HashMap;
use std::sync::Arc;

use eventflow_engine::{Command, Event, EventKind};
use serde_json::Value;

use crate::{Action, ActionContext, ActionError, Outbox, RecordStore, Task, Workflows};

/// What an action reaches the world through.
#[derive(Clone)]
pub struct World {
    pub records: Arc<dyn RecordStore>,
    pub outbox: Arc<dyn Outbox>,
    pub workflows: Arc<dyn Workflows>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").finish_non_exhaustive()
    }
}

/// Runs a task's action (or its compensation) once.
pub async fn run(
    task: &Task,
    actions: &HashMap<&'static str, Arc<dyn Action>>,
    world: &World,
) -> Result<Value, ActionError> {
    let (step, item, attempt) = match &task.command {
        Command::RunStep {
            step,
            item,
            attempt,
            ..
        }
        | Command::RunCompensation {
            step,
            item,
            attempt,
            ..
        } => (step.clone(), *item, *attempt),
        _ => {
            return Err(ActionError::terminal(
                "NotATask",
                "only steps and compensations run as tasks",
            ));
        }
    };
    let ctx = ActionContext {
        execution_id: task.execution_id.clone(),
        workflow_id: task.workflow_id.clone(),
        step,
        item,
        attempt,
        key: task.key().to_owned(),
        records: Arc::clone(&world.records),
        outbox: Arc::clone(&world.outbox),
        workflows: Arc::clone(&world.workflows),
    };
    let find = |name: &str| {
        actions.get(name).cloned().ok_or_else(|| {
            ActionError::terminal("UnknownAction", format!("this host has no action `{name}`"))
        })
    };
    match &task.command {
        Command::RunStep { action, input, .. } => find(action)?.execute(&ctx, input).await,
        Command::RunCompensation {
            action,
            builtin,
            input,
            output,
            ..
        } => {
            let a = find(action)?;
            if *builtin {
                a.compensate(&ctx, input, output.as_ref()).await
            } else {
                a.execute(&ctx, input).await
            }
        }
        _ => Err(ActionError::terminal(
            "NotATask",
            "only steps and compensations run as tasks",
        )),
    }
}

/// The event answering a task, from its outcome; its id is derived from the attempt's key, so
/// the same answer sent twice is one event. `None` for a command that is no task.
pub fn answer(task: &Task, outcome: Result<Value, ActionError>) -> Option<Event> {
    let id = format!("{}/answer", task.key());
    let kind = match (&task.command, outcome) {
        (
            Command::RunStep {
                step,
                item,
                attempt,
                ..
            },
            Ok(output),
        ) => EventKind::StepSucceeded {
            step: step.clone(),
            item: *item,
            attempt: *attempt,
            output,
        },
        (
            Command::RunStep {
                step,
                item,
                attempt,
                ..
            },
            Err(error),
        ) => EventKind::StepFailed {
            step: step.clone(),
            item: *item,
            attempt: *attempt,
            error: error.into(),
        },
        (
            Command::RunCompensation {
                step,
                item,
                attempt,
                ..
            },
            Ok(_),
        ) => EventKind::CompensationSucceeded {
            step: step.clone(),
            item: *item,
            attempt: *attempt,
        },
        (
            Command::RunCompensation {
                step,
                item,
                attempt,
                ..
            },
            Err(error),
        ) => EventKind::CompensationFailed {
            step: step.clone(),
            item: *item,
            attempt: *attempt,
            error: error.into(),
        },
        (_, _) => return None,
    };
    Some(Event::new(id, kind))
}
