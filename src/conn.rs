//! Connections: the socket, its phase (HTTP head, WebSocket, closing) and its
//! output buffer. [`Conns`] owns every connection and the lists the loop
//! drains each turn: connections with output to flush and connections that
//! passed their output limit.
//!
//! Invariants:
//! - a connection is on `pending` at most once (`Conn::pending` says so);
//! - output is only appended while the connection is open (`Phase::Ws`, not
//!   closing); once its unsent bytes pass the limit it is flagged
//!   `overflowed`, put on `overflow` once, and receives nothing more;
//! - only the worker's close path changes a connection to `Phase::Closing`.
//!
//! The output limit counts what the kernel holds too: each socket gets
//! `TCP_NOTSENT_LOWAT` ([`notsent_lowat`]), so the kernel stops taking bytes
//! it cannot send instead of autotuning its send buffer up to
//! `net.ipv4.tcp_wmem`'s max (megabytes per reader that never reads), and
//! the bytes it took but has not sent (`SIOCOUTQNSD`) are read when a write
//! would block and counted against `--out-buffer` with roomd's own. Exact
//! once a write has blocked; in the turn a connection first falls behind,
//! the kernel may hold up to the low-water mark (plus the segment it was
//! filling) on top of a full roomd buffer. Bytes sent and not yet
//! acknowledged are not counted (a stalled reader's window bounds them).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use mio::net::TcpStream;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

use crate::arena::Arena;
use crate::protocol::Proto;
use crate::session::SessionId;
use crate::timer::TimerId;

pub use crate::hub::ConnId;
use crate::hub::Link;

/// Bytes written to one socket per turn before others get their turn
/// (fairness cap, as redis' NET_MAX_WRITES_PER_EVENT).
pub const WRITE_CAP: usize = 256 * 1024;

/// `TCP_NOTSENT_LOWAT` for a connection under output limit `limit`: a
/// quarter of it, at most 64 KiB. The kernel then takes new bytes only while
/// less than this is unsent (roughly: plus the segment being filled), and
/// reports writable again below half of it. Small enough that what the
/// kernel holds is a small part of the limit before roomd sees a write
/// block; large enough that a reader keeping up rarely makes one block (it
/// drains the kernel's queue about as fast as roomd fills it).
pub fn notsent_lowat(limit: usize) -> u32 {
    (limit / 4).clamp(1024, 64 * 1024) as u32
}

/// Which kernel send queue [`kernel_unsent`] reads.
#[derive(Clone, Copy)]
pub enum Queue {
    /// TCP: bytes not yet sent (`SIOCOUTQNSD`), in-flight bytes excluded.
    TcpUnsent,
    /// Unix stream: memory the peer has not read yet (`SIOCOUTQ`).
    Unix,
}

/// Bytes the kernel holds for `sock` that the peer has not got: one ioctl.
/// 0 when the kernel cannot say (then only roomd's own bytes count).
pub fn kernel_unsent(sock: &impl AsRawFd, q: Queue) -> usize {
    #[cfg(target_os = "linux")]
    {
        let req = match q {
            Queue::TcpUnsent => libc::SIOCOUTQNSD,
            Queue::Unix => libc::TIOCOUTQ as _,
        };
        let mut n: libc::c_int = 0;
        // SAFETY: both requests write one int to the pointer given.
        let r = unsafe { libc::ioctl(sock.as_raw_fd(), req as _, &mut n) };
        if r == 0 {
            return usize::try_from(n).unwrap_or(0);
        }
        0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (sock, q);
        0
    }
}

/// Output waiting for the socket: a byte queue with a read position, so a
/// partial write costs no memmove until the consumed prefix is large.
#[derive(Default)]
pub struct OutBuf {
    buf: Vec<u8>,
    pos: usize,
}

