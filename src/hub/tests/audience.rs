//! Kick and ban (PROTOCOL.md "Kick"): the owner (or the HTTP API) removes
//! a member or watcher, which gets `kicked`; members see `leave` with
//! `why:"kicked"`; a banned id may not come back while the room exists.
//!
//! Watchers (PROTOCOL.md "Watchers"): `join` with `watch` gets what members
//! get, takes no seat, has no presence, may not speak, and is counted in
//! `watchers` (coalesced over the core's 1-s window), `list` and `joined`.

use serde_json::{json, Value};

use super::room_kit::{err_rid, ids, member, open};
use super::*;

const KEY: &str = "admin-secret";

/// Two clients on worker 0 in `room` (the first created it) and their ids,
/// their inboxes empty.
fn pair_ids(s: &mut Sim, room: &str) -> ((C, u64), (C, u64)) {
    let (a, b) = (member(s, 0), member(s, 0));
    s.create(a.0, room);
    s.join(b.0, room);
    s.expect(a.0, "presence");
    (a, b)
}

/// `kick` with `rid`.
fn kick(s: &mut Sim, c: C, rid: u32, room: &str, id: u64, ban: bool) {
    s.send(
        c,
        json!({"t": "kick", "rid": rid, "room": room, "id": id, "ban": ban}),
    );
}

/// Skips client `c`'s messages up to the first that satisfies `ok`,
/// letting the clock run 10 ms at a time (at most 5 s) until one arrives.
#[track_caller]
fn wait_for(s: &mut Sim, c: C, ok: impl Fn(&Value) -> bool) -> Value {
    let mut waited = 0;
    loop {
        while let Some(v) = s.clients[c].inbox.pop_front() {
            if ok(&v) {
                return v;
            }
        }
        assert!(waited < 5000, "client {c} waited {waited} ms in vain");
        s.advance(10);
        waited += 10;
    }
}

/// The next message that is not a `watchers` count (those come whenever
/// the audience moves).
#[track_caller]
fn next(s: &mut Sim, c: C) -> Value {
    let v = s.recv(c);
    if v["t"] == "watchers" {
        return next(s, c);
    }
    v
}

/// The next message but `watchers`, checked to be of type `t`.
#[track_caller]
fn expect(s: &mut Sim, c: C, t: &str) -> Value {
    let m = next(s, c);
    assert_eq!(m["t"], t, "{m}");
    m
}

/// The next message but `watchers`, checked to be `err` `code` for `rid`.
#[track_caller]
fn expect_err(s: &mut Sim, c: C, code: &str, rid: u32) {
    let m = expect(s, c, "err");
    assert_eq!((&m["code"], &m["rid"]), (&json!(code), &json!(rid)), "{m}");
}

/// `pub` with `rid`: its `seq`, past any `watchers` count (unlike
/// `room_kit::publish`, which takes the very next message as the `ok`).
#[track_caller]
fn publish_past_watchers(s: &mut Sim, c: C, rid: u32, room: &str, data: &str) -> u64 {
    s.send(
        c,
        json!({"t": "pub", "rid": rid, "room": room, "data": data}),
    );
    let ok = next(s, c);
    assert_eq!((&ok["t"], &ok["rid"]), (&json!("ok"), &json!(rid)), "{ok}");
    ok["seq"].as_u64().unwrap()
}

/// `join {room, watch: true}` with `rid`: the `joined` reply, checked to
/// say `watch`.
#[track_caller]
fn watch(s: &mut Sim, c: C, rid: u32, room: &str) -> Value {
    s.send(
        c,
        json!({"t": "join", "rid": rid, "room": room, "watch": true}),
    );
    let j = next(s, c);
    assert_eq!(j["t"], "joined", "{j}");
    assert_eq!(j["rid"], rid, "{j}");
    assert_eq!(j["room"], room);
    assert_eq!(j["watch"], true, "{j}");
    j
}

/// The next `watchers` count for `room` (waiting out the window).
#[track_caller]
fn watchers(s: &mut Sim, c: C, room: &str) -> u64 {
    let w = wait_for(s, c, |v| v["t"] == "watchers");
    assert_eq!(w["room"], room, "{w}");
    w["n"].as_u64().unwrap()
}

// Kick and ban.

