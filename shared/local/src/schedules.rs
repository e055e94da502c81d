//! The scheduler's tables in the embedded store (values are JSON):
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `schedules` | schedule id (`<workflow>.<trigger index>`) | the engine's [`Schedule`] |
//! | `planned_runs` | (schedule id, [`PlannedRun::key`]) | [`PlannedEntry`] |
//! | `planned_due` | (fire_at ms, schedule id, run key) | nothing: the due-time index |
//!
//! A planned run and its index row are written and removed together, in one transaction, so
//! the index never points at a run that is gone. Every write commits (fsync) before it returns.

use eventflow_engine::{PlannedEntry, Schedule, Timestamp};
use eventflow_ports::StoreResult;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde_json::Value;

use crate::store::{LocalStore, RECORDS, backend, from_json, to_json};

const SCHEDULES: TableDefinition<&str, &[u8]> = TableDefinition::new("schedules");
const PLANNED: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("planned_runs");
const PLANNED_DUE: TableDefinition<(i64, &str, &str), ()> = TableDefinition::new("planned_due");

/// Creates the scheduler's tables (in the store's table-creating transaction).
pub(crate) fn create_tables(tx: &WriteTransaction) -> StoreResult<()> {
    tx.open_table(SCHEDULES).map_err(backend)?;
    tx.open_table(PLANNED).map_err(backend)?;
    tx.open_table(PLANNED_DUE).map_err(backend)?;
    Ok(())
}

/// The planned runs to cancel and add for one event record and one schedule.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlanChange {
    pub(crate) cancel: Vec<String>,
    pub(crate) add: Vec<PlannedEntry>,
}

fn remove_run(
    planned: &mut redb::Table<(&str, &str), &[u8]>,
    due: &mut redb::Table<(i64, &str, &str), ()>,
    schedule_id: &str,
    key: &str,
) -> StoreResult<()> {
    let old = planned.remove((schedule_id, key)).map_err(backend)?;
    if let Some(old) = old {
        let entry: PlannedEntry = from_json(old.value())?;
        due.remove((entry.run.fire_at.timestamp_millis(), schedule_id, key))
            .map_err(backend)?;
    }
    Ok(())
}

