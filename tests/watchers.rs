//! Watchers (PROTOCOL.md "Watchers"): `join` with `watch` gets what members
//! get, takes no seat, has no presence, may not speak, and is counted in
//! `watchers` (coalesced), `list` and `joined`. One watcher end to end and
//! the slow watcher's close here; the rest are unit tests of the core
//! (`src/hub/tests/audience.rs`).

#[macro_use]
mod common;

use common::*;

/// The next message that is not a `watchers` count (those come whenever
/// the audience moves).
#[track_caller]
fn next(c: &mut Client) -> Value {
    c.recv_until(|m| m.t() != "watchers")
}

/// `pub` with a `rid`: its `seq`, past any `watchers` count.
#[track_caller]
fn publish(c: &mut Client, room: &str, data: &[u8]) -> u64 {
    let rid = c.rid();
    c.send(msg! {"t" => "pub", "rid" => rid, "room" => room, "data" => bin(data)});
    let ok = next(c);
    assert_eq!((ok.t(), ok["rid"].u()), ("ok", u64::from(rid)), "{ok:?}");
    ok["seq"].u()
}

/// The next message but `watchers`, checked to be of type `t`.
#[track_caller]
fn expect(c: &mut Client, t: &str) -> Value {
    let m = next(c);
    assert_eq!(m.t(), t, "{m:?}");
    m
}

/// The next message but `watchers`, checked to be `err` `code` for `rid`.
#[track_caller]
fn expect_err(c: &mut Client, code: &str, rid: u32) {
    let m = expect(c, "err");
    assert_eq!(
        (m["code"].s(), m["rid"].u()),
        (code, u64::from(rid)),
        "{m:?}"
    );
}

/// `join {room, watch: true}`: the `joined` reply, checked to say `watch`.
#[track_caller]
fn watch(c: &mut Client, room: &str) -> Value {
    let rid = c.rid();
    c.send(msg! {"t" => "join", "rid" => rid, "room" => room, "watch" => true});
    let j = next(c);
    assert_eq!(j.t(), "joined", "{j:?}");
    assert_eq!(j["rid"].u(), u64::from(rid), "{j:?}");
    assert_eq!(j["room"].s(), room);
    assert!(j["watch"].bool(), "{j:?}");
    j
}

/// The next `watchers` count for `room`.
#[track_caller]
fn watchers(c: &mut Client, room: &str) -> u64 {
    let w = c.recv_type("watchers");
    assert_eq!(w["room"].s(), room, "{w:?}");
    w["n"].u()
}

#[test]
fn a_watcher_gets_what_members_get_and_is_not_a_member() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.create_with(msg! {"room" => "live", "max" => 1u16});
    let mut w = server.client();
    let j = watch(&mut w, "live");
    // Not listed among members, even though the room is full of them.
    assert_eq!(member_ids(&j), vec![a.id]);
    assert_eq!(j["watchers"].u(), 1);
    // Members get the count, no presence.
    assert_eq!(watchers(&mut a, "live"), 1);
    assert_eq!(watchers(&mut w, "live"), 1);

    assert_eq!(publish(&mut a, "live", b"hi"), 1);
    let m = expect(&mut w, "msg");
    assert_eq!((m["from"].u(), m["seq"].u()), (a.id, 1));
    assert_eq!(m["data"].b(), b"hi");
    a.send(msg! {"t" => "props", "room" => "live", "set" => msg! {"k" => bin(b"v")}});
    assert_eq!(expect(&mut w, "props")["set"]["k"].b(), b"v");
    expect(&mut a, "props");
    // Members' presence reaches watchers.
    let mut b = server.client();
    a.send(msg! {"t" => "props", "room" => "live", "set" => msg! {}, "rid" => 2u32});
    expect(&mut a, "ok");
    b.send(msg! {"t" => "join", "rid" => 3u32, "room" => "live"});
    expect_err(&mut b, "full", 3);
    a.send(msg! {"t" => "leave", "room" => "live", "rid" => 4u32});
    expect(&mut a, "left");
    let p = expect(&mut w, "presence");
    assert_eq!((p["leave"].u(), p["why"].s()), (a.id, "left"));
    b.join("live");
    let p = expect(&mut w, "presence");
    assert_eq!(p["join"]["id"].u(), b.id);
    // The owner's close reaches it; then the room is gone.
    a.send(msg! {"t" => "state", "room" => "live", "to" => "closed", "rid" => 5u32});
    assert_eq!(w.recv_type("closed")["why"].s(), "owner");
    w.send(msg! {"t" => "join", "rid" => 6u32, "room" => "live", "watch" => true});
    expect_err(&mut w, "not_found", 6);
}

#[test]
fn a_slow_watcher_is_closed_4001_and_the_audience_goes_on() {
    const N: u64 = 1024; // 4 MiB in all
    let server = Server::start(&["--out-buffer", "262144", "--rate-limit", "100000"]);
    let mut a = server.client();
    a.create("live");
    let mut fast = server.client();
    watch(&mut fast, "live");
    let mut slow = server.client_small_rcvbuf();
    watch(&mut slow, "live");
    let data = vec![0x5au8; 4096];
    let mut seq = 0;
    for _ in 0..N / 16 {
        for _ in 0..16 {
            a.send(msg! {"t" => "pub", "room" => "live", "data" => bin(&data)});
        }
        for _ in 0..16 {
            seq += 1;
            assert_eq!(fast.recv_type("msg")["seq"].u(), seq);
        }
    }
    let got = slow.expect_close(4001);
    assert!((got.len() as u64) < N, "cut off before the end");
    assert_eq!(publish(&mut a, "live", b"after"), N + 1);
    assert_eq!(fast.recv_type("msg")["data"].b(), b"after");
}