#[test]
fn the_owner_kicks_a_member_who_may_come_back() {
    let mut s = Sim::new(1);
    let ((a, a_id), (b, b_id)) = pair_ids(&mut s, "r");
    let (c, c_id) = member(&mut s, 0);
    s.join(c, "r");
    s.expect(a, "presence");
    s.expect(b, "presence");
    kick(&mut s, a, 1, "r", b_id, false);
    assert_eq!(s.expect(a, "ok")["rid"], 1);
    let k = s.expect(b, "kicked");
    assert_eq!(k["room"], "r");
    for x in [a, c] {
        let p = s.expect(x, "presence");
        assert_eq!(
            (&p["leave"], &p["why"]),
            (&json!(b_id), &json!("kicked")),
            "{p}"
        );
    }
    s.send(b, json!({"t": "pub", "rid": 7, "room": "r", "data": "x"}));
    err_rid(&mut s, b, "not_member", 7);
    // Without a ban it may join again.
    let j = s.join(b, "r");
    assert_eq!(ids(&j), vec![a_id, c_id, b_id]);
}

#[test]
fn ban_keeps_a_member_and_its_watching_out() {
    let mut s = Sim::new(1);
    let ((a, _), (b, b_id)) = pair_ids(&mut s, "r");
    kick(&mut s, a, 1, "r", b_id, true);
    assert_eq!(s.expect(a, "ok")["rid"], 1);
    assert_eq!(s.expect(a, "presence")["why"], "kicked");
    s.expect(b, "kicked");
    s.send(b, json!({"t": "join", "rid": 1, "room": "r"}));
    err_rid(&mut s, b, "forbidden", 1);
    s.send(
        b,
        json!({"t": "join", "rid": 2, "room": "r", "watch": true}),
    );
    err_rid(&mut s, b, "forbidden", 2);
    // Another client is still welcome.
    let c = s.client(0);
    s.join(c, "r");
}

#[test]
fn only_the_owner_kicks_and_only_those_in_the_room() {
    let mut s = Sim::new(1);
    let ((a, a_id), (b, b_id)) = pair_ids(&mut s, "r");
    kick(&mut s, b, 1, "r", a_id, false);
    err_rid(&mut s, b, "forbidden", 1);
    kick(&mut s, a, 2, "r", 999_999, false);
    err_rid(&mut s, a, "not_found", 2);
    kick(&mut s, a, 3, "nope", b_id, false);
    err_rid(&mut s, a, "not_found", 3);
    s.send(a, json!({"t": "kick", "rid": 5, "room": "r"}));
    err_rid(&mut s, a, "bad_request", 5);
    kick(&mut s, a, 6, "r", a_id, false);
    err_rid(&mut s, a, "bad_request", 6);
    // Someone outside the room may not kick either.
    let c = s.client(0);
    kick(&mut s, c, 1, "r", b_id, false);
    err_rid(&mut s, c, "forbidden", 1);
    s.send(b, json!({"t": "ping", "rid": 2}));
    assert_eq!(s.expect(b, "pong")["rid"], 2);
    s.advance(300);
    s.assert_silent(b);
}

#[test]
fn the_owner_kicks_a_watcher() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    s.create(a, "live");
    let (w, w_id) = member(&mut s, 0);
    s.send(
        w,
        json!({"t": "join", "rid": 1, "room": "live", "watch": true}),
    );
    s.expect(w, "joined");
    assert_eq!(s.recv_type(a, "watchers")["n"], 1);
    kick(&mut s, a, 1, "live", w_id, false);
    assert_eq!(s.expect(a, "ok")["rid"], 1);
    assert_eq!(s.recv_type(w, "kicked")["room"], "live");
    assert_eq!(watchers(&mut s, a, "live"), 0);
    publish_past_watchers(&mut s, a, 2, "live", "gone");
    s.advance(300);
    s.assert_silent(w);
}

