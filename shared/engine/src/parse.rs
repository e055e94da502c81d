//! Reading a definition document, JSON or YAML, with the path of whatever is wrong.

use serde_json::Value;

use crate::model::Definition;
use crate::version::MAX_DEFINITION_BYTES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    /// The format a file name suggests: `.yaml`/`.yml` is YAML, anything else JSON.
    pub fn from_path(path: &str) -> Format {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Yaml
        } else {
            Format::Json
        }
    }
}

/// Why a document is not a definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ParseError {
    /// JSON path of the field (`$` for the document itself).
    pub path: String,
    pub message: String,
}

/// Reads a definition; refuses documents over the size limit before parsing them.
pub fn parse_definition(text: &str, format: Format) -> Result<Definition, ParseError> {
    if text.len() > MAX_DEFINITION_BYTES {
        return Err(ParseError {
            path: "$".into(),
            message: format!(
                "the document is {} bytes, the limit is {MAX_DEFINITION_BYTES}; move large data into the run's input",
                text.len()
            ),
        });
    }
    match format {
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = path_of(e.path());
                let inner = e.into_inner();
                let message = if inner.is_syntax() || inner.is_eof() {
                    format!("this is not valid JSON: {inner}")
                } else {
                    inner.to_string()
                };
                ParseError { path, message }
            })
        }
        Format::Yaml => {
            let de = serde_yaml_ng::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| ParseError {
                path: path_of(e.path()),
                message: e.into_inner().to_string(),
            })
        }
    }
}

fn path_of(path: &serde_path_to_error::Path) -> String {
    let p = path.to_string();
    if p == "." || p.is_empty() {
        "$".into()
    } else if p.starts_with('[') {
        format!("${p}")
    } else {
        format!("$.{p}")
    }
}

/// The JSON Schema of a definition document, generated from the types.
pub fn definition_schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Definition)).unwrap_or_default();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "$id".into(),
            Value::from("https://eventflow.dev/schema/workflow.schema.json"),
        );
        obj.insert("title".into(), Value::from("eventflow workflow definition"));
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_field_is_reported_with_its_path() {
        let err = parse_definition(
            r#"{"id":"x","name":"x","kind":"custom","steps":[{"id":"a","action":"notify","retry":{"max_attempts":"three"}}]}"#,
            Format::Json,
        )
        .expect_err("bad");
        assert_eq!(err.path, "$.steps[0].retry.max_attempts");
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let err = parse_definition(
            "id: x\nname: x\nkind: custom\nsteps:\n  - id: a\n    action: notify\n    retires: 3\n",
            Format::Yaml,
        )
        .expect_err("bad");
        assert_eq!(err.path, "$.steps[0].retires");
        assert!(err.message.contains("retires"), "{}", err.message);
    }

    #[test]
    fn broken_json_says_so() {
        let err = parse_definition("{\"id\": ", Format::Json).expect_err("bad");
        assert!(err.message.contains("not valid JSON"), "{}", err.message);
    }

    #[test]
    fn the_schema_describes_steps() {
        let schema = definition_schema();
        let text = schema.to_string();
        assert!(text.contains("depends_on") && text.contains("for_each"));
    }
}
