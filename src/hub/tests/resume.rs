//! Resume (PROTOCOL.md "Reconnect and recovery") on one worker and across
//! workers: replay from `last`, `recovered`, grace expiry, tokens that name
//! nothing, half-open takeover (4003), rooms closed while away, a session
//! served from another worker than its own.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::room_kit::{err_rid, ids, open, publish};
use super::*;

/// `hello {resume, last}` with rid 1 from client `c`.
fn hello_resume(s: &mut Sim, c: C, token: &str, last: Value) -> u32 {
    s.send(
        c,
        json!({"t": "hello", "rid": 1, "resume": token, "last": last}),
    );
    1
}

/// The `resumed` reply to `rid`, as room -> recovered.
#[track_caller]
fn expect_resumed(s: &mut Sim, c: C, rid: u32) -> BTreeMap<String, bool> {
    let (_, rooms) = resumed_parts(s, c, rid);
    rooms
        .into_iter()
        .map(|(k, v)| (k, v["recovered"].as_bool().expect("recovered")))
        .collect()
}

/// The `resumed` reply to `rid`, as room -> its part (`{"recovered"}` or
/// `{"closed"}`), with the member id it answers for.
#[track_caller]
fn resumed_parts(s: &mut Sim, c: C, rid: u32) -> (u64, Map<String, Value>) {
    let r = s.expect(c, "resumed");
    assert_eq!(r["rid"], rid, "{r}");
    let rooms = r["rooms"].as_object().cloned().expect("rooms");
    (r["id"].as_u64().expect("id"), rooms)
}

/// Publishes `n` messages without `rid`; the payload is the message's
/// number, so a receiver can check each arrives once, in order.
fn burst(s: &mut Sim, a: C, room: &str, from: u64, n: u64) {
    for i in from..from + n {
        s.send(a, json!({"t": "pub", "room": room, "data": i.to_string()}));
    }
}

/// The next `msg`, checked to be `seq` with its payload.
#[track_caller]
fn expect_msg(s: &mut Sim, c: C, room: &str, seq: u64) {
    let m = s.expect(c, "msg");
    assert_eq!(m["room"], room, "{m}");
    assert_eq!(m["seq"], seq, "messages once each, in order: {m}");
    assert_eq!(m["data"], seq.to_string(), "{m}");
}

#[test]
fn drop_mid_burst_and_resume_gets_every_message_once_in_order() {
    let mut s = Sim::with(1, |c| {
        c.grace_ms = 5000;
        c.history = 1000;
    });
    let (a, a_id, _) = open(&mut s, 0);
    let (b, b_id, b_token) = open(&mut s, 0);
    s.create(a, "r");
    s.join(b, "r");
    s.clear(a);

    // A burst of 300; b reads 120 of them and its connection drops, with the
    // rest lost on the way.
    burst(&mut s, a, "r", 1, 300);
    for seq in 1..=120 {
        expect_msg(&mut s, b, "r", seq);
    }
    s.disconnect(b, CloseReason::Dropped);
    burst(&mut s, a, "r", 301, 100);
    let away = s.expect(a, "presence");
    assert_eq!(away["away"], b_id, "{away}");

    // Whatever the core handles before the resume is replayed, whatever
    // after it is live.
    let (b2, _, _) = open(&mut s, 0);
    burst(&mut s, a, "r", 401, 50);
    let rid = hello_resume(&mut s, b2, &b_token, json!({"r": 120}));
    burst(&mut s, a, "r", 451, 50);
    let rooms = expect_resumed(&mut s, b2, rid);
    assert_eq!(rooms, BTreeMap::from([("r".to_string(), true)]));
    for seq in 121..=500 {
        expect_msg(&mut s, b2, "r", seq);
    }
    let back = s.expect(a, "presence");
    assert_eq!(back["back"], b_id, "{back}");

    // It is b's seat: same member id for what it publishes, no new member.
    assert_eq!(publish(&mut s, b2, "r", "hi"), 501);
    let m = s.expect(a, "msg");
    assert_eq!(m["from"], b_id);
    let snapshot = s.join(a, "r");
    assert_eq!(ids(&snapshot), vec![a_id, b_id]);
    s.assert_silent(b2);
}

