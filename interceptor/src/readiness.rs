//! Readiness sources: what opens and closes the gates that held requests wait on. The data path only sees
//! [`Gate`]s; a source is told which targets are in use and drives their gates. Standalone mode uses
//! [`Standalone`]: an upstream with a `process` section gets a supervisor ([`crate::process`]) that starts the
//! program on demand; any other upstream gets a probe loop (TCP connect, or an HTTP GET) that looks every
//! 50 ms while requests wait and every second otherwise. The Kubernetes source (EndpointSlices) plugs in
//! behind the same trait.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Empty;
use httpscale_core::Shutdown;
use httpscale_core::gate::Gate;
use httpscale_core::queue::RouteCounters;
use httpscale_core::route::{RouteKey, Target};
use httpscale_core::standalone::{Probe, ProcessSpec};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::metrics::RouteLabels;
use crate::process::{self, ProcessMetrics, Supervised};

/// A target in use and the gate its readiness drives.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub target: Target,
    pub gate: Arc<Gate>,
    pub probe: Probe,
    pub process: Option<TrackedProcess>,
}

/// The program behind a target, and the counters of every route that forwards there.
#[derive(Debug, Clone)]
pub struct TrackedProcess {
    pub key: RouteKey,
    pub spec: ProcessSpec,
    pub counters: Vec<Arc<RouteCounters>>,
}

pub trait ReadinessSource: Send + Sync + 'static {
    /// The set of targets in use changed: drive these gates, forget every other target.
    fn track(&self, targets: Vec<Tracked>);

    /// Stops driving every gate (stopping any program) and resolves when that is done.
    fn stop(&self) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Probe cadence: `fast` while a request waits, `slow` otherwise; `timeout` bounds one probe.
#[derive(Debug, Clone, Copy)]
pub struct ProbeTiming {
    pub fast: Duration,
    pub slow: Duration,
    pub timeout: Duration,
}

impl Default for ProbeTiming {
    fn default() -> Self {
        Self { fast: Duration::from_millis(50), slow: Duration::from_secs(1), timeout: Duration::from_millis(500) }
    }
}

/// What identifies a running task: a change of any of these restarts it.
#[derive(PartialEq)]
struct TaskKey {
    probe: Probe,
    process: Option<ProcessSpec>,
}

struct Task {
    key: TaskKey,
    gate: Arc<Gate>,
    /// The counters a supervisor sums to decide idleness; updated in place on reloads.
    counters: SharedCounters,
    cancel: Shutdown,
    handle: JoinHandle<()>,
}

/// The counters of every route forwarding to one upstream.
pub type SharedCounters = Arc<Mutex<Vec<Arc<RouteCounters>>>>;

/// Standalone readiness: one probe loop or process supervisor per upstream.
pub struct Standalone {
    runtime: tokio::runtime::Handle,
    timing: ProbeTiming,
    metrics: ProcessMetrics,
    launcher: PathBuf,
    tasks: Mutex<HashMap<Target, Task>>,
}

impl Standalone {
    pub fn new(timing: ProbeTiming, metrics: ProcessMetrics, launcher: PathBuf) -> Self {
        Self {
            runtime: tokio::runtime::Handle::current(),
            timing,
            metrics,
            launcher,
            tasks: Mutex::new(HashMap::new()),
        }
    }

    fn spawn(&self, t: Tracked) -> Task {
        let cancel = Shutdown::new();
        let key = task_key(&t);
        let gate = t.gate.clone();
        let counters: SharedCounters =
            Arc::new(Mutex::new(t.process.as_ref().map(|p| p.counters.clone()).unwrap_or_default()));
        let handle = match t.process {
            Some(p) => {
                let supervised = Supervised {
                    labels: RouteLabels::new(&p.key),
                    key: p.key,
                    spec: p.spec,
                    address: t.target.to_string(),
                    probe: t.probe,
                    counters: counters.clone(),
                    metrics: self.metrics.clone(),
                    launcher: self.launcher.clone(),
                };
                self.runtime.spawn(process::supervise(supervised, t.gate, cancel.clone()))
            }
            None => self.runtime.spawn(probe_loop(t, self.timing, cancel.clone())),
        };
        Task { key, gate, counters, cancel, handle }
    }
}

impl ReadinessSource for Standalone {
    fn track(&self, targets: Vec<Tracked>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = HashMap::new();
        for t in targets {
            match tasks.remove(&t.target) {
                Some(task) if task.key == task_key(&t) && Arc::ptr_eq(&task.gate, &t.gate) => {
                    // Unchanged: a running program keeps running; only the routes counting for it may differ.
                    if let Some(p) = t.process {
                        *task.counters.lock().unwrap_or_else(|e| e.into_inner()) = p.counters;
                    }
                    next.insert(t.target, task);
                }
                old => {
                    if let Some(task) = old {
                        task.cancel.trigger();
                    }
                    next.insert(t.target.clone(), self.spawn(t));
                }
            }
        }
        for (_, task) in tasks.drain() {
            task.cancel.trigger();
        }
        *tasks = next;
    }

    fn stop(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let tasks: Vec<Task> = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, t)| t).collect();
        Box::pin(async move {
            for t in &tasks {
                t.cancel.trigger();
            }
            for t in tasks {
                let _ = t.handle.await;
            }
        })
    }
}

fn task_key(t: &Tracked) -> TaskKey {
    TaskKey { probe: t.probe.clone(), process: t.process.as_ref().map(|p| p.spec.clone()) }
}

async fn probe_loop(t: Tracked, timing: ProbeTiming, cancel: Shutdown) {
    let address = t.target.to_string();
    loop {
        let result = probe_once(&address, &t.probe, timing.timeout).await;
        let ready = result.is_ok();
        if t.gate.set_open(ready) {
            match &result {
                Ok(()) => tracing::info!(upstream = %address, "upstream is ready"),
                Err(e) => tracing::info!(upstream = %address, cause = %e, "upstream is not ready"),
            }
        }
        let pause = if !ready && t.gate.waiting() > 0 { timing.fast } else { timing.slow };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            // A request started waiting, or the data path saw a connect failure: look now.
            _ = t.gate.demanded() => {}
            _ = cancel.triggered() => return,
        }
    }
}

/// One probe: a TCP connect, or an HTTP GET that must answer 2xx or 3xx.
pub async fn probe_once(address: &str, probe: &Probe, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let stream = TcpStream::connect(address).await.map_err(|e| format!("connect: {e}"))?;
        let Probe::HttpGet(path) = probe else { return Ok(()) };
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        let req = Request::get(path.as_str())
            .header(http::header::HOST, address)
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| format!("probe request: {e}"))?;
        let resp = send.send_request(req).await.map_err(|e| format!("GET {path}: {e}"));
        conn.abort();
        let status = resp?.status();
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(format!("GET {path} answered {status}"))
        }
    };
    tokio::time::timeout(timeout, attempt).await.map_err(|_| format!("no answer within {timeout:?}"))?
}
