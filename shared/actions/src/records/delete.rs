//! `records.delete`: removes a record.
//!
//! Input `{collection, key}`. Output `{collection, key, deleted, previous}`: whether this step
//! removed a record, and that record (`null` if there was none; deleting nothing succeeds).
//! Compensation: puts `previous` back.

use async_trait::async_trait;
use eventflow_ports::{Action, ActionContext, ActionError};
use serde_json::{Value, json};

use super::{Target, capture, undo};
use crate::input::Fields;

pub const NAME: &str = "records.delete";
const FIELDS: &[&str] = &["collection", "key"];

#[derive(Debug, Clone, Copy, Default)]
pub struct RecordsDelete;

#[async_trait]
impl Action for RecordsDelete {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn execute(&self, ctx: &ActionContext, input: &Value) -> Result<Value, ActionError> {
        let f = Fields::new(NAME, input, FIELDS)?;
        let t = Target::parse(&f)?;
        let (current, previous) = capture(ctx, NAME, &t).await?;
        if current.is_some() {
            t.delete(ctx).await?;
        }
        Ok(json!({
            "collection": t.collection,
            "key": t.key,
            "deleted": !previous.is_null(),
            "previous": previous,
        }))
    }

    async fn compensate(
        &self,
        ctx: &ActionContext,
        input: &Value,
        output: Option<&Value>,
    ) -> Result<Value, ActionError> {
        undo(ctx, NAME, FIELDS, input, output).await
    }
}
