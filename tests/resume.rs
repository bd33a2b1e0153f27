//! Resume (PROTOCOL.md "Reconnect and recovery"): `hello` with `resume` and
//! `last` re-attaches a dropped session's seats and replays what it missed
//! from the rooms' histories, exactly once and in order; `recovered:false`
//! when the history no longer reaches back; `not_found` after the grace
//! period and for tokens this server never issued; a half-open connection is
//! taken over and closed with 4003.

#[macro_use]
mod common;

use common::*;
use std::collections::BTreeMap;

/// `hello {resume, last, rid}`.
fn hello_resume(c: &mut Client, token: &str, last: Value) -> u32 {
    let rid = c.rid();
    c.send(msg! {"t" => "hello", "rid" => rid, "resume" => token, "last" => last});
    rid
}

/// The `resumed` reply to `rid`, as room -> recovered.
#[track_caller]
fn expect_resumed(c: &mut Client, rid: u32) -> BTreeMap<String, bool> {
    let r = c.expect("resumed");
    assert_eq!(r["rid"].u(), u64::from(rid), "{r:?}");
    r["rooms"]
        .map()
        .into_iter()
        .map(|(k, v)| (k, v["recovered"].bool()))
        .collect()
}

/// Publishes `n` messages without `rid` (pipelined); the payload is the
/// message's number, so a receiver can check each arrives once, in order.
fn burst(a: &mut Client, room: &str, from: u64, n: u64) {
    for i in from..from + n {
        a.send(msg! {"t" => "pub", "room" => room, "data" => bin(i.to_be_bytes())});
    }
}

/// The next `msg`, checked to be `seq` with its payload.
#[track_caller]
fn expect_msg(c: &mut Client, room: &str, seq: u64) {
    let m = c.expect("msg");
    assert_eq!(m["room"].s(), room, "{m:?}");
    assert_eq!(m["seq"].u(), seq, "messages once each, in order: {m:?}");
    assert_eq!(m["data"].b(), &seq.to_be_bytes(), "{m:?}");
}

fn token(c: &Client) -> String {
    c.welcome["session"].s().to_string()
}

#[test]
fn drop_mid_burst_and_resume_gets_every_message_once_in_order() {
    let server = Server::start(&["--grace-ms", "5000", "--history", "1000"]);
    let (mut a, mut b) = server.pair("r");
    let (b_id, b_token) = (b.id, token(&b));

    // A burst of 300; b reads 120 of them and its socket drops, with the
    // rest in flight or not yet sent.
    burst(&mut a, "r", 1, 300);
    for seq in 1..=120 {
        expect_msg(&mut b, "r", seq);
    }
    b.drop_tcp();
    burst(&mut a, "r", 301, 100);
    let away = a.expect("presence");
    assert_eq!(away["away"].u(), b_id, "{away:?}");

    // The resume lands in the middle of more traffic: whatever the server
    // handles before it is replayed, whatever after it is live.
    let mut b2 = server.client();
    burst(&mut a, "r", 401, 50);
    let rid = hello_resume(&mut b2, &b_token, msg! {"r" => 120u64});
    burst(&mut a, "r", 451, 50);
    let rooms = expect_resumed(&mut b2, rid);
    assert_eq!(rooms, BTreeMap::from([("r".to_string(), true)]));
    for seq in 121..=500 {
        expect_msg(&mut b2, "r", seq);
    }
    let back = a.expect("presence");
    assert_eq!(back["back"].u(), b_id, "{back:?}");

    // It is b's seat: same member id for what it publishes, no new member.
    let seq = b2.publish("r", b"hi");
    assert_eq!(seq, 501);
    let m = a.expect("msg");
    assert_eq!(m["from"].u(), b_id);
    let snapshot = a.join("r");
    assert_eq!(member_ids(&snapshot), vec![a.id, b_id]);
    b2.expect_silence(SILENCE);
}

