//! Matchmaking (PROTOCOL.md `match`/`unmatch`): players of close rating are
//! grouped nearest-first, windows widen with waiting time, a player alone
//! times out, and a disconnect or `unmatch` leaves the queue. A match is a
//! new room: `matched` then `joined`, full and `playing` once all are in.

#[macro_use]
mod common;

use common::*;
use std::thread;
use std::time::{Duration, Instant};

/// `match` with a rid; asserts `queued`.
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

/// Reads `matched` then `joined` for the same room; returns that `joined`.
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
fn eight_players_are_paired_nearest_first() {
    // Windows start at 0 and widen 100 points a second: a pair whose
    // ratings are g apart can form after 10*g ms.
    let server = Server::start(&[
        "--match-window",
        "0",
        "--match-widen",
        "100",
        "--match-window-max",
        "1000",
    ]);
    // Pairs 10, 30, 60 and 90 apart; every other gap is wider than 100.
    let ratings = [1600, 1000, 2190, 1230, 1010, 2100, 1660, 1200];
    let mut clients: Vec<Client> = ratings.iter().map(|_| server.client()).collect();
    let start = Instant::now();
    for (c, r) in clients.iter_mut().zip(ratings) {
        enqueue(c, "duel", 2, r, 10_000);
    }
    let handles: Vec<_> = clients
        .into_iter()
        .zip(ratings)
        .map(|(mut c, r)| {
            thread::spawn(move || {
                let joined = expect_matched(&mut c, "duel");
                let at = start.elapsed();
                let state = c.recv_type("state");
                assert_eq!(state["state"].s(), "playing", "{state:?}");
                (r, c.id, at, joined)
            })
        })
        .collect();
    let mut got: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
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
        let last = if member_ids(&a.3).len() == 2 {
            &a.3
        } else {
            &b.3
        };
        let mut ids = member_ids(last);
        ids.sort_unstable();
        let mut want = vec![a.1, b.1];
        want.sort_unstable();
        assert_eq!(ids, want);
        assert_eq!(last["members"].arr().len(), 2);
        let first = [a, b]
            .into_iter()
            .min_by_key(|p| ratings.iter().position(|&r| r == p.0))
            .unwrap();
        assert_eq!(last["owner"].u(), first.1, "the longest-waiting owns it");
        pairs.push((b.0 - a.0, a.2.max(b.2)));
    }
    // Nearest first: the pairs formed in the order of their gaps, each once
    // the windows had widened to it.
    pairs.sort_by_key(|p| p.1);
    let gaps: Vec<i32> = pairs.iter().map(|p| p.0).collect();
    assert_eq!(gaps, vec![10, 30, 60, 90], "{pairs:?}");
    for (gap, at) in &pairs {
        assert!(
            *at >= Duration::from_millis(*gap as u64 * 10 - 20),
            "gap {gap} matched at {at:?}, before the window reached it"
        );
    }
}

#[test]
fn a_matched_room_is_private_full_and_playing() {
    let server = Server::start(&[]);
    let mut a = server.client();
    let mut b = server.client();
    enqueue(&mut a, "q", 2, 1500, 5000);
    enqueue(&mut b, "q", 2, 1500, 5000);
    let ja = expect_matched(&mut a, "q");
    let jb = expect_matched(&mut b, "q");
    let room = ja["room"].s().to_string();
    assert!(room.starts_with("r-"), "server-picked name: {room}");
    // Seated at once: each `joined` lists the whole group, and nobody gets
    // a `presence` join for the other.
    assert_eq!(member_ids(&ja), vec![a.id, b.id]);
    assert_eq!(member_ids(&jb), vec![a.id, b.id]);
    assert_eq!(a.expect("state")["state"].s(), "playing");
    assert_eq!(b.expect("state")["state"].s(), "playing");
    // Private: not listed. Full and playing: nobody else gets in.
    let mut c = server.client();
    c.send(msg! {"t" => "list", "rid" => 1u32});
    assert!(c.expect("rooms")["rooms"].arr().is_empty());
    c.send(msg! {"t" => "join", "rid" => 2u32, "room" => room.as_str()});
    let err = c.expect("err");
    assert!(
        matches!(err["code"].s(), "full" | "invalid_state"),
        "{err:?}"
    );
    // The players talk as in any room.
    assert_eq!(a.publish(&room, b"gg"), 1);
    assert_eq!(b.expect("msg")["data"].b(), b"gg");
}

