//! The ports on one DynamoDB table, laid out as `infra/README.md` describes.
//!
//! [`DynamoStore`] implements [`VersionStore`], [`ExecutionStore`], [`TimerStore`],
//! [`TenantStore`] and [`RecordStore`] for one tenant: every key it reads or writes starts with
//! that tenant, so a tenant's store can only name its own items. [`create_table`] creates the
//! table (both indexes, time to live) for tests and emulators; in AWS the stack does.
//!
//! Item bodies are JSON in a string attribute. No item may exceed DynamoDB's 400 KB: a run's
//! input is split in 300 KB chunks, and any other body over 350 KB is refused with
//! [`DynamoError::ItemTooLarge`] (never truncated).
//!
//! [`VersionStore`]: eventflow_ports::VersionStore
//! [`ExecutionStore`]: eventflow_ports::ExecutionStore
//! [`TimerStore`]: eventflow_ports::TimerStore
//! [`TenantStore`]: eventflow_ports::TenantStore
//! [`RecordStore`]: eventflow_ports::RecordStore

mod due;
mod executions;
mod log;
mod metrics;
mod records;
mod run_items;
mod schedules;
mod table;
mod versions;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use chrono::{SecondsFormat, Utc};
use eventflow_engine::Timestamp;
use eventflow_ports::{Clock, StoreError, StoreResult};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use executions::ORPHAN_AFTER;
pub use table::create_table;

/// An item's attributes.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// The largest body of an item other than an input chunk: DynamoDB's limit is 400 KB for the
/// whole item, names and other attributes included.
pub const MAX_BODY_BYTES: usize = 350 * 1024;
/// The size of a run's input chunks (`IN#<n>` items).
pub const INPUT_CHUNK_BYTES: usize = 300 * 1024;
/// Shards of the `due` index (`T00`..`T15` for timers, `K00`..`K15` for the deadlines of runs
/// with attempts in flight,
/// `S00`..`S15` for schedules and planned runs).
pub const DUE_SHARDS: u32 = 16;
/// How long a dispatched task may stay unanswered before [`eventflow_ports::ExecutionStore::pending_tasks`]
/// returns it for redelivery.
pub const TASK_DEADLINE: chrono::Duration = chrono::Duration::minutes(15);

/// Items per BatchWriteItem call (DynamoDB's limit).
const BATCH_WRITE_ITEMS: usize = 25;
/// Keys per BatchGetItem call (DynamoDB's limit).
const BATCH_GET_KEYS: usize = 100;
/// Calls of BatchWriteItem (or BatchGetItem) for one chunk before its unprocessed part is
/// given up as unavailable.
const BATCH_ATTEMPTS: u32 = 8;

/// A failure of the DynamoDB store that is not a lost race (those are
/// [`StoreError::Conflict`]). Converted into [`StoreError::Backend`] or, for what is worth
/// trying again, [`StoreError::Unavailable`].
#[derive(Debug, thiserror::Error)]
pub enum DynamoError {
    /// A call to DynamoDB failed.
    #[error("DynamoDB {operation} on table {table} failed: {message}")]
    Call {
        operation: &'static str,
        table: String,
        message: String,
    },
    /// An item would be larger than an item may be.
    #[error(
        "the item {item} would hold a body of {size} bytes, over the {limit} bytes allowed (DynamoDB refuses items over 400 KB); nothing was truncated and nothing of it was written"
    )]
    ItemTooLarge {
        item: String,
        size: usize,
        limit: usize,
    },
    /// An item read back does not have the shape this store writes.
    #[error("the item {item} in table {table} is malformed: {reason}")]
    Malformed {
        item: String,
        table: String,
        reason: String,
    },
    /// Attempts dispatched by a commit with no history entry to log them with (a host bug:
    /// the engine records every dispatch with the event that caused it).
    #[error(
        "execution {execution_id}: {tasks} attempts dispatched by a commit without history entries; nothing was written"
    )]
    UnloggedDispatch { execution_id: String, tasks: usize },
    /// A request could not be built (a bug in this module).
    #[error("cannot build a DynamoDB request: {0}")]
    Build(#[from] aws_sdk_dynamodb::error::BuildError),
    /// The table did not become usable in time.
    #[error("the table {table} is not ACTIVE after {seconds} s (status {status})")]
    NotActive {
        table: String,
        seconds: u64,
        status: String,
    },
}

