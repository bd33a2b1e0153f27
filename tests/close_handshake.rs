//! The end of the closing handshake (RFC 6455 7.1.1: "the server ... SHOULD
//! close the underlying TCP connection" first): once both close frames have
//! been exchanged, roomd closes the socket itself instead of waiting for the
//! client's TCP to go away.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use std::time::Instant;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

/// `roomd_connections` from /metrics (the scrape itself counts as one).
fn open_connections(server: &Server) -> u64 {
    let text = server.get("/metrics").text();
    text.lines()
        .find(|l| l.starts_with("roomd_connections{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("roomd_connections in /metrics")
}

/// Whether the server holds no socket but the scrape's within `within`.
fn only_the_scrape_within(server: &Server, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if open_connections(server) == 1 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn after_a_client_close_the_server_closes_the_socket() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
    .expect("send close");
    // The reply completes the handshake; the socket stays open on our side.
    loop {
        match c.ws.read() {
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(e) => panic!("expected the close reply, got {e}"),
        }
    }
    assert!(
        only_the_scrape_within(&server, Duration::from_secs(2)),
        "the server closes the TCP connection after the handshake"
    );
    drop(c);
}

#[test]
fn after_a_server_close_and_the_reply_the_server_closes_the_socket() {
    // A heartbeat timeout: the server sends 4000; this client answers the
    // close (tungstenite replies as it reads) but keeps its socket open.
    let server = Server::start(&["--hb-ms", "100", "--hb-misses", "2"]);
    let mut raw = server.raw_ws("/ws");
    loop {
        let f = raw.read_frame().expect("frames until the close");
        if f.opcode == 0x8 {
            assert_eq!(f.close_code(), 4000);
            break;
        }
    }
    // Reply with a masked close frame echoing the code.
    raw.conn.send(&[0x88, 0x82, 0, 0, 0, 0, 0x0f, 0xa0]);
    assert!(
        only_the_scrape_within(&server, Duration::from_secs(2)),
        "the server closes the TCP connection once the peer has replied"
    );
    drop(raw);
}

#[test]
fn drain_ends_when_clients_have_answered_not_at_the_deadline() {
    let mut server = Server::start(&["--drain-ms", "30000"]);
    let mut c = server.client();
    server.signal(libc::SIGTERM);
    assert_eq!(c.expect("closing")["t"].s(), "closing");
    c.expect_close(1001); // tungstenite sends the reply; the socket stays open
    let status = server
        .wait_exit(Duration::from_secs(3))
        .expect("exits once every client answered, long before --drain-ms");
    assert!(status.success(), "{status:?}");
    drop(c);
}
