//! [`ExecutionStore`] and [`TimerStore`] on the table: a run's items share the partition
//! `<t>#EX#<id>` (`CP`, `IN#`, `H#` (its log, see [`super::log`]), `R#`, `TIMER#`); start
//! keys, dependent starts and the `due` and `runs` indexes find the rest.
//!
//! # How a commit is written
//!
//! Each [`Commit`] in turn, in the order given:
//!
//! 1. its start key, with `attribute_not_exists(pk)` (the same execution's key is fine, another
//!    execution's is a conflict: a second start with the key writes nothing);
//! 2. the first part of its log item (its history entries and dispatched attempts), with
//!    `attribute_not_exists(pk)`. A part already there stops a stale writer before it writes
//!    anything: when the checkpoint has reached that sequence number the commit is a
//!    [`StoreError::Conflict`]. When it has not, the part was left by a writer that did not
//!    get to its checkpoint: the same event's (a crash, then the same event applied again) is
//!    written over; another event's is written over only once it is older than
//!    [`ORPHAN_AFTER`] (a writer that crashed), and is a conflict before that (a writer still
//!    committing it). So one writer's log is never overwritten by another's;
//! 3. the log's other parts, input chunks, results, timers and dependent starts put, fired
//!    timers deleted: BatchWriteItem, 25 a call, unprocessed items tried again. An answered
//!    attempt costs no write: the checkpoint no longer waits for it;
//! 4. the checkpoint, with `seq = :expected` (`attribute_not_exists(pk)` for a new run);
//! 5. the dependent starts its new run made, deleted.
//!
//! A crash between 1 and 4 leaves items the checkpoint does not know of: log parts beyond its
//! `seq` (not read: the log is the chain of commits that ends at the checkpoint), idempotent
//! items (keyed by attempt key or timer id) that applying the same events again writes again,
//! and for a new run its start key, naming an execution not yet there (the start applied
//! again, with the same execution id, goes through).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{ReturnValuesOnConditionCheckFailure, WriteRequest};
use chrono::{DateTime, SecondsFormat, Utc};
use eventflow_engine::{Checkpoint, HistoryEntry, RunStatus, StepStatus, Timestamp};
use eventflow_ports::{
    Commit, DependentStart, ExecutionStore, ExecutionSummary, StoreError, StoreResult, Task,
    TimerRecord, TimerStore,
};
use serde_json::Value;

use super::due::DueQuery;
use super::log::log_sk;
use super::{
    DynamoStore, INPUT_CHUNK_BYTES, Item, TASK_DEADLINE, body_item, delete_request, due_at,
    due_shard, is_conditional, key, n, packed_body, put_request, s,
};

/// How old a history entry beyond the checkpoint must be before another event's entry may
/// replace it: a writer takes well under a second from its history to its checkpoint, so an
/// entry this old was left by one that crashed.
pub const ORPHAN_AFTER: Duration = Duration::from_secs(120);

const CP: &str = "CP";

fn input_sk(chunk: usize) -> String {
    format!("IN#{chunk:04}")
}

/// The execution id of an attempt key (`<execution id>/<step>/<item>/<attempt>`).
fn execution_of(attempt_key: &str) -> &str {
    attempt_key.split('/').next().unwrap_or(attempt_key)
}

/// Splits `text` into pieces of at most `max` bytes, on character boundaries.
fn chunks(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        out.push(piece);
        rest = tail;
    }
    out
}

/// The writes of a commit's batch, one per key: a later write of a key replaces an earlier
/// one in place (BatchWriteItem refuses two writes of one key), which leaves what the local
/// store's sequence of inserts and removes leaves.
#[derive(Default)]
struct Writes {
    order: Vec<WriteRequest>,
    at: HashMap<(String, String), usize>,
}

impl Writes {
    fn push(&mut self, pk: &str, sk: &str, request: WriteRequest) {
        match self.at.get(&(pk.to_owned(), sk.to_owned())) {
            Some(&i) => self.order[i] = request,
            None => {
                self.at
                    .insert((pk.to_owned(), sk.to_owned()), self.order.len());
                self.order.push(request);
            }
        }
    }

    fn put(&mut self, pk: &str, sk: &str, item: Item) -> StoreResult<()> {
        self.push(pk, sk, put_request(item)?);
        Ok(())
    }

