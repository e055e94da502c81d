//! A run's log: what each commit appended, its history entries and the attempts it dispatched,
//! kept together in one item (`H#<first seq>#000`), split in parts (`#001`, ...) only when
//! they do not fit in one. One write per commit instead of one per entry and one per task,
//! and no write at all when an attempt is answered: the checkpoint says which attempts the
//! run still waits for ([`Checkpoint::awaits`]), so a dispatched attempt is looked for in the
//! log when it must be sent again, and nowhere else.
//!
//! Every part carries the commit's `first` and `last` sequence numbers, its `parts` count and a
//! `commit` id drawn per write. The log of a run is the chain of commits that ends at its
//! checkpoint's `seq`: from seq 1 on, each commit starts where the one before ended. A part
//! off that chain was left by a writer that crashed before its checkpoint, and is not read.
//!
//! Part 0 is written first, under `attribute_not_exists(pk)`: it is the claim on the
//! sequence numbers that stops a stale writer (see [`DynamoStore::write_log_head`]). The other
//! parts go in the commit's batch, before the checkpoint.

use std::ops::ControlFlow;

use eventflow_engine::{Checkpoint, HistoryEntry};
use eventflow_ports::{StoreError, StoreResult, Task};
use serde::Deserialize;

use super::{DynamoStore, Item, key, n, s};
use crate::messages::Logged;

/// The body of a log part, as read back (`log_items` writes it from each piece's JSON).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct LogBody {
    #[serde(default)]
    pub entries: Vec<HistoryEntry>,
    #[serde(default)]
    pub tasks: Vec<Task>,
}

/// Bytes of JSON a part holds before the next one starts (a single larger entry or task
/// gets a part of its own, refused over [`MAX_BODY_BYTES`]).
const PART_BYTES: usize = 300 * 1024;

// A part over PART_BYTES holds one entry or task, which must still fit in an item.
const _: () = assert!(super::MAX_BODY_BYTES > PART_BYTES);

/// Log items read per Query page when looking back for dispatched attempts.
const LOG_PAGE: i32 = 25;

pub(crate) const LOG_PREFIX: &str = "H#";

/// The sort key of part `part` of the commit whose first entry is `first`.
pub(crate) fn log_sk(first: u64, part: u32) -> String {
    format!("{LOG_PREFIX}{first:012}#{part:03}")
}

/// The sort key prefix of every part of the commit whose first entry is `first`.
fn commit_prefix(first: u64) -> String {
    format!("{LOG_PREFIX}{first:012}#")
}

/// One commit of the log, its parts read back together.
struct LogCommit {
    first: u64,
    last: u64,
    body: LogBody,
}

