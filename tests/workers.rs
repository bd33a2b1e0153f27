//! Several workers (`--workers N`): a supervisor with N worker processes on
//! one port. Every room (and matchmaking queue) lives on its home worker,
//! `roomd::bus::home(name, n)`; clients sit on whichever worker their
//! connection landed on (`welcome.worker`). Seen from the outside a room
//! behaves as with one worker: one gapless `seq` order for every member,
//! presence, props and state, unicast, a merged `list`, server-picked names
//! homed on the creator's worker, idle closing, the seat limit, matchmaking;
//! and when a worker dies, its rooms are `lost`, its clients go through the
//! grace period, and it comes back.

#[macro_use]
mod common;

use common::*;
use roomd::bus::home;
use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// Reads the reply to `rid` (`ok` or `err`) and one broadcast of type `t`,
/// in either order.
#[track_caller]
fn reply_and(c: &mut Client, rid: u32, t: &str) -> (Value, Value) {
    let x = c.recv();
    let y = c.recv();
    let (reply, cast) = if x.t() == t { (y, x) } else { (x, y) };
    assert!(
        matches!(reply.t(), "ok" | "err"),
        "client {}: a reply to rid {rid} and a {t:?}, got {reply:?} and {cast:?}",
        c.id
    );
    assert_eq!(reply["rid"].u(), u64::from(rid), "{reply:?}");
    assert_eq!(cast.t(), t, "client {}: {cast:?}", c.id);
    (reply, cast)
}

#[track_caller]
fn expect_presence(c: &mut Client, room: &str, kind: &str, id: u64) -> Value {
    let p = c.expect("presence");
    assert_eq!(p["room"].s(), room, "client {}: {p:?}", c.id);
    let got = if kind == "join" {
        p["join"]["id"].u()
    } else {
        p[kind].u()
    };
    assert_eq!(got, id, "client {}: presence {kind} of {id}: {p:?}", c.id);
    p
}

/// The names in a `list` answer (asserting none is listed twice).
#[track_caller]
fn list(c: &mut Client, filters: Value) -> Vec<Value> {
    let rid = c.rid();
    let mut m = vec![("t".into(), "list".into()), ("rid".into(), rid.into())];
    if let Value::Map(f) = filters {
        m.extend(f);
    }
    c.send(Value::Map(m));
    let rooms = c.expect("rooms");
    assert_eq!(rooms["rid"].u(), u64::from(rid));
    let rooms = rooms["rooms"].arr().to_vec();
    let names: BTreeSet<&str> = rooms.iter().map(|r| r["room"].s()).collect();
    assert_eq!(names.len(), rooms.len(), "a room listed twice: {rooms:?}");
    rooms
}

fn names(rooms: &[Value]) -> BTreeSet<String> {
    rooms.iter().map(|r| r["room"].s().to_string()).collect()
}

// ---------------------------------------------------------------------------
// Ordering

const PER_PUBLISHER: usize = 100;

/// Every client of `clients` is in `room`; the clients at `publishers`
/// publish PER_PUBLISHER messages each (with echo), all at once, while every
/// client reads. Checks one gapless order for all, each publisher's messages
/// in its send order, and nothing more.
fn publish_round(clients: Vec<Client>, room: &str, publishers: &[usize]) -> Vec<Client> {
    let total = PER_PUBLISHER * publishers.len();
    let ids: Vec<u64> = clients.iter().map(|c| c.id).collect();
    let go = Arc::new(Barrier::new(publishers.len()));
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let p = publishers.iter().position(|&x| x == i);
            let go = go.clone();
            let room = room.to_string();
            thread::spawn(move || {
                if let Some(p) = p {
                    go.wait();
                    for j in 0..PER_PUBLISHER {
                        c.send(msg! {
                            "t" => "pub", "room" => room.as_str(),
                            "data" => bin(format!("p{p}-{j:03}")), "echo" => true,
                        });
                    }
                }
                let mut got = Vec::with_capacity(total);
                while got.len() < total {
                    let m = c.recv();
                    match m.t() {
                        "msg" => {
                            assert_eq!(m["room"].s(), room, "client {}: {m:?}", c.id);
                            got.push((m["seq"].u(), m["from"].u(), m["data"].b().to_vec()));
                        }
                        // Late joins of the setup.
                        "presence" => {}
                        _ => panic!("client {}: unexpected {m:?}", c.id),
                    }
                }
                // Exactly once: nothing after the last one.
                c.expect_silence(SILENCE);
                (c, got)
            })
        })
        .collect();
    let mut clients = Vec::new();
    let mut seen = Vec::new();
    for h in handles {
        let (c, got) = h.join().expect("a client thread panicked (see above)");
        clients.push(c);
        seen.push(got);
    }

    let first = &seen[0];
    let seqs: Vec<u64> = first.iter().map(|m| m.0).collect();
    let want: Vec<u64> = (1..=total as u64).collect();
    assert_eq!(seqs, want, "client {}: seq 1..={total} with no gap", ids[0]);
    for (i, got) in seen.iter().enumerate().skip(1) {
        if let Some(at) = (0..total).find(|&j| got[j] != first[j]) {
            panic!(
                "room {room}: client {} (#{i}) differs from client {} at #{at}: {:?} vs {:?}",
                ids[i], ids[0], got[at], first[at]
            );
        }
    }
    for (p, &at) in publishers.iter().enumerate() {
        let mine: Vec<String> = first
            .iter()
            .filter(|m| m.1 == ids[at])
            .map(|m| String::from_utf8_lossy(&m.2).into_owned())
            .collect();
        let sent: Vec<String> = (0..PER_PUBLISHER).map(|j| format!("p{p}-{j:03}")).collect();
        assert_eq!(mine, sent, "publisher {p} ({}) in its send order", ids[at]);
    }
    let from: BTreeSet<u64> = first.iter().map(|m| m.1).collect();
    let pubs: BTreeSet<u64> = publishers.iter().map(|&i| ids[i]).collect();
    assert_eq!(from, pubs, "every msg is from a publisher");
    clients
}

