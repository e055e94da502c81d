//! The resources of one test on the emulators (`bash localstack/start.sh`): its own table and
//! queues, named with a random suffix so tests run side by side, created the way
//! `template.yaml` declares them (FIFO coordinator queue, a standard queue per family, a
//! dead-letter queue each with `maxReceiveCount`).

use std::collections::HashMap;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sqs::types::QueueAttributeName;
use eventflow_aws::messages::Family;
use eventflow_aws::sqs::QueueUrls;

use std::sync::Arc;

use super::events::{EventSource, PollStats};
use super::meter::{IndexSpec, Meter};

/// The sender identity verified in the emulator's SES.
pub(crate) const SENDER: &str = "events@eventflow.example";

/// A test's table and queues.
#[derive(Debug, Clone)]
pub(crate) struct TestEnv {
    pub(crate) config: SdkConfig,
    pub(crate) table: String,
    pub(crate) urls: QueueUrls,
    /// Queue URL to ARN, and each queue's dead-letter queue URL.
    pub(crate) arns: HashMap<String, String>,
    pub(crate) dlqs: HashMap<String, String>,
    /// What every event source of this test did.
    pub(crate) stats: Arc<PollStats>,
    /// What the calls of the clients below cost.
    pub(crate) meter: Meter,
}

fn require_emulators() {
    for var in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"] {
        assert!(
            std::env::var(var).is_ok(),
            "{var} is not set: start the emulators with `eval \"$(bash localstack/start.sh)\"` (scripts/test.sh does it)"
        );
    }
}

async fn queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    fifo: bool,
    max_receives: u32,
) -> (String, String, String) {
    let arn_of = async |url: &str| {
        sqs.get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("attributes")
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("arn")
    };
    let suffix = if fifo { ".fifo" } else { "" };
    let mut dlq = sqs.create_queue().queue_name(format!("{name}-dlq{suffix}"));
    if fifo {
        dlq = dlq.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let dlq_url = dlq
        .send()
        .await
        .expect("dlq")
        .queue_url()
        .expect("url")
        .to_owned();
    let dlq_arn = arn_of(&dlq_url).await;
    let redrive =
        format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receives}"}}"#);
    let mut q = sqs
        .create_queue()
        .queue_name(format!("{name}{suffix}"))
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .attributes(QueueAttributeName::VisibilityTimeout, "30");
    if fifo {
        q = q.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let url = q
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_owned();
    let arn = arn_of(&url).await;
    (url, arn, dlq_url)
}

/// Creates a table and the queues for one test.
pub(crate) async fn test_env(max_receives: u32) -> TestEnv {
    require_emulators();
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let suffix = &suffix[suffix.len() - 10..];
    let table = format!("eventflow-test-{suffix}");
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    eventflow_aws::dynamo::create_table(&ddb, &table)
        .await
        .expect("table");
    let sqs = aws_sdk_sqs::Client::new(&config);
    let mut arns = HashMap::new();
    let mut dlqs = HashMap::new();
    let (coordinator, arn, dlq) =
        queue(&sqs, &format!("t-{suffix}-coordinator"), true, max_receives).await;
    arns.insert(coordinator.clone(), arn);
    dlqs.insert(coordinator.clone(), dlq);
    let mut tasks = HashMap::new();
    for f in Family::ALL {
        let (url, arn, dlq) = queue(
            &sqs,
            &format!("t-{suffix}-tasks-{}", f.name()),
            false,
            max_receives,
        )
        .await;
        arns.insert(url.clone(), arn);
        dlqs.insert(url.clone(), dlq);
        tasks.insert(f.name(), url);
    }
    let meter = Meter::new(indexes(&ddb, &table).await);
    aws_sdk_ses::Client::new(&config)
        .verify_email_identity()
        .email_address(SENDER)
        .send()
        .await
        .expect("verify sender");
    TestEnv {
        config,
        table,
        urls: QueueUrls { coordinator, tasks },
        arns,
        dlqs,
        stats: Arc::new(PollStats::default()),
        meter,
    }
}

/// The indexes of `table`, as DynamoDB describes them.
async fn indexes(ddb: &aws_sdk_dynamodb::Client, table: &str) -> Vec<IndexSpec> {
    use aws_sdk_dynamodb::types::ProjectionType;
    let out = ddb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .expect("describe table");
    out.table()
        .map(|t| t.global_secondary_indexes())
        .unwrap_or_default()
        .iter()
        .map(|ix| {
            let projection = ix.projection();
            IndexSpec {
                keys: ix
                    .key_schema()
                    .iter()
                    .map(|k| k.attribute_name().to_owned())
                    .collect(),
                projected: match projection.and_then(|p| p.projection_type()) {
                    Some(ProjectionType::All) => None,
                    _ => Some(
                        projection
                            .map(|p| p.non_key_attributes().to_vec())
                            .unwrap_or_default(),
                    ),
                },
            }
        })
        .collect()
}

impl TestEnv {
    /// A DynamoDB client whose calls the meter bills.
    pub(crate) fn dynamo(&self) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::from(&self.config)
            .interceptor(self.meter.clone())
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// An SQS client whose calls the meter bills.
    pub(crate) fn sqs(&self) -> aws_sdk_sqs::Client {
        let config = aws_sdk_sqs::config::Builder::from(&self.config)
            .interceptor(self.meter.clone())
            .build();
        aws_sdk_sqs::Client::from_conf(config)
    }

    /// The queue at `url`, polled like an event source mapping.
    pub(crate) fn source(&self, url: &str, visibility: i32) -> EventSource {
        EventSource {
            client: self.sqs(),
            url: url.to_owned(),
            arn: self.arns.get(url).cloned().unwrap_or_default(),
            visibility,
            stats: Arc::clone(&self.stats),
        }
    }

    /// Messages waiting in the dead-letter queue of the queue at `url`.
    pub(crate) async fn dead_letters(&self, url: &str) -> usize {
        let dlq = self.dlqs.get(url).expect("dlq");
        let out = aws_sdk_sqs::Client::new(&self.config)
            .get_queue_attributes()
            .queue_url(dlq)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .expect("attributes");
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}
