//! What the core asks of the loop: its effects. Every input the core takes
//! (a request, a connection gone, a bus message, an API call, the time)
//! leaves its effects here, in order, and the loop performs them before the
//! next input (`worker::Worker::perform`): frames for connections (a
//! fan-out encoded once, as one [`Effect::Fan`] with its recipients), bus
//! messages for other workers, closes, pauses. The core never touches a
//! socket, and never closes a connection itself.
//!
//! Frames live in one byte buffer ([`Out::bytes`]) that effects point into
//! by [`Span`]; it and the other lists are reused from input to input, so
//! after warm-up an input allocates nothing here. Bus messages are encoded
//! straight into one buffer per peer, taken by the loop onto the link.

use crate::protocol::Proto;

use super::bus_msg::{BusMsg, Groups};
use super::session::SessionId;
use super::ConnId;

/// Why a connection ended (metrics label, log line, and what its seats do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Client sent close 1000: seats released at once.
    ClientNormal,
    /// Client sent another close code: seats kept for the grace period.
    ClientOther,
    /// TCP dropped or errored without a close handshake.
    Dropped,
    /// No frame for `hb_ms * hb_misses` (4000).
    Timeout,
    /// Output past `--out-buffer` (4001).
    SlowConsumer,
    /// Too many bad requests in a row (4002).
    BadRequests,
    /// Message over `--max-message` (1009).
    TooBig,
    /// Protocol violation (1002).
    Protocol,
    /// Invalid UTF-8 in a text frame (1007).
    BadUtf8,
    /// Server shutting down (1001).
    Shutdown,
    /// Internal failure (1011).
    Internal,
    /// A plain HTTP request was answered.
    Http,
    /// The HTTP head did not complete in time.
    HandshakeTimeout,
    /// Its session was resumed on another connection (4003); the seats
    /// went with the session.
    Replaced,
    /// It was resumed from another worker, and that worker, which held the
    /// session, is gone (1011).
    SessionLost,
    /// It was handed to the worker that homes its room (its socket lives
    /// on there; nothing is sent).
    Moved,
}

impl CloseReason {
    pub const ALL: [CloseReason; 16] = [
        CloseReason::ClientNormal,
        CloseReason::ClientOther,
        CloseReason::Dropped,
        CloseReason::Timeout,
        CloseReason::SlowConsumer,
        CloseReason::BadRequests,
        CloseReason::TooBig,
        CloseReason::Protocol,
        CloseReason::BadUtf8,
        CloseReason::Shutdown,
        CloseReason::Internal,
        CloseReason::Http,
        CloseReason::HandshakeTimeout,
        CloseReason::Replaced,
        CloseReason::SessionLost,
        CloseReason::Moved,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CloseReason::ClientNormal => "client_normal",
            CloseReason::ClientOther => "client_other",
            CloseReason::Dropped => "dropped",
            CloseReason::Timeout => "heartbeat_timeout",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::BadRequests => "bad_requests",
            CloseReason::TooBig => "too_big",
            CloseReason::Protocol => "protocol_error",
            CloseReason::BadUtf8 => "bad_utf8",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Internal => "internal",
            CloseReason::Http => "http",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::Replaced => "replaced",
            CloseReason::SessionLost => "session_lost",
            CloseReason::Moved => "moved",
        }
    }

    /// The close code the server sends, when it is the one closing.
    pub fn code(self) -> Option<u16> {
        match self {
            CloseReason::Timeout => Some(4000),
            CloseReason::SlowConsumer => Some(4001),
            CloseReason::BadRequests => Some(4002),
            CloseReason::TooBig => Some(1009),
            CloseReason::Protocol => Some(1002),
            CloseReason::BadUtf8 => Some(1007),
            CloseReason::Shutdown => Some(1001),
            CloseReason::Internal => Some(1011),
            CloseReason::Replaced => Some(4003),
            CloseReason::SessionLost => Some(1011),
            _ => None,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: u8) -> Option<CloseReason> {
        Self::ALL.get(i as usize).copied()
    }
}

/// Bytes in [`Out::bytes`]: offset and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub at: u32,
    pub len: u32,
}

/// One thing for the loop to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Whole WebSocket frames for an open connection (dropped if it is
    /// closing, or past `--out-buffer`, which closes it 4001). `count`: it
    /// is a delivery of a room message (`roomd_deliveries_total`).
    Send {
        conn: ConnId,
        bytes: Span,
        count: bool,
    },
    /// An HTTP answer's bytes, whatever the connection's phase; a close
    /// follows.
    Raw { conn: ConnId, bytes: Span },
    /// One message to many: each of `Out::targets[from..to]` gets the frame
    /// of its subprotocol (the same bytes for all of them).
    Fan {
        msgpack: Span,
        json: Span,
        from: u32,
        to: u32,
        count: bool,
    },
    /// Close the connection (its session is told once it is closed, by
    /// [`super::Hub::detach`]).
    Close(ConnId, CloseReason),
    /// Stop (true) or go on (false) reading the connection's messages.
    Pause(ConnId, bool),
    /// A request of the connection's client was bad input (true: one more
    /// in a row, closed 4002 at `--max-bad-requests`) or not (the count
    /// starts again).
    Outcome(ConnId, bool),
    /// The connection now carries this session (it resumed it).
    Bind(ConnId, SessionId),
    /// Move the connection, with its session and the request it is
    /// reading, to worker `to` (see `hub::moves`); if it cannot go, the
    /// request is handed back ([`super::Hub::on_request_checked`]).
    Move(ConnId, u32),
}

