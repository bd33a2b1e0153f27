//! Rooms across workers: every room (and matchmaking queue) lives on its
//! home worker, clients on whichever worker their connection is on. Seen
//! from a client a room behaves as with one worker: presence, props and
//! state, unicast, a merged `list`, server-picked names homed on the
//! creator's worker, idle closing, the seat limit, matchmaking; and when a
//! worker is lost, its rooms are `closed` why `lost` and its clients go
//! through the grace period.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::room_kit::{
    create_with, enqueue, err_rid, expect_matched, ids, leave, list, listed, open, publish,
};
use super::*;
use crate::hub::bus_msg::home;

/// Messages sent by several clients before any is carried on: they race
/// as requests in flight together do.
fn send_together(s: &mut Sim, msgs: &[(C, Value)]) {
    for (c, v) in msgs {
        let text = v.to_string();
        let cl = &mut s.clients[*c];
        let h = &mut s.hubs[cl.w];
        h.on_message(
            (cl.conn, cl.sid, Proto::Json),
            &mut cl.rates,
            text.as_bytes(),
        );
    }
    s.pump();
}

/// Reads the reply to `rid` (`ok` or `err`) and one broadcast of type `t`,
/// in either order.
#[track_caller]
fn reply_and(s: &mut Sim, c: C, rid: u32, t: &str) -> (Value, Value) {
    let x = s.recv(c);
    let y = s.recv(c);
    let (reply, cast) = if x["t"] == t { (y, x) } else { (x, y) };
    assert!(
        reply["t"] == "ok" || reply["t"] == "err",
        "client {c}: a reply to rid {rid} and a {t:?}, got {reply} and {cast}"
    );
    assert_eq!(reply["rid"], rid, "{reply}");
    assert_eq!(cast["t"], t, "client {c}: {cast}");
    (reply, cast)
}

#[track_caller]
fn expect_presence(s: &mut Sim, c: C, room: &str, kind: &str, id: u64) -> Value {
    let p = s.expect(c, "presence");
    assert_eq!(p["room"], room, "client {c}: {p}");
    let got = if kind == "join" {
        &p["join"]["id"]
    } else {
        &p[kind]
    };
    assert_eq!(*got, id, "client {c}: presence {kind} of {id}: {p}");
    p
}

/// The room names of a `list` answer.
fn names(rooms: &BTreeMap<String, Value>) -> BTreeSet<String> {
    rooms.keys().cloned().collect()
}

// ---------------------------------------------------------------------------
// Presence

#[test]
fn presence_across_workers() {
    let mut s = Sim::with(2, |c| c.grace_ms = 300);
    for k in 0..2 {
        let room = name_on(&format!("room-pres{k}"), k, 2);
        let (a, a_id, _) = open(&mut s, 0);
        let (b, b_id, _) = open(&mut s, 1);
        let (c, c_id, _) = open(&mut s, 0);
        s.create(a, &room);

        // b (worker 1) joins with meta.
        s.send(
            b,
            json!({"t": "join", "rid": 4, "room": room, "meta": "bob"}),
        );
        let joined = s.expect(b, "joined");
        assert_eq!(joined["rid"], 4);
        assert_eq!(ids(&joined), vec![a_id, b_id], "{joined}");
        assert_eq!(joined["members"][1]["meta"], "bob");
        let p = expect_presence(&mut s, a, &room, "join", b_id);
        assert_eq!(p["join"]["meta"], "bob", "{p}");

        // c (worker 0) joins: both see it.
        let joined = s.join(c, &room);
        assert_eq!(ids(&joined), vec![a_id, b_id, c_id]);
        assert_eq!(joined["members"][1]["meta"], "bob");
        expect_presence(&mut s, a, &room, "join", c_id);
        expect_presence(&mut s, b, &room, "join", c_id);

        // b leaves and comes back.
        leave(&mut s, b, &room);
        for o in [a, c] {
            let p = expect_presence(&mut s, o, &room, "leave", b_id);
            assert_eq!(p["why"], "left", "{p}");
        }
        let joined = s.join(b, &room);
        assert_eq!(ids(&joined), vec![a_id, c_id, b_id]);
        expect_presence(&mut s, a, &room, "join", b_id);
        expect_presence(&mut s, c, &room, "join", b_id);

        // c (worker 0) drops: a (same worker) and b (other) see away, then
        // leave why disconnect once the grace period is over.
        s.disconnect(c, CloseReason::Dropped);
        expect_presence(&mut s, a, &room, "away", c_id);
        expect_presence(&mut s, b, &room, "away", c_id);
        s.advance(250);
        s.assert_silent(a);
        s.assert_silent(b);
        s.advance(100);
        for o in [a, b] {
            let p = expect_presence(&mut s, o, &room, "leave", c_id);
            assert_eq!(p["why"], "disconnect", "{p}");
        }

        // b (worker 1) drops: a sees away, then leave why disconnect.
        s.disconnect(b, CloseReason::Dropped);
        expect_presence(&mut s, a, &room, "away", b_id);
        s.advance(250);
        s.assert_silent(a);
        s.advance(100);
        let p = expect_presence(&mut s, a, &room, "leave", b_id);
        assert_eq!(p["why"], "disconnect", "{p}");
        s.assert_silent(a);

        // The room goes on: a newcomer finds only a there.
        let (d, d_id, _) = open(&mut s, 1);
        assert_eq!(ids(&s.join(d, &room)), vec![a_id, d_id]);
        expect_presence(&mut s, a, &room, "join", d_id);
    }
}

