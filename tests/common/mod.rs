//! Shared harness for the integration tests.
//!
//! [`Server`] runs the real `roomd` binary on `127.0.0.1:0` with one worker and
//! kills it on drop; [`Client`] is a real WebSocket client (tungstenite over a
//! blocking `TcpStream` whose read timeout is the watchdog); [`Value`] is the
//! one message representation, encoded as MessagePack (`bin` for bytes, `str`
//! for names) or JSON depending on the negotiated subprotocol. [`RawWs`] and
//! [`HttpConn`] speak the wire by hand for the cases a well-behaved client
//! cannot produce (garbage requests, silent peers, bad frames).
//!
//! Every blocking read is bounded by [`WATCHDOG`], so a missing reply fails the
//! test instead of hanging it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::Index;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use roomd::bus::home;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};

/// Builds a `Value::Map` with string keys: `msg!{"t" => "join", "room" => r}`.
#[macro_export]
macro_rules! msg {
    ($($k:expr => $v:expr),* $(,)?) => {
        $crate::common::Value::Map(vec![$(($crate::common::Value::from($k), $crate::common::Value::from($v))),*])
    };
}

/// Upper bound on any single wait for the server.
pub const WATCHDOG: Duration = Duration::from_secs(5);
/// Default window for "nothing arrives" checks.
pub const SILENCE: Duration = Duration::from_millis(300);

pub const MSGPACK: &str = "roomd.v1.msgpack";
pub const JSON: &str = "roomd.v1.json";

// ---------------------------------------------------------------------------
// Server

