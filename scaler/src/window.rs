//! A request-rate window: counter deltas recorded into buckets of `granularity`, averaged over `window`
//! (upstream's `pkg/queue/bucketing.go`, itself from Knative). The unit is requests per `granularity` bucket
//! (requests per second with the default 1s), rounded to 3 decimals, as upstream reports it.
//!
//! While the window is young the average covers only the buckets since the first sample. Unlike upstream
//! (#1075), every tick records a sample, zeros included, so the rate falls as soon as traffic stops and reaches
//! 0 one window later.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct RateWindow {
    window: Duration,
    granularity: Duration,
    /// (bucket index, sum); a slot holds the latest bucket that mapped to it.
    buckets: Vec<(i64, f64)>,
    first: Option<i64>,
}

impl RateWindow {
    /// `granularity` must be positive (validation rejects anything under 1s before it gets here).
    pub fn new(window: Duration, granularity: Duration) -> Self {
        let granularity = granularity.max(Duration::from_millis(1));
        let n = window.as_nanos().div_ceil(granularity.as_nanos()).max(1) as usize;
        Self { window, granularity, buckets: vec![(i64::MIN, 0.0); n], first: None }
    }

    pub fn spec(&self) -> (Duration, Duration) {
        (self.window, self.granularity)
    }

    fn index(&self, at: Duration) -> i64 {
        (at.as_nanos() / self.granularity.as_nanos()) as i64
    }

    /// Adds `value` requests at time `at` (time since a fixed origin).
    pub fn record(&mut self, at: Duration, value: f64) {
        let idx = self.index(at);
        let slot = idx.rem_euclid(self.buckets.len() as i64) as usize;
        let bucket = &mut self.buckets[slot];
        if bucket.0 != idx {
            *bucket = (idx, 0.0);
        }
        bucket.1 += value;
        self.first.get_or_insert(idx);
    }

    /// The average per bucket over the window ending at `now`.
    pub fn average(&self, now: Duration) -> f64 {
        let Some(first) = self.first else { return 0.0 };
        let cur = self.index(now);
        let n = self.buckets.len() as i64;
        let total: f64 = self.buckets.iter().filter(|(i, _)| *i > cur - n && *i <= cur).map(|(_, v)| v).sum();
        let valid = (cur - first + 1).clamp(1, n) as f64;
        (total / valid * 1000.0).round() / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn steady_traffic_gives_requests_per_bucket() {
        let mut w = RateWindow::new(s(60.0), s(1.0));
        for t in 0..120 {
            w.record(s(t as f64), 5.0);
        }
        assert_eq!(w.average(s(119.0)), 5.0);
    }

    #[test]
    fn a_young_window_averages_over_what_it_has() {
        let mut w = RateWindow::new(s(60.0), s(1.0));
        w.record(s(0.0), 10.0);
        w.record(s(1.0), 0.0);
        assert_eq!(w.average(s(1.0)), 5.0);
    }

    #[test]
    fn the_rate_falls_after_traffic_stops_and_is_zero_a_window_later() {
        let mut w = RateWindow::new(s(10.0), s(1.0));
        for t in 0..20 {
            w.record(s(t as f64), 10.0);
        }
        let mut last = w.average(s(19.0));
        assert_eq!(last, 10.0);
        for t in 20..30 {
            w.record(s(t as f64), 0.0);
            let now = w.average(s(t as f64));
            assert!(now < last, "falls every bucket after traffic stops: {now} !< {last} at {t}");
            last = now;
        }
        assert_eq!(w.average(s(29.0)), 0.0, "zero one window after the last request");
        assert_eq!(w.average(s(100.0)), 0.0, "and stays zero without samples");
    }

    #[test]
    fn granularity_is_the_unit_and_ticks_within_a_bucket_add_up() {
        let mut w = RateWindow::new(s(10.0), s(2.0));
        for tick in 0..40 {
            w.record(s(tick as f64 * 0.5), 1.0); // 2 requests per second
        }
        assert_eq!(w.average(s(19.5)), 4.0, "4 requests per 2s bucket");
    }

    #[test]
    fn rounds_to_three_decimals_and_survives_tiny_granularity() {
        let mut w = RateWindow::new(s(3.0), s(1.0));
        w.record(s(0.0), 1.0);
        w.record(s(1.0), 0.0);
        w.record(s(2.0), 0.0);
        assert_eq!(w.average(s(2.0)), 0.333);
        let w = RateWindow::new(s(1.0), Duration::ZERO);
        assert_eq!(w.average(s(5.0)), 0.0);
    }
}
