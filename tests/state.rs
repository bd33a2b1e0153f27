//! Room state machine over a real socket: the legal chain to `closed`. The
//! rest (illegal moves, owner only, joins while `created`/`waiting`,
//! `autostart`) is tested on the core in `src/hub/tests/state.rs`.

#[macro_use]
mod common;

use common::*;

/// `a` creates "r" (extra create fields `fields`), `b` joins; presence drained.
fn pair(server: &Server, fields: Value) -> (Client, Client) {
    let mut a = server.client();
    let mut m = vec![("room".into(), "r".into())];
    if let Value::Map(f) = fields {
        m.extend(f);
    }
    a.create_with(Value::Map(m));
    let mut b = server.client();
    b.join("r");
    a.expect("presence");
    (a, b)
}

/// The owner sets `to` with a rid; returns the `ver` after checking the `ok`
/// and the `state` broadcast at the owner and at `other`.
fn set_state(owner: &mut Client, other: &mut Client, to: &str, rid: u32) -> u64 {
    owner.send(msg! {"t" => "state", "rid" => rid, "room" => "r", "to" => to});
    let x = owner.recv();
    let y = owner.recv();
    let (ok, st) = if x.t() == "ok" { (x, y) } else { (y, x) };
    assert_eq!(ok.t(), "ok", "{ok:?}");
    assert_eq!(ok["rid"].u(), u64::from(rid));
    assert_eq!(st.t(), "state", "{st:?}");
    assert_eq!(st["room"].s(), "r");
    assert_eq!(st["state"].s(), to);
    assert_eq!(st["ver"], ok["ver"]);
    let seen = other.expect("state");
    assert_eq!(seen["state"].s(), to);
    assert_eq!(seen["ver"], ok["ver"]);
    ok["ver"].u()
}

#[test]
fn legal_chain_to_closed_then_room_is_gone() {
    let server = Server::start(&[]);
    let (mut a, mut b) = pair(&server, msg! {});
    let v0 = b.join("r")["ver"].u();
    let v1 = set_state(&mut a, &mut b, "playing", 1);
    let v2 = set_state(&mut a, &mut b, "settling", 2);
    assert!(
        v0 < v1 && v1 < v2,
        "every state change bumps ver: {v0} {v1} {v2}"
    );

    // `closed`: ok, state closed to everyone, then `closed` why owner.
    a.send(msg! {"t" => "state", "rid" => 3u32, "room" => "r", "to" => "closed"});
    let mut got = vec![a.recv(), a.recv(), a.recv()];
    let ok_at = got.iter().position(|m| m.t() == "ok").expect("ok");
    let ok = got.remove(ok_at);
    assert_eq!(ok["rid"].u(), 3);
    assert_eq!(got[0].t(), "state", "{got:?}");
    assert_eq!(got[0]["state"].s(), "closed");
    assert_eq!(got[1].t(), "closed", "{got:?}");
    assert_eq!(got[1]["room"].s(), "r");
    assert_eq!(got[1]["why"].s(), "owner");

    assert_eq!(b.expect("state")["state"].s(), "closed");
    let closed = b.expect("closed");
    assert_eq!(closed["why"].s(), "owner");

    let mut c = server.client();
    c.send(msg! {"t" => "join", "rid" => 1u32, "room" => "r"});
    c.expect_err_rid("not_found", 1);
    // The members are no longer in it.
    b.send(msg! {"t" => "pub", "rid" => 2u32, "room" => "r", "data" => bin("x")});
    let err = b.expect("err");
    assert!(
        ["not_found", "not_member"].contains(&err["code"].s()),
        "pub to a closed room: {err:?}"
    );
    // The name is free again.
    c.create("r");
}
