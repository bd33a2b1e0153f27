//! Plain HTTP on the WebSocket port: `/healthz`, `/metrics`, and 404s.

#[macro_use]
mod common;

use common::*;
use std::time::Duration;

/// The sum of every sample of `name` (any labels) in a Prometheus text body.
fn metric(body: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in body.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if let Some(labels) = rest.strip_prefix('{') {
            let end = labels.find('}').expect("closing brace");
            &labels[end + 1..]
        } else if rest.starts_with(' ') {
            rest
        } else {
            continue; // a longer name with this prefix
        };
        let v: f64 = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("bad sample line {line:?}"));
        *found.get_or_insert(0.0) += v;
    }
    found
}

fn metrics(server: &Server) -> String {
    let resp = server.get("/metrics");
    assert_eq!(resp.status, 200, "{resp:?}");
    let ct = resp.header("Content-Type").unwrap_or("");
    assert!(
        ct.starts_with("text/plain"),
        "Prometheus text format: {ct:?}"
    );
    resp.text()
}

fn read(server: &Server, name: &str) -> f64 {
    let body = metrics(server);
    metric(&body, name).unwrap_or_else(|| panic!("{name} missing from:\n{body}"))
}

#[test]
fn healthz_is_200_ok() {
    let server = Server::start(&[]);
    let resp = server.get("/healthz");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.text().trim(), "ok");
}

#[test]
fn metrics_exposes_the_core_gauges_and_counters() {
    let server = Server::start(&[]);
    let body = metrics(&server);
    for name in [
        "roomd_connections",
        "roomd_rooms",
        "roomd_messages_in_total",
    ] {
        assert!(
            metric(&body, name).is_some(),
            "{name} missing from:\n{body}"
        );
    }
    assert_eq!(metric(&body, "roomd_rooms"), Some(0.0));
}

#[test]
fn metrics_move_with_traffic() {
    let server = Server::start(&[]);
    let conns0 = read(&server, "roomd_connections");
    let msgs0 = read(&server, "roomd_messages_in_total");

    let mut a = server.client();
    a.create("one");
    a.create("two");
    let mut b = server.client();
    b.join("one");
    for _ in 0..10 {
        b.publish("one", b"x");
    }
    // Earlier plain HTTP connections may take a moment to be reaped.
    let mut conns = 0.0;
    assert!(
        eventually(Duration::from_secs(2), || {
            conns = read(&server, "roomd_connections");
            conns == conns0 + 2.0
        }),
        "two WebSocket clients more than at the start: {conns0} -> {conns}"
    );
    assert_eq!(read(&server, "roomd_rooms"), 2.0);
    let msgs = read(&server, "roomd_messages_in_total");
    assert!(
        msgs >= msgs0 + 13.0,
        "2 creates, 1 join, 10 pubs: {msgs0} -> {msgs}"
    );

    b.close(1000);
    assert!(
        eventually(Duration::from_secs(2), || read(
            &server,
            "roomd_connections"
        ) == conns0 + 1.0),
        "a closed connection is no longer counted"
    );
    let after = read(&server, "roomd_messages_in_total");
    assert!(
        after >= msgs,
        "a counter never goes down: {msgs} -> {after}"
    );
}

#[test]
fn unknown_path_is_404() {
    let server = Server::start(&[]);
    for path in ["/nope", "/healthz/extra", "/rooms", "/roomd.js/x"] {
        let resp = server.get(path);
        assert_eq!(resp.status, 404, "{path}: {resp:?}");
    }
}

#[test]
fn oversized_request_head_is_431() {
    let server = Server::start(&[]);
    let mut conn = server.http_conn();
    let big = "x".repeat(10 * 1024);
    conn.send(format!("GET /healthz HTTP/1.1\r\nHost: roomd\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let resp = conn.response().expect("response");
    assert_eq!(resp.status, 431, "{resp:?}");
    server.assert_alive();
}

#[test]
fn http_and_websocket_share_the_port() {
    let server = Server::start(&[]);
    let mut c = server.client();
    assert_eq!(server.get("/healthz").status, 200);
    c.roundtrip();
}

/// README "Limits": a request head carries at most 32 header fields (431
/// past them).
#[test]
fn more_than_32_header_fields_is_431() {
    let server = Server::start(&[]);
    for (n, status) in [(32, 200), (33, 431)] {
        let mut conn = server.http_conn();
        // Host plus n - 1 others.
        let extra: String = (1..n).map(|i| format!("X-H{i}: v\r\n")).collect();
        conn.send(format!("GET /healthz HTTP/1.1\r\nHost: roomd\r\n{extra}\r\n").as_bytes());
        let resp = conn.response().expect("response");
        assert_eq!(resp.status, status, "{n} header fields: {resp:?}");
    }
    server.assert_alive();
}
