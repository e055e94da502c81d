//! `email.send`: sends an email through the host's [`Outbox`](eventflow_ports::Outbox).
//!
//! Input `{from, to, subject, text, correction?: {subject?, text?}}`: `from` an address
//! (`lena@rustnation.example` or `Lena Vogel <lena@rustnation.example>`), `to` one address or
//! a list of 1 to [`MAX_RECIPIENTS`], `subject` one line, `text` the plain-text body.
//! Output `{message_id, to}`.
//!
//! The message is keyed by the attempt's key, so a redelivered attempt sends nothing new.
//! Compensation sends a correction to the same recipients, keyed by the compensation
//! attempt's key: `correction.subject` / `correction.text` when the step gives them, else
//! `Correction: <subject>` and a short note asking to disregard the earlier message.

use async_trait::async_trait;
use eventflow_ports::{Action, ActionContext, ActionError, Message};
use serde_json::{Value, json};

use crate::input::{Fields, excerpt, has_control, invalid, kind, non_blank};

pub const NAME: &str = "email.send";
const FIELDS: &[&str] = &["from", "to", "subject", "text", "correction"];

/// Recipients of one message at most (SES's limit).
pub const MAX_RECIPIENTS: usize = 50;
const MAX_SUBJECT_CHARS: usize = 998;

#[derive(Debug, Clone, Copy, Default)]
pub struct EmailSend;

/// A checked email.
#[derive(Debug, Clone, PartialEq)]
struct Email {
    from: String,
    to: Vec<String>,
    subject: String,
    text: String,
    correction_subject: Option<String>,
    correction_text: Option<String>,
}

impl Email {
    fn parse(input: &Value) -> Result<Email, ActionError> {
        let f = Fields::new(NAME, input, FIELDS)?;
        let from = f.str(
            "from",
            "the sender's address, such as \"lena@rustnation.example\"",
        )?;
        check_address(from, "$.from")?;
        let to = recipients(f.req(
            "to",
            "the recipient's address, or a list of addresses, such as \"amira@ferrous-cloud.example\"",
        )?)?;
        let subject = f.str("subject", "the subject line")?;
        check_subject(subject, "$.subject")?;
        let text = f.req("text", "the plain-text body of the email")?;
        let Value::String(text) = text else {
            return Err(invalid(
                "$.text",
                format!(
                    "expected the plain-text body as a string, got {}",
                    kind(text)
                ),
            ));
        };
        let (mut correction_subject, mut correction_text) = (None, None);
        if let Some(c) = f.opt("correction") {
            let Value::Object(c) = c else {
                return Err(invalid(
                    "$.correction",
                    format!(
                        "expected an object {{\"subject\": ..., \"text\": ...}} for the \
                         correction sent if the step is undone, got {}",
                        kind(c)
                    ),
                ));
            };
            if let Some(unknown) = c.keys().find(|k| *k != "subject" && *k != "text") {
                return Err(invalid(
                    &format!("$.correction.{unknown}"),
                    "a correction has only `subject` and `text`",
                ));
            }
            if let Some(s) = c.get("subject").filter(|v| !v.is_null()) {
                let s = non_blank(s, "$.correction.subject", "the correction's subject line")?;
                check_subject(s, "$.correction.subject")?;
                correction_subject = Some(s.to_owned());
            }
            if let Some(t) = c.get("text").filter(|v| !v.is_null()) {
                let t = non_blank(t, "$.correction.text", "the correction's plain-text body")?;
                correction_text = Some(t.to_owned());
            }
        }
        Ok(Email {
            from: from.to_owned(),
            to,
            subject: subject.to_owned(),
            text: text.clone(),
            correction_subject,
            correction_text,
        })
    }

    fn correction(&self) -> (String, String) {
        let subject = self
            .correction_subject
            .clone()
            .unwrap_or_else(|| format!("Correction: {}", self.subject));
        let text = self.correction_text.clone().unwrap_or_else(|| {
            format!(
                "Please disregard our earlier message \"{}\": it was sent in error.\n",
                self.subject
            )
        });
        (subject, text)
    }
}

#[async_trait]
impl Action for EmailSend {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn execute(&self, ctx: &ActionContext, input: &Value) -> Result<Value, ActionError> {
        let email = Email::parse(input)?;
        let message = Message {
            key: ctx.key.clone(),
            kind: "email".to_owned(),
            from: email.from,
            to: email.to,
            subject: email.subject,
            text: email.text,
        };
        let id = ctx
            .outbox
            .send(&message)
            .await
            .map_err(ActionError::store)?;
        tracing::info!(key = %ctx.key, message_id = %id, recipients = message.to.len(), "email sent");
        Ok(json!({"message_id": id, "to": message.to}))
    }

