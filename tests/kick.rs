//! Kick and ban (PROTOCOL.md "Kick"): the owner (or the HTTP API) removes
//! a member or watcher, which gets `kicked`; members see `leave` with
//! `why:"kicked"`; a banned id may not come back while the room exists.
//! One kick end to end here; bans, watchers, the HTTP API and kicks across
//! workers are unit tests of the core (`src/hub/tests/audience.rs`).

#[macro_use]
mod common;

use common::*;

fn kick(c: &mut Client, room: &str, id: u64, ban: bool) -> u32 {
    let rid = c.rid();
    c.send(msg! {"t" => "kick", "rid" => rid, "room" => room, "id" => id, "ban" => ban});
    rid
}

#[test]
fn the_owner_kicks_a_member_who_may_come_back() {
    let server = Server::start(&[]);
    let (mut a, mut b) = server.pair("r");
    let mut c = server.client();
    c.join("r");
    a.expect("presence");
    b.expect("presence");
    let rid = kick(&mut a, "r", b.id, false);
    assert_eq!(a.expect("ok")["rid"].u(), u64::from(rid));
    let k = b.expect("kicked");
    assert_eq!(k["room"].s(), "r");
    for x in [&mut a, &mut c] {
        let p = x.expect("presence");
        assert_eq!((p["leave"].u(), p["why"].s()), (b.id, "kicked"), "{p:?}");
    }
    b.send(msg! {"t" => "pub", "rid" => 7u32, "room" => "r", "data" => bin(b"x")});
    b.expect_err_rid("not_member", 7);
    // Without a ban it may join again.
    let j = b.join("r");
    assert_eq!(member_ids(&j), vec![a.id, c.id, b.id]);
}
