//! The handlers the Lambda functions wire: the coordinator (events from its FIFO queue), the
//! workers (attempts from their family's queue) and the scheduler (EventBridge, every minute).
//! Each takes a batch and reports the messages it could not handle, so only those come again
//! (and, after the queue's `maxReceiveCount`, go to its dead-letter queue).

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use eventflow_engine::{Event, EventKind};
use eventflow_ports::attempt::{self, World};
use eventflow_ports::{Action, ActionError, Outbox, StoreError, Workflows};
use serde_json::Value;

use crate::dynamo::DynamoStore;
use crate::host::{AwsStore, Host};
use crate::messages::{EventMessage, Family, MAX_OUTPUT_BYTES, TaskMessage, json_size};

/// Why one message failed; logged, and the message comes again.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("the message body is not {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn body<T: serde::de::DeserializeOwned>(
    m: &SqsMessage,
    what: &'static str,
) -> Result<T, MessageError> {
    let text = m.body.as_deref().unwrap_or_default();
    serde_json::from_str(text).map_err(|e| MessageError::Malformed {
        what,
        reason: e.to_string(),
    })
}

fn id_of(m: &SqsMessage) -> String {
    m.message_id.clone().unwrap_or_default()
}

/// A received message: its id, and its event (or why it has none).
type Received = (String, Result<EventMessage, MessageError>);

/// The coordinator: applies each run's events in order, one apply per run per batch.
///
/// On a FIFO queue a failed message must hold back those after it in its group, so every
/// message of a run whose apply failed is reported, and a malformed message fails its run's
/// later messages too (it ends in the dead-letter queue; the run's later events come again).
pub async fn coordinate<S: AwsStore>(host: &Host<S>, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut order: Vec<String> = Vec::new();
    let mut runs: HashMap<String, Vec<Received>> = HashMap::new();
    for m in &event.records {
        let parsed: Result<EventMessage, MessageError> = body(m, "an event message");
        let group = match &parsed {
            Ok(e) => e.group(),
            Err(_) => m
                .attributes
                .get("MessageGroupId")
                .cloned()
                .unwrap_or_else(|| id_of(m)),
        };
        if !runs.contains_key(&group) {
            order.push(group.clone());
        }
        runs.entry(group).or_default().push((id_of(m), parsed));
    }
    for group in order {
        let messages = runs.remove(&group).unwrap_or_default();
        let mut events = Vec::new();
        let mut tenant_run = None;
        let mut broken_at = None;
        for (i, (id, parsed)) in messages.iter().enumerate() {
            match parsed {
                Ok(m) => {
                    tenant_run = Some((m.tenant.clone(), m.execution_id.clone()));
                    events.push((m.event.clone(), m.answers.clone()));
                }
                Err(e) => {
                    tracing::error!(message_id = %id, error = %e, "a malformed event message");
                    broken_at = Some(i);
                    break;
                }
            }
        }
        let applied = match &tenant_run {
            Some((tenant, execution_id)) if !events.is_empty() => {
                let host = host.for_tenant(tenant);
                Box::pin(host.apply(execution_id, events)).await.map(|_| ())
            }
            _ => Ok(()),
        };
        let failed_from = match applied {
            Ok(()) => broken_at,
            Err(e) => {
                tracing::error!(group, error = %e, "events not applied; they come again");
                Some(0)
            }
        };
        if let Some(from) = failed_from {
            for (id, _) in &messages[from..] {
                response.add_failure(id.clone());
            }
        }
    }
    response
}

/// What a worker runs actions with.
#[derive(Clone)]
pub struct Worker<S: AwsStore> {
    pub host: Host<S>,
    pub family: Family,
    pub actions: HashMap<&'static str, Arc<dyn Action>>,
    /// Where emails and notifications go (every tenant's).
    pub outbox: Arc<dyn Outbox>,
    /// Through what its actions start and cancel other runs, given the tenant's host: the host
    /// itself for the flow worker (`workflow.start`), [`NoWorkflows`] for the others. Chosen
    /// when the worker is built, so that only the flow worker's binary links the start path
    /// (compiling versions, checking inputs, `decide()`).
    pub workflows: fn(&Host<S>) -> Arc<dyn Workflows>,
}

/// The runs port of a worker whose family has no action that starts or cancels runs; were one
/// routed to it anyway, the attempt fails terminally and says where such actions run.
#[derive(Debug, Clone, Copy)]
pub struct NoWorkflows;

#[async_trait::async_trait]
impl Workflows for NoWorkflows {
    async fn start(&self, workflow_id: &str, _: &Value, _: &str) -> Result<String, ActionError> {
        Err(ActionError::terminal(
            "NotThisWorker",
            format!(
                "this worker cannot start `{workflow_id}`: runs are started by the flow worker"
            ),
        ))
    }

    async fn cancel(&self, execution_id: &str) -> Result<(), ActionError> {
        Err(ActionError::terminal(
            "NotThisWorker",
            format!(
                "this worker cannot cancel {execution_id}: runs are cancelled by the flow worker"
            ),
        ))
    }
}

impl<S: AwsStore> std::fmt::Debug for Worker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

