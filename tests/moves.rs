//! Connections go to their room's worker (issue 11, first step): an upgrade
//! with `?room=` is served by the worker that homes the room, whichever
//! worker the kernel handed it to, and the room's traffic then stays on it.

#[macro_use]
mod common;

use common::*;

/// Every `?room=` connection is served by the room's home; those that
/// landed on the other worker were handed over (counted), joined, and hear
/// the room with no bus message per published message.
#[test]
fn an_upgrade_naming_a_room_is_served_by_its_home() {
    for home in [0, 1] {
        let server = start_workers(2, &[]);
        let room = name_on("moved", home, 2);
        let mut owner = client_on(&server, home);
        owner.create(&room);
        let mut members = Vec::new();
        for _ in 0..12 {
            let mut c = server.client_with(&format!("/ws?room={room}"), None);
            assert_eq!(worker_of(&c), home, "served by the room's home");
            assert_eq!(c.expect("joined")["room"].s(), room);
            members.push(c);
        }
        let moved = server.await_metric(
            "/metrics/all",
            "roomd_moves_total{worker=\"{other}\",result=\"out\"}"
                .replace("{other}", &(1 - home).to_string())
                .as_str(),
            |_| true,
        );
        let taken = server.metric(
            "/metrics/all",
            &format!("roomd_moves_total{{worker=\"{home}\",result=\"in\"}}"),
        );
        assert_eq!(moved, taken, "every one handed over was taken");
        assert!(
            moved > 0,
            "with 12 connections some landed on the other worker"
        );
        for _ in 0..members.len() {
            owner.expect("presence");
        }
        // The room's traffic stays on its home.
        let before = server.metric("/metrics/all", "roomd_bus_messages_out_total");
        for i in 0..10u32 {
            owner.publish(&room, format!("m{i}").as_bytes());
        }
        for c in &mut members {
            for i in 0..10u32 {
                let m = c.recv_type("msg");
                assert_eq!(m["data"].b(), format!("m{i}").as_bytes());
            }
        }
        let after = server.metric("/metrics/all", "roomd_bus_messages_out_total");
        // /metrics/all itself asks the other worker (one request, one answer).
        assert!(after - before <= 2, "{} bus messages", after - before);
    }
}

/// A connection handed over keeps what followed its head: a ping sent in
/// the same write as the upgrade is answered by the home.
#[test]
fn what_followed_the_head_goes_with_the_connection() {
    use std::io::Read;
    let server = start_workers(2, &[]);
    let room = name_on("eager", 1, 2);
    let mut owner = client_on(&server, 1);
    owner.create(&room);
    for _ in 0..12 {
        // A masked ping carrying "ping", in the same write.
        let mut s = upgrade_then(&server, &format!("/ws?room={room}"), &masked(0x9, b"ping"));
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let pong = [0x8a, 4, b'p', b'i', b'n', b'g'];
        while !got.windows(pong.len()).any(|w| w == pong) {
            let n = s.read(&mut buf).expect("read until the pong");
            assert!(n > 0, "closed before the pong: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 101"), "{got:?}");
    }
    let moved = server.metric(
        "/metrics/all",
        "roomd_moves_total{worker=\"0\",result=\"out\"}",
    );
    assert!(moved > 0, "some landed on worker 0 and were handed over");
}

/// A client frame (masked, FIN) with opcode `op` carrying `payload`.
fn masked(op: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let mut f = vec![0x80 | op];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend(mask);
    f.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    f
}

/// A MessagePack request as a client frame.
fn frame(v: &Value) -> Vec<u8> {
    masked(0x2, &v.to_msgpack())
}

/// A raw connection that sent the upgrade of `path` and `then` in one
/// write.
fn upgrade_then(server: &Server, path: &str, then: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(WATCHDOG)).expect("timeout");
    let mut out = format!(
        "GET {path} HTTP/1.1\r\nHost: roomd\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(then);
    s.write_all(&out).expect("write");
    s
}