#[test]
fn resume_after_history_overflow_is_not_recovered() {
    let server = Server::start(&["--grace-ms", "5000", "--history", "8"]);
    let mut a = server.client();
    a.create("r");
    a.create("quiet");
    a.create("other");
    let mut b = server.client();
    for room in ["r", "quiet", "other"] {
        b.join(room);
        a.expect("presence");
    }
    let b_token = token(&b);
    burst(&mut a, "r", 1, 2);
    expect_msg(&mut b, "r", 1);
    expect_msg(&mut b, "r", 2);
    burst(&mut a, "other", 1, 1);
    expect_msg(&mut b, "other", 1);
    b.drop_tcp();
    a.expect("presence"); // away, once per room
    a.expect("presence");
    a.expect("presence");
    // 20 more in "r": the history (8) no longer reaches back to seq 3.
    burst(&mut a, "r", 3, 20);
    burst(&mut a, "other", 2, 2);
    a.roundtrip();

    let mut b2 = server.client();
    // "quiet" missed nothing; "other" is not named in `last`.
    let rid = hello_resume(&mut b2, &b_token, msg! {"r" => 2u64, "quiet" => 0u64});
    let rooms = expect_resumed(&mut b2, rid);
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
    burst(&mut a, "r", 23, 1);
    expect_msg(&mut b2, "r", 23);
    b2.expect_silence(SILENCE);
}

