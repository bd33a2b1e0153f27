//! `roomd.v1.json`: the same messages as JSON text frames; `data` as a string
//! or `data64` when the bytes are not UTF-8, `meta`/`meta64`, props values as
//! strings or `{"data64":..}`; JSON and MessagePack clients share rooms.

#[macro_use]
mod common;

use base64::Engine;
use common::*;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn json_client_creates_joins_and_publishes() {
    let server = Server::start(&[]);
    let mut a = server.client_json();
    let joined = a.create("r");
    assert_eq!(joined["state"].s(), "waiting");
    assert_eq!(joined["owner"].u(), a.id);
    let mut b = server.client_json();
    let joined = b.join("r");
    assert_eq!(member_ids(&joined), vec![a.id, b.id]);
    assert_eq!(a.expect("presence")["join"]["id"].u(), b.id);

    a.send(msg! {"t" => "pub", "rid" => 5u32, "room" => "r", "data" => "hello, wörld"});
    let ok = a.expect("ok");
    assert_eq!(ok["rid"].u(), 5);
    assert_eq!(ok["seq"].u(), 1);
    let m = b.expect("msg");
    assert_eq!(m["data"].s(), "hello, wörld");
    assert!(!m.has("data64"), "{m:?}");
    assert_eq!(m["from"].u(), a.id);
}

#[test]
fn json_errors_carry_rid_and_code() {
    let server = Server::start(&[]);
    let mut a = server.client_json();
    a.send(msg! {"t" => "join", "rid" => 8u32, "room" => "nope"});
    a.expect_err_rid("not_found", 8);
    a.send(msg! {"t" => "frobnicate", "rid" => 9u32});
    a.expect_err_rid("unknown_type", 9);
}

#[test]
fn bad_json_is_bad_request() {
    let server = Server::start(&[]);
    let mut a = server.client_json();
    a.send_raw(tungstenite::Message::text("{\"t\":\"ping\","));
    a.expect_err("bad_request");
    a.send_raw(tungstenite::Message::text("[1,2,3]"));
    a.expect_err("bad_request");
    a.roundtrip();
}

