//! Room state machine: `created -> waiting -> playing -> settling -> closed`,
//! any state -> `closed`, owner only, joins only while `created`/`waiting`,
//! `autostart`.

#[macro_use]
mod common;

use common::*;

/// `a` creates "r" (extra create fields `fields`), `b` joins; presence drained.
fn pair(server: &Server, fields: Value) -> (Client, Client) {
    let mut a = server.client();
    let mut m = vec![("room".into(), "r".into())];
    if let Value::Map(f) = fields {
        m.extend(f);
    }
    a.create_with(Value::Map(m));
    let mut b = server.client();
    b.join("r");
    a.expect("presence");
    (a, b)
}

/// The owner sets `to` with a rid; returns the `ver` after checking the `ok`
/// and the `state` broadcast at the owner and at `other`.
fn set_state(owner: &mut Client, other: &mut Client, to: &str, rid: u32) -> u64 {
    owner.send(msg! {"t" => "state", "rid" => rid, "room" => "r", "to" => to});
    let x = owner.recv();
    let y = owner.recv();
    let (ok, st) = if x.t() == "ok" { (x, y) } else { (y, x) };
    assert_eq!(ok.t(), "ok", "{ok:?}");
    assert_eq!(ok["rid"].u(), u64::from(rid));
    assert_eq!(st.t(), "state", "{st:?}");
    assert_eq!(st["room"].s(), "r");
    assert_eq!(st["state"].s(), to);
    assert_eq!(st["ver"], ok["ver"]);
    let seen = other.expect("state");
    assert_eq!(seen["state"].s(), to);
    assert_eq!(seen["ver"], ok["ver"]);
    ok["ver"].u()
}

#[test]
fn legal_chain_to_closed_then_room_is_gone() {
    let server = Server::start(&[]);
    let (mut a, mut b) = pair(&server, msg! {});
    let v0 = b.join("r")["ver"].u();
    let v1 = set_state(&mut a, &mut b, "playing", 1);
    let v2 = set_state(&mut a, &mut b, "settling", 2);
    assert!(
        v0 < v1 && v1 < v2,
        "every state change bumps ver: {v0} {v1} {v2}"
    );

    // `closed`: ok, state closed to everyone, then `closed` why owner.
    a.send(msg! {"t" => "state", "rid" => 3u32, "room" => "r", "to" => "closed"});
    let mut got = vec![a.recv(), a.recv(), a.recv()];
    let ok_at = got.iter().position(|m| m.t() == "ok").expect("ok");
    let ok = got.remove(ok_at);
    assert_eq!(ok["rid"].u(), 3);
    assert_eq!(got[0].t(), "state", "{got:?}");
    assert_eq!(got[0]["state"].s(), "closed");
    assert_eq!(got[1].t(), "closed", "{got:?}");
    assert_eq!(got[1]["room"].s(), "r");
    assert_eq!(got[1]["why"].s(), "owner");

    assert_eq!(b.expect("state")["state"].s(), "closed");
    let closed = b.expect("closed");
    assert_eq!(closed["why"].s(), "owner");

    let mut c = server.client();
    c.send(msg! {"t" => "join", "rid" => 1u32, "room" => "r"});
    c.expect_err_rid("not_found", 1);
    // The members are no longer in it.
    b.send(msg! {"t" => "pub", "rid" => 2u32, "room" => "r", "data" => bin("x")});
    let err = b.expect("err");
    assert!(
        ["not_found", "not_member"].contains(&err["code"].s()),
        "pub to a closed room: {err:?}"
    );
    // The name is free again.
    c.create("r");
}

#[test]
fn any_state_may_go_to_closed() {
    let server = Server::start(&[]);
    let (mut a, mut b) = pair(&server, msg! {});
    set_state(&mut a, &mut b, "closed", 1);
    assert_eq!(a.expect("closed")["why"].s(), "owner");
    assert_eq!(b.expect("closed")["why"].s(), "owner");
}

