//! A supervised program as the admin port sees it: its state and since when, its PID, the requests in flight
//! for it, its output, and the one command it takes (unload). The supervisor writes the state; the admin
//! port reads it and asks for unloads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use httpscale_core::queue::RouteCounters;
use httpscale_core::route::RouteKey;
use tokio::sync::Notify;

use super::output::OutputLog;

/// The counters of every route forwarding to one upstream; the program is idle when all are at zero.
/// Updated in place when a reload changes which routes forward there.
pub type Users = Arc<Mutex<Vec<Arc<RouteCounters>>>>;

/// Where a program is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramState {
    Stopped,
    /// Wanted, waiting for room in its group (another member is stopping).
    Waiting,
    Starting,
    Running,
    /// Idle, unloaded or making room: in-flight requests finish, then it gets its stop signal.
    Stopping,
    /// A start failed; requests are refused until the back-off ends.
    BackingOff,
}

impl ProgramState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Waiting => "waiting",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::BackingOff => "backing-off",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Status {
    pub state: ProgramState,
    pub since: SystemTime,
    pub pid: Option<i32>,
}

/// One supervised program (see the module docs).
#[derive(Debug)]
pub struct ProgramHandle {
    pub key: RouteKey,
    pub upstream: String,
    pub group: Option<String>,
    pub users: Users,
    pub output: Arc<OutputLog>,
    status: Mutex<Status>,
    unload: AtomicBool,
    unload_signal: Notify,
}

impl ProgramHandle {
    pub fn new(key: RouteKey, upstream: String, group: Option<String>, users: Users) -> Self {
        Self {
            key,
            upstream,
            group,
            users,
            output: Arc::default(),
            status: Mutex::new(Status { state: ProgramState::Stopped, since: SystemTime::now(), pid: None }),
            unload: AtomicBool::new(false),
            unload_signal: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a new state (a fresh start forgets an unload asked before it).
    pub fn set(&self, state: ProgramState, pid: Option<i32>) {
        let mut status = self.lock();
        if status.state != state {
            status.since = SystemTime::now();
        }
        status.state = state;
        status.pid = pid;
        if state == ProgramState::Starting {
            self.unload.store(false, Ordering::Release);
        }
    }

    pub fn status(&self) -> Status {
        *self.lock()
    }

    /// Requests counted for the program's routes, held ones included.
    pub fn in_flight(&self) -> i64 {
        self.users.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|c| c.snapshot().concurrency).sum()
    }

    /// Asks the supervisor to stop the program (after its in-flight requests); false when it is not starting
    /// or running.
    pub fn unload(&self) -> bool {
        let status = self.lock();
        if !matches!(status.state, ProgramState::Starting | ProgramState::Running) {
            return false;
        }
        self.unload.store(true, Ordering::Release);
        self.unload_signal.notify_one();
        true
    }

    /// Resolves once an unload is asked (for the supervisor).
    pub async fn unload_asked(&self) {
        loop {
            if self.unload.swap(false, Ordering::AcqRel) {
                return;
            }
            self.unload_signal.notified().await;
        }
    }
}