#[test]
fn the_http_api_kicks() {
    let mut s = Sim::with(1, |c| c.admin_key = Some(KEY.into()));
    let ((a, _), (b, b_id)) = pair_ids(&mut s, "r");
    let body = format!(r#"{{"id":{b_id},"ban":true}}"#);
    let (status, answer) = s.api(0, "POST", "/rooms/r/kick", &body);
    assert_eq!(status, 200, "{answer}");
    s.expect(b, "kicked");
    assert_eq!(s.expect(a, "presence")["why"], "kicked");
    s.send(b, json!({"t": "join", "rid": 1, "room": "r"}));
    err_rid(&mut s, b, "forbidden", 1);
    let body = format!(r#"{{"id":{b_id}}}"#);
    assert_eq!(s.api(0, "POST", "/rooms/r/kick", &body).0, 404);
    assert_eq!(s.api(0, "POST", "/rooms/r/kick", "{}").0, 400);
}

#[test]
fn a_kick_across_workers() {
    let mut s = Sim::new(2);
    let room = name_on("kick", 1, 2);
    let a = s.client(0);
    s.create(a, &room);
    let (b, b_id) = member(&mut s, 0);
    s.join(b, &room);
    s.expect(a, "presence");
    kick(&mut s, a, 1, &room, b_id, true);
    assert_eq!(s.expect(a, "ok")["rid"], 1);
    s.expect(b, "kicked");
    s.send(b, json!({"t": "join", "rid": 1, "room": room}));
    err_rid(&mut s, b, "forbidden", 1);
    // Its seat on the other worker is gone, so its room limit is whole.
    s.create(b, &name_on("kick-own", 0, 2));
}

// Watchers.

#[test]
fn a_watcher_gets_what_members_get_and_is_not_a_member() {
    let mut s = Sim::new(1);
    let (a, a_id) = member(&mut s, 0);
    s.send(a, json!({"t": "create", "room": "live", "max": 1}));
    s.expect(a, "created");
    s.expect(a, "joined");
    let w = s.client(0);
    let j = watch(&mut s, w, 1, "live");
    // Not listed among members, even though the room is full of them.
    assert_eq!(ids(&j), vec![a_id]);
    assert_eq!(j["watchers"], 1);
    // Members get the count, no presence.
    assert_eq!(watchers(&mut s, a, "live"), 1);
    assert_eq!(watchers(&mut s, w, "live"), 1);

    assert_eq!(publish_past_watchers(&mut s, a, 1, "live", "hi"), 1);
    let m = expect(&mut s, w, "msg");
    assert_eq!((&m["from"], &m["seq"]), (&json!(a_id), &json!(1)));
    assert_eq!(m["data"], "hi");
    s.send(a, json!({"t": "props", "room": "live", "set": {"k": "v"}}));
    assert_eq!(expect(&mut s, w, "props")["set"]["k"], "v");
    expect(&mut s, a, "props");
    // Members' presence reaches watchers.
    let (b, b_id) = member(&mut s, 0);
    s.send(
        a,
        json!({"t": "props", "room": "live", "set": {}, "rid": 2}),
    );
    expect(&mut s, a, "ok");
    s.send(b, json!({"t": "join", "rid": 3, "room": "live"}));
    expect_err(&mut s, b, "full", 3);
    s.send(a, json!({"t": "leave", "room": "live", "rid": 4}));
    expect(&mut s, a, "left");
    let p = expect(&mut s, w, "presence");
    assert_eq!((&p["leave"], &p["why"]), (&json!(a_id), &json!("left")));
    s.join(b, "live");
    let p = expect(&mut s, w, "presence");
    assert_eq!(p["join"]["id"], b_id);
    // The owner's close reaches it; then the room is gone.
    s.send(
        a,
        json!({"t": "state", "room": "live", "to": "closed", "rid": 5}),
    );
    assert_eq!(s.recv_type(w, "closed")["why"], "owner");
    s.send(
        w,
        json!({"t": "join", "rid": 6, "room": "live", "watch": true}),
    );
    expect_err(&mut s, w, "not_found", 6);
}

#[test]
fn a_watcher_may_not_speak() {
    let mut s = Sim::new(1);
    let (a, a_id) = member(&mut s, 0);
    s.create(a, "live");
    let w = s.client(0);
    watch(&mut s, w, 1, "live");
    for (i, mut req) in [
        json!({"t": "pub", "room": "live", "data": "x"}),
        json!({"t": "send", "room": "live", "to": a_id, "data": "x"}),
        json!({"t": "props", "room": "live", "set": {"k": "v"}}),
        json!({"t": "state", "room": "live", "to": "playing"}),
        json!({"t": "kick", "room": "live", "id": a_id}),
    ]
    .into_iter()
    .enumerate()
    {
        let rid = 100 + i as u32;
        req["rid"] = json!(rid);
        s.send(w, req);
        expect_err(&mut s, w, "forbidden", rid);
    }
    // The room saw nothing of it.
    s.recv_type(a, "watchers");
    s.advance(1000);
    s.assert_silent(a);
}

#[test]
fn watchers_are_bounded_per_room_and_count_against_the_room_limit() {
    let mut s = Sim::with(1, |c| {
        c.max_watchers = 2;
        c.max_rooms_per_conn = 2;
    });
    let a = s.client(0);
    s.create(a, "live");
    s.create(a, "side");
    let (w1, w2) = (s.client(0), s.client(0));
    watch(&mut s, w1, 1, "live");
    watch(&mut s, w2, 1, "live");
    let w3 = s.client(0);
    s.send(
        w3,
        json!({"t": "join", "rid": 1, "room": "live", "watch": true}),
    );
    expect_err(&mut s, w3, "full", 1);
    // Watching counts like a seat against --max-rooms-per-conn.
    watch(&mut s, w1, 2, "side");
    s.send(w1, json!({"t": "create", "rid": 3, "room": "third"}));
    expect_err(&mut s, w1, "forbidden", 3);
    // Watching again is a fresh snapshot, not a second place.
    let j = watch(&mut s, w1, 4, "live");
    assert_eq!(j["watchers"], 2);
    // A member may not also watch.
    s.send(
        a,
        json!({"t": "join", "rid": 3, "room": "live", "watch": true}),
    );
    expect_err(&mut s, a, "bad_request", 3);
    // Leaving frees the place, and the count follows.
    s.send(w2, json!({"t": "leave", "rid": 4, "room": "live"}));
    assert_eq!(expect(&mut s, w2, "left")["rid"], 4);
    watch(&mut s, w3, 2, "live");
}

#[test]
fn the_count_is_coalesced_and_list_shows_it() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    s.create(a, "live");
    let ws: Vec<C> = (0..5).map(|_| s.client(0)).collect();
    for &w in &ws {
        watch(&mut s, w, 1, "live");
    }
    // The first change goes out at once; the four after it, within the
    // same second, as one update with the count at its end.
    assert_eq!(watchers(&mut s, a, "live"), 1);
    assert_eq!(watchers(&mut s, a, "live"), 5);
    s.advance(1000);
    s.assert_silent(a);
    s.send(a, json!({"t": "list", "rid": 1}));
    let rooms = expect(&mut s, a, "rooms");
    let r = &rooms["rooms"][0];
    assert_eq!(
        (&r["room"], &r["members"], &r["watchers"]),
        (&json!("live"), &json!(1), &json!(5))
    );
    // A watcher that drops is simply gone: no presence, the count drops.
    s.disconnect(ws[4], CloseReason::Dropped);
    assert_eq!(watchers(&mut s, a, "live"), 4);
    s.advance(1000);
    s.assert_silent(a);
}

#[test]
fn a_dropped_watcher_resumes_with_its_replay() {
    let mut s = Sim::with(1, |c| c.grace_ms = 5000);
    let a = s.client(0);
    s.create(a, "live");
    let (w, w_id, token) = open(&mut s, 0);
    watch(&mut s, w, 1, "live");
    assert_eq!(publish_past_watchers(&mut s, a, 1, "live", "1"), 1);
    assert_eq!(expect(&mut s, w, "msg")["seq"], 1);
    s.disconnect(w, CloseReason::Dropped);
    assert_eq!(watchers(&mut s, a, "live"), 0);
    assert_eq!(publish_past_watchers(&mut s, a, 2, "live", "2"), 2);

    let w2 = s.resume(0, &token, json!({"live": 1}));
    let r = expect(&mut s, w2, "resumed");
    assert_eq!(r["id"], w_id);
    assert_eq!(r["rooms"]["live"]["recovered"], true, "{r}");
    let m = expect(&mut s, w2, "msg");
    assert_eq!((&m["seq"], &m["data"]), (&json!(2), &json!("2")));
    assert_eq!(watchers(&mut s, a, "live"), 1);
    // Still a watcher, not a member.
    s.send(
        w2,
        json!({"t": "pub", "rid": 2, "room": "live", "data": "x"}),
    );
    expect_err(&mut s, w2, "forbidden", 2);
}

#[test]
fn an_audience_across_workers() {
    let mut s = Sim::new(2);
    let room = name_on("stage", 1, 2);
    let a = s.client(0);
    s.create(a, &room);
    let audience: Vec<C> = (0..2).flat_map(|k| [k, k]).map(|k| s.client(k)).collect();
    for &w in &audience {
        watch(&mut s, w, 1, &room);
    }
    for seq in 1..=3u64 {
        let data = seq.to_string();
        assert_eq!(
            publish_past_watchers(&mut s, a, seq as u32, &room, &data),
            seq
        );
    }
    for &w in &audience {
        for seq in 1..=3u64 {
            let m = s.recv_type(w, "msg");
            assert_eq!(m["seq"], seq, "{m}");
        }
        s.send(w, json!({"t": "pub", "rid": 9, "room": room, "data": "x"}));
        expect_err(&mut s, w, "forbidden", 9);
    }
    // Everyone ends up seeing the whole audience counted.
    let mut n = 0;
    while n != 4 {
        n = watchers(&mut s, a, &room);
    }
    s.send(a, json!({"t": "list", "rid": 1}));
    let rooms = expect(&mut s, a, "rooms");
    assert_eq!(rooms["rooms"][0]["watchers"], 4, "{rooms}");
    // A watcher leaving frees its place on its own worker too.
    let w = audience[0];
    s.send(w, json!({"t": "leave", "rid": 2, "room": room}));
    expect(&mut s, w, "left");
    s.advance(50);
    s.assert_silent(w);
}