impl OutBuf {
    pub fn len(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn extend(&mut self, b: &[u8]) {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(b);
    }
    /// The buffer to append to in place (whole messages only).
    pub fn tail(&mut self) -> &mut Vec<u8> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        &mut self.buf
    }
    /// Frees the buffer's memory; only when empty (nothing is dropped).
    pub fn release(&mut self) {
        if self.is_empty() {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }
    pub fn unsent(&self) -> &[u8] {
        &self.buf[self.pos..]
    }
    /// Marks `n` bytes as written; frees large buffers once empty (a
    /// connection's buffer is freed whole by [`OutBuf::release`]).
    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            if self.buf.capacity() > 16 * 1024 {
                self.buf = Vec::new();
            }
        } else if self.pos > 64 * 1024 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

/// Where a connection's input comes from while it is read: first bytes
/// stashed from an earlier turn, then the worker's read buffer, which is
/// refilled from the socket with one large read when empty.
///
/// Why: tungstenite zeroes its read window before every read call, so that
/// window is kept small (a few hundred bytes per connection, also the
/// per-connection memory cost) while the socket is still read in large
/// chunks into one buffer the whole worker shares.
pub struct Feed<'a> {
    /// Read the socket when the buffer is used up (else: `WouldBlock`, as
    /// while a connection is on its way to another worker, see
    /// `worker::moves`).
    pub sock: bool,
    pub stash: &'a [u8],
    pub stash_pos: usize,
    pub buf: &'a mut [u8],
    pub pos: usize,
    pub len: usize,
}

/// The stream tungstenite is driven with: reads come from the [`Feed`] (or
/// the socket), writes (pongs, close frames) go into the connection's own
/// output buffer, so they keep their order with fan-out frames and are
/// flushed with them.
pub struct Io<'a> {
    pub sock: &'a mut TcpStream,
    pub out: &'a mut OutBuf,
    /// Bytes read from the socket through this adapter (liveness: any byte
    /// counts).
    pub nread: usize,
    pub feed: Option<Feed<'a>>,
    /// Follows the frames of what tungstenite is handed.
    pub track: Option<&'a mut Track>,
}

impl Io<'_> {
    fn handed(&mut self, b: &[u8]) -> usize {
        if let Some(t) = &mut self.track {
            t.feed(b);
        }
        b.len()
    }
}

impl Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(f) = &mut self.feed else {
            let n = self.sock.read(buf)?;
            self.nread += n;
            return Ok(self.handed(&buf[..n]));
        };
        if f.stash_pos < f.stash.len() {
            let n = buf.len().min(f.stash.len() - f.stash_pos);
            buf[..n].copy_from_slice(&f.stash[f.stash_pos..f.stash_pos + n]);
            f.stash_pos += n;
            return Ok(self.handed(&buf[..n]));
        }
        if f.pos == f.len {
            if !f.sock {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = self.sock.read(f.buf)?;
            self.nread += n;
            f.pos = 0;
            f.len = n;
            if n == 0 {
                return Ok(0);
            }
        }
        let n = buf.len().min(f.len - f.pos);
        buf[..n].copy_from_slice(&f.buf[f.pos..f.pos + n]);
        f.pos += n;
        Ok(self.handed(&buf[..n]))
    }
}

impl Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub use crate::hub::effects::CloseReason;
pub use crate::hub::rates::{millis, Bucket, Rates};

/// Frames larger than this mark a parser as not worth pooling (its read
/// buffer may have grown to hold them).
const POOL_FRAME_MAX: u64 = 4096;

/// Where the bytes handed to tungstenite stand in the frame sequence
/// (RFC 6455 5.2), so the loop knows when tungstenite holds nothing: no
/// partial frame, no fragmented message. Only headers are looked at.
#[derive(Default)]
pub struct Track {
    /// Header bytes seen of the frame being started (0: at a frame start or
    /// in a payload).
    hdr: [u8; 10],
    hlen: u8,
    /// Payload bytes of the current frame not yet seen.
    left: u64,
    /// The current frame's opcode and FIN bit.
    op: u8,
    fin: bool,
    /// A fragmented data message is open (its last frame not yet seen).
    frag: bool,
    /// A frame larger than [`POOL_FRAME_MAX`] went through.
    big: bool,
}

