//! httpscale's load generator and benchmark scenarios.
//!
//! - [`load`]: the generator: open-loop (fixed rate) or closed-loop (fixed concurrency) HTTP/1.1 and h2c over
//!   raw hyper client connections, one current-thread runtime per client thread, HDR-histogram latencies and
//!   errors by kind.
//! - [`backend`]: the tiny hyper backends the scenarios start as child processes (`200 ok`, NDJSON streams).
//! - [`net`]: ports for child processes, [`net::Reserved`] until the child binds them, without races.
//! - [`procs`]: child processes (stopped by PID when dropped), nginx configurations, `/proc` readings.
//! - [`wrk`]: `wrk` run the same way, for comparison.
//! - [`scenarios`]: `overhead`, `instructions`, `cold-burst`, `streaming`, `many-routes`, `ceiling`, `sigterm`.
//!
//! Load only ever targets addresses of this host ([`ensure_local`]); every run is bounded in time.

pub mod backend;
pub mod load;
pub mod net;
pub mod procs;
pub mod report;
pub mod scenarios;
pub mod svg;
pub mod wrk;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static ABORT: AtomicBool = AtomicBool::new(false);

/// Set by SIGINT/SIGTERM: runs end early and scenarios stop what they started.
pub fn aborted() -> bool {
    ABORT.load(Ordering::Relaxed)
}

pub fn set_aborted() {
    ABORT.store(true, Ordering::Relaxed);
}

/// Refuses any target that is not an address of this host: loopback, or an address this network namespace owns
/// (the real-cluster suite's pods and processes live on local addresses of its own namespace). A local address is
/// one a socket can bind, so load can never leave the machine.
pub fn ensure_local(addr: SocketAddr) -> anyhow::Result<()> {
    let local = addr.ip().is_loopback() || TcpListener::bind(SocketAddr::new(addr.ip(), 0)).is_ok();
    anyhow::ensure!(local, "refusing to load {addr}: only addresses of this host (loopback or local) may be targeted");
    Ok(())
}

/// `at` on the system's monotonic clock (CLOCK_MONOTONIC, the clock `Instant` reads on Linux), in seconds, so
/// that another program (the real-cluster harness) can line our times up with its own.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)] // converts a wall-clock Instant for the report
pub fn monotonic_seconds(at: std::time::Instant) -> f64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9);
    let now_instant = std::time::Instant::now();
    now - now_instant.saturating_duration_since(at).as_secs_f64()
        + at.saturating_duration_since(now_instant).as_secs_f64()
}

/// Parses `500ms`, `5s`, `1m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    httpscale_core::duration::parse_go_duration(s)
        .or_else(|_| s.parse::<f64>().map(Duration::from_secs_f64).map_err(|e| e.to_string()))
        .map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Median, minimum and maximum of a set of measurements.
#[derive(Debug, Clone, Copy, serde::Serialize, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread { median: f64::NAN, min: f64::NAN, max: f64::NAN, n: 0 };
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Spread { median, min: v[0], max: v[n - 1], n }
    }

    /// `median (min–max)` with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        if self.n == 0 {
            return "–".into();
        }
        if self.n == 1 {
            return format!("{:.digits$}", self.median);
        }
        format!("{:.digits$} ({:.digits$}–{:.digits$})", self.median, self.min, self.max)
    }

    /// Half the range relative to the median, in percent.
    pub fn spread_pct(&self) -> f64 {
        if self.n < 2 || self.median == 0.0 { 0.0 } else { (self.max - self.min) / 2.0 / self.median * 100.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_median_of_odd_and_even() {
        assert_eq!(Spread::of(&[3.0, 1.0, 2.0]).median, 2.0);
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        let s = Spread::of(&[10.0, 12.0, 8.0]);
        assert_eq!((s.min, s.max), (8.0, 12.0));
        assert!((s.spread_pct() - 20.0).abs() < 1e-9);
        assert_eq!(Spread::of(&[]).n, 0);
    }

    #[test]
    fn durations_and_loopback() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("x").is_err());
        assert!(ensure_local("127.0.0.1:80".parse().unwrap()).is_ok());
        assert!(ensure_local("10.0.0.1:80".parse().unwrap()).is_err(), "not an address of this host");
    }
}