/// Bus output: one buffer of encoded messages per peer.
pub struct BusOut {
    /// This worker's index and the number of workers.
    pub me: u32,
    pub n: u32,
    /// Encoded messages per peer, for the loop to move onto the link.
    pub bufs: Vec<Vec<u8>>,
    /// Peers with bytes in `bufs`, each once.
    pub pending: Vec<u32>,
    /// Messages encoded since the loop last took them.
    pub msgs: u64,
    /// Peers whose link is up (bit p), as the loop said.
    pub up: u64,
}

impl BusOut {
    pub fn new(me: u32, n: u32) -> Self {
        BusOut {
            me,
            n,
            bufs: (0..n).map(|_| Vec::new()).collect(),
            pending: Vec::new(),
            msgs: 0,
            up: 0,
        }
    }

    pub fn up(&self, peer: u32) -> bool {
        peer < 64 && self.up & (1 << peer) != 0
    }

    /// Queues one message to `peer`. False when its link is down: the
    /// message is dropped.
    pub fn send(&mut self, peer: u32, m: &BusMsg) -> bool {
        if !self.up(peer) {
            return false;
        }
        let Some(buf) = self.bufs.get_mut(peer as usize) else {
            return false;
        };
        if buf.is_empty() && !self.pending.contains(&peer) {
            self.pending.push(peer);
        }
        m.encode(buf);
        self.msgs += 1;
        true
    }

    /// One frame per group, each for a list of sessions on `peer`. Empty
    /// groups are left out.
    pub fn fanout(&mut self, peer: u32, groups: &[(&[u8], &[u64])]) {
        self.send(peer, &BusMsg::Fanout(Groups::Out(groups)));
    }
}

/// The effects of the inputs since the loop last performed them.
#[derive(Default)]
pub struct Out {
    pub list: Vec<Effect>,
    pub bytes: Vec<u8>,
    pub targets: Vec<(ConnId, Proto)>,
    /// `--out-buffer`: what a resuming session may hold back.
    pub limit: usize,
}

impl Out {
    pub fn new(limit: usize) -> Self {
        Out {
            limit,
            ..Default::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Copies bytes in, for effects to point at.
    pub fn keep(&mut self, b: &[u8]) -> Span {
        let at = self.bytes.len() as u32;
        self.bytes.extend_from_slice(b);
        Span {
            at,
            len: b.len() as u32,
        }
    }

    /// Encodes a message as a whole frame for `proto`, for effects to
    /// point at (no allocation past the buffer's own growth).
    pub fn encode(&mut self, proto: Proto, v: &crate::protocol::V) -> Span {
        let r = crate::protocol::encode_frame_into(&mut self.bytes, proto, v);
        Span {
            at: r.start as u32,
            len: r.len() as u32,
        }
    }

    pub fn get(&self, s: Span) -> &[u8] {
        let at = s.at as usize;
        self.bytes.get(at..at + s.len as usize).unwrap_or_default()
    }

    /// Whole frames for an open connection.
    pub fn push(&mut self, conn: ConnId, b: &[u8]) -> bool {
        self.send(conn, b, false)
    }

    /// Whole frames for an open connection; `count`: a delivery.
    pub fn send(&mut self, conn: ConnId, b: &[u8], count: bool) -> bool {
        if b.is_empty() {
            return true;
        }
        let bytes = self.keep(b);
        self.list.push(Effect::Send { conn, bytes, count });
        true
    }

    /// Frames already kept, for one more connection.
    pub fn send_kept(&mut self, conn: ConnId, bytes: Span, count: bool) {
        self.list.push(Effect::Send { conn, bytes, count });
    }

    /// An HTTP answer, then the connection's close.
    pub fn respond(&mut self, conn: ConnId, status: u16, ctype: &str, body: &[u8]) {
        let bytes = self.keep(&crate::http::response(status, ctype, body));
        self.list.push(Effect::Raw { conn, bytes });
        self.close(conn, CloseReason::Http);
    }

    pub fn close(&mut self, conn: ConnId, why: CloseReason) {
        self.list.push(Effect::Close(conn, why));
    }

    pub fn pause(&mut self, conn: ConnId, paused: bool) {
        self.list.push(Effect::Pause(conn, paused));
    }

    pub fn outcome(&mut self, conn: ConnId, bad: bool) {
        self.list.push(Effect::Outcome(conn, bad));
    }

    pub fn bind(&mut self, conn: ConnId, sid: SessionId) {
        self.list.push(Effect::Bind(conn, sid));
    }

    pub fn moving(&mut self, conn: ConnId, to: u32) {
        self.list.push(Effect::Move(conn, to));
    }

    /// Forgets what was performed (keeping the memory, up to 1 MiB of
    /// frames: a burst's is given back).
    pub fn clear(&mut self) {
        self.list.clear();
        self.bytes.clear();
        self.targets.clear();
        if self.bytes.capacity() > 1 << 20 {
            self.bytes = Vec::new();
        }
    }
}