// ---------------------------------------------------------------------------
// Props and state

#[test]
fn props_and_state_across_workers() {
    let mut s = Sim::new(2);
    for k in 0..2usize {
        let room = name_on(&format!("room-ps{k}"), k as u32, 2);
        // The owner is on the other worker than the room; `other` on its home.
        let (owner, owner_id, _) = open(&mut s, 1 - k);
        let (other, other_id, _) = open(&mut s, k);
        s.create(owner, &room);
        let joined = s.join(other, &room);
        assert_eq!(joined["owner"], owner_id, "{joined}");
        let v0 = joined["ver"].as_u64().expect("ver");
        expect_presence(&mut s, owner, &room, "join", other_id);

        // CAS with the right `expect`, from the non-home worker.
        s.send(
            owner,
            json!({"t": "props", "rid": 10, "room": room, "set": {"color": "red"}, "expect": v0}),
        );
        let (ok, cast) = reply_and(&mut s, owner, 10, "props");
        assert_eq!(ok["t"], "ok", "{ok}");
        let v1 = ok["ver"].as_u64().expect("ver");
        assert!(v1 > v0, "a change bumps ver ({v0} -> {v1})");
        assert_eq!(cast["ver"], v1);
        let seen = s.expect(other, "props");
        assert_eq!(seen["room"], room);
        assert_eq!(seen["set"]["color"], "red");
        assert_eq!(seen["ver"], v1);

        // A stale `expect` from the home worker: conflict with the current ver.
        s.send(
            other,
            json!({"t": "props", "rid": 11, "room": room, "set": {"color": "blue"}, "expect": v0}),
        );
        let err = err_rid(&mut s, other, "conflict", 11);
        assert_eq!(err["ver"], v1, "conflict carries the current ver: {err}");
        s.assert_silent(owner);

        // Both workers race with the same `expect`: one wins, the other gets
        // conflict with the winner's ver; both see the winner's change.
        send_together(
            &mut s,
            &[
                (
                    owner,
                    json!({"t": "props", "rid": 12, "room": room, "set": {"who": "owner"}, "expect": v1}),
                ),
                (
                    other,
                    json!({"t": "props", "rid": 13, "room": room, "set": {"who": "other"}, "expect": v1}),
                ),
            ],
        );
        let (ya, ca) = reply_and(&mut s, owner, 12, "props");
        let (yb, cb) = reply_and(&mut s, other, 13, "props");
        assert_eq!(ca, cb, "one change, seen alike on both workers");
        let (win, lose, winner) = if ya["t"] == "ok" && yb["t"] == "err" {
            (ya, yb, "owner")
        } else if ya["t"] == "err" && yb["t"] == "ok" {
            (yb, ya, "other")
        } else {
            panic!("exactly one CAS wins: {ya} / {yb}")
        };
        let v2 = win["ver"].as_u64().expect("ver");
        assert!(v2 > v1);
        assert_eq!(lose["code"], "conflict", "{lose}");
        assert_eq!(lose["ver"], v2, "{lose}");
        assert_eq!(ca["ver"], v2);
        assert_eq!(ca["set"]["who"], winner);

        // null deletes, from the home worker.
        s.send(
            other,
            json!({"t": "props", "rid": 14, "room": room, "set": {"color": null}, "expect": v2}),
        );
        let (ok, _) = reply_and(&mut s, other, 14, "props");
        assert_eq!(ok["t"], "ok", "{ok}");
        let v3 = ok["ver"].as_u64().expect("ver");
        let seen = s.expect(owner, "props");
        let set = seen["set"].as_object().expect("set");
        assert!(set.get("color").is_some_and(Value::is_null), "{seen}");
        assert_eq!(seen["ver"], v3);

        // A newcomer's snapshot has it all.
        let (third, third_id, _) = open(&mut s, 1 - k);
        let joined = s.join(third, &room);
        assert_eq!(joined["ver"], v3);
        let props = joined["props"].as_object().expect("props");
        assert_eq!(props.keys().collect::<Vec<_>>(), vec!["who"], "{joined}");
        assert_eq!(props["who"], winner);
        expect_presence(&mut s, owner, &room, "join", third_id);
        expect_presence(&mut s, other, &room, "join", third_id);

        // State: the owner (not on the home) changes it; everyone sees it.
        s.send(
            owner,
            json!({"t": "state", "rid": 15, "room": room, "to": "playing"}),
        );
        let (ok, cast) = reply_and(&mut s, owner, 15, "state");
        assert_eq!(ok["t"], "ok", "{ok}");
        let v4 = ok["ver"].as_u64().expect("ver");
        assert!(v4 > v3);
        assert_eq!(cast["state"], "playing");
        assert_eq!(cast["ver"], v4);
        for o in [other, third] {
            let st = s.expect(o, "state");
            assert_eq!(st["room"], room);
            assert_eq!(st["state"], "playing");
            assert_eq!(st["ver"], v4);
        }

        // Not the owner: forbidden, on the home and off it.
        for o in [other, third] {
            s.send(
                o,
                json!({"t": "state", "rid": 16, "room": room, "to": "settling"}),
            );
            err_rid(&mut s, o, "forbidden", 16);
        }
        // An illegal transition.
        s.send(
            owner,
            json!({"t": "state", "rid": 17, "room": room, "to": "waiting"}),
        );
        err_rid(&mut s, owner, "invalid_state", 17);
        s.assert_silent(other);

        // Closing from off the home: everyone gets `closed` why owner.
        s.send(
            owner,
            json!({"t": "state", "rid": 18, "room": room, "to": "closed"}),
        );
        let mut got: Vec<String> = (0..3)
            .map(|_| s.recv(owner)["t"].as_str().unwrap_or_default().to_string())
            .collect();
        got.sort();
        assert_eq!(got, vec!["closed", "ok", "state"]);
        for o in [other, third] {
            assert_eq!(s.expect(o, "state")["state"], "closed");
            let closed = s.expect(o, "closed");
            assert_eq!(closed["room"], room);
            assert_eq!(closed["why"], "owner");
        }
        s.send(third, json!({"t": "join", "rid": 19, "room": room}));
        err_rid(&mut s, third, "not_found", 19);
    }
}

