//! Metric aggregates on the table: one item per workflow and hour,
//! `<t>#METRICS#<workflow>` / `<hour's start, RFC 3339>`.
//!
//! Each figure is two top-level number attributes and a unit, `<name>#n` (count), `<name>#s`
//! (sum), `<name>#u` (unit), and for a figure in milliseconds two per histogram bucket it has
//! counted in, `<name>#b<i>` (the bucket's count) and `<name>#v<i>` (the sum of its values).
//!
//! A commit's samples are added with one UpdateItem per workflow and hour (`ADD`, which
//! creates the item and the attributes it lacks), after its checkpoint is written: a crash
//! between the two loses those figures; nothing is ever counted twice, since a redelivered
//! event that was applied before emits nothing. The item stays small (a run's durations fall
//! in a few buckets): one write unit an update.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use eventflow_engine::Timestamp;
use eventflow_ports::StoreResult;
use eventflow_ports::metrics::{self, Aggregate, Bucket, Figure, Sample};

use super::{DynamoStore, Item, n, s};

/// The sort key of an hour.
fn hour_sk(hour: Timestamp) -> String {
    hour.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl DynamoStore {
    fn pk_metrics(&self, workflow_id: &str) -> String {
        format!("{}#METRICS#{workflow_id}", self.tenant)
    }

    /// Adds samples to their hourly aggregates: one UpdateItem per workflow and hour.
    pub(super) async fn add_metrics(&self, samples: &[Sample]) -> StoreResult<()> {
        for a in metrics::aggregate(samples) {
            let mut names = HashMap::new();
            let mut values = HashMap::new();
            let mut sets = Vec::new();
            let mut adds = Vec::new();
            for (i, (name, f)) in a.figures.iter().enumerate() {
                names.insert(format!("#u{i}"), format!("{name}#u"));
                values.insert(format!(":u{i}"), s(&f.unit));
                sets.push(format!("#u{i} = :u{i}"));
                names.insert(format!("#n{i}"), format!("{name}#n"));
                values.insert(format!(":n{i}"), n(f.count));
                names.insert(format!("#s{i}"), format!("{name}#s"));
                values.insert(format!(":s{i}"), n(f.sum));
                adds.push(format!("#n{i} :n{i}"));
                adds.push(format!("#s{i} :s{i}"));
                for (b, bucket) in f.buckets.iter().enumerate().filter(|(_, b)| b.count > 0) {
                    names.insert(format!("#b{i}_{b}"), format!("{name}#b{b}"));
                    values.insert(format!(":b{i}_{b}"), n(bucket.count));
                    adds.push(format!("#b{i}_{b} :b{i}_{b}"));
                    names.insert(format!("#v{i}_{b}"), format!("{name}#v{b}"));
                    values.insert(format!(":v{i}_{b}"), n(bucket.sum));
                    adds.push(format!("#v{i}_{b} :v{i}_{b}"));
                }
            }
            self.client
                .update_item()
                .table_name(&*self.table)
                .key("pk", s(self.pk_metrics(&a.workflow_id)))
                .key("sk", s(hour_sk(a.hour)))
                .update_expression(format!("SET {} ADD {}", sets.join(", "), adds.join(", ")))
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .send()
                .await
                .map_err(|e| self.call_error("UpdateItem", e))?;
        }
        Ok(())
    }

    /// The hourly aggregates of `workflow_id` whose hour starts in `from..to`.
    pub(super) async fn read_metrics(
        &self,
        workflow_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<Aggregate>> {
        // Hours are whole seconds: the last key below `to` is at most `to` less a millisecond,
        // to the second.
        let last = to - TimeDelta::milliseconds(1);
        if last < from {
            return Ok(Vec::new());
        }
        let (from, last) = (hour_sk(from), hour_sk(last));
        let items = self
            .query_range(
                &self.pk_metrics(workflow_id),
                Some((&from, &last)),
                true,
                None,
            )
            .await?;
        items
            .iter()
            .map(|item| self.aggregate_of(workflow_id, item))
            .collect()
    }

    fn aggregate_of(&self, workflow_id: &str, item: &Item) -> StoreResult<Aggregate> {
        let sk = self.attr_s(item, "sk")?;
        let hour = DateTime::parse_from_rfc3339(sk)
            .map_err(|e| self.malformed(item, format!("the hour `{sk}`: {e}")))?
            .with_timezone(&Utc);
        let mut figures: BTreeMap<String, Figure> = BTreeMap::new();
        for (attr, value) in item {
            let Some((name, part)) = attr.rsplit_once('#') else {
                continue; // pk, sk
            };
            let f = figures.entry(name.to_owned()).or_default();
            match (part, value) {
                ("u", AttributeValue::S(unit)) => f.unit.clone_from(unit),
                ("n", AttributeValue::N(_)) => f.count = self.attr_n(item, attr)?,
                ("s", AttributeValue::N(_)) => f.sum = self.attr_n(item, attr)?,
                (b, AttributeValue::N(_)) if b.starts_with(['b', 'v']) => {
                    let i: usize = b[1..]
                        .parse()
                        .ok()
                        .filter(|&i| i <= metrics::BOUNDS_MS.len())
                        .ok_or_else(|| self.malformed(item, format!("`{attr}` is no bucket")))?;
                    if f.buckets.is_empty() {
                        f.buckets = vec![Bucket::default(); metrics::BOUNDS_MS.len() + 1];
                    }
                    if b.starts_with('b') {
                        f.buckets[i].count = self.attr_n(item, attr)?;
                    } else {
                        f.buckets[i].sum = self.attr_n(item, attr)?;
                    }
                }
                _ => return Err(self.malformed(item, format!("`{attr}` is not a figure's"))),
            }
        }
        Ok(Aggregate {
            workflow_id: workflow_id.to_owned(),
            hour,
            figures,
        })
    }
}
