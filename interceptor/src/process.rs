//! Standalone scale target: a local program (say `ollama serve`) started on the first request for its
//! route and stopped when idle, so it holds no GPU memory while nobody uses it.
//!
//! One supervisor per upstream drives that upstream's gate through these states:
//! - *stopped*: the gate is closed; the first request that waits (or a placeholder answer) starts the program.
//! - *starting*: the program runs in its own process group; it is probed every 50 ms until ready (gate opens,
//!   held requests go on), until it exits (held requests get 502 with its exit status and last output) or
//!   until `startTimeout` (504, and the program is stopped).
//! - *running*: when no request has been in flight for `scaledownPeriod`, the gate closes, and unless a
//!   request slipped in, the program gets `stopSignal`, then SIGKILL after `stopTimeout`. A request that
//!   arrives meanwhile waits and starts it again. A program that exits on its own is reported.
//! - *backing off*: after a failure the gate refuses requests with the reason for 1 s, 2 s, 4 s … (at most
//!   30 s), so a crash loop does not spin; the next request after that tries again.
//!
//! Programs never outlive the interceptor: on shutdown each is stopped gracefully, and each is launched
//! through [`exec_child`], which sets `PR_SET_PDEATHSIG` (SIGKILL) before `exec`, so even a SIGKILLed
//! interceptor leaves no program behind.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use httpscale_core::Shutdown;
use httpscale_core::gate::{Gate, Refusal, RefusalKind};
use httpscale_core::route::RouteKey;
use httpscale_core::standalone::{Probe, ProcessSpec, StopSignal};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::metrics::RouteLabels;
use crate::readiness::{SharedCounters, probe_once};

/// First argument that turns the interceptor binary into the launcher ([`exec_child`]).
pub const EXEC_ARG: &str = "__httpscale-exec";

const START_PROBE_INTERVAL: Duration = Duration::from_millis(50);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const OUTPUT_LINES_KEPT: usize = 20;
const OUTPUT_LINES_REPORTED: usize = 3;

/// The launcher: `interceptor __httpscale-exec <parent-pid> <program> [args…]`. Asks the kernel to SIGKILL
/// this process when its parent dies, makes sure the parent is still there, then becomes the program (same
/// PID, same process group, environment and working directory). Returns only on failure.
pub fn exec_child(args: &[OsString]) -> ExitCode {
    let [parent, program, rest @ ..] = args else {
        eprintln!("usage: interceptor {EXEC_ARG} <parent-pid> <program> [args...]");
        return ExitCode::from(2);
    };
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        eprintln!("cannot set the parent-death signal: {e}");
        return ExitCode::from(1);
    }
    let parent_alive = parent.to_str().and_then(|p| p.parse::<i32>().ok()) == Some(nix::unistd::getppid().as_raw());
    if !parent_alive {
        // The interceptor died before the signal was armed: do not start an orphan.
        return ExitCode::from(1);
    }
    let err = std::process::Command::new(program).args(rest).exec();
    eprintln!("cannot run {}: {err}", program.to_string_lossy());
    ExitCode::from(127)
}

/// `httpscale_process_*` metrics, per route.
#[derive(Clone)]
pub struct ProcessMetrics {
    pub starts: Family<RouteLabels, Counter>,
    pub up: Family<RouteLabels, Gauge>,
    pub start_seconds: Family<RouteLabels, Histogram>,
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessMetrics {
    pub fn new() -> Self {
        Self {
            starts: Family::default(),
            up: Family::default(),
            start_seconds: Family::new_with_constructor(|| {
                Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0])
            }),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register("httpscale_process_starts", "Times the route's program was started", self.starts.clone());
        registry.register("httpscale_process_up", "1 while the route's program is ready, else 0", self.up.clone());
        registry.register(
            "httpscale_process_start_seconds",
            "Time from starting the route's program to its first successful readiness probe",
            self.start_seconds.clone(),
        );
    }
}

/// What a supervisor needs besides its gate.
pub struct Supervised {
    pub key: RouteKey,
    pub labels: RouteLabels,
    pub spec: ProcessSpec,
    pub address: String,
    pub probe: Probe,
    /// Every route forwarding to this upstream: the program is idle when all are at zero.
    pub counters: SharedCounters,
    pub metrics: ProcessMetrics,
    pub launcher: PathBuf,
}

impl Supervised {
    fn in_flight(&self) -> i64 {
        self.counters.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|c| c.snapshot().concurrency).sum()
    }
}

/// A started program.
struct Program {
    child: Child,
    pid: i32,
    output: Arc<Mutex<VecDeque<String>>>,
}

