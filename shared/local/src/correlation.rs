//! The correlation index and the dependent starts not yet made, in the embedded store.
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `correlations` | (workflow, correlation key, execution) | the run's status |
//! | `dependent_starts` | idempotency key of the start | [`DependentStart`] |
//!
//! Both are written by [`write`] inside the transaction of the commits they belong to: a run's
//! row follows its checkpoint (same transaction, so a crash never leaves them apart), a
//! dependent start is recorded with the event that causes it and removed by the commit that
//! creates the run with its key.

use eventflow_engine::{Checkpoint, RunStatus};
use eventflow_ports::{Commit, DependentStart, StoreResult};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::store::{LocalStore, backend, from_json, to_json};

const CORRELATIONS: TableDefinition<(&str, &str, &str), &str> =
    TableDefinition::new("correlations");
const DEPENDENT_STARTS: TableDefinition<&str, &[u8]> = TableDefinition::new("dependent_starts");

/// Creates the tables (at open).
pub(crate) fn create_tables(tx: &WriteTransaction) -> StoreResult<()> {
    tx.open_table(CORRELATIONS).map_err(backend)?;
    tx.open_table(DEPENDENT_STARTS).map_err(backend)?;
    Ok(())
}

/// Writes the index rows and dependent starts of `commits`, in their transaction.
pub(crate) fn write(tx: &WriteTransaction, commits: &[Commit]) -> StoreResult<()> {
    let mut index = tx.open_table(CORRELATIONS).map_err(backend)?;
    let mut starts = tx.open_table(DEPENDENT_STARTS).map_err(backend)?;
    for c in commits {
        if let Some(Checkpoint {
            execution_id,
            workflow_id,
            status,
            correlation_key: Some(key),
            ..
        }) = &c.checkpoint
        {
            index
                .insert(
                    (workflow_id.as_str(), key.as_str(), execution_id.as_str()),
                    status.as_str(),
                )
                .map_err(backend)?;
        }
        for s in &c.dependent_starts {
            starts
                .insert(s.key.as_str(), to_json(s)?.as_slice())
                .map_err(backend)?;
        }
    }
    // A start made is no longer owed; removed after the inserts, so a start and its run in
    // one batch leave nothing behind.
    for c in commits {
        if let (Some(key), Some(_)) = (&c.start_key, &c.checkpoint) {
            starts.remove(key.as_str()).map_err(backend)?;
        }
    }
    Ok(())
}

fn parse_status(s: &str) -> StoreResult<RunStatus> {
    serde_json::from_value(serde_json::Value::from(s)).map_err(backend)
}

impl LocalStore {
    /// The runs of `workflow` with correlation key `key`: execution id and status, in id
    /// order (ids are time-ordered, so oldest first).
    pub async fn correlated(
        &self,
        workflow: &str,
        key: &str,
    ) -> StoreResult<Vec<(String, RunStatus)>> {
        let (wf, key) = (workflow.to_owned(), key.to_owned());
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(CORRELATIONS).map_err(backend)?;
            let range = (wf.as_str(), key.as_str(), "")..=(wf.as_str(), key.as_str(), "\u{10FFFF}");
            let mut out = Vec::new();
            for row in t.range(range).map_err(backend)? {
                let (k, v) = row.map_err(backend)?;
                out.push((k.value().2.to_owned(), parse_status(v.value())?));
            }
            Ok(out)
        })
        .await
    }

    /// Dependent starts recorded and not yet made (after a crash, or a refused start).
    pub async fn dependent_starts(&self) -> StoreResult<Vec<DependentStart>> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(DEPENDENT_STARTS).map_err(backend)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(backend)? {
                out.push(from_json(row.map_err(backend)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    /// Forgets a dependent start that can never be made (its workflow refuses it).
    pub async fn drop_dependent_start(&self, key: &str) -> StoreResult<()> {
        let key = key.to_owned();
        self.writing(move |tx| {
            let mut t = tx.open_table(DEPENDENT_STARTS).map_err(backend)?;
            t.remove(key.as_str()).map_err(backend)?;
            Ok(())
        })
        .await
    }
}