// ---------------------------------------------------------------------------
// Unicast

#[test]
fn send_between_workers() {
    let mut s = Sim::new(2);
    for k in 0..2 {
        let room = name_on(&format!("room-uni{k}"), k, 2);
        let (a, a_id, _) = open(&mut s, 0);
        let (b, b_id, _) = open(&mut s, 1);
        let (c, c_id, _) = open(&mut s, 0);
        s.create(a, &room);
        s.join(b, &room);
        expect_presence(&mut s, a, &room, "join", b_id);
        s.join(c, &room);
        expect_presence(&mut s, a, &room, "join", c_id);
        expect_presence(&mut s, b, &room, "join", c_id);

        // 0 -> 1, with a rid; bytes that are not UTF-8 go as `data64`.
        s.send(
            a,
            json!({"t": "send", "rid": 20, "room": room, "to": b_id, "data64": "BwD/"}),
        );
        let ok = s.expect(a, "ok");
        assert_eq!(ok["rid"], 20);
        assert!(ok.get("seq").is_none(), "{ok}");
        let m = s.expect(b, "msg");
        assert_eq!(m["room"], room);
        assert_eq!(m["from"], a_id);
        assert_eq!(m["to"], b_id);
        assert_eq!(m["data64"], "BwD/", "[7, 0, 0xff]: {m}");
        assert!(m.get("seq").is_none(), "unicast has no seq: {m}");

        // 1 -> 0, without a rid: no ok.
        s.send(
            b,
            json!({"t": "send", "room": room, "to": c_id, "data": "hi c"}),
        );
        let m = s.expect(c, "msg");
        assert_eq!(m["from"], b_id);
        assert_eq!(m["to"], c_id);
        assert_eq!(m["data"], "hi c");
        s.send(
            b,
            json!({"t": "send", "room": room, "to": a_id, "data": "hi a"}),
        );
        let m = s.expect(a, "msg");
        assert_eq!(m["from"], b_id);
        assert_eq!(m["data"], "hi a");
        s.assert_silent(b);
        s.assert_silent(c);

        // Unicast does not use up the room's seq.
        assert_eq!(publish(&mut s, a, &room, "p"), 1);
        assert_eq!(s.expect(b, "msg")["seq"], 1);
        assert_eq!(s.expect(c, "msg")["seq"], 1);

        // Not a member: someone on the other worker in another room, an id
        // nobody has, and b after it left.
        let (d, d_id, _) = open(&mut s, 1);
        s.create(d, &name_on(&format!("room-uni-else{k}"), 0, 2));
        s.send(
            a,
            json!({"t": "send", "rid": 21, "room": room, "to": d_id, "data": "x"}),
        );
        err_rid(&mut s, a, "not_member", 21);
        s.send(
            a,
            json!({"t": "send", "rid": 22, "room": room, "to": u64::MAX - 1, "data": "x"}),
        );
        err_rid(&mut s, a, "not_member", 22);
        leave(&mut s, b, &room);
        expect_presence(&mut s, a, &room, "leave", b_id);
        expect_presence(&mut s, c, &room, "leave", b_id);
        s.send(
            a,
            json!({"t": "send", "rid": 23, "room": room, "to": b_id, "data": "x"}),
        );
        err_rid(&mut s, a, "not_member", 23);
        // And the sender must be a member.
        s.send(
            b,
            json!({"t": "send", "rid": 24, "room": room, "to": a_id, "data": "x"}),
        );
        err_rid(&mut s, b, "not_member", 24);
        s.assert_silent(a);
        s.assert_silent(d);
    }
}