#[test]
fn resume_after_history_overflow_is_not_recovered() {
    let mut s = Sim::with(1, |c| {
        c.grace_ms = 5000;
        c.history = 8;
    });
    let a = s.client(0);
    s.create(a, "r");
    s.create(a, "quiet");
    s.create(a, "other");
    let (b, _, b_token) = open(&mut s, 0);
    for room in ["r", "quiet", "other"] {
        s.join(b, room);
        s.expect(a, "presence");
    }
    burst(&mut s, a, "r", 1, 2);
    expect_msg(&mut s, b, "r", 1);
    expect_msg(&mut s, b, "r", 2);
    burst(&mut s, a, "other", 1, 1);
    expect_msg(&mut s, b, "other", 1);
    s.disconnect(b, CloseReason::Dropped);
    s.expect(a, "presence"); // away, once per room
    s.expect(a, "presence");
    s.expect(a, "presence");
    // 20 more in "r": the history (8) no longer reaches back to seq 3.
    burst(&mut s, a, "r", 3, 20);
    burst(&mut s, a, "other", 2, 2);

    // "quiet" missed nothing; "other" is not named in `last`.
    let (b2, _, _) = open(&mut s, 0);
    let rid = hello_resume(&mut s, b2, &b_token, json!({"r": 2, "quiet": 0}));
    let rooms = expect_resumed(&mut s, b2, rid);
    assert_eq!(
        rooms,
        BTreeMap::from([
            ("other".to_string(), false),
            ("quiet".to_string(), true),
            ("r".to_string(), false),
        ])
    );
    // Nothing is replayed for a room that is not recovered; live traffic
    // goes on.
    burst(&mut s, a, "r", 23, 1);
    expect_msg(&mut s, b2, "r", 23);
    s.assert_silent(b2);
}

#[test]
fn resume_within_history_across_rooms_in_json() {
    let mut s = Sim::with(1, |c| {
        c.grace_ms = 5000;
        c.history = 8;
    });
    let a = s.client(0);
    s.create(a, "x");
    s.create(a, "y");
    let (b, _, b_token) = open(&mut s, 0);
    s.join(b, "x");
    s.expect(a, "presence");
    s.join(b, "y");
    s.expect(a, "presence");
    s.disconnect(b, CloseReason::Dropped);
    s.expect(a, "presence");
    s.expect(a, "presence");
    for i in 0..3 {
        s.send(a, json!({"t": "pub", "room": "x", "data": format!("x{i}")}));
        s.send(a, json!({"t": "pub", "room": "y", "data": format!("y{i}")}));
    }
    let (b2, _, _) = open(&mut s, 0);
    let rid = hello_resume(&mut s, b2, &b_token, json!({"x": 1, "y": 0}));
    let rooms = expect_resumed(&mut s, b2, rid);
    assert_eq!(rooms.values().filter(|r| **r).count(), 2, "{rooms:?}");
    // Rooms replay one after the other, each in seq order.
    let mut got: Vec<(String, u64, String)> = Vec::new();
    for _ in 0..5 {
        let m = s.expect(b2, "msg");
        got.push((
            m["room"].as_str().unwrap().to_string(),
            m["seq"].as_u64().unwrap(),
            m["data"].as_str().unwrap().to_string(),
        ));
    }
    let x: Vec<_> = got.iter().filter(|g| g.0 == "x").cloned().collect();
    let y: Vec<_> = got.iter().filter(|g| g.0 == "y").cloned().collect();
    assert_eq!(
        x,
        vec![("x".into(), 2, "x1".into()), ("x".into(), 3, "x2".into())]
    );
    assert_eq!(
        y,
        vec![
            ("y".into(), 1, "y0".into()),
            ("y".into(), 2, "y1".into()),
            ("y".into(), 3, "y2".into())
        ]
    );
    s.assert_silent(b2);
}

