//! Matchmaking (PROTOCOL.md `match`/`unmatch`) end to end on one server: a
//! match is a new room, `matched` then `joined`, full and `playing` once all
//! are in. Windows, groups, timeouts and `unmatch` are unit tests of the
//! core (`src/hub/tests/matchmaking.rs`); a match across workers is in
//! `workers.rs`.

#[macro_use]
mod common;

use common::*;

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
