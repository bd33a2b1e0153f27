//! The lobby (PROTOCOL.md "Lobby"): a `rooms` snapshot, then coalesced
//! `lobby` updates (one per room per 250-ms tick) for every public room that
//! matches the filter, and `gone` when one closes or stops matching.

use serde_json::{json, Value};

use super::room_kit::{create_with, leave};
use super::*;

/// `lobby` with `rid` and `filter` fields: the snapshot's room names.
#[track_caller]
fn subscribe(s: &mut Sim, c: C, rid: u32, filter: Value) -> Vec<String> {
    let mut m = json!({"t": "lobby", "rid": rid});
    if let (Some(m), Value::Object(more)) = (m.as_object_mut(), filter) {
        m.extend(more);
    }
    s.send(c, m);
    let r = s.expect(c, "rooms");
    assert_eq!(r["rid"], rid, "{r}");
    let mut names: Vec<String> = (r["rooms"].as_array().expect("rooms").iter())
        .map(|x| x["room"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// Whether an update is `gone`.
fn has_gone(u: &Value) -> bool {
    u.get("gone").is_some()
}

/// The next `lobby` update for `room` (others skipped), letting the clock
/// run 10 ms at a time (at most 5 s) until one arrives.
#[track_caller]
fn update(s: &mut Sim, c: C, room: &str) -> Value {
    let mut waited = 0;
    loop {
        while let Some(v) = s.clients[c].inbox.pop_front() {
            if v["t"] == "lobby" && v["room"] == room {
                return v;
            }
        }
        assert!(waited < 5000, "no update for {room} in {waited} ms");
        s.advance(10);
        waited += 10;
    }
}

/// Updates for `room` until one satisfies `ok`; returns it and how many came.
#[track_caller]
fn update_until(s: &mut Sim, c: C, room: &str, ok: impl Fn(&Value) -> bool) -> (Value, usize) {
    let mut n = 0;
    loop {
        let u = update(s, c, room);
        n += 1;
        if ok(&u) {
            return (u, n);
        }
    }
}

/// Nothing reaches client `c` for 400 ms.
#[track_caller]
fn silent_400(s: &mut Sim, c: C) {
    s.advance(400);
    s.assert_silent(c);
}

#[test]
fn snapshot_then_live_updates_then_gone() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    s.create(a, "early");
    create_with(&mut s, a, json!({"room": "hidden", "private": true}));
    let l = s.client(0);
    assert_eq!(
        subscribe(&mut s, l, 1, json!({})),
        vec!["early".to_string()]
    );

    let b = s.client(0);
    create_with(&mut s, b, json!({"room": "fresh", "max": 4}));
    let (u, _) = update_until(&mut s, l, "fresh", |u| u["members"] == 1);
    assert_eq!(
        (&u["max"], &u["state"], &u["watchers"]),
        (&json!(4), &json!("waiting"), &json!(0)),
        "{u}"
    );
    let c = s.client(0);
    s.join(c, "fresh");
    let (u, _) = update_until(&mut s, l, "fresh", |u| u["members"] == 2);
    assert!(!has_gone(&u), "{u}");
    // Watchers are counted.
    let w = s.client(0);
    s.send(
        w,
        json!({"t": "join", "rid": 1, "room": "fresh", "watch": true}),
    );
    s.expect(w, "joined");
    update_until(&mut s, l, "fresh", |u| u["watchers"] == 1);
    // Closing: gone.
    s.send(
        b,
        json!({"t": "state", "rid": 2, "room": "fresh", "to": "closed"}),
    );
    let (u, _) = update_until(&mut s, l, "fresh", has_gone);
    assert_eq!(u["gone"], true, "{u}");
    // A private room never shows; nothing else arrives.
    let d = s.client(0);
    create_with(&mut s, d, json!({"room": "secret", "private": true}));
    silent_400(&mut s, l);
}

#[test]
fn a_filter_sends_gone_when_a_room_stops_matching() {
    let mut s = Sim::new(1);
    let l = s.client(0);
    let filter = json!({"state": "waiting", "has_space": true});
    assert!(subscribe(&mut s, l, 1, filter).is_empty());
    let a = s.client(0);
    create_with(&mut s, a, json!({"room": "duo", "max": 2}));
    update_until(&mut s, l, "duo", |u| u["members"] == 1);
    // Full: it no longer has space.
    let b = s.client(0);
    s.join(b, "duo");
    let (u, _) = update_until(&mut s, l, "duo", has_gone);
    assert_eq!(u["gone"], true);
    // Space again: back.
    leave(&mut s, b, "duo");
    let (u, _) = update_until(&mut s, l, "duo", |u| !has_gone(u));
    assert_eq!(u["members"], 1);
    // Playing: not waiting any more.
    s.send(
        a,
        json!({"t": "state", "rid": 3, "room": "duo", "to": "playing"}),
    );
    let (u, _) = update_until(&mut s, l, "duo", has_gone);
    assert_eq!(u["gone"], true);
    // Rooms that never matched send nothing.
    let c = s.client(0);
    create_with(&mut s, c, json!({"room": "solo", "max": 1}));
    silent_400(&mut s, l);
}

#[test]
fn updates_are_coalesced_per_room() {
    let mut s = Sim::new(1);
    let l = s.client(0);
    subscribe(&mut s, l, 1, json!({}));
    let a = s.client(0);
    create_with(&mut s, a, json!({"room": "busy", "max": 32}));
    // Twenty joins, one every 25 ms: 500 ms of changes.
    let joiners: Vec<C> = (0..20).map(|_| s.client(0)).collect();
    let mut joined_in = 0;
    for &j in &joiners {
        s.advance(25);
        joined_in += 25;
        s.join(j, "busy");
    }
    let (_, n) = update_until(&mut s, l, "busy", |u| u["members"] == 21);
    // At most one update per 250 ms window, plus the window the first
    // change opened.
    let windows = joined_in / 250 + 2;
    assert!(
        n <= windows,
        "{n} updates for changes made over {joined_in} ms"
    );
    silent_400(&mut s, l);
}

#[test]
fn bad_filter_replace_and_unlobby() {
    let mut s = Sim::new(1);
    let l = s.client(0);
    s.send(l, json!({"t": "lobby", "rid": 1, "state": "bogus"}));
    let e = s.expect_err(l, "bad_request");
    assert_eq!(e["rid"], 1);
    // Not subscribed by the failed request.
    let a = s.client(0);
    s.create(a, "one");
    silent_400(&mut s, l);
    // The connection keeps working; a second `lobby` replaces the first.
    subscribe(&mut s, l, 2, json!({"state": "playing"}));
    assert_eq!(subscribe(&mut s, l, 3, json!({})), vec!["one".to_string()]);
    s.create(a, "two");
    update(&mut s, l, "two");
    s.send(l, json!({"t": "unlobby", "rid": 5}));
    let ok = s.recv_type(l, "ok");
    assert_eq!(ok["rid"], 5);
    s.create(a, "three");
    silent_400(&mut s, l);
    // A limit bounds the snapshot only.
    let names = subscribe(&mut s, l, 6, json!({"limit": 1}));
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn a_lobby_sees_every_worker() {
    let mut s = Sim::new(2);
    let a = s.client(1);
    let early = name_on("lobby-early", 0, 2);
    s.create(a, &early);
    let l = s.client(0);
    assert_eq!(subscribe(&mut s, l, 1, json!({})), vec![early.clone()]);
    for k in 0..2 {
        let room = name_on(&format!("lobby-live{k}"), k, 2);
        let c = s.client(1 - k as usize);
        s.create(c, &room);
        update_until(&mut s, l, &room, |u| u["members"] == 1);
        leave(&mut s, c, &room);
        update_until(&mut s, l, &room, |u| u["members"] == 0);
    }
    // A subscriber on the other worker too.
    let l2 = s.client(1);
    subscribe(&mut s, l2, 1, json!({}));
    s.send(
        a,
        json!({"t": "state", "rid": 1, "room": early, "to": "closed"}),
    );
    for x in [l, l2] {
        let (u, _) = update_until(&mut s, x, &early, has_gone);
        assert_eq!(u["gone"], true);
    }
}