#[test]
fn resume_after_grace_is_not_found_and_the_seat_was_released() {
    let mut s = Sim::with(1, |c| c.grace_ms = 300);
    let (a, a_id, _) = open(&mut s, 0);
    let (b, b_id, b_token) = open(&mut s, 0);
    s.create(a, "r");
    s.join(b, "r");
    s.clear(a);
    s.disconnect(b, CloseReason::Dropped);
    assert_eq!(s.expect(a, "presence")["away"], b_id);
    s.advance(250);
    s.assert_silent(a);
    s.advance(100);
    let leave = s.expect(a, "presence");
    assert_eq!(leave["leave"], b_id, "{leave}");
    assert_eq!(leave["why"], "disconnect");

    let (b2, b2_id, _) = open(&mut s, 0);
    let rid = hello_resume(&mut s, b2, &b_token, json!({"r": 0}));
    err_rid(&mut s, b2, "not_found", rid);
    // A fresh session goes on, under its own id.
    assert_ne!(b2_id, b_id);
    let joined = s.join(b2, "r");
    assert_eq!(ids(&joined), vec![a_id, b2_id]);
    s.expect(a, "presence");
    s.assert_silent(a);
}

#[test]
fn forged_and_foreign_tokens_fail() {
    let mut s = Sim::with(1, |c| c.grace_ms = 5000);
    let mut other = Sim::with(1, |c| c.grace_ms = 5000);
    let a = s.client(0);
    let (b, _, real) = open(&mut s, 0);
    s.create(a, "r");
    s.join(b, "r");
    s.clear(a);
    s.disconnect(b, CloseReason::Dropped);
    s.expect(a, "presence");

    // A token the other server issued, for a session that is alive there.
    let (f, _, foreign) = open(&mut other, 0);
    other.create(f, "r");
    // Forged: right shape, wrong bits; the real one with a bit flipped; the
    // real one in upper case; not a token at all.
    let mut flipped = real.clone().into_bytes();
    flipped[31] = if flipped[31] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    // The real one's last half (what the index is keyed by) with a first
    // half of another.
    let mut half = real.clone().into_bytes();
    half[2] = if half[2] == b'0' { b'1' } else { b'0' };
    let half = String::from_utf8(half).unwrap();
    for bad in [
        foreign.as_str(),
        "0123456789abcdef0123456789abcdef",
        flipped.as_str(),
        half.as_str(),
        &real.to_uppercase(),
        "xyz",
        "",
    ] {
        if bad == real {
            continue; // the upper case of an all-digit token
        }
        let (c, _, _) = open(&mut s, 0);
        let rid = hello_resume(&mut s, c, bad, json!({"r": 0}));
        err_rid(&mut s, c, "not_found", rid);
        // The failed resume does not take the seat: a fresh session.
        s.send(c, json!({"t": "pub", "rid": 9, "room": "r", "data": "x"}));
        err_rid(&mut s, c, "not_member", 9);
    }
    // The seat is still b's to take.
    let (b2, _, _) = open(&mut s, 0);
    let rid = hello_resume(&mut s, b2, &real, json!({"r": 0}));
    assert!(expect_resumed(&mut s, b2, rid)["r"]);
    // A connection's own token is no resume.
    let (c2, _, own2) = open(&mut s, 0);
    s.send(c2, json!({"t": "hello", "rid": 5, "resume": own2}));
    err_rid(&mut s, c2, "bad_request", 5);
}

/// What an old connection got before it was taken over: messages only.
#[track_caller]
fn only_msgs_then_replaced(s: &Sim, c: C) {
    let cl = &s.clients[c];
    assert_eq!(cl.closed, Some(CloseReason::Replaced), "closed 4003");
    assert!(cl.inbox.iter().all(|m| m["t"] == "msg"), "{:?}", cl.inbox);
}

