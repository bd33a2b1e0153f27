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
    use std::io::{Read, Write};
    let server = start_workers(2, &[]);
    let room = name_on("eager", 1, 2);
    let mut owner = client_on(&server, 1);
    owner.create(&room);
    for _ in 0..12 {
        let mut s = std::net::TcpStream::connect(server.addr).expect("connect");
        s.set_read_timeout(Some(WATCHDOG)).expect("timeout");
        let mut out = format!(
            "GET /ws?room={room} HTTP/1.1\r\nHost: roomd\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes();
        // A masked ping carrying "ping", in the same write.
        let mask = [1u8, 2, 3, 4];
        out.extend([0x89, 0x84]);
        out.extend(mask);
        out.extend(b"ping".iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        s.write_all(&out).expect("write");
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
