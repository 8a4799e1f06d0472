//! Real programs for the [`supervisor`](super::supervisor): each is launched through the interceptor's own
//! binary ([`exec_child`]), which sets `PR_SET_PDEATHSIG` (SIGKILL) before `exec`, so even a SIGKILLed
//! interceptor leaves no program behind; it runs in its own process group, which is what gets signalled; its
//! output is logged line by line and kept in its [`OutputLog`] (error reports, the admin port).

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use httpscale_core::route::RouteKey;
use httpscale_core::standalone::{Probe, ProcessSpec, StopSignal};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use super::output::OutputLog;
use super::probe::probe_once;
use super::supervisor::{Program, Programs};

/// First argument that turns the interceptor binary into the launcher ([`exec_child`]).
pub const EXEC_ARG: &str = "__httpscale-exec";

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

/// The launcher this process uses: its own executable unless configured.
pub fn default_launcher(configured: Option<&Path>) -> PathBuf {
    configured
        .map(Path::to_owned)
        .or_else(|| std::env::current_exe().ok())
        .unwrap_or_else(|| PathBuf::from("interceptor"))
}

/// Starts programs through `launcher` and probes upstreams over the network.
#[derive(Debug, Clone)]
pub struct Launcher(pub PathBuf);

impl Programs for Launcher {
    type Program = ChildProgram;

    fn start(&self, key: &RouteKey, spec: &ProcessSpec, output: &Arc<OutputLog>) -> std::io::Result<ChildProgram> {
        let mut cmd = Command::new(&self.0);
        cmd.arg(EXEC_ARG)
            .arg(std::process::id().to_string())
            .args(&spec.command)
            .envs(&spec.env)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &spec.working_dir {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().map_or(0, |p| p as i32);
        let output = output.clone();
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(out, "stdout", key.to_string(), output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(err, "stderr", key.to_string(), output.clone()));
        }
        Ok(ChildProgram { child, pid, output })
    }

    async fn probe(&self, address: &str, probe: &Probe, timeout: Duration) -> bool {
        probe_once(address, probe, timeout).await.is_ok()
    }
}

/// A started child process.
pub struct ChildProgram {
    child: Child,
    pid: i32,
    output: Arc<OutputLog>,
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

impl ChildProgram {
    fn signal_group(&self, sig: Signal) {
        if self.pid > 0
            && let Err(e) = killpg(Pid::from_raw(self.pid), sig)
        {
            tracing::debug!(pid = self.pid, cause = %e, "signalling the process group failed");
        }
    }
}

impl Program for ChildProgram {
    fn pid(&self) -> i32 {
        self.pid
    }

    async fn exited(&mut self) -> Option<ExitStatus> {
        self.child.wait().await.ok()
    }

    fn last_output(&self, n: usize) -> String {
        self.output.last(n).join(" | ")
    }

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

/// Logs a program's output line by line, prefixed by route, and keeps it in its output log.
async fn pump(stream: impl AsyncRead + Unpin, name: &'static str, route: String, kept: Arc<OutputLog>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "process", route = %route, stream = name, "{line}");
        kept.push(&line);
    }
}
