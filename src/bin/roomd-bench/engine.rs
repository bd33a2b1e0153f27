//! The client engine: one mio loop per process owning every client socket.
//!
//! A connection goes `Connecting` (non-blocking TCP connect from a source
//! address 127.0.0.x with `IP_BIND_ADDRESS_NO_PORT`) -> `Upgrading` (our HTTP
//! upgrade request out, the 101 reply in, `Sec-WebSocket-Accept` checked) ->
//! `Open` (frames in through `frames::Reader`, out through tungstenite's
//! `WebSocketContext`, client role) ->
//! `Closing` (our close frame sent, waiting for the server's) -> gone.
//!
//! Contracts, in the spirit of mio and redis:
//! - Sockets are registered once, edge-triggered, readable and writable.
//!   Every read loop ends at WouldBlock or at `READ_CAP` frames, in which case
//!   the connection goes on the `again` list and the next poll does not sleep.
//! - `send` only appends a frame to the connection's tungstenite out-buffer
//!   and flags the connection once on the flush list; `turn` flushes the list
//!   just before it sleeps, so everything sent to one connection between two
//!   polls leaves in one `write` (coalescing). A flush that would block waits
//!   for the writable edge.
//! - Connections are freed only at a safe point of the turn: a failed send
//!   queues the connection on `doomed`, and the handler hears `closed` once.
//! - Pings are answered while reading (pong queued, flushed before the next poll).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Bytes, Error as WsError, Message};

use crate::frames::{Frame, Reader};
use crate::sys::{now_ns, Timer};

const TIMER: Token = Token(usize::MAX - 1);
/// Frames read from one connection per turn before others get their go.
const READ_CAP: usize = 4096;
/// Largest HTTP upgrade reply accepted.
const MAX_REPLY_HEAD: usize = 16 * 1024;
/// How long our close frame waits for the server's before the socket is dropped.
const CLOSE_WAIT_NS: u64 = 2_000_000_000;

/// Where connections go.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Extra request header lines, each ending in CRLF.
    pub extra_headers: String,
    /// Source addresses 127.0.0.1 ..= 127.0.0.N used round-robin (loopback targets only).
    pub src_addrs: u8,
    pub connect_timeout_ns: u64,
}

/// Why a connection ended, as the handler hears it.
#[derive(Clone, Debug)]
pub enum Why {
    /// TCP connect failed (refused, no ports, ...).
    Connect(String),
    /// The upgrade failed (non-101 status, bad accept key, EOF).
    Handshake(String),
    /// Connect plus upgrade took longer than the connect timeout.
    Timeout,
    /// The server sent a close frame with this code (1005: none given).
    ServerClose(u16),
    /// The TCP connection ended without a close frame.
    Eof,
    /// A read or write failed.
    Error(String),
    /// We closed it (or gave up waiting for the server's close reply).
    Ours,
}

impl Why {
    /// A short label for error counts; `None` for a close we asked for.
    pub fn label(&self) -> Option<String> {
        match self {
            Why::Connect(e) => Some(format!("connect: {e}")),
            Why::Handshake(e) => Some(format!("handshake: {e}")),
            Why::Timeout => Some("connect timeout".into()),
            Why::ServerClose(c) => Some(format!("closed by server: {c}")),
            Why::Eof => Some("closed by server without close frame".into()),
            Why::Error(e) => Some(e.clone()),
            Why::Ours => None,
        }
    }

    /// Did the connection fail before it was ever open?
    pub fn before_open(&self) -> bool {
        matches!(self, Why::Connect(_) | Why::Handshake(_) | Why::Timeout)
    }
}

/// What the scenario does with engine events. Callbacks may send, close and
/// connect through `io`; a connection closed inside a callback is reported by
/// a later `closed` call, never re-entrantly.
pub trait Handler {
    fn opened(&mut self, io: &mut Io, id: usize, tag: u32, now: u64);
    fn message(&mut self, io: &mut Io, id: usize, tag: u32, data: &[u8], binary: bool, now: u64);
    fn closed(&mut self, io: &mut Io, id: usize, tag: u32, why: Why, now: u64);
}

enum State {
    Connecting,
    Upgrading { written: usize, reply: Vec<u8> },
    Open(WebSocketContext),
    Closing(WebSocketContext, u64),
}