impl Track {
    pub fn feed(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            if self.left > 0 {
                let k = b
                    .len()
                    .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                self.left -= k as u64;
                b = &b[k..];
                if self.left == 0 {
                    self.frame_end();
                }
                continue;
            }
            self.hdr[self.hlen as usize] = b[0];
            self.hlen += 1;
            b = &b[1..];
            if self.hlen < 2 {
                continue;
            }
            let len7 = self.hdr[1] & 0x7f;
            let ext = match len7 {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let mask = if self.hdr[1] & 0x80 != 0 { 4 } else { 0 };
            if (self.hlen as usize) < 2 + ext {
                continue;
            }
            // The mask key is not kept: count it as payload still to come.
            let len = match ext {
                0 => u64::from(len7),
                2 => u64::from(u16::from_be_bytes([self.hdr[2], self.hdr[3]])),
                _ => {
                    let mut x = [0u8; 8];
                    x.copy_from_slice(&self.hdr[2..10]);
                    u64::from_be_bytes(x)
                }
            };
            self.op = self.hdr[0] & 0x0f;
            self.fin = self.hdr[0] & 0x80 != 0;
            self.hlen = 0;
            self.big |= len > POOL_FRAME_MAX;
            self.left = len.saturating_add(mask);
            if self.left == 0 {
                self.frame_end();
            }
        }
    }

    fn frame_end(&mut self) {
        // Control frames (opcode 8 and up) may come between fragments.
        if self.op < 8 {
            self.frag = !self.fin;
        }
    }

    /// Everything handed so far ends a whole message.
    pub fn at_boundary(&self) -> bool {
        self.hlen == 0 && self.left == 0 && !self.frag
    }
}

/// tungstenite's state for one connection, with the tracker of what it was
/// handed. Held by a connection only while a message is in flight; at a
/// message boundary it goes back to the worker's [`Parsers`] pool, since a
/// context that holds no partial frame and no partial message (and has
/// written out its pong) is as good as a new one.
pub struct Parser {
    pub ctx: WebSocketContext,
    pub track: Track,
}

/// The worker's spare parsers, at most [`Parsers::MAX`].
pub struct Parsers {
    // Boxed: a connection holds its parser boxed, so lending one moves a
    // pointer, not the context.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Parser>>,
    cfg: WebSocketConfig,
}

impl Parsers {
    pub const MAX: usize = 64;

    pub fn new(cfg: WebSocketConfig) -> Self {
        Parsers {
            spare: Vec::new(),
            cfg,
        }
    }

    pub fn take(&mut self) -> Box<Parser> {
        self.spare.pop().unwrap_or_else(|| {
            Box::new(Parser {
                ctx: WebSocketContext::new(Role::Server, Some(self.cfg)),
                track: Track::default(),
            })
        })
    }

    /// Takes back a parser at a message boundary (one that saw a large frame
    /// is dropped: its buffer may be large).
    pub fn put(&mut self, p: Box<Parser>) {
        if self.spare.len() < Self::MAX && !p.track.big {
            self.spare.push(p);
        }
    }

    pub fn spare(&self) -> usize {
        self.spare.len()
    }
}

/// A connection's WebSocket state.
pub struct Ws {
    /// Present while a message is being read, or the close handshake runs.
    pub parser: Option<Box<Parser>>,
    pub proto: Proto,
    pub session: SessionId,
    /// Its rate limits.
    pub rates: Rates,
    /// Bad requests in a row.
    pub bad: u32,
    /// `--echo-path` connection: messages are echoed, not interpreted.
    pub echo: bool,
    /// Input is not read while another worker decides whether its resume
    /// succeeds (see `relay`): what follows the `hello` waits in the socket.
    pub paused: bool,
    /// It is on its way to another worker (see `worker::moves`; what it
    /// takes along waits in `Worker::moving`, so an idle connection pays
    /// one flag for it).
    pub moving: bool,
}

impl Ws {
    /// An open WebSocket of session `session`, reading, with no parser lent.
    pub fn new(proto: Proto, session: SessionId, rates: Rates) -> Ws {
        Ws {
            parser: None,
            proto,
            session,
            rates,
            bad: 0,
            echo: false,
            paused: false,
            moving: false,
        }
    }
}

