//! The `records.*` actions: domain records (events, sponsors, attendees, deliverables, …) in
//! the host's [`RecordStore`](eventflow_ports::RecordStore), one action per module.
//!
//! Every input names a `collection` (an identifier: a letter, then letters, digits, `_` or `-`,
//! at most 64) and a `key` (any non-blank text without control characters, at most 1024
//! bytes, e.g. `rust-nation-berlin-2026/oxide-tools`).
//!
//! The writing actions capture the record as it was before the step in the undo
//! journal (`src/journal.rs`) and report it as `previous`; their compensations all do the same
//! thing: put `previous` back, or delete the record when there was none.

pub mod delete;
pub mod get;
pub mod put;
pub mod update;

use eventflow_ports::{ActionContext, ActionError};
use serde_json::{Value, json};

use crate::input::{Fields, has_control, invalid, kind, non_blank};
use crate::journal::{Journal, State, Undo};

/// The largest record written, serialized: DynamoDB's 400 KB item limit, with room for the
/// key and attributes.
pub const MAX_RECORD_BYTES: usize = 256 * 1024;
const MAX_KEY_BYTES: usize = 1024;
const MAX_COLLECTION_CHARS: usize = 64;

/// Where a record lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) collection: String,
    pub(crate) key: String,
}

impl Target {
    pub(crate) fn parse(f: &Fields<'_>) -> Result<Target, ActionError> {
        let collection = f.req(
            "collection",
            "the collection of the record, such as \"events\" or \"sponsors\"",
        )?;
        let collection = non_blank(
            collection,
            "$.collection",
            "a collection name such as \"events\"",
        )?;
        if !is_identifier(collection) {
            return Err(invalid(
                "$.collection",
                format!(
                    "`{}` is not a collection name; use a letter followed by letters, digits, \
                     `_` or `-` (at most {MAX_COLLECTION_CHARS}), such as \"sponsorship_slots\"",
                    crate::input::excerpt(collection, 70)
                ),
            ));
        }
        let key = f.req("key", "the key of the record, such as the event's id")?;
        let key = non_blank(
            key,
            "$.key",
            "the record's key as text, such as \"berlin-2026\"",
        )?;
        if has_control(key) || key.len() > MAX_KEY_BYTES {
            return Err(invalid(
                "$.key",
                format!(
                    "a key must be text without line breaks or control characters, at most \
                     {MAX_KEY_BYTES} bytes; got {} bytes",
                    key.len()
                ),
            ));
        }
        Ok(Target {
            collection: collection.to_owned(),
            key: key.to_owned(),
        })
    }

    fn same(&self, data: &Value) -> bool {
        data["collection"] == self.collection.as_str() && data["key"] == self.key.as_str()
    }

    async fn get(&self, ctx: &ActionContext) -> Result<Option<Value>, ActionError> {
        ctx.records
            .get(&self.collection, &self.key)
            .await
            .map_err(ActionError::store)
    }

    async fn put(&self, ctx: &ActionContext, value: &Value) -> Result<(), ActionError> {
        ctx.records
            .put(&self.collection, &self.key, value)
            .await
            .map_err(ActionError::store)?;
        Ok(())
    }

    async fn delete(&self, ctx: &ActionContext) -> Result<(), ActionError> {
        ctx.records
            .delete(&self.collection, &self.key)
            .await
            .map_err(ActionError::store)?;
        Ok(())
    }
}

/// A collection name: a letter, then letters, digits, `_` or `-`.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= MAX_COLLECTION_CHARS
}

/// A record to write: an object, small enough for every host's store.
pub(crate) fn record<'a>(v: &'a Value, path: &str) -> Result<&'a Value, ActionError> {
    if !v.is_object() {
        return Err(invalid(
            path,
            format!(
                "a record is a JSON object such as {{\"name\": \"Rust Nation\"}}, got {}",
                kind(v)
            ),
        ));
    }
    let size = v.to_string().len();
    if size > MAX_RECORD_BYTES {
        return Err(invalid(
            path,
            format!(
                "the record is {size} bytes, more than the {MAX_RECORD_BYTES} allowed; keep \
                 large lists in records of their own"
            ),
        ));
    }
    Ok(v)
}

/// Reads the record as it is now, and the record as it was before this run of the step: the
/// one captured by an earlier attempt or delivery if there was one, else the current one,
/// which is journalled before anything changes.
pub(crate) async fn capture(
    ctx: &ActionContext,
    action: &str,
    t: &Target,
) -> Result<(Option<Value>, Value), ActionError> {
    let journal = Journal::of_attempt(ctx);
    let current = t.get(ctx).await?;
    let previous = match journal.applied(action, |d| t.same(d)).await? {
        Some(data) => data.get("previous").cloned().unwrap_or(Value::Null),
        None => {
            let previous = current.clone().unwrap_or(Value::Null);
            journal
                .write(action, State::Applied, &entry(t, &previous))
                .await?;
            previous
        }
    };
    Ok((current, previous))
}

fn entry(t: &Target, previous: &Value) -> Value {
    json!({"collection": t.collection, "key": t.key, "previous": previous})
}

/// The compensation of `records.put`, `records.update` and `records.delete`: put back the
/// record as it was before the step, or delete it if there was none.
pub(crate) async fn undo(
    ctx: &ActionContext,
    action: &'static str,
    known: &[&str],
    input: &Value,
    output: Option<&Value>,
) -> Result<Value, ActionError> {
    let f = Fields::new(action, input, known)?;
    let t = Target::parse(&f)?;
    let journal = Journal::of_step(ctx);
    let from_output = output
        .and_then(|o| o.get("previous"))
        .map(|previous| entry(&t, previous));
    let data = match journal.undo(action, |d| t.same(d), from_output).await? {
        Undo::With(data) => data,
        Undo::Done(data) => return Ok(undone(&t, &data, true)),
    };
    match data.get("previous").filter(|p| !p.is_null()) {
        Some(previous) => t.put(ctx, previous).await?,
        None => t.delete(ctx).await?,
    }
    journal.write(action, State::Compensated, &data).await?;
    Ok(undone(&t, &data, false))
}

fn undone(t: &Target, data: &Value, already: bool) -> Value {
    let previous = data.get("previous").cloned().unwrap_or(Value::Null);
    json!({
        "collection": t.collection,
        "key": t.key,
        "outcome": if previous.is_null() { "deleted" } else { "restored" },
        "record": previous,
        "already_compensated": already,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_names_are_identifiers() {
        for good in [
            "events",
            "sponsorship_slots",
            "survey-responses",
            "a",
            "Slots2",
        ] {
            assert!(is_identifier(good), "{good}");
        }
        for bad in [
            "",
            "_journal",
            "2slots",
            "events/x",
            "ev ents",
            "évents",
            &"x".repeat(65),
        ] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}