    async fn compensate(
        &self,
        ctx: &ActionContext,
        input: &Value,
        output: Option<&Value>,
    ) -> Result<Value, ActionError> {
        let email = Email::parse(input)?;
        let (subject, text) = email.correction();
        let message = Message {
            key: ctx.key.clone(),
            kind: "email".to_owned(),
            from: email.from,
            to: email.to,
            subject,
            text,
        };
        let id = ctx
            .outbox
            .send(&message)
            .await
            .map_err(ActionError::store)?;
        let corrects = output.and_then(|o| o.get("message_id")).cloned();
        tracing::info!(key = %ctx.key, message_id = %id, "correction sent");
        Ok(json!({"message_id": id, "to": message.to, "corrects": corrects}))
    }
}

/// `to`: one address or a list of them.
fn recipients(v: &Value) -> Result<Vec<String>, ActionError> {
    let list: Vec<(String, &Value)> = match v {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("$.to[{i}]"), item))
            .collect(),
        single => vec![("$.to".to_owned(), single)],
    };
    if list.is_empty() {
        return Err(invalid(
            "$.to",
            "the list of recipients is empty; give at least one address",
        ));
    }
    if list.len() > MAX_RECIPIENTS {
        return Err(invalid(
            "$.to",
            format!(
                "{} recipients, more than the {MAX_RECIPIENTS} one email may have; send one \
                 email per recipient with `for_each`",
                list.len()
            ),
        ));
    }
    list.into_iter()
        .map(|(path, item)| {
            let address = non_blank(
                item,
                &path,
                "an email address such as \"ops@venue.example\"",
            )?;
            check_address(address, &path)?;
            Ok(address.to_owned())
        })
        .collect()
}

fn check_subject(subject: &str, path: &str) -> Result<(), ActionError> {
    if has_control(subject) {
        return Err(invalid(
            path,
            "a subject is one line: remove the line breaks and control characters",
        ));
    }
    if subject.chars().count() > MAX_SUBJECT_CHARS {
        return Err(invalid(
            path,
            format!("the subject is longer than {MAX_SUBJECT_CHARS} characters; shorten it"),
        ));
    }
    Ok(())
}

/// Checks `text` is `user@domain` or `Display Name <user@domain>`.
///
/// Deliberately narrower than RFC 5322 (no quoted local parts, no IP literals, ASCII domains
/// with at least one dot): what passes here, every outbox (lettre locally, SES on AWS)
/// accepts, so a bad address fails the step at once, terminally, instead of in the outbox.
pub fn check_address(text: &str, path: &str) -> Result<(), ActionError> {
    let shown = excerpt(text, 80);
    let bad = |why: &str| {
        invalid(
            path,
            format!(
                "`{shown}` is not an email address ({why}); write it like \
                 \"lena@rustnation.example\" or \"Lena Vogel <lena@rustnation.example>\""
            ),
        )
    };
    if has_control(text) {
        return Err(bad("it holds a line break or control character"));
    }
    let address = match (text.rfind('<'), text.strip_suffix('>')) {
        (Some(open), Some(rest)) => {
            let name = text[..open].trim();
            if name.contains(['<', '>', '"', '\\']) {
                return Err(bad("the display name holds <, >, \" or \\"));
            }
            &rest[open + 1..]
        }
        (None, None) => text.trim(),
        _ => return Err(bad("unbalanced < >")),
    };
    let Some((user, domain)) = address.rsplit_once('@') else {
        return Err(bad("no @"));
    };
    if !is_local_part(user) {
        return Err(bad(
            "the part before @ holds a character an address cannot have",
        ));
    }
    if !is_domain(domain) {
        return Err(bad(
            "the part after @ is not a domain name such as example.org",
        ));
    }
    Ok(())
}

fn is_local_part(user: &str) -> bool {
    const SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";
    !user.is_empty()
        && user.len() <= 64
        && !user.starts_with('.')
        && !user.ends_with('.')
        && !user.contains("..")
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || SPECIALS.contains(c))
}

fn is_domain(domain: &str) -> bool {
    domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_people_write_are_accepted() {
        for good in [
            "lena@rustnation.example",
            "Lena Vogel <lena@rustnation.example>",
            "<lena@rustnation.example>",
            "first.last+tag@mail.example.org",
        ] {
            assert!(check_address(good, "$.from").is_ok(), "{good}");
        }
    }

    #[test]
    fn addresses_that_are_not_are_refused_with_the_path() {
        for bad in [
            "lena",
            "lena@",
            "@rustnation.example",
            "lena@rustnation",
            "le na@rustnation.example",
            "lena@rust_nation.example",
            "lena..v@rustnation.example",
            "Lena <lena@rustnation.example",
            "lena@rustnation.example\r\nBcc: all@example.org",
        ] {
            let err = check_address(bad, "$.to[1]").expect_err(bad);
            assert_eq!(err.name, "InvalidInput");
            assert!(err.message.starts_with("$.to[1]: "), "{}", err.message);
        }
    }
}
