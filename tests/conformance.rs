//! RFC 6455 conformance on the `--echo-path` endpoint, as the Autobahn
//! fuzzing client sees it (`scripts/autobahn.sh` runs the whole suite; these
//! are the cases that once failed, plus the framing rules the echo relies
//! on, kept fast enough for `cargo test`).

mod common;

use common::{RawFrame, RawWs, Server};

const FIN: u8 = 0x80;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONT: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

fn echo_server() -> Server {
    Server::start(&["--echo-path", "/echo"])
}

/// The next frame that is not one of the server's heartbeat pings.
fn next_frame(ws: &mut RawWs) -> RawFrame {
    loop {
        let f = ws.read_frame().expect("read frame");
        if f.opcode == PING && f.payload.is_empty() {
            continue;
        }
        return f;
    }
}

#[track_caller]
fn expect_data(ws: &mut RawWs, opcode: u8, payload: &[u8]) {
    let f = next_frame(ws);
    assert!(f.fin, "an echoed message is one final frame: {f:?}");
    assert_eq!(f.rsv, 0, "no RSV bits without extensions: {f:?}");
    assert_eq!(f.opcode, opcode, "echo keeps the opcode: {f:?}");
    assert_eq!(f.payload, payload, "echo keeps the payload");
}

#[track_caller]
fn expect_close(ws: &mut RawWs, code: u16) {
    let f = next_frame(ws);
    assert_eq!(f.opcode, CLOSE, "expected a close frame, got {f:?}");
    assert_eq!(f.close_code(), code, "close code: {f:?}");
    assert!(
        ws.conn.closed_within(std::time::Duration::from_secs(2)),
        "the server closes TCP after the close handshake"
    );
}

/// Autobahn 1.1.1 and every case after it: the first thing an echo
/// connection sends is the echo. It once sent the room protocol's `welcome`
/// first, which failed 244 of 247 cases.
#[test]
fn echo_sends_nothing_of_its_own() {
    let server = echo_server();
    let mut ws = server.raw_ws("/echo");
    ws.write_frame(FIN | TEXT, b"");
    expect_data(&mut ws, TEXT, b"");
    ws.write_frame(FIN | BINARY, &[0, 1, 2, 0xff]);
    expect_data(&mut ws, BINARY, &[0, 1, 2, 0xff]);
}

/// The echo does not speak the room protocol: a valid request is echoed,
/// not answered, and `?room=` joins nothing.
#[test]
fn echo_does_not_interpret_messages() {
    let server = echo_server();
    let mut ws = server.raw_ws("/echo?room=lobby");
    let ping = b"{\"t\":\"ping\",\"rid\":1}";
    ws.write_frame(FIN | TEXT, ping);
    expect_data(&mut ws, TEXT, ping);
}

/// Autobahn 5.x: fragments are reassembled into one message, and a control
/// frame between fragments is answered at once (5.6: ping in the middle).
#[test]
fn fragments_reassemble_around_a_ping() {
    let server = echo_server();
    let mut ws = server.raw_ws("/echo");
    ws.write_frame(TEXT, b"frag");
    ws.write_frame(FIN | PING, b"mid");
    ws.write_frame(CONT, b"ment");
    ws.write_frame(FIN | CONT, b"ed");
    let pong = next_frame(&mut ws);
    assert_eq!(pong.opcode, PONG, "ping answered first: {pong:?}");
    assert_eq!(pong.payload, b"mid", "pong carries the ping's payload");
    expect_data(&mut ws, TEXT, b"fragmented");
}

/// Autobahn 6.x: invalid UTF-8 in a text message fails the connection with
/// 1007, also when it is split across fragments.
#[test]
fn invalid_utf8_closes_1007() {
    let server = echo_server();
    let mut ws = server.raw_ws("/echo");
    ws.write_frame(
        FIN | TEXT,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
    );
    expect_close(&mut ws, 1007);

    let mut ws = server.raw_ws("/echo");
    // U+03BA split across two fragments is valid; 0xff never is.
    ws.write_frame(TEXT, b"\xce");
    ws.write_frame(FIN | CONT, b"\xba\xff");
    expect_close(&mut ws, 1007);
}

/// Autobahn 3.x, 4.x, 5.x: reserved bits, reserved opcodes and a
/// continuation with nothing to continue are protocol errors (1002).
#[test]
fn framing_errors_close_1002() {
    let server = echo_server();
    for (b0, what) in [
        (FIN | 0x40 | TEXT, "RSV1 without an extension"),
        (FIN | 0x3, "reserved data opcode"),
        (FIN | 0xB, "reserved control opcode"),
        (FIN | CONT, "continuation without a message"),
        (PING, "fragmented control frame"),
    ] {
        let mut ws = server.raw_ws("/echo");
        ws.write_frame(b0, b"x");
        let f = next_frame(&mut ws);
        assert_eq!(f.opcode, CLOSE, "{what}: expected close, got {f:?}");
        assert_eq!(f.close_code(), 1002, "{what}");
    }
}

/// Autobahn 7.x: a valid close is echoed with the same code; an invalid
/// close code (7.9.x) or a one-byte close payload (7.3.2) is 1002.
#[test]
fn close_codes() {
    let server = echo_server();
    let mut ws = server.raw_ws("/echo");
    ws.write_frame(FIN | CLOSE, &1000u16.to_be_bytes());
    expect_close(&mut ws, 1000);

    let mut ws = server.raw_ws("/echo");
    ws.write_frame(FIN | CLOSE, &[]);
    let f = next_frame(&mut ws);
    assert_eq!(f.opcode, CLOSE);
    assert!(
        matches!(f.close_code(), 1000 | 1005),
        "an empty close is answered with an empty close or 1000: {f:?}"
    );

    for bad in [0u16, 999, 1004, 1005, 1006, 1016, 2000, 2999, 5000] {
        let mut ws = server.raw_ws("/echo");
        ws.write_frame(FIN | CLOSE, &bad.to_be_bytes());
        let f = next_frame(&mut ws);
        assert_eq!(f.opcode, CLOSE, "close code {bad}: {f:?}");
        assert_eq!(f.close_code(), 1002, "close code {bad} is invalid");
    }

    let mut ws = server.raw_ws("/echo");
    ws.write_frame(FIN | CLOSE, &[0x03]);
    expect_close(&mut ws, 1002);
}

/// Without `--echo-path` there is no echo endpoint.
#[test]
fn no_echo_path_by_default() {
    let server = Server::start(&[]);
    let mut c = server.http_conn();
    c.send(
        b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let r = c.response().expect("response");
    assert_eq!(r.status, 404);
}
