//! `eventflow metrics`: a workflow's figures from the data directory, as the API's
//! `GET /v1/workflows/{id}/metrics` reports them.

use std::path::Path;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use eventflow_api::plane::MetricsQuery;
use eventflow_engine::Timestamp;
use eventflow_ports::metrics::{FigureView, Interval, MILLISECONDS, Report};
use eventflow_ports::{ExecutionStore, VersionStore};

use crate::runner::{Outcome, Refusal, existing_store};

/// The range as given on the command line.
pub(crate) struct Range<'a> {
    pub(crate) from: Option<&'a str>,
    pub(crate) to: Option<&'a str>,
    pub(crate) interval: &'a str,
}

fn time(flag: &str, text: Option<&str>) -> Result<Option<Timestamp>, Refusal> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                Refusal::invalid(format!(
                    "eventflow: {flag} {t}: not an RFC 3339 time ({e}); write it like 2026-11-26T09:00:00Z"
                ))
            })
    })
    .transpose()
}

pub(crate) async fn show(data_dir: &Path, workflow: &str, range: Range<'_>, json: bool) -> Outcome {
    let interval = match range.interval {
        "hour" => Interval::Hour,
        "day" => Interval::Day,
        other => {
            return Err(Refusal::invalid(format!(
                "eventflow: --interval {other}: use hour or day"
            )));
        }
    };
    let query = MetricsQuery {
        from: time("--from", range.from)?,
        to: time("--to", range.to)?,
        interval: Some(interval),
    };
    let range = query
        .range(Utc::now())
        .map_err(|e| Refusal::invalid(format!("eventflow: {e}")))?;
    let store = existing_store(data_dir)?;
    let io = |e: eventflow_ports::StoreError| Refusal::io(format!("eventflow: {e}"));
    if store.latest(workflow).await.map_err(io)?.is_none() {
        return Err(Refusal::invalid(format!(
            "eventflow: there is no workflow {workflow}; `eventflow workflows` lists them"
        )));
    }
    let hours = store
        .metrics(workflow, range.from, range.to)
        .await
        .map_err(io)?;
    let report = Report::of(workflow, range.from, range.to, range.interval, &hours);
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Refusal::io(format!("eventflow: cannot write the report: {e}")))?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let at = |t: Timestamp| t.format("%Y-%m-%d %H:%M").to_string();
    println!(
        "{workflow}: {} to {} UTC, by {}",
        at(report.from),
        at(report.to),
        match report.interval {
            Interval::Hour => "hour",
            Interval::Day => "day",
        }
    );
    if report.periods.is_empty() {
        eprintln!("no figures in this range");
    }
    for p in &report.periods {
        for (i, (name, f)) in p.figures.iter().enumerate() {
            let when = if i == 0 { at(p.start) } else { String::new() };
            println!("{when:<16}  {name:<24} {}", figure(f));
        }
    }
    for (i, (name, f)) in report.total.iter().enumerate() {
        let when = if i == 0 { "total" } else { "" };
        println!("{when:<16}  {name:<24} {}", figure(f));
    }
    Ok(ExitCode::SUCCESS)
}

/// A count, or for durations their count, mean and quantiles.
fn figure(f: &FigureView) -> String {
    if f.unit != MILLISECONDS {
        return format!("{}", f.sum);
    }
    let q = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), duration);
    format!(
        "count {}, mean {}, p50 {}, p90 {}, p99 {}",
        f.count,
        duration(f.mean),
        q(f.p50),
        q(f.p90),
        q(f.p99)
    )
}

/// Milliseconds in the largest unit that keeps them readable.
fn duration(ms: f64) -> String {
    match ms {
        ms if ms < 1_000.0 => format!("{ms:.0} ms"),
        ms if ms < 60_000.0 => format!("{:.1} s", ms / 1_000.0),
        ms if ms < 3_600_000.0 => format!("{:.1} min", ms / 60_000.0),
        ms if ms < 86_400_000.0 => format!("{:.1} h", ms / 3_600_000.0),
        ms => format!("{:.1} d", ms / 86_400_000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_the_largest_readable_unit() {
        assert_eq!(duration(12.4), "12 ms");
        assert_eq!(duration(2_500.0), "2.5 s");
        assert_eq!(duration(90_000.0), "1.5 min");
        assert_eq!(duration(5_400_000.0), "1.5 h");
        assert_eq!(duration(3.0 * 86_400_000.0), "3.0 d");
    }
}
