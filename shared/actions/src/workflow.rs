//! `workflow.start`: starts a run of another workflow.
//!
//! Input `{workflow, input?, idempotency_key?}`: the workflow's id, its input (default `{}`),
//! and the key that makes the start happen once. Output `{execution_id, workflow,
//! idempotency_key}`.
//!
//! The key defaults to the attempt's key without its attempt number (`execution/step/item`),
//! so a retry after a start whose answer was lost finds the run the first attempt started
//! instead of starting a second one. Compensation cancels that run (the execution id comes
//! from the undo journal, `src/journal.rs`, else from the output); a run already finished is
//! left as it is, and a redelivered compensation does nothing.

use async_trait::async_trait;
use eventflow_ports::{Action, ActionContext, ActionError};
use serde_json::{Value, json};

use crate::input::{Fields, excerpt, has_control, invalid};
use crate::journal::{Journal, State, Undo};

pub const NAME: &str = "workflow.start";
const FIELDS: &[&str] = &["workflow", "input", "idempotency_key"];
const MAX_KEY_BYTES: usize = 512;

#[derive(Debug, Clone, Copy, Default)]
pub struct WorkflowStart;

#[async_trait]
impl Action for WorkflowStart {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn execute(&self, ctx: &ActionContext, input: &Value) -> Result<Value, ActionError> {
        let f = Fields::new(NAME, input, FIELDS)?;
        let workflow = f.str(
            "workflow",
            "the id of the workflow to start, such as \"attendee-nurture\"",
        )?;
        if has_control(workflow) || workflow.contains(char::is_whitespace) {
            return Err(invalid(
                "$.workflow",
                format!(
                    "`{}` is not a workflow id; use the `id` of a published workflow, such as \
                     \"attendee-nurture\"",
                    excerpt(workflow, 80)
                ),
            ));
        }
        let run_input = f.opt("input").cloned().unwrap_or_else(|| json!({}));
        let key = match f.opt_str("idempotency_key", "a key that identifies this start")? {
            Some(key) if has_control(key) || key.len() > MAX_KEY_BYTES => {
                return Err(invalid(
                    "$.idempotency_key",
                    format!(
                        "a key is one line of at most {MAX_KEY_BYTES} bytes, such as \
                         \"attendee-nurture/berlin-2026\""
                    ),
                ));
            }
            Some(key) => key.to_owned(),
            None => crate::run_key(ctx).to_owned(),
        };
        let execution_id = ctx.workflows.start(workflow, &run_input, &key).await?;
        let data = json!({"execution_id": execution_id, "workflow": workflow});
        Journal::of_attempt(ctx)
            .write(NAME, State::Applied, &data)
            .await?;
        tracing::info!(key = %ctx.key, workflow, %execution_id, "workflow started");
        Ok(json!({"execution_id": execution_id, "workflow": workflow, "idempotency_key": key}))
    }

    async fn compensate(
        &self,
        ctx: &ActionContext,
        _input: &Value,
        output: Option<&Value>,
    ) -> Result<Value, ActionError> {
        let journal = Journal::of_step(ctx);
        let from_output = output
            .and_then(|o| o.get("execution_id"))
            .filter(|id| id.is_string())
            .map(|id| json!({"execution_id": id}));
        let data = match journal.undo(NAME, |_| true, from_output).await? {
            Undo::With(data) => data,
            Undo::Done(data) => {
                return Ok(json!({"cancelled": data["execution_id"], "already_compensated": true}));
            }
        };
        let Some(execution_id) = data.get("execution_id").and_then(Value::as_str) else {
            return Err(ActionError::terminal(
                "NothingToUndo",
                format!(
                    "no execution id recorded for step `{}`; cancel the run it started by hand",
                    ctx.step
                ),
            ));
        };
        ctx.workflows.cancel(execution_id).await?;
        journal.write(NAME, State::Compensated, &data).await?;
        tracing::info!(key = %ctx.key, execution_id, "started run cancelled");
        Ok(json!({"cancelled": execution_id, "already_compensated": false}))
    }
}
