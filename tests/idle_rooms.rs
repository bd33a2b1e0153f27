//! Empty rooms are closed after their idle timeout; rooms with members stay.

#[macro_use]
mod common;

use common::*;
use std::time::Duration;

const IDLE: &str = "250";

fn listed(c: &mut Client, room: &str) -> bool {
    let rid = c.rid();
    c.send(msg! {"t" => "list", "rid" => rid});
    let rooms = c.expect("rooms");
    rooms["rooms"].arr().iter().any(|r| r["room"].s() == room)
}

fn gone_within(c: &mut Client, room: &str, within: Duration) -> bool {
    eventually(within, || !listed(c, room))
}

#[test]
fn empty_room_is_closed_after_idle_ms() {
    let server = Server::start(&["--idle-ms", IDLE]);
    let mut a = server.client();
    a.send(msg! {"t" => "create", "rid" => 1u32, "room" => "e", "join" => false});
    a.expect("created");
    assert!(listed(&mut a, "e"), "exists right after create");
    assert!(
        gone_within(&mut a, "e", Duration::from_secs(3)),
        "closed after idle"
    );
    a.send(msg! {"t" => "join", "rid" => 2u32, "room" => "e"});
    a.expect_err_rid("not_found", 2);
    // The name can be taken again.
    a.create("e");
}

#[test]
fn room_emptied_by_leave_is_closed_after_idle_ms() {
    let server = Server::start(&["--idle-ms", IDLE]);
    let mut a = server.client();
    a.create("r");
    a.leave("r");
    assert!(gone_within(&mut a, "r", Duration::from_secs(3)));
    let mut b = server.client();
    b.send(msg! {"t" => "join", "rid" => 1u32, "room" => "r"});
    b.expect_err_rid("not_found", 1);
}

#[test]
fn room_with_a_member_stays() {
    let server = Server::start(&["--idle-ms", IDLE]);
    let mut a = server.client();
    a.create("r");
    // Three idle periods: no `closed` arrives and the room still takes joins.
    a.expect_silence(Duration::from_millis(750));
    let mut b = server.client();
    let joined = b.join("r");
    assert_eq!(member_ids(&joined), vec![a.id, b.id]);
}

#[test]
fn a_join_within_idle_keeps_the_room() {
    let server = Server::start(&["--idle-ms", IDLE]);
    let mut a = server.client();
    a.send(msg! {"t" => "create", "rid" => 1u32, "room" => "r", "join" => false});
    a.expect("created");
    let mut b = server.client();
    b.join("r");
    b.expect_silence(Duration::from_millis(750));
    assert!(listed(&mut a, "r"));
}

#[test]
fn create_idle_ms_overrides_the_server_default() {
    let server = Server::start(&["--idle-ms", IDLE]);
    let mut a = server.client();
    a.send(msg! {"t" => "create", "rid" => 1u32, "room" => "long", "join" => false, "idle_ms" => 5000u32});
    a.expect("created");
    a.send(msg! {"t" => "create", "rid" => 2u32, "room" => "short", "join" => false});
    a.expect("created");
    assert!(gone_within(&mut a, "short", Duration::from_secs(3)));
    // "short" is gone after at least 250 ms; "long" has 5 s.
    a.expect_silence(Duration::from_millis(300));
    assert!(listed(&mut a, "long"), "a per-room idle_ms is honoured");
}

#[test]
fn a_member_that_is_away_keeps_the_room_alive() {
    let server = Server::start(&["--idle-ms", IDLE, "--grace-ms", "2000"]);
    let (mut a, b) = server.pair("r");
    a.leave("r");
    b.drop_tcp();
    let mut c = server.client();
    c.expect_silence(Duration::from_millis(600));
    assert!(
        listed(&mut c, "r"),
        "a seat kept for grace is not an empty room"
    );
}