impl From<DynamoError> for StoreError {
    fn from(e: DynamoError) -> Self {
        StoreError::backend(e)
    }
}

/// Error codes DynamoDB answers when another try may succeed.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
];

/// Whether a failed call is a condition that did not hold.
fn is_conditional<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

/// The time of the host, for task deadlines.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Utc::now()
    }
}

/// The ports of one tenant on one DynamoDB table. Cheap to clone: the client and the table
/// name are shared.
///
/// A tenant name should not contain `#`, which separates the parts of a key.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: Arc<str>,
    tenant: String,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl DynamoStore {
    /// The store of `tenant` on `table`, reading the time (for task deadlines) from the
    /// system clock.
    pub fn new(client: Client, table: impl Into<String>, tenant: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: Arc::from(table.into()),
            tenant: tenant.into(),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same table and client for another tenant.
    pub fn for_tenant(&self, tenant: impl Into<String>) -> Self {
        DynamoStore {
            tenant: tenant.into(),
            ..self.clone()
        }
    }

    /// Reads the time from `clock` (task deadlines are set and checked against it).
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        DynamoStore { clock, ..self }
    }

    /// The tenant whose items this store reads and writes.
    pub fn tenant_name(&self) -> &str {
        &self.tenant
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The client, for what this module does not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    // ---- keys -------------------------------------------------------------------------------

    fn pk_execution(&self, execution_id: &str) -> String {
        format!("{}#EX#{execution_id}", self.tenant)
    }

    fn pk_workflow(&self, workflow_id: &str) -> String {
        format!("{}#WF#{workflow_id}", self.tenant)
    }

    // ---- errors -----------------------------------------------------------------------------

    /// A failed call as a [`StoreError`]: throttling and network trouble are
    /// [`StoreError::Unavailable`], the rest [`StoreError::Backend`].
    fn call_error<E, R>(&self, operation: &'static str, e: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let transient = matches!(
            e,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ) || e.code().is_some_and(|c| TRANSIENT_CODES.contains(&c));
        let message = match (e.code(), e.message()) {
            (Some(code), Some(text)) => format!("{code}: {text}"),
            (Some(code), None) => code.to_owned(),
            _ => DisplayErrorContext(&e).to_string(),
        };
        if transient {
            StoreError::Unavailable(format!(
                "DynamoDB {operation} on table {} failed, worth another try: {message}",
                self.table
            ))
        } else {
            DynamoError::Call {
                operation,
                table: self.table.to_string(),
                message,
            }
            .into()
        }
    }

    fn malformed(&self, item: &Item, reason: impl Into<String>) -> StoreError {
        DynamoError::Malformed {
            item: describe(item),
            table: self.table.to_string(),
            reason: reason.into(),
        }
        .into()
    }

    // ---- reading attributes -----------------------------------------------------------------

    fn attr_s<'a>(&self, item: &'a Item, name: &str) -> StoreResult<&'a str> {
        match item.get(name) {
            Some(AttributeValue::S(s)) => Ok(s),
            _ => Err(self.malformed(item, format!("no string attribute `{name}`"))),
        }
    }

    fn attr_n<T: std::str::FromStr>(&self, item: &Item, name: &str) -> StoreResult<T> {
        match item.get(name) {
            Some(AttributeValue::N(n)) => n
                .parse()
                .map_err(|_| self.malformed(item, format!("`{name}` is not a number: {n}"))),
            _ => Err(self.malformed(item, format!("no number attribute `{name}`"))),
        }
    }

    fn attr_json<T: DeserializeOwned>(&self, item: &Item, name: &str) -> StoreResult<T> {
        let s = self.attr_s(item, name)?;
        serde_json::from_str(s)
            .map_err(|e| self.malformed(item, format!("`{name}` is not the JSON expected: {e}")))
    }

    /// An item's body: `zbody` (deflated JSON, see [`packed_body`]) or `body` (JSON).
    fn body<T: DeserializeOwned>(&self, item: &Item) -> StoreResult<T> {
        let Some(AttributeValue::B(z)) = item.get("zbody") else {
            return self.attr_json(item, "body");
        };
        let json =
            miniz_oxide::inflate::decompress_to_vec_with_limit(z.as_ref(), MAX_INFLATED_BYTES)
                .map_err(|e| self.malformed(item, format!("`zbody` does not inflate: {e}")))?;
        serde_json::from_slice(&json)
            .map_err(|e| self.malformed(item, format!("`zbody` is not the JSON expected: {e}")))
    }

    // ---- calls ------------------------------------------------------------------------------

    /// GetItem, strongly consistent.
    async fn get_item(&self, pk: &str, sk: &str) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&*self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.call_error("GetItem", e))?;
        Ok(out.item)
    }

    /// PutItem without a condition; returns the item it replaced.
    async fn put_item(&self, item: Item) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.call_error("PutItem", e))?;
        Ok(out.attributes.filter(|a| !a.is_empty()))
    }

    /// PutItem only where no item has the key: `false` when one does.
    async fn put_new(&self, item: Item) -> StoreResult<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional(&e) => Ok(false),
            Err(e) => Err(self.call_error("PutItem", e)),
        }
    }

    /// DeleteItem; returns the item it removed.
    async fn delete_item(&self, pk: &str, sk: &str) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .delete_item()
            .table_name(&*self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.call_error("DeleteItem", e))?;
        Ok(out.attributes.filter(|a| !a.is_empty()))
    }

    /// Sends `query` page after page, handing each page's items to `take` with whether it is
    /// the last page, until `take` breaks or the pages end.
    async fn query_pages(
        &self,
        query: QueryFluentBuilder,
        mut take: impl FnMut(Vec<Item>, bool) -> StoreResult<ControlFlow<()>>,
    ) -> StoreResult<()> {
        let mut start = None;
        loop {
            let page = query
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.call_error("Query", e))?;
            start = page.last_evaluated_key.filter(|k| !k.is_empty());
            let last = start.is_none();
            if take(page.items.unwrap_or_default(), last)?.is_break() || last {
                return Ok(());
            }
        }
    }

    /// Every item of partition `pk` (whose sort key lies in `from..=to` when a range is
    /// given), in order (strongly consistent, all pages, or the first `limit`).
    async fn query_range(
        &self,
        pk: &str,
        range: Option<(&str, &str)>,
        forward: bool,
        limit: Option<i32>,
    ) -> StoreResult<Vec<Item>> {
        let mut q = self
            .client
            .query()
            .table_name(&*self.table)
            .expression_attribute_values(":pk", s(pk));
        q = match range {
            Some((from, to)) => q
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":from", s(from))
                .expression_attribute_values(":to", s(to)),
            None => q.key_condition_expression("pk = :pk"),
        };
        let q = q
            .consistent_read(true)
            .scan_index_forward(forward)
            .set_limit(limit);
        let most = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let mut out = Vec::new();
        self.query_pages(q, |items, _| {
            out.extend(items);
            Ok(if out.len() >= most {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })
        .await?;
        Ok(out)
    }

    /// Every item of partition `pk` whose sort key starts with `prefix`, in order.
    async fn query_prefix(&self, pk: &str, prefix: &str) -> StoreResult<Vec<Item>> {
        if prefix.is_empty() {
            return self.query_range(pk, None, true, None).await;
        }
        let to = format!("{prefix}\u{10FFFF}");
        self.query_range(pk, Some((prefix, &to)), true, None).await
    }

    /// Writes (puts and deletes) with BatchWriteItem, 25 a call, trying what DynamoDB leaves
    /// unprocessed again with a growing pause. Not atomic: each item is written once at least
    /// when this returns `Ok`.
    async fn batch_write(&self, writes: Vec<WriteRequest>) -> StoreResult<()> {
        let mut writes = writes.into_iter().peekable();
        while writes.peek().is_some() {
            let mut chunk: Vec<WriteRequest> = writes.by_ref().take(BATCH_WRITE_ITEMS).collect();
            let mut attempt = 0;
            while !chunk.is_empty() {
                attempt += 1;
                if attempt > 1 {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(self.table.to_string(), chunk)
                    .send()
                    .await
                    .map_err(|e| self.call_error("BatchWriteItem", e))?;
                chunk = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&*self.table))
                    .unwrap_or_default();
                if !chunk.is_empty() && attempt >= BATCH_ATTEMPTS {
                    return Err(StoreError::Unavailable(format!(
                        "DynamoDB left {} items of a BatchWriteItem on table {} unprocessed after {attempt} calls; try again later",
                        chunk.len(),
                        self.table
                    )));
                }
            }
        }
        Ok(())
    }

    /// Reads items by key with BatchGetItem (strongly consistent), 100 keys a call, retrying
    /// unprocessed keys. Order is not kept; missing items are left out.
    async fn batch_get(
        &self,
        keys: Vec<(String, String)>,
        projection: Option<&str>,
    ) -> StoreResult<Vec<Item>> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut out = Vec::new();
        for chunk in keys.chunks(BATCH_GET_KEYS) {
            let mut pending: Vec<Item> =
                chunk.iter().map(|(pk, sk)| key(pk, sk)).collect::<Vec<_>>();
            let mut attempt = 0;
            while !pending.is_empty() {
                attempt += 1;
                if attempt > 1 {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .set_projection_expression(projection.map(str::to_owned))
                    .build()
                    .map_err(DynamoError::from)?;
                let result = self
                    .client
                    .batch_get_item()
                    .request_items(self.table.to_string(), request)
                    .send()
                    .await
                    .map_err(|e| self.call_error("BatchGetItem", e))?;
                if let Some(mut r) = result.responses
                    && let Some(items) = r.remove(&*self.table)
                {
                    out.extend(items);
                }
                pending = result
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&*self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                if !pending.is_empty() && attempt >= BATCH_ATTEMPTS {
                    return Err(StoreError::Unavailable(format!(
                        "DynamoDB left {} keys of a BatchGetItem on table {} unprocessed after {attempt} calls; try again later",
                        pending.len(),
                        self.table
                    )));
                }
            }
        }
        Ok(out)
    }
}

