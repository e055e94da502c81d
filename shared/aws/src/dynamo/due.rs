//! The sparse `due` index: timers (`T00`..`T15`), deadlines of runs with attempts in flight
//! (`K00`..`K15`), schedules and planned runs (`S00`..`S15`), each item in a shard chosen by a
//! hash of its key, sorted by `due_at`. The index projects keys only, so rewriting an item in
//! it (a checkpoint at every step) writes nothing to the index unless its `due_at` moves;
//! [`DynamoStore::full_items`] reads the items a query found.

use std::ops::ControlFlow;

use tokio::task::JoinSet;

use super::{DUE_SHARDS, DynamoStore, Item, s};
use eventflow_ports::{StoreError, StoreResult};

/// Index entries read per page.
const DUE_PAGE: i32 = 100;

/// Which entries of a shard family a query keeps.
#[derive(Debug, Clone, Default)]
pub(crate) struct DueQuery {
    /// Due at or before this `due_at` (all when `None`).
    pub until: Option<String>,
    /// Sort keys starting with this.
    pub sk_prefix: Option<&'static str>,
    /// Partition keys starting with this (one tenant's runs).
    pub pk_prefix: Option<String>,
}

impl DynamoStore {
    /// The keys (`pk`, `sk`, `due_shard`, `due_at`) of the entries of every shard of `family`
    /// that `query` keeps, at most `want` from each shard, all shards queried at once.
    pub(crate) async fn due_keys(
        &self,
        family: char,
        query: DueQuery,
        want: usize,
    ) -> StoreResult<Vec<Item>> {
        let mut shards = JoinSet::new();
        for shard in 0..DUE_SHARDS {
            let (store, query) = (self.clone(), query.clone());
            let shard = format!("{family}{shard:02}");
            shards.spawn(async move { store.due_shard(shard, query, want).await });
        }
        let mut out = Vec::new();
        while let Some(joined) = shards.join_next().await {
            let items = joined.map_err(|e| {
                StoreError::Unavailable(format!("a due-index query stopped: {e}"))
            })??;
            out.extend(items);
        }
        Ok(out)
    }

    async fn due_shard(
        &self,
        shard: String,
        query: DueQuery,
        want: usize,
    ) -> StoreResult<Vec<Item>> {
        let mut filters = Vec::new();
        if query.sk_prefix.is_some() {
            filters.push("begins_with(sk, :sk)");
        }
        if query.pk_prefix.is_some() {
            filters.push("begins_with(pk, :pk)");
        }
        let filter = (!filters.is_empty()).then(|| filters.join(" AND "));
        let mut q = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name("due")
            .expression_attribute_values(":shard", s(&shard))
            .set_filter_expression(filter)
            .limit(DUE_PAGE);
        q = match &query.until {
            Some(until) => q
                .key_condition_expression("due_shard = :shard AND due_at <= :until")
                .expression_attribute_values(":until", s(until)),
            None => q.key_condition_expression("due_shard = :shard"),
        };
        if let Some(prefix) = query.sk_prefix {
            q = q.expression_attribute_values(":sk", s(prefix));
        }
        if let Some(prefix) = &query.pk_prefix {
            q = q.expression_attribute_values(":pk", s(prefix));
        }
        let mut out: Vec<Item> = Vec::new();
        self.query_pages(q, |items, _| {
            out.extend(items);
            if out.len() >= want {
                out.truncate(want);
                return Ok(ControlFlow::Break(()));
            }
            Ok(ControlFlow::Continue(()))
        })
        .await?;
        Ok(out)
    }

    /// The items whose keys a `due` query found, read with BatchGetItem (one gone in the
    /// meantime, a timer fired, is left out).
    pub(crate) async fn full_items(&self, found: &[Item]) -> StoreResult<Vec<Item>> {
        let keys = found
            .iter()
            .map(|i| {
                Ok((
                    self.attr_s(i, "pk")?.to_owned(),
                    self.attr_s(i, "sk")?.to_owned(),
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        self.batch_get(keys, None).await
    }
}