#[test]
fn illegal_transitions_are_invalid_state() {
    let server = Server::start(&[]);
    let (mut a, mut b) = pair(&server, msg! {});
    for (rid, to) in [(1u32, "settling"), (2, "created"), (3, "waiting")] {
        a.send(msg! {"t" => "state", "rid" => rid, "room" => "r", "to" => to});
        a.expect_err_rid("invalid_state", rid);
    }
    set_state(&mut a, &mut b, "playing", 4);
    for (rid, to) in [(5u32, "waiting"), (6, "playing"), (7, "created")] {
        a.send(msg! {"t" => "state", "rid" => rid, "room" => "r", "to" => to});
        a.expect_err_rid("invalid_state", rid);
    }
    b.expect_silence(SILENCE);
}

#[test]
fn unknown_state_name_is_bad_request() {
    let server = Server::start(&[]);
    let (mut a, _b) = pair(&server, msg! {});
    a.send(msg! {"t" => "state", "rid" => 1u32, "room" => "r", "to" => "exploded"});
    a.expect_err_rid("bad_request", 1);
}

#[test]
fn non_owner_is_forbidden() {
    let server = Server::start(&[]);
    let (mut a, mut b) = pair(&server, msg! {});
    b.send(msg! {"t" => "state", "rid" => 1u32, "room" => "r", "to" => "playing"});
    b.expect_err_rid("forbidden", 1);
    b.send(msg! {"t" => "state", "rid" => 2u32, "room" => "r", "to" => "closed"});
    b.expect_err_rid("forbidden", 2);
    a.expect_silence(SILENCE);
}

#[test]
fn join_is_refused_once_playing() {
    let server = Server::start(&[]);
    let (mut a, mut b) = pair(&server, msg! {});
    set_state(&mut a, &mut b, "playing", 1);
    let mut c = server.client();
    c.send(msg! {"t" => "join", "rid" => 5u32, "room" => "r"});
    c.expect_err_rid("invalid_state", 5);
    a.expect_silence(SILENCE);
    // A member already seated may ask again and keeps its seat.
    let again = b.join("r");
    assert_eq!(again["state"].s(), "playing");
}

#[test]
fn autostart_moves_to_playing_when_full() {
    let server = Server::start(&[]);
    let mut a = server.client();
    let joined = a.create_with(msg! {"room" => "r", "max" => 2u32, "autostart" => true});
    assert_eq!(joined["state"].s(), "waiting", "not full yet");
    let mut b = server.client();
    let joined = b.join("r");
    // The joiner sees playing either in its snapshot or as the next message.
    if joined["state"].s() != "playing" {
        assert_eq!(joined["state"].s(), "waiting");
        assert_eq!(b.expect("state")["state"].s(), "playing");
    }
    let p = a.expect("presence");
    assert_eq!(p["join"]["id"].u(), b.id);
    let st = a.expect("state");
    assert_eq!(st["state"].s(), "playing");

    let mut c = server.client();
    c.send(msg! {"t" => "join", "rid" => 1u32, "room" => "r"});
    let err = c.expect("err");
    assert!(
        ["full", "invalid_state"].contains(&err["code"].s()),
        "a full playing room refuses: {err:?}"
    );
}

#[test]
fn without_autostart_a_full_room_keeps_waiting() {
    let server = Server::start(&[]);
    let (mut a, mut b) = pair(&server, msg! {"max" => 2u32});
    a.expect_silence(SILENCE);
    assert_eq!(b.join("r")["state"].s(), "waiting");
}

#[test]
fn state_of_unknown_room_is_not_found() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.send(msg! {"t" => "state", "rid" => 1u32, "room" => "ghost", "to" => "playing"});
    a.expect_err_rid("not_found", 1);
}

#[test]
fn state_without_rid_is_broadcast_but_not_acknowledged() {
    let server = Server::start(&[]);
    let (mut a, mut b) = pair(&server, msg! {});
    a.send(msg! {"t" => "state", "room" => "r", "to" => "playing"});
    assert_eq!(a.expect("state")["state"].s(), "playing");
    assert_eq!(b.expect("state")["state"].s(), "playing");
    a.expect_silence(SILENCE);
}