/// The pause before call `attempt` (2 and on) of a batch: 50 ms doubling, at most 2 s.
fn backoff(attempt: u32) -> Duration {
    let ms = 50u64.saturating_mul(1 << attempt.saturating_sub(2).min(6));
    Duration::from_millis(ms.min(2_000))
}

// ---- building items -----------------------------------------------------------------------

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn key(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// `pk/sk` of an item, for messages.
pub(crate) fn describe(item: &Item) -> String {
    let part = |k: &str| match item.get(k) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => "?".to_owned(),
    };
    format!("{}/{}", part("pk"), part("sk"))
}

/// The JSON of `value` as the `body` of the item `pk/sk`, refused when over `limit` bytes.
pub(crate) fn body_json<T: Serialize + ?Sized>(
    pk: &str,
    sk: &str,
    value: &T,
) -> StoreResult<String> {
    let json = serde_json::to_string(value).map_err(StoreError::backend)?;
    check_size(pk, sk, json.len())?;
    Ok(json)
}

/// Bodies longer than this are kept deflated: a write unit is 1 KB (of the whole item, its
/// keys and other attributes included), and the JSON of a checkpoint or a log item deflates
/// to a third of its size or less; shorter ones gain too little.
const DEFLATE_OVER: usize = 400;
/// The most a deflated body may inflate to.
const MAX_INFLATED_BYTES: usize = 64 * 1024 * 1024;

