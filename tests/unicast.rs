//! `send`: a message to one member of a room.

#[macro_use]
mod common;

use common::*;
use std::time::Duration;

/// `a` creates "r"; `b` and `c` join; presence drained.
fn three(server: &Server) -> (Client, Client, Client) {
    let (mut a, mut b) = server.pair("r");
    let mut c = server.client();
    c.join("r");
    a.expect("presence");
    b.expect("presence");
    (a, b, c)
}

#[test]
fn send_reaches_only_the_target() {
    let server = Server::start(&[]);
    let (mut a, mut b, mut c) = three(&server);
    a.send(msg! {"t" => "send", "room" => "r", "to" => b.id, "data" => bin([9u8, 0, 0xfe])});
    let m = b.expect("msg");
    assert_eq!(m["room"].s(), "r");
    assert_eq!(m["from"].u(), a.id);
    assert_eq!(m["to"].u(), b.id);
    assert_eq!(m["data"].b(), [9u8, 0, 0xfe]);
    assert!(!m.has("seq"), "unicast has no seq: {m:?}");
    c.expect_silence(SILENCE);
    a.expect_silence(Duration::from_millis(50)); // no ok without rid
}

#[test]
fn send_with_rid_is_acknowledged() {
    let server = Server::start(&[]);
    let (mut a, mut b, _c) = three(&server);
    a.send(msg! {"t" => "send", "rid" => 11u32, "room" => "r", "to" => b.id, "data" => bin("x")});
    let ok = a.expect("ok");
    assert_eq!(ok["rid"].u(), 11);
    assert!(!ok.has("seq"), "unicast ok has no seq: {ok:?}");
    b.expect("msg");
}

#[test]
fn unicast_does_not_consume_room_seq() {
    let server = Server::start(&[]);
    let (mut a, mut b, _c) = three(&server);
    a.send(msg! {"t" => "send", "room" => "r", "to" => b.id, "data" => bin("u")});
    b.expect("msg");
    assert_eq!(a.publish("r", b"p"), 1);
}

#[test]
fn send_to_a_member_of_another_room_is_not_member() {
    let server = Server::start(&[]);
    let (mut a, _b, _c) = three(&server);
    let mut d = server.client();
    d.create("elsewhere");
    a.send(msg! {"t" => "send", "rid" => 1u32, "room" => "r", "to" => d.id, "data" => bin("x")});
    a.expect_err_rid("not_member", 1);
    a.send(msg! {"t" => "send", "rid" => 2u32, "room" => "r", "to" => 987_654_321u64, "data" => bin("x")});
    a.expect_err_rid("not_member", 2);
    d.expect_silence(SILENCE);
}

#[test]
fn sender_must_be_a_member() {
    let server = Server::start(&[]);
    let (a, mut b, _c) = three(&server);
    let mut d = server.client();
    d.send(msg! {"t" => "send", "rid" => 4u32, "room" => "r", "to" => a.id, "data" => bin("x")});
    d.expect_err_rid("not_member", 4);
    b.expect_silence(Duration::from_millis(50));
}

#[test]
fn send_to_self_is_delivered() {
    let server = Server::start(&[]);
    let (mut a, _b, _c) = three(&server);
    a.send(msg! {"t" => "send", "room" => "r", "to" => a.id, "data" => bin("me")});
    let m = a.expect("msg");
    assert_eq!(m["from"].u(), a.id);
    assert_eq!(m["to"].u(), a.id);
}

#[test]
fn send_to_an_away_member_is_not_found() {
    let server = Server::start(&["--grace-ms", "5000"]);
    let (mut a, b, _c) = three(&server);
    let b_id = b.id;
    b.drop_tcp();
    let p = a.expect("presence");
    assert_eq!(p["away"].u(), b_id, "b is away: {p:?}");
    a.send(msg! {"t" => "send", "rid" => 8u32, "room" => "r", "to" => b_id, "data" => bin("x")});
    a.expect_err_rid("not_found", 8);
}
