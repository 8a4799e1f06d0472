//! Value parsers shared by every binary's typed configuration, so each setting reads exactly as upstream's Go
//! code reads it: durations like `time.ParseDuration`, booleans like `strconv.ParseBool`; sizes like
//! Kubernetes quantities.

use std::time::Duration;

use crate::duration::parse_go_duration;

/// A Go duration (`500ms`, `1m30s`).
pub fn duration(s: &str) -> Result<Duration, String> {
    parse_go_duration(s).map_err(|e| e.to_string())
}

/// Go's `strconv.ParseBool`.
pub fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true/false/1/0)")),
    }
}

/// A text that is not a size (what [`bytes`] reads).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a size (a number of bytes, or with a suffix: 512Ki, 4Mi, 24Gi, 8G)")]
pub struct SizeError(pub String);

/// A size in bytes: a number, optionally with a Kubernetes quantity suffix (`k`, `M`, `G`, `T` powers of
/// 1000; `Ki`, `Mi`, `Gi`, `Ti` powers of 1024): `4194304`, `4Mi`, `24G`. Read by the routes file's sizes
/// (a serde deserializer) and by the interceptor's body-limit value parser.
pub fn bytes(s: &str) -> Result<u64, SizeError> {
    let bad = || SizeError(s.to_owned());
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let unit: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return Err(bad()),
    };
    number.checked_mul(unit).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_kubernetes_quantities() {
        assert_eq!(bytes("4194304"), Ok(4 << 20));
        assert_eq!(bytes("4Mi"), Ok(4 << 20));
        assert_eq!(bytes("24Gi"), Ok(24 << 30));
        assert_eq!(bytes("8G"), Ok(8_000_000_000));
        assert_eq!(bytes("512Ki"), Ok(512 << 10));
        for bad in ["", "Mi", "4 Mi", "4MB", "-1", "1.5Gi", "99999999999Ti"] {
            assert!(bytes(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn booleans_as_go() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(go_bool(t), Ok(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(go_bool(f), Ok(false));
        }
        assert!(go_bool("yes").is_err());
    }
}
