//! Creating the table, as `infra/README.md` and `template.yaml` declare it.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus,
};

use super::DynamoError;

/// How long [`create_table`] waits for the table and its indexes to become ACTIVE.
const ACTIVE_WITHIN: Duration = Duration::from_secs(120);

fn call(operation: &'static str, table: &str, e: impl std::error::Error) -> DynamoError {
    DynamoError::Call {
        operation,
        table: table.to_owned(),
        message: DisplayErrorContext(e).to_string(),
    }
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, DynamoError> {
    Ok(KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()?)
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, DynamoError> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()?)
}

/// Creates the table `name`: on-demand, keys `pk`/`sk`; the sparse index `due` (`due_shard`,
/// `due_at`, keys only projected); the index `runs` (`runs_pk`, `runs_sk`, projecting
/// `status`, `workflow` and `version`); time to live on `expires_at`. A table that exists
/// already is fine (it is not checked against this layout). Returns once the table and both
/// indexes are ACTIVE.
pub async fn create_table(client: &Client, name: &str) -> Result<(), DynamoError> {
    let due = GlobalSecondaryIndex::builder()
        .index_name("due")
        .key_schema(key("due_shard", KeyType::Hash)?)
        .key_schema(key("due_at", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::KeysOnly)
                .build(),
        )
        .build()?;
    let runs = GlobalSecondaryIndex::builder()
        .index_name("runs")
        .key_schema(key("runs_pk", KeyType::Hash)?)
        .key_schema(key("runs_sk", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .non_key_attributes("status")
                .non_key_attributes("workflow")
                .non_key_attributes("version")
                .build(),
        )
        .build()?;
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(due)
        .global_secondary_indexes(runs);
    for attribute in ["pk", "sk", "due_shard", "due_at", "runs_pk", "runs_sk"] {
        request = request.attribute_definitions(string_attribute(attribute)?);
    }
    match request.send().await {
        Ok(_) => {}
        Err(e) if e.code() == Some("ResourceInUseException") => {}
        Err(e) => return Err(call("CreateTable", name, e)),
    }
    wait_active(client, name).await?;
    let ttl = client
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|e| call("DescribeTimeToLive", name, e))?;
    let status = ttl
        .time_to_live_description()
        .and_then(|d| d.time_to_live_status());
    if !matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ) {
        let spec = TimeToLiveSpecification::builder()
            .attribute_name("expires_at")
            .enabled(true)
            .build()?;
        match client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(spec)
            .send()
            .await
        {
            Ok(_) => {}
            // Two creators at once: the other one enabled it.
            Err(e)
                if e.code() == Some("ValidationException")
                    && e.message().is_some_and(|m| m.contains("already enabled")) => {}
            Err(e) => return Err(call("UpdateTimeToLive", name, e)),
        }
    }
    Ok(())
}

/// Polls DescribeTable until the table and its indexes are ACTIVE.
async fn wait_active(client: &Client, name: &str) -> Result<(), DynamoError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(100);
    loop {
        let out = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| call("DescribeTable", name, e))?;
        let table = out.table();
        let status = table.and_then(|t| t.table_status());
        let indexes_active = table
            .map(|t| t.global_secondary_indexes())
            .unwrap_or_default()
            .iter()
            .all(|i| i.index_status().is_none_or(|s| *s == IndexStatus::Active));
        if status == Some(&TableStatus::Active) && indexes_active {
            return Ok(());
        }
        if started.elapsed() > ACTIVE_WITHIN {
            return Err(DynamoError::NotActive {
                table: name.to_owned(),
                seconds: ACTIVE_WITHIN.as_secs(),
                status: status.map_or_else(|| "unknown".to_owned(), |s| s.as_str().to_owned()),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}
