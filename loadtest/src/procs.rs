//! Child processes and what `/proc` says about them.
//!
//! Every child is wrapped in a [`Child`] guard: dropping it (at the end of a scenario, on an error, or after
//! SIGINT) sends SIGTERM to its PID, waits up to 3 s, then SIGKILLs it. nginx is run in the foreground
//! (`daemon off`) so its master is our child and its SIGTERM stops the workers too.

// Child processes and their start-up are timed on the wall clock; no test pauses it.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::net::Reserved;

/// A started child process, stopped by PID when dropped.
pub struct Child {
    pub name: String,
    inner: std::process::Child,
    stopped: bool,
    /// Ports reserved for the process, released once it is stopped.
    ports: Vec<Reserved>,
}

impl Child {
    pub fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<Child> {
        let inner = cmd.spawn().with_context(|| format!("starting {name} ({cmd:?})"))?;
        Ok(Child { name: name.to_string(), inner, stopped: false, ports: Vec::new() })
    }

    /// Keeps `port` reserved for as long as this child lives (it listens there).
    pub fn holding(mut self, port: Reserved) -> Child {
        self.ports.push(port);
        self
    }

    pub fn pid(&self) -> u32 {
        self.inner.id()
    }

    /// Fails if the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.inner.try_wait()? {
            bail!("{} exited early: {status}", self.name);
        }
        Ok(())
    }

    /// Reads stdout lines until one starts with `prefix`; returns the rest of that line. Bounded by `within`.
    pub fn wait_for_line(&mut self, prefix: &str, within: Duration) -> anyhow::Result<String> {
        let out = self.inner.stdout.take().context("stdout not captured")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let wanted = prefix.to_string();
        std::thread::spawn(move || {
            let mut found = false;
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if !found && let Some(rest) = line.strip_prefix(&wanted) {
                    found = true;
                    let _ = tx.send(rest.trim().to_string());
                }
            }
        });
        match rx.recv_timeout(within) {
            Ok(rest) => Ok(rest),
            Err(_) => {
                self.check_running()?;
                bail!("{} did not print {prefix:?} within {within:?}", self.name)
            }
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Ok(None) = self.inner.try_wait() {
            let pid = Pid::from_raw(self.inner.id() as i32);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.inner.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.inner.kill();
        }
        let _ = self.inner.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// CPU time (user + system) of a process and its descendants, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let ticks: u64 = process_tree(pid).into_iter().filter_map(|p| stat_fields(p).map(|f| f.utime + f.stime)).sum();
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / clock_ticks().max(1))
}

/// CPU time of this process alone (its children, such as a backend, are not counted).
pub fn own_cpu_time() -> Duration {
    let ticks = stat_fields(std::process::id()).map_or(0, |f| f.utime + f.stime);
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / clock_ticks().max(1))
}

/// Resident memory of a process and its descendants, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    process_tree(pid)
        .into_iter()
        .filter_map(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

struct StatFields {
    ppid: u32,
    utime: u64,
    stime: u64,
}

fn stat_fields(pid: u32) -> Option<StatFields> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); ppid is field 4, utime 14, stime 15.
    Some(StatFields { ppid: f.get(1)?.parse().ok()?, utime: f.get(11)?.parse().ok()?, stime: f.get(12)?.parse().ok()? })
}

