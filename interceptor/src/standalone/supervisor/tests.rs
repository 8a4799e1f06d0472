//! The supervisor's states on a paused clock, with a scripted program.

use std::os::unix::process::ExitStatusExt;
use std::sync::Mutex;

use httpscale_core::queue::RouteCounters;
use httpscale_core::standalone::{GroupPolicy, ProcessGroup};

use super::*;
use crate::standalone::group::Group;

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

    fn start(&self, _: &RouteKey, _: &ProcessSpec, _: &Arc<OutputLog>) -> std::io::Result<FakeProgram> {
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
    handle: Arc<ProgramHandle>,
    stop: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

fn start(script: Script) -> Running {
    start_in(script, "llm", None)
}

/// A supervisor for the route `default/<name>`, a member of `group` if given.
fn start_in(script: Script, name: &str, group: Option<&Arc<Group>>) -> Running {
    let fake = Fake(Arc::new(Mutex::new(script)));
    let gate = Arc::new(Gate::new(false));
    let counters = Arc::new(RouteCounters::default());
    let metrics = ProcessMetrics::default();
    let stop = Shutdown::new();
    let key = RouteKey::new("default", name);
    let users = Arc::new(Mutex::new(vec![counters.clone()]));
    let handle = Arc::new(ProgramHandle::new(key.clone(), "127.0.0.1:1".into(), None, users));
    let spec = ProcessSpec {
        command: vec!["llm".into()],
        env: Default::default(),
        working_dir: None,
        start_timeout: Duration::from_secs(10),
        scaledown_period: Duration::from_secs(60),
        stop_signal: StopSignal::Int,
        stop_timeout: Duration::from_secs(5),
        group: group.map(|g| g.spec.clone()),
        expose_output: false,
    };
    let s = Supervised {
        key: key.clone(),
        spec,
        address: "127.0.0.1:1".into(),
        probe: Probe::HttpGet("/ready".into()),
        handle: handle.clone(),
        member: group.map(|g| g.member(key, 1)),
        metrics: metrics.clone(),
        programs: fake.clone(),
    };
    let task = tokio::spawn(supervise(s, gate.clone(), stop.clone()));
    Running { fake, gate, counters, metrics, handle, stop, task }
}

impl Running {
    fn up(&self) -> i64 {
        self.metrics.up.get_or_create(&RouteLabels::new(&RouteKey::new("default", "llm"))).get()
    }

    fn starts(&self) -> u32 {
        self.fake.script().starts
    }

    fn state(&self) -> ProgramState {
        self.handle.status().state
    }

    /// A request held until the program is ready, counted as the count layer does.
    fn request(&self) -> tokio::task::JoinHandle<httpscale_core::queue::InFlight> {
        let (gate, in_flight) = (self.gate.clone(), self.counters.begin());
        tokio::spawn(async move {
            gate.wait_open().await.unwrap();
            in_flight
        })
    }

    async fn shut_down(self) {
        self.stop.trigger();
        self.task.await.unwrap();
    }
}

fn gpu(drain: Duration) -> Arc<Group> {
    Group::new(ProcessGroup { name: "gpu".into(), policy: GroupPolicy::Exclusive, drain_timeout: drain, memory: 0 })
}

#[tokio::test(start_paused = true)]
async fn an_exclusive_group_swaps_only_after_the_running_members_requests_finish() {
    let group = gpu(Duration::from_secs(60));
    let (a, b) = (start_in(Script::default(), "a", Some(&group)), start_in(Script::default(), "b", Some(&group)));
    let streaming = a.request().await.unwrap();
    assert_eq!((a.state(), a.handle.status().pid), (ProgramState::Running, Some(42)));

    let t = Instant::now();
    let held_b = b.request();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(b.starts(), 0, "b waits for room");
    assert_eq!(b.state(), ProgramState::Waiting);
    assert_eq!(a.state(), ProgramState::Stopping);
    assert!(a.fake.script().stops.is_empty(), "a's stream is never cut while it runs");
    assert!(!a.gate.is_open(), "new requests for a wait meanwhile");

    drop(streaming);
    let _b_in_flight = tokio::time::timeout(Duration::from_secs(1), held_b).await.unwrap().unwrap();
    assert_eq!(a.fake.script().stops, vec![StopSignal::Int], "a stopped once its stream ended");
    assert!(t.elapsed() < Duration::from_secs(31), "swapped right after: {:?}", t.elapsed());
    assert_eq!((b.starts(), b.state(), a.state()), (1, ProgramState::Running, ProgramState::Stopped));

    // A request for a now waits for b in turn.
    let held_a = a.request();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(a.starts(), 1);
    drop(_b_in_flight);
    tokio::time::timeout(Duration::from_secs(1), held_a).await.unwrap().unwrap();
    assert_eq!((a.starts(), b.fake.script().stops.len()), (2, 1));
    a.shut_down().await;
    b.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn a_member_asked_to_make_room_is_stopped_at_the_drain_bound_even_with_requests_in_flight() {
    let group = gpu(Duration::from_secs(10));
    let (a, b) = (start_in(Script::default(), "a", Some(&group)), start_in(Script::default(), "b", Some(&group)));
    let _never_ends = a.request().await.unwrap();
    let t = Instant::now();
    let held_b = b.request();
    tokio::time::timeout(Duration::from_secs(11), held_b).await.unwrap().unwrap();
    assert!(t.elapsed() >= Duration::from_secs(10), "not before the bound: {:?}", t.elapsed());
    assert_eq!(a.fake.script().stops, vec![StopSignal::Int]);
    a.shut_down().await;
    b.shut_down().await;
}

#[tokio::test(start_paused = true)]
async fn an_unload_stops_a_running_program_after_its_requests_and_a_new_request_starts_it_again() {
    let r = start(Script::default());
    assert!(!r.handle.unload(), "nothing to unload while stopped");
    let in_flight = r.request().await.unwrap();
    assert!(r.handle.unload());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(r.state(), ProgramState::Stopping);
    assert!(r.fake.script().stops.is_empty(), "its request finishes first");
    drop(in_flight);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!((r.state(), r.fake.script().stops.len()), (ProgramState::Stopped, 1));
    let _again = r.request().await.unwrap();
    assert_eq!((r.starts(), r.state()), (2, ProgramState::Running));
    r.shut_down().await;
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
