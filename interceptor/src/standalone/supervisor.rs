//! The supervisor of a standalone route's program (say `ollama serve`): started on the first request for its
//! route and stopped when idle, so it holds no GPU memory while nobody uses it. One supervisor per upstream
//! drives that upstream's gate through the states of [`State`]:
//!
//! - *stopped*: the gate is closed; the first request that waits (or a placeholder answer) starts the program.
//! - *starting*: the program runs in its own process group; it is probed every 50 ms until ready (gate opens,
//!   held requests go on), until it exits (held requests get 502 with its exit status and last output) or
//!   until `startTimeout` (504, and the program is stopped).
//! - *waiting* (programs in a group): wanted, but waiting for room in its group while members in the way
//!   stop (see [`super::group`]).
//! - *running*: when no request has been in flight for `scaledownPeriod`, the gate closes, and unless a
//!   request slipped in, the program gets `stopSignal`, then SIGKILL after `stopTimeout`. A request that
//!   arrives meanwhile waits and starts it again. A program that exits on its own is reported.
//! - *stopping* (unloaded from the admin port, or asked to make room in its group): the gate closes (new
//!   requests wait), requests in flight finish (at most the group's `drainTimeout`), then the program stops.
//! - *backing off*: after a failure the gate refuses requests with the reason for 1 s, 2 s, 4 s … (at most
//!   30 s), so a crash loop does not spin; the next request after that tries again.
//!
//! How a program is started, probed and stopped is behind [`Programs`] ([`super::program`] is the real one),
//! so the state machine runs on a paused clock in tests.

use std::future::Future;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use httpscale_core::Shutdown;
use httpscale_core::gate::{Gate, Refusal, RefusalKind};
use httpscale_core::route::RouteKey;
use httpscale_core::standalone::{Probe, ProcessSpec, StopSignal};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use super::group::{Member, Slot};
use super::handle::{ProgramHandle, ProgramState};
use super::output::OutputLog;
use crate::labels::RouteLabels;

pub use super::handle::Users;

const START_PROBE_INTERVAL: Duration = Duration::from_millis(50);
const START_PROBE_TIMEOUT: Duration = Duration::from_millis(200);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Output lines logged with a failure, and the fewer quoted in the answer to held requests (when the route
/// opts in).
pub const OUTPUT_LINES_KEPT: usize = 20;
const OUTPUT_LINES_REPORTED: usize = 3;

/// How programs are started and their upstream probed.
pub trait Programs: Send + Sync + 'static {
    type Program: Program;
    /// Starts the route `key`'s program; its output goes to `output`.
    fn start(&self, key: &RouteKey, spec: &ProcessSpec, output: &Arc<OutputLog>) -> std::io::Result<Self::Program>;
    /// One probe of the upstream; true when it is ready.
    fn probe(&self, address: &str, probe: &Probe, timeout: Duration) -> impl Future<Output = bool> + Send;
}

/// A started program.
pub trait Program: Send + 'static {
    fn pid(&self) -> i32;
    /// Resolves when the program exits on its own.
    fn exited(&mut self) -> impl Future<Output = Option<ExitStatus>> + Send;
    /// Its last `n` output lines, on one line.
    fn last_output(&self, n: usize) -> String;
    /// Stops it: `signal` to its process group, then SIGKILL after `timeout`.
    fn stop(self, signal: StopSignal, timeout: Duration) -> impl Future<Output = Option<ExitStatus>> + Send;
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
        Self {
            starts: Family::default(),
            up: Family::default(),
            start_seconds: Family::new_with_constructor(|| {
                Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0])
            }),
        }
    }
}

