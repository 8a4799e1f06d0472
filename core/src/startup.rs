//! What every binary does to start, written once: parse and validate the configuration before anything runs
//! (help and version exit 0; a bad setting prints one line naming it and exits 64), run on a Tokio runtime
//! with the process's one shutdown signal triggered by SIGTERM or SIGINT, read the routes file, bind the
//! listeners, and report a start-up failure with the exit code that says whose fault it is.

use std::ffi::OsString;
use std::fmt::Display;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::Shutdown;
use crate::standalone::{self, RoutesError, StandaloneConfig};

/// Exit code for configuration errors (BSD `EX_CONFIG`).
pub const EX_CONFIG: u8 = 64;

/// How often a routes file is checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// A setting that parsed but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// The setting's environment variable (what the chart and users set).
    pub setting: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(setting: &'static str, message: impl Into<String>) -> Self {
        Self { setting, message: message.into() }
    }
}

/// Why a binary could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot read routes file {path}: {source}")]
    ReadRoutes { path: PathBuf, source: io::Error },
    #[error("invalid routes file {path}: {source}")]
    Routes { path: PathBuf, source: RoutesError },
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind { what: &'static str, addr: SocketAddr, source: io::Error },
    #[error("cannot configure the Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
}

impl StartError {
    /// 64 when the operator's configuration is at fault, 1 when the environment is.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Config(_) | Self::ReadRoutes { .. } | Self::Routes { .. } => ExitCode::from(EX_CONFIG),
            Self::Bind { .. } | Self::Kube(_) => ExitCode::FAILURE,
        }
    }

    /// Logs the failure once (stderr, through the log subscriber) and returns the exit code.
    pub fn report(&self) -> ExitCode {
        tracing::error!("{self}");
        self.exit_code()
    }
}

/// Parses `args` (the first is the program name) and validates the result.
pub fn parse<C: clap::Parser, E: Display>(
    program: &str,
    args: impl IntoIterator<Item = OsString>,
    validate: impl FnOnce(C) -> Result<C, E>,
) -> Result<C, ExitCode> {
    let config = match C::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return Err(if e.use_stderr() { ExitCode::from(EX_CONFIG) } else { ExitCode::SUCCESS });
        }
    };
    validate(config).map_err(|e| {
        eprintln!("{program}: invalid configuration: {e}");
        ExitCode::from(EX_CONFIG)
    })
}

/// Runs `body` on a runtime (`worker_threads: None` = one current thread) with the shutdown signal wired,
/// after raising the open-file limit to the hard limit (as Go's runtime does).
pub fn run<F, Fut>(program: &str, worker_threads: Option<usize>, body: F) -> ExitCode
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = ExitCode>,
{
    crate::listener::raise_open_file_limit();
    let runtime = match worker_threads {
        None => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{program}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = Shutdown::new();
        tokio::spawn(shutdown.clone().trigger_on_signals());
        body(shutdown).await
    })
}

/// Reads and parses a routes file; returns its text (to notice changes) and its routes.
pub async fn read_routes(path: &Path) -> Result<(String, StandaloneConfig), StartError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| StartError::ReadRoutes { path: path.to_owned(), source })?;
    let parsed = standalone::parse(&text).map_err(|source| StartError::Routes { path: path.to_owned(), source })?;
    Ok((text, parsed))
}

/// Binds a listener and reads the address it got (port 0: one the OS picks). Either failure names what the
/// listener was for and the address asked for, from the same two arguments, so they cannot disagree.
pub async fn bind(what: &'static str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let failed = |source| StartError::Bind { what, addr, source };
    let listener = TcpListener::bind(addr).await.map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    Ok((listener, bound))
}

/// Binds a listening socket (with room for `backlog` pending connections) that other threads, and a restarted
/// process, can bind too (`SO_REUSEPORT`).
pub fn bind_reuseport(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Re-reads `path` every [`RELOAD_INTERVAL`] until `stop` fires and hands each changed, valid content to
/// `apply`. An unreadable or invalid file keeps what is applied and logs why (once per change).
pub async fn watch_routes_file(path: PathBuf, mut last: String, stop: Shutdown, apply: impl Fn(StandaloneConfig)) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RELOAD_INTERVAL) => {}
            _ = stop.triggered() => return,
        }
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) if t == last => continue,
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(path = %path.display(), cause = %e, "cannot read routes file; keeping the current routes");
                continue;
            }
        };
        match standalone::parse(&text) {
            Ok(file) => {
                apply(file);
                tracing::info!(path = %path.display(), "routes file reloaded");
            }
            Err(e) => {
                tracing::error!(path = %path.display(), cause = %e, "invalid routes file; keeping the current routes")
            }
        }
        last = text;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_says_whose_fault_it_is() {
        let config = StartError::Config(ConfigError::new("X", "bad"));
        assert_eq!(config.to_string(), "invalid configuration: X: bad");
        assert_eq!(config.exit_code(), ExitCode::from(EX_CONFIG));
        let routes = StartError::ReadRoutes { path: "r.yaml".into(), source: io::ErrorKind::NotFound.into() };
        assert_eq!(routes.exit_code(), ExitCode::from(EX_CONFIG));
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let bind = StartError::Bind { what: "admin", addr, source: io::ErrorKind::AddrInUse.into() };
        assert_eq!(bind.exit_code(), ExitCode::FAILURE);
        assert!(bind.to_string().starts_with("cannot listen on 127.0.0.1:1 (admin)"));
    }

    /// Regression: the interceptor's admin listener reported a failure to read its bound address with the
    /// proxy's address. `bind` now binds and reads the address from one `what` and one `addr`.
    #[tokio::test]
    async fn a_listener_error_names_what_it_was_for_and_its_address() {
        let (_taken, addr) = bind("proxy", SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let e = bind("admin", addr).await.unwrap_err();
        assert!(e.to_string().starts_with(&format!("cannot listen on {addr} (admin)")), "{e}");
        assert_eq!(e.exit_code(), ExitCode::FAILURE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_routes_file_is_applied_and_an_invalid_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.yaml");
        let first = "routes: []\n";
        std::fs::write(&path, first).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stop = Shutdown::new();
        let task = tokio::spawn(watch_routes_file(path.clone(), first.into(), stop.clone(), move |f| {
            let _ = tx.send(f.routes.len());
        }));
        std::fs::write(&path, "routes:\n  - {name: a, hosts: [a.local], upstream: '127.0.0.1:1'}\n").unwrap();
        assert_eq!(rx.recv().await, Some(1));
        std::fs::write(&path, "routes: [{name: broken}]\n").unwrap();
        tokio::time::sleep(RELOAD_INTERVAL * 3).await;
        assert!(rx.try_recv().is_err(), "an invalid edit is not applied");
        stop.trigger();
        task.await.unwrap();
    }
}
