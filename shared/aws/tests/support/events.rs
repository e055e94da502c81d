//! An event-source emulator: what Lambda's SQS event source mapping does, against the real
//! queues of the emulator. It receives up to ten messages (with their system attributes),
//! hands them to the handler as an `SqsEvent`, deletes those the handler did not report as
//! failed, and leaves the failed ones to come back after their visibility timeout (the queue's
//! redrive policy moves them to the dead-letter queue after `maxReceiveCount` receives).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};

/// What the event sources did, for the cost report: SQS requests they made (a Lambda event
/// source mapping's receives and deletes are billed to the account) and the invocations.
#[derive(Debug, Default)]
pub(crate) struct PollStats {
    pub(crate) receives: AtomicU64,
    /// Receives that found nothing (a real event source long-polls: a fixed cost per queue,
    /// not per step).
    pub(crate) empty: AtomicU64,
    pub(crate) deletes: AtomicU64,
    pub(crate) invocations: AtomicU64,
}

impl PollStats {
    pub(crate) fn get(&self) -> (u64, u64, u64) {
        (
            self.receives.load(Ordering::Relaxed) - self.empty.load(Ordering::Relaxed),
            self.deletes.load(Ordering::Relaxed),
            self.invocations.load(Ordering::Relaxed),
        )
    }
}

/// One queue polled like an event source mapping.
#[derive(Debug, Clone)]
pub(crate) struct EventSource {
    pub(crate) client: aws_sdk_sqs::Client,
    pub(crate) url: String,
    pub(crate) arn: String,
    /// Seconds a received message stays invisible before it can come again.
    pub(crate) visibility: i32,
    pub(crate) stats: Arc<PollStats>,
}

impl EventSource {
    /// Receives one batch and invokes `handler` with it; returns how many messages came.
    pub(crate) async fn poll<F, Fut>(&self, handler: F) -> usize
    where
        F: FnOnce(SqsEvent) -> Fut,
        Fut: Future<Output = SqsBatchResponse>,
    {
        self.stats.receives.fetch_add(1, Ordering::Relaxed);
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
            self.stats.empty.fetch_add(1, Ordering::Relaxed);
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
        self.stats.invocations.fetch_add(1, Ordering::Relaxed);
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
            self.stats.deletes.fetch_add(1, Ordering::Relaxed);
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
