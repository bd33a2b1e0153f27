//! Rooms: create, join, leave, the `joined` snapshot, presence, ownership,
//! `?room=` on the upgrade URL, and `list`.

#[macro_use]
mod common;

use common::*;
use std::collections::BTreeMap;

#[test]
fn create_with_name_answers_created_then_joined() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.send(msg! {"t" => "create", "rid" => 1u32, "room" => "lobby"});
    let created = a.expect("created");
    assert_eq!(created["rid"].u(), 1);
    assert_eq!(created["room"].s(), "lobby");
    let joined = a.expect("joined");
    assert_eq!(joined["room"].s(), "lobby");
    assert_eq!(
        member_ids(&joined),
        vec![a.id],
        "the creator is the only member"
    );
    assert_eq!(joined["owner"].u(), a.id, "the creator owns the room");
    assert_eq!(
        joined["state"].s(),
        "waiting",
        "first member moves created -> waiting"
    );
    assert!(joined["props"].map().is_empty(), "no props: {joined:?}");
    assert!(matches!(joined["ver"], Value::UInt(_)), "ver: {joined:?}");
    assert_eq!(joined["seq"].u(), 0, "nothing published yet");
    a.expect_silence(SILENCE);
}

#[test]
fn create_without_name_picks_a_unique_one() {
    let server = Server::start(&[]);
    let mut a = server.client();
    let mut names = Vec::new();
    for _ in 0..3 {
        let joined = a.create_with(msg! {});
        let name = joined["room"].s().to_string();
        let hex = name
            .strip_prefix("r-")
            .unwrap_or_else(|| panic!("name {name:?}"));
        assert_eq!(hex.len(), 16, "r- then 16 hex digits: {name:?}");
        assert!(
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "lowercase hex: {name:?}"
        );
        names.push(name);
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "server-picked names are unique");
    // A server-picked name is a real room others can join.
    let mut b = server.client();
    let joined = b.join(&names[0]);
    assert_eq!(member_ids(&joined).len(), 2);
}

#[test]
fn create_existing_name_is_exists() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.create("lobby");
    let mut b = server.client();
    b.send(msg! {"t" => "create", "rid" => 9u32, "room" => "lobby"});
    b.expect_err_rid("exists", 9);
    // Nothing changed for the existing room.
    a.expect_silence(SILENCE);
    b.roundtrip();
}

#[test]
fn create_without_join_leaves_room_empty_in_created() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.send(msg! {"t" => "create", "rid" => 1u32, "room" => "empty", "join" => false});
    let created = a.expect("created");
    assert_eq!(created["room"].s(), "empty");
    a.expect_silence(SILENCE);
    let rooms = list(&mut a, msg! {});
    let r = &rooms["empty"];
    assert_eq!(r["members"].u(), 0);
    assert_eq!(r["state"].s(), "created");
    let mut b = server.client();
    let joined = b.join("empty");
    assert_eq!(member_ids(&joined), vec![b.id]);
    assert_eq!(joined["state"].s(), "waiting");
}

#[test]
fn join_unknown_room_is_not_found() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.send(msg! {"t" => "join", "rid" => 3u32, "room" => "nowhere"});
    a.expect_err_rid("not_found", 3);
}

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
fn hello_meta_is_shown_to_others_and_second_hello_is_bad_request() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.send(msg! {"t" => "hello", "meta" => bin("alice")});
    a.create("r");
    let mut b = server.client();
    b.send(msg! {"t" => "hello", "meta" => bin([0u8, 255, 1])});
    let joined = b.join("r");
    let members = joined["members"].arr();
    assert_eq!(members[0]["meta"].b(), b"alice");
    assert_eq!(members[1]["meta"].b(), [0u8, 255, 1]);
    let p = a.expect("presence");
    assert_eq!(p["join"]["meta"].b(), [0u8, 255, 1]);

    a.send(msg! {"t" => "hello", "rid" => 5u32, "meta" => bin("again")});
    a.expect_err_rid("bad_request", 5);
}

#[test]
fn leave_announces_and_then_not_member() {
    let server = Server::start(&[]);
    let (mut a, mut b) = server.pair("r");

    b.leave("r");
    let p = a.expect("presence");
    assert_eq!(p["room"].s(), "r");
    assert_eq!(p["leave"].u(), b.id);
    assert_eq!(p["why"].s(), "left");

    b.send(msg! {"t" => "leave", "rid" => 4u32, "room" => "r"});
    b.expect_err_rid("not_member", 4);
    b.send(msg! {"t" => "pub", "rid" => 5u32, "room" => "r", "data" => bin("x")});
    b.expect_err_rid("not_member", 5);
    a.expect_silence(SILENCE);
}