/// `pid` and every process descended from it.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                && let Some(f) = stat_fields(p)
            {
                all.push((p, f.ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    tree
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// A blocking `GET` with `Connection: close`; returns status and body. For admin endpoints and readiness.
pub fn http_get(addr: SocketAddr, host: &str, path: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    crate::ensure_local(addr)?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).context("no status line")?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    Ok((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `GET path` until it answers `want`, bounded by `within`; checks the child is still running.
pub fn wait_http(
    child: &mut Child,
    addr: SocketAddr,
    host: &str,
    path: &str,
    want: u16,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        child.check_running()?;
        match http_get(addr, host, path, Duration::from_secs(1)) {
            Ok((s, _)) if s == want => return Ok(()),
            Ok((s, b)) => last = format!("status {s}: {b}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{} at {addr}{path} not answering {want} within {within:?} (last: {last})", child.name)
}

/// Polls a TCP connect until it succeeds, bounded by `within`.
pub fn wait_connect(child: &mut Child, addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        child.check_running()?;
        if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{} not accepting on {addr} within {within:?}", child.name)
}

/// Where the binaries the scenarios start are.
#[derive(Debug, Clone)]
pub struct Tools {
    /// This program, for `loadtest backend` children.
    pub loadtest: PathBuf,
    pub interceptor: Interceptor,
    /// `None` when nginx is not installed (its legs are skipped, and say so).
    pub nginx: Option<PathBuf>,
}

/// How to run the interceptor under test.
#[derive(Debug, Clone)]
pub enum Interceptor {
    /// The `interceptor` binary at this path (benchmarks: `target/release/interceptor`).
    Binary(PathBuf),
    /// The interceptor library inside this program (`loadtest run-interceptor`), still a separate process.
    Embedded,
}

impl Tools {
    /// Finds the tools. `interceptor` is a path, `embedded`, or `None` for `interceptor` beside this program,
    /// else `target/release/interceptor` of this workspace (built with cargo when missing).
    pub fn locate(interceptor: Option<&str>) -> anyhow::Result<Tools> {
        let loadtest = std::env::current_exe()?;
        let interceptor = match interceptor {
            Some("embedded") => Interceptor::Embedded,
            Some(p) => Interceptor::Binary(PathBuf::from(p)),
            None => Interceptor::Binary(default_interceptor(&loadtest)?),
        };
        Ok(Tools { loadtest, interceptor, nginx: find_nginx() })
    }

    pub fn interceptor_name(&self) -> String {
        match &self.interceptor {
            Interceptor::Binary(p) => p.display().to_string(),
            Interceptor::Embedded => format!("{} run-interceptor (embedded library)", self.loadtest.display()),
        }
    }
}

fn default_interceptor(loadtest: &Path) -> anyhow::Result<PathBuf> {
    if let Some(dir) = loadtest.parent() {
        let sibling = dir.join("interceptor");
        if sibling.is_file() && !cfg!(debug_assertions) {
            return Ok(sibling);
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from);
    let release = target.join("release").join("interceptor");
    if !release.is_file() {
        eprintln!("building the interceptor: cargo build --release -p httpscale-interceptor");
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "--release", "-p", "httpscale-interceptor"])
            .current_dir(workspace)
            .status()
            .context("running cargo")?;
        anyhow::ensure!(status.success(), "cargo build --release -p httpscale-interceptor failed");
    }
    Ok(release)
}

fn find_nginx() -> Option<PathBuf> {
    find_program("nginx", "/usr/sbin")
}

/// The program `name` in a directory of `PATH`, else in `fallback` (where Debian installs it), if installed.
pub fn find_program(name: &str, fallback: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain([PathBuf::from(fallback)]).map(|d| d.join(name)).find(|p| p.is_file())
}

/// `true` when this process runs as root (nginx then needs `user root;` to read its temp directory).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// What an nginx instance does.
#[derive(Debug, Clone, Copy)]
pub enum NginxRole {
    /// `return 200 "ok"` on every request.
    Backend,
    /// Keep-alive reverse proxy to `upstream`; `buffering: false` streams answers as they come.
    Proxy { upstream: SocketAddr, buffering: bool },
}

/// How a process under test is launched: directly, or under a wrapper program (valgrind) given as its argv.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Program and arguments put before the process's own command line; empty = run it directly.
    pub wrapper: Vec<std::ffi::OsString>,
    /// How long start-up may take (a process under valgrind starts tens of times slower).
    pub ready_within: Option<Duration>,
}

impl Launch {
    /// `program`, run under the wrapper if there is one.
    fn command(&self, program: &Path) -> Command {
        match self.wrapper.split_first() {
            None => Command::new(program),
            Some((wrapper, args)) => {
                let mut c = Command::new(wrapper);
                c.args(args).arg(program);
                c
            }
        }
    }
}

/// Starts nginx in the foreground with a generated configuration in `dir`; waits until it answers.
pub fn start_nginx(
    nginx: &Path,
    dir: &Path,
    listen: SocketAddr,
    workers: usize,
    h2: bool,
    role: NginxRole,
) -> anyhow::Result<Child> {
    start_nginx_with(nginx, dir, NginxServer { listen, workers, h2, role }, &Launch::default())
}

/// What one nginx instance serves, where, with how many workers (0 = one process, `master_process off`, so that
/// a wrapper such as valgrind sees the process that serves).
pub struct NginxServer {
    pub listen: SocketAddr,
    pub workers: usize,
    pub h2: bool,
    pub role: NginxRole,
}

/// [`start_nginx`] with a launch wrapper.
pub fn start_nginx_with(nginx: &Path, dir: &Path, server: NginxServer, launch: &Launch) -> anyhow::Result<Child> {
    let listen = server.listen;
    let path = dir.join("nginx.conf");
    std::fs::write(&path, nginx_conf(dir, &server)?)?;
    let mut child = Child::spawn(
        "nginx",
        launch
            .command(nginx)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )?;
    let within = launch.ready_within.unwrap_or(Duration::from_secs(10));
    let ready = if server.h2 {
        wait_connect(&mut child, listen, within)
    } else {
        wait_http(&mut child, listen, "bench.local", "/", 200, within)
    };
    ready.with_context(|| {
        format!("nginx log: {}", std::fs::read_to_string(dir.join("error.log")).unwrap_or_default())
    })?;
    Ok(child)
}

fn nginx_conf(dir: &Path, server: &NginxServer) -> anyhow::Result<String> {
    let NginxServer { listen, workers, h2, role } = *server;
    crate::ensure_local(listen)?;
    let h2 = if h2 { " http2" } else { "" };
    let d = dir.display();
    let user = if is_root() { "user root;" } else { "" };
    let processes = if workers == 0 {
        "master_process off;\nworker_processes 1;".to_string()
    } else {
        format!("master_process on;\nworker_processes {workers};")
    };
    let body = match role {
        NginxRole::Backend => "        location / { return 200 \"ok\"; }".to_string(),
        NginxRole::Proxy { upstream, buffering } => {
            crate::ensure_local(upstream)?;
            format!(
                "        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_buffering {};
        }}
    }}
    upstream backend {{
        server {upstream};
        keepalive 128;
        keepalive_requests 1000000;
        keepalive_timeout 60s;",
                if buffering { "on" } else { "off" }
            )
        }
    };
    Ok(format!(
        "{user}
daemon off;
{processes}
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {listen}{h2} backlog=8192;
{body}
    }}
}}
"
    ))
}

