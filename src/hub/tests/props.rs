//! Room props: set, delete with nil, compare-and-set on `ver`, broadcast to
//! every member, and the size limit (moved from `tests/props.rs`).

use serde_json::{json, Value};

use super::room_kit::{create_with, err_rid, keys, member, ok_and, u};
use super::*;

/// Reads the `ok` (rid) and the `props` broadcast, in either order.
fn ok_and_props(s: &mut Sim, c: C, rid: u32) -> (Value, Value) {
    ok_and(s, c, "props", rid)
}

#[test]
fn set_is_acknowledged_and_broadcast_to_all_members() {
    let mut s = Sim::new(1);
    let (a, b) = s.pair("r");
    let ver0 = u(&s.join(b, "r"), "ver");

    s.send(
        a,
        json!({"t": "props", "rid": 1, "room": "r", "set": {"color": "red"}}),
    );
    let (ok, props) = ok_and_props(&mut s, a, 1);
    let ver1 = u(&ok, "ver");
    assert!(ver1 > ver0, "a change bumps ver ({ver0} -> {ver1})");
    assert_eq!(props["room"], "r");
    assert_eq!(props["set"]["color"], "red");

    let seen = s.expect(b, "props");
    assert_eq!(seen["set"]["color"], "red");
    assert_eq!(u(&seen, "ver"), ver1);

    let c = s.client(0);
    let joined = s.join(c, "r");
    assert_eq!(joined["props"]["color"], "red");
    assert_eq!(u(&joined, "ver"), ver1);
}

#[test]
fn any_member_may_set_and_without_rid_there_is_no_ok() {
    let mut s = Sim::new(1);
    let (a, b) = s.pair("r");
    s.send(b, json!({"t": "props", "room": "r", "set": {"k": "v"}}));
    let mine = s.expect(b, "props");
    assert_eq!(mine["set"]["k"], "v");
    let theirs = s.expect(a, "props");
    assert_eq!(theirs["ver"], mine["ver"]);
    s.assert_silent(b);
}

#[test]
fn nil_deletes_a_key() {
    let mut s = Sim::new(1);
    let (a, b) = s.pair("r");
    s.send(
        a,
        json!({"t": "props", "rid": 1, "room": "r", "set": {"keep": "1", "drop": "2"}}),
    );
    ok_and_props(&mut s, a, 1);
    s.expect(b, "props");
    s.send(
        a,
        json!({"t": "props", "rid": 2, "room": "r", "set": {"drop": null}}),
    );
    let (_, props) = ok_and_props(&mut s, a, 2);
    assert_eq!(
        props["set"].get("drop"),
        Some(&Value::Null),
        "nil is broadcast: {props}"
    );
    s.expect(b, "props");

    let c = s.client(0);
    let joined = s.join(c, "r");
    assert_eq!(keys(&joined["props"]), vec!["keep".to_string()]);
}

#[test]
fn compare_and_set_conflict_carries_the_current_ver() {
    let mut s = Sim::new(1);
    let (a, b) = s.pair("r");
    s.send(
        a,
        json!({"t": "props", "rid": 1, "room": "r", "set": {"n": "1"}}),
    );
    let ver = u(&ok_and_props(&mut s, a, 1).0, "ver");
    s.expect(b, "props");

    s.send(
        a,
        json!({"t": "props", "rid": 2, "room": "r", "set": {"n": "stale"}, "expect": ver - 1}),
    );
    let err = err_rid(&mut s, a, "conflict", 2);
    assert_eq!(u(&err, "ver"), ver, "conflict carries the current ver");
    s.assert_silent(b);

    s.send(
        a,
        json!({"t": "props", "rid": 3, "room": "r", "set": {"n": "2"}, "expect": ver}),
    );
    let (ok, props) = ok_and_props(&mut s, a, 3);
    assert!(u(&ok, "ver") > ver);
    assert_eq!(props["set"]["n"], "2");
    assert_eq!(s.expect(b, "props")["set"]["n"], "2");

    let c = s.client(0);
    assert_eq!(
        s.join(c, "r")["props"]["n"],
        "2",
        "the stale write did not land"
    );
}

#[test]
fn two_writers_with_the_same_expect_only_one_wins() {
    let mut s = Sim::new(1);
    let (a, b) = s.pair("r");
    let ver = u(&s.join(b, "r"), "ver");
    s.send(
        a,
        json!({"t": "props", "rid": 1, "room": "r", "set": {"w": "a"}, "expect": ver}),
    );
    let (ok, _) = ok_and_props(&mut s, a, 1);
    s.expect(b, "props");
    s.send(
        b,
        json!({"t": "props", "rid": 1, "room": "r", "set": {"w": "b"}, "expect": ver}),
    );
    let err = err_rid(&mut s, b, "conflict", 1);
    assert_eq!(err["ver"], ok["ver"]);
}

