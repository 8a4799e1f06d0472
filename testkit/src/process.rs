//! Child processes in tests: every one is stopped by its PID when its guard drops. The real binaries are
//! started with JSON logs on stderr; [`Spawned::wait_for`] returns a log line's fields, which is how a test
//! learns the port a binary bound (`--proxy-port 0`), the PID of a program it started, and so on.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::time::Instant;

/// The repository's root directory.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python of the test peers (`scripts/setup-test-peers.sh` installs it).
pub fn peers_python() -> PathBuf {
    let p = repo().join(".peers/venv/bin/python");
    assert!(p.exists(), "test peers missing: run scripts/setup-test-peers.sh (the README's test command does)");
    p
}

/// A child that is killed (and reaped) when dropped.
#[derive(Debug)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd`, which prints `READY <port>` on its first stdout line (the Python peers do); returns it
/// and the port.
pub fn spawn_reporting_port(cmd: &mut Command) -> (Killed, u16) {
    let mut child = Killed(cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap());
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.trim().strip_prefix("READY ").unwrap_or_else(|| panic!("no READY line: {line:?}")).parse();
    (child, port.unwrap())
}

/// A running binary whose stderr is collected as it comes.
pub struct Spawned {
    child: Killed,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl Spawned {
    /// Starts `cmd` with stderr captured (pass `--zap-encoder json` to read fields with [`Spawned::wait_for`]).
    pub fn start(cmd: &mut Command) -> Self {
        let mut child = cmd.env_remove("RUST_LOG").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        // Drained continuously, so the child never blocks on a full pipe.
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    return;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self { child: Killed(child), log, reader: Some(reader) }
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Everything written to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Every JSON log line so far.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.log().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// The first JSON log line whose `message` is `message`, waiting up to `within` for it.
    pub fn wait_for(&mut self, message: &str, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.lines().into_iter().find(|v| v["message"] == message) {
                return line;
            }
            if let Some(status) = self.child.0.try_wait().unwrap() {
                panic!("exited ({status}) before logging {message:?}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no {message:?} line within {within:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` (as `kill -<signal>` does) and waits up to 10 s for the exit; the log is complete after.
    pub fn signal_and_wait(&mut self, signal: &str) -> ExitStatus {
        let sent = Command::new("kill").args([&format!("-{signal}"), &self.pid().to_string()]).status().unwrap();
        assert!(sent.success(), "kill -{signal} failed");
        self.wait(Duration::from_secs(10))
    }

    /// Waits for the exit (up to `within`); the log is complete after.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(s) = self.child.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "did not exit within {within:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        status
    }
}
