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
    for bad in [
        foreign.as_str(),
        "0123456789abcdef0123456789abcdef",
        flipped.as_str(),
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
