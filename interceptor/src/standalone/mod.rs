//! Standalone readiness (no Kubernetes): for each upstream in use, a [`probe`] loop, or for an upstream with
//! a `process` section a [`supervisor`] that starts the program on demand ([`program`] launches real ones),
//! taking room in its [`group`] first if it has one. Tasks are keyed by target and survive reloads that do not
//! change them. Each program's [`handle`] (state, output in an [`output`] log, unload) is what the admin port
//! sees.

pub mod group;
pub mod handle;
pub mod output;
pub mod probe;
pub mod program;
pub mod supervisor;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use httpscale_core::Shutdown;
use httpscale_core::gate::Gate;
use httpscale_core::route::Target;
use httpscale_core::standalone::{Probe, ProcessGroup, ProcessSpec};
use tokio::task::JoinHandle;

use crate::readiness::{ReadinessSource, Tracked};
use group::Group;
use handle::{ProgramHandle, Users};
use probe::{ProbeTiming, probe_loop};
use program::Launcher;
use supervisor::{ProcessMetrics, Supervised, supervise};

/// What identifies a running task: a change of any of these restarts it.
#[derive(PartialEq)]
struct TaskKey {
    probe: Probe,
    process: Option<ProcessSpec>,
}

/// A probe loop or supervisor.
struct Task {
    key: TaskKey,
    gate: Arc<Gate>,
    /// The counters a supervisor sums to decide idleness; updated in place on reloads.
    users: Users,
    /// A supervisor's program, as the admin port sees it.
    program: Option<Arc<ProgramHandle>>,
    cancel: Shutdown,
    handle: JoinHandle<()>,
}

/// Standalone readiness: one probe loop or process supervisor per upstream.
pub struct Standalone {
    runtime: tokio::runtime::Handle,
    timing: ProbeTiming,
    metrics: ProcessMetrics,
    launcher: Launcher,
    tasks: Mutex<HashMap<Target, Task>>,
    /// Program groups by name, replaced when their definition changes.
    groups: Mutex<HashMap<String, Arc<Group>>>,
}

impl Standalone {
    /// Runs its tasks on the current runtime.
    pub fn new(timing: ProbeTiming, metrics: ProcessMetrics, launcher: Launcher) -> Self {
        Self {
            runtime: tokio::runtime::Handle::current(),
            timing,
            metrics,
            launcher,
            tasks: Mutex::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// The group `spec` names, created (or replaced, if its definition changed) on first use.
    fn group(&self, spec: &ProcessGroup) -> Arc<Group> {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let same = |g: &Arc<Group>| g.spec == ProcessGroup { memory: 0, ..spec.clone() };
        match groups.get(&spec.name) {
            Some(g) if same(g) => g.clone(),
            _ => {
                let g = Group::new(ProcessGroup { memory: 0, ..spec.clone() });
                groups.insert(spec.name.clone(), g.clone());
                g
            }
        }
    }

    fn spawn(&self, t: Tracked) -> Task {
        let cancel = Shutdown::new();
        let key = task_key(&t);
        let gate = t.gate.clone();
        let users: Users = Arc::new(Mutex::new(t.process.as_ref().map(|p| p.counters.clone()).unwrap_or_default()));
        let (handle, program) = match t.process {
            Some(p) => {
                let group = p.spec.group.as_ref();
                let program = Arc::new(ProgramHandle::new(
                    p.key.clone(),
                    t.target.to_string(),
                    group.map(|g| g.name.clone()),
                    users.clone(),
                ));
                let member = group.map(|g| self.group(g).member(p.key.clone(), g.weight_and_capacity().0));
                let supervised = Supervised {
                    key: p.key,
                    spec: p.spec,
                    address: probe_address(&t.target),
                    probe: t.probe,
                    handle: program.clone(),
                    member,
                    metrics: self.metrics.clone(),
                    programs: self.launcher.clone(),
                };
                (self.runtime.spawn(supervise(supervised, t.gate, cancel.clone())), Some(program))
            }
            None => {
                let task = probe_loop(probe_address(&t.target), t.probe, t.gate, self.timing, cancel.clone());
                (self.runtime.spawn(task), None)
            }
        };
        Task { key, gate, users, program, cancel, handle }
    }

    /// Every supervised program, by route key.
    pub fn programs(&self) -> BTreeMap<String, Arc<ProgramHandle>> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.values().filter_map(|t| t.program.clone()).map(|p| (p.key.to_string(), p)).collect()
    }
}

/// The `host:port` a target is probed at (without an `https://` scheme).
fn probe_address(target: &Target) -> String {
    match target {
        Target::Address(a) => Target::address(a).0.to_owned(),
        other => other.to_string(),
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
                        *task.users.lock().unwrap_or_else(|e| e.into_inner()) = p.counters;
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
