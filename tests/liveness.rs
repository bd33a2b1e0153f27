//! Liveness: server pings, heartbeat timeout (close 4000), seats kept for the
//! grace period after a drop, and an explicit close 1000 that leaves at once.

#[macro_use]
mod common;

use common::*;
use std::time::{Duration, Instant};
use tungstenite::Message;

#[test]
fn server_pings_every_hb_ms_and_an_answering_client_stays() {
    let server = Server::start(&["--hb-ms", "100", "--hb-misses", "3"]);
    let mut c = server.client();
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_millis(1000) {
        match c.read_message().expect("read") {
            Message::Ping(_) => pings += 1, // answered by tungstenite on the next read
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        (5..=20).contains(&pings),
        "about 10 pings in 1 s at hb 100 ms, got {pings}"
    );
    // Well past hb_ms x misses, and still connected because pongs went back.
    c.roundtrip();
}

#[test]
fn app_level_ping_gets_pong() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send(msg! {"t" => "ping"});
    let pong = c.expect("pong");
    assert!(!pong.has("rid"));
    c.send(msg! {"t" => "ping", "rid" => 4_000_000_000u32});
    assert_eq!(
        c.expect("pong")["rid"].u(),
        4_000_000_000,
        "rid is a full u32"
    );
}

#[test]
fn silent_client_is_closed_4000_and_others_see_away_then_timeout() {
    let server = Server::start(&["--hb-ms", "100", "--hb-misses", "3", "--grace-ms", "500"]);
    let mut a = server.client();
    a.create("r");
    // Upgraded by hand: never answers a ping, never sends a frame. Times
    // are lower bounds from before its last byte was sent, so a slow test
    // thread cannot make them fail.
    let start = Instant::now();
    let mut raw = server.raw_ws("/ws?room=r");
    let welcome = raw.read_msgpack();
    assert_eq!(welcome.t(), "welcome");
    let id = welcome["id"].u();
    assert_eq!(raw.read_msgpack().t(), "joined");

    let p = a.expect("presence");
    assert_eq!(p["join"]["id"].u(), id);
    let away = a.expect("presence");
    assert_eq!(away["away"].u(), id, "{away:?}");
    let away_at = start.elapsed();
    assert!(
        away_at >= Duration::from_millis(250),
        "not declared dead before hb_ms x misses (300 ms): {away_at:?}"
    );
    let leave = a.expect("presence");
    let leave_at = start.elapsed();
    assert_eq!(leave["leave"].u(), id, "{leave:?}");
    assert_eq!(leave["why"].s(), "timeout");
    assert!(
        leave_at >= Duration::from_millis(700),
        "the seat is kept for the grace period after the timeout (300 + 500 ms): {leave_at:?}"
    );

    // What the silent client finds when it finally reads: close 4000.
    let close = loop {
        let f = raw.read_frame().expect("a close frame before EOF");
        if f.opcode == 0x8 {
            break f;
        }
    };
    assert_eq!(close.close_code(), 4000);
}

#[test]
fn a_client_that_sends_requests_but_never_pongs_stays_alive() {
    let server = Server::start(&["--hb-ms", "100", "--hb-misses", "3"]);
    let mut raw = server.raw_ws("/ws");
    assert_eq!(raw.read_msgpack().t(), "welcome");
    // Any frame counts as life: app-level pings every 50 ms for 800 ms.
    let ping = msg! {"t" => "ping"}.to_msgpack();
    let start = Instant::now();
    let mut pongs = 0;
    while start.elapsed() < Duration::from_millis(800) {
        raw.write_frame(0x82, &ping);
        loop {
            let f = raw.read_frame().expect("connection kept");
            assert_ne!(f.opcode, 0x8, "closed: {f:?}");
            if f.opcode == 0x2 {
                break;
            }
        }
        pongs += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(pongs >= 8);
}

#[test]
fn tcp_drop_shows_away_then_leave_disconnect_after_grace() {
    let server = Server::start(&["--grace-ms", "400"]);
    let (mut a, b) = server.pair("r");
    let b_id = b.id;
    let start = Instant::now();
    b.drop_tcp();

    let away = a.expect("presence");
    assert_eq!(away["room"].s(), "r");
    assert_eq!(away["away"].u(), b_id, "{away:?}");
    let leave = a.expect("presence");
    assert_eq!(leave["leave"].u(), b_id, "{leave:?}");
    assert_eq!(leave["why"].s(), "disconnect");
    assert!(
        start.elapsed() >= Duration::from_millis(350),
        "seat kept for the grace period, left after {:?}",
        start.elapsed()
    );
}

#[test]
fn away_member_still_holds_its_seat() {
    let server = Server::start(&["--grace-ms", "3000"]);
    let (mut a, b) = server.pair("r");
    let b_id = b.id;
    b.drop_tcp();
    assert_eq!(a.expect("presence")["away"].u(), b_id);
    let mut c = server.client();
    let joined = c.join("r");
    assert!(
        member_ids(&joined).contains(&b_id),
        "an away member is still listed: {joined:?}"
    );
}

#[test]
fn close_1000_leaves_at_once_with_why_left() {
    let server = Server::start(&["--grace-ms", "3000"]);
    let (mut a, b) = server.pair("r");
    let b_id = b.id;
    let start = Instant::now();
    b.close(1000);
    let p = a.expect("presence");
    assert_eq!(p["leave"].u(), b_id, "no away first: {p:?}");
    assert_eq!(p["why"].s(), "left");
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "not after grace"
    );
}

#[test]
fn other_close_codes_keep_the_seat_for_grace() {
    let server = Server::start(&["--grace-ms", "400"]);
    let (mut a, b) = server.pair("r");
    let b_id = b.id;
    b.close(1001);
    assert_eq!(a.expect("presence")["away"].u(), b_id);
    let leave = a.expect("presence");
    assert_eq!(leave["leave"].u(), b_id);
    assert_eq!(leave["why"].s(), "disconnect");
}
