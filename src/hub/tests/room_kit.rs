//! Helpers shared by the unit tests of the room core: what a client does
//! with a rid and a member id (connect, create, join, leave, publish, list,
//! queue for a match), done on a [`Sim`]. Each exists once, here.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{Sim, C};

/// A new client on worker `w` and its member id (from its `welcome`).
pub fn member(s: &mut Sim, w: usize) -> (C, u64) {
    let c = s.connect(w);
    let v = s.expect(c, "welcome");
    (c, v["id"].as_u64().expect("welcome carries the member id"))
}

/// A new client on worker `w`: its index, member id and resume token (from
/// its `welcome`).
pub fn open(s: &mut Sim, w: usize) -> (C, u64, String) {
    let c = s.connect(w);
    let v = s.expect(c, "welcome");
    let id = v["id"].as_u64().expect("welcome carries the id");
    let token = v["session"].as_str().expect("welcome carries the token");
    (c, id, token.to_owned())
}

/// Member ids listed in a `joined.members` array, in order.
#[track_caller]
pub fn ids(joined: &Value) -> Vec<u64> {
    joined["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members: {joined}"))
        .iter()
        .map(|m| m["id"].as_u64().expect("a member id"))
        .collect()
}

/// `v[k]` as a u64.
#[track_caller]
pub fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("{k} is no u64: {v}"))
}

/// `create` with extra `fields` (merged into `{t, rid}`): asserts `created`
/// with the rid, then `joined` of the same room; returns `joined`.
#[track_caller]
pub fn create_with(s: &mut Sim, c: C, fields: Value) -> Value {
    let mut m = json!({"t": "create", "rid": 1});
    if let (Some(m), Value::Object(f)) = (m.as_object_mut(), fields) {
        m.extend(f);
    }
    s.send(c, m);
    let created = s.expect(c, "created");
    assert_eq!(created["rid"], 1, "created carries the rid");
    let joined = s.expect(c, "joined");
    assert_eq!(joined["room"], created["room"]);
    joined
}

/// The next message of `c` is `err` with `code` and `rid`.
#[track_caller]
pub fn err_rid(s: &mut Sim, c: C, code: &str, rid: u32) -> Value {
    let e = s.expect_err(c, code);
    assert_eq!(e["rid"], rid, "{e}");
    e
}

/// `join {room, rid}`: asserts `joined` with the rid; returns it.
#[track_caller]
pub fn join_rid(s: &mut Sim, c: C, room: &str, rid: u32) -> Value {
    s.send(c, json!({"t": "join", "rid": rid, "room": room}));
    let joined = s.expect(c, "joined");
    assert_eq!(joined["rid"], rid, "joined carries the rid");
    assert_eq!(joined["room"], room);
    joined
}

/// `leave {room, rid}`: asserts `left`.
#[track_caller]
pub fn leave(s: &mut Sim, c: C, room: &str) {
    s.send(c, json!({"t": "leave", "rid": 77, "room": room}));
    let left = s.expect(c, "left");
    assert_eq!(left["rid"], 77);
    assert_eq!(left["room"], room);
}

/// `pub` with a rid; returns the `seq` from `ok`.
#[track_caller]
pub fn publish(s: &mut Sim, c: C, room: &str, data: &str) -> u64 {
    s.send(
        c,
        json!({"t": "pub", "rid": 88, "room": room, "data": data}),
    );
    let ok = s.expect(c, "ok");
    assert_eq!(ok["rid"], 88);
    u(&ok, "seq")
}

/// `ping` with a rid; asserts `pong`.
#[track_caller]
pub fn roundtrip(s: &mut Sim, c: C) {
    s.send(c, json!({"t": "ping", "rid": 99}));
    assert_eq!(s.expect(c, "pong")["rid"], 99);
}

/// Reads `ok` (with `rid`) and a message of type `t`, in either order;
/// both carry the same `ver` when `t` is `props` or `state`.
#[track_caller]
pub fn ok_and(s: &mut Sim, c: C, t: &str, rid: u32) -> (Value, Value) {
    let x = s.recv(c);
    let y = s.recv(c);
    let (ok, m) = if x["t"] == "ok" { (x, y) } else { (y, x) };
    assert_eq!(ok["t"], "ok", "{ok}");
    assert_eq!(m["t"], t, "{m}");
    assert_eq!(ok["rid"], rid);
    if t == "props" || t == "state" {
        assert_eq!(ok["ver"], m["ver"], "ok and broadcast carry the same ver");
    }
    (ok, m)
}

/// Skips messages of `c` up to the first for which `f` holds.
#[track_caller]
pub fn recv_until(s: &mut Sim, c: C, f: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = s.recv(c);
        if f(&v) {
            return v;
        }
    }
}

/// `list` with `filters` (and a rid), as a map room name -> entry
/// (asserting none is listed twice).
#[track_caller]
pub fn list(s: &mut Sim, c: C, filters: Value) -> BTreeMap<String, Value> {
    let mut m = json!({"t": "list", "rid": 55});
    if let (Some(m), Value::Object(f)) = (m.as_object_mut(), filters) {
        m.extend(f);
    }
    s.send(c, m);
    let rooms = s.expect(c, "rooms");
    assert_eq!(rooms["rid"], 55);
    let rooms = rooms["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("rooms: {rooms}"));
    let map: BTreeMap<String, Value> = rooms
        .iter()
        .map(|r| (r["room"].as_str().expect("a name").to_owned(), r.clone()))
        .collect();
    assert_eq!(map.len(), rooms.len(), "a room listed twice");
    map
}

/// Whether `list` shows `room`.
pub fn listed(s: &mut Sim, c: C, room: &str) -> bool {
    list(s, c, json!({})).contains_key(room)
}

/// `match` with `rid`; asserts `queued`.
#[track_caller]
pub fn enqueue(s: &mut Sim, c: C, rid: u32, queue: &str, size: u16, rating: i32, wait_ms: u32) {
    s.send(
        c,
        json!({"t": "match", "rid": rid, "queue": queue,
               "size": size, "rating": rating, "wait_ms": wait_ms}),
    );
    let q = s.expect(c, "queued");
    assert_eq!(q["rid"], rid, "{q}");
    assert_eq!(q["queue"], queue);
}

/// Reads `matched` then `joined` for the same room; returns that `joined`.
#[track_caller]
pub fn expect_matched(s: &mut Sim, c: C, queue: &str) -> Value {
    let m = s.expect(c, "matched");
    assert_eq!(m["queue"], queue, "{m}");
    let j = s.expect(c, "joined");
    assert_eq!(j["room"], m["room"], "joined follows matched: {j}");
    // `matched` names the whole group, as `joined` lists it.
    let players: Vec<u64> = m["players"]
        .as_array()
        .expect("players")
        .iter()
        .map(|p| p["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(players, ids(&j), "{m} / {j}");
    j
}

/// The keys of an object, in order.
#[track_caller]
pub fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not a map: {v}"))
        .keys()
        .cloned()
        .collect()
}
