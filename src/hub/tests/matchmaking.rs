//! Matchmaking (PROTOCOL.md `match`/`unmatch`): players of close rating are
//! grouped nearest-first, windows widen with waiting time, a player alone
//! times out, and a disconnect or `unmatch` leaves the queue. A match is a
//! new room: `matched` then `joined`, full and `playing` once all are in.

use serde_json::{json, Value};

use super::room_kit::{enqueue, err_rid, expect_matched, ids, member};
use super::*;

#[test]
fn eight_players_are_paired_nearest_first() {
    // Windows start at 0 and widen 100 points a second: a pair whose
    // ratings are g apart can form after 10*g ms.
    let mut s = Sim::with(1, |c| {
        c.match_window = 0;
        c.match_widen = 100;
        c.match_window_max = 1000;
    });
    // Pairs 10, 30, 60 and 90 apart; every other gap is wider than 100.
    let ratings = [1600, 1000, 2190, 1230, 1010, 2100, 1660, 1200];
    let clients: Vec<(C, u64)> = ratings.iter().map(|_| member(&mut s, 0)).collect();
    for (&(c, _), r) in clients.iter().zip(ratings) {
        enqueue(&mut s, c, 1, "duel", 2, r, 10_000);
    }
    // (rating, id, ms waited when matched, joined)
    let mut got: Vec<(i32, u64, u64, Value)> = Vec::new();
    let mut elapsed = 0;
    while got.len() < ratings.len() {
        assert!(elapsed < 10_000, "only {} matched", got.len());
        s.advance(10);
        elapsed += 10;
        for (&(c, id), r) in clients.iter().zip(ratings) {
            if s.clients[c].inbox.is_empty() || got.iter().any(|g| g.1 == id) {
                continue;
            }
            let joined = expect_matched(&mut s, c, "duel");
            let state = s.recv_type(c, "state");
            assert_eq!(state["state"], "playing", "{state}");
            got.push((r, id, elapsed, joined));
        }
    }
    got.sort_by_key(|g| g.0);
    let mut pairs = Vec::new();
    for pair in got.chunks(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert_eq!(
            a.3["room"], b.3["room"],
            "ratings {} and {} share a room",
            a.0, b.0
        );
        // The room holds exactly the pair; the one that queued first owns it.
        let last = if ids(&a.3).len() == 2 { &a.3 } else { &b.3 };
        let mut ids = ids(last);
        ids.sort_unstable();
        let mut want = vec![a.1, b.1];
        want.sort_unstable();
        assert_eq!(ids, want);
        assert_eq!(last["members"].as_array().unwrap().len(), 2);
        let first = [a, b]
            .into_iter()
            .min_by_key(|p| ratings.iter().position(|&r| r == p.0))
            .unwrap();
        assert_eq!(last["owner"], first.1, "the longest-waiting owns it");
        pairs.push((b.0 - a.0, a.2.max(b.2)));
    }
    // Nearest first: the pairs formed in the order of their gaps, each once
    // the windows had widened to it.
    pairs.sort_by_key(|p| p.1);
    let gaps: Vec<i32> = pairs.iter().map(|p| p.0).collect();
    assert_eq!(gaps, vec![10, 30, 60, 90], "{pairs:?}");
    for (gap, at) in &pairs {
        assert!(
            *at >= *gap as u64 * 10 - 20,
            "gap {gap} matched at {at} ms, before the window reached it"
        );
    }
}

#[test]
fn a_matched_room_is_private_full_and_playing() {
    let mut s = Sim::new(1);
    let (a, a_id) = member(&mut s, 0);
    let (b, b_id) = member(&mut s, 0);
    enqueue(&mut s, a, 1, "q", 2, 1500, 5000);
    enqueue(&mut s, b, 1, "q", 2, 1500, 5000);
    let ja = expect_matched(&mut s, a, "q");
    let jb = expect_matched(&mut s, b, "q");
    let room = ja["room"].as_str().unwrap().to_string();
    assert!(room.starts_with("r-"), "server-picked name: {room}");
    // Seated at once: each `joined` lists the whole group, and nobody gets
    // a `presence` join for the other.
    assert_eq!(ids(&ja), vec![a_id, b_id]);
    assert_eq!(ids(&jb), vec![a_id, b_id]);
    assert_eq!(s.expect(a, "state")["state"], "playing");
    assert_eq!(s.expect(b, "state")["state"], "playing");
    // Private: not listed. Full and playing: nobody else gets in.
    let c = s.client(0);
    s.send(c, json!({"t": "list", "rid": 1}));
    let rooms = s.expect(c, "rooms");
    assert_eq!(rooms["rooms"].as_array().map(Vec::len), Some(0), "{rooms}");
    s.send(c, json!({"t": "join", "rid": 2, "room": room}));
    let err = s.expect(c, "err");
    assert!(
        matches!(err["code"].as_str(), Some("full" | "invalid_state")),
        "{err}"
    );
    // The players talk as in any room.
    s.send(a, json!({"t": "pub", "rid": 3, "room": room, "data": "gg"}));
    assert_eq!(s.expect(a, "ok")["seq"], 1);
    assert_eq!(s.expect(b, "msg")["data"], "gg");
}

#[test]
fn a_lone_player_times_out() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    enqueue(&mut s, a, 1, "q", 2, 0, 300);
    let mut waited = 0;
    while s.clients[a].inbox.is_empty() {
        assert!(waited < 2000, "no match_timeout after {waited} ms");
        s.advance(10);
        waited += 10;
    }
    let t = s.expect(a, "match_timeout");
    assert_eq!(t["queue"], "q");
    assert!(waited >= 290, "{waited} ms");
    assert!(waited < 2000, "{waited} ms");
    // Gone from the queue: unmatch finds nothing, and it may queue again.
    s.send(a, json!({"t": "unmatch", "rid": 5, "queue": "q"}));
    err_rid(&mut s, a, "not_found", 5);
    enqueue(&mut s, a, 6, "q", 2, 0, 100);
    s.advance(100);
    s.expect(a, "match_timeout");
}