/// 12 clients spread evenly over `n` workers, one room homed on each worker
/// in turn (created from the next worker), three publishers on different
/// workers (worker 0 twice when n is 2).
fn ordering(n: u32) {
    let server = start_workers(n, &[]);
    let per = 12usize.div_ceil(n as usize);
    let mut clients: Vec<Client> = spread(&server, n, per).into_iter().flatten().collect();
    // clients[w * per + i] is the i-th client on worker w.
    let publishers: Vec<usize> = (0..3)
        .map(|p| (p % n as usize) * per + p / n as usize)
        .collect();
    for k in 0..n {
        let room = name_on(&format!("room-order{k}"), k, n);
        let creator = ((k + 1) % n) as usize * per;
        clients[creator].create(&room);
        for (i, c) in clients.iter_mut().enumerate() {
            if i != creator {
                let joined = c.join(&room);
                assert_eq!(joined["seq"].u(), 0, "{joined:?}");
            }
        }
        clients = publish_round(clients, &room, &publishers);
    }
}

#[test]
fn one_order_for_everyone_with_two_workers() {
    ordering(2);
}

#[test]
fn one_order_for_everyone_with_three_workers() {
    ordering(3);
}

// ---------------------------------------------------------------------------
// Presence

#[test]
fn presence_across_workers() {
    let server = start_workers(2, &["--grace-ms", "300"]);
    for k in 0..2 {
        let room = name_on(&format!("room-pres{k}"), k, 2);
        let mut a = client_on(&server, 0);
        let mut b = client_on(&server, 1);
        let mut c = client_on(&server, 0);
        a.create(&room);

        // b (worker 1) joins with meta.
        let rid = b.rid();
        b.send(msg! {"t" => "join", "rid" => rid, "room" => room.as_str(), "meta" => bin("bob")});
        let joined = b.expect("joined");
        assert_eq!(joined["rid"].u(), u64::from(rid));
        assert_eq!(member_ids(&joined), vec![a.id, b.id], "{joined:?}");
        assert_eq!(joined["members"][1]["meta"].b(), b"bob");
        let p = expect_presence(&mut a, &room, "join", b.id);
        assert_eq!(p["join"]["meta"].b(), b"bob", "{p:?}");

        // c (worker 0) joins: both see it.
        let joined = c.join(&room);
        assert_eq!(member_ids(&joined), vec![a.id, b.id, c.id]);
        assert_eq!(joined["members"][1]["meta"].b(), b"bob");
        expect_presence(&mut a, &room, "join", c.id);
        expect_presence(&mut b, &room, "join", c.id);

        // b leaves and comes back.
        b.leave(&room);
        for o in [&mut a, &mut c] {
            let p = expect_presence(o, &room, "leave", b.id);
            assert_eq!(p["why"].s(), "left", "{p:?}");
        }
        let joined = b.join(&room);
        assert_eq!(member_ids(&joined), vec![a.id, c.id, b.id]);
        expect_presence(&mut a, &room, "join", b.id);
        expect_presence(&mut c, &room, "join", b.id);

        // c (worker 0) drops: a (same worker) and b (other) see away, then
        // leave why disconnect once the grace period is over.
        let cid = c.id;
        let dropped = Instant::now();
        c.drop_tcp();
        expect_presence(&mut a, &room, "away", cid);
        expect_presence(&mut b, &room, "away", cid);
        for o in [&mut a, &mut b] {
            let p = expect_presence(o, &room, "leave", cid);
            assert_eq!(p["why"].s(), "disconnect", "{p:?}");
        }
        assert!(
            dropped.elapsed() >= Duration::from_millis(250),
            "leave after the grace period, not {:?}",
            dropped.elapsed()
        );

        // b (worker 1) drops: a sees away, then leave why disconnect.
        let bid = b.id;
        let dropped = Instant::now();
        b.drop_tcp();
        expect_presence(&mut a, &room, "away", bid);
        let p = expect_presence(&mut a, &room, "leave", bid);
        assert_eq!(p["why"].s(), "disconnect", "{p:?}");
        assert!(dropped.elapsed() >= Duration::from_millis(250));
        a.expect_silence(SILENCE);

        // The room goes on: a newcomer finds only a there.
        let mut d = client_on(&server, 1);
        assert_eq!(member_ids(&d.join(&room)), vec![a.id, d.id]);
        expect_presence(&mut a, &room, "join", d.id);
    }
}

// ---------------------------------------------------------------------------
// Props and state