impl LocalStore {
    /// Every stored cron, rate and event-relative schedule, by id.
    pub(crate) async fn schedules(&self) -> StoreResult<Vec<Schedule>> {
        self.blocking(|db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(SCHEDULES).map_err(backend)?;
            t.iter()
                .map_err(backend)?
                .map(|row| from_json(row.map_err(backend)?.1.value()))
                .collect()
        })
        .await
    }

    /// One stored schedule.
    pub(crate) async fn schedule(&self, id: &str) -> StoreResult<Option<Schedule>> {
        let id = id.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(SCHEDULES).map_err(backend)?;
            t.get(id.as_str())
                .map_err(backend)?
                .map(|v| from_json(v.value()))
                .transpose()
        })
        .await
    }

    /// Removes `remove` (with their planned runs), then writes `put`, in one transaction: an id
    /// in both is a schedule replaced, whose old plan goes.
    pub(crate) async fn save_schedules(
        &self,
        put: Vec<Schedule>,
        remove: Vec<String>,
    ) -> StoreResult<()> {
        let rows = put
            .iter()
            .map(|s| Ok((s.id.clone(), to_json(s)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        self.writing(move |tx| {
            let mut schedules = tx.open_table(SCHEDULES).map_err(backend)?;
            let mut planned = tx.open_table(PLANNED).map_err(backend)?;
            let mut due = tx.open_table(PLANNED_DUE).map_err(backend)?;
            for id in &remove {
                schedules.remove(id.as_str()).map_err(backend)?;
                for key in planned_keys_of(&planned, id)? {
                    remove_run(&mut planned, &mut due, id, &key)?;
                }
            }
            for (id, bytes) in &rows {
                schedules
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    /// The planned runs of one schedule, or of all.
    pub(crate) async fn planned(
        &self,
        schedule_id: Option<&str>,
    ) -> StoreResult<Vec<PlannedEntry>> {
        let schedule_id = schedule_id.map(str::to_owned);
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(PLANNED).map_err(backend)?;
            let mut out: Vec<PlannedEntry> = Vec::new();
            let rows = match &schedule_id {
                Some(id) => t.range((id.as_str(), "")..),
                None => t.iter(),
            }
            .map_err(backend)?;
            for row in rows {
                let (k, v) = row.map_err(backend)?;
                if schedule_id.as_deref().is_some_and(|id| id != k.value().0) {
                    break;
                }
                out.push(from_json(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    /// The planned runs due at or before `until`, earliest first, found through the index.
    pub(crate) async fn due_planned(&self, until: Timestamp) -> StoreResult<Vec<PlannedEntry>> {
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let due = tx.open_table(PLANNED_DUE).map_err(backend)?;
            let planned = tx.open_table(PLANNED).map_err(backend)?;
            let mut out = Vec::new();
            for row in due
                .range(..=(until.timestamp_millis(), "\u{10FFFF}", "\u{10FFFF}"))
                .map_err(backend)?
            {
                let (k, _) = row.map_err(backend)?;
                let (_, schedule_id, key) = k.value();
                if let Some(v) = planned.get((schedule_id, key)).map_err(backend)? {
                    out.push(from_json(v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    /// The instant of the earliest planned run after `after`.
    pub(crate) async fn next_planned(&self, after: Timestamp) -> StoreResult<Option<Timestamp>> {
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let due = tx.open_table(PLANNED_DUE).map_err(backend)?;
            let from = after.timestamp_millis().saturating_add(1);
            let first = due.range((from, "", "")..).map_err(backend)?.next();
            match first {
                Some(row) => {
                    let (k, _) = row.map_err(backend)?;
                    Ok(Timestamp::from_timestamp_millis(k.value().0))
                }
                None => Ok(None),
            }
        })
        .await
    }

    /// Cancels and adds planned runs of one schedule in one transaction (cancel first, so a
    /// moved run, whose key is in both, ends up at its new instant).
    pub(crate) async fn change_plan(
        &self,
        schedule_id: &str,
        change: PlanChange,
    ) -> StoreResult<()> {
        let schedule_id = schedule_id.to_owned();
        let rows = change
            .add
            .iter()
            .map(|e| {
                Ok((
                    e.run.key.clone(),
                    e.run.fire_at.timestamp_millis(),
                    to_json(e)?,
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let cancel = change.cancel;
        self.writing(move |tx| {
            let mut planned = tx.open_table(PLANNED).map_err(backend)?;
            let mut due = tx.open_table(PLANNED_DUE).map_err(backend)?;
            let sid = schedule_id.as_str();
            for key in cancel.iter().chain(rows.iter().map(|(k, _, _)| k)) {
                remove_run(&mut planned, &mut due, sid, key)?;
            }
            for (key, at, bytes) in &rows {
                planned
                    .insert((sid, key.as_str()), bytes.as_slice())
                    .map_err(backend)?;
                due.insert((*at, sid, key.as_str()), ()).map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    /// Every record of a collection, with its key, in key order.
    pub(crate) async fn records(&self, collection: &str) -> StoreResult<Vec<(String, Value)>> {
        let collection = collection.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let t = tx.open_table(RECORDS).map_err(backend)?;
            let mut out = Vec::new();
            for row in t.range((collection.as_str(), "")..).map_err(backend)? {
                let (k, v) = row.map_err(backend)?;
                let (c, key) = k.value();
                if c != collection {
                    break;
                }
                out.push((key.to_owned(), from_json(v.value())?));
            }
            Ok(out)
        })
        .await
    }
}

/// The run keys a schedule has planned.
fn planned_keys_of(
    planned: &redb::Table<(&str, &str), &[u8]>,
    schedule_id: &str,
) -> StoreResult<Vec<String>> {
    let mut keys = Vec::new();
    for row in planned.range((schedule_id, "")..).map_err(backend)? {
        let (k, _) = row.map_err(backend)?;
        let (sid, key) = k.value();
        if sid != schedule_id {
            break;
        }
        keys.push(key.to_owned());
    }
    Ok(keys)
}
