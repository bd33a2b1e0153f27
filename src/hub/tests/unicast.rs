//! `send`: a message to one member of a room (moved from `tests/unicast.rs`).

use serde_json::json;

use super::room_kit::{err_rid, member, publish};
use super::*;

/// `a` creates "r"; `b` and `c` join; presence drained. Clients and ids.
fn three(s: &mut Sim) -> [(C, u64); 3] {
    let a = member(s, 0);
    s.create(a.0, "r");
    let b = member(s, 0);
    s.join(b.0, "r");
    let c = member(s, 0);
    s.join(c.0, "r");
    s.expect(a.0, "presence");
    s.expect(a.0, "presence");
    s.expect(b.0, "presence");
    [a, b, c]
}

#[test]
fn send_reaches_only_the_target() {
    let mut s = Sim::new(1);
    let [(a, a_id), (b, b_id), (c, _)] = three(&mut s);
    // [9, 0, 0xfe] is no UTF-8: sent and delivered as data64.
    s.send(
        a,
        json!({"t": "send", "room": "r", "to": b_id, "data64": "CQD+"}),
    );
    let m = s.expect(b, "msg");
    assert_eq!(m["room"], "r");
    assert_eq!(m["from"], a_id);
    assert_eq!(m["to"], b_id);
    assert_eq!(m["data64"], "CQD+", "{m}");
    assert!(m.get("seq").is_none(), "unicast has no seq: {m}");
    s.assert_silent(c);
    s.assert_silent(a); // no ok without rid
}

#[test]
fn send_with_rid_is_acknowledged() {
    let mut s = Sim::new(1);
    let [(a, _), (b, b_id), _] = three(&mut s);
    s.send(
        a,
        json!({"t": "send", "rid": 11, "room": "r", "to": b_id, "data": "x"}),
    );
    let ok = s.expect(a, "ok");
    assert_eq!(ok["rid"], 11);
    assert!(ok.get("seq").is_none(), "unicast ok has no seq: {ok}");
    s.expect(b, "msg");
}

#[test]
fn unicast_does_not_consume_room_seq() {
    let mut s = Sim::new(1);
    let [(a, _), (b, b_id), _] = three(&mut s);
    s.send(
        a,
        json!({"t": "send", "room": "r", "to": b_id, "data": "u"}),
    );
    s.expect(b, "msg");
    assert_eq!(publish(&mut s, a, "r", "p"), 1);
}

#[test]
fn send_to_a_member_of_another_room_is_not_member() {
    let mut s = Sim::new(1);
    let [(a, _), _, _] = three(&mut s);
    let (d, d_id) = member(&mut s, 0);
    s.create(d, "elsewhere");
    s.send(
        a,
        json!({"t": "send", "rid": 1, "room": "r", "to": d_id, "data": "x"}),
    );
    err_rid(&mut s, a, "not_member", 1);
    s.send(
        a,
        json!({"t": "send", "rid": 2, "room": "r", "to": 987_654_321u64, "data": "x"}),
    );
    err_rid(&mut s, a, "not_member", 2);
    s.assert_silent(d);
}

#[test]
fn sender_must_be_a_member() {
    let mut s = Sim::new(1);
    let [(_, a_id), (b, _), _] = three(&mut s);
    let d = s.client(0);
    s.send(
        d,
        json!({"t": "send", "rid": 4, "room": "r", "to": a_id, "data": "x"}),
    );
    err_rid(&mut s, d, "not_member", 4);
    s.assert_silent(b);
}

#[test]
fn send_to_self_is_delivered() {
    let mut s = Sim::new(1);
    let [(a, a_id), _, _] = three(&mut s);
    s.send(
        a,
        json!({"t": "send", "room": "r", "to": a_id, "data": "me"}),
    );
    let m = s.expect(a, "msg");
    assert_eq!(m["from"], a_id);
    assert_eq!(m["to"], a_id);
}

#[test]
fn send_to_an_away_member_is_not_found() {
    let mut s = Sim::with(1, |c| c.grace_ms = 5000);
    let [(a, _), (b, b_id), _] = three(&mut s);
    s.disconnect(b, CloseReason::Dropped);
    let p = s.expect(a, "presence");
    assert_eq!(p["away"], b_id, "b is away: {p}");
    s.send(
        a,
        json!({"t": "send", "rid": 8, "room": "r", "to": b_id, "data": "x"}),
    );
    err_rid(&mut s, a, "not_found", 8);
}
