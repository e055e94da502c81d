//! The actions eventflow's hosts offer to steps, and what each declares about itself.
//!
//! Validation reads this catalogue: a step naming an action not listed here is refused, and so
//! is `compensate: true` on an action that cannot undo itself. The local runtime and the Lambda
//! functions implement exactly these actions.

use eventflow_engine::{ActionRegistry, ActionSpec};

/// Name, whether it can undo itself, and what it does.
const CATALOG: &[(&str, bool, &str)] = &[
    (
        "http.request",
        false,
        "Calls an HTTP endpoint; retryable on timeouts, connection errors, 429 and 5xx. Undo it by naming the request that reverses it.",
    ),
    (
        "email.send",
        true,
        "Sends an email; its compensation sends a correction to the same recipients.",
    ),
    (
        "records.put",
        true,
        "Creates or replaces a domain record (event, sponsor, attendee, deliverable); its compensation deletes it or restores what it replaced.",
    ),
    (
        "records.update",
        true,
        "Changes fields of a domain record; its compensation restores the previous values.",
    ),
    (
        "records.delete",
        true,
        "Deletes a domain record; its compensation restores it.",
    ),
    ("records.get", false, "Reads a domain record."),
    (
        "notify",
        false,
        "Posts a message to the team (outbox and log).",
    ),
    (
        "workflow.start",
        true,
        "Starts another workflow for the same event; its compensation cancels that run.",
    ),
    (
        "fail",
        false,
        "Fails as told (retryable or not, a number of times); for demonstrations and tests.",
    ),
];

/// Every built-in action.
pub fn registry() -> ActionRegistry {
    ActionRegistry::new(
        CATALOG
            .iter()
            .map(|(name, compensable, summary)| ActionSpec {
                name: (*name).to_owned(),
                compensable: *compensable,
                summary: (*summary).to_owned(),
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_put_can_undo_itself_and_http_cannot() {
        let r = registry();
        assert!(r.get("records.put").is_some_and(|s| s.compensable));
        assert!(r.get("http.request").is_some_and(|s| !s.compensable));
        assert!(r.get("page.publish").is_none());
    }
}