#[test]
fn half_open_connection_is_taken_over_and_closed_4003() {
    let mut s = Sim::with(1, |c| c.grace_ms = 5000);
    let a = s.client(0);
    let (b, b_id, b_token) = open(&mut s, 0);
    s.create(a, "r");
    s.join(b, "r");
    s.clear(a);
    burst(&mut s, a, "r", 1, 3);
    expect_msg(&mut s, b, "r", 1);

    // b's old connection is still open as far as the core knows.
    let (b2, _, _) = open(&mut s, 0);
    let rid = hello_resume(&mut s, b2, &b_token, json!({"r": 1}));
    assert!(expect_resumed(&mut s, b2, rid)["r"]);
    expect_msg(&mut s, b2, "r", 2);
    expect_msg(&mut s, b2, "r", 3);
    only_msgs_then_replaced(&s, b);
    // The others saw neither away nor back: the seat never left.
    s.assert_silent(a);
    burst(&mut s, a, "r", 4, 1);
    expect_msg(&mut s, b2, "r", 4);
    assert_eq!(publish(&mut s, b2, "r", "me"), 5);
    assert_eq!(s.expect(a, "msg")["from"], b_id);
}

#[test]
fn a_seat_taken_before_the_resume_is_left() {
    let mut s = Sim::with(1, |c| c.grace_ms = 5000);
    let a = s.client(0);
    s.create(a, "r");
    s.create(a, "lobby");
    let (b, b_id, b_token) = open(&mut s, 0);
    s.join(b, "r");
    s.expect(a, "presence");
    s.disconnect(b, CloseReason::Dropped);
    s.expect(a, "presence");

    // The new connection joins "lobby" (as by URL: no rid) before it
    // resumes.
    let (b2, fresh, _) = open(&mut s, 0);
    s.send(b2, json!({"t": "join", "room": "lobby"}));
    assert_eq!(s.expect(b2, "joined")["room"], "lobby");
    assert_eq!(s.expect(a, "presence")["join"]["id"], fresh);
    let rid = hello_resume(&mut s, b2, &b_token, json!({"r": 0}));
    let rooms = expect_resumed(&mut s, b2, rid);
    assert_eq!(rooms, BTreeMap::from([("r".to_string(), true)]));
    // The fresh session's seat went with it; b is back in "r".
    let mut seen = vec![s.expect(a, "presence"), s.expect(a, "presence")];
    seen.sort_by_key(|p| p["room"].as_str().unwrap_or_default().to_string());
    assert_eq!(seen[0]["leave"], fresh, "{seen:?}");
    assert_eq!(seen[0]["why"], "left");
    assert_eq!(seen[1]["back"], b_id, "{seen:?}");
    s.send(
        b2,
        json!({"t": "pub", "rid": 3, "room": "lobby", "data": "x"}),
    );
    err_rid(&mut s, b2, "not_member", 3);
}

/// PROTOCOL.md "Reconnect and recovery": a session is resumable within the
/// grace period whether or not it holds seats.
#[test]
fn a_session_with_no_seats_is_resumed_within_grace() {
    let mut s = Sim::with(1, |c| c.grace_ms = 3000);
    let (c, id, tok) = open(&mut s, 0);
    s.disconnect(c, CloseReason::Dropped);
    s.advance(1000);
    let (c2, c2_id, _) = open(&mut s, 0);
    assert_ne!(c2_id, id);
    let rid = hello_resume(&mut s, c2, &tok, json!({}));
    let (resumed_id, rooms) = resumed_parts(&mut s, c2, rid);
    assert_eq!(resumed_id, id, "the same member id");
    assert!(rooms.is_empty(), "{rooms:?}");
    // It goes on as that member.
    let joined = s.create(c2, "r");
    assert_eq!(ids(&joined), vec![id]);
}

/// `o` creates rooms `x` and `y`, `m` joins both and drops, and `o` (the
/// owner) closes `x` once it saw `m` away. Returns `m`'s id and token.
fn away_while_x_closes(s: &mut Sim, o: C, mw: usize, x: &str, y: &str) -> (u64, String) {
    let (m, m_id, tok) = open(s, mw);
    s.create(o, x);
    s.create(o, y);
    s.join(m, x);
    s.join(m, y);
    s.expect(o, "presence");
    s.expect(o, "presence");
    s.disconnect(m, CloseReason::Dropped);
    for _ in 0..2 {
        assert_eq!(s.expect(o, "presence")["away"], m_id);
    }
    s.send(
        o,
        json!({"t": "state", "rid": 7, "room": x, "to": "closed"}),
    );
    s.recv_type(o, "closed");
    (m_id, tok)
}

