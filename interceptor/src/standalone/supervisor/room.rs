//! The supervisor's part in sharing a machine: taking room in the program's group before a start, and the
//! clean stop (requests in flight finish first, within a bound) when it is unloaded or asked to make room.

use std::time::Duration;

use tokio::time::Instant;

use super::{Program, Programs, State, Supervisor, describe};
use crate::standalone::group::Slot;
use crate::standalone::handle::ProgramState;

/// How long an unloaded program outside any group may finish its in-flight requests.
const UNLOAD_DRAIN: Duration = Duration::from_secs(60);
/// How often a draining program's in-flight requests are counted. The first count comes one step after the
/// gate closed, so requests the gate had just released (woken on other threads) are already counted as sent.
const DRAIN_STEP: Duration = Duration::from_millis(50);

impl<P: Programs> Supervisor<P> {
    /// Takes room in the program's group (waiting while members in the way stop); `None` at shutdown.
    pub(super) async fn room(&self) -> Option<Option<Slot>> {
        let Some(member) = &self.s.member else { return Some(None) };
        let key = &self.s.key;
        let room = member.room(|holders| {
            self.report(ProgramState::Waiting, None);
            let holders: Vec<String> = holders.iter().map(ToString::to_string).collect();
            tracing::info!(route = %key, group = %member.group().name, ?holders, "waiting for room in the group");
        });
        tokio::select! {
            slot = room => Some(Some(slot)),
            _ = self.stop.triggered() => None,
        }
    }

    /// Resolves once the program is asked to make room in its group (never without a group).
    pub(super) async fn asked_to_make_room(&self) {
        match &self.s.member {
            Some(member) => member.asked_to_make_room().await,
            None => std::future::pending().await,
        }
    }

    /// Requests sent to the program and not finished (held ones excluded).
    fn sent(&self) -> i64 {
        self.in_flight() - self.gate.waiting() as i64
    }

    /// Stops a running program cleanly: the gate closes, requests in flight finish (or the bound passes),
    /// then the stop signal; its group room is given back after.
    pub(super) async fn drain_and_stop(
        &mut self,
        mut program: P::Program,
        room: Option<Slot>,
        why: &str,
    ) -> State<P::Program> {
        let (key, spec) = (self.s.key.clone(), self.s.spec.clone());
        self.gate.set_open(false);
        self.up(false);
        self.report(ProgramState::Stopping, Some(program.pid()));
        let bound = self.s.member.as_ref().map_or(UNLOAD_DRAIN, |m| m.group().drain_timeout);
        tracing::info!(route = %key, pid = program.pid(), bound = ?bound, "stopping program ({why}) once its requests finish");
        let deadline = Instant::now() + bound;
        loop {
            tokio::select! {
                status = program.exited() => {
                    tracing::info!(route = %key, status = %describe(status), "program exited while stopping");
                    drop(room);
                    return State::Stopped;
                }
                _ = tokio::time::sleep(DRAIN_STEP) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(route = %key, in_flight = self.sent(), "stop bound passed; stopping with requests in flight");
                    break;
                }
                _ = self.stop.triggered() => break,
            }
            if self.sent() <= 0 {
                break;
            }
        }
        let status = program.stop(spec.stop_signal, spec.stop_timeout).await;
        tracing::info!(route = %key, status = %describe(status), "program stopped ({why})");
        self.failures = 0;
        drop(room);
        State::Stopped
    }
}
