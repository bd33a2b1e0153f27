//! Message types and codecs of PROTOCOL.md: decoding client requests from
//! MessagePack or JSON, and encoding server messages once into complete
//! WebSocket frames that fan-out copies as they are.
//!
//! Decoding borrows from the frame payload where it can (room names and
//! `data` are not copied for MessagePack). Encoding goes through a small
//! value tree [`V`] so both subprotocols share one description of every
//! message, and the JSON rule for bytes (`data`/`data64`) lives in one place.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::Write;

use base64::Engine;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// The negotiated subprotocol of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// `roomd.v1.msgpack`: binary frames.
    Msgpack,
    /// `roomd.v1.json`: text frames.
    Json,
}

impl Proto {
    pub const MSGPACK: &'static str = "roomd.v1.msgpack";
    pub const JSON: &'static str = "roomd.v1.json";

    pub fn name(self) -> &'static str {
        match self {
            Proto::Msgpack => Self::MSGPACK,
            Proto::Json => Self::JSON,
        }
    }
}

/// Error codes of PROTOCOL.md "Errors".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    BadRequest,
    UnknownType,
    NotFound,
    Exists,
    Full,
    NotMember,
    Forbidden,
    Conflict,
    InvalidState,
    RateLimited,
    TooLarge,
    Unauthorized,
    ShuttingDown,
    Internal,
}

impl Code {
    pub const ALL: [Code; 14] = [
        Code::BadRequest,
        Code::UnknownType,
        Code::NotFound,
        Code::Exists,
        Code::Full,
        Code::NotMember,
        Code::Forbidden,
        Code::Conflict,
        Code::InvalidState,
        Code::RateLimited,
        Code::TooLarge,
        Code::Unauthorized,
        Code::ShuttingDown,
        Code::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "bad_request",
            Code::UnknownType => "unknown_type",
            Code::NotFound => "not_found",
            Code::Exists => "exists",
            Code::Full => "full",
            Code::NotMember => "not_member",
            Code::Forbidden => "forbidden",
            Code::Conflict => "conflict",
            Code::InvalidState => "invalid_state",
            Code::RateLimited => "rate_limited",
            Code::TooLarge => "too_large",
            Code::Unauthorized => "unauthorized",
            Code::ShuttingDown => "shutting_down",
            Code::Internal => "internal",
        }
    }

    /// Whether this error counts toward `--max-bad-requests` (close 4002).
    pub fn is_bad_input(self) -> bool {
        matches!(
            self,
            Code::BadRequest | Code::UnknownType | Code::RateLimited
        )
    }
}

/// An error reply: code plus a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub code: Code,
    pub msg: Cow<'static, str>,
    /// `conflict` carries the room's current `ver`.
    pub ver: Option<u64>,
}

impl Fail {
    pub fn new(code: Code, msg: impl Into<Cow<'static, str>>) -> Self {
        Fail {
            code,
            msg: msg.into(),
            ver: None,
        }
    }
}

/// Opaque application bytes. Accepts MessagePack `bin`, a string (JSON mode
/// sends `data` as a string), or `{"data64": base64}` (JSON props values).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Blob<'a>(pub Cow<'a, [u8]>);