/// The body attribute of the item `pk/sk` holding `value`: `body`, its JSON, when that is short;
/// `zbody`, its JSON deflated (binary), when longer. Refused when what would be stored is over
/// [`MAX_BODY_BYTES`]. For the items rewritten at every step (checkpoints, log items), where
/// the bytes are the write units paid.
pub(crate) fn packed_body<T: Serialize + ?Sized>(
    pk: &str,
    sk: &str,
    value: &T,
) -> StoreResult<(&'static str, AttributeValue)> {
    packed_json(
        pk,
        sk,
        serde_json::to_string(value).map_err(StoreError::backend)?,
    )
}

/// [`packed_body`] of a body already serialized.
pub(crate) fn packed_json(
    pk: &str,
    sk: &str,
    json: String,
) -> StoreResult<(&'static str, AttributeValue)> {
    if json.len() <= DEFLATE_OVER {
        check_size(pk, sk, json.len())?;
        return Ok(("body", AttributeValue::S(json)));
    }
    let z = miniz_oxide::deflate::compress_to_vec(json.as_bytes(), 6);
    check_size(pk, sk, z.len())?;
    Ok((
        "zbody",
        AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(z)),
    ))
}

pub(crate) fn check_size(pk: &str, sk: &str, size: usize) -> StoreResult<()> {
    if size > MAX_BODY_BYTES {
        return Err(DynamoError::ItemTooLarge {
            item: format!("{pk}/{sk}"),
            size,
            limit: MAX_BODY_BYTES,
        }
        .into());
    }
    Ok(())
}