impl ProcessMetrics {
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
pub struct Supervised<P> {
    pub key: RouteKey,
    pub spec: ProcessSpec,
    pub address: String,
    pub probe: Probe,
    /// Its state for the admin port, its output, the routes counting for it and the unload command.
    pub handle: Arc<ProgramHandle>,
    /// Its place in its group, if it has one.
    pub member: Option<Member>,
    pub metrics: ProcessMetrics,
    pub programs: P,
}

/// Where a supervisor is (see the module docs).
enum State<Prog> {
    Stopped,
    /// `room`: its group's room, held until it stops.
    Starting {
        program: Prog,
        since: Instant,
        room: Option<Slot>,
    },
    Running {
        program: Prog,
        room: Option<Slot>,
    },
    BackingOff(Refusal),
    Done,
}

/// How a start attempt ended.
enum Started {
    Ready,
    Exited(Option<ExitStatus>),
    TimedOut,
    Cancelled,
}

struct Supervisor<P> {
    s: Supervised<P>,
    labels: RouteLabels,
    gate: Arc<Gate>,
    stop: Shutdown,
    /// Failures since the program last ran and stopped cleanly; sets the back-off.
    failures: u32,
}

/// Supervises one upstream's program until `stop` fires; then stops the program and returns.
pub async fn supervise<P: Programs>(s: Supervised<P>, gate: Arc<Gate>, stop: Shutdown) {
    gate.set_open(false);
    let mut sup = Supervisor { labels: RouteLabels::new(&s.key), s, gate, stop, failures: 0 };
    let mut state = State::Stopped;
    loop {
        state = match state {
            State::Stopped => sup.stopped().await,
            State::Starting { program, since, room } => sup.starting(program, since, room).await,
            State::Running { program, room } => sup.running(program, room).await,
            State::BackingOff(refusal) => sup.backing_off(refusal).await,
            State::Done => return,
        };
    }
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_MIN.saturating_mul(1 << failures.saturating_sub(1).min(5)).min(BACKOFF_MAX)
}

fn describe(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "an unknown status".to_owned(), |s| s.to_string())
}

impl<P: Programs> Supervisor<P> {
    fn in_flight(&self) -> i64 {
        self.s.handle.in_flight()
    }

    /// Records where the program is, for the admin port.
    fn report(&self, state: ProgramState, pid: Option<i32>) {
        self.s.handle.set(state, pid);
    }

    fn up(&self, up: bool) {
        self.s.metrics.up.get_or_create(&self.labels).set(i64::from(up));
    }

    fn failed(&mut self, kind: RefusalKind, reason: String) -> State<P::Program> {
        self.failures += 1;
        self.report(ProgramState::BackingOff, None);
        State::BackingOff(Refusal { kind, reason })
    }

    /// Stopped: waits until someone wants the upstream and its group has room, then starts the program.
    async fn stopped(&mut self) -> State<P::Program> {
        self.report(ProgramState::Stopped, None);
        // Requests still waiting (say, for a program stopped to make room) want it at once.
        if self.gate.waiting() == 0 {
            tokio::select! {
                _ = self.gate.demanded() => {}
                _ = self.stop.triggered() => return State::Done,
            }
        }
        let Some(room) = self.room().await else { return State::Done };
        let (key, address) = (&self.s.key, &self.s.address);
        if self.s.programs.probe(address, &Probe::Tcp, START_PROBE_TIMEOUT).await {
            // Readiness probes would see that process, not ours: say so before it confuses anyone.
            tracing::warn!(route = %key, upstream = %address, "something already listens on the upstream before the program starts; requests may reach it instead");
        }
        let since = Instant::now();
        match self.s.programs.start(key, &self.s.spec, &self.s.handle.output) {
            Ok(program) => {
                self.s.metrics.starts.get_or_create(&self.labels).inc();
                tracing::info!(route = %key, pid = program.pid(), command = ?self.s.spec.command, "program starting");
                self.report(ProgramState::Starting, Some(program.pid()));
                State::Starting { program, since, room }
            }
            Err(e) => {
                tracing::error!(route = %key, cause = %e, "cannot start the program");
                let command = self.s.spec.command.first().map_or("", String::as_str);
                let reason = format!("cannot start the program of route {key} ({command}): {e}");
                self.failed(RefusalKind::Failed, reason)
            }
        }
    }

    /// Starting: probes until ready, exited, timed out or stopped.
    async fn starting(&mut self, mut program: P::Program, since: Instant, room: Option<Slot>) -> State<P::Program> {
        let key = self.s.key.clone();
        match self.wait_ready(&mut program, since + self.s.spec.start_timeout).await {
            Started::Ready => {
                let took = since.elapsed();
                self.s.metrics.start_seconds.get_or_create(&self.labels).observe(took.as_secs_f64());
                self.up(true);
                tracing::info!(route = %key, pid = program.pid(), took = ?took, "program ready");
                self.report(ProgramState::Running, Some(program.pid()));
                self.gate.set_open(true);
                State::Running { program, room }
            }
            Started::Cancelled => {
                program.stop(self.s.spec.stop_signal, self.s.spec.stop_timeout).await;
                State::Done
            }
            Started::Exited(status) => {
                let reason = self.exited(&program, status, " before it was ready");
                self.failed(RefusalKind::Failed, reason)
            }
            Started::TimedOut => {
                let reason = format!("the program of route {key} was not ready within {:?}", self.s.spec.start_timeout);
                tracing::error!(route = %key, pid = program.pid(), output = %program.last_output(OUTPUT_LINES_KEPT), "{reason}; stopping it");
                // Held requests get the answer now, not after the stop.
                self.gate.refuse(Refusal { kind: RefusalKind::TimedOut, reason: reason.clone() });
                program.stop(self.s.spec.stop_signal, self.s.spec.stop_timeout).await;
                self.failed(RefusalKind::TimedOut, reason)
            }
        }
    }

