//! Groups of programs that share one machine (`process.group`): before a member starts it takes room in its
//! group, and members that would not leave it enough room are asked to make some (their supervisors stop
//! them cleanly: in-flight requests finish first, within the group's `drainTimeout`).
//!
//! Room is counted in one unit per group ([`ProcessGroup::weight_and_capacity`]): an exclusive group has
//! room for one member (one GPU), a memory-budget group for members whose `process.memory` sums within the
//! budget, and a side-by-side group is unlimited. Members wait in arrival order; only the first in line asks
//! holders to make room, oldest holder first. [`GroupState`] is the pure bookkeeping; [`Member`] waits on it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use httpscale_core::route::RouteKey;
use httpscale_core::standalone::ProcessGroup;
use tokio::sync::Notify;

#[derive(Debug)]
struct Holder {
    id: RouteKey,
    weight: u64,
    /// Asked to make room; its room comes back when it stops.
    asked: bool,
}

/// Who holds room in a group and who waits for it.
#[derive(Debug, Default)]
pub struct GroupState {
    /// `None`: unlimited.
    capacity: Option<u64>,
    /// In the order they got their room (oldest first).
    holders: Vec<Holder>,
    waiting: VecDeque<(RouteKey, u64)>,
}

/// What a request for room got.
#[derive(Debug, PartialEq, Eq)]
pub enum Room {
    Granted,
    /// Wait; these holders were just asked to make room (none if others were asked already, or the
    /// member is not first in line).
    Wait {
        ask: Vec<RouteKey>,
    },
}

impl GroupState {
    pub fn new(capacity: Option<u64>) -> Self {
        Self { capacity, ..Default::default() }
    }

    fn used(&self) -> u64 {
        self.holders.iter().map(|h| h.weight).sum()
    }

    fn fits(&self, weight: u64) -> bool {
        self.capacity.is_none_or(|c| self.used().saturating_add(weight) <= c)
    }

    /// `id` asks for `weight` of room: granted if it fits and nobody waits ahead, else it waits in line.
    pub fn request(&mut self, id: &RouteKey, weight: u64) -> Room {
        if self.holders.iter().any(|h| &h.id == id) {
            return Room::Granted;
        }
        let first = self.waiting.front().is_none_or(|(w, _)| w == id);
        if first && self.fits(weight) {
            self.waiting.retain(|(w, _)| w != id);
            self.holders.push(Holder { id: id.clone(), weight, asked: false });
            return Room::Granted;
        }
        if !self.waiting.iter().any(|(w, _)| w == id) {
            self.waiting.push_back((id.clone(), weight));
        }
        Room::Wait { ask: self.ask_for_room() }
    }

    /// Asks the oldest holders not yet asked to make room for the first in line, until enough would be
    /// freed; returns the newly asked.
    fn ask_for_room(&mut self) -> Vec<RouteKey> {
        let (Some(capacity), Some((_, weight))) = (self.capacity, self.waiting.front()) else { return Vec::new() };
        let freed: u64 = self.holders.iter().filter(|h| h.asked).map(|h| h.weight).sum();
        let mut short = (self.used() - freed).saturating_add(*weight).saturating_sub(capacity);
        let mut asked = Vec::new();
        for h in self.holders.iter_mut().filter(|h| !h.asked) {
            if short == 0 {
                break;
            }
            h.asked = true;
            short = short.saturating_sub(h.weight);
            asked.push(h.id.clone());
        }
        asked
    }

    /// `id` gives its room back (stopped) or stops waiting; returns who waits now (to try again).
    pub fn leave(&mut self, id: &RouteKey) -> Vec<RouteKey> {
        self.holders.retain(|h| &h.id != id);
        self.waiting.retain(|(w, _)| w != id);
        self.waiting.iter().map(|(w, _)| w.clone()).collect()
    }

    /// Whether the holder `id` was asked to make room.
    pub fn asked(&self, id: &RouteKey) -> bool {
        self.holders.iter().any(|h| &h.id == id && h.asked)
    }

    /// The members holding room (for the admin port).
    pub fn holders(&self) -> Vec<RouteKey> {
        self.holders.iter().map(|h| h.id.clone()).collect()
    }
}

/// A member's wake-ups.
#[derive(Debug, Default)]
struct Signals {
    /// Room may be free: try again.
    retry: Notify,
    /// Asked to make room.
    make_room: Notify,
}

/// One group's shared state.
#[derive(Debug)]
pub struct Group {
    pub spec: ProcessGroup,
    state: Mutex<GroupState>,
    signals: Mutex<HashMap<RouteKey, Arc<Signals>>>,
}

impl Group {
    pub fn new(spec: ProcessGroup) -> Arc<Self> {
        let (_, capacity) = spec.weight_and_capacity();
        Arc::new(Self { spec, state: Mutex::new(GroupState::new(capacity)), signals: Mutex::default() })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn signals(&self, id: &RouteKey) -> Arc<Signals> {
        self.signals.lock().unwrap_or_else(|p| p.into_inner()).entry(id.clone()).or_default().clone()
    }

    fn leave(&self, id: &RouteKey) {
        let waiting = self.state().leave(id);
        for w in waiting {
            self.signals(&w).retry.notify_one();
        }
    }

    /// A member's handle on this group.
    pub fn member(self: &Arc<Self>, id: RouteKey, weight: u64) -> Member {
        Member { signals: self.signals(&id), group: self.clone(), id, weight }
    }
}

/// One program's place in its group.
#[derive(Debug)]
pub struct Member {
    group: Arc<Group>,
    id: RouteKey,
    weight: u64,
    signals: Arc<Signals>,
}

/// Room held in a group; given back when dropped (the program stopped).
#[derive(Debug)]
pub struct Slot {
    group: Arc<Group>,
    id: RouteKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.group.leave(&self.id);
    }
}

/// Leaves the line if a wait for room is abandoned.
struct InLine<'a>(Option<&'a Member>);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        if let Some(m) = self.0 {
            m.group.leave(&m.id);
        }
    }
}

impl Member {
    pub fn group(&self) -> &ProcessGroup {
        &self.group.spec
    }

    /// Waits for room, asking holders to make some; `on_wait` hears whom it waits for. Cancel-safe.
    pub async fn room(&self, mut on_wait: impl FnMut(&[RouteKey])) -> Slot {
        let mut in_line = InLine(Some(self));
        let mut told = false;
        loop {
            let room = self.group.state().request(&self.id, self.weight);
            match room {
                Room::Granted => {
                    in_line.0 = None;
                    return Slot { group: self.group.clone(), id: self.id.clone() };
                }
                Room::Wait { ask } => {
                    for id in &ask {
                        self.group.signals(id).make_room.notify_one();
                    }
                    if !told {
                        told = true;
                        on_wait(&self.group.state().holders());
                    }
                }
            }
            self.signals.retry.notified().await;
        }
    }

    /// Resolves once this member, holding room, is asked to make room.
    pub async fn asked_to_make_room(&self) {
        loop {
            if self.group.state().asked(&self.id) {
                return;
            }
            self.signals.make_room.notified().await;
        }
    }
}

#[cfg(test)]
mod tests;