/// Starts a `loadtest backend` child; returns it with its address once it listens.
pub fn start_backend(
    tools: &Tools,
    listen: SocketAddr,
    threads: usize,
    mode: &str,
    extra: &[String],
) -> anyhow::Result<(Child, SocketAddr)> {
    crate::ensure_local(listen)?;
    let mut child = Child::spawn(
        "backend",
        Command::new(&tools.loadtest)
            .args(["backend", "--listen", &listen.to_string(), "--threads", &threads.to_string(), "--mode", mode])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    )?;
    let addr: SocketAddr = child.wait_for_line("listening ", Duration::from_secs(10))?.parse()?;
    Ok((child, addr))
}

/// A running interceptor under test.
pub struct RunningInterceptor {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
}

/// Starts the interceptor under test as a separate process with `routes` and extra environment; waits for
/// `/readyz`.
pub fn start_interceptor(tools: &Tools, routes: &str, env: &[(&str, String)]) -> anyhow::Result<RunningInterceptor> {
    start_interceptor_with(tools, routes, env, &Launch::default())
}

/// [`start_interceptor`] with a launch wrapper.
pub fn start_interceptor_with(
    tools: &Tools,
    routes: &str,
    env: &[(&str, String)],
    launch: &Launch,
) -> anyhow::Result<RunningInterceptor> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("routes.yaml");
    std::fs::write(&file, routes)?;
    let (proxy_port, admin_port) = (Reserved::new()?, Reserved::new()?);
    let (proxy, admin) = (proxy_port.addr(), admin_port.addr());
    let mut cmd = match &tools.interceptor {
        Interceptor::Binary(p) => launch.command(p),
        Interceptor::Embedded => {
            let mut c = launch.command(&tools.loadtest);
            c.arg("run-interceptor");
            c
        }
    };
    cmd.arg("--config")
        .arg(&file)
        .args(["--proxy-port", &proxy.port().to_string(), "--admin-port", &admin.port().to_string()])
        .args(["--bind-address", "127.0.0.1", "--prometheus-enabled", "false"])
        .env("KEDA_HTTP_SHUTDOWN_DELAY", "0s")
        .env("KEDA_HTTP_DRAIN_TIMEOUT", "2s")
        .env("HTTPSCALE_LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = Child::spawn("interceptor", &mut cmd)?.holding(proxy_port).holding(admin_port);
    let within = launch.ready_within.unwrap_or(Duration::from_secs(30));
    wait_http(&mut child, admin, "admin", "/readyz", 200, within)?;
    Ok(RunningInterceptor { child, proxy, admin, _dir: dir })
}

impl RunningInterceptor {
    /// `Concurrency` of route `key` in `/queue`.
    pub fn concurrency(&self, key: &str) -> anyhow::Result<i64> {
        let (_, body) = http_get(self.admin, "admin", "/queue", Duration::from_secs(5))?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        Ok(v[key]["Concurrency"].as_i64().unwrap_or(-1))
    }
}

/// Raises this process's open-file soft limit to the hard limit (children inherit it); returns the new limit.
pub fn raise_fd_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks() {
        assert_eq!(dechunk("2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n"), "ok!!!");
    }

    #[test]
    fn own_process_tree_and_cpu() {
        let me = std::process::id();
        assert_eq!(process_tree(me)[0], me);
        assert!(rss_kib(me) > 0);
        let _ = own_cpu_time();
    }
}
