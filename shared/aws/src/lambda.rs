//! What every function does at init, once: logging, the SDK configuration, the clients, the
//! store and the queues, read from the environment the template sets. A `main.rs` calls this
//! and hands a handler to `lambda_runtime::run`.

use std::sync::{Arc, Mutex};

use aws_config::BehaviorVersion;
use eventflow_ports::Clock;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

use crate::dynamo::{DynamoStore, SystemClock};
use crate::handlers::{Sweep, Worker, coordinate, tick, work};
use crate::host::Host;
use crate::messages::Family;
use crate::ses::{SesOutbox, SesSettings};
use crate::sqs::{QueueUrls, Queues};

/// Why a function cannot start; Lambda reports it as an init error.
#[derive(Debug, thiserror::Error)]
#[error("eventflow cannot start: {0}")]
pub struct InitError(pub String);

/// JSON log lines on stdout (CloudWatch keeps them), filtered by `EVENTFLOW_LOG` (default
/// `info`).
pub fn logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("EVENTFLOW_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .without_time()
        .try_init();
}

/// The SDK configuration: region, credentials and endpoints from the environment
/// (`AWS_ENDPOINT_URL(_<SERVICE>)` points it at an emulator; no other switch exists).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// The host every handler works through, built once: the table `EVENTFLOW_TABLE`, the queues
/// of `EVENTFLOW_*_QUEUE_URL`, the actions' registry, the system clock.
pub async fn host(config: &aws_config::SdkConfig) -> Result<Host<DynamoStore>, InitError> {
    let table = std::env::var("EVENTFLOW_TABLE")
        .map_err(|_| InitError("EVENTFLOW_TABLE is not set; the template sets it".into()))?;
    let urls = QueueUrls::from_env().map_err(InitError)?;
    Ok(host_with(
        aws_sdk_dynamodb::Client::new(config),
        aws_sdk_sqs::Client::new(config),
        &table,
        urls,
        Arc::new(SystemClock),
    ))
}

/// The host on given clients, table and queues (tests build it this way).
pub fn host_with(
    dynamo: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    table: &str,
    urls: QueueUrls,
    clock: Arc<dyn Clock>,
) -> Host<DynamoStore> {
    let store = DynamoStore::new(dynamo, table, "").with_clock(Arc::clone(&clock));
    let queues = Queues::new(sqs, urls);
    Host::new(
        store,
        queues,
        eventflow_actions::registry(),
        clock,
        Arc::new(Mutex::new(Default::default())),
    )
}

/// The worker of `family`: the actions of that family only, email through SES.
pub fn worker(
    config: &aws_config::SdkConfig,
    host: Host<DynamoStore>,
    family: Family,
    ses: SesSettings,
) -> Result<Worker<DynamoStore>, InitError> {
    let http = reqwest::Client::builder()
        .user_agent(concat!("eventflow/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| InitError(format!("cannot build the HTTP client: {e}")))?;
    let actions = eventflow_actions::actions(http)
        .into_iter()
        .filter(|(name, _)| family.runs(name))
        .collect();
    Ok(Worker {
        host,
        family,
        actions,
        outbox: Arc::new(SesOutbox::new(aws_sdk_ses::Client::new(config), ses)),
    })
}

/// Runs the worker function of `family` (what each worker's `main.rs` calls).
pub async fn serve_worker(family: Family) -> Result<(), lambda_runtime::Error> {
    logging();
    let config = Box::pin(sdk_config()).await;
    let host = Box::pin(host(&config)).await?;
    let ses = SesSettings::from_env().map_err(InitError)?;
    let worker = worker(&config, host, family, ses)?;
    let worker = &worker;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<SqsEvent>| async move {
            Ok::<SqsBatchResponse, lambda_runtime::Error>(work(worker, event.payload).await)
        },
    ))
    .await
}

/// Runs the coordinator function (what its `main.rs` calls).
pub async fn serve_coordinator() -> Result<(), lambda_runtime::Error> {
    logging();
    let config = Box::pin(sdk_config()).await;
    let host = Box::pin(host(&config)).await?;
    let host = &host;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<SqsEvent>| async move {
            Ok::<SqsBatchResponse, lambda_runtime::Error>(coordinate(host, event.payload).await)
        },
    ))
    .await
}

/// Runs the scheduler function (what its `main.rs` calls): one tick per invocation (due
/// timers, stuck attempts, due schedules of every tenant).
pub async fn serve_scheduler() -> Result<(), lambda_runtime::Error> {
    logging();
    let config = Box::pin(sdk_config()).await;
    let host = Box::pin(host(&config)).await?;
    let host = &host;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |_: lambda_runtime::LambdaEvent<EventBridgeEvent>| async move {
            Ok::<Sweep, lambda_runtime::Error>(tick(host).await?)
        },
    ))
    .await
}