/// A connection the core asked to move to worker `to` with the request it
/// was reading: until the parser has handed out everything it holds, the
/// messages that follow are kept, not run.
pub struct Moving {
    pub conn: ConnId,
    pub to: u32,
    /// Times the connection moved to this worker from another.
    pub hops: u8,
    /// The request it moves with (`None` until the loop keeps it).
    pub req: Option<Vec<u8>>,
    /// Whole messages read after the request, in order.
    pub carry: Vec<Vec<u8>>,
}

pub enum Phase {
    /// Reading the HTTP request head. `moved`: another worker handed it
    /// here (see `worker::moves`); it is never handed on again.
    Http { head: Vec<u8>, moved: bool },
    /// An open WebSocket session.
    Ws(Ws),
    /// Output is flushed, then the socket is closed once the peer is done:
    /// its close frame has arrived (`peer_done`; RFC 6455 7.1.1: the server
    /// closes the TCP connection first), or EOF, or the linger timer. Until
    /// then the write side is shut and input is drained (a lingering close, so
    /// unread input does not turn the close into a reset that loses the last
    /// frames). `ws` is kept when the server sent the close, to read the
    /// peer's reply.
    Closing {
        ws: Option<Ws>,
        fin_sent: bool,
        peer_done: bool,
    },
}

/// A peer's address in 19 bytes (a `SocketAddr` takes 32).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    ip: [u8; 16],
    port: u16,
    v6: bool,
}

impl Peer {
    pub fn ip(&self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.ip))
        } else {
            let [a, b, c, d] = [self.ip[0], self.ip[1], self.ip[2], self.ip[3]];
            IpAddr::V4(Ipv4Addr::new(a, b, c, d))
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip(), self.port)
    }
}

impl From<SocketAddr> for Peer {
    fn from(a: SocketAddr) -> Peer {
        let mut ip = [0u8; 16];
        let v6 = match a.ip() {
            IpAddr::V4(v4) => {
                ip[..4].copy_from_slice(&v4.octets());
                false
            }
            IpAddr::V6(v6) => {
                ip = v6.octets();
                true
            }
        };
        Peer {
            ip,
            port: a.port(),
            v6,
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr().fmt(f)
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr().fmt(f)
    }
}

pub struct Conn {
    pub sock: TcpStream,
    pub peer: Peer,
    pub phase: Phase,
    pub out: OutBuf,
    /// On `Conns::pending`.
    pub pending: bool,
    /// Output passed the limit; on `Conns::overflow`.
    pub overflowed: bool,
    /// Bytes the kernel had taken and not sent when a write last blocked
    /// (0 once roomd's buffer was written out whole): counted against the
    /// limit with `out`, read again before a close is decided on it.
    pub kernel: u32,
    /// A read stopped at the per-turn cap and must continue next turn.
    pub read_more: bool,
    /// When a byte last came in (the worker's millisecond clock, see
    /// [`millis`]).
    pub last_rx: u32,
    pub timer: Option<TimerId>,
    /// Input read from the socket but not yet parsed, kept when a read stops
    /// at the per-turn cap, or what followed the upgrade head (`None`
    /// otherwise).
    pub stash: Option<Box<Vec<u8>>>,
    /// Its end was asked for this turn (on `Conns::ending`): nothing more is
    /// read from it or queued for it; the loop's end step closes it.
    pub end: Option<End>,
}

/// An end asked for a connection: close it (the close handshake, the
/// session let go), and also free it when `free` (its socket is dead or
/// done). The first reason asked stays; `free` only grows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct End {
    pub reason: CloseReason,
    pub free: bool,
}

impl Conn {
    pub fn new(sock: TcpStream, peer: SocketAddr, now_ms: u32) -> Self {
        Conn {
            sock,
            peer: Peer::from(peer),
            phase: Phase::Http {
                head: Vec::new(),
                moved: false,
            },
            out: OutBuf::default(),
            pending: false,
            overflowed: false,
            kernel: 0,
            read_more: false,
            last_rx: now_ms,
            timer: None,
            stash: None,
            end: None,
        }
    }

