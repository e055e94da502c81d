//! The resources are declared four times: `template.yaml` (what AWS gets), the LocalStack init
//! hook of the Docker path (`localstack/init/ready.d/create-resources.sh`), the script for a
//! session without Docker (`localstack/create_resources.py`) and `dynamo::create_table` (what
//! the tests and emulators use). Here each is held to the template: the Python script and
//! `create_table` by running them against the emulators and describing what they made; the
//! init hook (which runs only inside LocalStack's container, where `awslocal` reaches every
//! service on one endpoint) by reading the resources its commands name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aws_config::BehaviorVersion;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value as Json;
use serde_yaml_ng::Value as Yaml;

/// A table's key schema: (attribute, `HASH` or `RANGE`), in order.
type Keys = Vec<(String, String)>;

/// An index: its keys, its projection type and its projected attributes (sorted).
type Index = (Keys, String, Vec<String>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Queue {
    fifo: bool,
    /// Set (to false) on FIFO queues.
    content_based_deduplication: Option<bool>,
    visibility: u32,
    retention: u32,
    /// The dead-letter queue's name (without `eventflow-<stage>-`) and `maxReceiveCount`.
    redrive: Option<(String, u32)>,
}

/// Everything the four places declare, queues by name without `eventflow-<stage>-`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resources {
    keys: Keys,
    indexes: BTreeMap<String, Index>,
    ttl: String,
    queues: BTreeMap<String, Queue>,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    let path = root().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---- template.yaml ----------------------------------------------------------------------------

/// A scalar, under a CloudFormation tag (`!Sub`, `!GetAtt`) or not.
fn text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        Yaml::Tagged(t) => text(&t.value),
        _ => None,
    }
}

fn keys_of(schema: &Yaml) -> Keys {
    schema
        .as_sequence()
        .expect("a KeySchema list")
        .iter()
        .map(|k| {
            (
                text(&k["AttributeName"]).expect("AttributeName"),
                text(&k["KeyType"]).expect("KeyType"),
            )
        })
        .collect()
}

fn declared() -> Resources {
    let doc: Yaml = serde_yaml_ng::from_str(&read("template.yaml")).expect("template.yaml parses");
    let resources = doc["Resources"].as_mapping().expect("Resources");
    let of_type = |kind: &'static str| {
        resources
            .iter()
            .filter(move |(_, r)| r["Type"].as_str() == Some(kind))
            .map(|(name, r)| (name.as_str().unwrap_or_default().to_owned(), r))
    };
    let (_, table) = of_type("AWS::DynamoDB::Table").next().expect("the table");
    let props = &table["Properties"];
    let indexes = props["GlobalSecondaryIndexes"]
        .as_sequence()
        .expect("indexes")
        .iter()
        .map(|i| {
            let mut attrs: Vec<String> = i["Projection"]["NonKeyAttributes"]
                .as_sequence()
                .map(|a| a.iter().filter_map(text).collect())
                .unwrap_or_default();
            attrs.sort();
            (
                text(&i["IndexName"]).expect("IndexName"),
                (
                    keys_of(&i["KeySchema"]),
                    text(&i["Projection"]["ProjectionType"]).expect("ProjectionType"),
                    attrs,
                ),
            )
        })
        .collect();
    let short = |name: String| {
        name.strip_prefix("eventflow-${Stage}-")
            .unwrap_or_else(|| panic!("queue {name} is not named eventflow-${{Stage}}-..."))
            .to_owned()
    };
    let names: BTreeMap<String, String> = of_type("AWS::SQS::Queue")
        .map(|(logical, q)| {
            let name = text(&q["Properties"]["QueueName"]).expect("QueueName");
            (logical, short(name))
        })
        .collect();
    let queues = of_type("AWS::SQS::Queue")
        .map(|(logical, q)| {
            let p = &q["Properties"];
            let number =
                |v: &Yaml, default: u32| text(v).map_or(default, |t| t.parse().expect("a number"));
            let redrive = p["RedrivePolicy"].as_mapping().map(|_| {
                let target = text(&p["RedrivePolicy"]["deadLetterTargetArn"]).expect("target");
                let dlq = target.strip_suffix(".Arn").expect("!GetAtt <queue>.Arn");
                (
                    names[dlq].clone(),
                    number(&p["RedrivePolicy"]["maxReceiveCount"], 0),
                )
            });
            let fifo = text(&p["FifoQueue"]).as_deref() == Some("true");
            let queue = Queue {
                fifo,
                content_based_deduplication: text(&p["ContentBasedDeduplication"])
                    .map(|t| t == "true"),
                visibility: number(&p["VisibilityTimeout"], 30),
                retention: number(&p["MessageRetentionPeriod"], 345_600),
                redrive,
            };
            (names[&logical].clone(), queue)
        })
        .collect();
    Resources {
        keys: keys_of(&props["KeySchema"]),
        indexes,
        ttl: text(&props["TimeToLiveSpecification"]["AttributeName"]).expect("ttl"),
        queues,
    }
}