    fn delete(&mut self, pk: &str, sk: &str) -> StoreResult<()> {
        self.push(pk, sk, delete_request(pk, sk)?);
        Ok(())
    }
}

/// What a due-index query looks for.
#[derive(Clone, Copy)]
enum Due {
    Timers,
    Tasks,
}

impl Due {
    fn shard_prefix(self) -> char {
        match self {
            Due::Timers => 'T',
            Due::Tasks => 'K',
        }
    }

    fn sk_prefix(self) -> &'static str {
        match self {
            Due::Timers => "TIMER#",
            // A run's deadline sits on its checkpoint (see `checkpoint_item`).
            Due::Tasks => CP,
        }
    }
}

impl DynamoStore {
    fn deps_pk(&self) -> String {
        format!("{}#DEPS", self.tenant)
    }

    fn start_key_pk(&self, key: &str) -> String {
        format!("{}#KEY#{key}", self.tenant)
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// Step 2 of a commit: the first part of its log item, refused when another writer's
    /// is there.
    async fn write_log_head(
        &self,
        execution_id: &str,
        head: &HistoryEntry,
        item: Item,
    ) -> StoreResult<()> {
        let pk = self.pk_execution(execution_id);
        let sk = log_sk(head.seq, 0);
        let result = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let existing = match result {
            Ok(_) => return Ok(()),
            Err(e) if is_conditional(&e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                _ => None,
            },
            Err(e) => return Err(self.call_error("PutItem", e)),
        };
        // Emulators may not return the item that failed the condition.
        let existing = match existing {
            Some(item) if !item.is_empty() => item,
            _ => match self.get_item(&pk, &sk).await? {
                Some(item) => item,
                // Gone in between (expired): nothing to protect.
                None => {
                    self.put_item(item).await?;
                    return Ok(());
                }
            },
        };
        self.replace_uncommitted(execution_id, head, item, &existing)
            .await
    }

    /// The log position of `entry` (the first of its commit) is taken by `existing`: a
    /// conflict, unless it is beyond the checkpoint and the same event's or an orphan, which
    /// `item` then replaces.
    async fn replace_uncommitted(
        &self,
        execution_id: &str,
        entry: &HistoryEntry,
        item: Item,
        existing: &Item,
    ) -> StoreResult<()> {
        let stored = self.stored_seq(execution_id).await?;
        if stored.is_some_and(|seq| seq >= entry.seq) {
            return Err(StoreError::Conflict(format!(
                "execution {execution_id}: seq {} is already committed (the checkpoint is at seq {}); re-read the checkpoint and apply the event again",
                entry.seq,
                stored.unwrap_or_default()
            )));
        }
        let their_event = self.attr_s(existing, "event_id")?.to_owned();
        let written_at: i64 = self.attr_n(existing, "written_at").unwrap_or(0);
        let age_ms = self.now_ms().saturating_sub(written_at);
        let orphan = u128::try_from(age_ms).unwrap_or(0) >= ORPHAN_AFTER.as_millis();
        if their_event != entry.event.id && !orphan {
            return Err(StoreError::Conflict(format!(
                "execution {execution_id}: another writer is committing seq {} (event {their_event}); re-read the checkpoint and apply the event again",
                entry.seq
            )));
        }
        let mut update = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .condition_expression("event_id = :event AND written_at = :written")
            .expression_attribute_values(":event", s(their_event));
        update = match existing.get("written_at") {
            Some(w) => update.expression_attribute_values(":written", w.clone()),
            None => update.expression_attribute_values(":written", n(0)),
        };
        match update.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Err(StoreError::Conflict(format!(
                "execution {execution_id}: another writer replaced the uncommitted seq {} first; re-read the checkpoint and apply the event again",
                entry.seq
            ))),
            Err(e) => Err(self.call_error("PutItem", e)),
        }
    }

    /// The checkpoint's `seq`, strongly consistent.
    async fn stored_seq(&self, execution_id: &str) -> StoreResult<Option<u64>> {
        match self.get_item(&self.pk_execution(execution_id), CP).await? {
            Some(item) => self.attr_n(&item, "seq").map(Some),
            None => Ok(None),
        }
    }