    /// Reads the kernel's unsent bytes into `kernel` and returns them.
    pub fn read_kernel(&mut self) -> usize {
        let n = kernel_unsent(&self.sock, Queue::TcpUnsent);
        self.kernel = u32::try_from(n).unwrap_or(u32::MAX);
        n
    }

    /// An open WebSocket whose end was not asked.
    pub fn is_open_ws(&self) -> bool {
        matches!(self.phase, Phase::Ws(_)) && self.end.is_none()
    }

    /// Whether input goes through the WebSocket parser (open, or closing by
    /// the server and waiting for the peer's close).
    pub fn reads_frames(&self) -> bool {
        matches!(
            self.phase,
            Phase::Ws(_) | Phase::Closing { ws: Some(_), .. }
        )
    }
}

/// Every connection, plus the per-turn work lists.
pub struct Conns {
    pub arena: Arena<Conn, Link>,
    /// Connections with output to flush this turn.
    pub pending: Vec<ConnId>,
    /// Connections whose output passed the limit; closed 4001 at a safe point.
    pub overflow: Vec<ConnId>,
    /// Connections whose reads hit the per-turn cap.
    pub read_more: Vec<ConnId>,
    /// Connections whose end was asked, for the loop's end step.
    pub ending: Vec<ConnId>,
    pub out_limit: usize,
}

impl Conns {
    pub fn new(out_limit: usize) -> Self {
        Conns {
            arena: Arena::default(),
            pending: Vec::new(),
            overflow: Vec::new(),
            read_more: Vec::new(),
            ending: Vec::new(),
            out_limit,
        }
    }

    /// Asks for a connection's end (see [`End`]); the loop's end step
    /// performs it. A closing connection takes only a `free`.
    pub fn ask_end(&mut self, id: ConnId, reason: CloseReason, free: bool) {
        let Some(c) = self.arena.get_mut(id) else {
            return;
        };
        match &mut c.end {
            Some(e) => e.free |= free,
            None if free || !matches!(c.phase, Phase::Closing { .. }) => {
                c.end = Some(End { reason, free });
                self.ending.push(id);
            }
            None => {}
        }
    }

    /// Queues `bytes` (whole frames) on an open connection. Returns false
    /// when nothing was queued (gone, closing, or overflowed just now).
    /// O(len of bytes); one ioctl when roomd's and the kernel's bytes as last
    /// seen would pass the limit (only for a connection whose writes block).
    pub fn push(&mut self, id: ConnId, bytes: &[u8]) -> bool {
        let Some(c) = self.arena.get_mut(id) else {
            return false;
        };
        if !c.is_open_ws() || c.overflowed {
            return false;
        }
        let held = c.out.len() + bytes.len();
        // The kernel may have sent some since it was last asked: ask again
        // before closing on it.
        if held + c.kernel as usize > self.out_limit && held + c.read_kernel() > self.out_limit {
            c.overflowed = true;
            self.overflow.push(id);
            return false;
        }
        c.out.extend(bytes);
        if !c.pending {
            c.pending = true;
            self.pending.push(id);
        }
        true
    }

    /// Queues raw bytes on any connection (HTTP responses, close frames),
    /// bypassing the limit and the open check.
    pub fn push_raw(&mut self, id: ConnId, bytes: &[u8]) {
        if let Some(c) = self.arena.get_mut(id) {
            c.out.extend(bytes);
            Self::mark_pending(&mut self.pending, c, id);
        }
    }

    /// Pauses or resumes reading a connection's messages. Input that
    /// arrived meanwhile is read next turn (edge-triggered: no new event
    /// would say it is there).
    pub fn set_paused(&mut self, id: ConnId, paused: bool) {
        let Some(c) = self.arena.get_mut(id) else {
            return;
        };
        let Phase::Ws(ws) = &mut c.phase else {
            return;
        };
        ws.paused = paused;
        if !paused && !c.read_more {
            c.read_more = true;
            self.read_more.push(id);
        }
    }

    pub fn mark_pending(pending: &mut Vec<ConnId>, c: &mut Conn, id: ConnId) {
        if !c.pending {
            c.pending = true;
            pending.push(id);
        }
    }