/// A connection's first `join` of a room homed on the other worker moves
/// it there: the home's process serves it, with the member id and the
/// token `welcome` gave, and the room's traffic no longer crosses the bus.
#[test]
fn a_first_join_moves_the_connection_to_the_rooms_home() {
    let server = start_workers(2, &[]);
    let room = name_on("far", 1, 2);
    let mut owner = client_on(&server, 1);
    owner.create(&room);
    let home = pid_serving(&server, &owner);
    let mut b = client_on(&server, 0);
    assert_ne!(pid_serving(&server, &b), home);
    let joined = b.join(&room);
    assert_eq!(
        member_ids(&joined),
        vec![owner.id, b.id],
        "the same member id"
    );
    assert_eq!(
        pid_serving(&server, &b),
        home,
        "served by the room's home now"
    );
    owner.expect("presence");
    let before = server.metric("/metrics/all", "roomd_bus_messages_out_total");
    for i in 0..10u32 {
        b.publish(&room, format!("m{i}").as_bytes());
        assert_eq!(
            owner.recv_type("msg")["data"].b(),
            format!("m{i}").as_bytes()
        );
    }
    let after = server.metric("/metrics/all", "roomd_bus_messages_out_total");
    assert!(after - before <= 2, "{} bus messages", after - before);
    let out = server.metric(
        "/metrics/all",
        "roomd_moves_total{worker=\"0\",result=\"out\"}",
    );
    assert_eq!(out, 1);
    // Its token resumes it, wherever the next connection lands.
    let token = b.welcome["session"].s().to_owned();
    b.drop_tcp();
    owner.expect("presence");
    for _ in 0..4 {
        let mut c = server.client();
        let rid = c.rid();
        c.send(msg! {"t" => "hello", "rid" => rid, "resume" => token.as_str()});
        let r = c.expect("resumed");
        assert_eq!(r["id"].u(), joined["members"].arr()[1]["id"].u());
        assert_eq!(pid_serving(&server, &c), home);
        owner.recv_type("presence");
        c.drop_tcp();
        owner.recv_type("presence");
    }
}

/// A move in the middle of traffic loses, repeats and reorders nothing:
/// the room publishes without pause while clients that landed elsewhere
/// send `join` and a burst of `pub`s in one write; each sees every message
/// after its `joined`, once and in order, and every `ok` of its own.
#[test]
fn a_move_under_a_stream_of_messages_loses_and_repeats_nothing() {
    let server = start_workers(2, &["--rate-limit", "0", "--pub-bytes-rate", "0"]);
    let room = name_on("busy", 1, 2);
    let mut owner = client_on(&server, 1);
    owner.create(&room);
    const STREAM: u64 = 3000;
    const BURST: u64 = 100;
    let joiners = 4;
    let publisher = {
        let room = room.clone();
        std::thread::spawn(move || {
            for i in 0..STREAM {
                owner.send(
                    msg! {"t" => "pub", "room" => room.as_str(), "data" => bin(i.to_be_bytes())},
                );
                if i % 20 == 0 {
                    // A steady stream, not one burst.
                    std::thread::sleep(std::time::Duration::from_micros(300));
                }
            }
            owner
        })
    };
    let mut clients = Vec::new();
    for _ in 0..joiners {
        let mut c = client_on(&server, 0);
        let mut bytes = frame(&msg! {"t" => "join", "rid" => 1u32, "room" => room.as_str()});
        for r in 0..BURST {
            bytes.extend(frame(
                &msg! {"t" => "pub", "rid" => (2 + r) as u32, "room" => room.as_str(), "data" => bin(b"b")},
            ));
        }
        c.write_raw_bytes(&bytes);
        let joined = c.expect("joined");
        clients.push((c, joined["seq"].u()));
    }
    let _owner = publisher.join().expect("the publisher");
    let last = STREAM + BURST * joiners;
    for (c, from) in &mut clients {
        let mut seqs = Vec::new();
        let mut rid = 2;
        let mut prev = *from;
        while prev < last {
            let m = c.recv();
            let seq = match m.t() {
                "msg" => m["seq"].u(),
                "ok" => {
                    assert_eq!(m["rid"].u(), rid, "oks in order: {m:?}");
                    rid += 1;
                    m["seq"].u()
                }
                _ => continue,
            };
            assert_eq!(seq, prev + 1, "after {prev}: {m:?} (no gap, no repeat)");
            prev = seq;
            seqs.push(seq);
        }
        assert_eq!(rid, 2 + BURST, "every pub of the burst answered");
    }
    let out = server.metric(
        "/metrics/all",
        "roomd_moves_total{worker=\"0\",result=\"out\"}",
    );
    assert_eq!(out, joiners);
}