/// Kills the child on drop, so a panicking test never leaks a server.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// A running `roomd` process on an ephemeral port.
pub struct Server {
    child: ChildGuard,
    pub addr: SocketAddr,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Server {
    /// Starts `roomd --listen 127.0.0.1:0 --workers 1 <args>` and waits for its
    /// `roomd listening on HOST:PORT` line.
    pub fn start(args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roomd"));
        cmd.args(["--listen", "127.0.0.1:0", "--workers", "1"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Flags win over the environment anyway, but a stray ROOMD_* variable
        // must not change a default a test relies on.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ROOMD_") {
                cmd.env_remove(k);
            }
        }
        let mut child = ChildGuard(cmd.spawn().expect("spawn roomd"));
        let stdout = child.0.stdout.take().expect("stdout");
        let mut stderr = child.0.stderr.take().expect("stderr");

        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let lines = lines.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let log = Arc::new(Mutex::new(Vec::new()));
        {
            let log = log.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 8192];
                loop {
                    match stderr.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut l = log.lock().unwrap();
                            l.extend_from_slice(&buf[..n]);
                            if l.len() > 256 * 1024 {
                                let cut = l.len() - 128 * 1024;
                                l.drain(..cut);
                            }
                        }
                    }
                }
            });
        }

        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => line,
            Err(e) => {
                let status = child.0.try_wait();
                thread::sleep(Duration::from_millis(50));
                panic!(
                    "roomd did not print its listening line ({e}); status {status:?}; stderr:\n{}",
                    String::from_utf8_lossy(&log.lock().unwrap())
                );
            }
        };
        let addr = line
            .strip_prefix("roomd listening on ")
            .and_then(|a| a.trim().parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("unexpected first stdout line: {line:?}"));
        assert_ne!(addr.port(), 0, "listening line must carry the real port");
        Server {
            child,
            addr,
            stdout: lines,
            stderr: log,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.0.id() as i32
    }

    /// Sends a signal (e.g. `libc::SIGTERM`) to the server process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.0.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every line the server printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// A msgpack client on `/ws` (no subprotocol requested), welcome read.
    pub fn client(&self) -> Client {
        self.client_with("/ws", None)
    }

    /// A JSON client (`roomd.v1.json`), welcome read.
    pub fn client_json(&self) -> Client {
        self.client_with("/ws", Some(JSON))
    }

    /// A client on `path` (with query) asking for `protocols`, welcome read.
    pub fn client_with(&self, path: &str, protocols: Option<&str>) -> Client {
        Client::connect(self.addr, path, protocols)
            .unwrap_or_else(|e| panic!("connect {path} {protocols:?}: {e}"))
    }

    /// A msgpack client whose socket has a tiny receive buffer, so that it
    /// becomes a slow consumer as soon as it stops reading.
    pub fn client_small_rcvbuf(&self) -> Client {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        sock.connect(&self.addr.into()).expect("connect");
        Client::handshake(sock.into(), self.addr, "/ws", None).expect("handshake")
    }

    /// Two msgpack clients in `room`: `a` created it, `b` joined, and `a` has
    /// seen `b`'s `presence` (so nothing about the setup is left to read).
    pub fn pair(&self, room: &str) -> (Client, Client) {
        let mut a = self.client();
        a.create(room);
        let mut b = self.client();
        b.join(room);
        a.expect("presence");
        (a, b)
    }

    /// A fresh plain-TCP connection for hand-written HTTP.
    pub fn http_conn(&self) -> HttpConn {
        HttpConn::connect(self.addr)
    }

    /// `GET path` with `Connection: close`.
    pub fn get(&self, path: &str) -> HttpResponse {
        let mut c = self.http_conn();
        c.send(
            format!("GET {path} HTTP/1.1\r\nHost: roomd\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        c.response()
            .unwrap_or_else(|e| panic!("GET {path}: no response: {e}"))
    }

    /// An upgrade of `path` by hand with extra header lines (each ending in
    /// CRLF), whatever the answer: the caller checks `response.status`.
    pub fn upgrade_with(&self, path: &str, extra_headers: &str) -> RawWs {
        let mut conn = self.http_conn();
        conn.send(
            format!(
                "GET {path} HTTP/1.1\r\nHost: roomd\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
            )
            .as_bytes(),
        );
        let response = conn.response().expect("a response to the upgrade");
        RawWs { conn, response }
    }

    /// The server's resident memory (VmRSS), in KiB.
    /// The sum of every sample of `family` (a metric name, or a name with
    /// the start of its labels, e.g. `roomd_closes_total{worker="0",`) in
    /// `path` (`/metrics` or `/metrics/all`).
    pub fn metric(&self, path: &str, family: &str) -> u64 {
        let text = self.get(path).text();
        text.lines()
            .filter(|l| {
                l.starts_with(family)
                    && (family.ends_with(',') || l[family.len()..].starts_with(['{', ' ']))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Scrapes `path` until `family` (see [`Server::metric`]) satisfies
    /// `ok`, for at most [`WATCHDOG`]; returns the last value.
    #[track_caller]
    pub fn await_metric(&self, path: &str, family: &str, ok: impl Fn(u64) -> bool) -> u64 {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            let v = self.metric(path, family);
            if ok(v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{family} in {path} still {v} after {WATCHDOG:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// A WebSocket upgrade done by hand; the socket then sends nothing unless
    /// asked to.
    pub fn raw_ws(&self, path: &str) -> RawWs {
        RawWs::connect(self.addr, path)
    }

    /// A client on a fresh connection answers `ping` with `pong`: the server
    /// still serves.
    pub fn assert_alive(&self) {
        let mut c = self.client();
        c.send(msg! {"t" => "ping", "rid" => 77u32});
        let pong = c.expect("pong");
        assert_eq!(pong["rid"].u(), 77, "pong carries the rid");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if thread::panicking() {
            let log = self.stderr.lock().unwrap();
            let tail = &log[log.len().saturating_sub(8192)..];
            eprintln!(
                "---- roomd stderr (tail) ----\n{}",
                String::from_utf8_lossy(tail)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Value

/// One protocol message or field, as either encoding carries it.
#[derive(Clone, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    F64(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

static NIL: Value = Value::Nil;

/// Bytes as a MessagePack `bin`.
pub fn bin(b: impl AsRef<[u8]>) -> Value {
    Value::Bin(b.as_ref().to_vec())
}

pub fn arr(items: Vec<Value>) -> Value {
    Value::Array(items)
}

impl Value {
    /// The field `key` of a map, if present (`Nil` values count as present).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(m) => m
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The message type (`t`), or "" when absent.
    pub fn t(&self) -> &str {
        match self.get("t") {
            Some(Value::Str(s)) => s,
            _ => "",
        }
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Nil)
    }

    /// The string, panicking on anything else.
    #[track_caller]
    pub fn s(&self) -> &str {
        match self {
            Value::Str(s) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }

    /// A non-negative integer, panicking on anything else.
    #[track_caller]
    pub fn u(&self) -> u64 {
        match self {
            Value::UInt(n) => *n,
            Value::Int(n) if *n >= 0 => *n as u64,
            other => panic!("expected an unsigned integer, got {other:?}"),
        }
    }

    #[track_caller]
    pub fn b(&self) -> &[u8] {
        match self {
            Value::Bin(b) => b,
            other => panic!("expected bin, got {other:?}"),
        }
    }

    #[track_caller]
    pub fn bool(&self) -> bool {
        match self {
            Value::Bool(b) => *b,
            other => panic!("expected bool, got {other:?}"),
        }
    }

    #[track_caller]
    pub fn arr(&self) -> &[Value] {
        match self {
            Value::Array(a) => a,
            other => panic!("expected an array, got {other:?}"),
        }
    }

    /// The entries of a map, keys as strings.
    #[track_caller]
    pub fn map(&self) -> BTreeMap<String, Value> {
        match self {
            Value::Map(m) => m
                .iter()
                .map(|(k, v)| (k.s().to_string(), v.clone()))
                .collect(),
            other => panic!("expected a map, got {other:?}"),
        }
    }

    /// Encodes as MessagePack.
    pub fn to_msgpack(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("encode msgpack")
    }

    /// Encodes as JSON (only meaningful without `Bin` values).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("encode json")
    }
}

impl Index<&str> for Value {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or(&NIL)
    }
}

impl Index<usize> for Value {
    type Output = Value;
    fn index(&self, i: usize) -> &Value {
        match self {
            Value::Array(a) => a.get(i).unwrap_or(&NIL),
            _ => &NIL,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}
impl From<&String> for Value {
    fn from(s: &String) -> Value {
        Value::Str(s.clone())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<u64> for Value {
    fn from(n: u64) -> Value {
        Value::UInt(n)
    }
}
impl From<u32> for Value {
    fn from(n: u32) -> Value {
        Value::UInt(n.into())
    }
}
impl From<u16> for Value {
    fn from(n: u16) -> Value {
        Value::UInt(n.into())
    }
}
impl From<usize> for Value {
    fn from(n: usize) -> Value {
        Value::UInt(n as u64)
    }
}
impl From<i32> for Value {
    fn from(n: i32) -> Value {
        if n >= 0 {
            Value::UInt(n as u64)
        } else {
            Value::Int(n.into())
        }
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Value {
        if n >= 0 {
            Value::UInt(n as u64)
        } else {
            Value::Int(n)
        }
    }
}
impl From<f64> for Value {
    fn from(n: f64) -> Value {
        Value::F64(n)
    }
}
impl From<&Value> for Value {
    fn from(v: &Value) -> Value {
        v.clone()
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => write!(f, "nil"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::UInt(n) => write!(f, "{n}"),
            Value::F64(n) => write!(f, "{n}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Bin(b) if b.len() > 64 => write!(f, "bin[{} bytes]", b.len()),
            Value::Bin(b) => write!(f, "b\"{}\"", b.escape_ascii()),
            Value::Array(a) => f.debug_list().entries(a).finish(),
            Value::Map(m) => f
                .debug_map()
                .entries(m.iter().map(|(k, v)| (k, v)))
                .finish(),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Nil => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(n) => s.serialize_i64(*n),
            Value::UInt(n) => s.serialize_u64(*n),
            Value::F64(n) => s.serialize_f64(*n),
            Value::Str(v) => s.serialize_str(v),
            Value::Bin(b) => s.serialize_bytes(b),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any MessagePack or JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::F64(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bin(v.to_vec()))
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bin(v))
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry()? {
            out.push((k, v));
        }
        Ok(Value::Map(out))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

// ---------------------------------------------------------------------------
// WebSocket client

/// A real WebSocket client speaking the protocol in the negotiated encoding.
pub struct Client {
    pub ws: WebSocket<TcpStream>,
    /// `true` when the server chose `roomd.v1.json`.
    pub json: bool,
    /// The `Sec-WebSocket-Protocol` the server answered with, if any.
    pub protocol: Option<String>,
    pub welcome: Value,
    /// Member id from `welcome`.
    pub id: u64,
    next_rid: u32,
}

impl Client {
    /// Connects, upgrades and reads `welcome`.
    pub fn connect(
        addr: SocketAddr,
        path: &str,
        protocols: Option<&str>,
    ) -> Result<Client, tungstenite::Error> {
        let stream = TcpStream::connect(addr)?;
        Client::handshake(stream, addr, path, protocols)
    }

    /// Upgrades an already connected stream and reads `welcome`.
    pub fn handshake(
        stream: TcpStream,
        addr: SocketAddr,
        path: &str,
        protocols: Option<&str>,
    ) -> Result<Client, tungstenite::Error> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(WATCHDOG))?;
        stream.set_write_timeout(Some(WATCHDOG))?;
        let mut req = format!("ws://{addr}{path}").into_client_request()?;
        if let Some(p) = protocols {
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", p.parse().expect("header value"));
        }
        let config = WebSocketConfig::default().write_buffer_size(0);
        let (ws, resp) = tungstenite::client::client_with_config(req, stream, Some(config))
            .map_err(|e| match e {
                HandshakeError::Failure(e) => e,
                HandshakeError::Interrupted(_) => tungstenite::Error::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "handshake timed out",
                )),
            })?;
        let protocol = resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().expect("protocol header").to_string());
        let json = protocol.as_deref() == Some(JSON);
        let mut c = Client {
            ws,
            json,
            protocol,
            welcome: Value::Nil,
            id: 0,
            next_rid: 1,
        };
        let welcome = c.recv();
        assert_eq!(welcome.t(), "welcome", "first message must be welcome");
        c.id = welcome["id"].u();
        c.welcome = welcome;
        Ok(c)
    }

    /// A fresh request id for this client.
    pub fn rid(&mut self) -> u32 {
        let r = self.next_rid;
        self.next_rid += 1;
        r
    }

    /// Sends one message in the connection's encoding.
    #[track_caller]
    pub fn send(&mut self, v: Value) {
        let m = if self.json {
            Message::text(v.to_json())
        } else {
            Message::binary(v.to_msgpack())
        };
        self.send_raw(m);
    }

    /// Sends a WebSocket message as is.
    #[track_caller]
    pub fn send_raw(&mut self, m: Message) {
        self.ws
            .send(m)
            .unwrap_or_else(|e| panic!("client {}: send failed: {e}", self.id));
    }

    /// Sends a binary frame with these exact bytes.
    #[track_caller]
    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.send_raw(Message::binary(bytes.to_vec()));
    }

    /// Sends a text frame with these exact bytes, valid UTF-8 or not.
    #[track_caller]
    pub fn send_text_bytes(&mut self, bytes: &[u8]) {
        let frame = Frame::message(bytes.to_vec(), OpCode::Data(Data::Text), true);
        self.send_raw(Message::Frame(frame));
    }

    /// Writes bytes straight to the TCP stream, bypassing the framing.
    pub fn write_raw_bytes(&mut self, bytes: &[u8]) {
        let s = self.ws.get_mut();
        s.write_all(bytes).expect("raw write");
        s.flush().expect("raw flush");
    }

    fn decode(&self, m: Message) -> Option<Value> {
        match m {
            Message::Binary(b) => {
                assert!(
                    !self.json,
                    "client {}: binary frame on a JSON connection: {:?}",
                    self.id, b
                );
                Some(rmp_serde::from_slice(&b).unwrap_or_else(|e| {
                    panic!(
                        "client {}: bad MessagePack from server ({e}): {:?}",
                        self.id, b
                    )
                }))
            }
            Message::Text(t) => {
                assert!(
                    self.json,
                    "client {}: text frame on a msgpack connection: {t}",
                    self.id
                );
                Some(serde_json::from_str(&t).unwrap_or_else(|e| {
                    panic!("client {}: bad JSON from server ({e}): {t}", self.id)
                }))
            }
            _ => None,
        }
    }

    /// Reads the next WebSocket message of any kind (pings included).
    pub fn read_message(&mut self) -> Result<Message, tungstenite::Error> {
        self.ws.read()
    }

    /// The next protocol message; pings/pongs are answered and skipped.
    /// Panics on close, error or watchdog timeout.
    #[track_caller]
    pub fn recv(&mut self) -> Value {
        loop {
            match self.ws.read() {
                Ok(Message::Close(f)) => {
                    panic!("client {}: connection closed by server: {f:?}", self.id)
                }
                Ok(m) => {
                    if let Some(v) = self.decode(m) {
                        return v;
                    }
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("client {}: timed out waiting for a message", self.id)
                }
                Err(e) => panic!("client {}: read failed: {e}", self.id),
            }
        }
    }

    /// The next message, which must be of type `t`.
    #[track_caller]
    pub fn expect(&mut self, t: &str) -> Value {
        let v = self.recv();
        assert_eq!(v.t(), t, "client {}: expected {t:?}, got {v:?}", self.id);
        v
    }

    /// The next message, which must be `err` with `code`.
    #[track_caller]
    pub fn expect_err(&mut self, code: &str) -> Value {
        let v = self.recv();
        assert_eq!(
            v.t(),
            "err",
            "client {}: expected err {code}, got {v:?}",
            self.id
        );
        assert_eq!(
            v["code"].s(),
            code,
            "client {}: wrong error code: {v:?}",
            self.id
        );
        assert!(
            matches!(v.get("msg"), Some(Value::Str(_))),
            "err carries a msg string: {v:?}"
        );
        v
    }

    /// The next message, which must be `err` with `code` and `rid`.
    #[track_caller]
    pub fn expect_err_rid(&mut self, code: &str, rid: u32) -> Value {
        let v = self.expect_err(code);
        assert_eq!(v["rid"].u(), u64::from(rid), "err carries the rid: {v:?}");
        v
    }

    /// Skips messages until one of type `t` arrives.
    #[track_caller]
    pub fn recv_type(&mut self, t: &str) -> Value {
        self.recv_until(|v| v.t() == t)
    }

    /// Skips messages until one matches `pred`.
    #[track_caller]
    pub fn recv_until(&mut self, mut pred: impl FnMut(&Value) -> bool) -> Value {
        loop {
            let v = self.recv();
            if pred(&v) {
                return v;
            }
        }
    }

    /// Nothing but pings may arrive for `d`.
    #[track_caller]
    pub fn expect_silence(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.ws
                .get_ref()
                .set_read_timeout(Some(deadline - now))
                .unwrap();
            match self.ws.read() {
                Ok(Message::Close(f)) => {
                    panic!("client {}: expected silence, got close {f:?}", self.id)
                }
                Ok(m) => {
                    if let Some(v) = self.decode(m) {
                        panic!("client {}: expected silence, got {v:?}", self.id);
                    }
                }
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("client {}: expected silence, got error {e}", self.id),
            }
        }
        self.ws.get_ref().set_read_timeout(Some(WATCHDOG)).unwrap();
    }

    /// Reads (skipping protocol messages, returned) until the server's close
    /// frame, and asserts its code.
    #[track_caller]
    pub fn expect_close(&mut self, code: u16) -> Vec<Value> {
        let mut skipped = Vec::new();
        loop {
            match self.ws.read() {
                Ok(Message::Close(f)) => {
                    let got = f.as_ref().map(|f| u16::from(f.code));
                    // Let tungstenite send the close reply.
                    let _ = self.ws.flush();
                    assert_eq!(
                        got,
                        Some(code),
                        "client {}: wrong close frame {f:?} (after {skipped:?})",
                        self.id
                    );
                    return skipped;
                }
                Ok(m) => {
                    if let Some(v) = self.decode(m) {
                        skipped.push(v);
                    }
                }
                Err(e) => panic!(
                    "client {}: expected close {code}, got error {e} (after {skipped:?})",
                    self.id
                ),
            }
        }
    }

    /// Sends a close frame with `code` and waits for the server's reply.
    pub fn close(mut self, code: u16) {
        let _ = self.ws.close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        }));
        while self.ws.read().is_ok() {}
    }

    /// Drops the TCP connection without a close frame.
    pub fn drop_tcp(self) {
        let _ = self.ws.get_ref().shutdown(Shutdown::Both);
    }

    /// `create {room, rid}`: asserts `created` then `joined`; returns `joined`.
    #[track_caller]
    pub fn create(&mut self, room: &str) -> Value {
        self.create_with(msg! {"room" => room})
    }

    /// `create` with extra fields (merged into `{t, rid}`); asserts `created`
    /// then `joined`, returns `joined`.
    #[track_caller]
    pub fn create_with(&mut self, fields: Value) -> Value {
        let rid = self.rid();
        let mut m = vec![("t".into(), "create".into()), ("rid".into(), rid.into())];
        if let Value::Map(f) = fields {
            m.extend(f);
        }
        self.send(Value::Map(m));
        let created = self.expect("created");
        assert_eq!(
            created["rid"].u(),
            u64::from(rid),
            "created carries the rid"
        );
        let joined = self.expect("joined");
        assert_eq!(joined["room"], created["room"]);
        joined
    }

    /// `join {room, rid}`: asserts `joined` with the rid; returns it.
    #[track_caller]
    pub fn join(&mut self, room: &str) -> Value {
        let rid = self.rid();
        self.send(msg! {"t" => "join", "rid" => rid, "room" => room});
        let joined = self.expect("joined");
        assert_eq!(joined["rid"].u(), u64::from(rid), "joined carries the rid");
        assert_eq!(joined["room"].s(), room);
        joined
    }

    /// `leave {room, rid}`: asserts `left`.
    #[track_caller]
    pub fn leave(&mut self, room: &str) {
        let rid = self.rid();
        self.send(msg! {"t" => "leave", "rid" => rid, "room" => room});
        let left = self.expect("left");
        assert_eq!(left["rid"].u(), u64::from(rid));
        assert_eq!(left["room"].s(), room);
    }

    /// `pub` with a rid; returns the `seq` from `ok`.
    #[track_caller]
    pub fn publish(&mut self, room: &str, data: &[u8]) -> u64 {
        let rid = self.rid();
        self.send(msg! {"t" => "pub", "rid" => rid, "room" => room, "data" => bin(data)});
        let ok = self.expect("ok");
        assert_eq!(ok["rid"].u(), u64::from(rid));
        ok["seq"].u()
    }

    /// `ping` with a rid; asserts `pong`: a round trip through the server.
    #[track_caller]
    pub fn roundtrip(&mut self) {
        let rid = self.rid();
        self.send(msg! {"t" => "ping", "rid" => rid});
        let pong = self.expect("pong");
        assert_eq!(pong["rid"].u(), u64::from(rid));
    }
}

/// Member ids listed in a `joined.members` array, in order.
#[track_caller]
pub fn member_ids(joined: &Value) -> Vec<u64> {
    joined["members"]
        .arr()
        .iter()
        .map(|m| m["id"].u())
        .collect()
}

// ---------------------------------------------------------------------------
// Several workers

/// Connections tried before giving up on landing on a given worker.
pub const ATTEMPTS: usize = 300;

/// `roomd --workers n <extra>`: a supervisor and `n` worker processes.
pub fn start_workers(n: u32, extra: &[&str]) -> Server {
    let n = n.to_string();
    let mut args = vec!["--workers", n.as_str()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// The worker `c`'s connection landed on, from its `welcome`.
#[track_caller]
pub fn worker_of(c: &Client) -> u32 {
    match c.welcome.get("worker") {
        Some(Value::UInt(w)) => *w as u32,
        other => panic!(
            "welcome must carry `worker` (u32), got {other:?}: {:?}",
            c.welcome
        ),
    }
}

/// `per` clients on each of the `n` workers (index = worker id): connects
/// until every worker has its share; the surplus is dropped.
pub fn spread(server: &Server, n: u32, per: usize) -> Vec<Vec<Client>> {
    let mut by: Vec<Vec<Client>> = (0..n).map(|_| Vec::new()).collect();
    let mut tries = 0;
    while by.iter().any(|v| v.len() < per) {
        assert!(
            tries < ATTEMPTS,
            "after {tries} connections, clients per worker {:?} (wanted {per} on each of {n})",
            by.iter().map(Vec::len).collect::<Vec<_>>()
        );
        tries += 1;
        let c = server.client();
        let w = worker_of(&c);
        assert!(w < n, "welcome.worker {w} with --workers {n}");
        if by[w as usize].len() < per {
            by[w as usize].push(c);
        }
    }
    by
}

/// A client whose connection landed on worker `k`.
pub fn client_on(server: &Server, k: u32) -> Client {
    for _ in 0..ATTEMPTS {
        let c = server.client();
        if worker_of(&c) == k {
            return c;
        }
    }
    panic!("no connection landed on worker {k} in {ATTEMPTS} attempts");
}

/// The first `{prefix}-{i}` whose home is worker `k` of `n`.
pub fn name_on(prefix: &str, k: u32, n: u32) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|s| home(s, n) == k)
        .unwrap()
}

/// Pids of the supervisor's live children: the worker processes.
pub fn worker_pids(server: &Server) -> Vec<i32> {
    let sup = server.pid();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parens.
        let Some(at) = stat.rfind(')') else { continue };
        let mut f = stat[at + 1..].split_whitespace();
        let state = f.next();
        let ppid = f.next().and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(sup) && state != Some("Z") {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// The worker process holding the server end of `c`'s connection: the
/// socket's inode from /proc/net/tcp (local port the server's, remote port
/// `c`'s), then the child of the supervisor that has that socket open.
pub fn pid_serving(server: &Server, c: &Client) -> i32 {
    pid_serving_port(
        server,
        c.ws.get_ref().local_addr().expect("local addr").port(),
    )
}

/// The worker process holding the server end of the connection from local
/// port `mine` (see [`pid_serving`]).
pub fn pid_serving_port(server: &Server, mine: u16) -> i32 {
    // A connection still in the kernel's accept queue has no inode (0) and
    // no process holds it yet: wait (bounded) until a worker accepted it.
    let deadline = Instant::now() + WATCHDOG;
    loop {
        if let Some(pid) = try_pid_serving_port(server, mine) {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "no worker process (children of {}) holds the server end of client port {mine}",
            server.pid()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

fn try_pid_serving_port(server: &Server, mine: u16) -> Option<i32> {
    let theirs = server.addr.port();
    let tcp = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = |a: &str| {
        a.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    let inode = tcp
        .lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && port(f[1]) == Some(theirs) && port(f[2]) == Some(mine))
                .then(|| f[9].to_string())
        })
        .filter(|inode| inode != "0")?;
    let want = format!("socket:[{inode}]");
    for pid in worker_pids(server) {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == want) {
                return Some(pid);
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Raw HTTP and WebSocket

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A plain TCP connection that speaks HTTP by hand.
pub struct HttpConn {
    pub stream: TcpStream,
    /// Bytes read past the last parsed response.
    pub buf: Vec<u8>,
}

impl HttpConn {
    pub fn connect(addr: SocketAddr) -> HttpConn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(WATCHDOG)).unwrap();
        stream.set_write_timeout(Some(WATCHDOG)).unwrap();
        HttpConn {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write request");
    }

    /// Reads one response. A 101 has no body (what follows stays in `buf`);
    /// otherwise the body is `Content-Length` bytes, or everything to EOF.
    pub fn response(&mut self) -> io::Result<HttpResponse> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap_or(0);
                    let headers: Vec<(String, String)> = resp
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).trim().to_string(),
                            )
                        })
                        .collect();
                    self.buf.drain(..n);
                    let len = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .map(|(_, v)| v.parse::<usize>().expect("content-length"));
                    let body = if status == 101 {
                        Vec::new()
                    } else if let Some(len) = len {
                        while self.buf.len() < len {
                            if self.fill()? == 0 {
                                return Err(io::ErrorKind::UnexpectedEof.into());
                            }
                        }
                        self.buf.drain(..len).collect()
                    } else {
                        while self.fill()? != 0 {}
                        std::mem::take(&mut self.buf)
                    };
                    return Ok(HttpResponse {
                        status,
                        headers,
                        body,
                    });
                }
                Ok(httparse::Status::Partial) => {
                    if self.fill()? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("EOF before a full response head: {:?}", self.buf),
                        ));
                    }
                }
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "bad response ({e}): {:?}",
                            String::from_utf8_lossy(&self.buf)
                        ),
                    ))
                }
            }
        }
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Waits up to `within` for the server to close the socket (EOF or reset);
    /// data that arrives first is discarded. Returns whether it closed.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        socket_closed_within(&mut self.stream, within)
    }
}

