//! The HTTP side of the one port: parsing a request head (httparse),
//! deciding the route (WebSocket upgrade on `/ws`, `/healthz`, `/metrics`,
//! the embedded demo page and client library of [`crate::web`]), and
//! writing responses. Plain HTTP responses close the connection.
//!
//! Costs: parsing is incremental over the bytes read so far and bounded by
//! [`MAX_HEAD`]; nothing here allocates more than the head's size.

use crate::protocol::Proto;

/// Largest request head accepted (431 past it).
pub const MAX_HEAD: usize = 8192;
const MAX_HEADERS: usize = 32;

/// What a complete request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// A valid WebSocket upgrade on `/ws`.
    Upgrade(Upgrade),
    Healthz,
    Metrics,
    /// `/metrics/all`: every worker's figures in one answer.
    MetricsAll,
    /// The HTTP room API under `/rooms` (answered only with `--admin-key`).
    Api(ApiReq),
    /// An embedded file (`/`, `/roomd.js`): `fresh` when the request's
    /// `If-None-Match` names its ETag (answer 304), `head` for `HEAD`.
    Static {
        asset: &'static crate::web::Asset,
        fresh: bool,
        head: bool,
    },
    /// An HTTP error to answer with, then close.
    Error(u16, &'static str),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
    pub proto: Proto,
    /// Whether the client named a subprotocol (the reply must echo it only then).
    pub proto_asked: bool,
    /// `?room=` to join after `welcome`.
    pub room: Option<String>,
    /// `?token=` or `Authorization: Bearer`.
    pub token: Option<String>,
    /// Echo every message back instead of speaking the room protocol.
    pub echo: bool,
    /// The `Origin` header (browsers send it).
    pub origin: Option<String>,
}

/// A request to the room API: the body (of `body_len` bytes) follows the head.
#[derive(Debug, PartialEq, Eq)]
pub struct ApiReq {
    pub method: String,
    pub path: String,
    /// `Authorization: Bearer` value.
    pub bearer: Option<String>,
    pub body_len: usize,
}

/// Result of feeding the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// Need more bytes.
    Partial,
    /// The head is complete: its route and its length in bytes (what follows
    /// belongs to the WebSocket stream).
    Done(Route, usize),
}

/// Parses a request head from `buf`. Never fails: malformed input becomes a
/// `Route::Error` to answer with.
pub fn parse(buf: &[u8]) -> Parse {
    parse_with(buf, None)
}

/// [`parse`], where an upgrade on `echo_path` (conformance testing only)
/// opens an echo connection instead of a room session.
pub fn parse_with(buf: &[u8], echo_path: Option<&str>) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_HEAD {
                Parse::Done(Route::Error(431, "request head too large\n"), buf.len())
            } else {
                Parse::Partial
            }
        }
        Ok(httparse::Status::Complete(n)) => Parse::Done(route(&req, echo_path), n),
        Err(httparse::Error::TooManyHeaders) => {
            Parse::Done(Route::Error(431, "too many headers\n"), buf.len())
        }
        Err(_) => Parse::Done(Route::Error(400, "malformed HTTP request\n"), buf.len()),
    }
}

fn header<'a>(req: &'a httparse::Request, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn route(req: &httparse::Request, echo_path: Option<&str>) -> Route {
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let method = req.method.unwrap_or("");
    match path {
        "/healthz" | "/metrics" | "/metrics/all" if method != "GET" && method != "HEAD" => {
            Route::Error(405, "method not allowed\n")
        }
        "/healthz" => Route::Healthz,
        "/metrics" => Route::Metrics,
        "/metrics/all" => Route::MetricsAll,
        "/ws" => upgrade(req, method, query, false),
        p if Some(p) == echo_path => upgrade(req, method, query, true),
        "/rooms" => api(req, method, path),
        p if p.starts_with("/rooms/") => api(req, method, path),
        p => match crate::web::asset(p) {
            Some(_) if method != "GET" && method != "HEAD" => {
                Route::Error(405, "method not allowed\n")
            }
            Some(asset) => Route::Static {
                asset,
                fresh: header(req, "if-none-match")
                    .is_some_and(|v| crate::web::matches(v, asset.etag)),
                head: method == "HEAD",
            },
            None => Route::Error(404, "not found\n"),
        },
    }
}

