//! Watchers (PROTOCOL.md "Watchers"): `join` with `watch` gets what members
//! get, takes no seat, has no presence, may not speak, and is counted in
//! `watchers` (coalesced), `list` and `joined`.

#[macro_use]
mod common;

use std::time::Duration;

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
fn a_watcher_may_not_speak() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.create("live");
    let mut w = server.client();
    watch(&mut w, "live");
    for (i, req) in [
        msg! {"t" => "pub", "room" => "live", "data" => bin(b"x")},
        msg! {"t" => "send", "room" => "live", "to" => a.id, "data" => bin(b"x")},
        msg! {"t" => "props", "room" => "live", "set" => msg! {"k" => bin(b"v")}},
        msg! {"t" => "state", "room" => "live", "to" => "playing"},
        msg! {"t" => "kick", "room" => "live", "id" => a.id},
    ]
    .into_iter()
    .enumerate()
    {
        let rid = 100 + i as u32;
        let mut req = req;
        if let Value::Map(kv) = &mut req {
            kv.push((Value::from("rid"), Value::from(rid)));
        }
        w.send(req);
        expect_err(&mut w, "forbidden", rid);
    }
    // The room saw nothing of it.
    a.recv_type("watchers");
    a.expect_silence(SILENCE);
}

#[test]
fn watchers_are_bounded_per_room_and_count_against_the_room_limit() {
    let server = Server::start(&["--max-watchers", "2", "--max-rooms-per-conn", "2"]);
    let mut a = server.client();
    a.create("live");
    a.create("side");
    let mut w1 = server.client();
    let mut w2 = server.client();
    watch(&mut w1, "live");
    watch(&mut w2, "live");
    let mut w3 = server.client();
    w3.send(msg! {"t" => "join", "rid" => 1u32, "room" => "live", "watch" => true});
    expect_err(&mut w3, "full", 1);
    // Watching counts like a seat against --max-rooms-per-conn.
    watch(&mut w1, "side");
    w1.send(msg! {"t" => "create", "rid" => 2u32, "room" => "third"});
    expect_err(&mut w1, "forbidden", 2);
    // Watching again is a fresh snapshot, not a second place.
    let j = watch(&mut w1, "live");
    assert_eq!(j["watchers"].u(), 2);
    // A member may not also watch.
    a.send(msg! {"t" => "join", "rid" => 3u32, "room" => "live", "watch" => true});
    expect_err(&mut a, "bad_request", 3);
    // Leaving frees the place, and the count follows.
    w2.send(msg! {"t" => "leave", "rid" => 4u32, "room" => "live"});
    assert_eq!(expect(&mut w2, "left")["rid"].u(), 4);
    watch(&mut w3, "live");
}

#[test]
fn the_count_is_coalesced_and_list_shows_it() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.create("live");
    let mut ws: Vec<Client> = (0..5).map(|_| server.client()).collect();
    for w in &mut ws {
        watch(w, "live");
    }
    // The first change goes out at once; the four after it, within the
    // same second, as one update with the count at its end.
    assert_eq!(watchers(&mut a, "live"), 1);
    assert_eq!(watchers(&mut a, "live"), 5);
    a.expect_silence(SILENCE);
    a.send(msg! {"t" => "list", "rid" => 1u32});
    let rooms = expect(&mut a, "rooms");
    let r = &rooms["rooms"][0];
    assert_eq!(
        (r["room"].s(), r["members"].u(), r["watchers"].u()),
        ("live", 1, 5)
    );
    // A watcher that drops is simply gone: no presence, the count drops.
    ws.pop().unwrap().drop_tcp();
    assert_eq!(watchers(&mut a, "live"), 4);
    a.expect_silence(SILENCE);
}

#[test]
fn a_dropped_watcher_resumes_with_its_replay() {
    let server = Server::start(&["--grace-ms", "5000"]);
    let mut a = server.client();
    a.create("live");
    let mut w = server.client();
    watch(&mut w, "live");
    let (w_id, token) = (w.id, w.welcome["session"].s().to_string());
    assert_eq!(publish(&mut a, "live", b"1"), 1);
    assert_eq!(expect(&mut w, "msg")["seq"].u(), 1);
    w.drop_tcp();
    assert_eq!(watchers(&mut a, "live"), 0);
    assert_eq!(publish(&mut a, "live", b"2"), 2);

    let mut w2 = server.client();
    w2.send(msg! {"t" => "hello", "rid" => 1u32, "resume" => token.as_str(), "last" => msg! {"live" => 1u64}});
    let r = expect(&mut w2, "resumed");
    assert_eq!(r["id"].u(), w_id);
    assert!(r["rooms"]["live"]["recovered"].bool(), "{r:?}");
    let m = expect(&mut w2, "msg");
    assert_eq!((m["seq"].u(), m["data"].b()), (2, &b"2"[..]));
    assert_eq!(watchers(&mut a, "live"), 1);
    // Still a watcher, not a member.
    w2.send(msg! {"t" => "pub", "rid" => 2u32, "room" => "live", "data" => bin(b"x")});
    expect_err(&mut w2, "forbidden", 2);
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

#[test]
fn an_audience_across_workers() {
    let server = start_workers(2, &[]);
    let room = name_on("stage", 1, 2);
    let mut a = client_on(&server, 0);
    a.create(&room);
    let mut audience: Vec<Client> = (0..2)
        .flat_map(|k| [client_on(&server, k), client_on(&server, k)])
        .collect();
    for w in &mut audience {
        watch(w, &room);
    }
    for seq in 1..=3u64 {
        assert_eq!(publish(&mut a, &room, &seq.to_be_bytes()), seq);
    }
    for w in &mut audience {
        for seq in 1..=3u64 {
            let m = w.recv_type("msg");
            assert_eq!(m["seq"].u(), seq, "{m:?}");
        }
        w.send(msg! {"t" => "pub", "rid" => 9u32, "room" => room.as_str(), "data" => bin(b"x")});
        expect_err(w, "forbidden", 9);
    }
    // Everyone ends up seeing the whole audience counted.
    let mut n = 0;
    while n != 4 {
        n = watchers(&mut a, &room);
    }
    a.send(msg! {"t" => "list", "rid" => 1u32});
    let rooms = expect(&mut a, "rooms");
    assert_eq!(rooms["rooms"][0]["watchers"].u(), 4, "{rooms:?}");
    // A watcher leaving frees its place on its own worker too.
    let w = &mut audience[0];
    w.send(msg! {"t" => "leave", "rid" => 2u32, "room" => room.as_str()});
    expect(w, "left");
    w.expect_silence(Duration::from_millis(50));
}
