//! Room props over a real socket (msgpack `bin` values). The props logic
//! (nil, compare-and-set, no-ops, the size limit) is tested on the core in
//! `src/hub/tests/props.rs`.

#[macro_use]
mod common;

use common::*;

/// Reads the `ok` (rid) and the `props` broadcast, in either order.
fn ok_and_props(c: &mut Client, rid: u32) -> (Value, Value) {
    let x = c.recv();
    let y = c.recv();
    let (ok, props) = if x.t() == "ok" { (x, y) } else { (y, x) };
    assert_eq!(ok.t(), "ok", "{ok:?}");
    assert_eq!(props.t(), "props", "{props:?}");
    assert_eq!(ok["rid"].u(), u64::from(rid));
    assert_eq!(
        ok["ver"], props["ver"],
        "ok and broadcast carry the same ver"
    );
    (ok, props)
}

#[test]
fn set_is_acknowledged_and_broadcast_to_all_members() {
    let server = Server::start(&[]);
    let (mut a, mut b) = server.pair("r");
    let ver0 = b.join("r")["ver"].u();

    a.send(
        msg! {"t" => "props", "rid" => 1u32, "room" => "r", "set" => msg! {"color" => bin("red")}},
    );
    let (ok, props) = ok_and_props(&mut a, 1);
    let ver1 = ok["ver"].u();
    assert!(ver1 > ver0, "a change bumps ver ({ver0} -> {ver1})");
    assert_eq!(props["room"].s(), "r");
    assert_eq!(props["set"]["color"].b(), b"red");

    let seen = b.expect("props");
    assert_eq!(seen["set"]["color"].b(), b"red");
    assert_eq!(seen["ver"].u(), ver1);

    let mut c = server.client();
    let joined = c.join("r");
    assert_eq!(joined["props"]["color"].b(), b"red");
    assert_eq!(joined["ver"].u(), ver1);
}