#[test]
fn a_lone_player_times_out() {
    let server = Server::start(&[]);
    let mut a = server.client();
    let start = Instant::now();
    enqueue(&mut a, "q", 2, 0, 300);
    let t = a.expect("match_timeout");
    let waited = start.elapsed();
    assert_eq!(t["queue"].s(), "q");
    assert!(waited >= Duration::from_millis(290), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    // Gone from the queue: unmatch finds nothing, and it may queue again.
    a.send(msg! {"t" => "unmatch", "rid" => 5u32, "queue" => "q"});
    a.expect_err_rid("not_found", 5);
    enqueue(&mut a, "q", 2, 0, 100);
    a.expect("match_timeout");
}

#[test]
fn a_disconnect_leaves_the_queue() {
    let server = Server::start(&["--grace-ms", "5000"]);
    // An observer in a room with the leaver: its `away` says the server has
    // seen the disconnect.
    let mut obs = server.client();
    obs.create("watch");
    let mut gone = server.client();
    gone.join("watch");
    obs.expect("presence");
    enqueue(&mut gone, "q", 2, 100, 10_000);
    let gone_id = gone.id;
    gone.drop_tcp();
    assert_eq!(obs.expect("presence")["away"].u(), gone_id);

    // Same queue, same rating: it would pair at once if the leaver were
    // still waiting.
    let mut late = server.client();
    enqueue(&mut late, "q", 2, 100, 300);
    late.expect("match_timeout");
}

#[test]
fn unmatch_leaves_the_queue() {
    let server = Server::start(&[]);
    let mut a = server.client();
    enqueue(&mut a, "q", 2, 7, 10_000);
    // Already waiting there.
    a.send(msg! {"t" => "match", "rid" => 2u32, "queue" => "q", "size" => 2u16});
    a.expect_err_rid("exists", 2);
    a.send(msg! {"t" => "unmatch", "rid" => 3u32, "queue" => "q"});
    assert_eq!(a.expect("ok")["rid"].u(), 3);
    a.send(msg! {"t" => "unmatch", "rid" => 4u32, "queue" => "q"});
    a.expect_err_rid("not_found", 4);

    let mut b = server.client();
    enqueue(&mut b, "q", 2, 7, 300);
    b.expect("match_timeout");
    a.expect_silence(SILENCE);
}

#[test]
fn widening_pairs_distant_players_after_waiting() {
    // Windows start at 10 and widen 1000 points a second, up to 500.
    let server = Server::start(&[
        "--match-window",
        "10",
        "--match-widen",
        "1000",
        "--match-window-max",
        "500",
    ]);
    let mut a = server.client();
    let mut b = server.client();
    let mut far = server.client();
    let start = Instant::now();
    enqueue(&mut a, "q", 2, 1000, 5000);
    enqueue(&mut far, "q", 2, 3000, 700);
    enqueue(&mut b, "q", 2, 1400, 5000);
    // 400 apart: a's window reaches b after 390 ms of waiting.
    let ja = expect_matched(&mut a, "q");
    let at = start.elapsed();
    let jb = expect_matched(&mut b, "q");
    assert_eq!(ja["room"], jb["room"]);
    assert!(at >= Duration::from_millis(350), "matched at {at:?}");
    assert!(at < Duration::from_secs(2), "matched at {at:?}");
    // 1600 and more from anyone: past the widest window, it times out.
    far.expect("match_timeout");
}

#[test]
fn bad_match_requests_and_the_seat_limit() {
    let server = Server::start(&["--max-rooms-per-conn", "2", "--max-members", "8"]);
    let mut a = server.client();
    a.send(msg! {"t" => "match", "rid" => 1u32, "size" => 2u16});
    a.expect_err_rid("bad_request", 1);
    a.send(msg! {"t" => "match", "rid" => 2u32, "queue" => "q"});
    a.expect_err_rid("bad_request", 2);
    a.send(msg! {"t" => "match", "rid" => 3u32, "queue" => "q", "size" => 0u16});
    a.expect_err_rid("bad_request", 3);
    a.send(msg! {"t" => "match", "rid" => 4u32, "queue" => "q", "size" => 9u16});
    a.expect_err_rid("bad_request", 4);
    a.send(msg! {"t" => "match", "rid" => 5u32, "queue" => "no spaces", "size" => 2u16});
    a.expect_err_rid("bad_request", 5);
    a.send(msg! {"t" => "unmatch", "rid" => 6u32});
    a.expect_err_rid("bad_request", 6);
    a.roundtrip();
    // A place in a queue holds a seat: one room plus one queue is the limit.
    a.create("mine");
    enqueue(&mut a, "q", 2, -300, 10_000);
    a.send(msg! {"t" => "match", "rid" => 7u32, "queue" => "q2", "size" => 2u16});
    a.expect_err_rid("forbidden", 7);
    a.send(msg! {"t" => "create", "rid" => 8u32, "room" => "more"});
    a.expect_err_rid("forbidden", 8);
    // Negative ratings pair like any other; size 1 is a room of one.
    let mut b = server.client();
    enqueue(&mut b, "q", 2, -290, 10_000);
    expect_matched(&mut a, "q");
    expect_matched(&mut b, "q");
    let mut solo = server.client();
    enqueue(&mut solo, "solo", 1, 0, 1000);
    let j = expect_matched(&mut solo, "solo");
    assert_eq!(member_ids(&j), vec![solo.id]);
    assert_eq!(solo.expect("state")["state"].s(), "playing");
}
