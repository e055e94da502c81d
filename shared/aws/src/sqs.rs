//! The queues: events into the coordinator's FIFO queue, attempts and short timers into the
//! task queue of their family. Every send is batched, ten messages a call; a batch entry SQS
//! refuses is sent again (a few times), and what still fails is an error, so the caller's own
//! message is redelivered rather than anything being lost.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use eventflow_engine::Timestamp;
use eventflow_ports::{StoreError, StoreResult, TimerRecord};

use crate::messages::{EventMessage, Family, Logged, MAX_INLINE_TASK_BYTES, TaskMessage};

/// SQS takes at most this many entries a call.
const BATCH: usize = 10;
/// The longest per-message delay SQS offers; longer waits stay in the table's timer index.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// Where the queues are, read once at init from the environment the template sets.
#[derive(Debug, Clone)]
pub struct QueueUrls {
    pub coordinator: String,
    pub tasks: HashMap<&'static str, String>,
}

impl QueueUrls {
    /// `EVENTFLOW_COORDINATOR_QUEUE_URL` and `EVENTFLOW_TASKS_<FAMILY>_QUEUE_URL`.
    pub fn from_env() -> Result<QueueUrls, String> {
        let var = |name: String| {
            std::env::var(&name)
                .map_err(|_| format!("{name} is not set; the template sets it to the queue's URL"))
        };
        let coordinator = var("EVENTFLOW_COORDINATOR_QUEUE_URL".to_owned())?;
        let mut tasks = HashMap::new();
        for f in Family::ALL {
            let name = format!("EVENTFLOW_TASKS_{}_QUEUE_URL", f.name().to_uppercase());
            tasks.insert(f.name(), var(name)?);
        }
        Ok(QueueUrls { coordinator, tasks })
    }
}

/// The queues of one deployment.
#[derive(Debug, Clone)]
pub struct Queues {
    client: Client,
    urls: QueueUrls,
}

fn failed(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("SQS refused a send: {e}"))
}

impl Queues {
    pub fn new(client: Client, urls: QueueUrls) -> Queues {
        Queues { client, urls }
    }

    /// Sends events to the coordinator, in order within each run.
    pub async fn send_events(&self, messages: &[EventMessage]) -> StoreResult<()> {
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            out.push(Outgoing {
                body: serde_json::to_string(m).map_err(StoreError::backend)?,
                group: Some((m.group(), m.dedup())),
                delay: None,
            });
        }
        self.send(&self.urls.coordinator, out).await
    }

    /// Sends each attempt to its family's queue, carried in the message when it fits.
    pub async fn send_tasks(&self, tenant: &str, tasks: &[Logged]) -> StoreResult<()> {
        let mut by_family: HashMap<&'static str, Vec<Outgoing>> = HashMap::new();
        for logged in tasks {
            let task = &logged.task;
            let family = Family::of_command(&task.command);
            let mut message = TaskMessage::Task {
                tenant: tenant.to_owned(),
                execution_id: task.execution_id.clone(),
                key: task.key().to_owned(),
                logged_at: logged.logged_at,
                task: Some(Box::new(task.clone())),
            };
            let mut body = serde_json::to_string(&message).map_err(StoreError::backend)?;
            if body.len() > MAX_INLINE_TASK_BYTES {
                if let TaskMessage::Task { task, .. } = &mut message {
                    *task = None;
                }
                body = serde_json::to_string(&message).map_err(StoreError::backend)?;
            }
            by_family.entry(family.name()).or_default().push(Outgoing {
                body,
                group: None,
                delay: None,
            });
        }
        for (family, entries) in by_family {
            let url = self.task_url(family)?;
            self.send(url, entries).await?;
        }
        Ok(())
    }

    /// Sends the timers due within [`MAX_DELAY`] of `now` as delayed messages on the flow
    /// queue; the others wait in the table for the scheduler. Returns how many rode a delay.
    pub async fn send_timers(
        &self,
        tenant: &str,
        timers: &[TimerRecord],
        now: Timestamp,
    ) -> StoreResult<usize> {
        let mut entries = Vec::new();
        for timer in timers {
            let wait = (timer.at - now).num_seconds().max(0);
            if wait > MAX_DELAY.as_secs() as i64 {
                continue;
            }
            let message = TaskMessage::Timer {
                tenant: tenant.to_owned(),
                timer: timer.clone(),
            };
            entries.push(Outgoing {
                body: serde_json::to_string(&message).map_err(StoreError::backend)?,
                group: None,
                delay: Some(i32::try_from(wait).unwrap_or(900)),
            });
        }
        let sent = entries.len();
        let url = self.task_url(Family::Flow.name())?;
        self.send(url, entries).await?;
        Ok(sent)
    }

    fn task_url(&self, family: &str) -> StoreResult<&str> {
        self.urls
            .tasks
            .get(family)
            .map(String::as_str)
            .ok_or_else(|| StoreError::Unavailable(format!("no queue for the {family} family")))
    }

    /// Sends messages in batches of ten; entries SQS refuses are retried three times.
    async fn send(&self, url: &str, messages: Vec<Outgoing>) -> StoreResult<()> {
        for chunk in messages.chunks(BATCH) {
            let mut pending: Vec<SendMessageBatchRequestEntry> = Vec::with_capacity(chunk.len());
            for (i, m) in chunk.iter().enumerate() {
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body)
                    .set_delay_seconds(m.delay);
                if let Some((group, dedup)) = &m.group {
                    entry = entry
                        .message_group_id(group)
                        .message_deduplication_id(dedup);
                }
                pending.push(entry.build().map_err(StoreError::backend)?);
            }
            for attempt in 0..4 {
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(url)
                    .set_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(|e| failed(aws_sdk_sqs::error::DisplayErrorContext(e)))?;
                let refused: Vec<String> = out.failed().iter().map(|f| f.id().to_owned()).collect();
                if refused.is_empty() {
                    break;
                }
                if attempt == 3 {
                    let why: Vec<String> = out
                        .failed()
                        .iter()
                        .map(|f| format!("{}: {}", f.code(), f.message().unwrap_or("")))
                        .collect();
                    return Err(failed(why.join("; ")));
                }
                pending.retain(|e| refused.iter().any(|r| r == e.id()));
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
        }
        Ok(())
    }
}

/// One message to send: its body, FIFO group and deduplication id, and delay.
#[derive(Debug)]
struct Outgoing {
    body: String,
    group: Option<(String, String)>,
    delay: Option<i32>,
}
