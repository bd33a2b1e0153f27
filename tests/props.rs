//! Room props: set, delete with nil, compare-and-set on `ver`, broadcast to
//! every member, and the size limit.

#[macro_use]
mod common;

use common::*;

/// Reads the `ok` (rid) and the `props` broadcast, in either order.
fn ok_and_props(c: &mut Client, rid: u32) -> (Value, Value) {
    let x = c.recv();
    let y = c.recv();
    let (ok, props) = if x.t() == "ok" { (x, y) } else { (y, x) };
    assert_eq!(ok.t(), "ok", "{ok:?}");
    assert_eq!(props.t(), "props", "{props:?}");
    assert_eq!(ok["rid"].u(), u64::from(rid));
    assert_eq!(
        ok["ver"], props["ver"],
        "ok and broadcast carry the same ver"
    );
    (ok, props)
}

#[test]
fn set_is_acknowledged_and_broadcast_to_all_members() {
    let server = Server::start(&[]);
    let (mut a, mut b) = server.pair("r");
    let ver0 = b.join("r")["ver"].u();

    a.send(
        msg! {"t" => "props", "rid" => 1u32, "room" => "r", "set" => msg! {"color" => bin("red")}},
    );
    let (ok, props) = ok_and_props(&mut a, 1);
    let ver1 = ok["ver"].u();
    assert!(ver1 > ver0, "a change bumps ver ({ver0} -> {ver1})");
    assert_eq!(props["room"].s(), "r");
    assert_eq!(props["set"]["color"].b(), b"red");

    let seen = b.expect("props");
    assert_eq!(seen["set"]["color"].b(), b"red");
    assert_eq!(seen["ver"].u(), ver1);

    let mut c = server.client();
    let joined = c.join("r");
    assert_eq!(joined["props"]["color"].b(), b"red");
    assert_eq!(joined["ver"].u(), ver1);
}

#[test]
fn any_member_may_set_and_without_rid_there_is_no_ok() {
    let server = Server::start(&[]);
    let (mut a, mut b) = server.pair("r");
    b.send(msg! {"t" => "props", "room" => "r", "set" => msg! {"k" => bin("v")}});
    let mine = b.expect("props");
    assert_eq!(mine["set"]["k"].b(), b"v");
    let theirs = a.expect("props");
    assert_eq!(theirs["ver"], mine["ver"]);
    b.expect_silence(SILENCE);
}

#[test]
fn nil_deletes_a_key() {
    let server = Server::start(&[]);
    let (mut a, mut b) = server.pair("r");
    a.send(msg! {"t" => "props", "rid" => 1u32, "room" => "r",
    "set" => msg! {"keep" => bin("1"), "drop" => bin("2")}});
    ok_and_props(&mut a, 1);
    b.expect("props");
    a.send(
        msg! {"t" => "props", "rid" => 2u32, "room" => "r", "set" => msg! {"drop" => Value::Nil}},
    );
    let (_, props) = ok_and_props(&mut a, 2);
    assert!(
        props["set"].has("drop") && props["set"]["drop"].is_nil(),
        "nil is broadcast: {props:?}"
    );
    b.expect("props");

    let mut c = server.client();
    let joined = c.join("r");
    let keys: Vec<String> = joined["props"].map().into_keys().collect();
    assert_eq!(keys, vec!["keep".to_string()]);
}

#[test]
fn compare_and_set_conflict_carries_the_current_ver() {
    let server = Server::start(&[]);
    let (mut a, mut b) = server.pair("r");
    a.send(msg! {"t" => "props", "rid" => 1u32, "room" => "r", "set" => msg! {"n" => bin("1")}});
    let ver = ok_and_props(&mut a, 1).0["ver"].u();
    b.expect("props");

    a.send(msg! {"t" => "props", "rid" => 2u32, "room" => "r",
    "set" => msg! {"n" => bin("stale")}, "expect" => ver - 1});
    let err = a.expect_err_rid("conflict", 2);
    assert_eq!(err["ver"].u(), ver, "conflict carries the current ver");
    b.expect_silence(SILENCE);

    a.send(msg! {"t" => "props", "rid" => 3u32, "room" => "r",
    "set" => msg! {"n" => bin("2")}, "expect" => ver});
    let (ok, props) = ok_and_props(&mut a, 3);
    assert!(ok["ver"].u() > ver);
    assert_eq!(props["set"]["n"].b(), b"2");
    assert_eq!(b.expect("props")["set"]["n"].b(), b"2");

    let mut c = server.client();
    assert_eq!(
        c.join("r")["props"]["n"].b(),
        b"2",
        "the stale write did not land"
    );
}

#[test]
fn two_writers_with_the_same_expect_only_one_wins() {
    let server = Server::start(&[]);
    let (mut a, mut b) = server.pair("r");
    let ver = b.join("r")["ver"].u();
    a.send(msg! {"t" => "props", "rid" => 1u32, "room" => "r", "set" => msg! {"w" => bin("a")}, "expect" => ver});
    let (ok, _) = ok_and_props(&mut a, 1);
    b.expect("props");
    b.send(msg! {"t" => "props", "rid" => 1u32, "room" => "r", "set" => msg! {"w" => bin("b")}, "expect" => ver});
    let err = b.expect_err_rid("conflict", 1);
    assert_eq!(err["ver"], ok["ver"]);
}