/// The frames of a server message: (opcode, payload), from raw bytes that
/// start at a frame.
fn server_frames(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while b.len() >= 2 {
        let (op, len7) = (b[0] & 0x0f, (b[1] & 0x7f) as usize);
        let (len, head) = match len7 {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => {
                let mut x = [0u8; 8];
                x.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(x) as usize, 10)
            }
            126 | 127 => break,
            n => (n, 2),
        };
        if b.len() < head + len {
            break;
        }
        out.push((op, b[head..head + len].to_vec()));
        b = &b[head + len..];
    }
    out
}

/// A connection that sends its upgrade and its `join` in one write moves
/// with its output not yet written (the 101 and `welcome`): it reads them
/// first, then `joined`, from the room's home.
#[test]
fn a_move_takes_the_output_not_yet_written() {
    use std::io::Read;
    let server = start_workers(2, &[]);
    let room = name_on("eager", 1, 2);
    let mut owner = client_on(&server, 1);
    owner.create(&room);
    for _ in 0..12 {
        let join = frame(&msg! {"t" => "join", "rid" => 5u32, "room" => room.as_str()});
        let mut s = upgrade_then(&server, "/ws", &join);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let frames = loop {
            let n = s.read(&mut buf).expect("read until joined");
            assert!(n > 0, "closed early: {got:?}");
            got.extend_from_slice(&buf[..n]);
            let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let frames = server_frames(&got[end + 4..]);
            if frames.len() >= 2 {
                break frames;
            }
        };
        assert!(got.starts_with(b"HTTP/1.1 101"), "{got:?}");
        let msgs: Vec<Value> = frames
            .iter()
            .map(|(_, p)| rmp_serde::from_slice(p).expect("MessagePack"))
            .collect();
        assert_eq!(msgs[0].t(), "welcome", "{msgs:?}");
        assert_eq!(msgs[1].t(), "joined", "{msgs:?}");
        assert_eq!(msgs[1]["rid"].u(), 5);
        owner.recv_type("presence");
    }
    let moved = server.metric(
        "/metrics/all",
        "roomd_moves_total{worker=\"0\",result=\"out\"}",
    );
    assert!(moved > 0, "some landed on worker 0 and moved");
}

/// A `join` followed in the same write by part of the next frame: the
/// parser holds half a frame, so the connection stays where it landed
/// (counted refused), its `join` forwarded, and the rest of the frame,
/// sent later, is read as usual.
#[test]
fn a_half_read_frame_keeps_the_connection_where_it_is() {
    let server = start_workers(2, &[]);
    let room = name_on("half", 1, 2);
    let mut owner = client_on(&server, 1);
    owner.create(&room);
    let mut b = client_on(&server, 0);
    let here = pid_serving(&server, &b);
    let mut bytes = frame(&msg! {"t" => "join", "rid" => 1u32, "room" => room.as_str()});
    let next =
        frame(&msg! {"t" => "pub", "rid" => 2u32, "room" => room.as_str(), "data" => bin(b"x")});
    bytes.extend_from_slice(&next[..5]);
    b.write_raw_bytes(&bytes);
    assert_eq!(b.expect("joined")["rid"].u(), 1);
    b.write_raw_bytes(&next[5..]);
    assert_eq!(b.expect("ok")["rid"].u(), 2);
    assert_eq!(pid_serving(&server, &b), here, "it stayed");
    let refused = server.metric(
        "/metrics/all",
        "roomd_moves_total{worker=\"0\",result=\"refused\"}",
    );
    assert_eq!(refused, 1);
}

