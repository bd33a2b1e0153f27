//! Rooms: create, join, leave, the `joined` snapshot, presence, ownership
//! and `list` (moved from `tests/rooms.rs`).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::room_kit::{
    create_with, err_rid, ids, join_rid, leave, list, member, recv_until, roundtrip,
};
use super::*;

#[test]
fn create_with_name_answers_created_then_joined() {
    let mut s = Sim::new(1);
    let (a, a_id) = member(&mut s, 0);
    s.send(a, json!({"t": "create", "rid": 1, "room": "lobby"}));
    let created = s.expect(a, "created");
    assert_eq!(created["rid"], 1);
    assert_eq!(created["room"], "lobby");
    let joined = s.expect(a, "joined");
    assert_eq!(joined["room"], "lobby");
    assert_eq!(ids(&joined), vec![a_id], "the creator is the only member");
    assert_eq!(joined["owner"], a_id, "the creator owns the room");
    assert_eq!(
        joined["state"], "waiting",
        "first member moves created -> waiting"
    );
    assert_eq!(joined["props"], json!({}), "no props: {joined}");
    assert!(joined["ver"].is_u64(), "ver: {joined}");
    assert_eq!(joined["seq"], 0, "nothing published yet");
    s.assert_silent(a);
}

#[test]
fn create_without_name_picks_a_unique_one() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    let mut names = Vec::new();
    for _ in 0..3 {
        let joined = create_with(&mut s, a, json!({}));
        let name = joined["room"].as_str().expect("a name").to_owned();
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
    let b = s.client(0);
    let joined = s.join(b, &names[0]);
    assert_eq!(ids(&joined).len(), 2);
}

#[test]
fn create_existing_name_is_exists() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    s.create(a, "lobby");
    let b = s.client(0);
    s.send(b, json!({"t": "create", "rid": 9, "room": "lobby"}));
    err_rid(&mut s, b, "exists", 9);
    // Nothing changed for the existing room.
    s.assert_silent(a);
    roundtrip(&mut s, b);
}

#[test]
fn create_without_join_leaves_room_empty_in_created() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    s.send(
        a,
        json!({"t": "create", "rid": 1, "room": "empty", "join": false}),
    );
    let created = s.expect(a, "created");
    assert_eq!(created["room"], "empty");
    s.assert_silent(a);
    let rooms = list(&mut s, a, json!({}));
    let r = &rooms["empty"];
    assert_eq!(r["members"], 0);
    assert_eq!(r["state"], "created");
    let (b, b_id) = member(&mut s, 0);
    let joined = s.join(b, "empty");
    assert_eq!(ids(&joined), vec![b_id]);
    assert_eq!(joined["state"], "waiting");
}

#[test]
fn join_unknown_room_is_not_found() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    s.send(a, json!({"t": "join", "rid": 3, "room": "nowhere"}));
    err_rid(&mut s, a, "not_found", 3);
}

#[test]
fn joined_snapshot_and_presence_join() {
    let mut s = Sim::new(1);
    let (a, a_id) = member(&mut s, 0);
    create_with(
        &mut s,
        a,
        json!({"room": "r", "max": 4, "props": {"k": "v"}}),
    );
    let (b, b_id) = member(&mut s, 0);
    s.send(
        b,
        json!({"t": "join", "rid": 2, "room": "r", "meta": "bob"}),
    );
    let joined = s.expect(b, "joined");
    assert_eq!(joined["rid"], 2);
    assert_eq!(ids(&joined), vec![a_id, b_id], "members in join order");
    let members = &joined["members"];
    assert!(
        members[0].get("meta").is_none_or(Value::is_null),
        "a has no meta: {joined}"
    );
    assert_eq!(members[1]["meta"], "bob", "{joined}");
    assert_eq!(joined["owner"], a_id);
    assert_eq!(joined["state"], "waiting");
    assert_eq!(joined["props"]["k"], "v", "{joined}");
    assert_eq!(joined["seq"], 0);

    let p = s.expect(a, "presence");
    assert_eq!(p["room"], "r");
    assert_eq!(p["join"]["id"], b_id);
    assert_eq!(p["join"]["meta"], "bob");
    s.assert_silent(b); // no presence about itself
}

#[test]
fn hello_meta_is_shown_to_others_and_second_hello_is_bad_request() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    s.send(a, json!({"t": "hello", "meta": "alice"}));
    s.create(a, "r");
    let b = s.client(0);
    // [0, 255, 1] is no UTF-8: sent and shown as meta64.
    s.send(b, json!({"t": "hello", "meta64": "AP8B"}));
    let joined = s.join(b, "r");
    let members = &joined["members"];
    assert_eq!(members[0]["meta"], "alice");
    assert_eq!(members[1]["meta64"], "AP8B", "{joined}");
    let p = s.expect(a, "presence");
    assert_eq!(p["join"]["meta64"], "AP8B", "{p}");

    s.send(a, json!({"t": "hello", "rid": 5, "meta": "again"}));
    err_rid(&mut s, a, "bad_request", 5);
}