    /// Step 1: the start key, once.
    async fn write_start_key(&self, key: &str, execution_id: &str) -> StoreResult<()> {
        let pk = self.start_key_pk(key);
        let mut item = super::key(&pk, "KEY");
        item.insert("execution_id".into(), s(execution_id));
        if self.put_new(item).await? {
            return Ok(());
        }
        match self.execution_for_key(key).await? {
            Some(id) if id == execution_id => Ok(()),
            other => Err(StoreError::Conflict(format!(
                "the start key {key} belongs to execution {}, not {execution_id}",
                other.unwrap_or_else(|| "(gone)".into())
            ))),
        }
    }

    fn timer_item(&self, t: &TimerRecord) -> StoreResult<(String, String, Item)> {
        let pk = self.pk_execution(&t.execution_id);
        let sk = format!("TIMER#{}", t.id());
        let mut item = body_item(&pk, &sk, t)?;
        item.insert("due_shard".into(), s(due_shard('T', &pk, &sk)));
        item.insert("due_at".into(), s(due_at(t.at)));
        Ok((pk, sk, item))
    }

    /// Step 3's items of a commit.
    fn batch_of(&self, c: &Commit) -> StoreResult<Writes> {
        let mut w = Writes::default();
        if let (Some(cp), Some(input)) = (&c.checkpoint, &c.input)
            && !input.is_null()
        {
            let pk = self.pk_execution(&cp.execution_id);
            let json = serde_json::to_string(input).map_err(StoreError::backend)?;
            for (i, piece) in chunks(&json, INPUT_CHUNK_BYTES).into_iter().enumerate() {
                let sk = input_sk(i);
                let mut item = key(&pk, &sk);
                item.insert("body".into(), s(piece));
                w.put(&pk, &sk, item)?;
            }
        }
        for (k, value) in &c.results {
            let pk = self.pk_execution(execution_of(k));
            let sk = format!("R#{k}");
            w.put(&pk, &sk, body_item(&pk, &sk, value)?)?;
        }
        for f in &c.fired {
            w.delete(
                &self.pk_execution(&f.execution_id),
                &format!("TIMER#{}", f.id()),
            )?;
        }
        for t in &c.timers {
            let (pk, sk, item) = self.timer_item(t)?;
            w.put(&pk, &sk, item)?;
        }
        let deps = self.deps_pk();
        for d in &c.dependent_starts {
            let sk = format!("DEP#{}", d.key);
            w.put(&deps, &sk, body_item(&deps, &sk, d)?)?;
        }
        Ok(w)
    }

    fn checkpoint_item(&self, cp: &Checkpoint) -> StoreResult<Item> {
        let pk = self.pk_execution(&cp.execution_id);
        let (name, body) = if cp.input.is_null() {
            packed_body(&pk, CP, cp)?
        } else {
            let mut stored = cp.clone();
            stored.input = Value::Null;
            packed_body(&pk, CP, &stored)?
        };
        let mut item = key(&pk, CP);
        item.insert("seq".into(), n(cp.seq));
        item.insert(name.into(), body);
        item.insert("execution_id".into(), s(&cp.execution_id));
        item.insert("status".into(), s(cp.status.as_str()));
        item.insert("workflow".into(), s(&cp.workflow_id));
        item.insert("version".into(), n(cp.version));
        item.insert("runs_pk".into(), s(format!("{}#RUNS", self.tenant)));
        item.insert(
            "runs_sk".into(),
            s(format!(
                "{}#{}",
                cp.created_at.to_rfc3339_opts(SecondsFormat::Nanos, true),
                cp.execution_id
            )),
        );
        item.insert(
            "updated_at".into(),
            s(cp.updated_at.to_rfc3339_opts(SecondsFormat::Nanos, true)),
        );
        // A run with attempts in flight is in the `due` index at its deadline: if it makes no
        // progress (no checkpoint write) by then, the scheduler sends its attempts again. One
        // index entry a run instead of one per attempt, moved only when its deadline crosses
        // into the next bucket (see `deadline`).
        if in_flight(cp) {
            item.insert("due_shard".into(), s(due_shard('K', &pk, CP)));
            item.insert("due_at".into(), s(due_at(deadline(self.clock.now()))));
        }
        Ok(item)
    }

