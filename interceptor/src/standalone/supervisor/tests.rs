//! The supervisor's states on a paused clock, with a scripted program.

use std::os::unix::process::ExitStatusExt;

use super::*;

/// What the scripted programs do and what happened to them.
#[derive(Debug, Default)]
struct Script {
    /// A start fails with this message.
    refuse_start: Option<&'static str>,
    /// Exits on its own this long after starting (with status 3), never ready.
    crash_after: Option<Duration>,
    /// Never answers probes.
    never_ready: bool,
    starts: u32,
    running: bool,
    stops: Vec<StopSignal>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Script>>);

impl Fake {
    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.0.lock().unwrap()
    }
}

struct FakeProgram {
    fake: Fake,
    crash_at: Option<Instant>,
}

impl Programs for Fake {
    type Program = FakeProgram;

    fn start(&self, _: &RouteKey, _: &ProcessSpec) -> std::io::Result<FakeProgram> {
        let mut s = self.script();
        if let Some(msg) = s.refuse_start {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, msg));
        }
        s.starts += 1;
        s.running = true;
        Ok(FakeProgram { fake: self.clone(), crash_at: s.crash_after.map(|d| Instant::now() + d) })
    }

    async fn probe(&self, _: &str, probe: &Probe, _: Duration) -> bool {
        let s = self.script();
        // The pre-start check (a bare TCP probe) finds nothing; the program answers once running.
        *probe != Probe::Tcp && s.running && !s.never_ready && s.crash_after.is_none()
    }
}

impl Program for FakeProgram {
    fn pid(&self) -> i32 {
        42
    }

    async fn exited(&mut self) -> Option<ExitStatus> {
        match self.crash_at {
            Some(at) => {
                tokio::time::sleep_until(at).await;
                self.fake.script().running = false;
                Some(ExitStatus::from_raw(3 << 8))
            }
            None => std::future::pending().await,
        }
    }

    fn last_output(&self, _: usize) -> String {
        "boom: no GPU found".into()
    }

    async fn stop(self, signal: StopSignal, _: Duration) -> Option<ExitStatus> {
        let mut s = self.fake.script();
        s.running = false;
        s.stops.push(signal);
        Some(ExitStatus::from_raw(0))
    }
}

struct Running {
    fake: Fake,
    gate: Arc<Gate>,
    counters: Arc<RouteCounters>,
    metrics: ProcessMetrics,
    stop: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

fn start(script: Script) -> Running {
    let fake = Fake(Arc::new(Mutex::new(script)));
    let gate = Arc::new(Gate::new(false));
    let counters = Arc::new(RouteCounters::default());
    let metrics = ProcessMetrics::default();
    let stop = Shutdown::new();
    let spec = ProcessSpec {
        command: vec!["llm".into()],
        env: Default::default(),
        working_dir: None,
        start_timeout: Duration::from_secs(10),
        scaledown_period: Duration::from_secs(60),
        stop_signal: StopSignal::Int,
        stop_timeout: Duration::from_secs(5),
        expose_output: false,
    };
    let s = Supervised {
        key: RouteKey::new("default", "llm"),
        spec,
        address: "127.0.0.1:1".into(),
        probe: Probe::HttpGet("/ready".into()),
        users: Arc::new(Mutex::new(vec![counters.clone()])),
        metrics: metrics.clone(),
        programs: fake.clone(),
    };
    let task = tokio::spawn(supervise(s, gate.clone(), stop.clone()));
    Running { fake, gate, counters, metrics, stop, task }
}

impl Running {
    fn up(&self) -> i64 {
        self.metrics.up.get_or_create(&RouteLabels::new(&RouteKey::new("default", "llm"))).get()
    }

    fn starts(&self) -> u32 {
        self.fake.script().starts
    }
}

#[tokio::test(start_paused = true)]
async fn starts_on_demand_stops_after_the_idle_period_and_starts_again() {
    let r = start(Script::default());
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(r.starts(), 0, "nothing runs before a request wants it");

    let held = r.counters.begin();
    r.gate.wait_open().await.unwrap();
    assert_eq!((r.starts(), r.up()), (1, 1), "started once, ready");
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(r.gate.is_open() && r.fake.script().stops.is_empty(), "never stopped while a request is in flight");

    drop(held);
    tokio::time::sleep(Duration::from_secs(58)).await;
    assert!(r.fake.script().stops.is_empty(), "not before scaledownPeriod");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(r.fake.script().stops, vec![StopSignal::Int], "stopped with stopSignal once idle");
    assert!(!r.gate.is_open());
    assert_eq!(r.up(), 0);

    r.gate.wait_open().await.unwrap();
    assert_eq!(r.starts(), 2, "the next request starts it again");
    r.stop.trigger();
    r.task.await.unwrap();
    assert_eq!(r.fake.script().stops.len(), 2, "stopped at shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_program_that_exits_before_ready_is_reported_and_retried_after_a_growing_back_off() {
    let r = start(Script { crash_after: Some(Duration::from_millis(300)), ..Default::default() });
    let refusal = r.gate.wait_open().await.unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::Failed);
    assert_eq!(
        refusal.reason,
        "the program of route default/llm exited with exit status: 3 before it was ready; next start attempt in 1s",
        "the route and exit status only: the output stays in the log"
    );
    let t = Instant::now();
    assert!(r.gate.wait_open().await.is_err(), "refused at once during the back-off");
    assert_eq!(t.elapsed(), Duration::ZERO);
    assert_eq!(r.starts(), 1, "no restart during the back-off");

    tokio::time::sleep(Duration::from_millis(1001)).await;
    let refusal = r.gate.wait_open().await.unwrap_err();
    assert_eq!(r.starts(), 2, "the next request after the back-off tries again");
    assert!(refusal.reason.ends_with("next start attempt in 2s"), "{}", refusal.reason);
    r.stop.trigger();
    r.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_program_not_ready_within_the_start_timeout_is_refused_as_timed_out_and_stopped() {
    let r = start(Script { never_ready: true, ..Default::default() });
    let t = Instant::now();
    let refusal = r.gate.wait_open().await.unwrap_err();
    assert_eq!(t.elapsed(), Duration::from_secs(10), "held until startTimeout, not longer");
    assert_eq!(refusal.kind, RefusalKind::TimedOut);
    assert_eq!(refusal.reason, "the program of route default/llm was not ready within 10s");
    assert_eq!(r.fake.script().stops, vec![StopSignal::Int]);
    assert_eq!(r.up(), 0);
    r.stop.trigger();
    r.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_program_that_cannot_start_is_refused_with_the_reason() {
    let r = start(Script { refuse_start: Some("no such file"), ..Default::default() });
    let refusal = r.gate.wait_open().await.unwrap_err();
    assert_eq!(refusal.kind, RefusalKind::Failed);
    assert!(refusal.reason.starts_with("cannot start the program of route default/llm (llm): no such file"));
    r.stop.trigger();
    r.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_while_starting_stops_the_program() {
    let r = start(Script { never_ready: true, ..Default::default() });
    r.gate.nudge();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(r.starts(), 1);
    r.stop.trigger();
    r.task.await.unwrap();
    assert_eq!(r.fake.script().stops, vec![StopSignal::Int]);
}

#[test]
fn backoff_doubles_to_a_cap() {
    let got: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(got, vec![1, 2, 4, 8, 16, 30, 30, 30]);
}