// ---------------------------------------------------------------------------
// list

/// On each worker k: an open room (1 member of 4), an empty one (`join:
/// false`), a full one (1 of 1) and a private one, each created from the
/// next worker. `list` from every worker shows exactly the public ones.
fn list_merged(n: u32) {
    let mut s = Sim::new(n as usize);
    let by: Vec<C> = (0..n as usize).map(|w| s.client(w)).collect();
    let mut public = BTreeSet::new();
    let mut open = BTreeSet::new();
    let mut empty = BTreeSet::new();
    let mut full = BTreeSet::new();
    for k in 0..n {
        let creator = by[((k + 1) % n) as usize];
        let name = name_on(&format!("room-open{k}"), k, n);
        create_with(&mut s, creator, json!({"room": name, "max": 4}));
        open.insert(name.clone());
        public.insert(name);

        let name = name_on(&format!("room-empty{k}"), k, n);
        s.send(
            creator,
            json!({"t": "create", "rid": 30, "room": name, "join": false}),
        );
        assert_eq!(s.expect(creator, "created")["room"], name);
        empty.insert(name.clone());
        public.insert(name);

        let name = name_on(&format!("room-full{k}"), k, n);
        create_with(&mut s, creator, json!({"room": name, "max": 1}));
        full.insert(name.clone());
        public.insert(name);

        let name = name_on(&format!("room-secret{k}"), k, n);
        create_with(&mut s, creator, json!({"room": name, "private": true}));
    }

    for (w, &c) in by.iter().enumerate() {
        let all = list(&mut s, c, json!({}));
        assert_eq!(
            names(&all),
            public,
            "list from worker {w}: every public room of every worker, no private one"
        );
        for r in all.values() {
            let name = r["room"].as_str().expect("room");
            if open.contains(name) {
                assert_eq!(r["members"], 1, "{r}");
                assert_eq!(r["max"], 4, "{r}");
                assert_eq!(r["state"], "waiting", "{r}");
            } else if empty.contains(name) {
                assert_eq!(r["members"], 0, "{r}");
                assert_eq!(r["max"], 16, "{r}");
                assert_eq!(r["state"], "created", "{r}");
            } else {
                assert_eq!(r["members"], 1, "{r}");
                assert_eq!(r["max"], 1, "{r}");
            }
        }

        for limit in [1usize, 3, public.len() - 1] {
            let some = list(&mut s, c, json!({"limit": limit}));
            assert_eq!(
                some.len(),
                limit,
                "list from worker {w} with limit {limit}: {some:?}"
            );
            assert!(names(&some).is_subset(&public), "{some:?}");
        }
        let big = list(&mut s, c, json!({"limit": 1000}));
        assert_eq!(names(&big), public);

        let space = list(&mut s, c, json!({"has_space": true}));
        let want: BTreeSet<String> = public.difference(&full).cloned().collect();
        assert_eq!(names(&space), want, "has_space from worker {w}");
        let created = list(&mut s, c, json!({"state": "created"}));
        assert_eq!(names(&created), empty, "state created from worker {w}");
    }
}