    /// Step 4: the checkpoint, under its condition.
    async fn write_checkpoint(
        &self,
        cp: &Checkpoint,
        item: Item,
        expected: Option<u64>,
    ) -> StoreResult<()> {
        let mut put = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(seq) => put
                .condition_expression("seq = :expected")
                .expression_attribute_values(":expected", n(seq)),
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => {
                let stored = match e.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(c)) => c
                        .item()
                        .and_then(|i| i.get("seq"))
                        .and_then(|v| v.as_n().ok())
                        .cloned(),
                    _ => None,
                };
                let expected =
                    expected.map_or_else(|| "no checkpoint".into(), |s| format!("seq {s}"));
                let stored = stored.map_or_else(String::new, |s| format!(" (it is at seq {s})"));
                Err(StoreError::Conflict(format!(
                    "execution {}: the commit expected {expected}, the stored checkpoint is not there{stored}; re-read the checkpoint and apply the event again",
                    cp.execution_id
                )))
            }
            Err(e) => Err(self.call_error("PutItem", e)),
        }
    }

    async fn commit_one(&self, c: &Commit) -> StoreResult<()> {
        // Every item is built, and refused when too large, before anything is written.
        // A dispatch is kept only in its commit's log item, next to the history entry of the
        // event that caused it.
        if let Some(t) = c.dispatched.first()
            && (c.checkpoint.is_none() || c.history.is_empty())
        {
            return Err(super::DynamoError::UnloggedDispatch {
                execution_id: t.execution_id.clone(),
                tasks: c.dispatched.len(),
            }
            .into());
        }
        let batch = self.batch_of(c)?;
        let Some(cp) = &c.checkpoint else {
            return self.batch_write(batch.order).await;
        };
        let cp_item = self.checkpoint_item(cp)?;
        let mut log = self
            .log_items(&cp.execution_id, &c.history, &c.dispatched, self.now_ms())?
            .into_iter();
        if let Some(k) = &c.start_key {
            self.write_start_key(k, &cp.execution_id).await?;
        }
        if let (Some(head), Some(entry)) = (log.next(), c.history.first()) {
            self.write_log_head(&cp.execution_id, entry, head).await?;
        }
        let mut writes = log.map(put_request).collect::<StoreResult<Vec<_>>>()?;
        writes.extend(batch.order);
        self.batch_write(writes).await?;
        self.write_checkpoint(cp, cp_item, c.expected_seq).await?;
        if let Some(k) = &c.start_key {
            // The run this start owed exists now. Looked for first: most starts owe nothing,
            // and a read costs a fifth of a delete, which is charged even when it finds none.
            let (pk, sk) = (self.deps_pk(), format!("DEP#{k}"));
            if self.get_item(&pk, &sk).await?.is_some() {
                self.delete_item(&pk, &sk).await?;
            }
        }
        Ok(())
    }

    /// Dependent starts recorded and not yet made (after a crash, or a refused start).
    pub async fn dependent_starts(&self) -> StoreResult<Vec<DependentStart>> {
        let items = self.query_prefix(&self.deps_pk(), "DEP#").await?;
        items.iter().map(|i| self.body(i)).collect()
    }

    /// Forgets a dependent start that can never be made (its workflow refuses it).
    pub async fn drop_dependent_start(&self, key: &str) -> StoreResult<()> {
        self.delete_item(&self.deps_pk(), &format!("DEP#{key}"))
            .await
            .map(drop)
    }

    /// The keys of the `due` entries of `kind` of tenant `owner` (every tenant's when `None`),
    /// due at or before `until` (any time when `None`): at most `want` from each shard,
    /// earliest first within it.
    async fn due_items(
        &self,
        kind: Due,
        until: Option<String>,
        owner: Option<String>,
        want: usize,
    ) -> StoreResult<Vec<Item>> {
        let query = DueQuery {
            until,
            sk_prefix: Some(kind.sk_prefix()),
            pk_prefix: owner,
        };
        self.due_keys(kind.shard_prefix(), query, want).await
    }

    fn owner(&self) -> String {
        format!("{}#EX#", self.tenant)
    }

    fn timers_of(&self, items: &[Item], limit: usize) -> StoreResult<Vec<TimerRecord>> {
        let mut timers = items
            .iter()
            .map(|i| self.body::<TimerRecord>(i))
            .collect::<StoreResult<Vec<_>>>()?;
        timers.sort_by_cached_key(|t| (t.at, t.id()));
        timers.truncate(limit);
        Ok(timers)
    }

    /// The tenant of an item of a run (`<tenant>#EX#<id>`).
    fn tenant_of(&self, item: &Item) -> StoreResult<String> {
        let pk = self.attr_s(item, "pk")?;
        match pk.rfind("#EX#") {
            Some(i) => Ok(pk[..i].to_owned()),
            None => Err(self.malformed(item, "the key names no execution")),
        }
    }

    /// Timers of every tenant due at or before `until`, earliest first, with their tenant:
    /// what the scheduler sweeps (a tenant's store sees only its own, through [`TimerStore`]).
    pub async fn due_timers_of_all_tenants(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<(String, TimerRecord)>> {
        let found = self
            .due_items(Due::Timers, Some(due_at(until)), None, limit)
            .await?;
        let items = self.full_items(&found).await?;
        let mut out = items
            .iter()
            .map(|i| Ok((self.tenant_of(i)?, self.body::<TimerRecord>(i)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        out.sort_by_cached_key(|(_, t)| (t.at, t.id()));
        out.truncate(limit);
        Ok(out)
    }

    /// Runs of every tenant that have attempts in flight and made no progress for
    /// [`TASK_DEADLINE`], with their tenant, at most `limit`.
    pub async fn stuck_runs_of_all_tenants(
        &self,
        limit: usize,
    ) -> StoreResult<Vec<(String, String)>> {
        let now = due_at(self.clock.now());
        let runs = self.due_items(Due::Tasks, Some(now), None, limit).await?;
        runs.iter()
            .map(|run| {
                let tenant = self.tenant_of(run)?;
                let pk = self.attr_s(run, "pk")?;
                let id = pk.strip_prefix(&format!("{tenant}#EX#")).ok_or_else(|| {
                    self.malformed(run, "a run's deadline on a key not `<t>#EX#<id>`")
                })?;
                Ok((tenant, id.to_owned()))
            })
            .collect()
    }

    /// Moves a stuck run's deadline on by [`TASK_DEADLINE`] once its attempts were sent
    /// again, so the next ticks do not send them again and again; a run that made progress
    /// meanwhile (its checkpoint rewritten, perhaps out of the index) is left as it is.
    pub async fn postpone_deadline(&self, execution_id: &str) -> StoreResult<()> {
        let out = self
            .client
            .update_item()
            .table_name(&*self.table)
            .key("pk", s(self.pk_execution(execution_id)))
            .key("sk", s(CP))
            .update_expression("SET due_at = :later")
            .condition_expression("attribute_exists(due_shard) AND due_at <= :now")
            .expression_attribute_values(":later", s(due_at(self.clock.now() + TASK_DEADLINE)))
            .expression_attribute_values(":now", s(due_at(self.clock.now())))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Ok(()),
            Err(e) => Err(self.call_error("UpdateItem", e)),
        }
    }
}

#[async_trait]
impl ExecutionStore for DynamoStore {
    /// DynamoDB offers no cheap transaction across items, so the commits are written one
    /// after the other, each as the module documentation describes: the first that fails
    /// stops the call with its error, and those before it stay written.
    async fn commit(&self, commits: Vec<Commit>) -> StoreResult<()> {
        let mut started = Vec::new();
        let mut failed = None;
        let mut samples = Vec::new();
        for c in &commits {
            if let Err(e) = self.commit_one(c).await {
                failed = Some(e);
                break;
            }
            if let (Some(_), Some(k)) = (&c.checkpoint, &c.start_key) {
                started.push(k.clone());
            }
            samples.extend_from_slice(&c.metrics);
        }
        // The checkpoints are written: a failure here loses figures, and failing the call
        // would not get them back (applying the events again changes nothing).
        if let Err(e) = self.add_metrics(&samples).await {
            tracing::warn!(error = %e, samples = samples.len(), "metric aggregates were not updated");
        }
        // A start recorded by a later commit of the same call than its run's: owed no more.
        for k in started {
            let recorded = commits
                .iter()
                .any(|c| c.dependent_starts.iter().any(|d| d.key == k));
            if recorded {
                self.delete_item(&self.deps_pk(), &format!("DEP#{k}"))
                    .await?;
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn checkpoint(&self, execution_id: &str) -> StoreResult<Option<Checkpoint>> {
        let pk = self.pk_execution(execution_id);
        let Some(item) = self.get_item(&pk, CP).await? else {
            return Ok(None);
        };
        let mut cp: Checkpoint = self.body(&item)?;
        let pieces = self.query_prefix(&pk, "IN#").await?;
        if !pieces.is_empty() {
            let mut json = String::new();
            for p in &pieces {
                json.push_str(self.attr_s(p, "body")?);
            }
            cp.input = serde_json::from_str(&json).map_err(|e| {
                self.malformed(
                    &item,
                    format!("its input ({} chunks) is not JSON: {e}", pieces.len()),
                )
            })?;
        }
        Ok(Some(cp))
    }

    /// The entries up to the checkpoint's `seq`: what lies beyond was written by a commit
    /// whose checkpoint did not follow.
    async fn history(&self, execution_id: &str) -> StoreResult<Vec<HistoryEntry>> {
        let Some(seq) = self.stored_seq(execution_id).await? else {
            return Ok(Vec::new());
        };
        self.logged_history(execution_id, seq).await
    }

    /// Through the `runs` index, oldest first; `updated_at` (not in the index) is read from
    /// the checkpoints with BatchGetItem.
    async fn list(
        &self,
        status: Option<RunStatus>,
        workflow: Option<&str>,
    ) -> StoreResult<Vec<ExecutionSummary>> {
        let mut filters = Vec::new();
        if status.is_some() {
            filters.push("#status = :status");
        }
        if workflow.is_some() {
            filters.push("workflow = :workflow");
        }
        let filter = (!filters.is_empty()).then(|| filters.join(" AND "));
        let mut q = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name("runs")
            .key_condition_expression("runs_pk = :runs")
            .expression_attribute_values(":runs", s(format!("{}#RUNS", self.tenant)))
            .set_filter_expression(filter);
        if let Some(st) = status {
            q = q
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(st.as_str()));
        }
        if let Some(w) = workflow {
            q = q.expression_attribute_values(":workflow", s(w));
        }
        let mut rows = Vec::new();
        self.query_pages(q, |items, _| {
            rows.extend(items);
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        let keys = rows
            .iter()
            .map(|r| Ok((self.attr_s(r, "pk")?.to_owned(), CP.to_owned())))
            .collect::<StoreResult<Vec<_>>>()?;
        let updated: HashMap<String, String> = self
            .batch_get(keys, Some("pk, updated_at"))
            .await?
            .iter()
            .map(|i| {
                Ok((
                    self.attr_s(i, "pk")?.to_owned(),
                    self.attr_s(i, "updated_at")?.to_owned(),
                ))
            })
            .collect::<StoreResult<_>>()?;
        let time = |item: &Item, text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| self.malformed(item, format!("a time `{text}`: {e}")))
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let runs_sk = self.attr_s(r, "runs_sk")?;
            let Some((created, id)) = runs_sk.split_once('#') else {
                return Err(self.malformed(r, "`runs_sk` is not <created_at>#<id>"));
            };
            let status_text = self.attr_s(r, "status")?;
            let status: RunStatus = serde_json::from_value(Value::from(status_text))
                .map_err(|e| self.malformed(r, format!("status `{status_text}`: {e}")))?;
            let created_at = time(r, created)?;
            let updated_at = match updated.get(self.attr_s(r, "pk")?) {
                Some(u) => time(r, u)?,
                None => continue, // removed since the index was read
            };
            out.push(ExecutionSummary {
                execution_id: id.to_owned(),
                workflow_id: self.attr_s(r, "workflow")?.to_owned(),
                version: self.attr_n(r, "version")?,
                status,
                created_at,
                updated_at,
            });
        }
        Ok(out)
    }

    /// Tasks of this tenant dispatched more than [`TASK_DEADLINE`] ago (by the store's clock)
    /// and not answered, found through the `due` index: what a scheduler sends again. Sending
    /// one again in a commit's `dispatched` moves its deadline on.
    /// The attempts of this tenant's runs that made no progress by their deadline.
    async fn pending_tasks(&self) -> StoreResult<Vec<Task>> {
        let now = due_at(self.clock.now());
        let runs = self
            .due_items(Due::Tasks, Some(now), Some(self.owner()), usize::MAX)
            .await?;
        let mut tasks = Vec::new();
        for run in &runs {
            let pk = self.attr_s(run, "pk")?.to_owned();
            let Some(item) = self.get_item(&pk, CP).await? else {
                continue;
            };
            let cp: Checkpoint = self.body(&item)?;
            for logged in self.awaited_tasks(&cp).await? {
                tasks.push(logged.task);
            }
        }
        tasks.sort_by(|a, b| a.key().cmp(b.key()));
        Ok(tasks)
    }

    async fn result(&self, key: &str) -> StoreResult<Option<Value>> {
        let item = self
            .get_item(&self.pk_execution(execution_of(key)), &format!("R#{key}"))
            .await?;
        item.map(|i| self.body(&i)).transpose()
    }

    async fn execution_for_key(&self, key: &str) -> StoreResult<Option<String>> {
        let item = self.get_item(&self.start_key_pk(key), "KEY").await?;
        item.map(|i| self.attr_s(&i, "execution_id").map(str::to_owned))
            .transpose()
    }

    /// One Query of the workflow's metrics partition (see [`super::metrics`]).
    async fn metrics(
        &self,
        workflow_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<eventflow_ports::metrics::Aggregate>> {
        self.read_metrics(workflow_id, from, to).await
    }
}

#[async_trait]
impl TimerStore for DynamoStore {
    /// One Query per shard of the `due` index, at once, merged earliest first.
    async fn due(&self, until: Timestamp, limit: usize) -> StoreResult<Vec<TimerRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let found = self
            .due_items(Due::Timers, Some(due_at(until)), Some(self.owner()), limit)
            .await?;
        self.timers_of(&self.full_items(&found).await?, limit)
    }

    async fn next(&self) -> StoreResult<Option<TimerRecord>> {
        // The earliest of each shard, then the earliest of those.
        let found = self
            .due_items(Due::Timers, None, Some(self.owner()), 1)
            .await?;
        Ok(self.timers_of(&self.full_items(&found).await?, 1)?.pop())
    }
}

/// The deadline of a run with attempts in flight written at `now`: [`TASK_DEADLINE`] on,
/// rounded up to a third of it. Checkpoint writes within one bucket leave the run's `due`
/// entry where it is (an index write only when it moves, at most every five minutes); a run
/// that stops making progress is found between one and four thirds of a deadline later.
fn deadline(now: Timestamp) -> Timestamp {
    let bucket = (TASK_DEADLINE / 3).num_milliseconds().max(1);
    let at = (now + TASK_DEADLINE).timestamp_millis();
    let rounded = (at + bucket - 1).div_euclid(bucket) * bucket;
    DateTime::from_timestamp_millis(rounded).unwrap_or(now + TASK_DEADLINE)
}

/// Whether a run has attempts (or compensations) in flight: a step running or compensating.
fn in_flight(cp: &Checkpoint) -> bool {
    !cp.status.is_terminal()
        && cp
            .steps
            .iter()
            .any(|s| matches!(s.status, StepStatus::Running | StepStatus::Compensating))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_characters_whole_and_bounded() {
        let text = "aé€😀".repeat(1000);
        let pieces = chunks(&text, 7);
        assert!(pieces.iter().all(|p| p.len() <= 7 && !p.is_empty()));
        assert_eq!(pieces.concat(), text);
        assert!(chunks("", 7).is_empty());
    }

    #[test]
    fn a_deadline_moves_only_from_one_bucket_to_the_next() {
        let t = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .expect("time")
        };
        // Every write between 10:00:00.001 and 10:05:00 puts the deadline at 10:20.
        for (written, due) in [
            ("2026-03-01T10:00:00.001Z", "2026-03-01T10:20:00Z"),
            ("2026-03-01T10:04:59Z", "2026-03-01T10:20:00Z"),
            ("2026-03-01T10:05:00Z", "2026-03-01T10:20:00Z"),
            ("2026-03-01T10:05:00.001Z", "2026-03-01T10:25:00Z"),
        ] {
            assert_eq!(deadline(t(written)), t(due), "written at {written}");
        }
        // Never earlier than a deadline after the write, never later than four thirds.
        for ms in (0..600_000).step_by(7_919) {
            let now = t("2026-03-01T10:00:00Z") + chrono::TimeDelta::milliseconds(ms);
            let d = deadline(now) - now;
            assert!(d >= TASK_DEADLINE && d <= TASK_DEADLINE * 4 / 3, "{d}");
        }
    }

    #[test]
    fn an_attempt_key_names_its_execution_first() {
        assert_eq!(execution_of("ex1/a/-/1"), "ex1");
        assert_eq!(execution_of("ex1"), "ex1");
    }
}