    /// Fans one message out: each target gets the frame for its
    /// subprotocol, the same bytes for all. Returns how many were queued.
    pub fn fanout(&mut self, targets: &[(ConnId, Proto)], msgpack: &[u8], json: &[u8]) -> u64 {
        let mut n = 0;
        for &(id, proto) in targets {
            let frame = match proto {
                Proto::Msgpack => msgpack,
                Proto::Json => json,
            };
            if self.push(id, frame) {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: FIN bit, opcode, masked payload of `len` bytes.
    fn frame(fin: bool, op: u8, len: usize) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | op];
        match len {
            0..=125 => f.push(0x80 | len as u8),
            126..=0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend(std::iter::repeat_n(b'x', len));
        f
    }

    /// Feeds `bytes` in pieces of `step` and returns where each piece ended.
    fn boundaries(bytes: &[u8], step: usize) -> Vec<bool> {
        let mut t = Track::default();
        bytes
            .chunks(step)
            .map(|c| {
                t.feed(c);
                t.at_boundary()
            })
            .collect()
    }

    #[test]
    fn track_sees_message_ends_however_the_bytes_are_cut() {
        for len in [0, 1, 125, 126, 300, 0xffff, 0x10000] {
            let f = frame(true, 1, len);
            for step in [1, 2, 3, 7, 64, f.len()] {
                let b = boundaries(&f, step);
                assert!(b.last().copied().unwrap_or(false), "len {len} step {step}");
                let mid = b.len() - 1;
                assert!(
                    b[..mid].iter().all(|x| !x),
                    "a partial frame is not a boundary (len {len} step {step})"
                );
            }
        }
    }

    #[test]
    fn track_waits_for_the_last_fragment_across_control_frames() {
        let mut t = Track::default();
        t.feed(&frame(false, 2, 10));
        assert!(!t.at_boundary(), "first fragment");
        t.feed(&frame(true, 9, 4));
        assert!(!t.at_boundary(), "a ping between fragments");
        t.feed(&frame(false, 0, 10));
        assert!(!t.at_boundary(), "a middle fragment");
        t.feed(&frame(true, 0, 0));
        assert!(t.at_boundary(), "the last fragment ends the message");
        t.feed(&frame(true, 9, 0));
        assert!(t.at_boundary(), "a ping alone is whole");
        assert!(!t.big);
        t.feed(&frame(true, 2, 5000));
        assert!(t.at_boundary() && t.big, "a large frame is noted");
    }

    #[test]
    fn parsers_are_reused_and_the_pool_is_bounded() {
        let mut pool = Parsers::new(WebSocketConfig::default());
        let taken: Vec<_> = (0..Parsers::MAX + 10).map(|_| pool.take()).collect();
        for p in taken {
            pool.put(p);
        }
        assert_eq!(pool.spare(), Parsers::MAX);
        let mut p = pool.take();
        assert_eq!(pool.spare(), Parsers::MAX - 1);
        p.track.feed(&frame(true, 2, 5000));
        pool.put(p);
        assert_eq!(
            pool.spare(),
            Parsers::MAX - 1,
            "one that read a large frame is dropped"
        );
    }

    #[test]
    fn peers_keep_their_address() {
        for a in [
            "127.0.0.1:7700",
            "[::1]:80",
            "[2001:db8::7]:65535",
            "0.0.0.0:0",
        ] {
            let a: SocketAddr = a.parse().expect("an address");
            let p = Peer::from(a);
            assert_eq!(p.addr(), a);
            assert_eq!(p.ip(), a.ip());
            assert_eq!(p.to_string(), a.to_string());
        }
    }

    #[test]
    fn release_frees_an_empty_buffer_and_keeps_unsent_bytes() {
        let mut out = OutBuf::default();
        out.extend(b"welcome");
        out.release();
        assert_eq!(out.unsent(), b"welcome", "unsent bytes are never dropped");
        out.consume(3);
        out.release();
        assert_eq!(out.unsent(), b"come");
        out.consume(4);
        out.release();
        assert_eq!(out.buf.capacity(), 0, "an empty buffer holds no memory");
        out.extend(b"next");
        assert_eq!(out.unsent(), b"next");
    }
}