#[test]
fn a_disconnect_leaves_the_queue() {
    let mut s = Sim::with(1, |c| c.grace_ms = 5000);
    // An observer in a room with the leaver: its `away` says the server has
    // seen the disconnect.
    let obs = s.client(0);
    s.create(obs, "watch");
    let (gone, gone_id) = member(&mut s, 0);
    s.join(gone, "watch");
    s.expect(obs, "presence");
    enqueue(&mut s, gone, 1, "q", 2, 100, 10_000);
    s.disconnect(gone, CloseReason::Dropped);
    assert_eq!(s.expect(obs, "presence")["away"], gone_id);

    // Same queue, same rating: it would pair at once if the leaver were
    // still waiting.
    let late = s.client(0);
    enqueue(&mut s, late, 1, "q", 2, 100, 300);
    s.advance(300);
    s.expect(late, "match_timeout");
}

#[test]
fn unmatch_leaves_the_queue() {
    let mut s = Sim::new(1);
    let a = s.client(0);
    enqueue(&mut s, a, 1, "q", 2, 7, 10_000);
    // Already waiting there.
    s.send(a, json!({"t": "match", "rid": 2, "queue": "q", "size": 2}));
    err_rid(&mut s, a, "exists", 2);
    s.send(a, json!({"t": "unmatch", "rid": 3, "queue": "q"}));
    assert_eq!(s.expect(a, "ok")["rid"], 3);
    s.send(a, json!({"t": "unmatch", "rid": 4, "queue": "q"}));
    err_rid(&mut s, a, "not_found", 4);

    let b = s.client(0);
    enqueue(&mut s, b, 1, "q", 2, 7, 300);
    s.advance(300);
    s.expect(b, "match_timeout");
    s.advance(300);
    s.assert_silent(a);
}

#[test]
fn widening_pairs_distant_players_after_waiting() {
    // Windows start at 10 and widen 1000 points a second, up to 500.
    let mut s = Sim::with(1, |c| {
        c.match_window = 10;
        c.match_widen = 1000;
        c.match_window_max = 500;
    });
    let (a, b, far) = (s.client(0), s.client(0), s.client(0));
    enqueue(&mut s, a, 1, "q", 2, 1000, 5000);
    enqueue(&mut s, far, 1, "q", 2, 3000, 700);
    enqueue(&mut s, b, 1, "q", 2, 1400, 5000);
    // 400 apart: a's window reaches b after 390 ms of waiting.
    let mut at = 0;
    while s.clients[a].inbox.is_empty() {
        assert!(at < 2000, "no match after {at} ms");
        s.advance(10);
        at += 10;
    }
    let ja = expect_matched(&mut s, a, "q");
    let jb = expect_matched(&mut s, b, "q");
    assert_eq!(ja["room"], jb["room"]);
    assert!(at >= 350, "matched at {at} ms");
    assert!(at < 2000, "matched at {at} ms");
    // 1600 and more from anyone: past the widest window, it times out.
    s.assert_silent(far);
    assert!(at < 700, "far waits 700 ms");
    s.advance(700 - at);
    s.expect(far, "match_timeout");
}

#[test]
fn bad_match_requests_and_the_seat_limit() {
    let mut s = Sim::with(1, |c| {
        c.max_rooms_per_conn = 2;
        c.max_members = 8;
    });
    let (a, a_id) = member(&mut s, 0);
    for (rid, req) in [
        (1, json!({"t": "match", "rid": 1, "size": 2})),
        (2, json!({"t": "match", "rid": 2, "queue": "q"})),
        (3, json!({"t": "match", "rid": 3, "queue": "q", "size": 0})),
        (4, json!({"t": "match", "rid": 4, "queue": "q", "size": 9})),
        (
            5,
            json!({"t": "match", "rid": 5, "queue": "no spaces", "size": 2}),
        ),
        (6, json!({"t": "unmatch", "rid": 6})),
    ] {
        s.send(a, req);
        err_rid(&mut s, a, "bad_request", rid);
    }
    s.send(a, json!({"t": "ping", "rid": 10}));
    assert_eq!(s.expect(a, "pong")["rid"], 10);
    // A place in a queue holds a seat: one room plus one queue is the limit.
    s.create(a, "mine");
    enqueue(&mut s, a, 11, "q", 2, -300, 10_000);
    s.send(a, json!({"t": "match", "rid": 7, "queue": "q2", "size": 2}));
    err_rid(&mut s, a, "forbidden", 7);
    s.send(a, json!({"t": "create", "rid": 8, "room": "more"}));
    err_rid(&mut s, a, "forbidden", 8);
    // Negative ratings pair like any other; size 1 is a room of one.
    let (b, b_id) = member(&mut s, 0);
    enqueue(&mut s, b, 1, "q", 2, -290, 10_000);
    let ja = expect_matched(&mut s, a, "q");
    expect_matched(&mut s, b, "q");
    assert_eq!(ids(&ja), vec![a_id, b_id]);
    let (solo, solo_id) = member(&mut s, 0);
    enqueue(&mut s, solo, 1, "solo", 1, 0, 1000);
    let j = expect_matched(&mut s, solo, "solo");
    assert_eq!(ids(&j), vec![solo_id]);
    assert_eq!(s.expect(solo, "state")["state"], "playing");
}
