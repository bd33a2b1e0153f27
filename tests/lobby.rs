//! The lobby (PROTOCOL.md "Lobby"): a `rooms` snapshot, then coalesced
//! `lobby` updates for every public room that matches the filter, and
//! `gone` when one closes or stops matching.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::*;

/// `lobby` with `filter` fields: the snapshot's room names.
#[track_caller]
fn subscribe(c: &mut Client, filter: Value) -> Vec<String> {
    let rid = c.rid();
    let mut m = msg! {"t" => "lobby", "rid" => rid};
    if let (Value::Map(kv), Value::Map(more)) = (&mut m, filter) {
        kv.extend(more);
    }
    c.send(m);
    let r = c.expect("rooms");
    assert_eq!(r["rid"].u(), u64::from(rid), "{r:?}");
    let mut names: Vec<String> = r["rooms"]
        .arr()
        .iter()
        .map(|x| x["room"].s().to_string())
        .collect();
    names.sort();
    names
}

/// The next `lobby` update for `room` (others skipped).
#[track_caller]
fn update(c: &mut Client, room: &str) -> Value {
    c.recv_until(|m| m.t() == "lobby" && m["room"].s() == room)
}

/// Updates for `room` until one satisfies `ok`; returns it and how many came.
#[track_caller]
fn update_until(c: &mut Client, room: &str, ok: impl Fn(&Value) -> bool) -> (Value, usize) {
    let mut n = 0;
    loop {
        let u = update(c, room);
        n += 1;
        if ok(&u) {
            return (u, n);
        }
    }
}

#[test]
fn snapshot_then_live_updates_then_gone() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.create("early");
    a.create_with(msg! {"room" => "hidden", "private" => true});
    let mut l = server.client();
    assert_eq!(subscribe(&mut l, msg! {}), vec!["early".to_string()]);

    let mut b = server.client();
    b.create_with(msg! {"room" => "fresh", "max" => 4u16});
    let (u, _) = update_until(&mut l, "fresh", |u| u["members"].u() == 1);
    assert_eq!(
        (u["max"].u(), u["state"].s(), u["watchers"].u()),
        (4, "waiting", 0),
        "{u:?}"
    );
    let mut c = server.client();
    c.join("fresh");
    let (u, _) = update_until(&mut l, "fresh", |u| u["members"].u() == 2);
    assert!(!u.has("gone"), "{u:?}");
    // Watchers are counted.
    let mut w = server.client();
    w.send(msg! {"t" => "join", "rid" => 1u32, "room" => "fresh", "watch" => true});
    w.expect("joined");
    update_until(&mut l, "fresh", |u| u["watchers"].u() == 1);
    // Closing: gone.
    b.send(msg! {"t" => "state", "rid" => 2u32, "room" => "fresh", "to" => "closed"});
    let (u, _) = update_until(&mut l, "fresh", |u| u.has("gone"));
    assert!(u["gone"].bool(), "{u:?}");
    // A private room never shows; nothing else arrives.
    let mut d = server.client();
    d.create_with(msg! {"room" => "secret", "private" => true});
    l.expect_silence(Duration::from_millis(400));
}

#[test]
fn a_filter_sends_gone_when_a_room_stops_matching() {
    let server = Server::start(&[]);
    let mut l = server.client();
    assert!(subscribe(&mut l, msg! {"state" => "waiting", "has_space" => true}).is_empty());
    let mut a = server.client();
    a.create_with(msg! {"room" => "duo", "max" => 2u16});
    update_until(&mut l, "duo", |u| u["members"].u() == 1);
    // Full: it no longer has space.
    let mut b = server.client();
    b.join("duo");
    let (u, _) = update_until(&mut l, "duo", |u| u.has("gone"));
    assert!(u["gone"].bool());
    // Space again: back.
    b.leave("duo");
    let (u, _) = update_until(&mut l, "duo", |u| !u.has("gone"));
    assert_eq!(u["members"].u(), 1);
    // Playing: not waiting any more.
    a.send(msg! {"t" => "state", "rid" => 3u32, "room" => "duo", "to" => "playing"});
    let (u, _) = update_until(&mut l, "duo", |u| u.has("gone"));
    assert!(u["gone"].bool());
    // Rooms that never matched send nothing.
    let mut c = server.client();
    c.create_with(msg! {"room" => "solo", "max" => 1u16});
    l.expect_silence(Duration::from_millis(400));
}

#[test]
fn updates_are_coalesced_per_room() {
    let server = Server::start(&[]);
    let mut l = server.client();
    subscribe(&mut l, msg! {});
    let mut a = server.client();
    a.create_with(msg! {"room" => "busy", "max" => 32u16});
    let start = Instant::now();
    let mut joiners: Vec<Client> = (0..20).map(|_| server.client()).collect();
    for j in &mut joiners {
        j.join("busy");
    }
    let joined_in = start.elapsed();
    let (_, n) = update_until(&mut l, "busy", |u| u["members"].u() == 21);
    // At most one update per 250 ms window, plus the window the first
    // change opened.
    let windows = (joined_in.as_millis() / 250) as usize + 2;
    assert!(
        n <= windows,
        "{n} updates for changes made over {joined_in:?}"
    );
    l.expect_silence(Duration::from_millis(400));
}

#[test]
fn bad_filter_replace_and_unlobby() {
    let server = Server::start(&[]);
    let mut l = server.client();
    l.send(msg! {"t" => "lobby", "rid" => 1u32, "state" => "bogus"});
    l.expect_err_rid("bad_request", 1);
    // Not subscribed by the failed request.
    let mut a = server.client();
    a.create("one");
    l.expect_silence(Duration::from_millis(400));
    // The connection keeps working; a second `lobby` replaces the first.
    subscribe(&mut l, msg! {"state" => "playing"});
    assert_eq!(subscribe(&mut l, msg! {}), vec!["one".to_string()]);
    a.create("two");
    update(&mut l, "two");
    l.send(msg! {"t" => "unlobby", "rid" => 5u32});
    assert_eq!(l.recv_until(|m| m.t() == "ok")["rid"].u(), 5);
    a.create("three");
    l.expect_silence(Duration::from_millis(400));
    // A limit bounds the snapshot only.
    let names = subscribe(&mut l, msg! {"limit" => 1u16});
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn a_lobby_sees_every_worker() {
    let server = start_workers(2, &[]);
    let mut a = client_on(&server, 1);
    let early = name_on("lobby-early", 0, 2);
    a.create(&early);
    let mut l = client_on(&server, 0);
    assert_eq!(subscribe(&mut l, msg! {}), vec![early.clone()]);
    for k in 0..2 {
        let room = name_on(&format!("lobby-live{k}"), k, 2);
        let mut c = client_on(&server, 1 - k);
        c.create(&room);
        update_until(&mut l, &room, |u| u["members"].u() == 1);
        c.leave(&room);
        update_until(&mut l, &room, |u| u["members"].u() == 0);
    }
    // A subscriber on the other worker too.
    let mut l2 = client_on(&server, 1);
    subscribe(&mut l2, msg! {});
    a.send(msg! {"t" => "state", "rid" => 1u32, "room" => early.as_str(), "to" => "closed"});
    for x in [&mut l, &mut l2] {
        let (u, _) = update_until(x, &early, |u| u.has("gone"));
        assert!(u["gone"].bool());
    }
}