fn signal_of(s: StopSignal) -> Signal {
    match s {
        StopSignal::Term => Signal::SIGTERM,
        StopSignal::Int => Signal::SIGINT,
        StopSignal::Quit => Signal::SIGQUIT,
        StopSignal::Hup => Signal::SIGHUP,
        StopSignal::Kill => Signal::SIGKILL,
        StopSignal::Usr1 => Signal::SIGUSR1,
        StopSignal::Usr2 => Signal::SIGUSR2,
    }
}

impl Program {
    fn spawn(s: &Supervised) -> std::io::Result<Self> {
        let mut cmd = Command::new(&s.launcher);
        cmd.arg(EXEC_ARG)
            .arg(std::process::id().to_string())
            .args(&s.spec.command)
            .envs(&s.spec.env)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &s.spec.working_dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().map_or(0, |p| p as i32);
        let output = Arc::new(Mutex::new(VecDeque::with_capacity(OUTPUT_LINES_KEPT)));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(out, "stdout", s.key.to_string(), output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(err, "stderr", s.key.to_string(), output.clone()));
        }
        Ok(Self { child, pid, output })
    }

    /// The last few output lines, on one line.
    fn last_output(&self, n: usize) -> String {
        let lines = self.output.lock().unwrap_or_else(|p| p.into_inner());
        let skip = lines.len().saturating_sub(n);
        lines.iter().skip(skip).cloned().collect::<Vec<_>>().join(" | ")
    }

    fn signal_group(&self, sig: Signal) {
        if self.pid > 0
            && let Err(e) = killpg(Pid::from_raw(self.pid), sig)
        {
            tracing::debug!(pid = self.pid, cause = %e, "signalling the process group failed");
        }
    }

    /// Stops the whole process group: `signal`, then SIGKILL after `timeout`.
    async fn stop(mut self, signal: StopSignal, timeout: Duration) -> Option<ExitStatus> {
        self.signal_group(signal_of(signal));
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => {
                // Make sure nothing of the group lingers.
                self.signal_group(Signal::SIGKILL);
                status.ok()
            }
            Err(_) => {
                tracing::warn!(pid = self.pid, timeout = ?timeout, "program did not stop in time; killing its process group");
                self.signal_group(Signal::SIGKILL);
                self.child.wait().await.ok()
            }
        }
    }
}

/// Logs a program's output line by line, prefixed by route, and keeps the last lines for error reports.
async fn pump(stream: impl AsyncRead + Unpin, name: &'static str, route: String, kept: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "process", route = %route, stream = name, "{line}");
        let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == OUTPUT_LINES_KEPT {
            kept.pop_front();
        }
        kept.push_back(line);
    }
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_MIN.saturating_mul(1 << failures.saturating_sub(1).min(5)).min(BACKOFF_MAX)
}

fn describe(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "an unknown status".to_owned(), |s| s.to_string())
}

/// How a start attempt ended.
enum Started {
    Ready,
    Exited(Option<ExitStatus>),
    TimedOut,
    Cancelled,
}

async fn wait_ready(s: &Supervised, program: &mut Program, stop: &Shutdown) -> Started {
    let deadline = Instant::now() + s.spec.start_timeout;
    loop {
        if probe_once(&s.address, &s.probe, START_PROBE_INTERVAL.max(Duration::from_millis(200))).await.is_ok() {
            return Started::Ready;
        }
        tokio::select! {
            status = program.child.wait() => return Started::Exited(status.ok()),
            _ = tokio::time::sleep_until(deadline) => return Started::TimedOut,
            _ = tokio::time::sleep(START_PROBE_INTERVAL) => {}
            _ = stop.triggered() => return Started::Cancelled,
        }
    }
}

