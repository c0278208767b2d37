//! Points in time as the ledger records them: microseconds since the Unix
//! epoch, UTC.
//!
//! Owns the conversion to and from `chrono`; must never read the clock (time
//! is always an argument to the ledger).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Microseconds since 1970-01-01T00:00:00Z, UTC, leap seconds ignored (Unix
/// time). Any `i64` is a valid timestamp in the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

/// A string that is not an RFC 3339 timestamp.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp: {0}")]
pub struct ParseTimestampError(#[from] chrono::ParseError);

impl Timestamp {
    /// Wraps a count of microseconds since the Unix epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// Microseconds since the Unix epoch.
    pub const fn micros(&self) -> i64 {
        self.0
    }

    /// Converts from `chrono`, truncating (towards the past) to whole
    /// microseconds: nanoseconds are not part of the format.
    pub fn from_datetime(datetime: DateTime<Utc>) -> Self {
        Self(datetime.timestamp_micros())
    }

    /// Converts to `chrono`.
    ///
    /// Exact for every timestamp made by [`Timestamp::from_datetime`]. The few
    /// `i64` values beyond chrono's range (about ±262,000 years) clamp to
    /// `DateTime::<Utc>::MIN_UTC` / `MAX_UTC`; use
    /// [`Timestamp::checked_datetime`] to detect them.
    pub fn to_datetime(&self) -> DateTime<Utc> {
        self.checked_datetime().unwrap_or(if self.0 < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        })
    }

    /// Converts to `chrono`, or `None` when chrono cannot represent the value.
    pub fn checked_datetime(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.0)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 with exactly six fractional digits, e.g.
    /// `2024-03-01T12:34:56.789012Z`. A value chrono cannot represent prints
    /// as its microsecond count followed by `us` rather than a wrong date.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.checked_datetime() {
            Some(dt) => write!(f, "{}", dt.format("%Y-%m-%dT%H:%M:%S%.6fZ")),
            None => write!(f, "{}us", self.0),
        }
    }
}

impl FromStr for Timestamp {
    type Err = ParseTimestampError;

    /// Parses RFC 3339 (any offset), truncating to microseconds.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = DateTime::parse_from_rfc3339(s)?;
        Ok(Self::from_datetime(parsed.with_timezone(&Utc)))
    }
}

impl Serialize for Timestamp {
    /// As the RFC 3339 string of [`fmt::Display`].
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_rfc3339_with_six_fractional_digits() {
        let ts = Timestamp::from_micros(1_709_296_496_789_012);
        assert_eq!(ts.to_string(), "2024-03-01T12:34:56.789012Z");
        assert_eq!(
            Timestamp::from_micros(0).to_string(),
            "1970-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn from_datetime_truncates_nanoseconds_towards_the_past() {
        let dt: DateTime<Utc> = "2024-03-01T12:34:56.789012999Z".parse().unwrap();
        assert_eq!(Timestamp::from_datetime(dt).micros(), 1_709_296_496_789_012);
        let before_epoch: DateTime<Utc> = "1969-12-31T23:59:59.999999999Z".parse().unwrap();
        assert_eq!(Timestamp::from_datetime(before_epoch).micros(), -1);
    }

    #[test]
    fn round_trips_through_datetime_and_text() {
        let ts = Timestamp::from_micros(-12_345_678_901);
        assert_eq!(Timestamp::from_datetime(ts.to_datetime()), ts);
        assert_eq!(ts.to_string().parse::<Timestamp>().unwrap(), ts);
    }

    #[test]
    fn out_of_range_values_clamp_instead_of_panicking() {
        assert_eq!(
            Timestamp::from_micros(i64::MAX).to_datetime(),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            Timestamp::from_micros(i64::MIN).to_datetime(),
            DateTime::<Utc>::MIN_UTC
        );
        assert_eq!(
            Timestamp::from_micros(i64::MAX).to_string(),
            format!("{}us", i64::MAX)
        );
    }
}