#[test]
fn list_merges_every_worker_with_two_workers() {
    list_merged(2);
}

#[test]
fn list_merges_every_worker_with_three_workers() {
    list_merged(3);
}

// ---------------------------------------------------------------------------
// create without a name

fn picked_names_are_homed_on_the_creator(n: u32) {
    let mut s = Sim::new(n as usize);
    let by: Vec<(C, u64)> = (0..n as usize)
        .map(|w| {
            let (c, id, _) = open(&mut s, w);
            (c, id)
        })
        .collect();
    let mut seen = BTreeSet::new();
    for k in 0..n {
        for _ in 0..3 {
            let (c, id) = by[k as usize];
            let joined = create_with(&mut s, c, json!({}));
            let name = joined["room"].as_str().expect("room").to_string();
            assert_eq!(ids(&joined), vec![id]);
            assert_eq!(
                home(&name, n),
                k,
                "{name:?} was created on worker {k} of {n}; its home must be there"
            );
            assert!(seen.insert((name, k)), "server-picked names are unique");
        }
    }
    let distinct: BTreeSet<&String> = seen.iter().map(|(s, _)| s).collect();
    assert_eq!(
        distinct.len(),
        seen.len(),
        "unique across workers: {seen:?}"
    );

    // They are real rooms, joined from another worker.
    for (name, k) in &seen {
        let (joiner, joiner_id) = by[((k + 1) % n) as usize];
        let (creator, creator_id) = by[*k as usize];
        let joined = s.join(joiner, name);
        assert_eq!(ids(&joined), vec![creator_id, joiner_id]);
        expect_presence(&mut s, creator, name, "join", joiner_id);
    }
}

#[test]
fn create_without_name_is_homed_on_the_creator_two_workers() {
    picked_names_are_homed_on_the_creator(2);
}

#[test]
fn create_without_name_is_homed_on_the_creator_three_workers() {
    picked_names_are_homed_on_the_creator(3);
}

// ---------------------------------------------------------------------------
// Idle closing

#[test]
fn idle_room_homed_on_the_other_worker_is_closed() {
    let mut s = Sim::with(2, |c| c.idle_ms = 200);
    for k in 0..2usize {
        let (a, a_id, _) = open(&mut s, 1 - k);
        let room = name_on(&format!("room-idle{k}"), k as u32, 2);
        s.create(a, &room);
        // With a member it stays.
        s.advance(500);
        s.assert_silent(a);
        assert!(listed(&mut s, a, &room));
        leave(&mut s, a, &room);
        s.advance(150);
        assert!(listed(&mut s, a, &room), "{room} (home {k}) not idle yet");
        s.advance(100);
        assert!(
            !listed(&mut s, a, &room),
            "{room} (home {k}) closed after idle"
        );
        s.send(a, json!({"t": "join", "rid": 40, "room": room}));
        err_rid(&mut s, a, "not_found", 40);

        // A room created without joining, from the other worker, too.
        let lonely = name_on(&format!("room-idle-nj{k}"), k as u32, 2);
        s.send(
            a,
            json!({"t": "create", "rid": 41, "room": lonely, "join": false}),
        );
        s.expect(a, "created");
        s.advance(250);
        assert!(
            !listed(&mut s, a, &lonely),
            "{lonely} (home {k}) closed after idle"
        );
        let (b, b_id, _) = open(&mut s, k);
        s.send(b, json!({"t": "join", "rid": 42, "room": lonely}));
        err_rid(&mut s, b, "not_found", 42);

        // Both names can be taken again.
        let joined = s.create(a, &room);
        assert_eq!(joined["seq"], 0);
        assert_eq!(ids(&s.join(b, &room)), vec![a_id, b_id]);
        expect_presence(&mut s, a, &room, "join", b_id);
        s.create(b, &lonely);
    }
}