impl DynamoStore {
    /// The log items of a commit (part 0 first), built and size-checked before anything is
    /// written. None when the commit has no history entry (its caller refuses tasks without
    /// one: the engine records every dispatch with the event that caused it).
    pub(crate) fn log_items(
        &self,
        execution_id: &str,
        entries: &[HistoryEntry],
        tasks: &[Task],
        written_at: i64,
    ) -> StoreResult<Vec<Item>> {
        let (Some(head), Some(tail)) = (entries.first(), entries.last()) else {
            return Ok(Vec::new());
        };
        let (first, last) = (head.seq, tail.seq);
        // Each entry and task is serialized once; a part's body is their JSON put together
        // in the shape of a [`LogBody`].
        let mut parts: Vec<(Vec<String>, Vec<String>)> = vec![Default::default()];
        let mut size = 0;
        let pieces = entries
            .iter()
            .map(|e| (true, serde_json::to_string(e)))
            .chain(tasks.iter().map(|t| (false, serde_json::to_string(t))));
        for (is_entry, piece) in pieces {
            let piece = piece.map_err(StoreError::backend)?;
            if size > 0 && size + piece.len() > PART_BYTES {
                parts.push(Default::default());
                size = 0;
            }
            size += piece.len();
            if let Some((e, t)) = parts.last_mut() {
                if is_entry { e } else { t }.push(piece);
            }
        }
        let bodies: Vec<String> = parts
            .into_iter()
            .map(|(e, t)| {
                format!(
                    r#"{{"entries":[{}],"tasks":[{}]}}"#,
                    e.join(","),
                    t.join(",")
                )
            })
            .collect();
        let pk = self.pk_execution(execution_id);
        let commit = uuid::Uuid::now_v7().simple().to_string();
        let parts = bodies.len();
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| {
                let part = u32::try_from(i).unwrap_or(u32::MAX);
                let sk = log_sk(first, part);
                let mut item = key(&pk, &sk);
                let (name, body) = super::packed_json(&pk, &sk, body)?;
                item.insert(name.into(), body);
                item.insert("first".into(), n(first));
                item.insert("last".into(), n(last));
                item.insert("part".into(), n(part));
                item.insert("parts".into(), n(parts));
                item.insert("commit".into(), s(&commit));
                item.insert("event_id".into(), s(&head.event.id));
                item.insert("written_at".into(), n(written_at));
                Ok(item)
            })
            .collect()
    }

    /// A commit's parts, read back: `None` when they are not all there under one commit id.
    fn log_commit(&self, items: &[Item]) -> StoreResult<Option<LogCommit>> {
        let Some(head) = items
            .iter()
            .find(|i| self.attr_n::<u32>(i, "part").is_ok_and(|p| p == 0))
        else {
            return Ok(None);
        };
        let commit = self.attr_s(head, "commit")?;
        let parts: usize = self.attr_n(head, "parts")?;
        let mut mine: Vec<(u32, &Item)> = items
            .iter()
            .filter(|i| self.attr_s(i, "commit").is_ok_and(|c| c == commit))
            .map(|i| Ok((self.attr_n::<u32>(i, "part")?, i)))
            .collect::<StoreResult<_>>()?;
        mine.sort_by_key(|(p, _)| *p);
        if mine.len() != parts {
            return Ok(None);
        }
        let mut body = LogBody::default();
        for (_, item) in mine {
            let part: LogBody = self.body(item)?;
            body.entries.extend(part.entries);
            body.tasks.extend(part.tasks);
        }
        Ok(Some(LogCommit {
            first: self.attr_n(head, "first")?,
            last: self.attr_n(head, "last")?,
            body,
        }))
    }

    /// Walks the commits of a run's log up to `seq`, oldest first (`forward`) or newest first,
    /// reading a page at a time; `visit` returns `false` to stop. Parts off the chain (left by
    /// a crashed writer) are passed over.
    async fn walk_log(
        &self,
        execution_id: &str,
        seq: u64,
        forward: bool,
        mut visit: impl FnMut(LogCommit) -> bool,
    ) -> StoreResult<()> {
        let pk = self.pk_execution(execution_id);
        // Forward: the next commit starts here. Backward: the next one ends here.
        let mut expect = if forward { 1 } else { seq };
        let mut group: Vec<Item> = Vec::new();
        let to = format!("{}\u{10FFFF}", commit_prefix(seq));
        let q = self
            .client
            .query()
            .table_name(&*self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":from", s(LOG_PREFIX))
            .expression_attribute_values(":to", s(&to))
            .consistent_read(true)
            .scan_index_forward(forward)
            .limit(LOG_PAGE);
        self.query_pages(q, |mut items, last| {
            if last {
                // An empty item closes the last group.
                items.push(Item::new());
            }
            for item in items {
                let first = self.attr_n::<u64>(&item, "first").ok();
                let same = group
                    .first()
                    .is_some_and(|g| self.attr_n::<u64>(g, "first").ok() == first);
                if !same && !group.is_empty() {
                    let finished = std::mem::take(&mut group);
                    if let Some(c) = self.log_commit(&finished)? {
                        let on_chain = if forward {
                            c.first == expect && c.last <= seq
                        } else {
                            c.last == expect
                        };
                        if on_chain {
                            expect = if forward { c.last + 1 } else { c.first - 1 };
                            let more = visit(c);
                            let ended = if forward { expect > seq } else { expect == 0 };
                            if !more || ended {
                                return Ok(ControlFlow::Break(()));
                            }
                        }
                    }
                }
                if first.is_some() {
                    group.push(item);
                }
            }
            Ok(ControlFlow::Continue(()))
        })
        .await
    }

    /// The history entries up to `seq`, in order.
    pub(crate) async fn logged_history(
        &self,
        execution_id: &str,
        seq: u64,
    ) -> StoreResult<Vec<HistoryEntry>> {
        let mut entries = Vec::new();
        if seq == 0 {
            return Ok(entries);
        }
        self.walk_log(execution_id, seq, true, |c| {
            entries.extend(c.body.entries);
            true
        })
        .await?;
        match entries.last() {
            Some(e) if e.seq == seq => Ok(entries),
            _ => Err(self.malformed(
                &key(&self.pk_execution(execution_id), LOG_PREFIX),
                format!("the run's log does not reach its checkpoint's seq {seq}; items were changed or lost"),
            )),
        }
    }

    /// The attempts `cp` still waits for, found in the log newest first (the search stops
    /// once it has them all).
    pub(crate) async fn awaited_tasks(&self, cp: &Checkpoint) -> StoreResult<Vec<Logged>> {
        let wanted = cp.awaited();
        let mut found: Vec<Logged> = Vec::new();
        if wanted == 0 {
            return Ok(found);
        }
        self.walk_log(&cp.execution_id, cp.seq, false, |c| {
            for task in c.body.tasks {
                let known = found.iter().any(|l| l.task.key() == task.key());
                if !known && cp.awaits(&task.command) {
                    found.push(Logged {
                        logged_at: c.first,
                        task,
                    });
                }
            }
            found.len() < wanted
        })
        .await?;
        found.sort_by(|a, b| a.task.key().cmp(b.task.key()));
        Ok(found)
    }

    /// The attempt `key` as the commit starting at `logged_at` dispatched it.
    pub(crate) async fn logged_task(
        &self,
        execution_id: &str,
        logged_at: u64,
        key: &str,
    ) -> StoreResult<Option<Task>> {
        let items = self
            .query_prefix(&self.pk_execution(execution_id), &commit_prefix(logged_at))
            .await?;
        let commit = self.log_commit(&items)?;
        Ok(commit.and_then(|c| c.body.tasks.into_iter().find(|t| t.key() == key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_sort_by_commit_then_part() {
        assert!(log_sk(9, 1) < log_sk(10, 0));
        assert!(log_sk(10, 0) < log_sk(10, 1));
        assert!(log_sk(10, 999).starts_with(&commit_prefix(10)));
    }
}
