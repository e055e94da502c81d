//! The outbox on Amazon SES (the v1 API, which LocalStack serves; v2 it does not): emails as they are, notifications as emails to the team
//! channel's address (`<channel>@<EVENTFLOW_NOTIFY_DOMAIN>`; most chat tools give a channel
//! one).
//!
//! Sending is once per attempt: the worker records an attempt's result before it answers, and
//! a redelivered attempt that finds the result answers with it instead of acting, so the
//! outbox keeps no record of its own (that would be a second write per email for the same
//! guarantee). The one window left is a crash between SES accepting a message and the result
//! being recorded: the redelivery then sends it again (at least once, never lost).

use async_trait::async_trait;
use aws_sdk_ses::Client;
use aws_sdk_ses::types::{Body, Content, Destination, Message as SesMessage};
use eventflow_ports::{Message, Outbox, StoreError, StoreResult};

/// The sending identity and the notification domain, read once at init.
#[derive(Debug, Clone)]
pub struct SesSettings {
    /// The verified identity emails and notifications are sent from when a message's own
    /// sender is not an address (`eventflow`).
    pub sender: String,
    /// The domain of the team channels' addresses.
    pub notify_domain: String,
}

impl SesSettings {
    /// `EVENTFLOW_SENDER` and `EVENTFLOW_NOTIFY_DOMAIN`.
    pub fn from_env() -> Result<SesSettings, String> {
        let var = |name: &str| {
            std::env::var(name)
                .map_err(|_| format!("{name} is not set; the template sets it from its parameters"))
        };
        Ok(SesSettings {
            sender: var("EVENTFLOW_SENDER")?,
            notify_domain: var("EVENTFLOW_NOTIFY_DOMAIN")?,
        })
    }
}

/// The SES outbox.
#[derive(Debug, Clone)]
pub struct SesOutbox {
    client: Client,
    settings: SesSettings,
}

impl SesOutbox {
    pub fn new(client: Client, settings: SesSettings) -> Self {
        SesOutbox { client, settings }
    }

    fn recipients(&self, message: &Message) -> Vec<String> {
        if message.kind == "notify" {
            message
                .to
                .iter()
                .map(|channel| format!("{channel}@{}", self.settings.notify_domain))
                .collect()
        } else {
            message.to.clone()
        }
    }
}

fn content(text: &str) -> Result<Content, StoreError> {
    Content::builder()
        .data(text)
        .charset("UTF-8")
        .build()
        .map_err(StoreError::backend)
}

#[async_trait]
impl Outbox for SesOutbox {
    async fn send(&self, message: &Message) -> StoreResult<String> {
        let from = if message.from.contains('@') {
            message.from.clone()
        } else {
            self.settings.sender.clone()
        };
        let email = SesMessage::builder()
            .subject(content(&message.subject)?)
            .body(Body::builder().text(content(&message.text)?).build())
            .build();
        let out = self
            .client
            .send_email()
            .source(from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(self.recipients(message)))
                    .build(),
            )
            .message(email)
            .send()
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "SES refused the message: {}",
                    aws_sdk_ses::error::DisplayErrorContext(e)
                ))
            })?;
        Ok(out.message_id().to_owned())
    }
}