/// A worker: runs each attempt (unless its result is recorded already), records the result,
/// and sends the answer to the coordinator; forwards timers that rode a delay.
pub async fn work<S: AwsStore>(worker: &Worker<S>, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut answers = Vec::new();
    let mut answered_by: Vec<String> = Vec::new();
    for m in &event.records {
        match Box::pin(work_one(worker, m)).await {
            Ok(Some(answer)) => {
                answers.push(answer);
                answered_by.push(id_of(m));
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(message_id = %id_of(m), error = %e, "a task failed to run; it comes again");
                response.add_failure(id_of(m));
            }
        }
    }
    if !answers.is_empty()
        && let Err(e) = worker.host.queues().send_events(&answers).await
    {
        // The answers did not go: the tasks come again and find their recorded results.
        tracing::error!(error = %e, "answers not sent; their tasks come again");
        for id in answered_by {
            response.add_failure(id);
        }
    }
    response
}

async fn work_one<S: AwsStore>(
    worker: &Worker<S>,
    m: &SqsMessage,
) -> Result<Option<EventMessage>, MessageError> {
    match body::<TaskMessage>(m, "a task message")? {
        TaskMessage::Timer { tenant, timer } => {
            let id = format!("timer/{}", timer.id());
            Ok(Some(EventMessage {
                tenant,
                execution_id: timer.execution_id.clone(),
                event: Event::new(id, EventKind::TimerFired { timer: timer.timer }),
                answers: None,
            }))
        }
        TaskMessage::Task {
            tenant,
            execution_id,
            key,
            logged_at,
            task,
        } => {
            let host = worker.host.for_tenant(&tenant);
            let store = host.store();
            let task = match task {
                Some(task) => *task,
                None => match store.logged_task(&execution_id, logged_at, &key).await? {
                    Some(task) => task,
                    None => {
                        tracing::warn!(
                            execution_id,
                            key,
                            logged_at,
                            "an attempt not in its run's log was dropped"
                        );
                        return Ok(None);
                    }
                },
            };
            let recorded = store.result(&key).await?;
            let outcome = match recorded {
                Some(output) => Ok(output),
                None => {
                    let world = World {
                        records: Arc::new(store.clone()),
                        outbox: Arc::clone(&worker.outbox),
                        workflows: (worker.workflows)(&host),
                    };
                    let outcome = Box::pin(attempt::run(&task, &worker.actions, &world)).await;
                    match outcome {
                        Ok(output) if json_size(&output) > MAX_OUTPUT_BYTES => {
                            Err(ActionError::terminal(
                                "OutputTooLarge",
                                format!(
                                    "the output is {} bytes, more than the {MAX_OUTPUT_BYTES} a step may return; shape it with `output`",
                                    json_size(&output)
                                ),
                            ))
                        }
                        Ok(output) => {
                            // The idempotency record: a redelivery uses it instead of acting.
                            store
                                .commit(vec![eventflow_ports::Commit {
                                    results: vec![(key.clone(), output.clone())],
                                    ..Default::default()
                                }])
                                .await?;
                            Ok(output)
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            Ok(attempt::answer(&task, outcome).map(|event| EventMessage {
                tenant,
                execution_id,
                event,
                answers: Some(key),
            }))
        }
    }
}

/// What one scheduler tick did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Sweep {
    /// Timers found due and sent to the coordinator.
    pub timers: usize,
    /// Attempts dispatched long ago and never answered, sent again.
    pub stuck: usize,
    /// Runs started by cron, rate and event-relative schedules
    /// ([`crate::schedules::fire_due`]).
    pub schedules: usize,
}

/// At most this many due timers and stuck attempts a tick; the next tick takes the rest.
const SWEEP_LIMIT: usize = 1000;

/// The scheduler's tick, over every tenant: due timers go to the coordinator as events (a timer
/// that rode a queue's delay and already fired is a duplicate there, and changes nothing);
/// attempts dispatched long ago and never answered are sent again with their run's other
/// pending work; then due schedules and planned event-relative runs start their runs, once per
/// slot however often the tick runs ([`crate::schedules`]).
pub async fn tick(host: &Host<DynamoStore>) -> Result<Sweep, StoreError> {
    let now = host.now();
    let due = host
        .store()
        .due_timers_of_all_tenants(now, SWEEP_LIMIT)
        .await?;
    let events: Vec<EventMessage> = due
        .into_iter()
        .map(|(tenant, t)| EventMessage {
            tenant,
            execution_id: t.execution_id.clone(),
            event: Event::new(
                format!("timer/{}", t.id()),
                EventKind::TimerFired { timer: t.timer },
            ),
            answers: None,
        })
        .collect();
    host.queues().send_events(&events).await?;
    let mut stuck = 0;
    for (tenant, execution_id) in host.store().stuck_runs_of_all_tenants(SWEEP_LIMIT).await? {
        let tenant_host = host.for_tenant(&tenant);
        stuck += tenant_host.redispatch(&execution_id).await?;
        tenant_host.store().postpone_deadline(&execution_id).await?;
    }
    let schedules = Box::pin(crate::schedules::fire_due(host, now, SWEEP_LIMIT)).await?;
    Ok(Sweep {
        timers: events.len(),
        stuck,
        schedules,
    })
}
