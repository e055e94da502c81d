//! The undo journal: what a step changed, kept where its compensation can find it.
//!
//! A compensation is handed the step's input and, for a plain step, its output; an item of a
//! `for_each` gets no output, and a step whose output is shaped may have lost the field the
//! undo needs. So the actions that change something another action has to put back
//! (`records.*`, `workflow.start`) also write one journal entry per run of the step, in the
//! record store under the reserved collection [`COLLECTION`] (user collections must start with
//! a letter, so they cannot collide with it).
//!
//! An attempt journals under its key without the attempt number ([`Journal::of_attempt`]):
//! `execution/step/item` for a step, the same for every attempt and redelivery of it, and
//! `execution/step.compensate/item` when the action runs forward as a step's named
//! compensation, so that it never mistakes the step's entry for its own. A builtin
//! compensation looks up the entry of the step it undoes ([`Journal::of_step`]), built from
//! the context's execution, step and item: `execution/step/item` again.
//!
//! The first attempt to get there captures the state *before* the step; later attempts and
//! redeliveries reuse it, so an update delivered twice still knows the value from before the
//! first delivery. The compensation marks the entry compensated, so a redelivered compensation
//! does nothing, and a step run again after a selective rollback captures afresh.

use eventflow_ports::{ActionContext, ActionError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The reserved record collection of the journal.
pub(crate) const COLLECTION: &str = "_journal";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    /// The step ran (or is running); `data` says how to undo it.
    Applied,
    /// The compensation ran; nothing is left to undo.
    Compensated,
}

/// One entry: which action wrote it, its state, and what the action needs to undo itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) action: String,
    pub(crate) state: State,
    pub(crate) data: Value,
}

/// One journal entry, found through an action context.
#[derive(Debug)]
pub(crate) struct Journal<'c> {
    ctx: &'c ActionContext,
    key: String,
}

impl<'c> Journal<'c> {
    /// The entry of the attempt `ctx` runs (and of every retry of it).
    pub(crate) fn of_attempt(ctx: &'c ActionContext) -> Journal<'c> {
        Journal {
            ctx,
            key: crate::run_key(ctx).to_owned(),
        }
    }

    /// The entry of the step that the compensation `ctx` runs for.
    pub(crate) fn of_step(ctx: &'c ActionContext) -> Journal<'c> {
        let item = ctx.item.map_or_else(|| "-".to_owned(), |n| n.to_string());
        Journal {
            ctx,
            key: format!("{}/{}/{item}", ctx.execution_id, ctx.step),
        }
    }

    pub(crate) async fn load(&self) -> Result<Option<Entry>, ActionError> {
        let stored = self
            .ctx
            .records
            .get(COLLECTION, &self.key)
            .await
            .map_err(ActionError::store)?;
        stored
            .map(|v| {
                serde_json::from_value(v).map_err(|e| {
                    ActionError::terminal(
                        "JournalCorrupt",
                        format!(
                            "the undo journal entry `{}` cannot be read ({e}); \
                             compensate this step by hand",
                            self.key
                        ),
                    )
                })
            })
            .transpose()
    }

    /// The entry's `data` if a previous attempt of this run of `action` wrote it and it was not
    /// undone since, and `same` accepts it (it is about the same target).
    pub(crate) async fn applied(
        &self,
        action: &str,
        same: impl Fn(&Value) -> bool,
    ) -> Result<Option<Value>, ActionError> {
        Ok(self.load().await?.and_then(|e| {
            (e.action == action && e.state == State::Applied && same(&e.data)).then_some(e.data)
        }))
    }

    pub(crate) async fn write(
        &self,
        action: &str,
        state: State,
        data: &Value,
    ) -> Result<(), ActionError> {
        let entry = Entry {
            action: action.to_owned(),
            state,
            data: data.clone(),
        };
        let value = serde_json::to_value(&entry).map_err(|e| {
            ActionError::terminal("JournalCorrupt", format!("cannot encode the entry: {e}"))
        })?;
        self.ctx
            .records
            .put(COLLECTION, &self.key, &value)
            .await
            .map_err(ActionError::store)?;
        Ok(())
    }
}

/// What the compensation of a journalled action should do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Undo {
    /// Undo with this data (from the journal, or else the step's output).
    With(Value),
    /// Already compensated: a redelivery; do nothing and succeed.
    Done(Value),
}

impl Journal<'_> {
    /// Finds what to undo: the journal entry of `action` about the same target, or, when the
    /// journal has none (a loop step, whose attempts are journalled per iteration), the data
    /// `from_output` finds in the step's output.
    pub(crate) async fn undo(
        &self,
        action: &str,
        same: impl Fn(&Value) -> bool,
        from_output: Option<Value>,
    ) -> Result<Undo, ActionError> {
        match self.load().await? {
            Some(e) if e.action == action && same(&e.data) => match e.state {
                State::Applied => Ok(Undo::With(e.data)),
                State::Compensated => Ok(Undo::Done(e.data)),
            },
            _ => from_output.map(Undo::With).ok_or_else(|| {
                ActionError::terminal(
                    "NothingToUndo",
                    format!(
                        "`{action}` has no record of what step `{}` changed: no journal entry \
                         `{}` and no usable output; put the target right by hand",
                        self.ctx.step, self.key
                    ),
                )
            }),
        }
    }
}
