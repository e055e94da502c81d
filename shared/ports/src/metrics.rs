//! Metric aggregates: the figures runs emit (`Command::EmitMetric`), summed per workflow and
//! hour, so a store keeps one small record per workflow and hour however many runs there are.
//!
//! Every figure keeps a count and a sum. A figure in milliseconds (a run's duration) also keeps
//! a histogram over fixed bounds ([`BOUNDS_MS`]), with the count and the sum of each bucket,
//! from which quantiles are estimated (see [`Figure::quantile`]).
//!
//! A store adds a commit's [`Commit::metrics`](crate::Commit::metrics) to its aggregates when
//! it writes the commit; each host says how exactly (the embedded store in the same
//! transaction, DynamoDB right after the checkpoint).

use std::collections::BTreeMap;

use chrono::{DurationRound, TimeDelta};
use eventflow_engine::{Command, Timestamp};
use serde::{Deserialize, Serialize};

/// The upper bounds of the duration histogram, in milliseconds: 100 ms to 30 days. A last
/// bucket counts what is longer.
pub const BOUNDS_MS: [u64; 17] = [
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    30_000,
    60_000,
    300_000,
    900_000,
    3_600_000,
    21_600_000,
    86_400_000,
    259_200_000,
    604_800_000,
    2_592_000_000,
];

/// The unit of figures that get a histogram.
pub const MILLISECONDS: &str = "Milliseconds";

/// A figure one applied event emitted, for workflow `workflow_id` at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub workflow_id: String,
    pub at: Timestamp,
    pub name: String,
    pub value: f64,
    pub unit: String,
}

impl Sample {
    /// The sample of an [`Command::EmitMetric`]; `None` for any other command.
    pub fn of(command: &Command, workflow_id: &str, at: Timestamp) -> Option<Sample> {
        match command {
            Command::EmitMetric { name, value, unit } => Some(Sample {
                workflow_id: workflow_id.to_owned(),
                at,
                name: name.clone(),
                value: *value,
                unit: unit.clone(),
            }),
            _ => None,
        }
    }
}

/// The start of the hour (UTC) `at` falls in.
pub fn hour_of(at: Timestamp) -> Timestamp {
    Interval::Hour.start_of(at)
}

/// The histogram bucket of a value in milliseconds.
pub fn bucket_of(ms: f64) -> usize {
    BOUNDS_MS
        .iter()
        .position(|&b| ms <= b as f64)
        .unwrap_or(BOUNDS_MS.len())
}

/// The samples of one histogram bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub count: u64,
    pub sum: f64,
}

/// One figure summed over a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub unit: String,
    pub count: u64,
    pub sum: f64,
    /// One per bound of [`BOUNDS_MS`], then one for longer, for figures in milliseconds;
    /// empty for the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<Bucket>,
}

impl Figure {
    /// A figure of one value.
    pub fn of(value: f64, unit: &str) -> Figure {
        let mut buckets = Vec::new();
        if unit == MILLISECONDS {
            buckets = vec![Bucket::default(); BOUNDS_MS.len() + 1];
            buckets[bucket_of(value)] = Bucket {
                count: 1,
                sum: value,
            };
        }
        Figure {
            unit: unit.to_owned(),
            count: 1,
            sum: value,
            buckets,
        }
    }

    /// Adds `other`'s counts to this one's.
    pub fn merge(&mut self, other: &Figure) {
        if self.unit.is_empty() {
            self.unit.clone_from(&other.unit);
        }
        self.count += other.count;
        self.sum += other.sum;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), Bucket::default());
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.count += theirs.count;
            mine.sum += theirs.sum;
        }
    }

    /// The estimated `q` quantile (0 to 1) of a figure with a histogram.
    ///
    /// The rank falls in one bucket; its samples are taken as spread evenly over the widest
    /// span within the bucket's bounds whose middle is their mean, and the estimate is read
    /// off that span. Runs of a workflow that take about as long as each other thus give
    /// about that time, not the middle of the bucket; above the last bound the span is
    /// twice the distance from it to the mean.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().map(|b| b.count).sum();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, b) in self.buckets.iter().enumerate() {
            if b.count > 0 && (below + b.count) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { BOUNDS_MS[i - 1] as f64 };
                let upper = BOUNDS_MS.get(i).map_or(f64::INFINITY, |&u| u as f64);
                let mean = (b.sum / b.count as f64).clamp(lower, upper);
                let (from, to) = if 2.0 * mean - lower <= upper {
                    (lower, 2.0 * mean - lower)
                } else {
                    (2.0 * mean - upper, upper)
                };
                let within = (rank - below as f64) / b.count as f64;
                return Some(from + (to - from) * within);
            }
            below += b.count;
        }
        None
    }
}

