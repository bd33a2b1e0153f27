//! The HTTP room API (PROTOCOL.md "Server API"): present only with
//! `--admin-key`, every call needs the key as a bearer token.

#[macro_use]
mod common;

use common::*;

const KEY: &str = "admin-secret";

fn call(server: &Server, method: &str, path: &str, key: Option<&str>, body: &[u8]) -> HttpResponse {
    let mut c = server.http_conn();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: roomd\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    c.send(&req);
    c.response().expect("a response")
}

fn json(r: &HttpResponse) -> serde_json::Value {
    serde_json::from_str(&r.text()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

#[test]
fn without_an_admin_key_the_api_does_not_exist() {
    let server = Server::start(&[]);
    assert_eq!(call(&server, "GET", "/rooms", Some(KEY), b"").status, 404);
}

#[test]
fn a_wrong_or_missing_key_is_401() {
    let server = Server::start(&["--admin-key", KEY]);
    let r = call(&server, "GET", "/rooms", None, b"");
    assert_eq!(r.status, 401);
    assert_eq!(json(&r)["error"], "unauthorized");
    assert_eq!(
        call(&server, "GET", "/rooms", Some("admin-secreT"), b"").status,
        401
    );
}

#[test]
fn create_list_inspect_publish_and_close() {
    let server = Server::start(&["--admin-key", KEY]);
    let r = call(
        &server,
        "POST",
        "/rooms",
        Some(KEY),
        br#"{"room":"arena","max":4,"props":{"map":"dust"}}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(json(&r)["room"], "arena");
    let dup = call(&server, "POST", "/rooms", Some(KEY), br#"{"room":"arena"}"#);
    assert_eq!(dup.status, 409);
    assert_eq!(json(&dup)["error"], "exists");

    let mut a = server.client();
    let joined = a.join("arena");
    assert_eq!(joined["props"]["map"].b(), b"dust");

    let list = json(&call(&server, "GET", "/rooms", Some(KEY), b""));
    let rooms = list["rooms"].as_array().expect("rooms array");
    assert!(rooms
        .iter()
        .any(|r| r["room"] == "arena" && r["members"] == 1 && r["max"] == 4));

    let one = json(&call(&server, "GET", "/rooms/arena", Some(KEY), b""));
    assert_eq!(one["members"][0]["id"], a.id);
    assert_eq!(one["props"]["map"], "ZHVzdA==", "props are base64");
    assert_eq!(one["state"], "waiting");

    let p = call(
        &server,
        "POST",
        "/rooms/arena/publish",
        Some(KEY),
        &[0, 1, 2, 255],
    );
    assert_eq!(p.status, 200, "{}", p.text());
    assert_eq!(json(&p)["seq"], 1);
    let m = a.expect("msg");
    assert_eq!(m["from"].u(), 0);
    assert_eq!(m["seq"].u(), 1);
    assert_eq!(m["data"].b(), &[0, 1, 2, 255]);

    assert_eq!(
        call(&server, "DELETE", "/rooms/arena", Some(KEY), b"").status,
        200
    );
    let closed = a.expect("closed");
    assert_eq!(closed["why"].s(), "api");
    assert_eq!(
        call(&server, "GET", "/rooms/arena", Some(KEY), b"").status,
        404
    );
}

#[test]
fn bad_bodies_get_clear_4xx() {
    let server = Server::start(&["--admin-key", KEY, "--max-message", "1024"]);
    let r = call(&server, "POST", "/rooms", Some(KEY), b"not json");
    assert_eq!(r.status, 400);
    assert_eq!(json(&r)["error"], "bad_request");
    let r = call(
        &server,
        "POST",
        "/rooms",
        Some(KEY),
        br#"{"room":"bad name"}"#,
    );
    assert_eq!(r.status, 400);
    let r = call(&server, "POST", "/rooms/none/publish", Some(KEY), b"x");
    assert_eq!(r.status, 404);
    call(&server, "POST", "/rooms", Some(KEY), br#"{"room":"r"}"#);
    let r = call(&server, "POST", "/rooms/r/publish", Some(KEY), &[7u8; 2000]);
    assert_eq!(r.status, 413);
    server.assert_alive();
}

#[test]
fn a_body_split_across_writes_is_read_whole() {
    let server = Server::start(&["--admin-key", KEY]);
    let mut c = server.http_conn();
    let body = br#"{"room":"slow"}"#;
    c.send(
        format!(
            "POST /rooms HTTP/1.1\r\nHost: roomd\r\nAuthorization: Bearer {KEY}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body[..5]);
    c.send(&body[5..]);
    let r = c.response().expect("a response");
    assert_eq!(r.status, 201, "{}", r.text());
}

/// Sends a hand-written request head (`headers` between the request line
/// and the blank line) and `body` on a fresh connection.
fn raw(server: &Server, head: &str, headers: &str, body: &[u8]) -> HttpConn {
    let mut c = server.http_conn();
    let mut req =
        format!("{head} HTTP/1.1\r\nHost: roomd\r\nAuthorization: Bearer {KEY}\r\n{headers}\r\n")
            .into_bytes();
    req.extend_from_slice(body);
    c.send(&req);
    c
}

/// A `POST` body without `Content-Length` was read as empty (publishing an
/// empty message, creating nothing); two `Content-Length`s used the first
/// (a longer first one left the request hanging). PROTOCOL.md: every `POST`
/// needs `Content-Length` (411); conflicting ones are 400 and close the
/// connection (RFC 9112 6.3).
#[test]
fn post_without_content_length_is_411_and_conflicting_lengths_are_400() {
    // A handshake timeout far past the client's watchdog: a request left
    // waiting for its body fails the test instead of being cut off.
    let server = Server::start(&["--admin-key", KEY, "--handshake-ms", "60000"]);
    assert_eq!(
        call(&server, "POST", "/rooms", Some(KEY), br#"{"room":"r"}"#).status,
        201
    );
    let mut a = server.client();
    a.join("r");

    let mut c = raw(&server, "POST /rooms/r/publish", "", b"hello");
    assert_eq!(c.response().expect("a response").status, 411);
    let mut c = raw(&server, "POST /rooms", "", br#"{"room":"x"}"#);
    assert_eq!(c.response().expect("a response").status, 411);
    assert!(c.closed_within(WATCHDOG));
    // Transfer-Encoding is not supported either.
    let mut c = raw(
        &server,
        "POST /rooms",
        "Transfer-Encoding: chunked\r\n",
        b"c\r\n{\"room\":\"y\"}\r\n0\r\n\r\n",
    );
    assert_eq!(c.response().expect("a response").status, 411);

    let body = [7u8; 50];
    for (lengths, body) in [
        (["50", "5"], &body[..5]),
        (["5", "50"], &body[..]),
        (["5", "five"], &body[..5]),
    ] {
        let headers = format!(
            "Content-Length: {}\r\nContent-Length: {}\r\n",
            lengths[0], lengths[1]
        );
        let mut c = raw(&server, "POST /rooms/r/publish", &headers, body);
        let r = c.response().expect("a response");
        assert_eq!(r.status, 400, "{lengths:?}: {}", r.text());
        assert!(c.closed_within(WATCHDOG), "{lengths:?}: closed at once");
    }
    let mut c = raw(&server, "POST /rooms", "Content-Length: abc\r\n", b"");
    assert_eq!(c.response().expect("a response").status, 400);

    // None of the above published or created anything.
    assert_eq!(call(&server, "GET", "/rooms/x", Some(KEY), b"").status, 404);
    assert_eq!(call(&server, "GET", "/rooms/y", Some(KEY), b"").status, 404);
    // Identical duplicates are one length; `Content-Length: 0` is an empty body.
    let mut c = raw(
        &server,
        "POST /rooms/r/publish",
        "Content-Length: 3\r\nContent-Length: 3\r\n",
        b"abc",
    );
    assert_eq!(c.response().expect("a response").status, 200);
    let m = a.expect("msg");
    assert_eq!((m["seq"].u(), m["data"].b()), (1, &b"abc"[..]));
    let mut c = raw(
        &server,
        "POST /rooms/r/publish",
        "Content-Length: 0\r\n",
        b"",
    );
    assert_eq!(c.response().expect("a response").status, 200);
    let m = a.expect("msg");
    assert_eq!((m["seq"].u(), m["data"].b()), (2, &b""[..]));
}