/// PROTOCOL.md "Reconnect and recovery": a room that closed while the
/// session was away is listed as `{"closed": why}` and not re-attached.
#[test]
fn a_room_closed_while_away_is_reported_when_the_session_resumes() {
    let mut s = Sim::with(1, |c| c.grace_ms = 5000);
    let o = s.client(0);
    let (m_id, tok) = away_while_x_closes(&mut s, o, 0, "x", "y");

    let (m2, _, _) = open(&mut s, 0);
    let rid = hello_resume(&mut s, m2, &tok, json!({"x": 0, "y": 0}));
    let (id, rooms) = resumed_parts(&mut s, m2, rid);
    assert_eq!(id, m_id);
    assert_eq!(rooms.len(), 2, "{rooms:?}");
    assert_eq!(rooms["x"]["closed"], "owner", "{rooms:?}");
    assert!(rooms["x"].get("recovered").is_none(), "{rooms:?}");
    assert_eq!(rooms["y"]["recovered"], true, "{rooms:?}");
    // Not re-attached: x is gone, y is held.
    s.send(m2, json!({"t": "pub", "rid": 9, "room": "x", "data": "x"}));
    assert_eq!(s.expect(m2, "err")["rid"], 9);
    assert_eq!(publish(&mut s, m2, "y", "back"), 1);
    assert_eq!(s.recv_type(o, "msg")["from"], m_id);
}

// ---------------------------------------------------------------------------
// Several workers. A session lives on the worker that issued its token, its
// rooms on their homes, and a new connection lands on any worker: a resume
// works from every worker and recovers rooms homed on every worker.

/// Reads `n` messages of type `msg` and returns each room's seqs in arrival
/// order, checking each payload is its seq (see [`burst`]).
#[track_caller]
fn read_msgs(s: &mut Sim, c: C, n: usize) -> BTreeMap<String, Vec<u64>> {
    let mut by: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for _ in 0..n {
        let m = s.expect(c, "msg");
        let seq = m["seq"].as_u64().expect("seq");
        assert_eq!(m["data"], seq.to_string(), "{m}");
        let room = m["room"].as_str().expect("room").to_string();
        by.entry(room).or_default().push(seq);
    }
    by
}

/// The next `n` messages, each a `presence` with `kind` (`away`, `back`)
/// for member `id`: their rooms, sorted.
#[track_caller]
fn presence_rooms(s: &mut Sim, c: C, kind: &str, id: u64, n: usize) -> Vec<String> {
    let mut rooms: Vec<String> = (0..n)
        .map(|_| {
            let p = s.expect(c, "presence");
            assert_eq!(p[kind], id, "{p}");
            p["room"].as_str().expect("room").to_string()
        })
        .collect();
    rooms.sort();
    rooms
}

