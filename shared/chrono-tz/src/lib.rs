//! `chrono_tz` as eventflow builds it: [`Tz`], a `chrono::TimeZone` named by its IANA name,
//! for the engine (`time_zone` fields, schedules, waits) and for CEL's timestamp functions
//! (`timestamp.getHours("Europe/Berlin")`), which name `chrono_tz::Tz` themselves. The
//! workspace's `[patch.crates-io]` puts this crate in the place of chrono-tz 0.10.
//!
//! Why: chrono-tz compiles the whole IANA database into Rust statics, a pointer (and, in a
//! position-independent executable, a relocation) per transition: about 1.9 MB of every
//! binary that can name a zone, which is every Lambda function that runs the engine. jiff
//! bundles the same database as its compiled TZif files (about 0.2 MB) and reads a zone when
//! it is first named.
//!
//! What it keeps of chrono-tz: names are IANA names, matched exactly (`Europe/Berlin`, not
//! `europe/berlin`), the same 597 (and `Factory`); `Tz` is `Copy`; local times map to instants
//! as chrono-tz maps them (a time skipped by a daylight-saving change has no instant, a
//! repeated one has two). What differs: the database is jiff's, IANA 2026f, newer than
//! chrono-tz 0.10.4's: compared every three days from 1970 to 2042, 20 zones differ (Canada's
//! west and centre, Cuba and Morocco from late 2026; Bogotá's and Tijuana's history), the
//! rest agree. A [`TzOffset`] displays as its offset from UTC (`+01:00`), not its abbreviation.
//! Outside the years -9999 to 9999, which jiff does not represent, a zone keeps the offset it
//! has at the nearest end.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock, PoisonError};

use chrono::{FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone};
use jiff::tz::AmbiguousOffset;

/// A time zone of the IANA database.
#[derive(Clone, Copy)]
pub struct Tz(&'static jiff::tz::TimeZone);

static UTC_ZONE: jiff::tz::TimeZone = jiff::tz::TimeZone::UTC;

/// Coordinated Universal Time.
pub const UTC: Tz = Tz(&UTC_ZONE);

impl Tz {
    pub const UTC: Tz = UTC;

    /// The zone's IANA name.
    pub fn name(self) -> &'static str {
        self.0.iana_name().unwrap_or("UTC")
    }

    fn offset_at(self, utc: &NaiveDateTime) -> TzOffset {
        let utc = utc.and_utc();
        let at = jiff::Timestamp::new(utc.timestamp(), nanos(utc.timestamp_subsec_nanos()))
            .unwrap_or(if utc.timestamp() < 0 {
                jiff::Timestamp::MIN
            } else {
                jiff::Timestamp::MAX
            });
        self.offset(self.0.to_offset(at))
    }

    fn offset(self, offset: jiff::tz::Offset) -> TzOffset {
        TzOffset {
            tz: self,
            fixed: FixedOffset::east_opt(offset.seconds()).unwrap_or(chrono::Utc.fix()),
        }
    }
}

/// Leap seconds (chrono's nanoseconds past 999,999,999) count as the second's last instant.
fn nanos(subsec: u32) -> i32 {
    i32::try_from(subsec.min(999_999_999)).unwrap_or(999_999_999)
}

impl PartialEq for Tz {
    fn eq(&self, other: &Tz) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Tz {}

impl fmt::Debug for Tz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Tz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a zone of the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(());

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("failed to parse timezone")
    }
}

impl std::error::Error for ParseError {}

impl FromStr for Tz {
    type Err = ParseError;

    /// The zone named exactly `name`. Each zone is read from the database once and kept for
    /// the life of the process (there are some six hundred).
    fn from_str(name: &str) -> Result<Tz, ParseError> {
        static ZONES: OnceLock<Mutex<HashMap<String, Tz>>> = OnceLock::new();
        let zones = ZONES.get_or_init(Default::default);
        let mut zones = zones.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tz) = zones.get(name) {
            return Ok(*tz);
        }
        let zone = jiff::tz::TimeZone::get(name).map_err(|_| ParseError(()))?;
        // jiff finds names whatever their case; chrono-tz, and so eventflow, only as written.
        if zone.iana_name() != Some(name) {
            return Err(ParseError(()));
        }
        let tz = Tz(Box::leak(Box::new(zone)));
        zones.insert(name.to_owned(), tz);
        Ok(tz)
    }
}

/// A zone's offset from UTC at some instant.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TzOffset {
    tz: Tz,
    fixed: FixedOffset,
}

impl Offset for TzOffset {
    fn fix(&self) -> FixedOffset {
        self.fixed
    }
}

impl fmt::Debug for TzOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.fixed, f)
    }
}

impl fmt::Display for TzOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.fixed, f)
    }
}

impl TimeZone for Tz {
    type Offset = TzOffset;

