//! Readiness sources: what opens and closes the gates that held requests wait on. The data path only sees
//! [`Gate`]s; a source is told which targets are in use and drives their gates. Standalone mode uses
//! [`Prober`], which probes each upstream (TCP connect, or an HTTP GET) quickly while requests wait and
//! slowly otherwise; the Kubernetes source (EndpointSlices) plugs in behind the same trait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Empty;
use httpscale_core::Shutdown;
use httpscale_core::gate::Gate;
use httpscale_core::route::Target;
use httpscale_core::standalone::Probe;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

/// A target in use and the gate its readiness drives.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub target: Target,
    pub gate: Arc<Gate>,
    pub probe: Probe,
}

pub trait ReadinessSource: Send + Sync + 'static {
    /// The set of targets in use changed: drive these gates, forget every other target.
    fn track(&self, targets: Vec<Tracked>);
}

/// Probe cadence: `fast` while a request waits (or after a connect failure), `slow` otherwise.
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

/// A running probe loop and the gate it drives.
type ProbeTask = (Arc<Gate>, AbortHandle);

/// Standalone readiness: one probing task per upstream.
pub struct Prober {
    runtime: tokio::runtime::Handle,
    timing: ProbeTiming,
    shutdown: Shutdown,
    tasks: Mutex<HashMap<(Target, Probe), ProbeTask>>,
}

impl Prober {
    pub fn new(timing: ProbeTiming, shutdown: Shutdown) -> Self {
        Self { runtime: tokio::runtime::Handle::current(), timing, shutdown, tasks: Mutex::new(HashMap::new()) }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        for (_, (_, task)) in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            task.abort();
        }
    }
}

impl ReadinessSource for Prober {
    fn track(&self, targets: Vec<Tracked>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let mut keep = HashMap::new();
        for t in targets {
            let key = (t.target.clone(), t.probe.clone());
            match tasks.remove(&key) {
                Some((gate, task)) if Arc::ptr_eq(&gate, &t.gate) => {
                    keep.insert(key, (gate, task));
                }
                old => {
                    if let Some((_, task)) = old {
                        task.abort();
                    }
                    let task = self.runtime.spawn(probe_loop(t.clone(), self.timing, self.shutdown.clone()));
                    keep.insert(key, (t.gate, task.abort_handle()));
                }
            }
        }
        for (_, (_, task)) in tasks.drain() {
            task.abort();
        }
        *tasks = keep;
    }
}

async fn probe_loop(t: Tracked, timing: ProbeTiming, shutdown: Shutdown) {
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
            _ = shutdown.triggered() => return,
        }
    }
}

/// One probe: a TCP connect, or an HTTP GET that must answer 2xx or 3xx.
pub async fn probe_once(address: &str, probe: &Probe, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let stream = TcpStream::connect(address).await.map_err(|e| format!("connect: {e}"))?;
        let Probe::HttpGet(path) = probe else {
            return Ok(());
        };
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        let req = Request::get(path.as_str())
            .header(http::header::HOST, address)
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| format!("probe request: {e}"))?;
        let resp = send.send_request(req).await.map_err(|e| format!("GET {path}: {e}"))?;
        conn.abort();
        let status = resp.status();
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(format!("GET {path} answered {status}"))
        }
    };
    tokio::time::timeout(timeout, attempt).await.map_err(|_| format!("no answer within {timeout:?}"))?
}