// ---- the init hook ----------------------------------------------------------------------------

/// The text of `script` between `after` and the next `until`.
fn between<'a>(script: &'a str, after: &str, until: &str) -> &'a str {
    let start = script
        .find(after)
        .unwrap_or_else(|| panic!("the hook has no `{after}`"))
        + after.len();
    let len = script[start..]
        .find(until)
        .unwrap_or_else(|| panic!("nothing ends `{after}` with `{until}`"));
    &script[start..start + len]
}

fn hook() -> Resources {
    let script = read("localstack/init/ready.d/create-resources.sh");
    let keys = between(&script, "--key-schema ", "\\")
        .split_whitespace()
        .map(|k| {
            let (attr, kind) = k
                .strip_prefix("AttributeName=")
                .and_then(|k| k.split_once(",KeyType="))
                .unwrap_or_else(|| panic!("a key `{k}`"));
            (attr.to_owned(), kind.to_owned())
        })
        .collect();
    let gsis: Json = serde_json::from_str(between(&script, "--global-secondary-indexes '", "'"))
        .expect("the indexes are JSON");
    let indexes = gsis
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| {
            let keys = i["KeySchema"]
                .as_array()
                .expect("keys")
                .iter()
                .map(|k| {
                    (
                        k["AttributeName"].as_str().unwrap_or_default().to_owned(),
                        k["KeyType"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            let mut attrs: Vec<String> = i["Projection"]["NonKeyAttributes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            attrs.sort();
            let kind = i["Projection"]["ProjectionType"]
                .as_str()
                .unwrap_or_default();
            (
                i["IndexName"].as_str().unwrap_or_default().to_owned(),
                (keys, kind.to_owned(), attrs),
            )
        })
        .collect();
    let ttl = between(&script, "Enabled=true,AttributeName=", " ").to_owned();
    let retention: u32 = between(&script, "\"MessageRetentionPeriod\": \"", "\"")
        .parse()
        .expect("retention");
    let max_receives: u32 = between(&script, "maxReceiveCount\\\\\\\": \\\\\\\"", "\\")
        .parse()
        .expect("maxReceiveCount");
    let mut queues = BTreeMap::new();
    for line in script.lines().filter(|l| l.starts_with("queue \"")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let name = words[1]
            .trim_matches('"')
            .strip_prefix("eventflow-$stage-")
            .expect("queue \"eventflow-$stage-...\"");
        let fifo = words.get(3) == Some(&"fifo");
        let suffix = if fifo { ".fifo" } else { "" };
        let dlq = format!("{name}-dlq{suffix}");
        let plain = Queue {
            fifo,
            content_based_deduplication: fifo.then_some(false),
            visibility: 30,
            retention,
            redrive: None,
        };
        queues.insert(
            format!("{name}{suffix}"),
            Queue {
                visibility: words[2].parse().expect("visibility"),
                redrive: Some((dlq.clone(), max_receives)),
                ..plain.clone()
            },
        );
        queues.insert(dlq, plain);
    }
    Resources {
        keys,
        indexes,
        ttl,
        queues,
    }
}

// ---- what the emulators hold ------------------------------------------------------------------

async fn table_of(
    config: &aws_config::SdkConfig,
    table: &str,
) -> (Keys, BTreeMap<String, Index>, String) {
    let ddb = aws_sdk_dynamodb::Client::new(config);
    let described = ddb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .expect("describe table");
    let t = described.table().expect("a table");
    let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| -> Keys {
        schema
            .iter()
            .map(|k| {
                (
                    k.attribute_name().to_owned(),
                    k.key_type().as_str().to_owned(),
                )
            })
            .collect()
    };
    let indexes = t
        .global_secondary_indexes()
        .iter()
        .map(|i| {
            let p = i.projection().expect("a projection");
            let mut attrs = p.non_key_attributes().to_vec();
            attrs.sort();
            (
                i.index_name().unwrap_or_default().to_owned(),
                (
                    keys(i.key_schema()),
                    p.projection_type()
                        .map(|k| k.as_str().to_owned())
                        .unwrap_or_default(),
                    attrs,
                ),
            )
        })
        .collect();
    let ttl = ddb
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .expect("describe ttl")
        .time_to_live_description()
        .and_then(|d| d.attribute_name())
        .unwrap_or_default()
        .to_owned();
    (keys(t.key_schema()), indexes, ttl)
}

async fn queues_of(
    config: &aws_config::SdkConfig,
    stage: &str,
    names: impl Iterator<Item = &String>,
) -> BTreeMap<String, Queue> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let prefix = format!("eventflow-{stage}-");
    let mut by_arn = BTreeMap::new();
    let mut raw = BTreeMap::new();
    for name in names {
        let url = sqs
            .get_queue_url()
            .queue_name(format!("{prefix}{name}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("queue {prefix}{name}: {e:?}"))
            .queue_url()
            .expect("url")
            .to_owned();
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("attributes")
            .attributes()
            .cloned()
            .unwrap_or_default();
        let attr = |a: QueueAttributeName| attrs.get(&a).cloned();
        by_arn.insert(
            attr(QueueAttributeName::QueueArn).expect("arn"),
            name.clone(),
        );
        raw.insert(name.clone(), attrs);
    }
    raw.into_iter()
        .map(|(name, attrs)| {
            let attr = |a: QueueAttributeName| attrs.get(&a).cloned();
            let number = |a: QueueAttributeName| {
                attr(a.clone())
                    .unwrap_or_else(|| panic!("{name} has no {a:?}"))
                    .parse()
                    .expect("a number")
            };
            let redrive = attr(QueueAttributeName::RedrivePolicy).map(|r| {
                let r: Json = serde_json::from_str(&r).expect("a redrive policy");
                let target = r["deadLetterTargetArn"].as_str().expect("target");
                let max = match &r["maxReceiveCount"] {
                    Json::String(s) => s.parse().expect("a count"),
                    n => n
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .expect("a count"),
                };
                (by_arn[target].clone(), max)
            });
            let fifo = attr(QueueAttributeName::FifoQueue).as_deref() == Some("true");
            let queue = Queue {
                fifo,
                content_based_deduplication: attr(QueueAttributeName::ContentBasedDeduplication)
                    .filter(|_| fifo)
                    .map(|v| v == "true"),
                visibility: number(QueueAttributeName::VisibilityTimeout),
                retention: number(QueueAttributeName::MessageRetentionPeriod),
                redrive,
            };
            (name, queue)
        })
        .collect()
}

fn require_emulators() {
    for var in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"] {
        assert!(
            std::env::var(var).is_ok(),
            "{var} is not set: start the emulators with `eval \"$(bash localstack/start.sh)\"` (scripts/test.sh does it)"
        );
    }
}

/// The Python of the emulators' venv (it holds boto3), as `localstack/install.sh` lays it out.
fn emulator_python() -> PathBuf {
    let cache = std::env::var_os("EVENTFLOW_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/eventflow"),
        PathBuf::from,
    );
    cache.join("emulators/localstack-venv/bin/python")
}

#[test]
fn the_docker_init_hook_declares_what_the_template_declares() {
    assert_eq!(hook(), declared());
}

#[tokio::test]
async fn create_resources_py_makes_what_the_template_declares_and_can_run_again() {
    require_emulators();
    let want = declared();
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let stage = format!("py{}", &suffix[suffix.len() - 8..]);
    let mut exports = String::new();
    // Twice: the second run finds everything in place and changes nothing.
    for _ in 0..2 {
        let out = std::process::Command::new(emulator_python())
            .arg(root().join("localstack/create_resources.py"))
            .env("EVENTFLOW_STAGE", &stage)
            .output()
            .expect("create_resources.py runs");
        assert!(
            out.status.success(),
            "create_resources.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        exports = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let table = format!("eventflow-{stage}");
    assert!(
        exports.contains(&format!("export EVENTFLOW_TABLE={table}\n")),
        "{exports}"
    );
    let (keys, indexes, ttl) = table_of(&config, &table).await;
    let queues = queues_of(&config, &stage, want.queues.keys()).await;
    assert_eq!(
        Resources {
            keys,
            indexes,
            ttl,
            queues
        },
        want
    );
    let identities = aws_sdk_ses::Client::new(&config)
        .list_identities()
        .send()
        .await
        .expect("identities");
    assert!(
        identities
            .identities()
            .iter()
            .any(|i| i == "events@eventflow.example")
    );
}

#[tokio::test]
async fn create_table_makes_the_table_the_template_declares() {
    require_emulators();
    let want = declared();
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let suffix = uuid::Uuid::now_v7().simple().to_string();
    let table = format!("eventflow-rs{}", &suffix[suffix.len() - 8..]);
    eventflow_aws::dynamo::create_table(&aws_sdk_dynamodb::Client::new(&config), &table)
        .await
        .expect("create the table");
    assert_eq!(
        table_of(&config, &table).await,
        (want.keys, want.indexes, want.ttl)
    );
}