/// Two workers; `a` on worker 1 owns `here` (homed on worker 0) and `there`
/// (homed on worker 1); `b` on worker 0 sits in both, reads 5 messages of
/// each, and drops. 5 more go to each room while it is away; `b2`, landing
/// on worker `land`, resumes with `last` 5 in both, while 2 more go to each.
/// Every message arrives once, in order, replayed or live.
fn resume_lands_on(land: usize) {
    let mut s = Sim::with(2, |c| {
        c.grace_ms = 5000;
        c.history = 100;
    });
    let here = name_on("here", 0, 2);
    let there = name_on("there", 1, 2);
    let a = s.client(1);
    s.create(a, &here);
    s.create(a, &there);
    let (b, b_id, b_token) = open(&mut s, 0);
    for r in [&here, &there] {
        s.join(b, r);
        assert_eq!(s.expect(a, "presence")["join"]["id"], b_id);
    }
    burst(&mut s, a, &here, 1, 5);
    burst(&mut s, a, &there, 1, 5);
    let want = |to: u64| {
        BTreeMap::from([
            (here.clone(), (1..=to).collect::<Vec<_>>()),
            (there.clone(), (1..=to).collect::<Vec<_>>()),
        ])
    };
    assert_eq!(read_msgs(&mut s, b, 10), want(5));
    s.disconnect(b, CloseReason::Dropped);
    assert_eq!(
        presence_rooms(&mut s, a, "away", b_id, 2),
        vec![here.clone(), there.clone()]
    );
    burst(&mut s, a, &here, 6, 5);
    burst(&mut s, a, &there, 6, 5);

    let (b2, _, _) = open(&mut s, land);
    let rid = hello_resume(
        &mut s,
        b2,
        &b_token,
        json!({here.as_str(): 5, there.as_str(): 5}),
    );
    burst(&mut s, a, &here, 11, 2);
    burst(&mut s, a, &there, 11, 2);
    let r = s.expect(b2, "resumed");
    assert_eq!(r["rid"], rid, "{r}");
    assert_eq!(r["id"], b_id, "the same member: {r}");
    let rooms: BTreeMap<String, bool> = r["rooms"]
        .as_object()
        .expect("rooms")
        .iter()
        .map(|(k, v)| (k.clone(), v["recovered"].as_bool().expect("recovered")))
        .collect();
    assert_eq!(
        rooms,
        BTreeMap::from([(here.clone(), true), (there.clone(), true)])
    );
    let got = read_msgs(&mut s, b2, 14);
    let mut want = want(12);
    for seqs in want.values_mut() {
        seqs.drain(..5);
    }
    assert_eq!(got, want, "6 to 12 of each room, once, in order");
    assert_eq!(
        presence_rooms(&mut s, a, "back", b_id, 2),
        vec![here.clone(), there.clone()]
    );

    // b's seats, under b's id, in both rooms.
    assert_eq!(publish(&mut s, b2, &here, "h"), 13);
    assert_eq!(publish(&mut s, b2, &there, "t"), 13);
    for _ in 0..2 {
        let m = s.expect(a, "msg");
        assert_eq!(m["from"], b_id, "{m}");
    }
    s.assert_silent(b2);
}

#[test]
fn resume_on_the_same_worker_recovers_rooms_homed_on_both() {
    resume_lands_on(0);
}

#[test]
fn resume_on_another_worker_recovers_rooms_homed_on_both() {
    resume_lands_on(1);
}

/// Two workers; `a` (on worker 1) creates `room`; `b` (on worker 0) joins
/// it and its connection drops. Returns `a` (which has seen `away`), its
/// id, `b`'s member id and resume token.
fn dropped_on_worker_0(s: &mut Sim, room: &str) -> (C, u64, u64, String) {
    let (a, a_id, _) = open(s, 1);
    s.create(a, room);
    let (b, b_id, b_token) = open(s, 0);
    s.join(b, room);
    s.expect(a, "presence");
    s.disconnect(b, CloseReason::Dropped);
    assert_eq!(s.expect(a, "presence")["away"], b_id);
    (a, a_id, b_id, b_token)
}