/// Reads until EOF/reset (true) or until `within` passes (false).
pub fn socket_closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut chunk = [0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        stream.set_read_timeout(Some(deadline - now)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// A WebSocket frame as read off the wire.
#[derive(Debug)]
pub struct RawFrame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The close code of a close frame (1005 when it has no body).
    pub fn close_code(&self) -> u16 {
        assert_eq!(self.opcode, 0x8, "not a close frame: {self:?}");
        if self.payload.len() >= 2 {
            u16::from_be_bytes([self.payload[0], self.payload[1]])
        } else {
            1005
        }
    }
}

/// A WebSocket connection upgraded by hand: it sends nothing (not even pongs)
/// unless told to.
pub struct RawWs {
    pub conn: HttpConn,
    pub response: HttpResponse,
}

impl RawWs {
    pub fn connect(addr: SocketAddr, path: &str) -> RawWs {
        let mut conn = HttpConn::connect(addr);
        conn.send(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        );
        let response = conn.response().expect("upgrade response");
        assert_eq!(response.status, 101, "upgrade refused: {response:?}");
        assert_eq!(
            response.header("Sec-WebSocket-Accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "RFC 6455 accept key"
        );
        RawWs { conn, response }
    }

    /// Reads one frame (control frames included).
    pub fn read_frame(&mut self) -> io::Result<RawFrame> {
        self.need(2)?;
        let b0 = self.conn.buf[0];
        let b1 = self.conn.buf[1];
        let masked = b1 & 0x80 != 0;
        let mut len = u64::from(b1 & 0x7f);
        let mut at = 2;
        if len == 126 {
            self.need(4)?;
            len = u64::from(u16::from_be_bytes([self.conn.buf[2], self.conn.buf[3]]));
            at = 4;
        } else if len == 127 {
            self.need(10)?;
            len = u64::from_be_bytes(self.conn.buf[2..10].try_into().unwrap());
            at = 10;
        }
        let mask_at = at;
        if masked {
            at += 4;
        }
        let total = at + len as usize;
        self.need(total)?;
        let mut payload = self.conn.buf[at..total].to_vec();
        if masked {
            let key: [u8; 4] = self.conn.buf[mask_at..mask_at + 4].try_into().unwrap();
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        self.conn.buf.drain(..total);
        Ok(RawFrame {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x7,
            opcode: b0 & 0x0f,
            payload,
        })
    }

    /// Reads frames until a data frame; decodes it as MessagePack.
    pub fn read_msgpack(&mut self) -> Value {
        loop {
            let f = self.read_frame().expect("read frame");
            match f.opcode {
                0x2 => return rmp_serde::from_slice(&f.payload).expect("msgpack from server"),
                0x9 | 0xA => continue,
                _ => panic!("unexpected frame {f:?}"),
            }
        }
    }

    fn need(&mut self, n: usize) -> io::Result<()> {
        while self.conn.buf.len() < n {
            if self.conn.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(())
    }

    /// Writes a masked frame whose first header byte is `b0` (FIN, RSV, opcode).
    pub fn write_frame(&mut self, b0: u8, payload: &[u8]) {
        self.conn.send(&encode_client_frame(b0, payload));
    }
}

/// A client-to-server frame (masked, as RFC 6455 requires) with first byte `b0`.
pub fn encode_client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![b0];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