#[test]
fn props_total_size_is_limited_to_max_message() {
    let server = Server::start(&["--max-message", "4096"]);
    let (mut a, mut b) = server.pair("r");
    let big = vec![7u8; 3000];
    a.send(msg! {"t" => "props", "rid" => 1u32, "room" => "r", "set" => msg! {"one" => bin(&big)}});
    ok_and_props(&mut a, 1);
    b.expect("props");
    a.send(msg! {"t" => "props", "rid" => 2u32, "room" => "r", "set" => msg! {"two" => bin(&big)}});
    a.expect_err_rid("too_large", 2);
    b.expect_silence(SILENCE);
    let mut c = server.client();
    let joined = c.join("r");
    assert!(
        !joined["props"].has("two"),
        "the refused set did not land: {joined:?}"
    );
    a.expect("presence");
    // Replacing a value keeps the total under the limit and is fine.
    a.send(msg! {"t" => "props", "rid" => 3u32, "room" => "r", "set" => msg! {"one" => bin(&big[..2000])}});
    ok_and_props(&mut a, 3);
}

#[test]
fn props_by_non_member_is_not_member() {
    let server = Server::start(&[]);
    let (_a, mut b) = server.pair("r");
    let mut d = server.client();
    d.send(msg! {"t" => "props", "rid" => 6u32, "room" => "r", "set" => msg! {"k" => bin("v")}});
    d.expect_err_rid("not_member", 6);
    b.expect_silence(SILENCE);
}

#[test]
fn props_given_at_create_are_in_the_snapshot() {
    let server = Server::start(&[]);
    let mut a = server.client();
    let joined = a.create_with(
        msg! {"room" => "p", "props" => msg! {"mode" => bin("ctf"), "map" => bin([1u8, 2])}},
    );
    assert_eq!(joined["props"]["mode"].b(), b"ctf");
    assert_eq!(joined["props"]["map"].b(), [1u8, 2]);
}

/// PROTOCOL.md: "a `props` request that changes nothing (deleting an absent
/// key, setting a value a key already has) answers `ok` with the current
/// `ver` and sends no `props`". A set that changes some keys announces only
/// those (README), and `expect` is still checked first.
#[test]
fn a_props_request_that_changes_nothing_keeps_ver_and_is_not_broadcast() {
    let server = Server::start(&[]);
    let (mut a, mut b) = server.pair("r");
    let ver0 = b.join("r")["ver"].u();

    a.send(
        msg! {"t" => "props", "rid" => 1u32, "room" => "r", "set" => msg! {"absent" => Value::Nil}},
    );
    assert_eq!(a.expect("ok")["ver"].u(), ver0, "deleting an absent key");

    a.send(msg! {"t" => "props", "rid" => 2u32, "room" => "r", "set" => msg! {"k" => bin("v")}});
    let ver1 = ok_and_props(&mut a, 2).0["ver"].u();
    assert_eq!(ver1, ver0 + 1, "the next real change is ver + 1");
    let seen = b.expect("props");
    assert_eq!(
        seen["ver"].u(),
        ver1,
        "b saw no props for the no-op: {seen:?}"
    );

    a.send(msg! {"t" => "props", "rid" => 3u32, "room" => "r", "set" => msg! {"k" => bin("v")}});
    assert_eq!(
        a.expect("ok")["ver"].u(),
        ver1,
        "setting the value a key has"
    );
    a.send(msg! {"t" => "props", "rid" => 4u32, "room" => "r",
    "set" => msg! {"k" => bin("v"), "absent" => Value::Nil}, "expect" => ver1});
    assert_eq!(
        a.expect("ok")["ver"].u(),
        ver1,
        "a no-op with a matching expect"
    );
    a.send(msg! {"t" => "props", "rid" => 5u32, "room" => "r",
    "set" => msg! {"k" => bin("v")}, "expect" => ver0});
    let err = a.expect_err_rid("conflict", 5);
    assert_eq!(
        err["ver"].u(),
        ver1,
        "expect is checked before anything else"
    );

    // Some keys change: one ver, and only the changed keys are announced.
    a.send(msg! {"t" => "props", "rid" => 6u32, "room" => "r",
    "set" => msg! {"k" => bin("v"), "absent" => Value::Nil, "n" => bin("1")}});
    let (ok, props) = ok_and_props(&mut a, 6);
    assert_eq!(ok["ver"].u(), ver1 + 1);
    let keys: Vec<String> = props["set"].map().into_keys().collect();
    assert_eq!(keys, vec!["n".to_string()], "{props:?}");
    let seen = b.expect("props");
    assert_eq!(seen["ver"].u(), ver1 + 1, "{seen:?}");
    assert_eq!(seen["set"], props["set"]);

    let mut c = server.client();
    let joined = c.join("r");
    assert_eq!(joined["ver"].u(), ver1 + 1);
    let keys: Vec<String> = joined["props"].map().into_keys().collect();
    assert_eq!(keys, vec!["k".to_string(), "n".to_string()]);
}
