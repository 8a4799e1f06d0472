//! `wrk` as a load generator beside `loadtest`: where it is, how to run it, and what its output says.

use std::process::{Command, Stdio};

use crate::load::{self, LoadResult, LoadSpec};

pub fn find_wrk() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join("wrk")).find(|p| p.is_file())
}

/// `12.34us`, `1.2ms`, `3s` → µs.
fn wrk_time_us(s: &str) -> Option<f64> {
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

fn wrk_pct(out: &str, p: &str) -> Option<f64> {
    out.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == p).then(|| wrk_time_us(it.next()?)).flatten()
    })
}

/// Requests/sec and the 50 % and 99 % latencies from `wrk --latency` output.
pub fn parse_wrk(out: &str) -> Option<(f64, Option<f64>, Option<f64>)> {
    let rps = out.lines().find_map(|l| l.trim().strip_prefix("Requests/sec:")?.trim().parse().ok())?;
    Some((rps, wrk_pct(out, "50%"), wrk_pct(out, "99%")))
}

/// Runs `wrk --latency` (closed loop, HTTP/1.1) and returns what it reports in a [`LoadResult`] (no p99.9;
/// `max` is wrk's; errors from its `Socket errors` and `Non-2xx` lines).
pub fn wrk_load(wrk: &std::path::Path, spec: &LoadSpec) -> anyhow::Result<LoadResult> {
    crate::ensure_local(spec.target)?;
    let secs = spec.duration.as_secs().max(1);
    let out = Command::new(wrk)
        .args(["--latency", "-t", &spec.threads.clamp(1, spec.connections).to_string()])
        .args(["-c", &spec.connections.to_string(), "-d", &format!("{secs}s"), "--timeout", "10s"])
        .args(["-H", &format!("Host: {}", spec.hosts[0]), &format!("http://{}{}", spec.target, spec.path)])
        .stdin(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rps, p50, p99) = parse_wrk(&text).ok_or_else(|| anyhow::anyhow!("unexpected wrk output: {text}"))?;
    let mut errors = std::collections::BTreeMap::new();
    if let Some(line) = text.lines().find_map(|l| l.trim().strip_prefix("Socket errors:")) {
        for part in line.split(',') {
            let mut it = part.split_whitespace();
            if let (Some(kind), Some(n)) = (it.next(), it.next().and_then(|n| n.parse::<u64>().ok()))
                && n > 0
            {
                errors.insert(kind.to_string(), n);
            }
        }
    }
    let non2xx: u64 =
        text.lines().find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:")?.trim().parse().ok()).unwrap_or(0);
    let responses = (rps * secs as f64).round() as u64;
    let max = text
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"Latency") && f.len() >= 4).then(|| wrk_time_us(f[3])).flatten()
        })
        .unwrap_or(f64::NAN);
    let mut status = std::collections::BTreeMap::new();
    status.insert("2xx".to_string(), responses.saturating_sub(non2xx));
    if non2xx > 0 {
        status.insert("non-2xx".to_string(), non2xx);
    }
    Ok(LoadResult {
        label: format!("{} (wrk)", spec.label),
        target: spec.target.to_string(),
        protocol: load::Protocol::H1,
        connections: spec.connections,
        concurrency: spec.connections,
        threads: spec.threads,
        rate_target: None,
        seconds: secs as f64,
        responses,
        ok: responses.saturating_sub(non2xx),
        rps,
        latency: load::Latency {
            p50_us: p50.unwrap_or(f64::NAN),
            p90_us: wrk_pct(&text, "90%").unwrap_or(f64::NAN),
            p99_us: p99.unwrap_or(f64::NAN),
            p999_us: f64::NAN,
            max_us: max,
            mean_us: f64::NAN,
        },
        cdf: Vec::new(),
        status,
        errors,
        unfinished: 0,
        connects: spec.connections as u64,
        body_bytes: 0,
        completions: Vec::new(),
        started: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 5s test @ http://127.0.0.1:1/\n  1 threads and 64 connections\n  Latency Distribution\n     50%  310.00us\n     75%  400.00us\n     90%    1.20ms\n     99%    2.50ms\n  100000 requests in 5.00s, 10MB read\nRequests/sec:  20000.50\nTransfer/sec:      2MB\n";
        let (rps, p50, p99) = parse_wrk(out).unwrap();
        assert_eq!(rps, 20000.5);
        assert_eq!(p50, Some(310.0));
        assert_eq!(p99, Some(2500.0));
    }
}