    /// Logs an exit with the program's last output, and returns what clients are told: the route and the
    /// exit status, plus the output only if the route opts in (`process.exposeOutput`).
    fn exited(&self, program: &P::Program, status: Option<ExitStatus>, when: &str) -> String {
        let key = &self.s.key;
        let reason = format!("the program of route {key} exited with {}{when}", describe(status));
        tracing::error!(route = %key, pid = program.pid(), output = %program.last_output(OUTPUT_LINES_KEPT), "{reason}");
        match self.s.spec.expose_output {
            true => format!("{reason} (last output: {})", program.last_output(OUTPUT_LINES_REPORTED)),
            false => reason,
        }
    }

    async fn wait_ready(&self, program: &mut P::Program, deadline: Instant) -> Started {
        let timeout = START_PROBE_INTERVAL.max(START_PROBE_TIMEOUT);
        loop {
            if self.s.programs.probe(&self.s.address, &self.s.probe, timeout).await {
                return Started::Ready;
            }
            tokio::select! {
                status = program.exited() => return Started::Exited(status),
                _ = tokio::time::sleep_until(deadline) => return Started::TimedOut,
                _ = tokio::time::sleep(START_PROBE_INTERVAL) => {}
                _ = self.stop.triggered() => return Started::Cancelled,
            }
        }
    }

    /// Running: watches for idleness, an exit of its own, an unload, a request to make room, and shutdown.
    async fn running(&mut self, mut program: P::Program, room: Option<Slot>) -> State<P::Program> {
        let (key, spec) = (self.s.key.clone(), self.s.spec.clone());
        let tick = (spec.scaledown_period / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut busy_at = Instant::now();
        loop {
            tokio::select! {
                status = program.exited() => {
                    self.up(false);
                    self.gate.set_open(false);
                    let reason = self.exited(&program, status, "");
                    return self.failed(RefusalKind::Failed, reason);
                }
                _ = tokio::time::sleep(tick) => {}
                _ = self.s.handle.unload_asked() => return self.drain_and_stop(program, room, "unloaded").await,
                _ = self.asked_to_make_room() => {
                    return self.drain_and_stop(program, room, "making room in its group").await;
                }
                _ = self.stop.triggered() => {
                    self.gate.set_open(false);
                    self.up(false);
                    self.report(ProgramState::Stopping, Some(program.pid()));
                    let status = program.stop(spec.stop_signal, spec.stop_timeout).await;
                    tracing::info!(route = %key, status = %describe(status), "program stopped at shutdown");
                    return State::Done;
                }
            }
            if self.in_flight() > 0 {
                busy_at = Instant::now();
                continue;
            }
            if busy_at.elapsed() < spec.scaledown_period {
                continue;
            }
            // Idle: close the gate first, so new requests wait; a request counted before the gate closed
            // keeps the program running.
            self.gate.set_open(false);
            if self.in_flight() > 0 {
                self.gate.set_open(true);
                busy_at = Instant::now();
                continue;
            }
            self.up(false);
            self.report(ProgramState::Stopping, Some(program.pid()));
            tracing::info!(route = %key, pid = program.pid(), idle = ?busy_at.elapsed(), "stopping idle program");
            let status = program.stop(spec.stop_signal, spec.stop_timeout).await;
            tracing::info!(route = %key, status = %describe(status), "program stopped");
            self.failures = 0;
            return State::Stopped;
        }
    }

    /// Backing off: refuses requests with the reason until the back-off ends.
    async fn backing_off(&mut self, refusal: Refusal) -> State<P::Program> {
        let wait = backoff(self.failures);
        tracing::warn!(retry_in = ?wait, "start failed; refusing requests until the back-off ends");
        let reason = format!("{}; next start attempt in {}s", refusal.reason, wait.as_secs());
        self.gate.refuse(Refusal { kind: refusal.kind, reason });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = self.stop.triggered() => return State::Done,
        }
        self.gate.clear_refusal();
        State::Stopped
    }
}

mod room;

#[cfg(test)]
mod tests;
