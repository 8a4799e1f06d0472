use std::time::Duration;

use httpscale_core::standalone::GroupPolicy;

use super::*;

fn key(name: &str) -> RouteKey {
    RouteKey::new("default", name)
}

fn wait(ask: &[&str]) -> Room {
    Room::Wait { ask: ask.iter().map(|n| key(n)).collect() }
}

#[test]
fn an_exclusive_group_holds_one_member_and_asks_it_to_make_room_once() {
    let mut g = GroupState::new(Some(1));
    assert_eq!(g.request(&key("a"), 1), Room::Granted);
    assert_eq!(g.request(&key("b"), 1), wait(&["a"]), "b is first in line: a is asked");
    assert!(g.asked(&key("a")));
    assert_eq!(g.request(&key("c"), 1), wait(&[]), "a was asked already");
    assert_eq!(g.request(&key("b"), 1), wait(&[]), "asking again changes nothing");
    assert_eq!(g.leave(&key("a")), vec![key("b"), key("c")], "both try again");
    assert_eq!(g.request(&key("c"), 1), wait(&[]), "c is not first in line");
    assert_eq!(g.request(&key("b"), 1), Room::Granted);
    assert!(!g.asked(&key("b")));
    assert_eq!(g.request(&key("c"), 1), wait(&["b"]));
}

#[test]
fn a_memory_budget_asks_the_oldest_holders_until_the_first_in_line_fits() {
    let mut g = GroupState::new(Some(24));
    for (name, w) in [("a", 8), ("b", 8), ("c", 4)] {
        assert_eq!(g.request(&key(name), w), Room::Granted);
    }
    assert_eq!(g.request(&key("d"), 4), Room::Granted, "24 of 24");
    assert_eq!(g.request(&key("e"), 12), wait(&["a", "b"]), "12 short: the two oldest");
    g.leave(&key("a"));
    assert_eq!(g.request(&key("e"), 12), wait(&[]), "still 4 short until b stops");
    g.leave(&key("b"));
    assert_eq!(g.request(&key("e"), 12), Room::Granted);
    assert_eq!(g.holders(), vec![key("c"), key("d"), key("e")]);
}

#[test]
fn side_by_side_is_unlimited_and_leaving_the_line_lets_the_next_go_first() {
    let mut g = GroupState::new(None);
    for name in ["a", "b", "c"] {
        assert_eq!(g.request(&key(name), 0), Room::Granted);
    }
    let mut g = GroupState::new(Some(1));
    g.request(&key("a"), 1);
    g.request(&key("b"), 1);
    g.request(&key("c"), 1);
    g.leave(&key("b"));
    g.leave(&key("a"));
    assert_eq!(g.request(&key("c"), 1), Room::Granted, "b gave up its place");
}

fn exclusive() -> Arc<Group> {
    Group::new(ProcessGroup {
        name: "gpu".into(),
        policy: GroupPolicy::Exclusive,
        drain_timeout: Duration::from_secs(60),
        memory: 0,
    })
}

#[tokio::test(start_paused = true)]
async fn a_waiting_member_gets_room_when_the_holder_stops_and_the_holder_hears_it_was_asked() {
    let group = exclusive();
    let (a, b) = (group.member(key("a"), 1), group.member(key("b"), 1));
    let slot_a = a.room(|_| {}).await;
    let waiting_for = Arc::new(Mutex::new(Vec::new()));
    let heard = waiting_for.clone();
    let b_waits = tokio::spawn(async move { b.room(move |h| heard.lock().unwrap().extend_from_slice(h)).await });
    tokio::time::timeout(Duration::from_secs(1), a.asked_to_make_room()).await.expect("a is asked");
    assert_eq!(*waiting_for.lock().unwrap(), vec![key("a")]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!b_waits.is_finished(), "no room until a stops");
    drop(slot_a);
    let _slot_b = tokio::time::timeout(Duration::from_secs(1), b_waits).await.unwrap().unwrap();
    assert_eq!(group.state().holders(), vec![key("b")]);
}

#[tokio::test(start_paused = true)]
async fn a_member_that_stops_waiting_leaves_the_line() {
    let group = exclusive();
    let (a, b, c) = (group.member(key("a"), 1), group.member(key("b"), 1), group.member(key("c"), 1));
    let slot_a = a.room(|_| {}).await;
    assert!(tokio::time::timeout(Duration::from_secs(1), b.room(|_| {})).await.is_err(), "b gives up");
    let c_waits = tokio::spawn(async move { c.room(|_| {}).await });
    tokio::task::yield_now().await;
    drop(slot_a);
    tokio::time::timeout(Duration::from_secs(1), c_waits).await.expect("c is first in line now").unwrap();
}
