//! `fail`: fails as told, for demonstrations and tests of retries and rollbacks.
//!
//! Input `{message?, retryable?, times?}`: attempts `1..=times` fail with the error `Fail`
//! (retryable if `retryable`, default `false`), later attempts succeed with `{attempt}`;
//! without `times` every attempt fails; `times: 0` succeeds at once. Nothing to undo.

use async_trait::async_trait;
use eventflow_ports::{Action, ActionContext, ActionError};
use serde_json::{Value, json};

use crate::input::Fields;

pub const NAME: &str = "fail";
/// The name of the error it fails with.
pub const ERROR: &str = "Fail";
const FIELDS: &[&str] = &["message", "retryable", "times"];

#[derive(Debug, Clone, Copy, Default)]
pub struct Fail;

#[async_trait]
impl Action for Fail {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn execute(&self, ctx: &ActionContext, input: &Value) -> Result<Value, ActionError> {
        let f = Fields::new(NAME, input, FIELDS)?;
        let message = f
            .opt_str("message", "the error message to fail with")?
            .unwrap_or("failed as told");
        let retryable = f.opt_bool("retryable")?.unwrap_or(false);
        let fails = match f.opt_count("times")? {
            Some(times) => u64::from(ctx.attempt) <= times,
            None => true,
        };
        match (fails, retryable) {
            (false, _) => Ok(json!({"attempt": ctx.attempt})),
            (true, true) => Err(ActionError::retryable(ERROR, message)),
            (true, false) => Err(ActionError::terminal(ERROR, message)),
        }
    }
}