#[test]
fn props_total_size_is_limited_to_max_message() {
    let mut s = Sim::with(1, |c| c.max_message = 4096);
    let (a, b) = s.pair("r");
    let big = "x".repeat(3000);
    s.send(
        a,
        json!({"t": "props", "rid": 1, "room": "r", "set": {"one": big}}),
    );
    ok_and_props(&mut s, a, 1);
    s.expect(b, "props");
    s.send(
        a,
        json!({"t": "props", "rid": 2, "room": "r", "set": {"two": big}}),
    );
    err_rid(&mut s, a, "too_large", 2);
    s.assert_silent(b);
    let c = s.client(0);
    let joined = s.join(c, "r");
    assert!(
        joined["props"].get("two").is_none(),
        "the refused set did not land: {joined}"
    );
    s.expect(a, "presence");
    // Replacing a value keeps the total under the limit and is fine.
    s.send(
        a,
        json!({"t": "props", "rid": 3, "room": "r", "set": {"one": &big[..2000]}}),
    );
    ok_and_props(&mut s, a, 3);
}

#[test]
fn props_by_non_member_is_not_member() {
    let mut s = Sim::new(1);
    let (_a, b) = s.pair("r");
    let d = s.client(0);
    s.send(
        d,
        json!({"t": "props", "rid": 6, "room": "r", "set": {"k": "v"}}),
    );
    err_rid(&mut s, d, "not_member", 6);
    s.assert_silent(b);
}

#[test]
fn props_given_at_create_are_in_the_snapshot() {
    let mut s = Sim::new(1);
    let (a, _) = member(&mut s, 0);
    // [1, 2] as bytes: sent base64, valid UTF-8 so it comes back a string.
    let joined = create_with(
        &mut s,
        a,
        json!({"room": "p", "props": {"mode": "ctf", "map": {"data64": "AQI="}}}),
    );
    assert_eq!(joined["props"]["mode"], "ctf");
    assert_eq!(joined["props"]["map"], "\u{1}\u{2}");
}

/// PROTOCOL.md: "a `props` request that changes nothing (deleting an absent
/// key, setting a value a key already has) answers `ok` with the current
/// `ver` and sends no `props`". A set that changes some keys announces only
/// those (README), and `expect` is still checked first.
#[test]
fn a_props_request_that_changes_nothing_keeps_ver_and_is_not_broadcast() {
    let mut s = Sim::new(1);
    let (a, b) = s.pair("r");
    let ver0 = u(&s.join(b, "r"), "ver");

    s.send(
        a,
        json!({"t": "props", "rid": 1, "room": "r", "set": {"absent": null}}),
    );
    assert_eq!(u(&s.expect(a, "ok"), "ver"), ver0, "deleting an absent key");

    s.send(
        a,
        json!({"t": "props", "rid": 2, "room": "r", "set": {"k": "v"}}),
    );
    let ver1 = u(&ok_and_props(&mut s, a, 2).0, "ver");
    assert_eq!(ver1, ver0 + 1, "the next real change is ver + 1");
    let seen = s.expect(b, "props");
    assert_eq!(
        u(&seen, "ver"),
        ver1,
        "b saw no props for the no-op: {seen}"
    );

    s.send(
        a,
        json!({"t": "props", "rid": 3, "room": "r", "set": {"k": "v"}}),
    );
    assert_eq!(
        u(&s.expect(a, "ok"), "ver"),
        ver1,
        "setting the value a key has"
    );
    s.send(
        a,
        json!({"t": "props", "rid": 4, "room": "r",
               "set": {"k": "v", "absent": null}, "expect": ver1}),
    );
    assert_eq!(
        u(&s.expect(a, "ok"), "ver"),
        ver1,
        "a no-op with a matching expect"
    );
    s.send(
        a,
        json!({"t": "props", "rid": 5, "room": "r", "set": {"k": "v"}, "expect": ver0}),
    );
    let err = err_rid(&mut s, a, "conflict", 5);
    assert_eq!(
        u(&err, "ver"),
        ver1,
        "expect is checked before anything else"
    );

    // Some keys change: one ver, and only the changed keys are announced.
    s.send(
        a,
        json!({"t": "props", "rid": 6, "room": "r",
               "set": {"k": "v", "absent": null, "n": "1"}}),
    );
    let (ok, props) = ok_and_props(&mut s, a, 6);
    assert_eq!(u(&ok, "ver"), ver1 + 1);
    assert_eq!(keys(&props["set"]), vec!["n".to_string()], "{props}");
    let seen = s.expect(b, "props");
    assert_eq!(u(&seen, "ver"), ver1 + 1, "{seen}");
    assert_eq!(seen["set"], props["set"]);

    let c = s.client(0);
    let joined = s.join(c, "r");
    assert_eq!(u(&joined, "ver"), ver1 + 1);
    assert_eq!(
        keys(&joined["props"]),
        vec!["k".to_string(), "n".to_string()]
    );
}
