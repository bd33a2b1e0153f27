//! Malformed input: undecodable frames and messages are `bad_request` (with
//! the `rid` when one could be read), unknown types `unknown_type`; broken
//! WebSocket framing closes with 1002, invalid UTF-8 in a JSON text frame with
//! 1007. The connection (for errors) and the server (always) keep serving.

#[macro_use]
mod common;

use common::*;

/// Sends raw binary `bytes` and expects `bad_request` without a rid; the
/// connection keeps working afterwards.
fn expect_bad_binary(c: &mut Client, bytes: &[u8]) {
    c.send_binary(bytes);
    let err = c.expect_err("bad_request");
    assert!(
        !err.has("rid"),
        "no rid could be read from {bytes:?}: {err:?}"
    );
    c.roundtrip();
}

#[test]
fn garbage_binary_frame_is_bad_request() {
    let server = Server::start(&[]);
    let mut c = server.client();
    expect_bad_binary(&mut c, &[0xc1, 0x00, 0xff, 0x13, 0x37]); // 0xc1 is never used
    expect_bad_binary(&mut c, b"");
    server.assert_alive();
}

#[test]
fn truncated_messagepack_is_bad_request() {
    let server = Server::start(&[]);
    let mut c = server.client();
    // A map of two entries that ends after one key.
    expect_bad_binary(
        &mut c,
        &[0x82, 0xa1, b't', 0xa4, b'p', b'i', b'n', b'g', 0xa3],
    );
    // A str8 whose length runs past the end.
    expect_bad_binary(&mut c, &[0x81, 0xa1, b't', 0xd9, 0x20, b'x']);
}

#[test]
fn message_that_is_not_a_map_is_bad_request() {
    let server = Server::start(&[]);
    let mut c = server.client();
    expect_bad_binary(&mut c, &arr(vec![1u32.into(), "ping".into()]).to_msgpack());
    expect_bad_binary(&mut c, &Value::from("ping").to_msgpack());
    expect_bad_binary(&mut c, &Value::Nil.to_msgpack());
    expect_bad_binary(&mut c, &Value::UInt(7).to_msgpack());
}

#[test]
fn map_with_non_string_keys_is_bad_request() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let m = Value::Map(vec![(Value::UInt(1), "ping".into())]);
    expect_bad_binary(&mut c, &m.to_msgpack());
}

/// rmp-serde matches struct fields by position when a key is an integer,
/// so `{0:"ping"}` once got `pong` and `{0:"create",1:41,2:"r"}` created
/// room `r`; a `bin` key was taken for the field it spells. PROTOCOL.md:
/// "Keys are strings (a map with any other key is `bad_request`)".
#[test]
fn integer_keys_are_not_field_names() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let int_keys = |kv: Vec<(u64, Value)>| {
        Value::Map(kv.into_iter().map(|(k, v)| (Value::UInt(k), v)).collect())
    };
    expect_bad_binary(&mut c, &int_keys(vec![(0, "ping".into())]).to_msgpack());
    expect_bad_binary(
        &mut c,
        &int_keys(vec![
            (0, "create".into()),
            (1, 41u32.into()),
            (2, "r".into()),
        ])
        .to_msgpack(),
    );
    // One integer key among string keys, at the top or in a nested map.
    let mut m = msg! {"t" => "create", "room" => "r2"};
    if let Value::Map(kv) = &mut m {
        kv.push((Value::UInt(3), "x".into()));
    }
    expect_bad_binary(&mut c, &m.to_msgpack());
    let m = msg! {"t" => "create", "room" => "r3", "future" => int_keys(vec![(1, 1u32.into())])};
    expect_bad_binary(&mut c, &m.to_msgpack());
    // A key that is bytes, not a string.
    expect_bad_binary(
        &mut c,
        &Value::Map(vec![(bin("t"), "ping".into())]).to_msgpack(),
    );

    // Nothing was created.
    for room in ["r", "r2", "r3"] {
        c.send(msg! {"t" => "join", "rid" => 7u32, "room" => room});
        c.expect_err_rid("not_found", 7);
    }
    // Maps inside requests follow the same rule; bytes as values still work.
    c.create_with(msg! {"room" => "ok", "meta" => bin([0u8, 255])});
    let set = int_keys(vec![(0, bin("v"))]);
    expect_bad_binary(
        &mut c,
        &msg! {"t" => "props", "room" => "ok", "set" => set}.to_msgpack(),
    );
    let last = int_keys(vec![(0, 1u32.into())]);
    expect_bad_binary(&mut c, &msg! {"t" => "hello", "last" => last}.to_msgpack());
    c.send(msg! {"t" => "hello", "rid" => 8u32, "meta" => bin([1u8, 254])});
    assert_eq!(c.expect("ok")["rid"].u(), 8);
    c.send(msg! {"t" => "pub", "rid" => 9u32, "room" => "ok", "data" => bin([0u8, 255])});
    assert_eq!(c.expect("ok")["rid"].u(), 9);
}

