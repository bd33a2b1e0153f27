//! The lobby (PROTOCOL.md "Lobby"): a `rooms` snapshot, then coalesced
//! `lobby` updates for every public room that matches the filter, and
//! `gone` when one closes or stops matching. One subscription end to end
//! here; filters, coalescing, `unlobby` and several workers are unit tests
//! of the core (`src/hub/tests/lobby.rs`).

#[macro_use]
mod common;

use std::time::Duration;

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
