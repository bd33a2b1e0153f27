//! The upgrade on `/ws`: `welcome`, subprotocol negotiation, and the HTTP
//! answers to requests that are not a valid upgrade.

#[macro_use]
mod common;

use common::*;
use std::time::{Duration, Instant};

fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: roomd\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

#[test]
fn welcome_carries_id_session_hb_and_server() {
    let server = Server::start(&["--hb-ms", "1234"]);
    let c = server.client();
    assert!(!c.json, "msgpack is the default");
    assert_eq!(
        c.protocol, None,
        "no subprotocol echoed when none was asked"
    );
    let w = &c.welcome;
    assert!(
        matches!(w["id"], Value::UInt(_)),
        "id is an unsigned integer: {w:?}"
    );
    let session = w["session"].s();
    assert_eq!(session.len(), 32, "session is 128 bits of hex: {session:?}");
    assert!(
        session.bytes().all(|b| b.is_ascii_hexdigit()),
        "session is hex: {session:?}"
    );
    assert_eq!(w["hb_ms"].u(), 1234, "hb_ms reflects --hb-ms");
    assert!(
        w["server"].s().starts_with("roomd/"),
        "server is roomd/<version>: {w:?}"
    );
}

#[test]
fn ids_and_sessions_are_unique() {
    let server = Server::start(&[]);
    let clients: Vec<Client> = (0..5).map(|_| server.client()).collect();
    for (i, a) in clients.iter().enumerate() {
        for b in &clients[i + 1..] {
            assert_ne!(a.id, b.id, "member ids are unique");
            assert_ne!(
                a.welcome["session"], b.welcome["session"],
                "sessions are unique"
            );
        }
    }
}

#[test]
fn msgpack_subprotocol_is_chosen_when_asked() {
    let server = Server::start(&[]);
    let mut c = server.client_with("/ws", Some(MSGPACK));
    assert_eq!(c.protocol.as_deref(), Some(MSGPACK));
    assert!(!c.json);
    // The client asserts binary frames; a round trip proves requests decode.
    c.roundtrip();
}

#[test]
fn json_subprotocol_is_chosen_when_asked() {
    let server = Server::start(&[]);
    let mut c = server.client_with("/ws", Some(JSON));
    assert_eq!(c.protocol.as_deref(), Some(JSON));
    assert!(c.json, "welcome arrived as a JSON text frame");
    assert_eq!(c.welcome["hb_ms"].u(), 5000, "default hb_ms");
    c.roundtrip();
}

#[test]
fn unknown_subprotocols_beside_a_known_one_are_ignored() {
    let server = Server::start(&[]);
    let mut c = server.client_with("/ws", Some("chat, roomd.v1.json, roomd.v2.zstd"));
    assert_eq!(c.protocol.as_deref(), Some(JSON));
    c.roundtrip();
}

#[test]
fn both_known_subprotocols_pick_one_and_frames_follow_it() {
    let server = Server::start(&[]);
    let mut c = server.client_with("/ws", Some("roomd.v1.json, roomd.v1.msgpack"));
    let chosen = c.protocol.clone().expect("a subprotocol is chosen");
    assert!(chosen == JSON || chosen == MSGPACK, "chose {chosen}");
    // `Client` checks text frames in JSON mode and binary ones otherwise.
    c.roundtrip();
}

#[test]
fn only_unknown_subprotocols_get_400() {
    let server = Server::start(&[]);
    let mut conn = server.http_conn();
    conn.send(upgrade_request("/ws", "Sec-WebSocket-Protocol: chat, superchat\r\n").as_bytes());
    let resp = conn.response().expect("response");
    assert_eq!(resp.status, 400, "{resp:?}");
    assert_eq!(resp.header("Upgrade"), None, "no upgrade happened");
}

#[test]
fn wrong_path_gets_404() {
    let server = Server::start(&[]);
    let mut conn = server.http_conn();
    conn.send(upgrade_request("/chat", "").as_bytes());
    let resp = conn.response().expect("response");
    assert_eq!(resp.status, 404, "{resp:?}");
}

#[test]
fn plain_get_on_ws_gets_400() {
    let server = Server::start(&[]);
    let resp = server.get("/ws");
    assert_eq!(resp.status, 400, "{resp:?}");
}

#[test]
fn garbage_request_gets_400_and_close() {
    let server = Server::start(&[]);
    let mut conn = server.http_conn();
    conn.send(b"GARBAGE\x01\x02 \xff\xfe\r\n\r\n");
    let resp = conn.response().expect("a response before the close");
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(
        conn.closed_within(Duration::from_secs(2)),
        "the server closes the connection after a 400 for garbage"
    );
    server.assert_alive();
}

#[test]
fn unfinished_handshake_is_closed_after_handshake_ms() {
    let server = Server::start(&["--handshake-ms", "300"]);
    let mut partial = server.http_conn();
    partial.send(b"GET /ws HTTP/1.1\r\nHost: roomd\r\n");
    let mut silent = server.http_conn();
    let start = Instant::now();
    assert!(
        !partial.closed_within(Duration::from_millis(100)),
        "not closed before the deadline"
    );
    assert!(
        partial.closed_within(Duration::from_secs(3)),
        "a partial request head is closed after --handshake-ms"
    );
    assert!(
        silent.closed_within(Duration::from_secs(3).saturating_sub(start.elapsed())),
        "a connection that sends nothing is closed after --handshake-ms"
    );
    server.assert_alive();
}

#[test]
fn completed_handshake_is_not_cut_by_handshake_ms() {
    let server = Server::start(&["--handshake-ms", "200"]);
    let mut c = server.client();
    c.expect_silence(Duration::from_millis(600));
    c.roundtrip();
}

#[test]
fn upgrade_with_query_and_no_room_is_fine() {
    let server = Server::start(&[]);
    // Unknown query parameters are ignored like unknown keys.
    let mut c = server.client_with("/ws?foo=bar", None);
    c.expect_silence(SILENCE);
    c.roundtrip();
}