    fn from_offset(offset: &TzOffset) -> Tz {
        offset.tz
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> LocalResult<TzOffset> {
        // As chrono-tz: one offset the day has, from its first second or else its last.
        let first = self.offset_from_local_datetime(&local.and_time(NaiveTime::MIN));
        let last = self.offset_from_local_datetime(
            &local.and_time(NaiveTime::from_hms_opt(23, 59, 59).unwrap_or(NaiveTime::MIN)),
        );
        match (first, last) {
            (LocalResult::Single(o), _) | (_, LocalResult::Single(o)) => LocalResult::Single(o),
            (LocalResult::Ambiguous(o, _), _) | (_, LocalResult::Ambiguous(o, _)) => {
                LocalResult::Single(o)
            }
            (LocalResult::None, LocalResult::None) => LocalResult::None,
        }
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> LocalResult<TzOffset> {
        use chrono::{Datelike, Timelike};
        let civil = i16::try_from(local.year()).ok().and_then(|year| {
            jiff::civil::DateTime::new(
                year,
                i8::try_from(local.month()).ok()?,
                i8::try_from(local.day()).ok()?,
                i8::try_from(local.hour()).ok()?,
                i8::try_from(local.minute()).ok()?,
                i8::try_from(local.second()).ok()?,
                nanos(local.nanosecond()),
            )
            .ok()
        });
        let Some(civil) = civil else {
            // Beyond jiff's years: the offset at the nearest end.
            return LocalResult::Single(self.offset_at(local));
        };
        match self.0.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => LocalResult::Single(self.offset(offset)),
            AmbiguousOffset::Fold { before, after } => {
                LocalResult::Ambiguous(self.offset(before), self.offset(after))
            }
            AmbiguousOffset::Gap { .. } => LocalResult::None,
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> TzOffset {
        self.offset_at(&utc.and_time(NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> TzOffset {
        self.offset_at(utc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn local(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").expect("local time")
    }

    #[test]
    fn names_are_iana_names_as_written() {
        let berlin: Tz = "Europe/Berlin".parse().expect("zone");
        assert_eq!(berlin.name(), "Europe/Berlin");
        assert_eq!("US/Eastern".parse::<Tz>().map(Tz::name), Ok("US/Eastern"));
        assert_eq!("UTC".parse::<Tz>(), Ok(UTC));
        assert!("europe/berlin".parse::<Tz>().is_err());
        assert!("Mars/Olympus_Mons".parse::<Tz>().is_err());
        assert!("".parse::<Tz>().is_err());
    }

    #[test]
    fn instants_take_the_offset_in_force() {
        let berlin: Tz = "Europe/Berlin".parse().expect("zone");
        let winter = utc("2026-01-15T12:00:00Z").with_timezone(&berlin);
        let summer = utc("2026-07-15T12:00:00Z").with_timezone(&berlin);
        assert_eq!(winter.offset().fix().local_minus_utc(), 3600);
        assert_eq!(summer.offset().fix().local_minus_utc(), 7200);
        assert_eq!(summer.naive_local(), local("2026-07-15T14:00"));
        let kolkata: Tz = "Asia/Kolkata".parse().expect("zone");
        let t = utc("2026-01-15T12:00:00Z").with_timezone(&kolkata);
        assert_eq!(t.fixed_offset().to_rfc3339(), "2026-01-15T17:30:00+05:30");
    }

    #[test]
    fn a_skipped_local_time_has_no_instant_and_a_repeated_one_has_two() {
        let berlin: Tz = "Europe/Berlin".parse().expect("zone");
        assert_eq!(
            berlin.from_local_datetime(&local("2026-03-29T02:30")),
            LocalResult::None
        );
        let LocalResult::Ambiguous(early, late) =
            berlin.from_local_datetime(&local("2026-10-25T02:30"))
        else {
            panic!("02:30 on 25 October 2026 comes twice in Berlin");
        };
        assert_eq!(early.to_utc(), utc("2026-10-25T00:30:00Z"));
        assert_eq!(late.to_utc(), utc("2026-10-25T01:30:00Z"));
        assert_eq!(
            berlin.from_local_datetime(&local("2026-06-01T09:00")),
            LocalResult::Single(utc("2026-06-01T07:00:00Z").with_timezone(&berlin))
        );
    }

    #[test]
    fn rules_go_on_past_the_last_listed_transition_and_the_years_jiff_knows() {
        let new_york: Tz = "America/New_York".parse().expect("zone");
        let t = utc("2090-07-04T16:00:00Z").with_timezone(&new_york);
        assert_eq!(t.offset().fix().local_minus_utc(), -4 * 3600);
        let far = NaiveDate::from_ymd_opt(12_000, 1, 1)
            .expect("date")
            .and_time(NaiveTime::MIN);
        assert!(matches!(
            new_york.from_local_datetime(&far),
            LocalResult::Single(_)
        ));
        let _ = new_york.from_utc_datetime(&far);
    }
}