impl<'de: 'a, 'a> Deserialize<'de> for Blob<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Blob<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes, a string, or {\"data64\": base64}")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Blob(Cow::Borrowed(v)))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Blob(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Blob(Cow::Owned(v.to_vec())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Blob(Cow::Owned(v.as_bytes().to_vec())))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(Blob(Cow::Owned(v)))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Blob(Cow::Owned(v.into_bytes())))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out = None;
                while let Some(k) = m.next_key::<Cow<'de, str>>()? {
                    if k == "data64" {
                        let s: Cow<'de, str> = m.next_value()?;
                        let b = b64()
                            .decode(s.as_bytes())
                            .map_err(|_| de::Error::custom("data64 is not valid base64"))?;
                        out = Some(b);
                    } else {
                        m.next_value::<de::IgnoredAny>()?;
                    }
                }
                out.map(|b| Blob(Cow::Owned(b)))
                    .ok_or_else(|| de::Error::custom("expected {\"data64\": ...}"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A field that must be a string on the wire: MessagePack `bin` is refused
/// even when it holds UTF-8 (serde's own `str` accepts it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_any(V)
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// `to`: a member id in `send`, a state name in `state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum To<'a> {
    Id(u64),
    Name(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for To<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = To<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member id or a state name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(To::Id(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(To::Id)
                    .map_err(|_| E::custom("member id must not be negative"))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(To::Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(To::Name(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_any(V)
    }
}

/// Every field any request may carry; which are required depends on `t`.
/// Unknown keys are ignored (forward compatibility).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Req<'a> {
    #[serde(borrow)]
    pub t: Option<Text<'a>>,
    pub rid: Option<u32>,
    #[serde(borrow)]
    pub room: Option<Cow<'a, str>>,
    pub max: Option<u16>,
    pub private: Option<bool>,
    #[serde(borrow)]
    pub props: Option<HashMap<Cow<'a, str>, Blob<'a>>>,
    pub idle_ms: Option<u32>,
    pub autostart: Option<bool>,
    pub join: Option<bool>,
    #[serde(borrow)]
    pub meta: Option<Blob<'a>>,
    #[serde(borrow)]
    pub meta64: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub data: Option<Blob<'a>>,
    #[serde(borrow)]
    pub data64: Option<Cow<'a, str>>,
    pub echo: Option<bool>,
    #[serde(borrow)]
    pub to: Option<To<'a>>,
    #[serde(borrow)]
    pub set: Option<HashMap<Cow<'a, str>, Option<Blob<'a>>>>,
    pub expect: Option<u64>,
    #[serde(borrow)]
    pub state: Option<Cow<'a, str>>,
    pub has_space: Option<bool>,
    pub limit: Option<u16>,
    #[serde(borrow)]
    pub queue: Option<Cow<'a, str>>,
    pub rating: Option<i32>,
    pub size: Option<u16>,
    pub wait_ms: Option<u32>,
    #[serde(borrow)]
    pub resume: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub last: Option<HashMap<Cow<'a, str>, u64>>,
    /// `join`: as a watcher (PROTOCOL.md "Watchers").
    pub watch: Option<bool>,
    /// `kick`: the member (or watcher) id.
    pub id: Option<u64>,
    /// `kick`: may not join this room again.
    pub ban: Option<bool>,
}

/// Minimal view used to recover `rid` from a request that failed to decode.
#[derive(Deserialize)]
struct RidOnly {
    rid: Option<u32>,
}

fn b64() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::STANDARD
}

/// Deepest nesting of maps and arrays a message may have, in either
/// subprotocol, the request map itself being level 1 (`bad_request` past
/// it). A request needs 3 (request, `props`, a value); the rest is room for
/// unknown keys. rmp-serde's own limit of 1024 levels costs up to 4 MiB of
/// stack (debug build) on input the client chooses; serde_json stops at 128
/// levels in what it deserializes but skips an ignored value at any depth.
pub const MAX_DEPTH: usize = 32;

/// Why [`scan_msgpack`] refused a message.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A map key that is not a string.
    Key,
    /// Truncated or invalid MessagePack: the deserializer says what.
    Malformed,
}

/// Walks one MessagePack value without building anything: every map key
/// must be a `str` (rmp-serde would take an integer key for the struct field
/// at that position, and a `bin` key for the field it spells), and maps and
/// arrays nest at most [`MAX_DEPTH`] levels. Cost: O(number of items);
/// strings and bytes are skipped by their length; no allocation, no
/// recursion (the open containers are counted in a fixed array).
fn scan_msgpack(mut b: &[u8]) -> Result<(), Scan> {
    const _: () = assert!(MAX_DEPTH <= 64, "one bit of `maps` per level");
    // Items still to read in each open container (a map has two per entry;
    // every item takes a byte at least, so a count past the bytes left is
    // malformed), and one bit per level for "this container is a map",
    // whose next item is a key when an even number is left.
    let mut left = [0usize; MAX_DEPTH];
    let mut maps = 0u64;
    let mut depth = 0;
    loop {
        let is_key = depth > 0 && maps >> (depth - 1) & 1 == 1 && left[depth - 1] % 2 == 0;
        let (&m, rest) = b.split_first().ok_or(Scan::Malformed)?;
        b = rest;
        if is_key && !matches!(m, 0xa0..=0xbf | 0xd9..=0xdb) {
            return Err(Scan::Key);
        }
        // A big-endian length of `n` bytes at the start of `b`.
        let len = |b: &[u8], n: usize| -> Result<usize, Scan> {
            let x = b.get(..n).ok_or(Scan::Malformed)?;
            Ok(x.iter().fold(0usize, |acc, &d| acc << 8 | usize::from(d)))
        };
        // A container (its items, whether a map) or bytes to skip.
        let (open, skip) = match m {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (None, 0),
            0x80..=0x8f => (Some((2 * usize::from(m & 0x0f), true)), 0),
            0x90..=0x9f => (Some((usize::from(m & 0x0f), false)), 0),
            0xa0..=0xbf => (None, usize::from(m & 0x1f)),
            0xc4 | 0xd9 => (None, 1 + len(b, 1)?),
            0xc5 | 0xda => (None, 2 + len(b, 2)?),
            0xc6 | 0xdb => (None, 4 + len(b, 4)?),
            0xc7 => (None, 2 + len(b, 1)?),
            0xc8 => (None, 3 + len(b, 2)?),
            0xc9 => (None, 5 + len(b, 4)?),
            0xcc | 0xd0 => (None, 1),
            0xcd | 0xd1 => (None, 2),
            0xca | 0xce | 0xd2 => (None, 4),
            0xcb | 0xcf | 0xd3 => (None, 8),
            0xd4..=0xd8 => (None, 1 + (1 << (m - 0xd4))),
            0xdc => (Some((len(b, 2)?, false)), 2),
            0xdd => (Some((len(b, 4)?, false)), 4),
            0xde => (Some((2 * len(b, 2)?, true)), 2),
            0xdf => (Some((2 * len(b, 4)?, true)), 4),
            0xc1 => return Err(Scan::Malformed),
        };
        b = b.get(skip..).ok_or(Scan::Malformed)?;
        if let Some((n, is_map)) = open {
            if depth == MAX_DEPTH {
                return Err(Scan::TooDeep);
            }
            if n > b.len() {
                return Err(Scan::Malformed);
            }
            if n > 0 {
                left[depth] = n;
                maps = maps & !(1 << depth) | u64::from(is_map) << depth;
                depth += 1;
                continue;
            }
        }
        // One item done: close every container it completes.
        loop {
            if depth == 0 {
                return Ok(());
            }
            left[depth - 1] -= 1;
            if left[depth - 1] > 0 {
                break;
            }
            depth -= 1;
        }
    }
}

/// `rmp_serde::from_slice` after [`scan_msgpack`]. rmp-serde's own depth
/// limit stays as a backstop, above the scan's (it also counts `ext`).
fn from_msgpack<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, String> {
    match scan_msgpack(payload) {
        Ok(()) | Err(Scan::Malformed) => {}
        Err(Scan::TooDeep) => return Err(DEPTH_MSG.into()),
        Err(Scan::Key) => return Err("map keys must be strings".into()),
    }
    let mut de = rmp_serde::Deserializer::from_read_ref(payload);
    de.set_max_depth(MAX_DEPTH + 2);
    T::deserialize(&mut de).map_err(|e| e.to_string())
}

/// What a message nested past [`MAX_DEPTH`] gets (rmp-serde's words).
const DEPTH_MSG: &str = "depth limit exceeded";

/// Whether JSON text nests objects and arrays deeper than [`MAX_DEPTH`]:
/// brackets are counted outside strings. Nothing is validated here (a
/// malformed text is serde_json's to report). Cost: one pass over the bytes,
/// and a second only for a text with more than [`MAX_DEPTH`] brackets.
fn json_too_deep(b: &[u8]) -> bool {
    // Most texts hold fewer brackets than the limit in all. `[` and `{`
    // differ only in bit 0x20; a count per chunk in a `u8` is vectorized.
    let brackets: usize = b
        .chunks(128)
        .map(|ch| usize::from(ch.iter().fold(0u8, |n, &c| n + u8::from(c | 0x20 == b'{'))))
        .sum();
    if brackets <= MAX_DEPTH {
        return false;
    }
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for &c in b {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Decodes one request. On failure returns the `rid` (when it could still be
/// read) and a `bad_request` describing the problem.
pub fn decode(proto: Proto, payload: &[u8]) -> Result<Req<'_>, (Option<u32>, Fail)> {
    let is_map = match proto {
        Proto::Msgpack => matches!(payload.first(), Some(0x80..=0x8f | 0xde | 0xdf)),
        Proto::Json => payload
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'{'),
    };
    if !is_map {
        return Err((
            None,
            Fail::new(Code::BadRequest, "a message must be a map with key \"t\""),
        ));
    }
    // The same limit and words as for MessagePack (from_msgpack), and as
    // there no `rid` is read from such a message.
    if proto == Proto::Json && json_too_deep(payload) {
        return Err((
            None,
            Fail::new(Code::BadRequest, format!("malformed message: {DEPTH_MSG}")),
        ));
    }
    let res: Result<Req<'_>, String> = match proto {
        Proto::Msgpack => from_msgpack(payload),
        Proto::Json => serde_json::from_slice(payload).map_err(|e| e.to_string()),
    };
    match res {
        Ok(mut req) => {
            if let Some(s) = req.data64.take() {
                match b64().decode(s.as_bytes()) {
                    Ok(b) => req.data = Some(Blob(Cow::Owned(b))),
                    Err(_) => {
                        return Err((
                            req.rid,
                            Fail::new(Code::BadRequest, "data64 is not valid base64"),
                        ))
                    }
                }
            }
            if let Some(s) = req.meta64.take() {
                match b64().decode(s.as_bytes()) {
                    Ok(b) => req.meta = Some(Blob(Cow::Owned(b))),
                    Err(_) => {
                        return Err((
                            req.rid,
                            Fail::new(Code::BadRequest, "meta64 is not valid base64"),
                        ))
                    }
                }
            }
            Ok(req)
        }
        Err(e) => Err((
            peek_rid(proto, payload),
            Fail::new(Code::BadRequest, format!("malformed message: {e}")),
        )),
    }
}

/// Reads only `rid` (for errors about a request that is not processed).
pub fn peek_rid(proto: Proto, payload: &[u8]) -> Option<u32> {
    match proto {
        Proto::Msgpack => from_msgpack::<RidOnly>(payload).ok()?.rid,
        Proto::Json => serde_json::from_slice::<RidOnly>(payload).ok()?.rid,
    }
}

/// A server message as a value tree, encoded once per subprotocol.
#[derive(Debug, Clone)]
pub enum V<'a> {
    Nil,
    Bool(bool),
    U(u64),
    Str(&'a str),
    Bin(&'a [u8]),
    Map(Vec<(&'a str, V<'a>)>),
    Arr(Vec<V<'a>>),
}

/// WebSocket opcodes roomd sends as data (RFC 6455 section 5.2).
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;

/// Appends an unmasked, final frame header for `len` payload bytes.
///
/// RFC 6455 5.2: "Payload length: 7 bits, 7+16 bits, or 7+64 bits ... in
/// bytes: if 0-125, that is the payload length. If 126, the following 2
/// bytes interpreted as a 16-bit unsigned integer are the payload length.
/// If 127, the following 8 bytes ... (the most significant bit MUST be 0)".
/// A server "MUST NOT mask any frames that it sends to the client".
pub fn frame_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    let (h, n) = header(opcode, len);
    out.extend_from_slice(&h[..n]);
}

/// An unmasked, final frame header for `len` payload bytes: its bytes and
/// how many of them there are (2 to 10).
fn header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | opcode;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if len <= u16::MAX as usize {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

/// Builds one complete frame: header then payload written by `f`.
/// The payload is encoded after a 10-byte gap that the header then fills
/// from the right, so the payload is written once and never moved.
fn build_frame(opcode: u8, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    let r = append_frame(&mut buf, opcode, f);
    buf.drain(..r.start);
    buf
}

/// Appends one complete frame to `buf` as [`build_frame`] does, and
/// returns where it is: up to 8 bytes of the gap before it are left unused
/// (the frame is never moved).
fn append_frame(
    buf: &mut Vec<u8>,
    opcode: u8,
    f: impl FnOnce(&mut Vec<u8>),
) -> std::ops::Range<usize> {
    const GAP: usize = 10;
    let at = buf.len();
    buf.resize(at + GAP, 0);
    f(buf);
    let len = buf.len() - at - GAP;
    let (h, n) = header(opcode, len);
    let start = at + GAP - n;
    buf[start..at + GAP].copy_from_slice(&h[..n]);
    start..buf.len()
}

/// One message encoded as a whole WebSocket frame for a subprotocol.
pub fn encode_frame(proto: Proto, v: &V) -> Vec<u8> {
    match proto {
        Proto::Msgpack => build_frame(OP_BINARY, |b| write_mp(b, v)),
        Proto::Json => build_frame(OP_TEXT, |b| write_json(b, v)),
    }
}

/// One message encoded as a whole WebSocket frame at the end of `buf`
/// (no allocation of its own); returns where the frame is (see
/// [`append_frame`]).
pub fn encode_frame_into(buf: &mut Vec<u8>, proto: Proto, v: &V) -> std::ops::Range<usize> {
    match proto {
        Proto::Msgpack => append_frame(buf, OP_BINARY, |b| write_mp(b, v)),
        Proto::Json => append_frame(buf, OP_TEXT, |b| write_json(b, v)),
    }
}

/// Just the payload (for tests and the HTTP API).
pub fn encode_payload(proto: Proto, v: &V) -> Vec<u8> {
    let mut b = Vec::new();
    match proto {
        Proto::Msgpack => write_mp(&mut b, v),
        Proto::Json => write_json(&mut b, v),
    }
    b
}

/// A message encoded lazily per subprotocol: fan-out encodes each form at
/// most once and copies the same bytes to every recipient.
pub struct Frames<'a> {
    v: V<'a>,
    mp: Option<Vec<u8>>,
    js: Option<Vec<u8>>,
}

impl<'a> Frames<'a> {
    pub fn new(v: V<'a>) -> Self {
        Frames {
            v,
            mp: None,
            js: None,
        }
    }

    pub fn get(&mut self, proto: Proto) -> &[u8] {
        let slot = match proto {
            Proto::Msgpack => &mut self.mp,
            Proto::Json => &mut self.js,
        };
        slot.get_or_insert_with(|| encode_frame(proto, &self.v))
    }

    /// The frame for `proto` if [`Frames::get`] made it already (else empty).
    pub fn encoded(&self, proto: Proto) -> &[u8] {
        match proto {
            Proto::Msgpack => self.mp.as_deref(),
            Proto::Json => self.js.as_deref(),
        }
        .unwrap_or_default()
    }
}

// rmp's writers return io errors only from the underlying writer; a Vec never
// fails, so the results are discarded.
fn write_mp(b: &mut Vec<u8>, v: &V) {
    use rmp::encode as e;
    match v {
        V::Nil => {
            let _ = e::write_nil(b);
        }
        V::Bool(x) => {
            let _ = e::write_bool(b, *x);
        }
        V::U(x) => {
            let _ = e::write_uint(b, *x);
        }
        V::Str(s) => {
            let _ = e::write_str(b, s);
        }
        V::Bin(x) => {
            let _ = e::write_bin(b, x);
        }
        V::Map(kv) => {
            let _ = e::write_map_len(b, kv.len() as u32);
            for (k, v) in kv {
                let _ = e::write_str(b, k);
                write_mp(b, v);
            }
        }
        V::Arr(xs) => {
            let _ = e::write_array_len(b, xs.len() as u32);
            for x in xs {
                write_mp(b, x);
            }
        }
    }
}

fn json_str(b: &mut Vec<u8>, s: &str) {
    // serde_json escapes per RFC 8259; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *b, s);
}

/// JSON encoding. Bytes follow the JSON-mode rule: valid UTF-8 goes out as a
/// string; other bytes under key `data` or `meta` go out as `data64`/`meta64`
/// (base64), and anywhere else as `{"data64": base64}`.
fn write_json(b: &mut Vec<u8>, v: &V) {
    match v {
        V::Nil => b.extend_from_slice(b"null"),
        V::Bool(x) => b.extend_from_slice(if *x { b"true" } else { b"false" }),
        V::U(x) => {
            let _ = write!(b, "{x}");
        }
        V::Str(s) => json_str(b, s),
        V::Bin(x) => match std::str::from_utf8(x) {
            Ok(s) => json_str(b, s),
            Err(_) => {
                b.extend_from_slice(b"{\"data64\":\"");
                b.extend_from_slice(b64().encode(x).as_bytes());
                b.extend_from_slice(b"\"}");
            }
        },
        V::Map(kv) => {
            b.push(b'{');
            for (i, (k, v)) in kv.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                match v {
                    V::Bin(x)
                        if (*k == "data" || *k == "meta") && std::str::from_utf8(x).is_err() =>
                    {
                        json_str(b, &format!("{k}64"));
                        b.push(b':');
                        b.push(b'"');
                        b.extend_from_slice(b64().encode(x).as_bytes());
                        b.push(b'"');
                    }
                    _ => {
                        json_str(b, k);
                        b.push(b':');
                        write_json(b, v);
                    }
                }
            }
            b.push(b'}');
        }
        V::Arr(xs) => {
            b.push(b'[');
            for (i, x) in xs.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                write_json(b, x);
            }
            b.push(b']');
        }
    }
}

/// `{"t":"err","rid"?,"code","msg","ver"?}`
pub fn err_v<'a>(rid: Option<u32>, f: &'a Fail) -> V<'a> {
    let mut m = vec![("t", V::Str("err"))];
    if let Some(r) = rid {
        m.push(("rid", V::U(r.into())));
    }
    m.push(("code", V::Str(f.code.as_str())));
    m.push(("msg", V::Str(&f.msg)));
    if let Some(ver) = f.ver {
        m.push(("ver", V::U(ver)));
    }
    V::Map(m)
}

