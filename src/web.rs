//! The files roomd serves to browsers from its own binary: the demo page
//! (`GET /`) and the JavaScript client library (`GET /roomd.js`), both
//! embedded at build time from `src/web/`.
//!
//! Each file's ETag is a hash of its bytes computed at build time, so a
//! browser revalidates with `If-None-Match` and gets `304` until the binary
//! changes. Responses say `Cache-Control: no-cache` (use a cached copy only
//! after revalidating): a new roomd never runs with an old client library.

/// One embedded file.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
    /// The strong validator, quotes included.
    pub etag: &'static str,
}

/// FNV-1a 64 of `bytes`, as a quoted 16-digit hex ETag, at compile time.
const fn etag_of(bytes: &[u8]) -> [u8; 18] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    let digits = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut k = 0;
    while k < 16 {
        out[1 + k] = digits[((h >> (60 - 4 * k)) & 0xf) as usize];
        k += 1;
    }
    out
}

const INDEX_HTML: &[u8] = include_bytes!("web/index.html");
const ROOMD_JS: &[u8] = include_bytes!("web/roomd.js");
const INDEX_ETAG: [u8; 18] = etag_of(INDEX_HTML);
const ROOMD_JS_ETAG: [u8; 18] = etag_of(ROOMD_JS);

/// The demo page.
pub static INDEX: Asset = Asset {
    body: INDEX_HTML,
    content_type: "text/html; charset=utf-8",
    etag: ascii(&INDEX_ETAG),
};

/// The client library, an ES module.
pub static CLIENT_JS: Asset = Asset {
    body: ROOMD_JS,
    content_type: "text/javascript; charset=utf-8",
    etag: ascii(&ROOMD_JS_ETAG),
};

/// `bytes` as a `&str`; every caller passes ASCII built by [`etag_of`].
const fn ascii(bytes: &'static [u8]) -> &'static str {
    match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(_) => panic!("an ETag is ASCII"),
    }
}

/// The asset served at `path`, if any.
pub fn asset(path: &str) -> Option<&'static Asset> {
    match path {
        "/" | "/index.html" => Some(&INDEX),
        "/roomd.js" => Some(&CLIENT_JS),
        _ => None,
    }
}

/// Whether an `If-None-Match` header value names `etag` (RFC 9110 13.1.2:
/// a list of entity tags or `*`, compared weakly, so `W/"x"` matches `"x"`).
pub fn matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// The complete response for `asset`: `304` without a body when `fresh`
/// (the client's copy is current), else `200`; `head` leaves the body out.
pub fn response(asset: &Asset, fresh: bool, head: bool) -> Vec<u8> {
    let status = if fresh { "304 Not Modified" } else { "200 OK" };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nETag: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n",
        asset.etag
    )
    .into_bytes();
    if !fresh {
        out.extend_from_slice(
            format!(
                "Content-Type: {}\r\nContent-Length: {}\r\nX-Content-Type-Options: nosniff\r\n",
                asset.content_type,
                asset.body.len()
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    if !fresh && !head {
        out.extend_from_slice(asset.body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_quoted_hashes_of_the_bytes() {
        assert_eq!(&etag_of(b"a"), b"\"af63dc4c8601ec8c\"");
        assert_ne!(INDEX.etag, CLIENT_JS.etag);
        assert_eq!(CLIENT_JS.etag.len(), 18);
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let e = CLIENT_JS.etag;
        assert!(matches(e, e));
        assert!(matches(&format!("\"x\", W/{e}"), e));
        assert!(matches("*", e));
        assert!(!matches("\"x\"", e));
        assert!(!matches("", e));
    }

    #[test]
    fn not_modified_has_no_body() {
        let r = response(&CLIENT_JS, true, false);
        let text = String::from_utf8(r).unwrap();
        assert!(text.starts_with("HTTP/1.1 304 Not Modified\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        assert!(!text.contains("Content-Length"));
        let r = response(&CLIENT_JS, false, true);
        assert!(String::from_utf8(r)
            .unwrap()
            .contains(&format!("Content-Length: {}\r\n", CLIENT_JS.body.len())));
    }
}