/// The figures of one workflow over one hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub workflow_id: String,
    /// The hour's start.
    pub hour: Timestamp,
    pub figures: BTreeMap<String, Figure>,
}

impl Aggregate {
    pub fn new(workflow_id: &str, hour: Timestamp) -> Aggregate {
        Aggregate {
            workflow_id: workflow_id.to_owned(),
            hour,
            figures: BTreeMap::new(),
        }
    }

    /// Adds a sample (of this workflow and hour); one that is not a finite number is left
    /// out.
    pub fn add(&mut self, sample: &Sample) {
        if !sample.value.is_finite() {
            return;
        }
        self.figures
            .entry(sample.name.clone())
            .or_default()
            .merge(&Figure::of(sample.value, &sample.unit));
    }

    /// Adds `other`'s figures to this one's.
    pub fn merge(&mut self, other: &Aggregate) {
        for (name, figure) in &other.figures {
            self.figures.entry(name.clone()).or_default().merge(figure);
        }
    }
}

/// Samples summed per workflow and hour, ordered by workflow, then hour.
pub fn aggregate<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Vec<Aggregate> {
    let mut by: BTreeMap<(&str, Timestamp), Aggregate> = BTreeMap::new();
    for s in samples {
        let hour = hour_of(s.at);
        by.entry((s.workflow_id.as_str(), hour))
            .or_insert_with(|| Aggregate::new(&s.workflow_id, hour))
            .add(s);
    }
    by.into_values().collect()
}

/// How a [`Report`] groups hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    #[default]
    Hour,
    Day,
}

impl Interval {
    /// How long one period is.
    pub fn length(self) -> TimeDelta {
        match self {
            Interval::Hour => TimeDelta::hours(1),
            Interval::Day => TimeDelta::days(1),
        }
    }

    /// The start of the period `at` falls in.
    pub fn start_of(self, at: Timestamp) -> Timestamp {
        at.duration_trunc(self.length()).unwrap_or(at)
    }
}

/// One figure as a report shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FigureView {
    pub unit: String,
    pub count: u64,
    pub sum: f64,
    pub mean: f64,
    /// Estimated quantiles, for figures in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
    /// `[upper bound in ms or null for above them all, count]`, for the non-empty buckets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub histogram: Vec<(Option<u64>, u64)>,
}

impl From<&Figure> for FigureView {
    fn from(f: &Figure) -> Self {
        FigureView {
            unit: f.unit.clone(),
            count: f.count,
            sum: f.sum,
            mean: if f.count == 0 {
                0.0
            } else {
                f.sum / f.count as f64
            },
            p50: f.quantile(0.5),
            p90: f.quantile(0.9),
            p99: f.quantile(0.99),
            histogram: f
                .buckets
                .iter()
                .enumerate()
                .filter(|(_, b)| b.count > 0)
                .map(|(i, b)| (BOUNDS_MS.get(i).copied(), b.count))
                .collect(),
        }
    }
}

/// The figures of one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Period {
    pub start: Timestamp,
    pub figures: BTreeMap<String, FigureView>,
}

/// A workflow's figures over a time range, by period and in total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub workflow_id: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub interval: Interval,
    /// Periods with figures, oldest first; a period without any is left out.
    pub periods: Vec<Period>,
    pub total: BTreeMap<String, FigureView>,
}