#[test]
fn missing_t_is_bad_request_with_rid() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send(msg! {"rid" => 5u32, "room" => "x"});
    c.expect_err_rid("bad_request", 5);
    c.send(msg! {"room" => "x"});
    let err = c.expect_err("bad_request");
    assert!(!err.has("rid"));
    c.roundtrip();
}

#[test]
fn t_that_is_not_a_string_is_bad_request() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send(msg! {"t" => 5u32, "rid" => 6u32});
    c.expect_err_rid("bad_request", 6);
    c.send(msg! {"t" => bin("ping"), "rid" => 7u32});
    c.expect_err_rid("bad_request", 7);
    c.roundtrip();
}

#[test]
fn wrong_field_types_and_missing_fields_are_bad_request_with_rid() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.create("r");
    let cases = vec![
        msg! {"t" => "join", "rid" => 1u32, "room" => 12u32},
        msg! {"t" => "join", "rid" => 2u32},
        msg! {"t" => "pub", "rid" => 3u32, "room" => "r", "data" => arr(vec![1u32.into()])},
        msg! {"t" => "pub", "rid" => 4u32, "room" => "r"},
        msg! {"t" => "create", "rid" => 5u32, "room" => "n", "max" => "ten"},
        msg! {"t" => "create", "rid" => 6u32, "room" => "n", "max" => -1i32},
        msg! {"t" => "create", "rid" => 7u32, "room" => "n", "max" => 70_000u32},
        msg! {"t" => "send", "rid" => 8u32, "room" => "r", "to" => "someone", "data" => bin("x")},
        msg! {"t" => "props", "rid" => 9u32, "room" => "r", "set" => bin("x")},
        msg! {"t" => "props", "rid" => 10u32, "room" => "r", "set" => msg! {"k" => 5u32}},
        msg! {"t" => "state", "rid" => 11u32, "room" => "r"},
        msg! {"t" => "list", "rid" => 12u32, "limit" => "all"},
        msg! {"t" => "leave", "rid" => 13u32, "room" => true},
        msg! {"t" => "pub", "rid" => 14u32, "room" => "r", "data" => bin("x"), "echo" => "yes"},
    ];
    for m in cases {
        let rid = m["rid"].u() as u32;
        c.send(m.clone());
        let err = c.recv();
        assert_eq!(err.t(), "err", "{m:?} -> {err:?}");
        assert_eq!(err["code"].s(), "bad_request", "{m:?} -> {err:?}");
        assert_eq!(err["rid"].u(), u64::from(rid), "{m:?} -> {err:?}");
        c.roundtrip(); // stay under --max-bad-requests
    }
    // None of them created anything.
    c.send(msg! {"t" => "list", "rid" => 99u32});
    let rooms = c.expect("rooms");
    assert_eq!(rooms["rooms"].arr().len(), 1, "{rooms:?}");
}

#[test]
fn rid_of_the_wrong_type_is_bad_request() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send(msg! {"t" => "ping", "rid" => "one"});
    c.expect_err("bad_request");
    c.send(msg! {"t" => "ping", "rid" => 5_000_000_000u64});
    c.expect_err("bad_request");
    c.roundtrip();
}

#[test]
fn unknown_type_is_unknown_type_with_rid() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send(msg! {"t" => "frobnicate", "rid" => 9u32});
    c.expect_err_rid("unknown_type", 9);
    c.send(msg! {"t" => "frobnicate"});
    let err = c.expect_err("unknown_type");
    assert!(!err.has("rid"));
    c.roundtrip();
}

#[test]
fn unknown_keys_are_ignored() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.send(msg! {"t" => "ping", "rid" => 1u32, "future" => msg! {"x" => 1u32}, "zzz" => true});
    assert_eq!(c.expect("pong")["rid"].u(), 1);
    c.send(msg! {"t" => "create", "rid" => 2u32, "room" => "r", "color" => "blue"});
    c.expect("created");
    c.expect("joined");
}

