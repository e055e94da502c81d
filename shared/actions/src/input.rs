//! Reading an action's input: every field checked once, at the boundary, and every mistake a
//! terminal `InvalidInput` error that names the field as a JSON path (`$.to[1]`) and says what
//! to write instead. Input comes from user-written definitions, so nothing here panics on it.

use eventflow_ports::ActionError;
use serde_json::{Map, Value};

/// The name of every input error; retry policies never retry it (it is terminal).
pub const INVALID_INPUT: &str = "InvalidInput";

/// A terminal `InvalidInput` error: `path`, what is wrong, and what to do.
pub(crate) fn invalid(path: &str, message: impl std::fmt::Display) -> ActionError {
    ActionError::terminal(INVALID_INPUT, format!("{path}: {message}"))
}

/// What a JSON value is, for messages ("got a number").
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The fields of one action's input object. Unknown fields are refused, so a misspelt optional
/// field (`timout`) is reported instead of silently ignored. A field set to `null` counts as
/// absent, as an expression that finds nothing gives `null`.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    action: &'static str,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// Checks that `input` is an object whose fields are all among `known`.
    pub(crate) fn new(
        action: &'static str,
        input: &'a Value,
        known: &[&str],
    ) -> Result<Fields<'a>, ActionError> {
        let Value::Object(map) = input else {
            return Err(invalid(
                "$",
                format!(
                    "the input of `{action}` must be an object with the fields {}, got {}",
                    known.join(", "),
                    kind(input)
                ),
            ));
        };
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(invalid(
                &format!("$.{unknown}"),
                format!(
                    "`{action}` has no field `{unknown}`; its fields are {}",
                    known.join(", ")
                ),
            ));
        }
        Ok(Fields { action, map })
    }

    /// The field, unless absent or `null`.
    pub(crate) fn opt(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// A field that must be there.
    pub(crate) fn req(&self, name: &str, what: &str) -> Result<&'a Value, ActionError> {
        self.opt(name).ok_or_else(|| {
            invalid(
                &format!("$.{name}"),
                format!("`{}` needs `{name}`: {what}", self.action),
            )
        })
    }

    /// A string that must be there and not be blank.
    pub(crate) fn str(&self, name: &str, what: &str) -> Result<&'a str, ActionError> {
        let v = self.req(name, what)?;
        non_blank(v, &format!("$.{name}"), what)
    }

    /// A string that may be absent.
    pub(crate) fn opt_str(&self, name: &str, what: &str) -> Result<Option<&'a str>, ActionError> {
        self.opt(name)
            .map(|v| non_blank(v, &format!("$.{name}"), what))
            .transpose()
    }

    pub(crate) fn opt_bool(&self, name: &str) -> Result<Option<bool>, ActionError> {
        match self.opt(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(invalid(
                &format!("$.{name}"),
                format!("expected true or false, got {}", kind(v)),
            )),
        }
    }

    /// A whole number `>= 0` that may be absent.
    pub(crate) fn opt_count(&self, name: &str) -> Result<Option<u64>, ActionError> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) => whole_number(v).map(Some).ok_or_else(|| {
                invalid(
                    &format!("$.{name}"),
                    format!("expected a whole number of 0 or more, got {}", show(v)),
                )
            }),
        }
    }
}

/// `v` as a non-blank string, or an error at `path` saying what was expected.
pub(crate) fn non_blank<'v>(v: &'v Value, path: &str, what: &str) -> Result<&'v str, ActionError> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Ok(s),
        Value::String(_) => Err(invalid(path, format!("is empty; expected {what}"))),
        other => Err(invalid(
            path,
            format!("expected {what}, got {}", kind(other)),
        )),
    }
}

/// A JSON number that is a whole number `>= 0` (CEL may hand over `2.0` for `2`).
pub(crate) fn whole_number(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    // Exactly representable whole numbers only; the cast is exact below 2^53.
    (f >= 0.0 && f.fract() == 0.0 && f < 9_007_199_254_740_992.0).then_some(f as u64)
}

/// A short rendering of a value for a message: the value itself when small, its kind otherwise.
pub(crate) fn show(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= 40 {
        text
    } else {
        kind(v).to_owned()
    }
}

/// Whether `s` holds a control character (a newline in a header, a NUL in a key).
pub(crate) fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A short piece of `text` for messages and subjects, cut at a character boundary.
pub(crate) fn excerpt(text: &str, max_chars: usize) -> String {
    let mut chars = text.chars();
    let cut: String = chars.by_ref().take(max_chars).collect();
    if chars.next().is_some() {
        format!("{cut}…")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_named_with_the_known_ones() {
        let input = json!({"colection": "events"});
        let err = Fields::new("records.get", &input, &["collection", "key"])
            .expect_err("an unknown field");
        assert_eq!(err.name, INVALID_INPUT);
        assert!(!err.retryable);
        assert!(err.message.starts_with("$.colection: "), "{}", err.message);
        assert!(err.message.contains("collection, key"), "{}", err.message);
    }

    #[test]
    fn null_counts_as_absent() {
        let input = json!({"times": null});
        let f = Fields::new("fail", &input, &["times"]).expect("known fields");
        assert_eq!(f.opt_count("times").expect("absent"), None);
    }

    #[test]
    fn whole_numbers_may_come_as_floats_but_not_as_fractions() {
        assert_eq!(whole_number(&json!(2)), Some(2));
        assert_eq!(whole_number(&json!(2.0)), Some(2));
        assert_eq!(whole_number(&json!(2.5)), None);
        assert_eq!(whole_number(&json!(-1)), None);
        assert_eq!(whole_number(&json!("2")), None);
    }

    #[test]
    fn excerpts_cut_at_characters() {
        assert_eq!(excerpt("Grüße", 3), "Grü…");
        assert_eq!(excerpt("abc", 3), "abc");
    }
}
