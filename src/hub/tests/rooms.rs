//! Rooms on one worker and across two: joins and presence, props, state,
//! idle rooms.

use serde_json::json;

use super::*;

#[test]
fn a_join_is_seen_by_the_members_already_there() {
    let mut s = Sim::new(1);
    let (a, b) = (s.client(0), s.client(0));
    let ja = s.create(a, "r");
    assert_eq!(ja["room"], "r");
    let jb = s.join(b, "r");
    assert_eq!(jb["members"].as_array().map(Vec::len), Some(2));
    let p = s.expect(a, "presence");
    assert_eq!(p["room"], "r");
    s.assert_silent(b);
}

#[test]
fn props_are_acknowledged_and_broadcast_with_one_ver() {
    let mut s = Sim::new(1);
    let (a, b) = s.pair("r");
    s.send(
        a,
        json!({"t": "props", "rid": 1, "room": "r", "set": {"color": "red"}}),
    );
    let ok = s.expect(a, "ok");
    let props = s.expect(a, "props");
    assert_eq!(ok["ver"], props["ver"]);
    assert_eq!(props["set"]["color"], "red");
    assert_eq!(s.expect(b, "props")["ver"], ok["ver"]);
}

#[test]
fn an_empty_room_closes_when_its_idle_time_is_up() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    s.send(
        a,
        json!({"t": "create", "rid": 1, "room": "r", "idle_ms": 1000, "join": false}),
    );
    s.expect(a, "created");
    s.advance(900);
    assert_eq!(s.hubs[0].rooms.len(), 1, "not yet");
    s.advance(200);
    assert_eq!(s.hubs[0].rooms.len(), 0, "idle past 1000 ms");
}

#[test]
fn a_room_on_another_worker_is_joined_through_its_home() {
    let mut s = Sim::new(2);
    let room = (0..100)
        .map(|i| format!("r{i}"))
        .find(|n| super::super::bus_msg::home(n, 2) == 1)
        .expect("a name homed on worker 1");
    let (a, b) = (s.client(0), s.client(1));
    s.create(a, &room);
    s.join(b, &room);
    s.expect(a, "presence");
    s.send(b, json!({"t": "pub", "room": room, "data": "hi"}));
    let m = s.expect(a, "msg");
    assert_eq!(m["data"], "hi");
    assert_eq!(s.hubs[1].rooms.len(), 1, "the room lives on its home");
    assert_eq!(s.hubs[0].rooms.len(), 0);
}

#[test]
fn a_dropped_member_is_away_then_back_when_it_resumes_within_grace() {
    let mut s = Sim::new(1);
    let (a, token) = s.client_token(0);
    let b = s.client(0);
    s.create(a, "r");
    s.join(b, "r");
    s.clear(a);
    s.disconnect(a, CloseReason::Dropped);
    let id = s.expect(b, "presence")["away"].clone();
    assert!(id.is_u64(), "away names the member");
    s.advance(1000);
    let a2 = s.resume(0, &token, json!({"r": 0}));
    let r = s.expect(a2, "resumed");
    assert_eq!(r["rid"], 1);
    assert_eq!(s.recv_type(b, "presence")["back"], id);
}
