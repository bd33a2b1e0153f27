//! SIGTERM/SIGINT: clients get `closing` then close 1001, `/healthz` says
//! `draining`, the process exits 0 within `--drain-ms`; a second signal exits
//! at once.

#[macro_use]
mod common;

use common::*;
use std::time::{Duration, Instant};

/// Reads up to and including `closing`; checks its `retry_ms`.
fn expect_closing(c: &mut Client) {
    let closing = c.recv_type("closing");
    assert_eq!(closing["retry_ms"].u(), 1000, "{closing:?}");
}

#[test]
fn sigterm_sends_closing_then_1001_and_exits_0() {
    let mut server = Server::start(&["--drain-ms", "3000"]);
    let mut a = server.client();
    a.create("r");
    let mut b = server.client_json();
    b.join("r");
    a.expect("presence");

    let start = Instant::now();
    server.signal(libc::SIGTERM);
    for c in [&mut a, &mut b] {
        let before = c.expect_close(1001);
        let closing: Vec<_> = before.iter().filter(|m| m.t() == "closing").collect();
        assert_eq!(
            closing.len(),
            1,
            "one closing before the close frame: {before:?}"
        );
        assert_eq!(closing[0]["retry_ms"].u(), 1000);
        assert!(
            before.iter().all(|m| m.t() != "closed"),
            "rooms are not announced as closed on shutdown: {before:?}"
        );
    }
    // Like any client that saw the close handshake and EOF, hang up.
    drop(a);
    drop(b);
    let status = server
        .wait_exit(Duration::from_secs(4))
        .expect("exits within drain-ms");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "with every client gone it need not wait for the whole drain: {:?}",
        start.elapsed()
    );
    assert_eq!(
        server.stdout_lines().len(),
        1,
        "exactly one line on stdout: {:?}",
        server.stdout_lines()
    );
}

#[test]
fn sigint_drains_like_sigterm() {
    let mut server = Server::start(&["--drain-ms", "3000"]);
    let mut a = server.client();
    server.signal(libc::SIGINT);
    a.expect_close(1001);
    drop(a);
    let status = server.wait_exit(Duration::from_secs(4)).expect("exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn idle_server_exits_promptly() {
    let mut server = Server::start(&["--drain-ms", "5000"]);
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(2))
        .expect("nothing to drain: exits well before drain-ms");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn healthz_is_503_draining_and_drain_ms_bounds_the_exit() {
    let mut server = Server::start(&["--drain-ms", "1500"]);
    let mut a = server.client();
    let start = Instant::now();
    server.signal(libc::SIGTERM);
    // `a` reads `closing` and then stops reading: it never answers the close
    // frame, so the server has to drain until --drain-ms.
    expect_closing(&mut a);
    match std::net::TcpStream::connect(server.addr) {
        Err(_) => {} // listener already closed: nothing to check
        Ok(stream) => {
            drop(stream);
            let mut conn = server.http_conn();
            conn.send(b"GET /healthz HTTP/1.1\r\nHost: roomd\r\nConnection: close\r\n\r\n");
            if let Ok(resp) = conn.response() {
                assert_eq!(resp.status, 503, "{resp:?}");
                assert_eq!(resp.text().trim(), "draining");
            }
        }
    }
    let status = server
        .wait_exit(Duration::from_millis(3000))
        .expect("exits once drain-ms has passed");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        start.elapsed() < Duration::from_millis(2700),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn new_upgrades_during_drain_are_refused() {
    let server = Server::start(&["--drain-ms", "2000"]);
    let mut a = server.client();
    server.signal(libc::SIGTERM);
    expect_closing(&mut a);
    if let Ok(c) = Client::connect(server.addr, "/ws", None) {
        panic!("a new session during drain: {:?}", c.welcome);
    }
}

#[test]
fn second_sigterm_exits_at_once() {
    let mut server = Server::start(&["--drain-ms", "10000"]);
    let mut a = server.client();
    server.signal(libc::SIGTERM);
    expect_closing(&mut a); // and then never answers the close frame
    assert!(
        server.wait_exit(Duration::from_millis(300)).is_none(),
        "still draining for the client that did not answer"
    );
    let start = Instant::now();
    server.signal(libc::SIGTERM);
    server
        .wait_exit(Duration::from_secs(1))
        .expect("a second SIGTERM exits at once");
    assert!(start.elapsed() < Duration::from_secs(1));
}

/// A connection accepted before SIGTERM whose request comes after it gets
/// its answer, `503 draining`, before the worker exits.
#[test]
fn an_http_request_that_comes_during_the_drain_is_answered() {
    let mut server = Server::start(&["--drain-ms", "3000"]);
    let mut c = server.http_conn();
    // The scrape and `c`: both accepted.
    server.await_metric("/metrics", "roomd_connections", |n| n >= 2);
    server.signal(libc::SIGTERM);
    // The drain has begun once another connection is told so.
    let deadline = Instant::now() + WATCHDOG;
    while server.get("/healthz").status != 503 {
        assert!(Instant::now() < deadline, "no drain after SIGTERM");
    }
    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response().expect("an answer, not a reset");
    assert_eq!((r.status, r.text().as_str()), (503, "draining\n"));
    drop(c);
    let status = server
        .wait_exit(Duration::from_secs(4))
        .expect("exits within drain-ms");
    assert_eq!(status.code(), Some(0), "{status:?}");
}