// ---------------------------------------------------------------------------
// Seat limit

#[test]
fn seat_limit_counts_rooms_on_every_worker() {
    let mut s = Sim::with(2, |c| c.max_rooms_per_conn = 2);
    let maker = s.client(0);
    let mut rooms = Vec::new(); // rooms[worker] = [x, y]
    for k in 0..2 {
        let pair: Vec<String> = ["x", "y"]
            .iter()
            .map(|p| name_on(&format!("room-seat-{p}"), k, 2))
            .collect();
        for r in &pair {
            s.send(
                maker,
                json!({"t": "create", "rid": 50, "room": r, "join": false}),
            );
            assert_eq!(s.expect(maker, "created")["room"], *r);
        }
        rooms.push(pair);
    }
    let fresh = |w: u32, id: u64| name_on(&format!("room-seat-new{id}"), w, 2);

    for w in 0..2usize {
        let (local, remote) = (&rooms[w], &rooms[1 - w]);
        let (a, a_id, _) = open(&mut s, w);

        // Both seats in rooms homed on the other worker: a local join or
        // create is over the limit.
        s.join(a, &remote[0]);
        s.join(a, &remote[1]);
        s.send(a, json!({"t": "join", "rid": 51, "room": local[0]}));
        err_rid(&mut s, a, "forbidden", 51);
        let here = fresh(w as u32, a_id);
        s.send(a, json!({"t": "create", "rid": 52, "room": here}));
        err_rid(&mut s, a, "forbidden", 52);
        let there = fresh(1 - w as u32, a_id);
        s.send(a, json!({"t": "create", "rid": 53, "room": there}));
        err_rid(&mut s, a, "forbidden", 53);

        // One seat on each worker: still full, whichever the third is homed on.
        leave(&mut s, a, &remote[1]);
        s.join(a, &local[0]);
        for r in [&local[1], &remote[1]] {
            s.send(a, json!({"t": "join", "rid": 54, "room": r}));
            err_rid(&mut s, a, "forbidden", 54);
        }

        // Both seats local: a remote join is over the limit.
        leave(&mut s, a, &remote[0]);
        s.join(a, &local[1]);
        s.send(a, json!({"t": "join", "rid": 55, "room": remote[0]}));
        err_rid(&mut s, a, "forbidden", 55);

        // Leaving frees a seat for a room on the other worker.
        leave(&mut s, a, &local[0]);
        s.join(a, &remote[0]);
        leave(&mut s, a, &remote[0]);
        leave(&mut s, a, &local[1]);
    }
    s.assert_silent(maker);
}

// ---------------------------------------------------------------------------
// Matchmaking

#[test]
fn match_pairs_players_on_different_workers() {
    let mut s = Sim::new(2);
    for k in 0..2 {
        let queue = name_on(&format!("duel{k}"), k, 2);
        let (a, a_id, _) = open(&mut s, 0);
        let (b, b_id, _) = open(&mut s, 1);
        enqueue(&mut s, a, 60, &queue, 2, 1500, 5000);
        enqueue(&mut s, b, 60, &queue, 2, 1500, 5000);
        s.advance(10);
        let ja = expect_matched(&mut s, a, &queue);
        let jb = expect_matched(&mut s, b, &queue);
        assert_eq!(ja["room"], jb["room"], "one room for both");
        let room = ja["room"].as_str().expect("room").to_string();
        let last = if ids(&ja).len() == 2 { &ja } else { &jb };
        let mut ids = ids(last);
        ids.sort_unstable();
        let mut want = vec![a_id, b_id];
        want.sort_unstable();
        assert_eq!(ids, want, "the room holds both players: {ja} / {jb}");
        for c in [a, b] {
            let st = s.recv_type(c, "state");
            assert_eq!(st["room"], room);
            assert_eq!(st["state"], "playing", "{st}");
        }
        // They talk across workers.
        assert_eq!(publish(&mut s, a, &room, "gg"), 1);
        let m = s.expect(b, "msg");
        assert_eq!(m["from"], a_id);
        assert_eq!(m["data"], "gg");
        assert_eq!(publish(&mut s, b, &room, "wp"), 2);
        assert_eq!(s.expect(a, "msg")["data"], "wp");
    }
}

