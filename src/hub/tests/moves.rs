//! Connections move to their room's home (see `hub::moves`): the first
//! `join`, `create` or `match` for a room homed on another worker takes the
//! session there, with its member id and token; resume finds it there; a
//! session that holds something, or that moved once, stays and forwards.

use serde_json::{json, Value};

use super::room_kit::{enqueue, expect_matched, ids, open, publish};
use super::*;

/// Bus messages a round of `pubs` messages in `room` (published by `c`)
/// costs, each read by every client in `readers`.
fn bus_cost(s: &mut Sim, c: C, room: &str, readers: &[C], pubs: u32) -> usize {
    let before = s.bus_msgs;
    for i in 0..pubs {
        publish(s, c, room, &format!("m{i}"));
        for &r in readers {
            let m = s.recv_type(r, "msg");
            assert_eq!(m["data"], format!("m{i}"), "{m}");
        }
    }
    s.bus_msgs - before
}

#[test]
fn a_first_join_moves_the_session_to_the_rooms_home() {
    let mut s = Sim::new(2);
    let room = name_on("far", 1, 2);
    let (a, a_id, _) = open(&mut s, 1);
    let (b, b_id, b_token) = open(&mut s, 0);
    s.create(a, &room);
    let joined = s.join(b, &room);
    assert_eq!(ids(&joined), vec![a_id, b_id], "the same member id");
    assert_eq!((s.clients[b].w, s.clients[b].moves), (1, 1));
    assert!(
        s.hubs[0].sessions.is_empty(),
        "nothing of it is left behind"
    );
    assert_eq!(s.hubs[0].moved.len(), 1, "its token's worker knows where");
    s.recv_type(a, "presence");
    // The room's traffic stays on its home.
    assert_eq!(bus_cost(&mut s, a, &room, &[b], 10), 0);
    assert_eq!(bus_cost(&mut s, b, &room, &[a], 10), 0);
    // Its token is the one `welcome` gave.
    let sid = s.clients[b].sid;
    assert_eq!(
        s.hubs[1].sessions.get(sid).map(|x| x.token_hex()),
        Some(b_token)
    );
}

#[test]
fn create_and_match_move_too_and_a_match_room_has_every_player_home() {
    let mut s = Sim::new(3);
    let room = name_on("made", 2, 3);
    let a = s.client(0);
    s.create(a, &room);
    assert_eq!(s.clients[a].w, 2, "create moves");
    let queue = name_on("queue", 1, 3);
    let players: Vec<C> = (0..3).map(|w| s.client(w)).collect();
    for &p in &players {
        enqueue(&mut s, p, 1, &queue, 3, 1000, 10_000);
    }
    s.advance(100);
    let mut rooms = Vec::new();
    for &p in &players {
        assert_eq!(s.clients[p].w, 1, "every player is on the queue's home");
        rooms.push(expect_matched(&mut s, p, &queue)["room"].clone());
    }
    assert!(rooms.iter().all(|r| *r == rooms[0]));
    let room = rooms[0].as_str().expect("a name").to_owned();
    assert_eq!(
        crate::hub::bus_msg::home(&room, 3),
        1,
        "the match room is homed there too"
    );
    for &p in &players {
        s.recv_type(p, "state");
    }
    let readers = &players[1..];
    assert_eq!(bus_cost(&mut s, players[0], &room, readers, 5), 0);
}

#[test]
fn requests_after_the_moving_one_run_there_in_order() {
    let mut s = Sim::new(2);
    let room = name_on("seq", 1, 2);
    let a = s.client(0);
    s.send(a, json!({"t": "create", "rid": 1, "room": room}));
    s.send(
        a,
        json!({"t": "pub", "rid": 2, "room": room, "data": "first"}),
    );
    assert_eq!(s.expect(a, "created")["rid"], 1);
    s.expect(a, "joined");
    let ok = s.expect(a, "ok");
    assert_eq!((ok["rid"].as_u64(), ok["seq"].as_u64()), (Some(2), Some(1)));
}

#[test]
fn a_session_with_a_seat_or_a_moved_one_stays_and_forwards() {
    let mut s = Sim::new(3);
    let (r0, r1, r2) = (name_on("a", 0, 3), name_on("b", 1, 3), name_on("c", 2, 3));
    let a = s.client(0);
    s.create(a, &r0);
    s.create(a, &r1);
    assert_eq!(s.clients[a].w, 0, "it holds a seat here: it stays");
    // A session that moved once does not move again, even with no seat
    // left: no connection goes back and forth between rooms.
    let b = s.client(0);
    let r1b = name_on("d", 1, 3);
    s.create(b, &r1b);
    assert_eq!(s.clients[b].w, 1);
    super::room_kit::leave(&mut s, b, &r1b);
    s.create(b, &r2);
    s.join(b, &r0);
    assert_eq!((s.clients[b].w, s.clients[b].moves), (1, 1));
    // Forwarded both ways, as before.
    s.clear(a);
    publish(&mut s, a, &r0, "to b");
    let m = s.recv_type(b, "msg");
    assert_eq!(m["data"], "to b");
}

#[test]
fn a_watcher_does_not_move() {
    let mut s = Sim::new(2);
    let room = name_on("show", 1, 2);
    let a = s.client(1);
    s.create(a, &room);
    let w = s.client(0);
    s.send(
        w,
        json!({"t": "join", "rid": 1, "room": room, "watch": true}),
    );
    s.recv_type(w, "joined");
    assert_eq!(s.clients[w].w, 0);
}