/// A session resumed on a worker other than its own is served in full
/// from there: requests pipelined behind the `hello`, every request type,
/// presence, and leaving.
#[test]
fn a_session_resumed_on_another_worker_is_served_in_full() {
    let mut s = Sim::with(2, |c| c.grace_ms = 1000);
    let here = name_on("here", 0, 2);
    let there = name_on("there", 1, 2);
    let (a, a_id, b_id, b_token) = dropped_on_worker_0(&mut s, &here);

    // Requests right behind the hello are b's, answered after `resumed`.
    let (b2, _, _) = open(&mut s, 1);
    hello_resume(&mut s, b2, &b_token, json!({here.as_str(): 0}));
    s.send(
        b2,
        json!({"t": "pub", "rid": 2, "room": here, "data": "one"}),
    );
    s.send(b2, json!({"t": "create", "rid": 3, "room": there}));
    let r = s.expect(b2, "resumed");
    assert_eq!((r["rid"].as_u64(), r["id"].as_u64()), (Some(1), Some(b_id)));
    let ok = s.expect(b2, "ok");
    assert_eq!((ok["rid"].as_u64(), ok["seq"].as_u64()), (Some(2), Some(1)));
    assert_eq!(s.expect(b2, "created")["rid"], 3);
    let joined = s.expect(b2, "joined");
    assert_eq!(ids(&joined), vec![b_id]);
    assert_eq!(joined["owner"], b_id);
    assert_eq!(s.expect(a, "presence")["back"], b_id);
    let m = s.expect(a, "msg");
    assert_eq!((&m["from"], &m["data"]), (&json!(b_id), &json!("one")));

    // Presence, unicast, props and state reach it; its own requests work.
    s.join(a, &there);
    let p = s.expect(b2, "presence");
    assert_eq!(p["join"]["id"], a_id, "{p}");
    s.send(
        b2,
        json!({"t": "send", "room": there, "to": a_id, "data": "psst"}),
    );
    let m = s.expect(a, "msg");
    assert_eq!((&m["from"], &m["to"]), (&json!(b_id), &json!(a_id)), "{m}");
    s.send(
        a,
        json!({"t": "send", "room": here, "to": b_id, "data": "hey"}),
    );
    let m = s.expect(b2, "msg");
    assert_eq!((&m["from"], &m["data"]), (&json!(a_id), &json!("hey")));
    s.send(
        b2,
        json!({"t": "props", "rid": 4, "room": there, "set": {"map": "dust"}}),
    );
    let (ok, props) = (s.expect(b2, "ok"), s.expect(b2, "props"));
    assert_eq!(ok["rid"], 4);
    assert_eq!(props["set"]["map"], "dust");
    assert_eq!(s.expect(a, "props")["set"]["map"], "dust");
    s.send(
        b2,
        json!({"t": "state", "rid": 5, "room": there, "to": "playing"}),
    );
    assert_eq!(s.expect(b2, "ok")["rid"], 5);
    assert_eq!(s.expect(b2, "state")["state"], "playing");
    assert_eq!(s.expect(a, "state")["state"], "playing");
    s.send(b2, json!({"t": "list", "rid": 8}));
    let listed: Vec<String> = s.expect(b2, "rooms")["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .map(|r| r["room"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        listed.contains(&here) && listed.contains(&there),
        "{listed:?}"
    );
    s.send(b2, json!({"t": "hello", "rid": 6}));
    err_rid(&mut s, b2, "bad_request", 6);

    // Its connection drops: away, then leave after the grace period, in
    // both rooms.
    s.disconnect(b2, CloseReason::Dropped);
    let mut seen = Vec::new();
    for step in [0, 1100] {
        s.advance(step);
        for _ in 0..2 {
            let p = s.expect(a, "presence");
            let kind = if p.get("away").is_some() {
                "away"
            } else {
                "leave"
            };
            assert_eq!(p[kind], b_id, "{p}");
            if kind == "leave" {
                assert_eq!(p["why"], "disconnect", "{p}");
            }
            seen.push((kind.to_string(), p["room"].as_str().unwrap().to_string()));
        }
        s.assert_silent(a);
    }
    assert!(seen[..2].iter().all(|s| s.0 == "away"), "{seen:?}");
    seen.sort();
    let mut want = vec![
        ("away".to_string(), here.clone()),
        ("away".to_string(), there.clone()),
        ("leave".to_string(), here.clone()),
        ("leave".to_string(), there.clone()),
    ];
    want.sort();
    assert_eq!(seen, want);
}

/// A relayed client that closes with 1000 leaves its rooms at once, as a
/// local one does.
#[test]
fn a_relayed_clean_close_leaves_at_once() {
    let mut s = Sim::with(2, |c| c.grace_ms = 5000);
    let room = name_on("room", 1, 2);
    let (a, _, b_id, b_token) = dropped_on_worker_0(&mut s, &room);
    let (b2, _, _) = open(&mut s, 1);
    let rid = hello_resume(&mut s, b2, &b_token, json!({room.as_str(): 0}));
    assert!(expect_resumed(&mut s, b2, rid)[&room]);
    assert_eq!(s.expect(a, "presence")["back"], b_id);
    s.disconnect(b2, CloseReason::ClientNormal);
    let p = s.expect(a, "presence");
    assert_eq!((&p["leave"], &p["why"]), (&json!(b_id), &json!("left")));
    // The session is gone: its token no longer resumes.
    let (b3, _, _) = open(&mut s, 0);
    let rid = hello_resume(&mut s, b3, &b_token, json!({room.as_str(): 0}));
    err_rid(&mut s, b3, "not_found", rid);
}

