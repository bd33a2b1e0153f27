//! Rooms over a real socket: the `joined` snapshot and presence in msgpack,
//! and `?room=` on the upgrade URL. The room logic (create, join, leave,
//! ownership, `list`) is tested on the core in `src/hub/tests/joins.rs`.

#[macro_use]
mod common;

use common::*;

#[test]
fn joined_snapshot_and_presence_join() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.create_with(msg! {"room" => "r", "max" => 4u32, "props" => msg! {"k" => bin("v")}});
    let mut b = server.client();
    let rid = b.rid();
    b.send(msg! {"t" => "join", "rid" => rid, "room" => "r", "meta" => bin("bob")});
    let joined = b.expect("joined");
    assert_eq!(joined["rid"].u(), u64::from(rid));
    assert_eq!(
        member_ids(&joined),
        vec![a.id, b.id],
        "members in join order"
    );
    let members = joined["members"].arr();
    assert!(members[0]["meta"].is_nil(), "a has no meta: {joined:?}");
    assert_eq!(members[1]["meta"].b(), b"bob", "meta is bin: {joined:?}");
    assert_eq!(joined["owner"].u(), a.id);
    assert_eq!(joined["state"].s(), "waiting");
    assert_eq!(joined["props"]["k"].b(), b"v", "props are bin: {joined:?}");
    assert_eq!(joined["seq"].u(), 0);

    let p = a.expect("presence");
    assert_eq!(p["room"].s(), "r");
    assert_eq!(p["join"]["id"].u(), b.id);
    assert_eq!(p["join"]["meta"].b(), b"bob");
    b.expect_silence(SILENCE); // no presence about itself
}

#[test]
fn room_query_parameter_joins_after_welcome() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.create("r");
    let mut c = server.client_with("/ws?room=r", None);
    let joined = c.expect("joined");
    assert!(!joined.has("rid"), "a ?room= join has no rid: {joined:?}");
    assert_eq!(joined["room"].s(), "r");
    assert_eq!(member_ids(&joined), vec![a.id, c.id]);
    let p = a.expect("presence");
    assert_eq!(p["join"]["id"].u(), c.id);
}

#[test]
fn room_query_parameter_for_unknown_room_is_err_without_rid() {
    let server = Server::start(&[]);
    let mut c = server.client_with("/ws?room=missing", None);
    let err = c.expect_err("not_found");
    assert!(!err.has("rid"), "no rid on a ?room= failure: {err:?}");
    c.roundtrip(); // the connection goes on
}