/// Queue places count against `max_rooms_per_conn` wherever the queue is
/// homed (README "Matchmaking"): two places in queues homed on the other
/// worker fill a limit of 2, and so do a seat and one far place. The counts
/// come back down as places end (`unmatch`, `match_timeout`).
#[test]
fn queue_places_on_another_worker_count_against_the_room_limit() {
    let mut s = Sim::with(2, |c| c.max_rooms_per_conn = 2);
    let far: Vec<String> = (0..)
        .map(|i| format!("far-queue-{i}"))
        .filter(|q| home(q, 2) == 1)
        .take(3)
        .collect();
    let a = s.client(0);
    enqueue(&mut s, a, 60, &far[0], 2, 1500, 60_000);
    enqueue(&mut s, a, 60, &far[1], 2, 1500, 60_000);
    for room in [name_on("places-here", 0, 2), name_on("places-there", 1, 2)] {
        s.send(a, json!({"t": "create", "rid": 61, "room": room}));
        err_rid(&mut s, a, "forbidden", 61);
    }
    s.send(
        a,
        json!({"t": "match", "rid": 62, "queue": far[2], "size": 2}),
    );
    err_rid(&mut s, a, "forbidden", 62);
    // Leaving one place frees it.
    s.send(a, json!({"t": "unmatch", "rid": 63, "queue": far[0]}));
    assert_eq!(s.expect(a, "ok")["rid"], 63);
    s.create(a, &name_on("places-seat", 0, 2));

    // A seat and one far place: a second far place is over the limit.
    let b = s.client(0);
    s.create(b, &name_on("places-b", 0, 2));
    enqueue(&mut s, b, 60, &far[0], 2, 9000, 60_000);
    s.send(
        b,
        json!({"t": "match", "rid": 64, "queue": far[1], "size": 2, "rating": 9000}),
    );
    err_rid(&mut s, b, "forbidden", 64);

    // A place that times out frees its count too.
    let c = s.client(0);
    s.create(c, &name_on("places-c", 0, 2));
    enqueue(&mut s, c, 60, &far[2], 2, -9000, 100);
    s.advance(150);
    assert_eq!(s.expect(c, "match_timeout")["queue"], far[2]);
    enqueue(&mut s, c, 60, &far[2], 2, -9000, 60_000);
}

/// PROTOCOL.md `match`: a group whose players are on every worker is
/// seated at once. Each player's `matched` and `joined` list all of them,
/// and none gets a `presence` join for another.
#[test]
fn a_match_across_workers_arrives_whole() {
    let mut s = Sim::new(3);
    let queue = name_on("trio", 1, 3);
    let players: Vec<(C, u64)> = (0..3)
        .map(|k| {
            let (c, id, _) = open(&mut s, k);
            (c, id)
        })
        .collect();
    for &(p, _) in &players {
        enqueue(&mut s, p, 60, &queue, 3, 1500, 5000);
    }
    s.advance(10);
    let mut want: Vec<u64> = players.iter().map(|p| p.1).collect();
    want.sort_unstable();
    for &(p, _) in &players {
        let j = expect_matched(&mut s, p, &queue);
        let mut ids = ids(&j);
        ids.sort_unstable();
        assert_eq!(ids, want, "{j}");
        let st = s.expect(p, "state");
        assert_eq!(st["state"], "playing", "no presence before it: {st}");
    }
    for &(p, _) in &players {
        s.assert_silent(p);
    }
}

// ---------------------------------------------------------------------------
// Losing a worker