/// `roomd_bus_peers_lost_total` of the worker answering `/metrics`, 0 when
/// the scrape fails.
fn lost_peers(server: &Server) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(server.addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(WATCHDOG));
    if s.write_all(b"GET /metrics HTTP/1.1\r\nHost: roomd\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return 0;
    }
    let mut text = String::new();
    if s.read_to_string(&mut text).is_err() {
        return 0;
    }
    text.lines()
        .filter(|l| l.starts_with("roomd_bus_peers_lost_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The room's worker is down (killed, and not restarted yet): a `create`
/// for a room homed there does not move; it gets `err` `internal` and the
/// connection goes on where it is. Once the worker is back, it moves.
#[test]
fn no_move_to_a_worker_that_is_down() {
    let server = start_workers(2, &[]);
    let room = name_on("later", 1, 2);
    let mut a = client_on(&server, 0);
    let here = pid_serving(&server, &a);
    let victim = pid_serving(&server, &client_on(&server, 1));
    // The supervisor stopped: the dead worker is not replaced until it
    // goes on.
    server.signal(libc::SIGSTOP);
    struct Cont<'a>(&'a Server);
    impl Drop for Cont<'_> {
        fn drop(&mut self) {
            self.0.signal(libc::SIGCONT);
        }
    }
    let cont = Cont(&server);
    // SAFETY: kill(2) on a worker process of the server under test.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    // Until worker 0 has seen the link end (a scrape the kernel had queued
    // on the dead worker's listener is reset: asked again).
    let deadline = std::time::Instant::now() + WATCHDOG;
    while lost_peers(&server) == 0 {
        assert!(std::time::Instant::now() < deadline, "the link never ended");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let rid = a.rid();
    a.send(msg! {"t" => "create", "rid" => rid, "room" => room.as_str()});
    a.expect_err_rid("internal", rid);
    a.roundtrip();
    assert_eq!(pid_serving(&server, &a), here);
    drop(cont);
    server.await_metric("/metrics/all", "roomd_bus_links", |n| n >= 2);
    a.create(&room);
    assert_ne!(pid_serving(&server, &a), here, "moved to the new worker");
}

/// Players queued from both workers in a queue homed on worker 1 move
/// there with their `match`: the match room is homed there too, every
/// player is served by that worker's process, and the game's traffic
/// crosses no bus.
#[test]
fn players_move_to_their_queue_and_play_there() {
    let server = start_workers(2, &[]);
    let queue = name_on("duel", 1, 2);
    let home = pid_serving(&server, &client_on(&server, 1));
    let mut players = vec![client_on(&server, 0), client_on(&server, 1)];
    for p in &mut players {
        let rid = p.rid();
        p.send(msg! {"t" => "match", "rid" => rid, "queue" => queue.as_str(), "size" => 2u16});
        assert_eq!(p.expect("queued")["rid"].u(), rid as u64);
    }
    let mut room = String::new();
    for p in &mut players {
        room = p.expect("matched")["room"].s().to_owned();
        p.expect("joined");
        assert_eq!(pid_serving(&server, p), home, "on the queue's worker");
    }
    assert_eq!(
        roomd::bus::home(&room, 2),
        1,
        "the match room is homed there"
    );
    for p in &mut players {
        p.recv_type("state");
    }
    let before = server.metric("/metrics/all", "roomd_bus_messages_out_total");
    for i in 0..10u32 {
        players[0].publish(&room, format!("m{i}").as_bytes());
        let m = players[1].recv_type("msg");
        assert_eq!(m["data"].b(), format!("m{i}").as_bytes());
    }
    let after = server.metric("/metrics/all", "roomd_bus_messages_out_total");
    assert!(after - before <= 2, "{} bus messages", after - before);
}
