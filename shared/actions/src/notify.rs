//! `notify`: posts a message to the team.
//!
//! Input `{channel, text, severity?, items?}`: `channel` a name such as `event-ops` (no
//! spaces), `severity` one of `info` (the default), `warning`, `error`, `items` an optional
//! list of anything, listed one per line (compact JSON) under the text. Output
//! `{message_id, channel, severity}`.
//!
//! It goes to the outbox as a message of kind `notify` (from `eventflow`, to the channel,
//! subject `[severity] first line of the text`), keyed by the attempt's key so a redelivery
//! posts nothing new, and to the log as one line at the matching level. A post cannot be
//! taken back: no compensation.

use async_trait::async_trait;
use eventflow_ports::{Action, ActionContext, ActionError, Message};
use serde_json::{Value, json};

use crate::input::{Fields, excerpt, invalid, kind};

pub const NAME: &str = "notify";
const FIELDS: &[&str] = &["channel", "text", "severity", "items"];
const MAX_CHANNEL_CHARS: usize = 80;
const MAX_ITEMS: usize = 1000;

#[derive(Debug, Clone, Copy, Default)]
pub struct Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    fn parse(text: &str) -> Option<Severity> {
        match text {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

#[async_trait]
impl Action for Notify {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn execute(&self, ctx: &ActionContext, input: &Value) -> Result<Value, ActionError> {
        let f = Fields::new(NAME, input, FIELDS)?;
        let channel = f.str("channel", "the channel to post to, such as \"event-ops\"")?;
        if channel.chars().count() > MAX_CHANNEL_CHARS
            || channel.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "$.channel",
                format!(
                    "`{}` is not a channel name; use one word such as \"event-ops\" (no \
                     spaces, at most {MAX_CHANNEL_CHARS} characters)",
                    excerpt(channel, 80)
                ),
            ));
        }
        let text = f.str("text", "the message to post")?;
        let severity = match f.opt_str("severity", "info, warning or error")? {
            None => Severity::Info,
            Some(s) => Severity::parse(s).ok_or_else(|| {
                invalid(
                    "$.severity",
                    format!(
                        "`{}` is not a severity; use info, warning or error",
                        excerpt(s, 40)
                    ),
                )
            })?,
        };
        let items = match f.opt("items") {
            None => &[][..],
            Some(Value::Array(items)) if items.len() <= MAX_ITEMS => &items[..],
            Some(Value::Array(items)) => {
                return Err(invalid(
                    "$.items",
                    format!(
                        "{} items, more than the {MAX_ITEMS} a notification lists; summarise \
                         them in the text",
                        items.len()
                    ),
                ));
            }
            Some(other) => {
                return Err(invalid(
                    "$.items",
                    format!("expected a list, got {}", kind(other)),
                ));
            }
        };
        let first_line = text.lines().next().unwrap_or_default();
        let mut body = text.to_owned();
        if !items.is_empty() {
            body.push('\n');
            for item in items {
                body.push_str("\n- ");
                match item {
                    Value::String(s) => body.push_str(s),
                    other => body.push_str(&other.to_string()),
                }
            }
        }
        body.push('\n');
        let message = Message {
            key: ctx.key.clone(),
            kind: "notify".to_owned(),
            from: "eventflow".to_owned(),
            to: vec![channel.to_owned()],
            subject: format!("[{}] {}", severity.as_str(), excerpt(first_line, 120)),
            text: body,
        };
        let id = ctx
            .outbox
            .send(&message)
            .await
            .map_err(ActionError::store)?;
        match severity {
            Severity::Info => {
                tracing::info!(channel, key = %ctx.key, items = items.len(), "{text}");
            }
            Severity::Warning => {
                tracing::warn!(channel, key = %ctx.key, items = items.len(), "{text}");
            }
            Severity::Error => {
                tracing::error!(channel, key = %ctx.key, items = items.len(), "{text}");
            }
        }
        Ok(json!({"message_id": id, "channel": channel, "severity": severity.as_str()}))
    }
}