/// An item with `pk`, `sk` and a JSON `body`.
pub(crate) fn body_item<T: Serialize + ?Sized>(pk: &str, sk: &str, value: &T) -> StoreResult<Item> {
    let mut item = key(pk, sk);
    item.insert("body".into(), s(body_json(pk, sk, value)?));
    Ok(item)
}

pub(crate) fn put_request(item: Item) -> StoreResult<WriteRequest> {
    let put = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .map_err(DynamoError::from)?;
    Ok(WriteRequest::builder().put_request(put).build())
}

pub(crate) fn delete_request(pk: &str, sk: &str) -> StoreResult<WriteRequest> {
    let delete = DeleteRequest::builder()
        .set_key(Some(key(pk, sk)))
        .build()
        .map_err(DynamoError::from)?;
    Ok(WriteRequest::builder().delete_request(delete).build())
}

/// A time as the `due` index sorts it: RFC 3339, UTC, milliseconds.
pub(crate) fn due_at(t: Timestamp) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The shard (`<prefix>00`..`<prefix>15`) of an item, by a stable hash of its key.
pub(crate) fn due_shard(prefix: char, pk: &str, sk: &str) -> String {
    // FNV-1a: stable across processes and builds.
    let mut h: u32 = 0x811c_9dc5;
    for b in pk.bytes().chain([0]).chain(sk.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{prefix}{:02}", h % DUE_SHARDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_sort_as_strings_in_time_order() {
        let a = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.6Z")
            .map(|t| t.with_timezone(&Utc));
        let b = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.61Z")
            .map(|t| t.with_timezone(&Utc));
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("times parse")
        };
        assert_eq!(due_at(a), "2026-01-02T03:04:05.600Z");
        assert!(due_at(a) < due_at(b));
    }

    #[test]
    fn shards_spread_over_sixteen() {
        let shards: std::collections::BTreeSet<String> = (0..1000)
            .map(|i| due_shard('T', "t#EX#x", &format!("TIMER#{i}")))
            .collect();
        assert_eq!(shards.len(), 16);
        assert!(shards.iter().all(|s| s.len() == 3 && s.starts_with('T')));
    }

    #[test]
    fn a_body_over_the_limit_is_refused_with_its_item_and_size() {
        let big = "x".repeat(MAX_BODY_BYTES);
        let err = body_item("t#EX#1", "H#000000000001", &big).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("t#EX#1/H#000000000001"), "{msg}");
        assert!(
            msg.contains(&format!("{} bytes", MAX_BODY_BYTES + 2)),
            "{msg}"
        );
    }

    #[test]
    fn backoff_grows_and_stops_at_two_seconds() {
        assert_eq!(backoff(2), Duration::from_millis(50));
        assert_eq!(backoff(3), Duration::from_millis(100));
        assert_eq!(backoff(20), Duration::from_millis(2_000));
    }
}
