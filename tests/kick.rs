//! Kick and ban (PROTOCOL.md "Kick"): the owner (or the HTTP API) removes
//! a member or watcher, which gets `kicked`; members see `leave` with
//! `why:"kicked"`; a banned id may not come back while the room exists.

#[macro_use]
mod common;

use common::*;

const KEY: &str = "admin-secret";

fn kick(c: &mut Client, room: &str, id: u64, ban: bool) -> u32 {
    let rid = c.rid();
    c.send(msg! {"t" => "kick", "rid" => rid, "room" => room, "id" => id, "ban" => ban});
    rid
}

#[test]
fn the_owner_kicks_a_member_who_may_come_back() {
    let server = Server::start(&[]);
    let (mut a, mut b) = server.pair("r");
    let mut c = server.client();
    c.join("r");
    a.expect("presence");
    b.expect("presence");
    let rid = kick(&mut a, "r", b.id, false);
    assert_eq!(a.expect("ok")["rid"].u(), u64::from(rid));
    let k = b.expect("kicked");
    assert_eq!(k["room"].s(), "r");
    for x in [&mut a, &mut c] {
        let p = x.expect("presence");
        assert_eq!((p["leave"].u(), p["why"].s()), (b.id, "kicked"), "{p:?}");
    }
    b.send(msg! {"t" => "pub", "rid" => 7u32, "room" => "r", "data" => bin(b"x")});
    b.expect_err_rid("not_member", 7);
    // Without a ban it may join again.
    let j = b.join("r");
    assert_eq!(member_ids(&j), vec![a.id, c.id, b.id]);
}

#[test]
fn ban_keeps_a_member_and_its_watching_out() {
    let server = Server::start(&[]);
    let (mut a, mut b) = server.pair("r");
    let rid = kick(&mut a, "r", b.id, true);
    assert_eq!(a.expect("ok")["rid"].u(), u64::from(rid));
    assert_eq!(a.expect("presence")["why"].s(), "kicked");
    b.expect("kicked");
    b.send(msg! {"t" => "join", "rid" => 1u32, "room" => "r"});
    b.expect_err_rid("forbidden", 1);
    b.send(msg! {"t" => "join", "rid" => 2u32, "room" => "r", "watch" => true});
    b.expect_err_rid("forbidden", 2);
    // Another client is still welcome.
    let mut c = server.client();
    c.join("r");
}

#[test]
fn only_the_owner_kicks_and_only_those_in_the_room() {
    let server = Server::start(&[]);
    let (mut a, mut b) = server.pair("r");
    let rid = kick(&mut b, "r", a.id, false);
    b.expect_err_rid("forbidden", rid);
    let rid = kick(&mut a, "r", 999_999, false);
    a.expect_err_rid("not_found", rid);
    let rid = kick(&mut a, "nope", b.id, false);
    a.expect_err_rid("not_found", rid);
    a.send(msg! {"t" => "kick", "rid" => 5u32, "room" => "r"});
    a.expect_err_rid("bad_request", 5);
    let me = a.id;
    let rid = kick(&mut a, "r", me, false);
    a.expect_err_rid("bad_request", rid);
    // Someone outside the room may not kick either.
    let mut c = server.client();
    let rid = kick(&mut c, "r", b.id, false);
    c.expect_err_rid("forbidden", rid);
    b.roundtrip();
    b.expect_silence(SILENCE);
}

#[test]
fn the_owner_kicks_a_watcher() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.create("live");
    let mut w = server.client();
    w.send(msg! {"t" => "join", "rid" => 1u32, "room" => "live", "watch" => true});
    w.expect("joined");
    assert_eq!(a.recv_type("watchers")["n"].u(), 1);
    let rid = kick(&mut a, "live", w.id, false);
    assert_eq!(a.expect("ok")["rid"].u(), u64::from(rid));
    assert_eq!(w.recv_type("kicked")["room"].s(), "live");
    assert_eq!(a.recv_type("watchers")["n"].u(), 0);
    a.publish("live", b"gone");
    w.expect_silence(SILENCE);
}

#[test]
fn the_http_api_kicks() {
    let server = Server::start(&["--admin-key", KEY]);
    let (mut a, mut b) = server.pair("r");
    let call = |body: &str| {
        let mut c = server.http_conn();
        c.send(
            format!(
                "POST /rooms/r/kick HTTP/1.1\r\nHost: roomd\r\nAuthorization: Bearer {KEY}\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        c.response().expect("a response")
    };
    let r = call(&format!(r#"{{"id":{},"ban":true}}"#, b.id));
    assert_eq!(r.status, 200, "{}", r.text());
    b.expect("kicked");
    assert_eq!(a.expect("presence")["why"].s(), "kicked");
    b.send(msg! {"t" => "join", "rid" => 1u32, "room" => "r"});
    b.expect_err_rid("forbidden", 1);
    assert_eq!(call(&format!(r#"{{"id":{}}}"#, b.id)).status, 404);
    assert_eq!(call("{}").status, 400);
}

#[test]
fn a_kick_across_workers() {
    let server = start_workers(2, &[]);
    let room = name_on("kick", 1, 2);
    let mut a = client_on(&server, 0);
    a.create(&room);
    let mut b = client_on(&server, 0);
    b.join(&room);
    a.expect("presence");
    let rid = kick(&mut a, &room, b.id, true);
    assert_eq!(a.expect("ok")["rid"].u(), u64::from(rid));
    b.expect("kicked");
    b.send(msg! {"t" => "join", "rid" => 1u32, "room" => room.as_str()});
    b.expect_err_rid("forbidden", 1);
    // Its seat on the other worker is gone, so its room limit is whole.
    b.create(&name_on("kick-own", 0, 2));
}
