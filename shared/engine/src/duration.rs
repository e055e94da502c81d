//! Durations as people write them in definitions: `"30s"`, `"15m"`, `"7d"`, `"1h 30m"`.
//!
//! Parsing is humantime's; the value is written back in the shortest exact form so that a
//! definition round-trips unchanged and hashes the same.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative span of time, millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

const UNITS: [(u128, &str); 5] = [
    (86_400_000, "d"),
    (3_600_000, "h"),
    (60_000, "m"),
    (1_000, "s"),
    (1, "ms"),
];

/// What is wrong with a duration string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a duration: {reason}; write it like \"30s\", \"15m\", \"2h\" or \"7d\"")]
pub struct DurationError {
    text: String,
    reason: String,
}

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    pub fn std(self) -> std::time::Duration {
        self.0
    }

    /// The same span as a chrono duration, saturating at chrono's range.
    pub fn chrono(self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.0).unwrap_or(chrono::TimeDelta::MAX)
    }

    /// Whether this is a whole number of days, the unit calendar arithmetic works in.
    pub fn whole_days(self) -> Option<i64> {
        let ms = self.0.as_millis();
        ms.is_multiple_of(86_400_000)
            .then(|| i64::try_from(ms / 86_400_000).unwrap_or(i64::MAX))
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        // Sub-millisecond precision means nothing to a workflow; drop it so values round-trip.
        Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(DurationError {
                text: text.to_owned(),
                reason: "it is empty".into(),
            });
        }
        humantime::parse_duration(trimmed)
            .map(Duration::from)
            .map_err(|e| DurationError {
                text: text.to_owned(),
                reason: e.to_string(),
            })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        let mut first = true;
        for (size, unit) in UNITS {
            if ms >= size {
                if !first {
                    f.write_str(" ")?;
                }
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
                first = false;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A span of time: a number and a unit (ms, s, m, h, d), possibly several, e.g. \"30s\", \"15m\", \"7d\", \"1h 30m\".",
            "pattern": r"^\s*\d+\s*[a-z]+(\s*\d+\s*[a-z]+)*\s*$",
            "examples": ["30s", "15m", "7d"]
        })
    }
}

/// A signed calendar offset such as `"-7d"` or `"+2h"`: whole days move the local date, so
/// "seven days before, at 09:00" stays 09:00 across a daylight-saving change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Offset {
    pub negative: bool,
    pub span: Duration,
}

impl FromStr for Offset {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let (negative, rest) = match trimmed.as_bytes().first() {
            Some(b'-') => (true, &trimmed[1..]),
            Some(b'+') => (false, &trimmed[1..]),
            _ => (false, trimmed),
        };
        Ok(Offset {
            negative,
            span: rest.parse()?,
        })
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", if self.negative { "-" } else { "+" }, self.span)
    }
}

impl Serialize for Offset {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Offset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Offset {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Offset".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A signed offset, e.g. \"-7d\" (seven calendar days before) or \"+1d\".",
            "pattern": r"^\s*[+-]?\s*\d+\s*[a-z]+(\s*\d+\s*[a-z]+)*\s*$",
            "examples": ["-14d", "-7d", "+1d"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_forms_definitions_use() {
        for (text, ms, shown) in [
            ("30s", 30_000, "30s"),
            ("15m", 900_000, "15m"),
            ("7d", 604_800_000, "7d"),
            ("1h 30m", 5_400_000, "1h 30m"),
            ("90m", 5_400_000, "1h 30m"),
            ("250ms", 250, "250ms"),
            ("0s", 0, "0s"),
        ] {
            let d: Duration = text.parse().expect(text);
            assert_eq!(d.as_millis(), ms, "{text}");
            assert_eq!(d.to_string(), shown, "{text}");
        }
    }

    #[test]
    fn a_bad_duration_says_how_to_write_one() {
        let err = "seven days".parse::<Duration>().expect_err("must fail");
        assert!(err.to_string().contains("write it like"), "{err}");
        assert!("".parse::<Duration>().is_err());
    }

    #[test]
    fn offsets_keep_their_sign() {
        let o: Offset = "-7d".parse().expect("offset");
        assert!(o.negative);
        assert_eq!(o.span.whole_days(), Some(7));
        assert_eq!(o.to_string(), "-7d");
        let o: Offset = "+36h".parse().expect("offset");
        assert!(!o.negative);
        assert_eq!(o.span.whole_days(), None);
    }
}