#[test]
fn binary_frame_on_json_connection_is_decoded_as_json() {
    let server = Server::start(&[]);
    let mut a = server.client_json();
    a.send_binary(br#"{"t":"ping","rid":4}"#);
    assert_eq!(a.expect("pong")["rid"].u(), 4);
}

#[test]
fn data64_from_a_json_client_reaches_both_encodings() {
    let server = Server::start(&[]);
    let mut a = server.client_json();
    a.create("r");
    let mut j = server.client_json();
    j.join("r");
    let mut m = server.client();
    m.join("r");
    let bytes = [0u8, 1, 2, 0xff, 0xfe];
    a.send(msg! {"t" => "pub", "room" => "r", "data64" => b64(&bytes)});
    let got = j.recv_type("msg");
    assert_eq!(
        got["data64"].s(),
        b64(&bytes),
        "not UTF-8: sent as data64: {got:?}"
    );
    assert!(!got.has("data"), "{got:?}");
    let got = m.recv_type("msg");
    assert_eq!(got["data"].b(), bytes, "a msgpack client gets bin");
}

#[test]
fn data64_that_is_utf8_arrives_as_data() {
    let server = Server::start(&[]);
    let mut a = server.client_json();
    a.create("r");
    let mut j = server.client_json();
    j.join("r");
    a.send(msg! {"t" => "pub", "room" => "r", "data64" => b64("plain".as_bytes())});
    let got = j.recv_type("msg");
    assert_eq!(got["data"].s(), "plain", "{got:?}");
}

#[test]
fn msgpack_bin_reaches_json_as_data_or_data64() {
    let server = Server::start(&[]);
    let mut m = server.client();
    m.create("r");
    let mut j = server.client_json();
    j.join("r");
    m.send(msg! {"t" => "pub", "room" => "r", "data" => bin("héllo")});
    let got = j.recv_type("msg");
    assert_eq!(got["data"].s(), "héllo");
    assert!(!got.has("data64"));
    m.send(msg! {"t" => "pub", "room" => "r", "data" => bin([0xc3u8, 0x28, 0x00])});
    let got = j.expect("msg");
    assert_eq!(got["data64"].s(), b64(&[0xc3, 0x28, 0x00]));
    assert!(!got.has("data"));
}

#[test]
fn json_string_data_reaches_msgpack_as_bin() {
    let server = Server::start(&[]);
    let mut j = server.client_json();
    j.create("r");
    let mut m = server.client();
    m.join("r");
    j.send(msg! {"t" => "pub", "room" => "r", "data" => "ünïcode"});
    let got = m.expect("msg");
    assert!(
        matches!(got["data"], Value::Bin(_)),
        "bin, not str: {got:?}"
    );
    assert_eq!(got["data"].b(), "ünïcode".as_bytes());
}

#[test]
fn unicast_follows_the_same_data_rule() {
    let server = Server::start(&[]);
    let mut m = server.client();
    m.create("r");
    let mut j = server.client_json();
    j.join("r");
    m.send(msg! {"t" => "send", "room" => "r", "to" => j.id, "data" => bin([0xffu8])});
    let got = j.recv_type("msg");
    assert_eq!(got["data64"].s(), "/w==");
    assert_eq!(got["to"].u(), j.id);
}

#[test]
fn meta_and_meta64() {
    let server = Server::start(&[]);
    let mut j = server.client_json();
    j.send(msg! {"t" => "hello", "meta" => "alice"});
    j.create("r");
    let mut m = server.client();
    let rid = m.rid();
    m.send(msg! {"t" => "join", "rid" => rid, "room" => "r", "meta" => bin([0xffu8, 0x00])});
    let joined = m.expect("joined");
    assert_eq!(
        joined["members"][0]["meta"].b(),
        b"alice",
        "JSON meta is bytes to msgpack"
    );
    let p = j.expect("presence");
    assert_eq!(p["join"]["meta64"].s(), "/wA=", "not UTF-8: meta64: {p:?}");
    assert!(!p["join"].has("meta"));

    let mut j2 = server.client_json();
    let rid = j2.rid();
    j2.send(msg! {"t" => "join", "rid" => rid, "room" => "r", "meta64" => b64(&[1, 0xfe])});
    let joined = j2.expect("joined");
    let members = joined["members"].arr();
    assert_eq!(members[0]["meta"].s(), "alice");
    assert_eq!(members[1]["meta64"].s(), "/wA=");
    assert_eq!(members[2]["meta64"].s(), b64(&[1, 0xfe]));
    assert_eq!(m.expect("presence")["join"]["meta"].b(), [1u8, 0xfe]);
}

#[test]
fn props_values_as_strings_or_data64() {
    let server = Server::start(&[]);
    let mut j = server.client_json();
    j.create("r");
    let mut m = server.client();
    m.join("r");
    j.expect("presence");
    j.send(
        msg! {"t" => "props", "rid" => 1u32, "room" => "r", "set" => msg! {
            "name" => "arena",
            "blob" => msg! {"data64" => "/w=="},
            "gone" => Value::Nil,
        }},
    );
    let seen = j.recv_type("props");
    assert_eq!(seen["set"]["name"].s(), "arena");
    assert_eq!(seen["set"]["blob"]["data64"].s(), "/w==", "{seen:?}");
    let seen = m.expect("props");
    assert_eq!(seen["set"]["name"].b(), b"arena");
    assert_eq!(seen["set"]["blob"].b(), [0xffu8]);

    // Either form is accepted from a JSON client; UTF-8 goes out as a string.
    j.send(msg! {"t" => "props", "rid" => 2u32, "room" => "r", "set" => msg! {"txt" => msg! {"data64" => b64(b"ok")}}});
    let seen = j.recv_type("props");
    assert_eq!(seen["set"]["txt"].s(), "ok", "{seen:?}");

    let mut j2 = server.client_json();
    let joined = j2.join("r");
    assert_eq!(joined["props"]["name"].s(), "arena");
    assert_eq!(joined["props"]["blob"]["data64"].s(), "/w==");
    assert_eq!(joined["props"]["txt"].s(), "ok");
}

#[test]
fn invalid_base64_is_bad_request() {
    let server = Server::start(&[]);
    let mut j = server.client_json();
    j.create("r");
    j.send(msg! {"t" => "pub", "rid" => 3u32, "room" => "r", "data64" => "not base64!"});
    j.expect_err_rid("bad_request", 3);
}
