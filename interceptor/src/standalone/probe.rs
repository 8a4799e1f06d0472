//! Probing a standalone upstream: one probe is a TCP connect, or an HTTP GET that must answer 2xx or 3xx.
//! [`probe_loop`] drives a target's gate for upstreams without a program: it looks every 50 ms while a
//! request waits, every second otherwise, and at once when a request starts waiting or the data path sees a
//! connect failure.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use httpscale_core::Shutdown;
use httpscale_core::gate::Gate;
use httpscale_core::standalone::Probe;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

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

/// Why an upstream is not ready.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("handshake: {0}")]
    Handshake(hyper::Error),
    #[error("probe request: {0}")]
    Request(http::Error),
    #[error("GET {path}: {source}")]
    Get { path: String, source: hyper::Error },
    #[error("GET {path} answered {status}")]
    Status { path: String, status: http::StatusCode },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// One probe of `address`.
pub async fn probe_once(address: &str, probe: &Probe, timeout: Duration) -> Result<(), ProbeError> {
    let attempt = async {
        let stream = TcpStream::connect(address).await.map_err(ProbeError::Connect)?;
        let Probe::HttpGet(path) = probe else { return Ok(()) };
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(ProbeError::Handshake)?;
        let conn = tokio::spawn(conn);
        let req = Request::get(path.as_str())
            .header(http::header::HOST, address)
            .body(Empty::<bytes::Bytes>::new())
            .map_err(ProbeError::Request)?;
        let resp = send.send_request(req).await.map_err(|source| ProbeError::Get { path: path.clone(), source });
        conn.abort();
        let status = resp?.status();
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(ProbeError::Status { path: path.clone(), status })
        }
    };
    tokio::time::timeout(timeout, attempt).await.map_err(|_| ProbeError::Timeout(timeout))?
}

/// Drives `gate` from probes of `address` until `cancel` fires.
pub async fn probe_loop(address: String, probe: Probe, gate: Arc<Gate>, timing: ProbeTiming, cancel: Shutdown) {
    loop {
        let result = probe_once(&address, &probe, timing.timeout).await;
        let ready = result.is_ok();
        if gate.set_open(ready) {
            match &result {
                Ok(()) => tracing::info!(upstream = %address, "upstream is ready"),
                Err(e) => tracing::info!(upstream = %address, cause = %e, "upstream is not ready"),
            }
        }
        let pause = if !ready && gate.waiting() > 0 { timing.fast } else { timing.slow };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            // A request started waiting, or the data path saw a connect failure: look now.
            _ = gate.demanded() => {}
            _ = cancel.triggered() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_waiting_request_makes_the_prober_look_at_once_and_the_gate_opens_when_the_upstream_listens() {
        let reserved = httpscale_testkit::Reserved::new();
        let addr = reserved.addr().to_string();
        let gate = Arc::new(Gate::new(false));
        let cancel = Shutdown::new();
        let timing =
            ProbeTiming { fast: Duration::from_millis(50), slow: Duration::from_secs(3600), ..Default::default() };
        let task = tokio::spawn(probe_loop(addr, Probe::Tcp, gate.clone(), timing, cancel.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!gate.is_open(), "nothing listens");
        let _listening = reserved.listen();
        // Probing is hourly here: only the wake-up a waiting request gives can open the gate this soon.
        tokio::time::timeout(Duration::from_millis(200), gate.wait_open()).await.unwrap().unwrap();
        assert!(gate.is_open());
        cancel.trigger();
        task.await.unwrap();
    }
}
