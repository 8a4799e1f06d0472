//! Go `time.ParseDuration`-compatible durations: the format every upstream env var, chart value and CRD
//! field uses (`120s`, `1m30s`, `500ms`, `1.5h`). Formatting follows Go's `Duration.String()` (`1m0s`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected a Go duration such as 500ms, 30s, 1m30s)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// Parses a duration the way Go's `time.ParseDuration` does. Negative durations are rejected
/// (no setting in this project has a meaning for them).
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |reason| DurationError { input: input.to_owned(), reason };
    let mut s = input.trim();
    if s.starts_with('-') {
        return Err(err("negative durations are not allowed"));
    }
    s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(err("empty"));
    }
    let mut total_nanos: u128 = 0;
    while !s.is_empty() {
        let num_len = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (num, rest) = s.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(err("missing number"));
        }
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let (unit, rest) = rest.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        if frac_part.contains('.') {
            return Err(err("malformed number"));
        }
        let int: u128 = if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| err("number too large"))? };
        let mut nanos = int.checked_mul(unit_nanos).ok_or_else(|| err("overflow"))?;
        // Fractional part: scale digit by digit, as Go does, without floating point.
        let mut scale = unit_nanos;
        for digit in frac_part.bytes() {
            scale /= 10;
            nanos += u128::from(digit - b'0') * scale;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(|| err("overflow"))?;
        s = rest;
    }
    // Go durations are int64 nanoseconds.
    if total_nanos > i64::MAX as u128 {
        return Err(err("overflow"));
    }
    Ok(Duration::from_nanos(total_nanos as u64))
}

/// Formats like Go's `Duration.String()`: `1h2m3s`, `1m0s`, `500ms`, `0s`.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        let (value, unit) = if nanos < 1_000 {
            return format!("{nanos}ns");
        } else if nanos < 1_000_000 {
            (nanos as f64 / 1e3, "µs")
        } else {
            (nanos as f64 / 1e6, "ms")
        };
        return format!("{}{unit}", trim_float(value));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = (nanos / 60_000_000_000) % 60;
    let secs = (nanos % 60_000_000_000) as f64 / 1e9;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{}s", trim_float(secs)));
    out
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// A duration field in a CRD or config file, serialised as a Go duration string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }
    /// `None` for zero: upstream treats `0s` as "no deadline" for every timeout.
    pub fn non_zero(self) -> Option<Duration> {
        (!self.0.is_zero()).then_some(self.0)
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_go_duration(self.0))
    }
}

impl std::str::FromStr for GoDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_go_duration(s).map(GoDuration)
    }
}

impl schemars::JsonSchema for GoDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // metav1.Duration: a Go duration string.
        schemars::json_schema!({ "type": "string" })
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_go() {
        let ok = [
            ("0", 0),
            ("0s", 0),
            ("500ms", 500_000_000),
            ("120s", 120_000_000_000),
            ("1m30s", 90_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("1h2m3s4ms5us6ns", 3_723_004_005_006),
            (".5s", 500_000_000),
            ("1µs", 1_000),
            ("+5s", 5_000_000_000),
        ];
        for (input, nanos) in ok {
            assert_eq!(parse_go_duration(input).map(|d| d.as_nanos()), Ok(nanos), "{input}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in ["", "5", "5x", "s", "1..5s", "-1s", "1.s5", "99999999999999999999h"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        let msg = parse_go_duration("5x").unwrap_err().to_string();
        assert!(msg.contains("\"5x\"") && msg.contains("unknown unit"), "{msg}");
    }

    #[test]
    fn formats_like_go() {
        let cases = [
            (0, "0s"),
            (60_000_000_000, "1m0s"),
            (1_500_000_000, "1.5s"),
            (500_000_000, "500ms"),
            (3_723_000_000_000, "1h2m3s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(format_go_duration(Duration::from_nanos(nanos)), want);
        }
    }
}
