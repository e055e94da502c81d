//! `records.put`: creates or replaces a record.
//!
//! Input `{collection, key, record}` (`record` an object). Output
//! `{collection, key, previous}`, `previous` being the record it replaced or `null`.
//! Compensation: puts `previous` back, or deletes the record if there was none.

use async_trait::async_trait;
use eventflow_ports::{Action, ActionContext, ActionError};
use serde_json::{Value, json};

use super::{Target, capture, record, undo};
use crate::input::Fields;

pub const NAME: &str = "records.put";
const FIELDS: &[&str] = &["collection", "key", "record"];

#[derive(Debug, Clone, Copy, Default)]
pub struct RecordsPut;

#[async_trait]
impl Action for RecordsPut {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn execute(&self, ctx: &ActionContext, input: &Value) -> Result<Value, ActionError> {
        let f = Fields::new(NAME, input, FIELDS)?;
        let t = Target::parse(&f)?;
        let value = record(
            f.req(
                "record",
                "the record to store, an object such as {\"name\": \"...\"}",
            )?,
            "$.record",
        )?;
        let (_, previous) = capture(ctx, NAME, &t).await?;
        t.put(ctx, value).await?;
        Ok(json!({"collection": t.collection, "key": t.key, "previous": previous}))
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
