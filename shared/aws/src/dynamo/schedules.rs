//! [`ScheduleStore`] on the table: schedules and planned event-relative runs.
//!
//! | item | pk | sk | attributes |
//! | --- | --- | --- | --- |
//! | schedule | `<t>#SCHED` | `<schedule id>` | `kind` = `schedule`, `body` (the engine's `Schedule`), `rev`; `due_shard`/`due_at` = `next_due` while unpaused and not exhausted |
//! | planned run | `<t>#SCHED` | `<schedule id>#RUN#<run key>` | `kind` = `planned`, `body` (a [`PlannedEntry`]), `due_shard`/`due_at` = its instant |
//!
//! Their shards of the `due` index are `S00`..`S15`, which the timer (`T`) and task-deadline
//! (`K`) sweeps never query (each sweep queries only its own letter's shards), so neither sees
//! the other's items. A schedule leaves the index by being written without the two attributes.

use async_trait::async_trait;
use eventflow_engine::Timestamp;
use eventflow_ports::{StoreError, StoreResult};
use serde_json::Value;

use super::due::DueQuery;
use super::{
    DynamoStore, Item, body_item, delete_request, due_at, due_shard, is_conditional, n,
    put_request, s,
};
use crate::schedules::{DueItem, ScheduleStore, Stored};
use eventflow_engine::schedule::{PlannedEntry, Schedule};

/// The letter of the schedules' shards of the `due` index.
const SHARD_PREFIX: char = 'S';
const KIND_SCHEDULE: &str = "schedule";
const KIND_PLANNED: &str = "planned";

fn run_sk(schedule_id: &str, key: &str) -> String {
    format!("{schedule_id}#RUN#{key}")
}

impl DynamoStore {
    fn pk_schedules(&self) -> String {
        format!("{}#SCHED", self.tenant)
    }

    fn kind_of(&self, item: &Item) -> StoreResult<String> {
        self.attr_s(item, "kind").map(str::to_owned)
    }

    fn stored_of(&self, item: &Item) -> StoreResult<Stored> {
        Ok(Stored {
            schedule: self.body(item)?,
            rev: self.attr_n(item, "rev")?,
        })
    }

    fn planned_item(&self, entry: &PlannedEntry) -> StoreResult<Item> {
        let pk = self.pk_schedules();
        let sk = run_sk(&entry.schedule_id, &entry.run.key);
        let mut item = body_item(&pk, &sk, entry)?;
        item.insert("kind".into(), s(KIND_PLANNED));
        item.insert("due_shard".into(), s(due_shard(SHARD_PREFIX, &pk, &sk)));
        item.insert("due_at".into(), s(due_at(entry.run.fire_at)));
        Ok(item)
    }

    /// Schedules and planned runs of every tenant due at or before `until`, earliest first,
    /// with their tenant, at most `limit`: what the scheduler fires.
    pub async fn due_schedules_of_all_tenants(
        &self,
        until: Timestamp,
        limit: usize,
    ) -> StoreResult<Vec<(String, DueItem)>> {
        let until = due_at(until);
        let query = DueQuery {
            until: Some(until.clone()),
            ..DueQuery::default()
        };
        let keys = self.due_keys(SHARD_PREFIX, query, limit).await?;
        let found = self.full_items(&keys).await?;
        let mut out = Vec::with_capacity(found.len());
        for item in &found {
            // Moved on since the index was read (fired meanwhile): not due.
            if self
                .attr_s(item, "due_at")
                .is_ok_and(|at| at > until.as_str())
            {
                continue;
            }
            let pk = self.attr_s(item, "pk")?;
            let Some(tenant) = pk.strip_suffix("#SCHED") else {
                return Err(self.malformed(item, "the key names no tenant's schedules"));
            };
            let at = self.attr_s(item, "due_at")?.to_owned();
            let due = match self.kind_of(item)?.as_str() {
                KIND_SCHEDULE => DueItem::Schedule(self.body(item)?),
                KIND_PLANNED => DueItem::Planned(self.body(item)?),
                other => {
                    return Err(self.malformed(item, format!("unknown schedule item kind {other}")));
                }
            };
            out.push((at, tenant.to_owned(), due));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.truncate(limit);
        Ok(out.into_iter().map(|(_, t, d)| (t, d)).collect())
    }
}

#[async_trait]
impl ScheduleStore for DynamoStore {
    /// One Query of the tenant's schedule partition (planned runs are read and left out).
    async fn schedules(&self) -> StoreResult<Vec<Stored>> {
        let items = self.query_prefix(&self.pk_schedules(), "").await?;
        let mut out = Vec::new();
        for item in &items {
            if self.kind_of(item)? == KIND_SCHEDULE {
                out.push(self.stored_of(item)?);
            }
        }
        Ok(out)
    }