/// A reply map starting with `t` and, when present, `rid`.
pub fn reply<'a>(t: &'a str, rid: Option<u32>) -> Vec<(&'a str, V<'a>)> {
    let mut m = Vec::with_capacity(6);
    m.push(("t", V::Str(t)));
    if let Some(r) = rid {
        m.push(("rid", V::U(r.into())));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths() {
        for (len, want) in [
            (0usize, 2usize),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
        ] {
            let mut h = Vec::new();
            frame_header(&mut h, OP_BINARY, len);
            assert_eq!(h.len(), want, "len {len}");
            assert_eq!(h[0], 0x82);
        }
    }

    #[test]
    fn frame_payload_follows_header() {
        let f = encode_frame(Proto::Json, &V::Map(vec![("t", V::Str("pong"))]));
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1] as usize, f.len() - 2);
        assert_eq!(&f[2..], br#"{"t":"pong"}"#);
        let big = vec![7u8; 70_000];
        let f = encode_frame(Proto::Msgpack, &V::Bin(&big));
        assert_eq!(f[1], 127);
        let len = u64::from_be_bytes(f[2..10].try_into().unwrap()) as usize;
        assert_eq!(len, f.len() - 10);
    }

    #[test]
    fn decode_msgpack_borrows_and_ignores_unknown() {
        #[derive(serde::Serialize)]
        struct P<'a> {
            t: &'a str,
            rid: u32,
            room: &'a str,
            #[serde(with = "serde_bytes")]
            data: &'a [u8],
            zzz: u8,
        }
        let bytes = rmp_serde::to_vec_named(&P {
            t: "pub",
            rid: 9,
            room: "a",
            data: &[0, 255],
            zzz: 1,
        })
        .unwrap();
        let r = decode(Proto::Msgpack, &bytes).unwrap();
        assert_eq!(r.t.as_deref(), Some("pub"));
        assert_eq!(r.rid, Some(9));
        assert!(matches!(r.data, Some(Blob(Cow::Borrowed(&[0, 255])))));
    }

    #[test]
    fn decode_rejects_non_maps_and_keeps_rid() {
        assert!(decode(Proto::Msgpack, &[0x91, 0x01]).is_err());
        assert!(decode(Proto::Json, b"[1]").is_err());
        let (rid, f) = decode(Proto::Json, br#"{"t":"join","rid":4,"room":5}"#).unwrap_err();
        assert_eq!(rid, Some(4));
        assert_eq!(f.code, Code::BadRequest);
    }

    #[test]
    fn msgpack_map_keys_must_be_strings() {
        // {0:"ping"}: rmp-serde took key 0 for the first field, `t`.
        let (rid, f) =
            decode(Proto::Msgpack, &[0x81, 0x00, 0xa4, b'p', b'i', b'n', b'g']).unwrap_err();
        assert_eq!((rid, f.code), (None, Code::BadRequest));
        assert_eq!(f.msg, "malformed message: map keys must be strings");
        // {bin "t": "ping"}
        let bin_key = [0x81, 0xc4, 0x01, b't', 0xa4, b'p', b'i', b'n', b'g'];
        assert!(decode(Proto::Msgpack, &bin_key).is_err());
        // A key in a map inside an array inside the request, after str8,
        // bin, ext and float values that the scan must step over.
        let mut m = vec![0x83, 0xa1, b't', 0xd9, 0x04];
        m.extend_from_slice(b"ping");
        m.extend_from_slice(&[
            0xa1, b'a', 0x93, 0xc4, 0x02, 1, 2, 0xd6, 7, 0, 0, 0, 0, 0xcb,
        ]);
        m.extend_from_slice(&1.5f64.to_be_bytes());
        m.extend_from_slice(&[0xa1, b'b', 0x91, 0x81, 0xa1, b'k', 0x80]);
        assert_eq!(
            decode(Proto::Msgpack, &m).unwrap().t.as_deref(),
            Some("ping")
        );
        let n = m.len();
        m[n - 3] = 0x05; // the key "k" becomes fixint 5 ...
        m.remove(n - 2); // ... with nothing left of the string
        assert!(decode(Proto::Msgpack, &m).is_err());
        // Integer values, and integer keys nowhere, are fine.
        let ok = [
            0x82, 0xa1, b't', 0xa4, b'p', b'i', b'n', b'g', 0xa3, b'r', b'i', b'd', 0x05,
        ];
        assert_eq!(decode(Proto::Msgpack, &ok).unwrap().rid, Some(5));
        assert_eq!(peek_rid(Proto::Msgpack, &[0x81, 0x00, 0x05]), None);
    }

    #[test]
    fn one_depth_limit_for_both_subprotocols() {
        // {"t":"ping","zz":[[...]]}, `depth` levels in all.
        let mp = |depth: usize| {
            let mut b = vec![
                0x82, 0xa1, b't', 0xa4, b'p', b'i', b'n', b'g', 0xa2, b'z', b'z',
            ];
            b.extend(std::iter::repeat_n(0x91, depth - 2));
            b.push(0x90);
            b
        };
        let js = |depth: usize| {
            format!(
                "{{\"t\":\"ping\",\"zz\":{}{}}}",
                "[".repeat(depth - 1),
                "]".repeat(depth - 1)
            )
            .into_bytes()
        };
        for (proto, enc) in [
            (Proto::Msgpack, &mp as &dyn Fn(usize) -> Vec<u8>),
            (Proto::Json, &js),
        ] {
            assert!(decode(proto, &enc(MAX_DEPTH)).is_ok(), "{proto:?}");
            for depth in [MAX_DEPTH + 1, 200_000] {
                let (rid, f) = decode(proto, &enc(depth)).unwrap_err();
                assert_eq!((rid, f.code), (None, Code::BadRequest), "{proto:?} {depth}");
                assert_eq!(
                    f.msg, "malformed message: depth limit exceeded",
                    "{proto:?}"
                );
            }
        }
        // Brackets in strings, escaped quotes included, are not nesting.
        let s = format!(r#"{{"t":"ping","zz":"\"{}","a":[{{}}]}}"#, "[".repeat(100));
        assert!(decode(Proto::Json, s.as_bytes()).is_ok(), "{s}");
    }

    #[test]
    fn json_data_rules() {
        let r = decode(Proto::Json, br#"{"t":"pub","data64":"AP8="}"#).unwrap();
        assert_eq!(r.data.unwrap().0.as_ref(), &[0, 255]);
        let r = decode(
            Proto::Json,
            br#"{"t":"props","set":{"a":"x","b":{"data64":"AP8="},"c":null}}"#,
        )
        .unwrap();
        let set = r.set.unwrap();
        assert_eq!(set["b"].as_ref().unwrap().0.as_ref(), &[0, 255]);
        assert!(set["c"].is_none());
        let v = V::Map(vec![
            ("data", V::Bin(&[0, 255])),
            ("meta", V::Bin(b"ok")),
            ("p", V::Map(vec![("k", V::Bin(&[0xff]))])),
        ]);
        let s = String::from_utf8(encode_payload(Proto::Json, &v)).unwrap();
        assert_eq!(
            s,
            r#"{"data64":"AP8=","meta":"ok","p":{"k":{"data64":"/w=="}}}"#
        );
    }
}
