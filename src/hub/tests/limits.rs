//! What a client sees when it hits a limit of the core: members (`full`),
//! rooms per connection (`forbidden`), meta size (`too_large`), room names
//! (`bad_request`), the request rate (`rate_limited`, 0 for unlimited), and
//! errors that do not count as bad requests.

use serde_json::json;

use super::room_kit::{create_with, err_rid, leave, roundtrip};
use super::*;

#[test]
fn max_members_makes_a_room_full() {
    let mut s = Sim::with(1, |c| c.max_members = 2);
    let a = s.client(0);
    s.create(a, "r"); // default max 16, lowered to max_members
    let b = s.client(0);
    s.join(b, "r");
    s.expect(a, "presence");
    let c = s.client(0);
    s.send(c, json!({"t": "join", "rid": 1, "room": "r"}));
    err_rid(&mut s, c, "full", 1);

    create_with(&mut s, a, json!({"room": "one", "max": 1}));
    s.send(c, json!({"t": "join", "rid": 2, "room": "one"}));
    err_rid(&mut s, c, "full", 2);

    // A seat freed is a seat available.
    leave(&mut s, b, "r");
    s.join(c, "r");
}

#[test]
fn create_max_above_the_server_limit_is_lowered() {
    let mut s = Sim::with(1, |c| c.max_members = 3);
    let a = s.client(0);
    create_with(&mut s, a, json!({"room": "big", "max": 1000}));
    create_with(&mut s, a, json!({"room": "zero", "max": 0}));
    s.send(a, json!({"t": "list", "rid": 1}));
    let rooms = s.expect(a, "rooms");
    let rooms = rooms["rooms"].as_array().expect("rooms");
    assert_eq!(rooms.len(), 2, "{rooms:?}");
    for r in rooms {
        assert_eq!(r["max"], 3, "{r}");
    }
}

#[test]
fn rooms_per_connection_is_forbidden_past_the_limit() {
    let mut s = Sim::with(1, |c| c.max_rooms_per_conn = 2);
    let other = s.client(0);
    s.create(other, "theirs");
    let a = s.client(0);
    s.create(a, "one");
    s.create(a, "two");
    s.send(a, json!({"t": "create", "rid": 50, "room": "three"}));
    err_rid(&mut s, a, "forbidden", 50);
    s.send(a, json!({"t": "join", "rid": 51, "room": "theirs"}));
    err_rid(&mut s, a, "forbidden", 51);
    s.assert_silent(other);
    leave(&mut s, a, "one");
    s.join(a, "theirs");
}

#[test]
fn meta_over_1_kib_is_too_large() {
    let mut s = Sim::new(1);
    let owner = s.client(0);
    s.create(owner, "r");

    let a = s.client(0);
    let big = "m".repeat(1025);
    s.send(a, json!({"t": "hello", "rid": 1, "meta": big}));
    err_rid(&mut s, a, "too_large", 1);

    let b = s.client(0);
    s.send(b, json!({"t": "join", "rid": 2, "room": "r", "meta": big}));
    err_rid(&mut s, b, "too_large", 2);
    s.assert_silent(owner);

    let kib = "m".repeat(1024);
    s.send(b, json!({"t": "join", "rid": 3, "room": "r", "meta": kib}));
    let joined = s.expect(b, "joined");
    assert_eq!(joined["members"][1]["meta"], kib, "1 KiB is allowed");
}

#[test]
fn bad_room_names_are_bad_request() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    let long = "a".repeat(65);
    let bad = ["", long.as_str(), "a b", "a/b", "é", "a\0b", "room!", "a,b"];
    let mut rid = 100u32;
    for name in bad {
        for t in ["create", "join"] {
            rid += 1;
            s.send(a, json!({"t": t, "rid": rid, "room": name}));
            let err = s.recv(a);
            assert_eq!(err["t"], "err", "{t} {name:?}: {err}");
            assert_eq!(err["code"], "bad_request", "{t} {name:?}: {err}");
            assert_eq!(err["rid"], rid);
        }
        // Stay under max_bad_requests: a success resets the count.
        roundtrip(&mut s, a);
    }
    let longest = "Z".repeat(64);
    s.create(a, &longest);
    s.create(a, "Az09._:-");
    assert_eq!(s.clients[a].closed, None);
}

#[test]
fn rate_limited_error_carries_the_rid() {
    let mut s = Sim::with(1, |c| {
        c.rate_limit = 5;
        c.max_bad_requests = 1000;
    });
    let a = s.client(0);
    for rid in 1..=15u32 {
        s.send(a, json!({"t": "ping", "rid": rid}));
    }
    let mut rids = Vec::new();
    for _ in 0..15 {
        let m = s.recv(a);
        assert!(m["t"] == "pong" || m["code"] == "rate_limited", "{m}");
        let rid = m
            .get("rid")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("every reply and error carries its rid: {m}"));
        rids.push(rid);
    }
    rids.sort();
    assert_eq!(rids, (1..=15).collect::<Vec<u64>>());
}

#[test]
fn errors_that_are_not_bad_requests_do_not_count() {
    let mut s = Sim::with(1, |c| c.max_bad_requests = 2);
    let a = s.client(0);
    for rid in 1..=5u32 {
        s.send(a, json!({"t": "join", "rid": rid, "room": "missing"}));
        err_rid(&mut s, a, "not_found", rid);
    }
    roundtrip(&mut s, a);
    assert_eq!(s.clients[a].closed, None);
}

#[test]
fn rate_limit_0_is_unlimited() {
    let mut s = Sim::with(1, |c| c.rate_limit = 0);
    let a = s.client(0);
    const N: u32 = 5000;
    for rid in 1..=N {
        s.send(a, json!({"t": "ping", "rid": rid}));
    }
    for rid in 1..=N {
        let m = s.recv(a);
        assert_eq!(m["t"], "pong", "request {rid} of a burst of {N}: {m}");
        assert_eq!(m["rid"], rid);
    }
}
