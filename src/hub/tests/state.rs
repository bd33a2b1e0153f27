//! Room state machine: `created -> waiting -> playing -> settling -> closed`,
//! any state -> `closed`, owner only, joins only while `created`/`waiting`,
//! `autostart` (moved from `tests/state.rs`).

use serde_json::{json, Value};

use super::room_kit::{create_with, err_rid, member, ok_and, u};
use super::*;

/// `a` creates "r" (extra create fields `fields`), `b` joins; presence
/// drained. Returns the clients and their member ids.
fn pair(s: &mut Sim, fields: Value) -> ((C, u64), (C, u64)) {
    let a = member(s, 0);
    let mut f = json!({"room": "r"});
    if let (Some(f), Value::Object(x)) = (f.as_object_mut(), fields) {
        f.extend(x);
    }
    create_with(s, a.0, f);
    let b = member(s, 0);
    s.join(b.0, "r");
    s.expect(a.0, "presence");
    (a, b)
}

/// The owner sets `to` with a rid; returns the `ver` after checking the `ok`
/// and the `state` broadcast at the owner and at `other`.
#[track_caller]
fn set_state(s: &mut Sim, owner: C, other: C, to: &str, rid: u32) -> u64 {
    s.send(
        owner,
        json!({"t": "state", "rid": rid, "room": "r", "to": to}),
    );
    let (ok, st) = ok_and(s, owner, "state", rid);
    assert_eq!(st["room"], "r");
    assert_eq!(st["state"], to);
    let seen = s.expect(other, "state");
    assert_eq!(seen["state"], to);
    assert_eq!(seen["ver"], ok["ver"]);
    u(&ok, "ver")
}

#[test]
fn legal_chain_to_closed_then_room_is_gone() {
    let mut s = Sim::new(1);
    let ((a, _), (b, _)) = pair(&mut s, json!({}));
    let v0 = u(&s.join(b, "r"), "ver");
    let v1 = set_state(&mut s, a, b, "playing", 1);
    let v2 = set_state(&mut s, a, b, "settling", 2);
    assert!(
        v0 < v1 && v1 < v2,
        "every state change bumps ver: {v0} {v1} {v2}"
    );

    // `closed`: ok, state closed to everyone, then `closed` why owner.
    s.send(
        a,
        json!({"t": "state", "rid": 3, "room": "r", "to": "closed"}),
    );
    let mut got = vec![s.recv(a), s.recv(a), s.recv(a)];
    let ok_at = got.iter().position(|m| m["t"] == "ok").expect("ok");
    let ok = got.remove(ok_at);
    assert_eq!(ok["rid"], 3);
    assert_eq!(got[0]["t"], "state", "{got:?}");
    assert_eq!(got[0]["state"], "closed");
    assert_eq!(got[1]["t"], "closed", "{got:?}");
    assert_eq!(got[1]["room"], "r");
    assert_eq!(got[1]["why"], "owner");

    assert_eq!(s.expect(b, "state")["state"], "closed");
    let closed = s.expect(b, "closed");
    assert_eq!(closed["why"], "owner");

    let c = s.client(0);
    s.send(c, json!({"t": "join", "rid": 1, "room": "r"}));
    err_rid(&mut s, c, "not_found", 1);
    // The members are no longer in it.
    s.send(b, json!({"t": "pub", "rid": 2, "room": "r", "data": "x"}));
    let err = s.expect(b, "err");
    assert!(
        err["code"] == "not_found" || err["code"] == "not_member",
        "pub to a closed room: {err}"
    );
    // The name is free again.
    s.create(c, "r");
}

#[test]
fn any_state_may_go_to_closed() {
    let mut s = Sim::new(1);
    let ((a, _), (b, _)) = pair(&mut s, json!({}));
    set_state(&mut s, a, b, "closed", 1);
    assert_eq!(s.expect(a, "closed")["why"], "owner");
    assert_eq!(s.expect(b, "closed")["why"], "owner");
}