#[test]
fn props_and_state_across_workers() {
    let server = start_workers(2, &[]);
    for k in 0..2 {
        let room = name_on(&format!("room-ps{k}"), k, 2);
        // The owner is on the other worker than the room; `other` on its home.
        let mut owner = client_on(&server, 1 - k);
        let mut other = client_on(&server, k);
        owner.create(&room);
        let joined = other.join(&room);
        assert_eq!(joined["owner"].u(), owner.id, "{joined:?}");
        let v0 = joined["ver"].u();
        expect_presence(&mut owner, &room, "join", other.id);

        // CAS with the right `expect`, from the non-home worker.
        let rid = owner.rid();
        owner.send(msg! {
            "t" => "props", "rid" => rid, "room" => room.as_str(),
            "set" => msg! {"color" => bin("red")}, "expect" => v0,
        });
        let (ok, cast) = reply_and(&mut owner, rid, "props");
        assert_eq!(ok.t(), "ok", "{ok:?}");
        let v1 = ok["ver"].u();
        assert!(v1 > v0, "a change bumps ver ({v0} -> {v1})");
        assert_eq!(cast["ver"].u(), v1);
        let seen = other.expect("props");
        assert_eq!(seen["room"].s(), room);
        assert_eq!(seen["set"]["color"].b(), b"red");
        assert_eq!(seen["ver"].u(), v1);

        // A stale `expect` from the home worker: conflict with the current ver.
        let rid = other.rid();
        other.send(msg! {
            "t" => "props", "rid" => rid, "room" => room.as_str(),
            "set" => msg! {"color" => bin("blue")}, "expect" => v0,
        });
        let err = other.expect_err_rid("conflict", rid);
        assert_eq!(
            err["ver"].u(),
            v1,
            "conflict carries the current ver: {err:?}"
        );
        owner.expect_silence(SILENCE);

        // Both workers race with the same `expect`: one wins, the other gets
        // conflict with the winner's ver; both see the winner's change.
        let ra = owner.rid();
        let rb = other.rid();
        owner.send(msg! {
            "t" => "props", "rid" => ra, "room" => room.as_str(),
            "set" => msg! {"who" => bin("owner")}, "expect" => v1,
        });
        other.send(msg! {
            "t" => "props", "rid" => rb, "room" => room.as_str(),
            "set" => msg! {"who" => bin("other")}, "expect" => v1,
        });
        let (ya, ca) = reply_and(&mut owner, ra, "props");
        let (yb, cb) = reply_and(&mut other, rb, "props");
        assert_eq!(ca, cb, "one change, seen alike on both workers");
        let (win, lose, winner) = match (ya.t(), yb.t()) {
            ("ok", "err") => (ya, yb, "owner"),
            ("err", "ok") => (yb, ya, "other"),
            _ => panic!("exactly one CAS wins: {ya:?} / {yb:?}"),
        };
        let v2 = win["ver"].u();
        assert!(v2 > v1);
        assert_eq!(lose["code"].s(), "conflict", "{lose:?}");
        assert_eq!(lose["ver"].u(), v2, "{lose:?}");
        assert_eq!(ca["ver"].u(), v2);
        assert_eq!(ca["set"]["who"].b(), winner.as_bytes());

        // nil deletes, from the home worker.
        let rid = other.rid();
        other.send(msg! {
            "t" => "props", "rid" => rid, "room" => room.as_str(),
            "set" => msg! {"color" => Value::Nil}, "expect" => v2,
        });
        let (ok, _) = reply_and(&mut other, rid, "props");
        assert_eq!(ok.t(), "ok", "{ok:?}");
        let v3 = ok["ver"].u();
        let seen = owner.expect("props");
        assert!(seen["set"]["color"].is_nil(), "{seen:?}");
        assert_eq!(seen["ver"].u(), v3);

        // A newcomer's snapshot has it all.
        let mut third = client_on(&server, 1 - k);
        let joined = third.join(&room);
        assert_eq!(joined["ver"].u(), v3);
        let props = joined["props"].map();
        assert_eq!(props.keys().collect::<Vec<_>>(), vec!["who"], "{joined:?}");
        assert_eq!(props["who"].b(), winner.as_bytes());
        expect_presence(&mut owner, &room, "join", third.id);
        expect_presence(&mut other, &room, "join", third.id);

        // State: the owner (not on the home) changes it; everyone sees it.
        let rid = owner.rid();
        owner.send(msg! {"t" => "state", "rid" => rid, "room" => room.as_str(), "to" => "playing"});
        let (ok, cast) = reply_and(&mut owner, rid, "state");
        assert_eq!(ok.t(), "ok", "{ok:?}");
        let v4 = ok["ver"].u();
        assert!(v4 > v3);
        assert_eq!(cast["state"].s(), "playing");
        assert_eq!(cast["ver"].u(), v4);
        for o in [&mut other, &mut third] {
            let st = o.expect("state");
            assert_eq!(st["room"].s(), room);
            assert_eq!(st["state"].s(), "playing");
            assert_eq!(st["ver"].u(), v4);
        }

        // Not the owner: forbidden, on the home and off it.
        for o in [&mut other, &mut third] {
            let rid = o.rid();
            o.send(
                msg! {"t" => "state", "rid" => rid, "room" => room.as_str(), "to" => "settling"},
            );
            o.expect_err_rid("forbidden", rid);
        }
        // An illegal transition.
        let rid = owner.rid();
        owner.send(msg! {"t" => "state", "rid" => rid, "room" => room.as_str(), "to" => "waiting"});
        owner.expect_err_rid("invalid_state", rid);
        other.expect_silence(SILENCE);

        // Closing from off the home: everyone gets `closed` why owner.
        let rid = owner.rid();
        owner.send(msg! {"t" => "state", "rid" => rid, "room" => room.as_str(), "to" => "closed"});
        let mut got: Vec<String> = (0..3).map(|_| owner.recv().t().to_string()).collect();
        got.sort();
        assert_eq!(got, vec!["closed", "ok", "state"]);
        for o in [&mut other, &mut third] {
            assert_eq!(o.expect("state")["state"].s(), "closed");
            let closed = o.expect("closed");
            assert_eq!(closed["room"].s(), room);
            assert_eq!(closed["why"].s(), "owner");
        }
        let rid = third.rid();
        third.send(msg! {"t" => "join", "rid" => rid, "room" => room.as_str()});
        third.expect_err_rid("not_found", rid);
    }
}