/// Supervises one upstream's program until `stop` fires; then stops the program and returns.
pub async fn supervise(s: Supervised, gate: Arc<Gate>, stop: Shutdown) {
    let key = s.key.to_string();
    let up = s.metrics.up.get_or_create(&s.labels).clone();
    let mut failures: u32 = 0;
    gate.set_open(false);
    loop {
        // Stopped: wait until someone wants the upstream.
        tokio::select! {
            _ = gate.demanded() => {}
            _ = stop.triggered() => return,
        }
        if probe_once(&s.address, &Probe::Tcp, Duration::from_millis(200)).await.is_ok() {
            // Readiness probes would see that process, not ours: say so before it confuses anyone.
            tracing::warn!(route = %key, upstream = %s.address, "something already listens on the upstream before the program starts; requests may reach it instead");
        }
        let started = Instant::now();
        let mut program = match Program::spawn(&s) {
            Ok(p) => p,
            Err(e) => {
                failures += 1;
                let reason = format!("cannot start the program of route {key} ({}): {e}", s.spec.command[0]);
                tracing::error!(route = %key, cause = %e, "cannot start the program");
                if !refuse_for_backoff(&gate, RefusalKind::Failed, reason, failures, &stop).await {
                    return;
                }
                continue;
            }
        };
        s.metrics.starts.get_or_create(&s.labels).inc();
        tracing::info!(route = %key, pid = program.pid, command = ?s.spec.command, "program starting");
        match wait_ready(&s, &mut program, &stop).await {
            Started::Ready => {
                let took = started.elapsed();
                s.metrics.start_seconds.get_or_create(&s.labels).observe(took.as_secs_f64());
                up.set(1);
                tracing::info!(route = %key, pid = program.pid, took = ?took, "program ready");
                gate.set_open(true);
            }
            Started::Cancelled => {
                program.stop(s.spec.stop_signal, s.spec.stop_timeout).await;
                return;
            }
            Started::Exited(status) => {
                failures += 1;
                let reason = format!(
                    "the program of route {key} exited with {} before it was ready (last output: {})",
                    describe(status),
                    program.last_output(OUTPUT_LINES_REPORTED)
                );
                tracing::error!(route = %key, pid = program.pid, output = %program.last_output(OUTPUT_LINES_KEPT), "{reason}");
                if !refuse_for_backoff(&gate, RefusalKind::Failed, reason, failures, &stop).await {
                    return;
                }
                continue;
            }
            Started::TimedOut => {
                failures += 1;
                let reason = format!("the program of route {key} was not ready within {:?}", s.spec.start_timeout);
                tracing::error!(route = %key, pid = program.pid, output = %program.last_output(OUTPUT_LINES_KEPT), "{reason}; stopping it");
                gate.refuse(Refusal { kind: RefusalKind::TimedOut, reason: reason.clone() });
                program.stop(s.spec.stop_signal, s.spec.stop_timeout).await;
                if !refuse_for_backoff(&gate, RefusalKind::TimedOut, reason, failures, &stop).await {
                    return;
                }
                continue;
            }
        }

        // Running: watch for idleness, an exit of its own, and shutdown.
        let tick = (s.spec.scaledown_period / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut busy_at = Instant::now();
        loop {
            tokio::select! {
                status = program.child.wait() => {
                    up.set(0);
                    gate.set_open(false);
                    failures += 1;
                    let reason = format!(
                        "the program of route {key} exited with {} (last output: {})",
                        describe(status.ok()),
                        program.last_output(OUTPUT_LINES_REPORTED)
                    );
                    tracing::error!(route = %key, pid = program.pid, output = %program.last_output(OUTPUT_LINES_KEPT), "{reason}");
                    if !refuse_for_backoff(&gate, RefusalKind::Failed, reason, failures, &stop).await {
                        return;
                    }
                    break;
                }
                _ = tokio::time::sleep(tick) => {}
                _ = stop.triggered() => {
                    gate.set_open(false);
                    up.set(0);
                    let status = program.stop(s.spec.stop_signal, s.spec.stop_timeout).await;
                    tracing::info!(route = %key, status = %describe(status), "program stopped at shutdown");
                    return;
                }
            }
            if s.in_flight() > 0 {
                busy_at = Instant::now();
                continue;
            }
            if busy_at.elapsed() < s.spec.scaledown_period {
                continue;
            }
            // Idle: close the gate first, so new requests wait; a request counted before the gate closed
            // keeps the program running.
            gate.set_open(false);
            if s.in_flight() > 0 {
                gate.set_open(true);
                busy_at = Instant::now();
                continue;
            }
            up.set(0);
            tracing::info!(route = %key, pid = program.pid, idle = ?busy_at.elapsed(), "stopping idle program");
            let status = program.stop(s.spec.stop_signal, s.spec.stop_timeout).await;
            tracing::info!(route = %key, status = %describe(status), "program stopped");
            failures = 0;
            break;
        }
    }
}

/// Refuses requests with `reason` for the back-off time. Returns false if the supervisor must stop.
async fn refuse_for_backoff(gate: &Gate, kind: RefusalKind, reason: String, failures: u32, stop: &Shutdown) -> bool {
    let wait = backoff(failures);
    tracing::warn!(retry_in = ?wait, "start failed; refusing requests until the back-off ends");
    gate.refuse(Refusal { kind, reason: format!("{reason}; next start attempt in {}s", wait.as_secs()) });
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = stop.triggered() => return false,
    }
    gate.clear_refusal();
    true
}

/// The launcher this process uses: its own executable unless configured.
pub fn default_launcher(configured: Option<&Path>) -> PathBuf {
    configured
        .map(Path::to_owned)
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_else(|| PathBuf::from("interceptor"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        let got: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