/// Validates an opening handshake per RFC 6455 4.2.1: "An HTTP/1.1 or higher
/// GET request ... An |Upgrade| header field containing the value
/// "websocket" ... A |Connection| header field that includes the token
/// "Upgrade" ... A |Sec-WebSocket-Key| header field with a base64-encoded
/// value that, when decoded, is 16 bytes in length ... A
/// |Sec-WebSocket-Version| header field, with a value of 13."
fn upgrade(req: &httparse::Request, method: &str, query: &str, echo: bool) -> Route {
    if method != "GET" {
        return Route::Error(405, "method not allowed\n");
    }
    if req.version != Some(1) {
        return Route::Error(400, "WebSocket needs HTTP/1.1\n");
    }
    if !has_token(header(req, "upgrade"), "websocket")
        || !has_token(header(req, "connection"), "upgrade")
    {
        return Route::Error(400, "expected a WebSocket upgrade\n");
    }
    if header(req, "sec-websocket-version").map(str::trim) != Some("13") {
        return Route::Error(426, "unsupported WebSocket version (need 13)\n");
    }
    let key = match header(req, "sec-websocket-key").map(str::trim) {
        Some(k) if valid_key(k) => k,
        _ => return Route::Error(400, "missing or bad Sec-WebSocket-Key\n"),
    };
    let mut asked = false;
    let mut proto = None;
    for h in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
    {
        let Ok(v) = std::str::from_utf8(h.value) else {
            continue;
        };
        for p in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            asked = true;
            if proto.is_none() {
                proto = match p {
                    Proto::MSGPACK => Some(Proto::Msgpack),
                    Proto::JSON => Some(Proto::Json),
                    _ => None,
                };
            }
        }
    }
    let proto = match (asked, proto) {
        (_, Some(p)) => p,
        (false, None) => Proto::Msgpack,
        (true, None) => {
            return Route::Error(
                400,
                "no supported subprotocol (roomd.v1.msgpack, roomd.v1.json)\n",
            )
        }
    };
    let mut room = None;
    let mut token = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "room" => room = Some(percent_decode(v)),
            "token" => token = Some(percent_decode(v)),
            _ => {}
        }
    }
    if token.is_none() {
        token = bearer(req);
    }
    Route::Upgrade(Upgrade {
        accept: tungstenite::handshake::derive_accept_key(key.as_bytes()),
        proto,
        proto_asked: asked,
        room,
        token,
        echo,
        origin: header(req, "origin").map(|o| o.trim().to_owned()),
    })
}

/// The room API's body framing. RFC 9112 6.3: a message with differing
/// `Content-Length` values, or one that is not a number, "is unrecoverable"
/// (400; every `Route::Error` closes the connection); identical duplicates
/// are one length. A `POST` must say how long its body is (411 without
/// `Content-Length`), and `Transfer-Encoding` (chunked) is not supported
/// (411 too: send a `Content-Length` instead).
fn api(req: &httparse::Request, method: &str, path: &str) -> Route {
    if header(req, "transfer-encoding").is_some() {
        return Route::Error(411, "send a Content-Length body, not chunked\n");
    }
    let mut len = None;
    for h in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        let v = h.value.trim_ascii();
        let n = match std::str::from_utf8(v) {
            Ok(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => v.parse().ok(),
            _ => None,
        };
        match (n, len) {
            (None, _) => return Route::Error(400, "bad Content-Length\n"),
            (Some(n), Some(m)) if n != m => {
                return Route::Error(400, "conflicting Content-Length headers\n")
            }
            (n, _) => len = n,
        }
    }
    let body_len = match len {
        Some(n) => n,
        None if method == "POST" => {
            return Route::Error(411, "POST needs Content-Length (0 for no body)\n")
        }
        None => 0,
    };
    Route::Api(ApiReq {
        method: method.to_owned(),
        path: path.to_owned(),
        bearer: bearer(req),
        body_len,
    })
}

fn bearer(req: &httparse::Request) -> Option<String> {
    header(req, "authorization")
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
}