#[test]
fn joining_again_gives_a_fresh_snapshot_and_announces_nothing() {
    let server = Server::start(&[]);
    let (mut a, mut b) = server.pair("r");
    let again = b.join("r");
    assert_eq!(member_ids(&again), vec![a.id, b.id], "still seated once");
    a.expect_silence(SILENCE);
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

#[test]
fn ownership_passes_to_the_longest_seated_member() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.create("r");
    let mut b = server.client();
    b.join("r");
    let mut c = server.client();
    c.join("r");
    a.recv_type("presence");
    a.recv_type("presence");
    a.leave("r");
    let p = c.recv_until(|m| m.t() == "presence" && m.has("leave"));
    assert_eq!(p["leave"].u(), a.id);

    let mut d = server.client();
    let joined = d.join("r");
    assert_eq!(joined["owner"].u(), b.id, "b was seated longest");
    assert_eq!(member_ids(&joined), vec![b.id, c.id, d.id]);

    b.send(msg! {"t" => "state", "rid" => 2u32, "room" => "r", "to" => "playing"});
    let ok = b.recv_type("ok");
    assert_eq!(ok["rid"].u(), 2, "the new owner may change state");
}

#[test]
fn non_owner_after_handover_is_forbidden() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.create("r");
    let mut b = server.client();
    b.join("r");
    let mut c = server.client();
    c.join("r");
    a.recv_type("presence");
    a.recv_type("presence");
    a.leave("r");
    c.recv_until(|m| m.t() == "presence" && m.has("leave"));
    c.send(msg! {"t" => "state", "rid" => 1u32, "room" => "r", "to" => "playing"});
    c.expect_err_rid("forbidden", 1);
}

/// `list` with `filters`, as a map room name -> entry.
fn list(c: &mut Client, filters: Value) -> BTreeMap<String, Value> {
    let rid = c.rid();
    let mut m = vec![("t".into(), "list".into()), ("rid".into(), rid.into())];
    if let Value::Map(f) = filters {
        m.extend(f);
    }
    c.send(Value::Map(m));
    let rooms = c.expect("rooms");
    assert_eq!(rooms["rid"].u(), u64::from(rid));
    rooms["rooms"]
        .arr()
        .iter()
        .map(|r| (r["room"].s().to_string(), r.clone()))
        .collect()
}

fn names(rooms: &BTreeMap<String, Value>) -> Vec<&str> {
    rooms.keys().map(String::as_str).collect()
}

#[test]
fn list_shows_public_rooms_and_filters() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.create_with(msg! {"room" => "open", "max" => 4u32});
    a.create_with(msg! {"room" => "solo", "max" => 1u32});
    a.create_with(msg! {"room" => "secret", "private" => true});
    a.send(msg! {"t" => "create", "rid" => 99u32, "room" => "empty", "join" => false});
    a.expect("created");

    let mut b = server.client();
    let all = list(&mut b, msg! {});
    assert_eq!(
        names(&all),
        vec!["empty", "open", "solo"],
        "private rooms are hidden"
    );
    let open = &all["open"];
    assert_eq!(open["members"].u(), 1);
    assert_eq!(open["max"].u(), 4);
    assert_eq!(open["state"].s(), "waiting");
    assert_eq!(all["solo"]["max"].u(), 1);
    assert_eq!(all["empty"]["members"].u(), 0);
    assert_eq!(all["empty"]["max"].u(), 16, "default max");
    assert_eq!(all["empty"]["state"].s(), "created");

    let space = list(&mut b, msg! {"has_space" => true});
    assert_eq!(names(&space), vec!["empty", "open"]);
    let created = list(&mut b, msg! {"state" => "created"});
    assert_eq!(names(&created), vec!["empty"]);
    let waiting = list(&mut b, msg! {"state" => "waiting", "has_space" => true});
    assert_eq!(names(&waiting), vec!["open"]);
    let one = list(&mut b, msg! {"limit" => 1u32});
    assert_eq!(one.len(), 1, "limit caps the answer");

    // A private room is still joinable by name.
    let joined = b.join("secret");
    assert_eq!(member_ids(&joined), vec![a.id, b.id]);
}

#[test]
fn list_without_rid_still_answers() {
    let server = Server::start(&[]);
    let mut a = server.client();
    a.create("x");
    a.send(msg! {"t" => "list"});
    let rooms = a.expect("rooms");
    assert!(!rooms.has("rid"));
    assert_eq!(rooms["rooms"].arr().len(), 1);
}
