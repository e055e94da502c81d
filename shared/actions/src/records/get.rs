//! `records.get`: reads a record.
//!
//! Input `{collection, key}`. Output `{found, record}`, `record` being `null` when not found
//! (not an error: templates branch on `found`). Nothing to undo.

use async_trait::async_trait;
use eventflow_ports::{Action, ActionContext, ActionError};
use serde_json::{Value, json};

use super::Target;
use crate::input::Fields;

pub const NAME: &str = "records.get";
const FIELDS: &[&str] = &["collection", "key"];

#[derive(Debug, Clone, Copy, Default)]
pub struct RecordsGet;

#[async_trait]
impl Action for RecordsGet {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn execute(&self, ctx: &ActionContext, input: &Value) -> Result<Value, ActionError> {
        let f = Fields::new(NAME, input, FIELDS)?;
        let t = Target::parse(&f)?;
        let record = t.get(ctx).await?;
        Ok(json!({"found": record.is_some(), "record": record}))
    }
}