fn valid_key(k: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(k)
        .is_ok_and(|b| b.len() == 16)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `%XX` and `+` decoding for query values; invalid escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A complete HTTP/1.1 response that closes the connection.
pub fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status == 426 {
        out.push_str("Sec-WebSocket-Version: 13\r\n");
    }
    if status == 401 {
        out.push_str("WWW-Authenticate: Bearer\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The `101 Switching Protocols` reply (RFC 6455 4.2.2). The subprotocol is
/// named only when the client offered one: "the server ... MUST NOT send a
/// |Sec-WebSocket-Protocol| header field" the client did not request.
pub fn switching(up: &Upgrade) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        up.accept
    );
    if up.proto_asked {
        out.push_str("Sec-WebSocket-Protocol: ");
        out.push_str(up.proto.name());
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn up(extra: &str, path: &str) -> Parse {
        let r = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        parse(r.as_bytes())
    }

    #[test]
    fn upgrade_default_msgpack_and_accept_key() {
        let Parse::Done(Route::Upgrade(u), _) = up("", "/ws?room=a%3Ab&token=t") else {
            panic!()
        };
        // RFC 6455 1.3's worked example.
        assert_eq!(u.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(u.proto, Proto::Msgpack);
        assert!(!u.proto_asked);
        assert_eq!(u.room.as_deref(), Some("a:b"));
        assert_eq!(u.token.as_deref(), Some("t"));
    }

    #[test]
    fn subprotocols() {
        let Parse::Done(Route::Upgrade(u), _) =
            up("Sec-WebSocket-Protocol: chat, roomd.v1.json\r\n", "/ws")
        else {
            panic!()
        };
        assert_eq!(u.proto, Proto::Json);
        assert!(matches!(
            up("Sec-WebSocket-Protocol: chat\r\n", "/ws"),
            Parse::Done(Route::Error(400, _), _)
        ));
    }

    #[test]
    fn routes_and_errors() {
        assert!(matches!(
            up("", "/nope"),
            Parse::Done(Route::Error(404, _), _)
        ));
        assert!(matches!(
            parse(b"GET /healthz HTTP/1.1\r\n\r\n"),
            Parse::Done(Route::Healthz, 25)
        ));
        assert!(matches!(
            parse(b"GET /ws HTTP/1.1\r\n\r\n"),
            Parse::Done(Route::Error(400, _), _)
        ));
        assert!(matches!(parse(b"GET /ws HTTP/1.1\r\nHo"), Parse::Partial));
        assert!(matches!(
            parse(b"\x00\x01garbage\r\n\r\n"),
            Parse::Done(Route::Error(400, _), _)
        ));
        assert!(matches!(
            parse(&[b'a'; MAX_HEAD]),
            Parse::Done(Route::Error(_, _), _)
        ));
    }

    #[test]
    fn api_body_framing() {
        let post = |headers: &str| {
            let r = format!("POST /rooms HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
            match parse(r.as_bytes()) {
                Parse::Done(Route::Api(a), _) => Ok(a.body_len),
                Parse::Done(Route::Error(status, _), _) => Err(status),
                other => panic!("{headers:?}: {other:?}"),
            }
        };
        assert_eq!(post("Content-Length: 12\r\n"), Ok(12));
        assert_eq!(post("Content-Length: 0\r\n"), Ok(0));
        assert_eq!(post("Content-Length: 5\r\ncontent-length:  5 \r\n"), Ok(5));
        assert_eq!(post(""), Err(411));
        assert_eq!(post("Transfer-Encoding: chunked\r\n"), Err(411));
        for bad in [
            "50\r\nContent-Length: 5",
            "5\r\nContent-Length: 50",
            "x",
            "+5",
            "-1",
            "",
            "5, 5",
        ] {
            assert_eq!(
                post(&format!("Content-Length: {bad}\r\n")),
                Err(400),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse(b"GET /rooms HTTP/1.1\r\n\r\n"),
            Parse::Done(Route::Api(ApiReq { body_len: 0, .. }), _)
        ));
    }

    #[test]
    fn embedded_files() {
        let js = crate::web::CLIENT_JS.etag;
        assert!(matches!(
            parse(b"GET /roomd.js HTTP/1.1\r\n\r\n"),
            Parse::Done(
                Route::Static {
                    fresh: false,
                    head: false,
                    ..
                },
                _
            )
        ));
        let cond = format!("GET /roomd.js HTTP/1.1\r\nIf-None-Match: {js}\r\n\r\n");
        assert!(matches!(
            parse(cond.as_bytes()),
            Parse::Done(Route::Static { fresh: true, .. }, _)
        ));
        assert!(matches!(
            parse(b"HEAD / HTTP/1.1\r\n\r\n"),
            Parse::Done(Route::Static { head: true, .. }, _)
        ));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\n\r\n"),
            Parse::Done(Route::Error(405, _), _)
        ));
    }

    #[test]
    fn percent() {
        assert_eq!(percent_decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
    }
}
