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
///
/// Its HTTPS client is the SDK's default one (hyper 1 and rustls; connector settings, sleep
/// and proxy from the environment, as `aws-smithy-runtime`'s `default_https_client` builds
/// it), with ring as rustls' crypto instead of aws-lc-rs. Both speak TLS 1.3 and 1.2 with the
/// same cipher suites; aws-lc-rs adds post-quantum key exchange, and about 0.56 MB to every
/// arm64 bootstrap. (The http worker still links aws-lc through reqwest, for `http.request`.)
pub async fn sdk_config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    use aws_smithy_http_client::{Builder, ConnectorBuilder};
    let https = Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https)
        .load()
        .await
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

/// Builds one family's worker at init, from the SDK configuration, the host and the SES
/// settings: [`workers::email`], [`workers::http`], [`workers::records`], [`workers::notify`],
/// [`workers::flow`].
pub type BuildWorker = fn(
    &aws_config::SdkConfig,
    Host<DynamoStore>,
    SesSettings,
) -> Result<Worker<DynamoStore>, InitError>;

/// The worker of `family`: the actions of that family only, email through SES. The family is
/// chosen as this runs, so whatever calls this links every family's actions (the tests do);
/// a worker function names its family's builder instead (see [`serve_worker`]).
pub fn worker(
    config: &aws_config::SdkConfig,
    host: Host<DynamoStore>,
    family: Family,
    ses: SesSettings,
) -> Result<Worker<DynamoStore>, InitError> {
    let build: BuildWorker = match family {
        Family::Email => workers::email,
        Family::Http => workers::http,
        Family::Records => workers::records,
        Family::Notify => workers::notify,
        Family::Flow => workers::flow,
    };
    build(config, host, ses)
}

/// One builder per family, each naming only its family's actions: a worker function's binary
/// then holds those actions and what they use, and not the others' (the HTTP client is in the
/// http worker alone; the path that starts runs, with the engine's compiler and input schemas,
/// in the flow worker alone).
pub mod workers {
    use std::sync::Arc;

    use eventflow_actions::{email, fail, http as http_action, notify, records as rec, workflow};
    use eventflow_ports::Action;

    use super::{InitError, SesOutbox, SesSettings};
    use crate::dynamo::DynamoStore;
    use crate::handlers::{NoWorkflows, Worker};
    use crate::host::Host;
    use crate::messages::Family;

    /// A worker of `family` running `actions`, whose port for runs refuses ([`NoWorkflows`]):
    /// only the flow worker replaces it.
    fn build(
        config: &aws_config::SdkConfig,
        host: Host<DynamoStore>,
        ses: SesSettings,
        family: Family,
        actions: Vec<Arc<dyn Action>>,
    ) -> Worker<DynamoStore> {
        Worker {
            host,
            family,
            actions: actions.into_iter().map(|a| (a.name(), a)).collect(),
            outbox: Arc::new(SesOutbox::new(aws_sdk_ses::Client::new(config), ses)),
            workflows: |_| Arc::new(NoWorkflows),
        }
    }

    /// `email.send`.
    pub fn email(
        config: &aws_config::SdkConfig,
        host: Host<DynamoStore>,
        ses: SesSettings,
    ) -> Result<Worker<DynamoStore>, InitError> {
        let actions: Vec<Arc<dyn Action>> = vec![Arc::new(email::EmailSend)];
        Ok(build(config, host, ses, Family::Email, actions))
    }

    /// `http.request`, with the HTTP client it builds once.
    pub fn http(
        config: &aws_config::SdkConfig,
        host: Host<DynamoStore>,
        ses: SesSettings,
    ) -> Result<Worker<DynamoStore>, InitError> {
        // The embedded runtime's client: its user agent and its 10 s connect timeout.
        let client = eventflow_actions::http_client()
            .map_err(|e| InitError(format!("cannot build the HTTP client: {e}")))?;
        let actions: Vec<Arc<dyn Action>> = vec![Arc::new(http_action::HttpRequest::new(client))];
        Ok(build(config, host, ses, Family::Http, actions))
    }