#[test]
fn leave_announces_and_then_not_member() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    s.create(a, "r");
    let (b, b_id) = member(&mut s, 0);
    s.join(b, "r");
    s.expect(a, "presence");

    leave(&mut s, b, "r");
    let p = s.expect(a, "presence");
    assert_eq!(p["room"], "r");
    assert_eq!(p["leave"], b_id);
    assert_eq!(p["why"], "left");

    s.send(b, json!({"t": "leave", "rid": 4, "room": "r"}));
    err_rid(&mut s, b, "not_member", 4);
    s.send(b, json!({"t": "pub", "rid": 5, "room": "r", "data": "x"}));
    err_rid(&mut s, b, "not_member", 5);
    s.assert_silent(a);
}

#[test]
fn joining_again_gives_a_fresh_snapshot_and_announces_nothing() {
    let mut s = Sim::new(1);
    let (a, a_id) = member(&mut s, 0);
    s.create(a, "r");
    let (b, b_id) = member(&mut s, 0);
    s.join(b, "r");
    s.expect(a, "presence");
    let again = join_rid(&mut s, b, "r", 2);
    assert_eq!(ids(&again), vec![a_id, b_id], "still seated once");
    s.assert_silent(a);
}

/// `a` creates "r", then `b` and `c` join, and `a` leaves (seen by `c`):
/// `b` and `c` with their ids.
fn handover(s: &mut Sim) -> ((C, u64), (C, u64)) {
    let (a, a_id) = member(s, 0);
    s.create(a, "r");
    let b = member(s, 0);
    s.join(b.0, "r");
    let c = member(s, 0);
    s.join(c.0, "r");
    s.recv_type(a, "presence");
    s.recv_type(a, "presence");
    leave(s, a, "r");
    let p = recv_until(s, c.0, |m| m["t"] == "presence" && m.get("leave").is_some());
    assert_eq!(p["leave"], a_id);
    (b, c)
}

#[test]
fn ownership_passes_to_the_longest_seated_member() {
    let mut s = Sim::new(1);
    let ((b, b_id), (_, c_id)) = handover(&mut s);

    let (d, d_id) = member(&mut s, 0);
    let joined = s.join(d, "r");
    assert_eq!(joined["owner"], b_id, "b was seated longest");
    assert_eq!(ids(&joined), vec![b_id, c_id, d_id]);

    s.send(
        b,
        json!({"t": "state", "rid": 2, "room": "r", "to": "playing"}),
    );
    let ok = s.recv_type(b, "ok");
    assert_eq!(ok["rid"], 2, "the new owner may change state");
}

#[test]
fn non_owner_after_handover_is_forbidden() {
    let mut s = Sim::new(1);
    let (_, (c, _)) = handover(&mut s);
    s.send(
        c,
        json!({"t": "state", "rid": 1, "room": "r", "to": "playing"}),
    );
    err_rid(&mut s, c, "forbidden", 1);
}

fn names(rooms: &BTreeMap<String, Value>) -> Vec<&str> {
    rooms.keys().map(String::as_str).collect()
}

#[test]
fn list_shows_public_rooms_and_filters() {
    let mut s = Sim::new(1);
    let (a, a_id) = member(&mut s, 0);
    create_with(&mut s, a, json!({"room": "open", "max": 4}));
    create_with(&mut s, a, json!({"room": "solo", "max": 1}));
    create_with(&mut s, a, json!({"room": "secret", "private": true}));
    s.send(
        a,
        json!({"t": "create", "rid": 99, "room": "empty", "join": false}),
    );
    s.expect(a, "created");

    let (b, b_id) = member(&mut s, 0);
    let all = list(&mut s, b, json!({}));
    assert_eq!(
        names(&all),
        vec!["empty", "open", "solo"],
        "private rooms are hidden"
    );
    let open = &all["open"];
    assert_eq!(open["members"], 1);
    assert_eq!(open["max"], 4);
    assert_eq!(open["state"], "waiting");
    assert_eq!(all["solo"]["max"], 1);
    assert_eq!(all["empty"]["members"], 0);
    assert_eq!(all["empty"]["max"], 16, "default max");
    assert_eq!(all["empty"]["state"], "created");

    let space = list(&mut s, b, json!({"has_space": true}));
    assert_eq!(names(&space), vec!["empty", "open"]);
    let created = list(&mut s, b, json!({"state": "created"}));
    assert_eq!(names(&created), vec!["empty"]);
    let waiting = list(&mut s, b, json!({"state": "waiting", "has_space": true}));
    assert_eq!(names(&waiting), vec!["open"]);
    let one = list(&mut s, b, json!({"limit": 1}));
    assert_eq!(one.len(), 1, "limit caps the answer");

    // A private room is still joinable by name.
    let joined = s.join(b, "secret");
    assert_eq!(ids(&joined), vec![a_id, b_id]);
}

#[test]
fn list_without_rid_still_answers() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    s.create(a, "x");
    s.send(a, json!({"t": "list"}));
    let rooms = s.expect(a, "rooms");
    assert!(rooms.get("rid").is_none());
    assert_eq!(rooms["rooms"].as_array().map(Vec::len), Some(1));
}
