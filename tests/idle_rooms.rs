//! An empty room is closed after its idle timeout, in real time. The rest
//! (leave, members, away seats, per-room `idle_ms`) is tested on the core
//! with an injected clock in `src/hub/tests/idle.rs`.

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