#[test]
fn worker_loss_closes_its_rooms_and_its_clients_go_through_grace() {
    let mut s = Sim::with(2, |c| {
        c.grace_ms = 300;
        c.create_rate = 0;
        // Sessions with seats on both workers: a connection stays.
        c.no_moves = true;
    });
    let r0 = name_on("room", 0, 2);
    let r1 = name_on("room", 1, 2);
    let (a, a_id, _) = open(&mut s, 0);
    let (d, d_id, _) = open(&mut s, 0);
    let (b, b_id, _) = open(&mut s, 1);
    s.create(a, &r0);
    s.join(b, &r0);
    expect_presence(&mut s, a, &r0, "join", b_id);
    s.join(d, &r0);
    expect_presence(&mut s, a, &r0, "join", d_id);
    expect_presence(&mut s, b, &r0, "join", d_id);
    s.create(b, &r1);
    s.join(a, &r1);
    expect_presence(&mut s, b, &r1, "join", a_id);
    assert_eq!(publish(&mut s, a, &r1, "before"), 1);
    assert_eq!(s.expect(b, "msg")["data"], "before");

    // Worker 0 loses worker 1 (and the other way round).
    s.lose(0, 1);

    // a: r1 (homed on the lost worker) is lost; in r0 b is away, then gone
    // after the grace period.
    let (mut closed, mut away, mut leave) = (false, false, false);
    for step in [0, 250, 100] {
        s.advance(step);
        while let Some(m) = s.clients[a].inbox.pop_front() {
            let room = m["room"].as_str().unwrap_or_default().to_string();
            if m["t"] == "closed" && room == r1 {
                assert_eq!(m["why"], "lost", "{m}");
                assert!(!closed, "closed twice: {m}");
                closed = true;
            } else if m["t"] == "presence" && room == r0 && m.get("away").is_some() {
                assert_eq!(m["away"], b_id, "{m}");
                assert!(!away, "away twice: {m}");
                away = true;
            } else if m["t"] == "presence" && room == r0 && m.get("leave").is_some() {
                assert_eq!(m["leave"], b_id, "{m}");
                assert_eq!(m["why"], "disconnect", "{m}");
                assert!(away, "away comes before leave: {m}");
                assert_eq!(step, 100, "leave after the grace period: {m}");
                leave = true;
            } else {
                panic!("a: unexpected {m} after the loss");
            }
        }
    }
    assert!(
        closed && away && leave,
        "closed {closed} away {away} leave {leave}"
    );
    expect_presence(&mut s, d, &r0, "away", b_id);
    let p = expect_presence(&mut s, d, &r0, "leave", b_id);
    assert_eq!(p["why"], "disconnect");

    // r0, homed on the survivor, keeps working.
    assert_eq!(publish(&mut s, a, &r0, "still here"), 1);
    let m = s.expect(d, "msg");
    assert_eq!(m["seq"], 1);
    assert_eq!(m["data"], "still here");
}

/// A request forwarded to a room's home that does not answer (stopped) is
/// answered `internal` with its `rid` after `--peer-timeout-ms`, once;
/// what the home sends when it goes on still arrives.
#[test]
fn a_request_to_a_stopped_home_is_answered_at_the_deadline() {
    let mut s = Sim::with(2, |c| {
        c.peer_timeout_ms = 1000;
        c.no_moves = true;
    });
    let room = name_on("stalled", 1, 2);
    let a = s.client(0);
    s.create(a, &room);
    s.stop(1);
    s.send(a, json!({"t": "pub", "rid": 7, "room": room, "data": "x"}));
    s.advance(999);
    s.assert_silent(a);
    s.advance(1);
    let e = s.expect_err(a, "internal");
    assert_eq!(e["rid"], 7);
    s.advance(5000);
    s.assert_silent(a);
    s.cont(1);
    let late = s.expect(a, "ok");
    assert_eq!(late["rid"], 7, "the home's own answer, late");
    // The link goes on: the next request is answered by the home in time.
    s.send(a, json!({"t": "pub", "rid": 8, "room": room, "data": "y"}));
    assert_eq!(s.expect(a, "ok")["rid"], 8);
    s.advance(2000);
    s.assert_silent(a);
}

/// A request that expired is not answered again when its home is lost.
#[test]
fn an_expired_request_is_not_answered_twice_when_the_home_is_lost() {
    let mut s = Sim::with(2, |c| {
        c.peer_timeout_ms = 1000;
        c.no_moves = true;
    });
    let room = name_on("doomed", 1, 2);
    let a = s.client(0);
    s.create(a, &room);
    s.stop(1);
    s.send(
        a,
        json!({"t": "props", "rid": 3, "room": room, "set": {"k": "v"}}),
    );
    s.advance(1000);
    assert_eq!(s.expect_err(a, "internal")["rid"], 3);
    s.lose(0, 1);
    assert_eq!(s.expect(a, "closed")["why"], "lost");
    s.assert_silent(a);
}
