//! The files served to browsers: the demo page at `/` and the client library
//! at `/roomd.js`, with their content types and ETag revalidation.

#[macro_use]
mod common;

use common::*;
use std::io::Read;

fn get_with(server: &Server, request: &str) -> HttpResponse {
    let mut c = server.http_conn();
    c.send(request.as_bytes());
    c.response().expect("a response")
}

#[test]
fn demo_page_is_html_that_imports_the_library() {
    let server = Server::start(&[]);
    let resp = server.get("/");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let page = resp.text();
    assert!(page.starts_with("<!doctype html>"), "{page:.80}");
    assert!(
        page.contains(r#"from "/roomd.js""#),
        "the page imports the library from this server"
    );
    assert!(resp.header("ETag").is_some(), "{resp:?}");
}

#[test]
fn client_library_is_a_javascript_module() {
    let server = Server::start(&[]);
    let resp = server.get("/roomd.js");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/javascript; charset=utf-8")
    );
    let body = resp.text();
    assert!(body.contains("export class Client"), "{body:.200}");
    assert_eq!(
        resp.header("Content-Length"),
        Some(resp.body.len().to_string().as_str())
    );
}

#[test]
fn if_none_match_with_the_etag_is_304_without_a_body() {
    let server = Server::start(&[]);
    for path in ["/", "/roomd.js"] {
        let first = server.get(path);
        let etag = first.header("ETag").expect("an ETag").to_owned();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "a strong, quoted validator: {etag}"
        );
        assert_eq!(
            server.get(path).header("ETag"),
            Some(etag.as_str()),
            "stable between requests"
        );

        let again = get_with(
            &server,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: roomd\r\nIf-None-Match: \"other\", {etag}\r\n\r\n"
            ),
        );
        assert_eq!(again.status, 304, "{path}: {again:?}");
        assert!(again.body.is_empty(), "a 304 has no body: {again:?}");
        assert_eq!(again.header("ETag"), Some(etag.as_str()));

        let stale = get_with(
            &server,
            &format!("GET {path} HTTP/1.1\r\nHost: roomd\r\nIf-None-Match: \"stale\"\r\n\r\n"),
        );
        assert_eq!(stale.status, 200, "{path}: another tag gets the file");
        assert_eq!(stale.body, first.body);
    }
}

#[test]
fn head_has_the_headers_and_no_body_and_post_is_405() {
    let server = Server::start(&[]);
    let full = server.get("/roomd.js");
    let mut c = server.http_conn();
    c.send(b"HEAD /roomd.js HTTP/1.1\r\nHost: roomd\r\n\r\n");
    let mut raw = Vec::new();
    c.stream
        .read_to_end(&mut raw)
        .expect("the server closes after the head");
    let raw = String::from_utf8(raw).expect("an ASCII head");
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert!(
        raw.contains(&format!("Content-Length: {}\r\n", full.body.len())),
        "the length a GET would have: {raw}"
    );
    assert!(raw.ends_with("\r\n\r\n"), "no body follows: {raw}");

    let post = get_with(
        &server,
        "POST / HTTP/1.1\r\nHost: roomd\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, 405, "{post:?}");
}
