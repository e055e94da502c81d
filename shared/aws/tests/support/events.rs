//! An event-source emulator: what Lambda's SQS event source mapping does, against the real
//! queues of the emulator. It receives up to ten messages (with their system attributes),
//! hands them to the handler as an `SqsEvent`, deletes those the handler did not report as
//! failed, and leaves the failed ones to come back after their visibility timeout (the queue's
//! redrive policy moves them to the dead-letter queue after `maxReceiveCount` receives).

use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};

/// One queue polled like an event source mapping.
#[derive(Debug, Clone)]
pub(crate) struct EventSource {
    pub(crate) client: aws_sdk_sqs::Client,
    pub(crate) url: String,
    pub(crate) arn: String,
    /// Seconds a received message stays invisible before it can come again.
    pub(crate) visibility: i32,
}

impl EventSource {
    /// Receives one batch and invokes `handler` with it; returns how many messages came.
    pub(crate) async fn poll<F, Fut>(&self, handler: F) -> usize
    where
        F: FnOnce(SqsEvent) -> Fut,
        Fut: Future<Output = SqsBatchResponse>,
    {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .visibility_timeout(self.visibility)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        let received = out.messages();
        if received.is_empty() {
            return 0;
        }
        let mut event = SqsEvent::default();
        for m in received {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id().map(str::to_owned);
            record.receipt_handle = m.receipt_handle().map(str::to_owned);
            record.body = m.body().map(str::to_owned);
            record.md5_of_body = m.md5_of_body().map(str::to_owned);
            record.event_source = Some("aws:sqs".to_owned());
            record.event_source_arn = Some(self.arn.clone());
            record.aws_region = Some("eu-central-1".to_owned());
            if let Some(attributes) = m.attributes() {
                for (k, v) in attributes {
                    record.attributes.insert(k.as_str().to_owned(), v.clone());
                }
            }
            event.records.push(record);
        }
        let response = handler(event.clone()).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let done: Vec<DeleteMessageBatchRequestEntry> = event
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| !failed.contains(&r.message_id.as_deref().unwrap_or_default()))
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r.receipt_handle.clone().unwrap_or_default())
                    .build()
                    .expect("entry")
            })
            .collect();
        if !done.is_empty() {
            self.client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(done))
                .send()
                .await
                .expect("delete");
        }
        event.records.len()
    }
}