    /// `records.put`, `records.update`, `records.delete`, `records.get`.
    pub fn records(
        config: &aws_config::SdkConfig,
        host: Host<DynamoStore>,
        ses: SesSettings,
    ) -> Result<Worker<DynamoStore>, InitError> {
        let actions: Vec<Arc<dyn Action>> = vec![
            Arc::new(rec::put::RecordsPut),
            Arc::new(rec::update::RecordsUpdate),
            Arc::new(rec::delete::RecordsDelete),
            Arc::new(rec::get::RecordsGet),
        ];
        Ok(build(config, host, ses, Family::Records, actions))
    }

    /// `notify`.
    pub fn notify(
        config: &aws_config::SdkConfig,
        host: Host<DynamoStore>,
        ses: SesSettings,
    ) -> Result<Worker<DynamoStore>, InitError> {
        let actions: Vec<Arc<dyn Action>> = vec![Arc::new(notify::Notify)];
        Ok(build(config, host, ses, Family::Notify, actions))
    }

    /// `workflow.start` and `fail`; the host starts and cancels the runs.
    pub fn flow(
        config: &aws_config::SdkConfig,
        host: Host<DynamoStore>,
        ses: SesSettings,
    ) -> Result<Worker<DynamoStore>, InitError> {
        let actions: Vec<Arc<dyn Action>> =
            vec![Arc::new(workflow::WorkflowStart), Arc::new(fail::Fail)];
        Ok(Worker {
            workflows: |host| Arc::new(host.clone()),
            ..build(config, host, ses, Family::Flow, actions)
        })
    }
}

/// Runs a worker function (what each worker's `main.rs` calls, with its family's builder from
/// [`workers`]).
pub async fn serve_worker(build: BuildWorker) -> Result<(), lambda_runtime::Error> {
    logging();
    let config = Box::pin(sdk_config()).await;
    let host = Box::pin(host(&config)).await?;
    let ses = SesSettings::from_env().map_err(InitError)?;
    let worker = build(&config, host, ses)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration that never reaches AWS: the clients are built, never called.
    fn offline() -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-central-1"))
            .build()
    }

    fn offline_host(config: &aws_config::SdkConfig) -> Host<DynamoStore> {
        let urls = QueueUrls {
            coordinator: "https://sqs.invalid/coordinator.fifo".into(),
            tasks: Default::default(),
        };
        host_with(
            aws_sdk_dynamodb::Client::new(config),
            aws_sdk_sqs::Client::new(config),
            "table",
            urls,
            Arc::new(SystemClock),
        )
    }

    fn ses() -> SesSettings {
        SesSettings {
            sender: "events@eventflow.example".into(),
            notify_domain: "notify.eventflow.example".into(),
        }
    }

    #[test]
    fn each_family_builder_runs_exactly_its_familys_actions() {
        let config = offline();
        let every: Vec<&str> = eventflow_actions::actions(reqwest::Client::new())
            .into_keys()
            .collect();
        for family in Family::ALL {
            let w = worker(&config, offline_host(&config), family, ses()).expect("worker");
            assert_eq!(w.family, family);
            let mut built: Vec<&str> = w.actions.keys().copied().collect();
            built.sort_unstable();
            let mut expected: Vec<&str> =
                every.iter().copied().filter(|a| family.runs(a)).collect();
            expected.sort_unstable();
            assert_eq!(built, expected, "{family:?}");
        }
    }

    #[tokio::test]
    async fn a_worker_other_than_flow_refuses_to_start_runs() {
        let config = offline();
        let w = workers::email(&config, offline_host(&config), ses()).expect("worker");
        let refused = (w.workflows)(&w.host)
            .start("follow-up", &serde_json::json!({}), "key")
            .await
            .expect_err("the email worker starts no runs");
        assert_eq!(refused.name, "NotThisWorker");
        assert!(!refused.retryable);
    }
}
