//! Resume (PROTOCOL.md "Reconnect and recovery") through the real server:
//! a TCP connection dropped mid-burst and resumed on a new one, a half-open
//! connection closed with 4003 on the wire, a resume landing on another
//! worker process, a session's worker killed or stopped. The core's resume
//! logic (replay from `last`, `recovered`, grace expiry, tokens that name
//! nothing, takeovers, rooms closed while away, relayed sessions) is unit
//! tested in `src/hub/tests/resume.rs`.

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

/// The `resumed` reply to `rid`, as room -> its part (`{"recovered"}` or
/// `{"closed"}`), with the member id it answers for.
#[track_caller]
fn resumed_parts(c: &mut Client, rid: u32) -> (u64, BTreeMap<String, Value>) {
    let r = c.expect("resumed");
    assert_eq!(r["rid"].u(), u64::from(rid), "{r:?}");
    (r["id"].u(), r["rooms"].map())
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

/// A session resumed on another worker lives on with its own worker: when
/// that worker dies, the connection is closed 1011 (the session is gone,
/// a resume would be `not_found`).
#[test]
fn a_relayed_connection_closes_1011_when_its_sessions_worker_dies() {
    // Connections that do not move: b's session stays on worker 0, and
    // its resume on worker 1 is relayed there.
    let server = start_workers(2, &["--grace-ms", "1000", "--no-moves"]);
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
