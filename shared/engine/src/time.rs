//! Instants for waits: "09:00 Europe/Berlin, seven days before the event starts".
//!
//! Whole-day offsets move the local calendar date, not a count of hours, so the wall-clock
//! time survives a daylight-saving change. A local time that does not exist (the hour skipped
//! in spring) moves forward to the first instant that does; an ambiguous one (the hour repeated
//! in autumn) takes the earlier.

use chrono::{DateTime, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use crate::duration::Offset;

/// Reads an instant or a date from an expression's result.
pub fn parse_instant(value: &Value, tz: Tz) -> Result<DateTime<Utc>, String> {
    let Value::String(text) = value else {
        return Err(format!(
            "a wait's until must give a timestamp or a date, this gave {value}"
        ));
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(local(tz, d.and_time(NaiveTime::MIN)));
    }
    Err(format!(
        "`{text}` is neither an RFC 3339 timestamp (2026-05-04T09:00:00+02:00) nor a date (2026-05-04)"
    ))
}

/// Applies a calendar offset and a local time of day in `tz`.
pub fn shift(
    base: DateTime<Utc>,
    offset: Option<Offset>,
    at: Option<NaiveTime>,
    tz: Tz,
) -> Result<DateTime<Utc>, String> {
    let mut local_dt = base.with_timezone(&tz).naive_local();
    let mut exact = None;
    if let Some(o) = offset {
        match o.span.whole_days() {
            Some(days) => {
                let days = Days::new(u64::try_from(days).unwrap_or(u64::MAX));
                let moved = if o.negative {
                    local_dt.checked_sub_days(days)
                } else {
                    local_dt.checked_add_days(days)
                };
                local_dt = moved.ok_or_else(|| format!("offset {o} leaves the calendar"))?;
            }
            None => exact = Some(o),
        }
    }
    if let Some(at) = at {
        local_dt = local_dt.date().and_time(at);
    }
    let mut instant = local(tz, local_dt);
    if let Some(o) = exact {
        let span = o.span.chrono();
        instant = if o.negative {
            instant - span
        } else {
            instant + span
        };
    }
    Ok(instant)
}

fn local(tz: Tz, dt: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&dt) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(early, _) => early.with_timezone(&Utc),
        LocalResult::None => {
            // Skipped by a daylight-saving change: the first minute after the gap exists.
            let mut probe = dt;
            for _ in 0..(4 * 60) {
                probe += chrono::TimeDelta::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            tz.from_utc_datetime(&dt).with_timezone(&Utc)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin() -> Tz {
        "Europe/Berlin".parse().expect("zone")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn seven_days_before_at_nine_across_the_spring_change() {
        // The event starts after Berlin moves to summer time (29 March 2026); a week earlier
        // is still winter time, so 09:00 local is 08:00 UTC there, not 07:00.
        let starts = utc("2026-04-02T10:00:00+02:00");
        let at = NaiveTime::from_hms_opt(9, 0, 0);
        let wake =
            shift(starts, Some("-7d".parse().expect("offset")), at, berlin()).expect("shift");
        assert_eq!(wake, utc("2026-03-26T08:00:00Z"));
    }

    #[test]
    fn one_day_after_across_the_autumn_change() {
        let ends = utc("2026-10-24T18:00:00+02:00");
        let at = NaiveTime::from_hms_opt(9, 0, 0);
        let wake = shift(ends, Some("+1d".parse().expect("offset")), at, berlin()).expect("shift");
        assert_eq!(wake, utc("2026-10-25T08:00:00Z"));
    }

    #[test]
    fn a_skipped_local_time_moves_to_the_first_that_exists() {
        let day = utc("2026-03-29T00:30:00+01:00");
        let at = NaiveTime::from_hms_opt(2, 30, 0);
        let wake = shift(day, None, at, berlin()).expect("shift");
        assert_eq!(wake, utc("2026-03-29T03:00:00+02:00"));
    }

    #[test]
    fn dates_are_midnight_in_the_zone() {
        let t = parse_instant(&Value::from("2026-06-01"), berlin()).expect("date");
        assert_eq!(t, utc("2026-05-31T22:00:00Z"));
        assert!(parse_instant(&Value::from(3), berlin()).is_err());
        assert!(parse_instant(&Value::from("next week"), berlin()).is_err());
    }
}