struct Conn {
    stream: TcpStream,
    tag: u32,
    state: State,
    /// Incoming frames (allocated at the 101; taken out while dispatching).
    rd: Reader,
    /// Upgrade request (kept until written) and its key.
    request: Vec<u8>,
    key: String,
    started: u64,
    /// Unique over the process's life, so a queued action on a freed slab
    /// slot never hits the connection that reused the slot.
    serial: u64,
    in_flush: bool,
}

/// Connection table and the per-turn lists; what handlers get to act on.
pub struct Io {
    registry: Registry,
    conns: Slab<Conn>,
    flush: Vec<usize>,
    again: Vec<usize>,
    doomed: Vec<(usize, u64, Why)>,
    serial: u64,
    config: WebSocketConfig,
    read_buffer: usize,
    next_src: u32,
    /// Connections not open yet, and connections closing: the periodic scan
    /// for timeouts runs only while either is non-zero.
    pending: usize,
    closing: usize,
    next_scan: u64,
    /// Bytes of frames handed to tungstenite by `send`.
    pub sent_frames: u64,
}

impl Io {
    /// Starts a connection to `t` at `path`; `tag` is the handler's own id.
    /// Returns the connection id, or why the socket could not even be started
    /// (no file descriptors, no ports, ...).
    pub fn connect(&mut self, t: &Target, path: &str, tag: u32) -> Result<usize, String> {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| format!("socket: {e}"))?;
        sock.set_nonblocking(true)
            .map_err(|e| format!("nonblocking: {e}"))?;
        sock.set_tcp_nodelay(true)
            .map_err(|e| format!("nodelay: {e}"))?;
        if let IpAddr::V4(ip) = t.addr.ip() {
            if ip.is_loopback() && t.src_addrs > 0 {
                let n = self.next_src % t.src_addrs as u32;
                self.next_src = self.next_src.wrapping_add(1);
                let src = Ipv4Addr::new(127, 0, 0, 1 + n as u8);
                set_bind_no_port(&sock);
                sock.bind(&SocketAddr::new(IpAddr::V4(src), 0).into())
                    .map_err(|e| format!("bind {src}: {e}"))?;
            }
        }
        match sock.connect(&t.addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e.to_string()),
        }
        let mut stream = TcpStream::from_std(std::net::TcpStream::from(sock));
        let entry = self.conns.vacant_entry();
        let id = entry.key();
        self.registry
            .register(
                &mut stream,
                Token(id),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("register: {e}"))?;
        let key = tungstenite::handshake::client::generate_key();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
            t.host, t.extra_headers
        )
        .into_bytes();
        entry.insert(Conn {
            stream,
            tag,
            state: State::Connecting,
            rd: Reader::default(),
            request,
            key,
            started: now_ns(),
            serial: self.serial,
            in_flush: false,
        });
        self.serial += 1;
        self.pending += 1;
        Ok(id)
    }

    /// Queues a WebSocket message on an open connection. Returns false when
    /// the connection is not open (gone, not yet upgraded, or closing).
    pub fn send(&mut self, id: usize, msg: Message) -> bool {
        let Some(c) = self.conns.get_mut(id) else {
            return false;
        };
        let State::Open(ws) = &mut c.state else {
            return false;
        };
        match ws.write(&mut c.stream, msg) {
            Ok(()) => {}
            Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(WsError::WriteBufferFull(_)) => {
                let why = Why::Error("client write buffer full (server not reading)".into());
                self.doomed.push((id, c.serial, why));
                return false;
            }
            Err(e) => {
                self.doomed
                    .push((id, c.serial, Why::Error(format!("write: {e}"))));
                return false;
            }
        }
        self.sent_frames += 1;
        if !c.in_flush {
            c.in_flush = true;
            self.flush.push(id);
        }
        true
    }

    /// Starts the closing handshake (code 1000). The handler hears `closed`
    /// with `Why::Ours` when the server answers or after a timeout; a
    /// connection not open yet is dropped at the turn's end.
    pub fn close(&mut self, id: usize) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        match std::mem::replace(&mut c.state, State::Connecting) {
            State::Open(mut ws) => {
                let frame = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = ws.close(&mut c.stream, Some(frame));
                c.state = State::Closing(ws, now_ns() + CLOSE_WAIT_NS);
                self.closing += 1;
            }
            other => {
                c.state = other;
                if !matches!(c.state, State::Closing(..)) {
                    self.doomed.push((id, c.serial, Why::Ours));
                }
            }
        }
    }

    /// Drops the connection at the turn's end without a close frame (the
    /// server sees the TCP connection end, as when a network drops); the
    /// handler hears `closed` with `Why::Ours`.
    pub fn drop_now(&mut self, id: usize) {
        if let Some(c) = self.conns.get(id) {
            self.doomed.push((id, c.serial, Why::Ours));
        }
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn ids(&self) -> Vec<usize> {
        self.conns.iter().map(|(k, _)| k).collect()
    }

    /// Seconds since `connect` was called for `id` (0 when gone).
    pub fn started(&self, id: usize) -> u64 {
        self.conns.get(id).map(|c| c.started).unwrap_or(0)
    }

    fn mark_flush(&mut self, id: usize) {
        if let Some(c) = self.conns.get_mut(id) {
            if !c.in_flush {
                c.in_flush = true;
                self.flush.push(id);
            }
        }
    }

    /// Drops a connection and tells the handler why (the one place a
    /// connection ends).
    fn finish<H: Handler>(&mut self, h: &mut H, id: usize, why: Why, now: u64) {
        let Some(mut c) = self.conns.try_remove(id) else {
            return;
        };
        match c.state {
            State::Connecting | State::Upgrading { .. } => self.pending -= 1,
            State::Closing(..) => self.closing -= 1,
            State::Open(_) => {}
        }
        let _ = self.registry.deregister(&mut c.stream);
        let why = match (&c.state, why) {
            (State::Closing(..), Why::ServerClose(_) | Why::Eof | Why::Error(_)) => Why::Ours,
            (_, w) => w,
        };
        h.closed(self, id, c.tag, why, now);
    }

    /// Handles one readiness event of connection `id`.
    fn event<H: Handler>(&mut self, h: &mut H, id: usize, writable: bool, now: u64) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        match &c.state {
            State::Connecting => {
                match c.stream.take_error() {
                    Ok(Some(e)) | Err(e) => {
                        return self.finish(h, id, Why::Connect(e.to_string()), now)
                    }
                    Ok(None) => {}
                }
                match c.stream.peer_addr() {
                    Ok(_) => {
                        c.state = State::Upgrading {
                            written: 0,
                            reply: Vec::new(),
                        };
                        self.upgrade(h, id, now);
                    }
                    Err(e) if e.kind() == ErrorKind::NotConnected => {}
                    Err(e) => self.finish(h, id, Why::Connect(e.to_string()), now),
                }
            }
            State::Upgrading { .. } => self.upgrade(h, id, now),
            State::Open(_) | State::Closing(..) => {
                self.read_frames(h, id, now);
                if writable {
                    self.flush_one(id);
                }
            }
        }
    }

    /// Writes what is left of the upgrade request and reads the reply; on a
    /// complete 101 the connection becomes `Open` and any bytes after the
    /// reply head are handed to tungstenite as already read.
    fn upgrade<H: Handler>(&mut self, h: &mut H, id: usize, now: u64) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let State::Upgrading { written, reply } = &mut c.state else {
            return;
        };
        while *written < c.request.len() {
            match c.stream.write(&c.request[*written..]) {
                Ok(0) => return self.finish(h, id, Why::Handshake("write returned 0".into()), now),
                Ok(n) => *written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.finish(h, id, Why::Handshake(format!("write: {e}")), now),
            }
        }
        let mut buf = [0u8; 4096];
        loop {
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    return self.finish(
                        h,
                        id,
                        Why::Handshake("connection closed before the 101 reply".into()),
                        now,
                    )
                }
                Ok(n) => {
                    reply.extend_from_slice(&buf[..n]);
                    if reply.len() > MAX_REPLY_HEAD {
                        return self.finish(
                            h,
                            id,
                            Why::Handshake("reply head too large".into()),
                            now,
                        );
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return self.finish(h, id, Why::Handshake(format!("read: {e}")), now),
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(reply) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return,
            Err(e) => return self.finish(h, id, Why::Handshake(format!("bad reply: {e}")), now),
        };
        if resp.code != Some(101) {
            let code = resp.code.unwrap_or(0);
            return self.finish(h, id, Why::Handshake(format!("HTTP {code}")), now);
        }
        let want = tungstenite::handshake::derive_accept_key(c.key.as_bytes());
        let ok = resp.headers.iter().any(|hd| {
            hd.name.eq_ignore_ascii_case("sec-websocket-accept") && hd.value == want.as_bytes()
        });
        if !ok {
            return self.finish(
                h,
                id,
                Why::Handshake("bad Sec-WebSocket-Accept".into()),
                now,
            );
        }
        c.rd = Reader::new(self.read_buffer, &reply[head_len..]);
        c.state = State::Open(WebSocketContext::new(Role::Client, Some(self.config)));
        c.request = Vec::new();
        c.key = String::new();
        self.pending -= 1;
        let tag = c.tag;
        h.opened(self, id, tag, now);
        self.read_frames(h, id, now);
    }

    /// Reads frames until WouldBlock or `READ_CAP`, handing data messages to
    /// the handler as slices of the connection's buffer. One `read` syscall
    /// takes in as many frames as the server packed (up to the buffer size).
    /// Pings are answered (pong queued for the flush); a server close frame
    /// is answered and ends the connection.
    fn read_frames<H: Handler>(&mut self, h: &mut H, id: usize, now: u64) {
        let (serial, tag, mut rd) = {
            let Some(c) = self.conns.get_mut(id) else {
                return;
            };
            if !matches!(c.state, State::Open(_) | State::Closing(..)) {
                return;
            }
            (c.serial, c.tag, std::mem::take(&mut c.rd))
        };
        let mut frames = 0;
        let mut drained = false;
        let end = 'outer: loop {
            loop {
                let f = match rd.next() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => break 'outer Some(Why::Error(format!("protocol: {e}"))),
                };
                frames += 1;
                match f {
                    Frame::Data { binary, payload } => {
                        h.message(self, id, tag, payload, binary, now);
                        if self.conns.get(id).is_none_or(|c| c.serial != serial) {
                            return;
                        }
                    }
                    Frame::Ping(p) => self.pong(id, p),
                    Frame::Pong => {}
                    Frame::Close(code) => break 'outer Some(Why::ServerClose(code)),
                }
                if frames >= READ_CAP {
                    self.again.push(id);
                    break 'outer None;
                }
            }
            if drained {
                break None;
            }
            let Some(c) = self.conns.get_mut(id) else {
                return;
            };
            match rd.fill(&mut c.stream) {
                Ok((0, _)) => break Some(Why::Eof),
                Ok((_, full)) => drained = !full,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Some(Why::Error(format!("read: {e}"))),
            }
        };
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        c.rd = rd;
        if let Some(why) = end {
            if let (Why::ServerClose(code), State::Open(ws)) = (&why, &mut c.state) {
                // RFC 6455 5.5.1: answer a close frame with a close frame.
                let frame = CloseFrame {
                    code: CloseCode::from(*code),
                    reason: "".into(),
                };
                let _ = ws.close(&mut c.stream, Some(frame));
            }
            self.finish(h, id, why, now);
        }
    }

    /// Queues a pong carrying the ping's payload (RFC 6455 5.5.3).
    fn pong(&mut self, id: usize, payload: &[u8]) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if let State::Open(ws) = &mut c.state {
            let _ = ws.write(
                &mut c.stream,
                Message::Pong(Bytes::copy_from_slice(payload)),
            );
            self.mark_flush(id);
        }
    }

    fn flush_one(&mut self, id: usize) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        c.in_flush = false;
        let ws = match &mut c.state {
            State::Open(ws) | State::Closing(ws, _) => ws,
            _ => return,
        };
        match ws.flush(&mut c.stream) {
            Ok(()) => {}
            Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(WsError::ConnectionClosed) | Err(WsError::AlreadyClosed) => {
                self.doomed.push((id, c.serial, Why::Eof))
            }
            Err(e) => self
                .doomed
                .push((id, c.serial, Why::Error(format!("write: {e}")))),
        }
    }

    /// Fails connections whose connect + upgrade outlived the timeout, and
    /// drops closing ones whose close reply never came. O(connections), run
    /// at most every 100 ms and only while some are pending or closing.
    fn scan<H: Handler>(&mut self, h: &mut H, now: u64, connect_timeout_ns: u64) {
        if (self.pending == 0 && self.closing == 0) || now < self.next_scan {
            return;
        }
        self.next_scan = now + 100_000_000;
        let mut expired = Vec::new();
        for (id, c) in self.conns.iter() {
            match &c.state {
                State::Connecting | State::Upgrading { .. }
                    if now.saturating_sub(c.started) > connect_timeout_ns =>
                {
                    expired.push((id, Why::Timeout))
                }
                State::Closing(_, deadline) if now > *deadline => expired.push((id, Why::Ours)),
                _ => {}
            }
        }
        for (id, why) in expired {
            self.finish(h, id, why, now);
        }
    }
}