    async fn schedule(&self, id: &str) -> StoreResult<Option<Stored>> {
        self.get_item(&self.pk_schedules(), id)
            .await?
            .map(|item| self.stored_of(&item))
            .transpose()
    }

    /// One PutItem under `attribute_not_exists(pk)` or `rev = :rev`.
    async fn put_schedule(&self, schedule: &Schedule, rev: Option<u64>) -> StoreResult<()> {
        let pk = self.pk_schedules();
        let sk = schedule.id.as_str();
        let mut item = body_item(&pk, sk, schedule)?;
        item.insert("kind".into(), s(KIND_SCHEDULE));
        item.insert("rev".into(), n(rev.map_or(1, |r| r.saturating_add(1))));
        if !schedule.paused
            && let Some(next) = schedule.next_due
        {
            item.insert("due_shard".into(), s(due_shard(SHARD_PREFIX, &pk, sk)));
            item.insert("due_at".into(), s(due_at(next)));
        }
        let mut put = self
            .client
            .put_item()
            .table_name(&*self.table)
            .set_item(Some(item));
        put = match rev {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(rev) => put
                .condition_expression("rev = :rev")
                .expression_attribute_values(":rev", n(rev)),
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_conditional(&e) => Err(StoreError::Conflict(match rev {
                None => format!("schedule {} exists already", schedule.id),
                Some(rev) => format!(
                    "schedule {} is no longer at revision {rev}; read it again",
                    schedule.id
                ),
            })),
            Err(e) => Err(self.call_error("PutItem", e)),
        }
    }

    /// A Query of its planned runs, then one BatchWriteItem deleting them and it.
    async fn remove_schedule(&self, id: &str) -> StoreResult<()> {
        let pk = self.pk_schedules();
        let runs = self.query_prefix(&pk, &run_sk(id, "")).await?;
        let mut writes = Vec::with_capacity(runs.len() + 1);
        for item in &runs {
            writes.push(delete_request(&pk, self.attr_s(item, "sk")?)?);
        }
        writes.push(delete_request(&pk, id)?);
        self.batch_write(writes).await
    }

    async fn planned(&self, schedule_id: Option<&str>) -> StoreResult<Vec<PlannedEntry>> {
        let pk = self.pk_schedules();
        let items = match schedule_id {
            Some(id) => self.query_prefix(&pk, &run_sk(id, "")).await?,
            None => self.query_prefix(&pk, "").await?,
        };
        let mut out = Vec::new();
        for item in &items {
            if self.kind_of(item)? == KIND_PLANNED {
                out.push(self.body(item)?);
            }
        }
        Ok(out)
    }

    /// One BatchWriteItem (25 a call): a key both cancelled and added is only put (its new
    /// instant replaces the old one).
    async fn change_plan(
        &self,
        schedule_id: &str,
        cancel: &[String],
        add: &[PlannedEntry],
    ) -> StoreResult<()> {
        let pk = self.pk_schedules();
        let mut writes = Vec::with_capacity(cancel.len() + add.len());
        for entry in add {
            writes.push(put_request(self.planned_item(entry)?)?);
        }
        for key in cancel {
            if !add
                .iter()
                .any(|e| e.schedule_id == schedule_id && &e.run.key == key)
            {
                writes.push(delete_request(&pk, &run_sk(schedule_id, key))?);
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        self.batch_write(writes).await
    }

    /// One Query of the collection's partition, every page.
    async fn records(&self, collection: &str) -> StoreResult<Vec<(String, Value)>> {
        let pk = format!("{}#REC#{collection}", self.tenant);
        let items = self.query_prefix(&pk, "").await?;
        items
            .iter()
            .map(|item| Ok((self.attr_s(item, "sk")?.to_owned(), self.body(item)?)))
            .collect()
    }
}
