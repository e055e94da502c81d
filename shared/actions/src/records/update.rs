//! `records.update`: changes some fields of a record.
//!
//! Input `{collection, key, changes}`: each field of the object `changes` replaces the field of
//! the same name (a shallow merge; a field set to `null` becomes `null`). A missing record is
//! created from `changes`, as DynamoDB's `UpdateItem` does. Output `{collection, key, record,
//! previous}`: the record after the change and before it (`null` if it was created).
//! Compensation: puts `previous` back, or deletes the record if the update created it.
//!
//! A redelivered update merges the same changes again (no effect) and still reports, and
//! undoes to, the record from before the first delivery (see `src/journal.rs`).

use async_trait::async_trait;
use eventflow_ports::{Action, ActionContext, ActionError};
use serde_json::{Map, Value, json};

use super::{Target, capture, record, undo};
use crate::input::{Fields, invalid, kind};

pub const NAME: &str = "records.update";
const FIELDS: &[&str] = &["collection", "key", "changes"];

#[derive(Debug, Clone, Copy, Default)]
pub struct RecordsUpdate;

#[async_trait]
impl Action for RecordsUpdate {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn execute(&self, ctx: &ActionContext, input: &Value) -> Result<Value, ActionError> {
        let f = Fields::new(NAME, input, FIELDS)?;
        let t = Target::parse(&f)?;
        let changes = f.req(
            "changes",
            "the fields to change, an object such as {\"status\": \"published\"}",
        )?;
        let Value::Object(changes) = changes else {
            return Err(invalid(
                "$.changes",
                format!(
                    "expected an object of the fields to change, such as {{\"status\": \
                     \"published\"}}, got {}",
                    kind(changes)
                ),
            ));
        };
        let (current, previous) = capture(ctx, NAME, &t).await?;
        let mut merged = match current {
            None => Map::new(),
            Some(Value::Object(fields)) => fields,
            Some(other) => {
                return Err(ActionError::terminal(
                    "RecordNotAnObject",
                    format!(
                        "{}/{} is {}, not an object, so it has no fields to update; replace it \
                         with records.put",
                        t.collection,
                        t.key,
                        kind(&other)
                    ),
                ));
            }
        };
        for (name, value) in changes {
            merged.insert(name.clone(), value.clone());
        }
        let merged = Value::Object(merged);
        record(&merged, "$.changes")?;
        t.put(ctx, &merged).await?;
        Ok(json!({
            "collection": t.collection,
            "key": t.key,
            "record": merged,
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