#[test]
fn a_move_that_cannot_happen_forwards_the_request() {
    let mut s = Sim::new(2);
    s.refuse_moves = true;
    let room = name_on("stay", 1, 2);
    let a = s.client(1);
    s.create(a, &room);
    let (b, b_id, _) = open(&mut s, 0);
    let joined = s.join(b, &room);
    assert_eq!(ids(&joined).last(), Some(&b_id));
    assert_eq!((s.clients[b].w, s.clients[b].moves), (0, 0));
    s.recv_type(a, "presence");
    assert!(bus_cost(&mut s, a, &room, &[b], 1) > 0, "forwarded");
}

/// Client `c`'s `resumed` with `rid`, and its `id`.
fn resumed(s: &mut Sim, c: C, rid: u32) -> Value {
    let r = s.recv_type(c, "resumed");
    assert_eq!(r["rid"], rid, "{r}");
    r
}

/// Three workers; `a` (on worker 1) created a room homed there, and `b`,
/// whose session worker 0 issued, joined it and moved to worker 1: the
/// simulation, the room, `a`, and `b` with its member id and token.
fn moved_member() -> (Sim, String, C, (C, u64, String)) {
    let mut s = Sim::with(3, |c| c.grace_ms = 60_000);
    let room = name_on("home", 1, 3);
    let a = s.client(1);
    s.create(a, &room);
    let b = open(&mut s, 0);
    s.join(b.0, &room);
    assert_eq!(s.clients[b.0].w, 1);
    (s, room, a, b)
}

#[test]
fn resume_finds_a_moved_session_from_every_worker() {
    let (mut s, room, a, (b, b_id, token)) = moved_member();
    s.clear(a);
    publish(&mut s, a, &room, "one");
    let mut seen = s.recv_type(b, "msg")["seq"].as_u64().unwrap_or(0);
    let mut cur = b;
    for w in [0, 2, 1] {
        s.disconnect(cur, CloseReason::Dropped);
        s.clear(a);
        publish(&mut s, a, &room, &format!("missed on {w}"));
        let b2 = s.client(w);
        s.send(
            b2,
            json!({"t": "hello", "rid": 9, "resume": token, "last": {room.clone(): seen}}),
        );
        let r = resumed(&mut s, b2, 9);
        assert_eq!(r["id"], b_id, "from worker {w}: {r}");
        let m = s.recv_type(b2, "msg");
        assert_eq!(m["data"], format!("missed on {w}"), "replayed: {m}");
        assert_eq!(s.clients[b2].w, 1, "the connection from {w} moved there");
        s.clear(a);
        publish(&mut s, a, &room, "live");
        let m = s.recv_type(b2, "msg");
        assert_eq!(m["data"], "live");
        seen = m["seq"].as_u64().unwrap_or(0);
        s.clear(a);
        cur = b2;
    }
}

#[test]
fn a_relayed_resume_is_passed_on_to_where_the_session_moved() {
    let (mut s, room, a, (b, b_id, token)) = moved_member();
    // Connections that cannot move: worker 2 asks 0, which issued the
    // token and passes the question on to 1; worker 1 asks 0 too, and
    // gets its own question back.
    s.refuse_moves = true;
    let mut cur = b;
    for w in [2, 1] {
        s.disconnect(cur, CloseReason::Dropped);
        let b2 = s.client(w);
        s.send(b2, json!({"t": "hello", "rid": 4, "resume": token}));
        let r = resumed(&mut s, b2, 4);
        assert_eq!(r["id"], b_id, "from worker {w}: {r}");
        assert_eq!(s.clients[b2].w, w, "it stayed");
        s.clear(a);
        publish(&mut s, a, &room, &format!("to {w}"));
        assert_eq!(s.recv_type(b2, "msg")["data"], format!("to {w}"));
        cur = b2;
    }
}

#[test]
fn the_issuing_worker_forgets_a_moved_session_once_it_ends_or_its_worker_is_lost() {
    let mut s = Sim::with(3, |c| c.grace_ms = 1000);
    let (r1, r2) = (name_on("one", 1, 3), name_on("two", 2, 3));
    let (b, _, token) = open(&mut s, 0);
    s.create(b, &r1);
    let c = s.client(0);
    s.create(c, &r2);
    assert_eq!(s.hubs[0].moved.len(), 2);
    s.disconnect(b, CloseReason::Dropped);
    s.advance(999);
    assert_eq!(s.hubs[0].moved.len(), 2, "resumable in its grace period");
    s.advance(20);
    assert_eq!(s.hubs[0].moved.len(), 1, "gone with its session");
    let b2 = s.client(2);
    s.send(b2, json!({"t": "hello", "rid": 1, "resume": token}));
    s.expect_err(b2, "not_found");
    // Worker 2 is lost: so are the sessions that lived there.
    s.lose(0, 2);
    assert!(s.hubs[0].moved.is_empty());
}

#[test]
fn a_restarted_issuing_worker_learns_again_where_its_sessions_are() {
    let mut s = Sim::new(2);
    let room = name_on("r", 1, 2);
    let (b, b_id, token) = open(&mut s, 0);
    s.create(b, &room);
    let key = *s.hubs[0].moved.keys().next().expect("an entry");
    // As after a restart of worker 0: it knows nothing, then its link is
    // up again.
    s.hubs[0].moved.clear();
    s.hubs[1].link_up(0);
    s.pump_all();
    assert_eq!(s.hubs[0].moved.get(&key), Some(&1));
    s.disconnect(b, CloseReason::Dropped);
    let b2 = s.client(0);
    s.send(b2, json!({"t": "hello", "rid": 2, "resume": token}));
    assert_eq!(resumed(&mut s, b2, 2)["id"], b_id);
}
