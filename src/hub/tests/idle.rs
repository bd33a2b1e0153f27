//! Empty rooms are closed after their idle timeout; rooms with members stay
//! (moved from `tests/idle_rooms.rs`; time moves by `advance`).

use serde_json::json;

use super::room_kit::{err_rid, ids, leave, listed, member};
use super::*;

const IDLE: u32 = 250;

fn sim() -> Sim {
    Sim::with(1, |c| c.idle_ms = IDLE)
}

/// The clock moves `ms` on in steps of 10 ms, as wall-clock time would
/// (a timer armed by another one's expiry runs in the same span).
fn wait(s: &mut Sim, ms: u64) {
    for _ in 0..ms / 10 {
        s.advance(10);
    }
}

/// Whether `room` leaves the `list` within `ms`, the clock moving in steps
/// of 10 ms.
fn gone_within(s: &mut Sim, c: C, room: &str, ms: u64) -> bool {
    for _ in 0..ms / 10 {
        s.advance(10);
        if !listed(s, c, room) {
            return true;
        }
    }
    false
}

#[test]
fn empty_room_is_closed_after_idle_ms() {
    let mut s = sim();
    let a = s.client(0);
    s.send(
        a,
        json!({"t": "create", "rid": 1, "room": "e", "join": false}),
    );
    s.expect(a, "created");
    assert!(listed(&mut s, a, "e"), "exists right after create");
    wait(&mut s, u64::from(IDLE) - 10);
    assert!(listed(&mut s, a, "e"), "not before idle_ms");
    assert!(gone_within(&mut s, a, "e", 3000), "closed after idle");
    s.send(a, json!({"t": "join", "rid": 2, "room": "e"}));
    err_rid(&mut s, a, "not_found", 2);
    // The name can be taken again.
    s.create(a, "e");
}

#[test]
fn room_emptied_by_leave_is_closed_after_idle_ms() {
    let mut s = sim();
    let a = s.client(0);
    s.create(a, "r");
    leave(&mut s, a, "r");
    assert!(gone_within(&mut s, a, "r", 3000));
    let b = s.client(0);
    s.send(b, json!({"t": "join", "rid": 1, "room": "r"}));
    err_rid(&mut s, b, "not_found", 1);
}

#[test]
fn room_with_a_member_stays() {
    let mut s = sim();
    let (a, a_id) = member(&mut s, 0);
    s.create(a, "r");
    // Three idle periods: no `closed` arrives and the room still takes joins.
    wait(&mut s, 750);
    s.assert_silent(a);
    let (b, b_id) = member(&mut s, 0);
    let joined = s.join(b, "r");
    assert_eq!(ids(&joined), vec![a_id, b_id]);
}

#[test]
fn a_join_within_idle_keeps_the_room() {
    let mut s = sim();
    let a = s.client(0);
    s.send(
        a,
        json!({"t": "create", "rid": 1, "room": "r", "join": false}),
    );
    s.expect(a, "created");
    let b = s.client(0);
    s.join(b, "r");
    wait(&mut s, 750);
    s.assert_silent(b);
    assert!(listed(&mut s, a, "r"));
}

#[test]
fn create_idle_ms_overrides_the_server_default() {
    let mut s = sim();
    let a = s.client(0);
    s.send(
        a,
        json!({"t": "create", "rid": 1, "room": "long", "join": false, "idle_ms": 5000}),
    );
    s.expect(a, "created");
    s.send(
        a,
        json!({"t": "create", "rid": 2, "room": "short", "join": false}),
    );
    s.expect(a, "created");
    assert!(gone_within(&mut s, a, "short", 3000));
    // "short" is gone after at least 250 ms; "long" has 5 s.
    wait(&mut s, 300);
    s.assert_silent(a);
    assert!(listed(&mut s, a, "long"), "a per-room idle_ms is honoured");
}

#[test]
fn a_member_that_is_away_keeps_the_room_alive() {
    let mut s = Sim::with(1, |c| {
        c.idle_ms = IDLE;
        c.grace_ms = 2000;
    });
    let (a, b) = s.pair("r");
    leave(&mut s, a, "r");
    s.disconnect(b, CloseReason::Dropped);
    let c = s.client(0);
    wait(&mut s, 600);
    s.assert_silent(c);
    assert!(
        listed(&mut s, c, "r"),
        "a seat kept for grace is not an empty room"
    );
}