impl Report {
    /// The report of a workflow's hourly aggregates (those of the range).
    pub fn of(
        workflow_id: &str,
        from: Timestamp,
        to: Timestamp,
        interval: Interval,
        hours: &[Aggregate],
    ) -> Report {
        let mut periods: BTreeMap<Timestamp, Aggregate> = BTreeMap::new();
        let mut total = Aggregate::new(workflow_id, from);
        for a in hours {
            let start = interval.start_of(a.hour);
            periods
                .entry(start)
                .or_insert_with(|| Aggregate::new(workflow_id, start))
                .merge(a);
            total.merge(a);
        }
        let view = |a: &Aggregate| {
            a.figures
                .iter()
                .map(|(name, f)| (name.clone(), FigureView::from(f)))
                .collect()
        };
        Report {
            workflow_id: workflow_id.to_owned(),
            from,
            to,
            interval,
            periods: periods
                .into_iter()
                .map(|(start, a)| Period {
                    start,
                    figures: view(&a),
                })
                .collect(),
            total: view(&total),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32) -> Timestamp {
        chrono::Utc
            .with_ymd_and_hms(2026, 11, 26, h, m, 0)
            .single()
            .unwrap_or_default()
    }

    fn sample(workflow: &str, t: Timestamp, name: &str, value: f64, unit: &str) -> Sample {
        Sample {
            workflow_id: workflow.into(),
            at: t,
            name: name.into(),
            value,
            unit: unit.into(),
        }
    }

    #[test]
    fn samples_are_summed_per_workflow_and_hour() {
        let samples = [
            sample("launch", at(9, 5), "RunStarted", 1.0, "Count"),
            sample("launch", at(9, 59), "RunStarted", 1.0, "Count"),
            sample("launch", at(10, 0), "RunStarted", 1.0, "Count"),
            sample("nurture", at(9, 30), "StepFailed", 1.0, "Count"),
        ];
        let aggregates = aggregate(&samples);
        let keys: Vec<_> = aggregates
            .iter()
            .map(|a| (a.workflow_id.as_str(), a.hour, a.figures.len()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("launch", at(9, 0), 1),
                ("launch", at(10, 0), 1),
                ("nurture", at(9, 0), 1)
            ]
        );
        assert_eq!(aggregates[0].figures["RunStarted"].count, 2);
        assert_eq!(aggregates[0].figures["RunStarted"].sum, 2.0);
        assert!(aggregates[0].figures["RunStarted"].buckets.is_empty());
    }

    #[test]
    fn durations_fall_in_the_bucket_of_their_upper_bound() {
        assert_eq!(bucket_of(0.0), 0);
        assert_eq!(bucket_of(100.0), 0);
        assert_eq!(bucket_of(100.5), 1);
        assert_eq!(bucket_of(3_600_000.0), 11);
        assert_eq!(bucket_of(1e12), BOUNDS_MS.len());
        let f = Figure::of(1_500.0, MILLISECONDS);
        assert_eq!(f.buckets.len(), BOUNDS_MS.len() + 1);
        assert_eq!(
            f.buckets[4],
            Bucket {
                count: 1,
                sum: 1_500.0
            }
        );
    }

    fn durations(values: &[f64]) -> Figure {
        let mut f = Figure::default();
        for &v in values {
            f.merge(&Figure::of(v, MILLISECONDS));
        }
        f
    }

    #[test]
    fn runs_of_about_one_length_give_about_that_length() {
        // Two runs of about a second, in the bucket from 1 s to 2.5 s.
        let f = durations(&[1_010.0, 1_030.0]);
        assert_eq!(f.quantile(0.5), Some(1_020.0));
        assert_eq!(f.quantile(0.0), Some(1_000.0));
        assert_eq!(f.quantile(1.0), Some(1_040.0));
        // Near a bucket's top, the span ends at the bound.
        let f = durations(&[2_400.0, 2_400.0]);
        assert_eq!(f.quantile(1.0), Some(2_500.0));
        assert_eq!(f.quantile(0.0), Some(2_300.0));
    }

    #[test]
    fn quantiles_fall_in_the_bucket_of_their_rank() {
        // Ten runs of 2 s and ten of 4 s.
        let f = durations(&[[2_000.0, 4_000.0]; 10].concat());
        assert_eq!((f.count, f.sum), (20, 60_000.0));
        assert_eq!(f.quantile(0.25), Some(2_000.0));
        let p75 = f.quantile(0.75).unwrap_or_default();
        assert!((3_000.0..=5_000.0).contains(&p75), "{p75}");
        // Above the last bound: twice the distance from it to the mean.
        let mut long = durations(&[3.0e9]);
        assert_eq!(long.quantile(1.0), Some(3.408e9));
        long.buckets.clear();
        assert_eq!(long.quantile(0.5), None, "no histogram, no quantile");
    }

    #[test]
    fn a_daily_report_merges_the_hours_of_each_day_and_totals_them() {
        let day2 = at(3, 0) + TimeDelta::days(1);
        let samples = [
            sample("launch", at(9, 5), "RunDuration", 1_000.0, MILLISECONDS),
            sample("launch", at(17, 0), "RunDuration", 3_000.0, MILLISECONDS),
            sample("launch", day2, "RunDuration", 8_000.0, MILLISECONDS),
            sample("launch", day2, "RunCompleted", 1.0, "Count"),
        ];
        let hours = aggregate(&samples);
        let report = Report::of("launch", at(0, 0), day2, Interval::Day, &hours);
        let starts: Vec<_> = report.periods.iter().map(|p| p.start).collect();
        assert_eq!(starts, vec![at(0, 0), at(0, 0) + TimeDelta::days(1)]);
        let first = &report.periods[0].figures["RunDuration"];
        assert_eq!((first.count, first.mean), (2, 2_000.0));
        assert_eq!(first.histogram, vec![(Some(1_000), 1), (Some(5_000), 1)]);
        assert_eq!(report.total["RunDuration"].count, 3);
        assert_eq!(report.total["RunCompleted"].sum, 1.0);
        assert_eq!(report.total["RunCompleted"].p50, None);
    }
}