// ---------------------------------------------------------------------------
// Unicast

#[test]
fn send_between_workers() {
    let server = start_workers(2, &[]);
    for k in 0..2 {
        let room = name_on(&format!("room-uni{k}"), k, 2);
        let mut a = client_on(&server, 0);
        let mut b = client_on(&server, 1);
        let mut c = client_on(&server, 0);
        a.create(&room);
        b.join(&room);
        expect_presence(&mut a, &room, "join", b.id);
        c.join(&room);
        expect_presence(&mut a, &room, "join", c.id);
        expect_presence(&mut b, &room, "join", c.id);

        // 0 -> 1, with a rid.
        let rid = a.rid();
        a.send(msg! {"t" => "send", "rid" => rid, "room" => room.as_str(), "to" => b.id, "data" => bin([7u8, 0, 0xff])});
        let ok = a.expect("ok");
        assert_eq!(ok["rid"].u(), u64::from(rid));
        assert!(!ok.has("seq"), "{ok:?}");
        let m = b.expect("msg");
        assert_eq!(m["room"].s(), room);
        assert_eq!(m["from"].u(), a.id);
        assert_eq!(m["to"].u(), b.id);
        assert_eq!(m["data"].b(), [7u8, 0, 0xff]);
        assert!(!m.has("seq"), "unicast has no seq: {m:?}");

        // 1 -> 0, without a rid: no ok.
        b.send(msg! {"t" => "send", "room" => room.as_str(), "to" => c.id, "data" => bin("hi c")});
        let m = c.expect("msg");
        assert_eq!(m["from"].u(), b.id);
        assert_eq!(m["to"].u(), c.id);
        assert_eq!(m["data"].b(), b"hi c");
        b.send(msg! {"t" => "send", "room" => room.as_str(), "to" => a.id, "data" => bin("hi a")});
        let m = a.expect("msg");
        assert_eq!(m["from"].u(), b.id);
        assert_eq!(m["data"].b(), b"hi a");
        b.expect_silence(Duration::from_millis(50));
        c.expect_silence(Duration::from_millis(50));

        // Unicast does not use up the room's seq.
        assert_eq!(a.publish(&room, b"p"), 1);
        assert_eq!(b.expect("msg")["seq"].u(), 1);
        assert_eq!(c.expect("msg")["seq"].u(), 1);

        // Not a member: someone on the other worker in another room, an id
        // nobody has, and b after it left.
        let mut d = client_on(&server, 1);
        d.create(&name_on(&format!("room-uni-else{k}"), 0, 2));
        let rid = a.rid();
        a.send(msg! {"t" => "send", "rid" => rid, "room" => room.as_str(), "to" => d.id, "data" => bin("x")});
        a.expect_err_rid("not_member", rid);
        let rid = a.rid();
        a.send(msg! {"t" => "send", "rid" => rid, "room" => room.as_str(), "to" => u64::MAX - 1, "data" => bin("x")});
        a.expect_err_rid("not_member", rid);
        b.leave(&room);
        expect_presence(&mut a, &room, "leave", b.id);
        expect_presence(&mut c, &room, "leave", b.id);
        let rid = a.rid();
        a.send(msg! {"t" => "send", "rid" => rid, "room" => room.as_str(), "to" => b.id, "data" => bin("x")});
        a.expect_err_rid("not_member", rid);
        // And the sender must be a member.
        let rid = b.rid();
        b.send(msg! {"t" => "send", "rid" => rid, "room" => room.as_str(), "to" => a.id, "data" => bin("x")});
        b.expect_err_rid("not_member", rid);
        a.expect_silence(SILENCE);
        d.expect_silence(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// list

/// On each worker k: an open room (1 member of 4), an empty one (`join:
/// false`), a full one (1 of 1) and a private one, each created from the
/// next worker. `list` from every worker shows exactly the public ones.
fn list_merged(n: u32) {
    let server = start_workers(n, &[]);
    let mut by = spread(&server, n, 1);
    let mut public = BTreeSet::new();
    let mut open = BTreeSet::new();
    let mut empty = BTreeSet::new();
    let mut full = BTreeSet::new();
    for k in 0..n {
        let creator = &mut by[((k + 1) % n) as usize][0];
        let name = name_on(&format!("room-open{k}"), k, n);
        creator.create_with(msg! {"room" => name.as_str(), "max" => 4u32});
        open.insert(name.clone());
        public.insert(name);

        let name = name_on(&format!("room-empty{k}"), k, n);
        let rid = creator.rid();
        creator
            .send(msg! {"t" => "create", "rid" => rid, "room" => name.as_str(), "join" => false});
        assert_eq!(creator.expect("created")["room"].s(), name);
        empty.insert(name.clone());
        public.insert(name);

        let name = name_on(&format!("room-full{k}"), k, n);
        creator.create_with(msg! {"room" => name.as_str(), "max" => 1u32});
        full.insert(name.clone());
        public.insert(name);

        let name = name_on(&format!("room-secret{k}"), k, n);
        creator.create_with(msg! {"room" => name.as_str(), "private" => true});
    }

    for (w, cs) in by.iter_mut().enumerate() {
        let c = &mut cs[0];
        let all = list(c, msg! {});
        assert_eq!(
            names(&all),
            public,
            "list from worker {w}: every public room of every worker, no private one"
        );
        for r in &all {
            let name = r["room"].s();
            if open.contains(name) {
                assert_eq!(r["members"].u(), 1, "{r:?}");
                assert_eq!(r["max"].u(), 4, "{r:?}");
                assert_eq!(r["state"].s(), "waiting", "{r:?}");
            } else if empty.contains(name) {
                assert_eq!(r["members"].u(), 0, "{r:?}");
                assert_eq!(r["max"].u(), 16, "{r:?}");
                assert_eq!(r["state"].s(), "created", "{r:?}");
            } else {
                assert_eq!(r["members"].u(), 1, "{r:?}");
                assert_eq!(r["max"].u(), 1, "{r:?}");
            }
        }

        for limit in [1usize, 3, public.len() - 1] {
            let some = list(c, msg! {"limit" => limit});
            assert_eq!(
                some.len(),
                limit,
                "list from worker {w} with limit {limit}: {some:?}"
            );
            assert!(names(&some).is_subset(&public), "{some:?}");
        }
        let big = list(c, msg! {"limit" => 1000u32});
        assert_eq!(names(&big), public);

        let space = list(c, msg! {"has_space" => true});
        let want: BTreeSet<String> = public.difference(&full).cloned().collect();
        assert_eq!(names(&space), want, "has_space from worker {w}");
        let created = list(c, msg! {"state" => "created"});
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
    let server = start_workers(n, &[]);
    let mut by = spread(&server, n, 1);
    let mut seen = BTreeSet::new();
    for k in 0..n {
        for _ in 0..3 {
            let c = &mut by[k as usize][0];
            let joined = c.create_with(msg! {});
            let name = joined["room"].s().to_string();
            assert_eq!(member_ids(&joined), vec![c.id]);
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
        let other = ((k + 1) % n) as usize;
        let joiner = by[other][0].id;
        let joined = by[other][0].join(name);
        assert_eq!(member_ids(&joined), vec![by[*k as usize][0].id, joiner]);
        expect_presence(&mut by[*k as usize][0], name, "join", joiner);
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

fn listed(c: &mut Client, room: &str) -> bool {
    list(c, msg! {}).iter().any(|r| r["room"].s() == room)
}

#[test]
fn idle_room_homed_on_the_other_worker_is_closed() {
    let server = start_workers(2, &["--idle-ms", "200"]);
    for k in 0..2 {
        let mut a = client_on(&server, 1 - k);
        let room = name_on(&format!("room-idle{k}"), k, 2);
        a.create(&room);
        // With a member it stays.
        a.expect_silence(Duration::from_millis(500));
        assert!(listed(&mut a, &room));
        a.leave(&room);
        assert!(
            eventually(Duration::from_secs(3), || !listed(&mut a, &room)),
            "{room} (home {k}) closed after idle"
        );
        let rid = a.rid();
        a.send(msg! {"t" => "join", "rid" => rid, "room" => room.as_str()});
        a.expect_err_rid("not_found", rid);

        // A room created without joining, from the other worker, too.
        let lonely = name_on(&format!("room-idle-nj{k}"), k, 2);
        let rid = a.rid();
        a.send(msg! {"t" => "create", "rid" => rid, "room" => lonely.as_str(), "join" => false});
        a.expect("created");
        assert!(
            eventually(Duration::from_secs(3), || !listed(&mut a, &lonely)),
            "{lonely} (home {k}) closed after idle"
        );
        let mut b = client_on(&server, k);
        let rid = b.rid();
        b.send(msg! {"t" => "join", "rid" => rid, "room" => lonely.as_str()});
        b.expect_err_rid("not_found", rid);

        // Both names can be taken again.
        let joined = a.create(&room);
        assert_eq!(joined["seq"].u(), 0);
        assert_eq!(member_ids(&b.join(&room)), vec![a.id, b.id]);
        expect_presence(&mut a, &room, "join", b.id);
        b.create(&lonely);
    }
}

// ---------------------------------------------------------------------------
// Seat limit

#[test]
fn seat_limit_counts_rooms_on_every_worker() {
    let server = start_workers(2, &["--max-rooms-per-conn", "2"]);
    let mut maker = server.client();
    let mut rooms = Vec::new(); // rooms[worker] = [x, y]
    for k in 0..2 {
        let pair: Vec<String> = ["x", "y"]
            .iter()
            .map(|p| name_on(&format!("room-seat-{p}"), k, 2))
            .collect();
        for r in &pair {
            let rid = maker.rid();
            maker.send(msg! {"t" => "create", "rid" => rid, "room" => r.as_str(), "join" => false});
            assert_eq!(maker.expect("created")["room"].s(), r);
        }
        rooms.push(pair);
    }
    let fresh = |w: u32, a: &Client| name_on(&format!("room-seat-new{}", a.id), w, 2);

    for w in 0..2u32 {
        let (local, remote) = (&rooms[w as usize], &rooms[1 - w as usize]);
        let mut a = client_on(&server, w);

        // Both seats in rooms homed on the other worker: a local join or
        // create is over the limit.
        a.join(&remote[0]);
        a.join(&remote[1]);
        let rid = a.rid();
        a.send(msg! {"t" => "join", "rid" => rid, "room" => local[0].as_str()});
        a.expect_err_rid("forbidden", rid);
        let rid = a.rid();
        a.send(msg! {"t" => "create", "rid" => rid, "room" => fresh(w, &a).as_str()});
        a.expect_err_rid("forbidden", rid);
        let rid = a.rid();
        a.send(msg! {"t" => "create", "rid" => rid, "room" => fresh(1 - w, &a).as_str()});
        a.expect_err_rid("forbidden", rid);

        // One seat on each worker: still full, whichever the third is homed on.
        a.leave(&remote[1]);
        a.join(&local[0]);
        for r in [&local[1], &remote[1]] {
            let rid = a.rid();
            a.send(msg! {"t" => "join", "rid" => rid, "room" => r.as_str()});
            a.expect_err_rid("forbidden", rid);
        }

        // Both seats local: a remote join is over the limit.
        a.leave(&remote[0]);
        a.join(&local[1]);
        let rid = a.rid();
        a.send(msg! {"t" => "join", "rid" => rid, "room" => remote[0].as_str()});
        a.expect_err_rid("forbidden", rid);

        // Leaving frees a seat for a room on the other worker.
        a.leave(&local[0]);
        a.join(&remote[0]);
        a.leave(&remote[0]);
        a.leave(&local[1]);
    }
    maker.expect_silence(Duration::from_millis(50));
}

// ---------------------------------------------------------------------------
// Matchmaking

#[track_caller]
fn enqueue(c: &mut Client, queue: &str, size: u16, rating: i32, wait_ms: u32) {
    let rid = c.rid();
    c.send(msg! {
        "t" => "match", "rid" => rid, "queue" => queue,
        "size" => size, "rating" => rating, "wait_ms" => wait_ms,
    });
    let q = c.expect("queued");
    assert_eq!(q["rid"].u(), u64::from(rid), "{q:?}");
    assert_eq!(q["queue"].s(), queue);
}

#[track_caller]
fn expect_matched(c: &mut Client, queue: &str) -> Value {
    let m = c.expect("matched");
    assert_eq!(m["queue"].s(), queue, "{m:?}");
    let j = c.expect("joined");
    assert_eq!(j["room"], m["room"], "joined follows matched: {j:?}");
    // `matched` names the whole group, as `joined` lists it.
    let players: Vec<u64> = m["players"].arr().iter().map(|p| p["id"].u()).collect();
    assert_eq!(players, member_ids(&j), "{m:?} / {j:?}");
    j
}

#[test]
fn match_pairs_players_on_different_workers() {
    let server = start_workers(2, &[]);
    for k in 0..2 {
        let queue = name_on(&format!("duel{k}"), k, 2);
        let mut a = client_on(&server, 0);
        let mut b = client_on(&server, 1);
        enqueue(&mut a, &queue, 2, 1500, 5000);
        enqueue(&mut b, &queue, 2, 1500, 5000);
        let ja = expect_matched(&mut a, &queue);
        let jb = expect_matched(&mut b, &queue);
        assert_eq!(ja["room"], jb["room"], "one room for both");
        let room = ja["room"].s().to_string();
        let last = if member_ids(&ja).len() == 2 { &ja } else { &jb };
        let mut ids = member_ids(last);
        ids.sort_unstable();
        let mut want = vec![a.id, b.id];
        want.sort_unstable();
        assert_eq!(ids, want, "the room holds both players: {ja:?} / {jb:?}");
        for c in [&mut a, &mut b] {
            let st = c.recv_type("state");
            assert_eq!(st["room"].s(), room);
            assert_eq!(st["state"].s(), "playing", "{st:?}");
        }
        // They talk across workers.
        assert_eq!(a.publish(&room, b"gg"), 1);
        let m = b.expect("msg");
        assert_eq!(m["from"].u(), a.id);
        assert_eq!(m["data"].b(), b"gg");
        assert_eq!(b.publish(&room, b"wp"), 2);
        assert_eq!(a.expect("msg")["data"].b(), b"wp");
    }
}

// ---------------------------------------------------------------------------
// Metrics

/// The value of the sample `name{worker="w"}` in a Prometheus text body.
fn sample(body: &str, name: &str, w: u32) -> Option<u64> {
    let key = format!("{name}{{worker=\"{w}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn metrics_all_merges_every_workers_figures() {
    let server = start_workers(2, &[]);
    let room = name_on("metered", 0, 2);
    let mut a = client_on(&server, 0);
    let mut b = client_on(&server, 1);
    a.create(&room);
    b.join(&room);
    expect_presence(&mut a, &room, "join", b.id);
    // Both numbered on the home (worker 0); each worker counts the
    // deliveries to its own connections.
    a.publish(&room, b"to b");
    assert_eq!(b.expect("msg")["data"].b(), b"to b");
    b.publish(&room, b"to a");
    assert_eq!(a.expect("msg")["data"].b(), b"to a");

    // Whichever worker answers, every worker's series is there, under one
    // header per family.
    for _ in 0..4 {
        let resp = server.get("/metrics/all");
        assert_eq!(resp.status, 200, "{resp:?}");
        let body = resp.text();
        assert_eq!(sample(&body, "roomd_published_total", 0), Some(2), "{body}");
        assert_eq!(sample(&body, "roomd_published_total", 1), Some(0), "{body}");
        assert_eq!(
            sample(&body, "roomd_deliveries_total", 0),
            Some(1),
            "{body}"
        );
        assert_eq!(
            sample(&body, "roomd_deliveries_total", 1),
            Some(1),
            "{body}"
        );
        for family in ["roomd_published_total", "roomd_loop_turn_seconds"] {
            assert_eq!(
                body.matches(&format!("# TYPE {family} ")).count(),
                1,
                "one TYPE line for {family}:\n{body}"
            );
        }
        // /metrics alone is the answering worker's own.
        let own = server.get("/metrics").text();
        let workers = (0..2)
            .filter(|&w| sample(&own, "roomd_published_total", w).is_some())
            .count();
        assert_eq!(workers, 1, "/metrics is one worker's:\n{own}");
    }
}

// ---------------------------------------------------------------------------
// Losing a worker

#[test]
fn worker_loss_closes_its_rooms_and_its_clients_go_through_grace() {
    let mut server = start_workers(2, &["--grace-ms", "300", "--create-rate", "0"]);
    let r0 = name_on("room", 0, 2);
    let r1 = name_on("room", 1, 2);
    let mut a = client_on(&server, 0);
    let mut d = client_on(&server, 0);
    let mut b = client_on(&server, 1);
    a.create(&r0);
    b.join(&r0);
    expect_presence(&mut a, &r0, "join", b.id);
    d.join(&r0);
    expect_presence(&mut a, &r0, "join", d.id);
    expect_presence(&mut b, &r0, "join", d.id);
    b.create(&r1);
    a.join(&r1);
    expect_presence(&mut b, &r1, "join", a.id);
    assert_eq!(a.publish(&r1, b"before"), 1);
    assert_eq!(b.expect("msg")["data"].b(), b"before");

    let pids = worker_pids(&server);
    assert_eq!(pids.len(), 2, "two worker processes: {pids:?}");
    let victim = pid_serving(&server, &b);
    assert_ne!(
        pid_serving(&server, &a),
        victim,
        "clients on workers 0 and 1 are served by different processes"
    );
    // SAFETY: kill(2) on a worker process we started (through the supervisor).
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let killed = Instant::now();

    // b's connection is gone with its worker.
    assert!(
        socket_closed_within(b.ws.get_mut(), WATCHDOG),
        "b's connection ends when its worker dies"
    );

    // a: r1 (homed on the dead worker) is lost; in r0 b is away, then gone.
    let (mut closed, mut away, mut leave) = (false, false, None);
    while !closed || leave.is_none() {
        let m = a.recv();
        let room = m["room"].s().to_string();
        match m.t() {
            "closed" if room == r1 => {
                assert_eq!(m["why"].s(), "lost", "{m:?}");
                assert!(!closed, "closed twice: {m:?}");
                closed = true;
            }
            "presence" if room == r0 && m.has("away") => {
                assert_eq!(m["away"].u(), b.id, "{m:?}");
                assert!(!away, "away twice: {m:?}");
                away = true;
            }
            "presence" if room == r0 && m.has("leave") => {
                assert_eq!(m["leave"].u(), b.id, "{m:?}");
                assert_eq!(m["why"].s(), "disconnect", "{m:?}");
                assert!(away, "away comes before leave: {m:?}");
                leave = Some(killed.elapsed());
            }
            _ => panic!("a: unexpected {m:?} after the kill"),
        }
    }
    let after = leave.unwrap();
    assert!(
        after >= Duration::from_millis(250),
        "leave after the grace period, not {after:?}"
    );
    expect_presence(&mut d, &r0, "away", b.id);
    let p = expect_presence(&mut d, &r0, "leave", b.id);
    assert_eq!(p["why"].s(), "disconnect");

    // r0, homed on the survivor, keeps working.
    assert_eq!(a.publish(&r0, b"still here"), 1);
    let m = d.expect("msg");
    assert_eq!(m["seq"].u(), 1);
    assert_eq!(m["data"].b(), b"still here");
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "the supervisor survives a worker's death"
    );

    // The worker comes back: a new connection lands on worker 1.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut e = loop {
        let c = server.client();
        if worker_of(&c) == 1 {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "worker 1 not back 5 s after the kill"
        );
        thread::sleep(Duration::from_millis(10));
    };
    let pids = worker_pids(&server);
    assert_eq!(pids.len(), 2, "two workers again: {pids:?}");
    assert!(!pids.contains(&victim), "a new process: {pids:?}");

    // The lost room's name is free once its home is back.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rid = a.rid();
        a.send(msg! {"t" => "create", "rid" => rid, "room" => r1.as_str()});
        let m = a.recv();
        match m.t() {
            "created" => break,
            "err" if m["code"].s() == "internal" && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(50));
            }
            _ => panic!("create {r1} after the restart: {m:?}"),
        }
    }
    let joined = a.expect("joined");
    assert_eq!(member_ids(&joined), vec![a.id], "a new room: {joined:?}");
    assert_eq!(joined["seq"].u(), 0, "a new room: {joined:?}");

    // Both rooms work with the new worker, in both directions.
    assert_eq!(member_ids(&e.join(&r1)), vec![a.id, e.id]);
    expect_presence(&mut a, &r1, "join", e.id);
    assert_eq!(member_ids(&e.join(&r0)), vec![a.id, d.id, e.id]);
    expect_presence(&mut a, &r0, "join", e.id);
    expect_presence(&mut d, &r0, "join", e.id);
    assert_eq!(e.publish(&r1, b"back"), 1);
    assert_eq!(a.expect("msg")["data"].b(), b"back");
    assert_eq!(e.publish(&r0, b"hello"), 2);
    assert_eq!(a.expect("msg")["seq"].u(), 2);
    assert_eq!(d.expect("msg")["data"].b(), b"hello");
}

/// Queue places count against `--max-rooms-per-conn` wherever the queue is
/// homed (README "Matchmaking"): two places in queues homed on the other
/// worker fill a limit of 2, and so do a seat and one far place. The counts
/// come back down as places end (`unmatch`, `match_timeout`).
#[test]
fn queue_places_on_another_worker_count_against_the_room_limit() {
    let server = start_workers(2, &["--max-rooms-per-conn", "2"]);
    let far: Vec<String> = (0..)
        .map(|i| format!("far-queue-{i}"))
        .filter(|q| home(q, 2) == 1)
        .take(3)
        .collect();
    let mut a = client_on(&server, 0);
    enqueue(&mut a, &far[0], 2, 1500, 60_000);
    enqueue(&mut a, &far[1], 2, 1500, 60_000);
    for room in [name_on("places-here", 0, 2), name_on("places-there", 1, 2)] {
        let rid = a.rid();
        a.send(msg! {"t" => "create", "rid" => rid, "room" => room.as_str()});
        a.expect_err_rid("forbidden", rid);
    }
    let rid = a.rid();
    a.send(msg! {"t" => "match", "rid" => rid, "queue" => far[2].as_str(), "size" => 2u16});
    a.expect_err_rid("forbidden", rid);
    // Leaving one place frees it.
    let rid = a.rid();
    a.send(msg! {"t" => "unmatch", "rid" => rid, "queue" => far[0].as_str()});
    assert_eq!(a.expect("ok")["rid"].u(), u64::from(rid));
    a.create(&name_on("places-seat", 0, 2));

    // A seat and one far place: a second far place is over the limit.
    let mut b = client_on(&server, 0);
    b.create(&name_on("places-b", 0, 2));
    enqueue(&mut b, &far[0], 2, 9000, 60_000);
    let rid = b.rid();
    b.send(msg! {"t" => "match", "rid" => rid, "queue" => far[1].as_str(), "size" => 2u16, "rating" => 9000});
    b.expect_err_rid("forbidden", rid);

    // A place that times out frees its count too.
    let mut c = client_on(&server, 0);
    c.create(&name_on("places-c", 0, 2));
    enqueue(&mut c, &far[2], 2, -9000, 100);
    assert_eq!(c.expect("match_timeout")["queue"].s(), far[2]);
    enqueue(&mut c, &far[2], 2, -9000, 60_000);
}

/// PROTOCOL.md `match`: a group whose players are on every worker is
/// seated at once. Each player's `matched` and `joined` list all of them,
/// and none gets a `presence` join for another.
#[test]
fn a_match_across_workers_arrives_whole() {
    let server = start_workers(3, &[]);
    let queue = name_on("trio", 1, 3);
    let mut players: Vec<Client> = (0..3).map(|k| client_on(&server, k)).collect();
    for p in &mut players {
        enqueue(p, &queue, 3, 1500, 5000);
    }
    let mut want: Vec<u64> = players.iter().map(|p| p.id).collect();
    want.sort_unstable();
    for p in &mut players {
        let j = expect_matched(p, &queue);
        let mut ids = member_ids(&j);
        ids.sort_unstable();
        assert_eq!(ids, want, "{j:?}");
        let st = p.expect("state");
        assert_eq!(st["state"].s(), "playing", "no presence before it: {st:?}");
    }
    for p in &mut players {
        p.expect_silence(Duration::from_millis(100));
    }
}
