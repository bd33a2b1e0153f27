//! `send` over a real socket (msgpack `bin` data). The unicast logic is
//! tested on the core in `src/hub/tests/unicast.rs`.

#[macro_use]
mod common;

use common::*;
use std::time::Duration;

/// `a` creates "r"; `b` and `c` join; presence drained.
fn three(server: &Server) -> (Client, Client, Client) {
    let (mut a, mut b) = server.pair("r");
    let mut c = server.client();
    c.join("r");
    a.expect("presence");
    b.expect("presence");
    (a, b, c)
}

#[test]
fn send_reaches_only_the_target() {
    let server = Server::start(&[]);
    let (mut a, mut b, mut c) = three(&server);
    a.send(msg! {"t" => "send", "room" => "r", "to" => b.id, "data" => bin([9u8, 0, 0xfe])});
    let m = b.expect("msg");
    assert_eq!(m["room"].s(), "r");
    assert_eq!(m["from"].u(), a.id);
    assert_eq!(m["to"].u(), b.id);
    assert_eq!(m["data"].b(), [9u8, 0, 0xfe]);
    assert!(!m.has("seq"), "unicast has no seq: {m:?}");
    c.expect_silence(SILENCE);
    a.expect_silence(Duration::from_millis(50)); // no ok without rid
}