/// The old connection (still open as far as the core knows) is closed
/// with 4003 whichever worker it and the new one are on; the others see
/// neither `away` nor `back`.
#[test]
fn takeover_across_workers_closes_the_old_connection_4003() {
    let mut s = Sim::with(2, |c| c.grace_ms = 5000);
    let room = name_on("room", 0, 2);
    let a = s.client(1);
    s.create(a, &room);
    let (b, b_id, b_token) = open(&mut s, 0);
    s.join(b, &room);
    s.expect(a, "presence");
    burst(&mut s, a, &room, 1, 3);
    expect_msg(&mut s, b, &room, 1);

    // From worker 0 (b's own) to worker 1, then back to worker 0.
    let (b2, _, _) = open(&mut s, 1);
    let rid = hello_resume(&mut s, b2, &b_token, json!({room.as_str(): 1}));
    assert!(expect_resumed(&mut s, b2, rid)[&room]);
    expect_msg(&mut s, b2, &room, 2);
    expect_msg(&mut s, b2, &room, 3);
    only_msgs_then_replaced(&s, b);
    burst(&mut s, a, &room, 4, 1);
    expect_msg(&mut s, b2, &room, 4);

    let (b3, _, _) = open(&mut s, 0);
    let rid = hello_resume(&mut s, b3, &b_token, json!({room.as_str(): 3}));
    assert!(expect_resumed(&mut s, b3, rid)[&room]);
    expect_msg(&mut s, b3, &room, 4);
    only_msgs_then_replaced(&s, b2);
    burst(&mut s, a, &room, 5, 1);
    expect_msg(&mut s, b3, &room, 5);
    assert_eq!(publish(&mut s, b3, &room, "me"), 6);
    let m = s.expect(a, "msg");
    assert_eq!(m["from"], b_id);
    // Neither away nor back, on any of the moves.
    s.assert_silent(a);
}

/// A token naming another worker that does not know it: `not_found`, and
/// the fresh session goes on (requests behind the hello are its own).
#[test]
fn an_unknown_token_of_another_worker_is_not_found() {
    let mut s = Sim::with(2, |c| c.grace_ms = 5000);
    let room = name_on("room", 1, 2);
    let c = s.client(1);
    s.create(c, &room);
    // Worker 0's id in the first byte, then bits it never issued.
    hello_resume(&mut s, c, "000123456789abcdef0123456789abcd", json!({}));
    s.send(c, json!({"t": "pub", "rid": 2, "room": room, "data": "x"}));
    err_rid(&mut s, c, "not_found", 1);
    let ok = s.expect(c, "ok");
    assert_eq!((ok["rid"].as_u64(), ok["seq"].as_u64()), (Some(2), Some(1)));
}

/// A room homed on another worker than the session's closes while the
/// session is away: the resume reports it, landing on either worker.
#[test]
fn a_room_closed_while_away_is_reported_across_workers() {
    for land in 0..2 {
        let mut s = Sim::with(2, |c| c.grace_ms = 5000);
        let (x, y) = (name_on("gone", 1, 2), name_on("kept", 0, 2));
        let o = s.client(1);
        let (m_id, tok) = away_while_x_closes(&mut s, o, 0, &x, &y);
        publish(&mut s, o, &y, "after");

        let (m2, _, _) = open(&mut s, land);
        let rid = hello_resume(&mut s, m2, &tok, json!({x.as_str(): 0, y.as_str(): 0}));
        let (id, rooms) = resumed_parts(&mut s, m2, rid);
        assert_eq!(id, m_id, "landing on worker {land}");
        assert_eq!(rooms[&x]["closed"], "owner", "on {land}: {rooms:?}");
        assert_eq!(rooms[&y]["recovered"], true, "on {land}: {rooms:?}");
        assert_eq!(rooms.len(), 2, "on {land}: {rooms:?}");
    }
}
