//! The actions eventflow's hosts offer to steps: what each declares about itself, and its
//! implementation, written once for every host.
//!
//! Validation reads the catalogue ([`registry`]): a step naming an action not listed there is
//! refused, and so is `compensate: true` on an action that cannot undo itself. The local
//! runtime and the Lambda functions run the implementations ([`actions`]) against the ports of
//! `eventflow-ports`: records through `RecordStore`, messages through `Outbox`, other runs
//! through `Workflows`, HTTP through the `reqwest::Client` the host builds once.
//!
//! Layout: one module per action ([`http`], [`email`], [`records`] with one per operation,
//! [`notify`], [`workflow`], [`fail`]), each opening with its input, output and error
//! contract; `input` checks inputs (every mistake a terminal `InvalidInput` naming the field
//! as a JSON path); `journal` keeps what a step changed so its compensation can undo it even
//! after redeliveries.
//!
//! Idempotency: every attempt has a key (`execution/step/item/attempt`). Messages are keyed by
//! it (the outbox sends a key once); record writes are idempotent by nature and journalled so
//! that their undo survives redelivery; `workflow.start` and the `Idempotency-Key` of
//! `http.request` use the key without its attempt, so retries of one step converge.
//!
//! Hosts build the [`ActionContext`] with `step` set to the step's id, for an attempt and for
//! a compensation alike, and pass on the engine's keys as they are
//! (`execution/step/item/attempt`, `execution/step.compensate/item/attempt`): a builtin
//! compensation finds the journal of its step by `execution/step/item`.

use std::collections::HashMap;
use std::sync::Arc;

use eventflow_engine::{ActionRegistry, ActionSpec};
use eventflow_ports::{Action, ActionContext};

pub mod email;
pub mod fail;
pub mod http;
mod input;
mod journal;
pub mod notify;
pub mod records;
pub mod workflow;

pub use input::INVALID_INPUT;

/// Name, whether it can undo itself, and what it does.
const CATALOG: &[(&str, bool, &str)] = &[
    (
        http::NAME,
        false,
        "Calls an HTTP endpoint; retryable on timeouts (and 408), connection errors, 429 and 5xx. Undo it by naming the request that reverses it.",
    ),
    (
        email::NAME,
        true,
        "Sends an email; its compensation sends a correction to the same recipients.",
    ),
    (
        records::put::NAME,
        true,
        "Creates or replaces a domain record (event, sponsor, attendee, deliverable); its compensation deletes it or restores what it replaced.",
    ),
    (
        records::update::NAME,
        true,
        "Changes fields of a domain record; its compensation restores the previous values.",
    ),
    (
        records::delete::NAME,
        true,
        "Deletes a domain record; its compensation restores it.",
    ),
    (records::get::NAME, false, "Reads a domain record."),
    (
        notify::NAME,
        false,
        "Posts a message to the team (outbox and log).",
    ),
    (
        workflow::NAME,
        true,
        "Starts another workflow for the same event; its compensation cancels that run.",
    ),
    (
        fail::NAME,
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

/// Every built-in action, by name, ready to run. `http` is the client `http.request` uses:
/// build it once at start (see [`http_client`]).
pub fn actions(http: reqwest::Client) -> HashMap<&'static str, Arc<dyn Action>> {
    let all: Vec<Arc<dyn Action>> = vec![
        Arc::new(http::HttpRequest::new(http)),
        Arc::new(email::EmailSend),
        Arc::new(records::put::RecordsPut),
        Arc::new(records::update::RecordsUpdate),
        Arc::new(records::delete::RecordsDelete),
        Arc::new(records::get::RecordsGet),
        Arc::new(notify::Notify),
        Arc::new(workflow::WorkflowStart),
        Arc::new(fail::Fail),
    ];
    all.into_iter().map(|a| (a.name(), a)).collect()
}

/// The HTTP client hosts give [`actions`]: it names itself, and gives up connecting after 10
/// seconds (each request has its own, overall, timeout on top).
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("eventflow/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
}

/// The attempt's key without its attempt number: `execution/step/item` for a step,
/// `execution/step.compensate/item` for a compensation. The same for every retry.
pub(crate) fn run_key(ctx: &ActionContext) -> &str {
    let suffix = format!("/{}", ctx.attempt);
    ctx.key.strip_suffix(suffix.as_str()).unwrap_or(&ctx.key)
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

    #[test]
    fn every_catalogued_action_is_implemented_and_nothing_else() {
        let client = reqwest::Client::new();
        let mut implemented: Vec<&str> = actions(client).into_keys().collect();
        implemented.sort_unstable();
        let mut catalogued: Vec<&str> = CATALOG.iter().map(|(name, ..)| *name).collect();
        catalogued.sort_unstable();
        assert_eq!(implemented, catalogued);
    }
}