#[test]
fn resume_within_history_across_rooms_in_json() {
    let server = Server::start(&["--grace-ms", "5000", "--history", "8"]);
    let mut a = server.client();
    a.create("x");
    a.create("y");
    let mut b = server.client_json();
    b.join("x");
    a.expect("presence");
    b.join("y");
    a.expect("presence");
    let b_token = token(&b);
    b.drop_tcp();
    a.expect("presence");
    a.expect("presence");
    for i in 0..3 {
        a.send(msg! {"t" => "pub", "room" => "x", "data" => format!("x{i}")});
        a.send(msg! {"t" => "pub", "room" => "y", "data" => format!("y{i}")});
    }
    a.roundtrip();
    let mut b2 = server.client_json();
    let rid = hello_resume(&mut b2, &b_token, msg! {"x" => 1u64, "y" => 0u64});
    let rooms = expect_resumed(&mut b2, rid);
    assert_eq!(rooms.values().filter(|r| **r).count(), 2, "{rooms:?}");
    // Rooms replay one after the other, each in seq order.
    let mut got = Vec::new();
    for _ in 0..5 {
        let m = b2.expect("msg");
        got.push((
            m["room"].s().to_string(),
            m["seq"].u(),
            m["data"].s().to_string(),
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
    b2.expect_silence(SILENCE);
}

#[test]
fn resume_after_grace_is_not_found_and_the_seat_was_released() {
    let server = Server::start(&["--grace-ms", "300"]);
    let (mut a, b) = server.pair("r");
    let (b_id, b_token) = (b.id, token(&b));
    b.drop_tcp();
    assert_eq!(a.expect("presence")["away"].u(), b_id);
    let leave = a.expect("presence");
    assert_eq!(leave["leave"].u(), b_id, "{leave:?}");
    assert_eq!(leave["why"].s(), "disconnect");

    let mut b2 = server.client();
    let rid = hello_resume(&mut b2, &b_token, msg! {"r" => 0u64});
    b2.expect_err_rid("not_found", rid);
    // A fresh session goes on, under its own id.
    assert_ne!(b2.id, b_id);
    let joined = b2.join("r");
    assert_eq!(member_ids(&joined), vec![a.id, b2.id]);
    a.expect("presence");
    a.expect_silence(SILENCE);
}

#[test]
fn forged_and_foreign_tokens_fail() {
    let server = Server::start(&["--grace-ms", "5000"]);
    let other = Server::start(&["--grace-ms", "5000"]);
    let (mut a, b) = server.pair("r");
    let real = token(&b);
    b.drop_tcp();
    a.expect("presence");

    // A token the other server issued, for a session that is alive there.
    let mut f = other.client();
    f.create("r");
    let foreign = token(&f);
    // Forged: right shape, wrong bits; the real one with a bit flipped; the
    // real one in upper case; not a token at all.
    let mut flipped = real.clone().into_bytes();
    flipped[31] = if flipped[31] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    // The real one's last half (what the server's index is keyed by) with
    // a first half of another.
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
        let mut c = server.client();
        let rid = hello_resume(&mut c, bad, msg! {"r" => 0u64});
        c.expect_err_rid("not_found", rid);
        // The failed resume does not take the seat: a fresh session.
        c.send(msg! {"t" => "pub", "rid" => 9u32, "room" => "r", "data" => bin(b"x")});
        c.expect_err_rid("not_member", 9);
    }
    // The seat is still b's to take.
    let mut b2 = server.client();
    let rid = hello_resume(&mut b2, &real, msg! {"r" => 0u64});
    assert!(expect_resumed(&mut b2, rid)["r"]);
    // A connection's own token is no resume.
    let mut c2 = server.client();
    let own2 = token(&c2);
    c2.send(msg! {"t" => "hello", "rid" => 5u32, "resume" => own2.as_str()});
    c2.expect_err_rid("bad_request", 5);
}

#[test]
fn half_open_connection_is_taken_over_and_closed_4003() {
    let server = Server::start(&["--grace-ms", "5000"]);
    let (mut a, mut b) = server.pair("r");
    let (b_id, b_token) = (b.id, token(&b));
    burst(&mut a, "r", 1, 3);
    expect_msg(&mut b, "r", 1);

    // b's old connection is still open as far as the server knows.
    let mut b2 = server.client();
    let rid = hello_resume(&mut b2, &b_token, msg! {"r" => 1u64});
    assert!(expect_resumed(&mut b2, rid)["r"]);
    expect_msg(&mut b2, "r", 2);
    expect_msg(&mut b2, "r", 3);
    let skipped = b.expect_close(4003);
    assert!(skipped.iter().all(|m| m.t() == "msg"), "{skipped:?}");
    // The others saw neither away nor back: the seat never left.
    a.roundtrip();
    a.expect_silence(SILENCE);
    burst(&mut a, "r", 4, 1);
    expect_msg(&mut b2, "r", 4);
    assert_eq!(b2.publish("r", b"me"), 5);
    assert_eq!(a.expect("msg")["from"].u(), b_id);
}

#[test]
fn a_seat_taken_before_the_resume_is_left() {
    let server = Server::start(&["--grace-ms", "5000"]);
    let mut a = server.client();
    a.create("r");
    a.create("lobby");
    let mut b = server.client();
    b.join("r");
    a.expect("presence");
    let (b_id, b_token) = (b.id, token(&b));
    b.drop_tcp();
    a.expect("presence");

    // The new connection joins "lobby" by URL before it resumes.
    let mut b2 = server.client_with("/ws?room=lobby", None);
    assert_eq!(b2.expect("joined")["room"].s(), "lobby");
    let fresh = b2.id;
    assert_eq!(a.expect("presence")["join"]["id"].u(), fresh);
    let rid = hello_resume(&mut b2, &b_token, msg! {"r" => 0u64});
    let rooms = expect_resumed(&mut b2, rid);
    assert_eq!(rooms, BTreeMap::from([("r".to_string(), true)]));
    // The fresh session's seat went with it; b is back in "r".
    let mut seen = vec![a.expect("presence"), a.expect("presence")];
    seen.sort_by_key(|p| p["room"].s().to_string());
    assert_eq!(seen[0]["leave"].u(), fresh, "{seen:?}");
    assert_eq!(seen[0]["why"].s(), "left");
    assert_eq!(seen[1]["back"].u(), b_id, "{seen:?}");
    b2.send(msg! {"t" => "pub", "rid" => 3u32, "room" => "lobby", "data" => bin(b"x")});
    b2.expect_err_rid("not_member", 3);
}

/// The `resumed` reply to `rid`, as room -> its part (`{"recovered"}` or
/// `{"closed"}`), with the member id it answers for.
#[track_caller]
fn resumed_parts(c: &mut Client, rid: u32) -> (u64, BTreeMap<String, Value>) {
    let r = c.expect("resumed");
    assert_eq!(r["rid"].u(), u64::from(rid), "{r:?}");
    (r["id"].u(), r["rooms"].map())
}

/// PROTOCOL.md "Reconnect and recovery": a session is resumable within the
/// grace period whether or not it holds seats.
#[test]
fn a_session_with_no_seats_is_resumed_within_grace() {
    let server = Server::start(&["--grace-ms", "3000"]);
    let c = server.client();
    let (id, tok) = (c.id, token(&c));
    c.drop_tcp();
    server.await_metric(
        "/metrics",
        "roomd_closes_total{worker=\"0\",reason=\"dropped\"}",
        |n| n >= 1,
    );
    let mut c2 = server.client();
    assert_ne!(c2.id, id);
    let rid = hello_resume(&mut c2, &tok, msg! {});
    let (resumed_id, rooms) = resumed_parts(&mut c2, rid);
    assert_eq!(resumed_id, id, "the same member id");
    assert!(rooms.is_empty(), "{rooms:?}");
    // It goes on as that member.
    let joined = c2.create("r");
    assert_eq!(member_ids(&joined), vec![id]);
}

/// `o` creates rooms `x` and `y`, `m` joins both and drops, and `o` (the
/// owner) closes `x` once it saw `m` away. Returns `m`'s id and token.
fn away_while_x_closes(o: &mut Client, mut m: Client, x: &str, y: &str) -> (u64, String) {
    o.create(x);
    o.create(y);
    m.join(x);
    m.join(y);
    o.expect("presence");
    o.expect("presence");
    let (m_id, tok) = (m.id, token(&m));
    m.drop_tcp();
    for _ in 0..2 {
        assert_eq!(o.expect("presence")["away"].u(), m_id);
    }
    o.send(msg! {"t" => "state", "rid" => 7u32, "room" => x, "to" => "closed"});
    o.recv_type("closed");
    (m_id, tok)
}

/// PROTOCOL.md "Reconnect and recovery": a room that closed while the
/// session was away is listed as `{"closed": why}` and not re-attached.
#[test]
fn a_room_closed_while_away_is_reported_when_the_session_resumes() {
    let server = Server::start(&["--grace-ms", "5000"]);
    let mut o = server.client();
    let m = server.client();
    let (m_id, tok) = away_while_x_closes(&mut o, m, "x", "y");

    let mut m2 = server.client();
    let rid = hello_resume(&mut m2, &tok, msg! {"x" => 0u64, "y" => 0u64});
    let (id, rooms) = resumed_parts(&mut m2, rid);
    assert_eq!(id, m_id);
    assert_eq!(rooms.len(), 2, "{rooms:?}");
    assert_eq!(rooms["x"]["closed"].s(), "owner", "{rooms:?}");
    assert!(!rooms["x"].has("recovered"), "{rooms:?}");
    assert!(rooms["y"]["recovered"].bool(), "{rooms:?}");
    // Not re-attached: x is gone, y is held.
    m2.send(msg! {"t" => "pub", "rid" => 9u32, "room" => "x", "data" => bin(b"x")});
    assert_eq!(m2.expect("err")["rid"].u(), 9);
    assert_eq!(m2.publish("y", b"back"), 1);
    assert_eq!(o.recv_type("msg")["from"].u(), m_id);
}

// ---------------------------------------------------------------------------
// Several workers. A session lives on the worker that issued its token, its
// rooms on their homes, and a new connection lands on any worker: a resume
// works from every worker and recovers rooms homed on every worker.

/// Reads `n` messages of type `msg` and returns each room's seqs in arrival
/// order, checking each payload is its seq (see [`burst`]).
#[track_caller]
fn read_msgs(c: &mut Client, n: usize) -> BTreeMap<String, Vec<u64>> {
    let mut by: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for _ in 0..n {
        let m = c.expect("msg");
        let seq = m["seq"].u();
        assert_eq!(m["data"].b(), &seq.to_be_bytes(), "{m:?}");
        by.entry(m["room"].s().to_string()).or_default().push(seq);
    }
    by
}

/// The next `n` messages, each a `presence` with `kind` (`away`, `back`)
/// for member `id`: their rooms, sorted.
#[track_caller]
fn presence_rooms(c: &mut Client, kind: &str, id: u64, n: usize) -> Vec<String> {
    let mut rooms: Vec<String> = (0..n)
        .map(|_| {
            let p = c.expect("presence");
            assert_eq!(p[kind].u(), id, "{p:?}");
            p["room"].s().to_string()
        })
        .collect();
    rooms.sort();
    rooms
}

/// A JSON client whose connection landed on worker `k`.
fn json_client_on(server: &Server, k: u32) -> Client {
    for _ in 0..ATTEMPTS {
        let c = server.client_json();
        if worker_of(&c) == k {
            return c;
        }
    }
    panic!("no JSON connection landed on worker {k}");
}

/// Two workers; `a` on worker 1 owns `here` (homed on worker 0) and `there`
/// (homed on worker 1); `b` on worker 0 sits in both, reads 5 messages of
/// each, and drops. 5 more go to each room while it is away; `b2`, landing
/// on worker `land`, resumes with `last` 5 in both, while 2 more go to each.
/// Every message arrives once, in order, replayed or live.
fn resume_lands_on(land: u32) {
    let server = start_workers(2, &["--grace-ms", "5000", "--history", "100"]);
    let here = name_on("here", 0, 2);
    let there = name_on("there", 1, 2);
    let mut a = client_on(&server, 1);
    a.create(&here);
    a.create(&there);
    let mut b = client_on(&server, 0);
    for r in [&here, &there] {
        b.join(r);
        assert_eq!(a.expect("presence")["join"]["id"].u(), b.id);
    }
    let (b_id, b_token) = (b.id, token(&b));
    burst(&mut a, &here, 1, 5);
    burst(&mut a, &there, 1, 5);
    let want = |to: u64| {
        BTreeMap::from([
            (here.clone(), (1..=to).collect::<Vec<_>>()),
            (there.clone(), (1..=to).collect::<Vec<_>>()),
        ])
    };
    assert_eq!(read_msgs(&mut b, 10), want(5));
    b.drop_tcp();
    assert_eq!(
        presence_rooms(&mut a, "away", b_id, 2),
        vec![here.clone(), there.clone()]
    );
    burst(&mut a, &here, 6, 5);
    burst(&mut a, &there, 6, 5);

    let mut b2 = client_on(&server, land);
    let rid = hello_resume(
        &mut b2,
        &b_token,
        msg! {here.as_str() => 5u64, there.as_str() => 5u64},
    );
    burst(&mut a, &here, 11, 2);
    burst(&mut a, &there, 11, 2);
    let r = b2.expect("resumed");
    assert_eq!(r["rid"].u(), u64::from(rid), "{r:?}");
    assert_eq!(r["id"].u(), b_id, "the same member: {r:?}");
    let rooms: BTreeMap<String, bool> = r["rooms"]
        .map()
        .into_iter()
        .map(|(k, v)| (k, v["recovered"].bool()))
        .collect();
    assert_eq!(
        rooms,
        BTreeMap::from([(here.clone(), true), (there.clone(), true)])
    );
    let got = read_msgs(&mut b2, 14);
    let mut want = want(12);
    for seqs in want.values_mut() {
        seqs.drain(..5);
    }
    assert_eq!(got, want, "6 to 12 of each room, once, in order");
    assert_eq!(
        presence_rooms(&mut a, "back", b_id, 2),
        vec![here.clone(), there.clone()]
    );

    // b's seats, under b's id, in both rooms.
    assert_eq!(b2.publish(&here, b"h"), 13);
    assert_eq!(b2.publish(&there, b"t"), 13);
    for _ in 0..2 {
        let m = a.expect("msg");
        assert_eq!(m["from"].u(), b_id, "{m:?}");
    }
    b2.expect_silence(SILENCE);
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
/// it and its connection drops. Returns `a` (which has seen `away`), `b`'s
/// member id and resume token.
fn dropped_on_worker_0(server: &Server, room: &str) -> (Client, u64, String) {
    let mut a = client_on(server, 1);
    a.create(room);
    let mut b = client_on(server, 0);
    b.join(room);
    a.expect("presence");
    let (b_id, b_token) = (b.id, token(&b));
    b.drop_tcp();
    assert_eq!(a.expect("presence")["away"].u(), b_id);
    (a, b_id, b_token)
}

/// A session resumed on a worker other than its own is served in full
/// from there: requests pipelined behind the `hello`, every request type,
/// its subprotocol (JSON here, msgpack before), presence, and leaving.
#[test]
fn a_session_resumed_on_another_worker_is_served_in_full() {
    let server = start_workers(2, &["--grace-ms", "1000"]);
    let here = name_on("here", 0, 2);
    let there = name_on("there", 1, 2);
    let (mut a, b_id, b_token) = dropped_on_worker_0(&server, &here);

    // Requests right behind the hello are b's, answered after `resumed`.
    let mut b2 = json_client_on(&server, 1);
    b2.send(msg! {"t" => "hello", "rid" => 1u32, "resume" => b_token.as_str(), "last" => msg! {here.as_str() => 0u64}});
    b2.send(msg! {"t" => "pub", "rid" => 2u32, "room" => here.as_str(), "data" => "one"});
    b2.send(msg! {"t" => "create", "rid" => 3u32, "room" => there.as_str()});
    let r = b2.expect("resumed");
    assert_eq!((r["rid"].u(), r["id"].u()), (1, b_id), "{r:?}");
    let ok = b2.expect("ok");
    assert_eq!((ok["rid"].u(), ok["seq"].u()), (2, 1), "{ok:?}");
    assert_eq!(b2.expect("created")["rid"].u(), 3);
    let joined = b2.expect("joined");
    assert_eq!(member_ids(&joined), vec![b_id]);
    assert_eq!(joined["owner"].u(), b_id);
    assert_eq!(a.expect("presence")["back"].u(), b_id);
    let m = a.expect("msg");
    assert_eq!((m["from"].u(), m["data"].b()), (b_id, &b"one"[..]));

    // Presence, unicast, props and state reach it; its own requests work.
    a.join(&there);
    let p = b2.expect("presence");
    assert_eq!(p["join"]["id"].u(), a.id, "{p:?}");
    b2.send(msg! {"t" => "send", "room" => there.as_str(), "to" => a.id, "data" => "psst"});
    let m = a.expect("msg");
    assert_eq!((m["from"].u(), m["to"].u()), (b_id, a.id), "{m:?}");
    a.send(msg! {"t" => "send", "room" => here.as_str(), "to" => b_id, "data" => "hey"});
    let m = b2.expect("msg");
    assert_eq!((m["from"].u(), m["data"].s()), (a.id, "hey"), "{m:?}");
    b2.send(msg! {"t" => "props", "rid" => 4u32, "room" => there.as_str(), "set" => msg! {"map" => "dust"}});
    let (ok, props) = (b2.expect("ok"), b2.expect("props"));
    assert_eq!(ok["rid"].u(), 4);
    assert_eq!(props["set"]["map"].s(), "dust");
    assert_eq!(a.expect("props")["set"]["map"].b(), b"dust");
    b2.send(msg! {"t" => "state", "rid" => 5u32, "room" => there.as_str(), "to" => "playing"});
    assert_eq!(b2.expect("ok")["rid"].u(), 5);
    assert_eq!(b2.expect("state")["state"].s(), "playing");
    assert_eq!(a.expect("state")["state"].s(), "playing");
    let rid = b2.rid();
    b2.send(msg! {"t" => "list", "rid" => rid});
    let listed: Vec<String> = b2.expect("rooms")["rooms"]
        .arr()
        .iter()
        .map(|r| r["room"].s().to_string())
        .collect();
    assert!(
        listed.contains(&here) && listed.contains(&there),
        "{listed:?}"
    );
    b2.send(msg! {"t" => "hello", "rid" => 6u32});
    b2.expect_err_rid("bad_request", 6);
    b2.roundtrip();

    // Its connection drops: away, then leave after the grace period, in
    // both rooms.
    b2.drop_tcp();
    let mut seen: Vec<(String, String)> = (0..4)
        .map(|_| {
            let p = a.expect("presence");
            let kind = if p.has("away") { "away" } else { "leave" };
            assert_eq!(p[kind].u(), b_id, "{p:?}");
            if kind == "leave" {
                assert_eq!(p["why"].s(), "disconnect", "{p:?}");
            }
            (kind.to_string(), p["room"].s().to_string())
        })
        .collect();
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
    let server = start_workers(2, &["--grace-ms", "5000"]);
    let room = name_on("room", 1, 2);
    let (mut a, b_id, b_token) = dropped_on_worker_0(&server, &room);
    let mut b2 = client_on(&server, 1);
    let rid = hello_resume(&mut b2, &b_token, msg! {room.as_str() => 0u64});
    assert!(expect_resumed(&mut b2, rid)[&room]);
    assert_eq!(a.expect("presence")["back"].u(), b_id);
    b2.close(1000);
    let p = a.expect("presence");
    assert_eq!((p["leave"].u(), p["why"].s()), (b_id, "left"), "{p:?}");
    // The session is gone: its token no longer resumes.
    let mut b3 = client_on(&server, 0);
    let rid = hello_resume(&mut b3, &b_token, msg! {room.as_str() => 0u64});
    b3.expect_err_rid("not_found", rid);
}

/// The old connection (still open as far as the server knows) is closed
/// with 4003 whichever worker it and the new one are on; the others see
/// neither `away` nor `back`.
#[test]
fn takeover_across_workers_closes_the_old_connection_4003() {
    let server = start_workers(2, &["--grace-ms", "5000"]);
    let room = name_on("room", 0, 2);
    let mut a = client_on(&server, 1);
    a.create(&room);
    let mut b = client_on(&server, 0);
    b.join(&room);
    a.expect("presence");
    let (b_id, b_token) = (b.id, token(&b));
    burst(&mut a, &room, 1, 3);
    expect_msg(&mut b, &room, 1);

    // From worker 0 (b's own) to worker 1, then back to worker 0.
    let mut b2 = client_on(&server, 1);
    let rid = hello_resume(&mut b2, &b_token, msg! {room.as_str() => 1u64});
    assert!(expect_resumed(&mut b2, rid)[&room]);
    expect_msg(&mut b2, &room, 2);
    expect_msg(&mut b2, &room, 3);
    let skipped = b.expect_close(4003);
    assert!(skipped.iter().all(|m| m.t() == "msg"), "{skipped:?}");
    burst(&mut a, &room, 4, 1);
    expect_msg(&mut b2, &room, 4);

    let mut b3 = client_on(&server, 0);
    let rid = hello_resume(&mut b3, &b_token, msg! {room.as_str() => 3u64});
    assert!(expect_resumed(&mut b3, rid)[&room]);
    expect_msg(&mut b3, &room, 4);
    b2.expect_close(4003);
    burst(&mut a, &room, 5, 1);
    expect_msg(&mut b3, &room, 5);
    assert_eq!(b3.publish(&room, b"me"), 6);
    let m = a.expect("msg");
    assert_eq!(m["from"].u(), b_id);
    // Neither away nor back, on any of the moves.
    a.roundtrip();
    a.expect_silence(SILENCE);
}

/// A token naming another worker that does not know it: `not_found`, and
/// the fresh session goes on (requests behind the hello are its own).
#[test]
fn an_unknown_token_of_another_worker_is_not_found() {
    let server = start_workers(2, &["--grace-ms", "5000"]);
    let room = name_on("room", 1, 2);
    let mut c = client_on(&server, 1);
    c.create(&room);
    // Worker 0's id in the first byte, then bits it never issued.
    c.send(msg! {"t" => "hello", "rid" => 1u32, "resume" => "000123456789abcdef0123456789abcd"});
    c.send(msg! {"t" => "pub", "rid" => 2u32, "room" => room.as_str(), "data" => bin(b"x")});
    c.expect_err_rid("not_found", 1);
    let ok = c.expect("ok");
    assert_eq!((ok["rid"].u(), ok["seq"].u()), (2, 1), "{ok:?}");
}

/// A session resumed on another worker lives on with its own worker: when
/// that worker dies, the connection is closed 1011 (the session is gone,
/// a resume would be `not_found`).
#[test]
fn a_relayed_connection_closes_1011_when_its_sessions_worker_dies() {
    let server = start_workers(2, &["--grace-ms", "1000"]);
    let room = name_on("room", 1, 2);
    let (mut a, b_id, b_token) = dropped_on_worker_0(&server, &room);
    // Worker 0: the process that does not serve `a`.
    let serving_a = pid_serving(&server, &a);
    let victim = worker_pids(&server)
        .into_iter()
        .find(|&p| p != serving_a)
        .expect("worker 0's process");
    let mut b2 = client_on(&server, 1);
    let rid = hello_resume(&mut b2, &b_token, msg! {room.as_str() => 0u64});
    assert!(expect_resumed(&mut b2, rid)[&room]);
    assert_eq!(a.expect("presence")["back"].u(), b_id);
    // SAFETY: kill(2) on a worker process of the server under test.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    b2.expect_close(1011);
    // The room, homed on the survivor, keeps b's seat for the grace period.
    assert_eq!(a.expect("presence")["away"].u(), b_id);
    let p = a.expect("presence");
    assert_eq!(
        (p["leave"].u(), p["why"].s()),
        (b_id, "disconnect"),
        "{p:?}"
    );
}

/// The figure for the README: memory per room with a full history (64
/// messages), from the server's RSS before and after filling the histories
/// of 2,000 rooms, for 100-byte and 1 KiB messages. Run with
/// `cargo test --release --test resume -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_history_memory_per_room() {
    const ROOMS: usize = 2000;
    for size in [100usize, 1024] {
        let server = Server::start(&[
            "--max-rooms-per-conn",
            "100000",
            "--rate-limit",
            "1000000",
            "--create-rate",
            "0",
            "--pub-bytes-rate",
            "0",
            "--history-bytes",
            "1000000",
        ]);
        let mut a = server.client();
        let names: Vec<String> = (0..ROOMS).map(|i| format!("room-{i}")).collect();
        for n in &names {
            a.send(msg! {"t" => "create", "room" => n.as_str()});
        }
        for _ in 0..2 * ROOMS {
            let m = a.recv();
            assert!(matches!(m.t(), "created" | "joined"), "{m:?}");
        }
        let before = server.rss_kib();
        let data = vec![b'x'; size];
        for n in &names {
            for _ in 0..64 {
                a.send(msg! {"t" => "pub", "room" => n.as_str(), "data" => bin(&data)});
            }
            // Keep the server's input from piling up in its socket buffers.
            a.roundtrip();
        }
        let after = server.rss_kib();
        let per_room = (after - before) as f64 * 1024.0 / ROOMS as f64;
        eprintln!(
            "{size}-byte messages: RSS {before} -> {after} KiB over {ROOMS} rooms: \
             {per_room:.0} bytes per room with 64 messages ({:.1} x the data)",
            per_room / (64 * size) as f64
        );
    }
}

/// A room homed on another worker than the session's closes while the
/// session is away: the resume reports it, landing on either worker.
#[test]
fn a_room_closed_while_away_is_reported_across_workers() {
    for land in 0..2 {
        let server = start_workers(2, &["--grace-ms", "5000"]);
        let (x, y) = (name_on("gone", 1, 2), name_on("kept", 0, 2));
        let mut o = client_on(&server, 1);
        let m = client_on(&server, 0);
        let (m_id, tok) = away_while_x_closes(&mut o, m, &x, &y);
        // The close reaches m's worker before the resume does: a round trip
        // through a worker-0 room, which m's worker serves.
        o.publish(&y, b"after");

        let mut m2 = client_on(&server, land);
        let rid = hello_resume(&mut m2, &tok, msg! {x.as_str() => 0u64, y.as_str() => 0u64});
        let (id, rooms) = resumed_parts(&mut m2, rid);
        assert_eq!(id, m_id, "landing on worker {land}");
        assert_eq!(rooms[&x]["closed"].s(), "owner", "on {land}: {rooms:?}");
        assert!(rooms[&y]["recovered"].bool(), "on {land}: {rooms:?}");
        assert_eq!(rooms.len(), 2, "on {land}: {rooms:?}");
    }
}

/// Two connections resume one session while the first one's resume is
/// still waiting for a room's home (worker 2, stopped): the later one wins,
/// the earlier is closed 4003, and the earlier connection's own fresh
/// session ends as a dropped one does (`away`, then `leave` after grace;
/// its token `not_found` after that).
#[test]
fn racing_resumes_release_the_losers_own_session() {
    let server = start_workers(3, &["--grace-ms", "1000"]);
    let q = name_on("race-q", 0, 3);
    let r = name_on("race-r", 2, 3);
    let p = name_on("race-p", 1, 3);
    let mut o = client_on(&server, 1);
    o.create(&q);
    o.create(&p);
    // The session: on worker 0, seated in q (homed there) and r (on 2).
    let mut a = client_on(&server, 0);
    a.join(&q);
    a.create(&r);
    assert_eq!(o.expect("presence")["join"]["id"].u(), a.id);
    let (a_id, a_token) = (a.id, token(&a));
    // The two that will race: c1 on worker 1, seated in p; c2 on worker 0.
    let mut c1 = client_on(&server, 1);
    c1.join(&p);
    assert_eq!(o.expect("presence")["join"]["id"].u(), c1.id);
    let (c1_id, c1_token) = (c1.id, token(&c1));
    let mut c2 = client_on(&server, 0);
    let stopped = pid_serving(&server, &client_on(&server, 2));
    a.drop_tcp();
    assert_eq!(o.expect("presence")["away"].u(), a_id);

    // SAFETY: kill(2) on a worker process of the server under test.
    assert_eq!(unsafe { libc::kill(stopped, libc::SIGSTOP) }, 0);
    struct Cont(i32);
    impl Drop for Cont {
        fn drop(&mut self) {
            // SAFETY: as above.
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    let cont = Cont(stopped);
    // c1's resume takes the session (`back` in q) and waits for worker 2.
    hello_resume(
        &mut c1,
        &a_token,
        msg! {q.as_str() => 0u64, r.as_str() => 0u64},
    );
    let back = o.expect("presence");
    assert_eq!(
        (back["room"].s(), back["back"].u()),
        (q.as_str(), a_id),
        "{back:?}"
    );
    // c2's takes it from c1.
    let rid = hello_resume(
        &mut c2,
        &a_token,
        msg! {q.as_str() => 0u64, r.as_str() => 0u64},
    );
    c1.expect_close(4003);
    // c1's own fresh session is dropped: away in p, then leave after grace.
    let away = o.expect("presence");
    assert_eq!(
        (away["room"].s(), away["away"].u()),
        (p.as_str(), c1_id),
        "{away:?}"
    );
    let leave = o.expect("presence");
    assert_eq!(
        (leave["room"].s(), leave["leave"].u(), leave["why"].s()),
        (p.as_str(), c1_id, "disconnect"),
        "{leave:?}"
    );
    drop(cont);
    let (id, rooms) = resumed_parts(&mut c2, rid);
    assert_eq!(id, a_id);
    assert_eq!(rooms.len(), 2, "{rooms:?}");
    // Past grace c1's token names nothing.
    let mut c3 = client_on(&server, 1);
    let rid = hello_resume(&mut c3, &c1_token, msg! {});
    c3.expect_err_rid("not_found", rid);
    o.expect_silence(SILENCE);
}