fn set_bind_no_port(sock: &Socket) {
    let one: libc::c_int = 1;
    // SAFETY: valid fd and a c_int option value. Failure only means the kernel
    // reserves a port at bind time, which still works for fewer connections.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// The loop: poll, timer, sockets.
pub struct Engine {
    poll: Poll,
    events: Events,
    timer: Timer,
    pub io: Io,
    pub connect_timeout_ns: u64,
}

impl Engine {
    /// `read_buffer` is tungstenite's per-connection read buffer (allocated
    /// up front for each connection, and the most one `read` takes in).
    pub fn new(read_buffer: usize) -> io::Result<Engine> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let timer = Timer::new()?;
        registry.register(&mut SourceFd(&timer.raw_fd()), TIMER, Interest::READABLE)?;
        // tungstenite only writes here (frames.rs reads), so its read buffer
        // is kept tiny.
        let config = WebSocketConfig::default()
            .read_buffer_size(0)
            .write_buffer_size(1 << 20)
            .max_write_buffer_size(64 << 20)
            .max_message_size(Some(16 << 20))
            .max_frame_size(Some(16 << 20));
        Ok(Engine {
            poll,
            events: Events::with_capacity(512),
            timer,
            io: Io {
                registry,
                conns: Slab::new(),
                flush: Vec::new(),
                again: Vec::new(),
                doomed: Vec::new(),
                serial: 0,
                config,
                read_buffer,
                next_src: 0,
                pending: 0,
                closing: 0,
                next_scan: 0,
                sent_frames: 0,
            },
            connect_timeout_ns: 10_000_000_000,
        })
    }

    /// One turn of the loop, in order: flush everything queued; sleep until
    /// an event or `wake_at` (absolute ns; 0 = no wake-up); socket events;
    /// connections left over by the read cap; timeouts; doomed connections.
    /// What the caller sends after a turn leaves at the start of the next one.
    /// Returns the time after polling.
    pub fn turn<H: Handler>(&mut self, h: &mut H, wake_at: u64) -> io::Result<u64> {
        // Before sleeping (redis's beforeSleep): write out everything queued
        // since the last poll, by the handler or by the caller between turns.
        for id in std::mem::take(&mut self.io.flush) {
            self.io.flush_one(id);
        }
        let timeout = if self.io.again.is_empty() && self.io.doomed.is_empty() {
            self.timer.arm(wake_at);
            None
        } else {
            Some(Duration::ZERO)
        };
        let timeout = if wake_at == 0 && timeout.is_none() {
            Some(Duration::from_millis(100))
        } else {
            timeout
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let now = now_ns();
        for ev in self.events.iter() {
            match ev.token() {
                TIMER => self.timer.clear(),
                Token(id) => self.io.event(h, id, ev.is_writable(), now),
            }
        }
        for id in std::mem::take(&mut self.io.again) {
            self.io.read_frames(h, id, now);
        }
        self.io.scan(h, now, self.connect_timeout_ns);
        while let Some((id, serial, why)) = self.io.doomed.pop() {
            if self.io.conns.get(id).is_some_and(|c| c.serial == serial) {
                self.io.finish(h, id, why, now);
            }
        }
        Ok(now)
    }
}