#[test]
fn illegal_transitions_are_invalid_state() {
    let mut s = Sim::new(1);
    let ((a, _), (b, _)) = pair(&mut s, json!({}));
    for (rid, to) in [(1, "settling"), (2, "created"), (3, "waiting")] {
        s.send(a, json!({"t": "state", "rid": rid, "room": "r", "to": to}));
        err_rid(&mut s, a, "invalid_state", rid);
    }
    set_state(&mut s, a, b, "playing", 4);
    for (rid, to) in [(5, "waiting"), (6, "playing"), (7, "created")] {
        s.send(a, json!({"t": "state", "rid": rid, "room": "r", "to": to}));
        err_rid(&mut s, a, "invalid_state", rid);
    }
    s.assert_silent(b);
}

#[test]
fn unknown_state_name_is_bad_request() {
    let mut s = Sim::new(1);
    let ((a, _), _) = pair(&mut s, json!({}));
    s.send(
        a,
        json!({"t": "state", "rid": 1, "room": "r", "to": "exploded"}),
    );
    err_rid(&mut s, a, "bad_request", 1);
}

#[test]
fn non_owner_is_forbidden() {
    let mut s = Sim::new(1);
    let ((a, _), (b, _)) = pair(&mut s, json!({}));
    s.send(
        b,
        json!({"t": "state", "rid": 1, "room": "r", "to": "playing"}),
    );
    err_rid(&mut s, b, "forbidden", 1);
    s.send(
        b,
        json!({"t": "state", "rid": 2, "room": "r", "to": "closed"}),
    );
    err_rid(&mut s, b, "forbidden", 2);
    s.assert_silent(a);
}

#[test]
fn join_is_refused_once_playing() {
    let mut s = Sim::new(1);
    let ((a, _), (b, _)) = pair(&mut s, json!({}));
    set_state(&mut s, a, b, "playing", 1);
    let c = s.client(0);
    s.send(c, json!({"t": "join", "rid": 5, "room": "r"}));
    err_rid(&mut s, c, "invalid_state", 5);
    s.assert_silent(a);
    // A member already seated may ask again and keeps its seat.
    let again = s.join(b, "r");
    assert_eq!(again["state"], "playing");
}

#[test]
fn autostart_moves_to_playing_when_full() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    let joined = create_with(&mut s, a, json!({"room": "r", "max": 2, "autostart": true}));
    assert_eq!(joined["state"], "waiting", "not full yet");
    let (b, b_id) = member(&mut s, 0);
    let joined = s.join(b, "r");
    // The joiner sees playing either in its snapshot or as the next message.
    if joined["state"] != "playing" {
        assert_eq!(joined["state"], "waiting");
        assert_eq!(s.expect(b, "state")["state"], "playing");
    }
    let p = s.expect(a, "presence");
    assert_eq!(p["join"]["id"], b_id);
    let st = s.expect(a, "state");
    assert_eq!(st["state"], "playing");

    let c = s.client(0);
    s.send(c, json!({"t": "join", "rid": 1, "room": "r"}));
    let err = s.expect(c, "err");
    assert!(
        err["code"] == "full" || err["code"] == "invalid_state",
        "a full playing room refuses: {err}"
    );
}

#[test]
fn without_autostart_a_full_room_keeps_waiting() {
    let mut s = Sim::new(1);
    let ((a, _), (b, _)) = pair(&mut s, json!({"max": 2}));
    s.assert_silent(a);
    assert_eq!(s.join(b, "r")["state"], "waiting");
}

#[test]
fn state_of_unknown_room_is_not_found() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    s.send(
        a,
        json!({"t": "state", "rid": 1, "room": "ghost", "to": "playing"}),
    );
    err_rid(&mut s, a, "not_found", 1);
}

#[test]
fn state_without_rid_is_broadcast_but_not_acknowledged() {
    let mut s = Sim::new(1);
    let ((a, _), (b, _)) = pair(&mut s, json!({}));
    s.send(a, json!({"t": "state", "room": "r", "to": "playing"}));
    assert_eq!(s.expect(a, "state")["state"], "playing");
    assert_eq!(s.expect(b, "state")["state"], "playing");
    s.assert_silent(a);
}