#[test]
fn text_frame_on_msgpack_connection_is_decoded_as_msgpack() {
    let server = Server::start(&[]);
    let mut c = server.client();
    // Valid JSON, but this connection speaks MessagePack: '{' is fixint 123.
    c.send_text_bytes(br#"{"t":"ping","rid":1}"#);
    c.expect_err("bad_request");
    c.roundtrip();
}

#[test]
fn invalid_utf8_text_frame_on_json_connection_is_closed_1007() {
    let server = Server::start(&[]);
    let mut c = server.client_json();
    c.send_text_bytes(b"{\"t\":\"ping\",\"x\":\"\xff\xfe\"}");
    c.expect_close(1007);
    server.assert_alive();
}

#[test]
fn reserved_bits_are_a_protocol_error_1002() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let ping = msg! {"t" => "ping"}.to_msgpack();
    // FIN + RSV1 + RSV2 + binary; no extension was negotiated.
    c.write_raw_bytes(&encode_client_frame(0xf2, &ping));
    c.expect_close(1002);
    server.assert_alive();
}

#[test]
fn reserved_opcode_is_a_protocol_error_1002() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.write_raw_bytes(&encode_client_frame(0x83, b"??"));
    c.expect_close(1002);
    server.assert_alive();
}

#[test]
fn unmasked_client_frame_is_a_protocol_error_1002() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let ping = msg! {"t" => "ping"}.to_msgpack();
    let mut frame = vec![0x82, ping.len() as u8];
    frame.extend_from_slice(&ping);
    c.write_raw_bytes(&frame);
    c.expect_close(1002);
    server.assert_alive();
}

#[test]
fn continuation_without_a_start_is_a_protocol_error_1002() {
    let server = Server::start(&[]);
    let mut c = server.client();
    c.write_raw_bytes(&encode_client_frame(0x80, b"orphan"));
    c.expect_close(1002);
    server.assert_alive();
}

#[test]
fn fragmented_message_is_reassembled() {
    let server = Server::start(&[]);
    let mut c = server.client();
    let ping = msg! {"t" => "ping", "rid" => 3u32}.to_msgpack();
    let (head, tail) = ping.split_at(4);
    c.write_raw_bytes(&encode_client_frame(0x02, head));
    c.write_raw_bytes(&encode_client_frame(0x80, tail));
    assert_eq!(c.expect("pong")["rid"].u(), 3);
}

/// The nesting limit of README "Limits": maps and arrays nest at most this
/// many levels, the request map itself being the first.
const MAX_DEPTH: usize = 32;

/// `{"t":"ping","rid":rid,"zz":[[...]]}` nested `depth` levels in all, in the
/// client's encoding (`zz` is a key the server ignores).
fn nested_ping(json: bool, rid: u32, depth: usize) -> Vec<u8> {
    let arrays = depth - 1;
    if json {
        let mut b = format!("{{\"t\":\"ping\",\"rid\":{rid},\"zz\":").into_bytes();
        b.extend(std::iter::repeat_n(b'[', arrays));
        b.extend(std::iter::repeat_n(b']', arrays));
        b.push(b'}');
        b
    } else {
        let mut b = msg! {"t" => "ping", "rid" => rid}.to_msgpack();
        b[0] += 1; // one more entry in the fixmap
        b.extend_from_slice(&[0xa2, b'z', b'z']);
        // Arrays of one element, the innermost empty.
        b.extend(std::iter::repeat_n(0x91u8, arrays - 1));
        b.push(0x90);
        b
    }
}

/// MessagePack stopped at about 32 levels while JSON accepted a request
/// nested 200,000 levels deep; both subprotocols now share one limit, and
/// past it a request is `bad_request` on a connection that goes on.
#[test]
fn nesting_deeper_than_the_limit_is_bad_request_in_both_subprotocols() {
    let server = Server::start(&["--max-message", "1048576"]);
    for mut c in [server.client(), server.client_json()] {
        let send = |c: &mut Client, rid: u32, depth: usize| {
            let bytes = nested_ping(c.json, rid, depth);
            if c.json {
                c.send_text_bytes(&bytes);
            } else {
                c.send_binary(&bytes);
            }
        };
        for depth in [MAX_DEPTH + 1, MAX_DEPTH + 2, 200_000] {
            send(&mut c, 1, depth);
            let err = c.expect_err("bad_request");
            assert!(
                err["msg"].s().contains("depth limit exceeded"),
                "json {} depth {depth}: {err:?}",
                c.json
            );
            c.roundtrip();
        }
        for depth in [2, MAX_DEPTH - 1, MAX_DEPTH] {
            send(&mut c, 2, depth);
            let pong = c.expect("pong");
            assert_eq!(pong["rid"].u(), 2, "json {} depth {depth}", c.json);
        }
    }
    server.assert_alive();
}
