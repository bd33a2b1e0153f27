//! The messages workers send each other over the bus (`bus` is the
//! transport, `cluster` what they mean): one [`BusMsg`] variant per kind,
//! one encoder ([`BusMsg::encode`]) and one decoder ([`BusMsg::decode`]).
//!
//! A message on the wire is `len: u32 LE` (of what follows), `kind: u8`
//! (see [`kind`]), then the variant's fields in the order they are listed:
//! integers little-endian; `bool` as one byte (0 false, anything else
//! true); byte strings and strings as `u32 LE length + bytes` (strings are
//! UTF-8); `Option<x>` as one byte (0: none, anything else: `x` follows); a
//! subprotocol as one byte (0 MessagePack, 1 JSON); a list as its count
//! (`u32`, a `u8` for `FANOUT`'s groups) then its items.
//!
//! [`BusMsg::encode`] appends a whole message, length prefix included, so
//! that it can be written straight onto a link's output buffer (a fan-out's
//! frames are copied once, from the caller's buffer to the link's).
//! [`BusMsg::decode`] takes one message as `bus::split` cuts it off the
//! input: the kind byte and the fields, without the length prefix. It
//! borrows from the input and allocates nothing but a token grant's
//! strings; a list is checked whole when decoded and read again as it is
//! iterated ([`Seq`], [`Groups`]).
//!
//! A message that ends before its last field is [`BusError::Truncated`], a
//! kind this build does not know is [`BusError::UnknownKind`], and a field
//! whose value has no meaning (a subprotocol byte, a `why` or room state
//! index, a string that is not UTF-8) is [`BusError::Invalid`]. Bytes after
//! the last field are ignored, as they always were: the length prefix is
//! the transport's, and a later field appended to a kind does not break
//! an older reader.

use std::borrow::Cow;
use std::fmt;

use crate::auth::Grant;
use crate::protocol::Proto;
use crate::room::{RoomState, Shown, Why};

/// The kind byte of each message; what each carries is documented on the
/// [`BusMsg`] variant of the same name.
/// The worker a room (or queue) lives on: FNV-1a of its name, modulo the
/// number of workers. Stable across restarts and processes.
pub fn home(name: &str, workers: u32) -> u32 {
    if workers <= 1 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % u64::from(workers)) as u32
}

/// Largest bus message accepted (a fan-out of a 16 MiB frame to a large room
/// fits many times over).
pub const MAX_MSG: usize = 256 << 20;
/// A message split off the input: its kind and fields (what
/// [`BusMsg::decode`] takes), and the bytes it took.
pub type Split<'a> = (&'a [u8], usize);

/// One complete message at the start of `buf`. `Ok(None)` when it is not all
/// there yet; `Err(len)` when the length is impossible.
pub fn split(buf: &[u8]) -> Result<Option<Split<'_>>, usize> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len == 0 || len > MAX_MSG {
        return Err(len);
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    Ok(Some((&buf[4..4 + len], 4 + len)))
}

pub mod kind {
    pub const REQ: u8 = 1;
    pub const DELIVER: u8 = 2;
    pub const OUTCOME: u8 = 3;
    pub const SEAT: u8 = 4;
    pub const FANOUT: u8 = 5;
    pub const AWAY: u8 = 6;
    pub const REJOIN: u8 = 7;
    pub const RELEASE: u8 = 8;
    pub const LIST_REQ: u8 = 9;
    pub const LIST_RESP: u8 = 10;
    pub const API_REQ: u8 = 11;
    pub const API_RESP: u8 = 12;
    pub const METRICS_REQ: u8 = 13;
    pub const METRICS_RESP: u8 = 14;
    pub const REJOINED: u8 = 15;
    pub const RESUME: u8 = 16;
    pub const RESUMED: u8 = 17;
    pub const RREQ: u8 = 18;
    pub const DETACH: u8 = 19;
    pub const KICK: u8 = 20;
    pub const PLACES: u8 = 21;
    pub const LOBBY_UPD: u8 = 22;
    pub const LOBBY_INTEREST: u8 = 23;
    pub const HANDOFF: u8 = 24;
    pub const MOVE: u8 = 25;
    pub const MOVED: u8 = 26;
}

/// A room state on the wire is its index here.
const STATES: [RoomState; 5] = [
    RoomState::Created,
    RoomState::Waiting,
    RoomState::Playing,
    RoomState::Settling,
    RoomState::Closed,
];
/// A `why` on the wire is its index here.
const WHYS: [Why; 4] = [Why::Left, Why::Disconnect, Why::Timeout, Why::Kicked];

fn state_byte(s: RoomState) -> u8 {
    STATES.iter().position(|&x| x == s).unwrap_or(0) as u8
}

fn why_byte(w: Why) -> u8 {
    WHYS.iter().position(|&x| x == w).unwrap_or(1) as u8
}

fn proto_byte(p: Proto) -> u8 {
    match p {
        Proto::Msgpack => 0,
        Proto::Json => 1,
    }
}

/// One bus message. Session ids are `SessionId::to_bits` of the worker
/// that owns the session; which worker that is, is said per field.
#[derive(Debug, PartialEq)]
pub enum BusMsg<'a> {
    /// A client request for a room (or queue) homed on the receiver: the
    /// sender's session, its member id and subprotocol, its `meta` (sent
    /// with requests that take a seat), and the request as the client sent
    /// it.
    Req {
        sid: u64,
        member: u64,
        proto: Proto,
        meta: Option<&'a [u8]>,
        payload_proto: Proto,
        payload: &'a [u8],
    },
    /// One frame for one session of the receiver.
    Deliver { sid: u64, frame: &'a [u8] },
    /// A forwarded request of the receiver's session is done, and how it
    /// went (0 fine, 1 bad input, 2 another error).
    Outcome { sid: u64, code: u8 },
    /// A session of the receiver got or lost a seat in a room homed on the
    /// sender; `closed` is the room's `why` when it lost it because the
    /// room closed.
    Seat {
        sid: u64,
        on: bool,
        room: &'a str,
        closed: Option<&'a str>,
    },
    /// One frame per subprotocol, each for a list of the receiver's
    /// sessions.
    Fanout(Groups<'a>),
    /// A session of the sender: its connection is gone (grace period).
    Away { sid: u64 },
    /// A session of the sender resumed: its shadow is attached again
    /// (`back` where it was away), in subprotocol `proto`, with the
    /// client's `last` per room (`u64::MAX`: none given) and a replay
    /// budget in bytes; the answer (`Rejoined`) carries each room's
    /// `recovered` and the replayed frames. `epoch` tells answers to an
    /// earlier resume apart.
    Rejoin {
        sid: u64,
        epoch: u32,
        proto: Proto,
        budget: u32,
        last: Seq<'a, (&'a str, u64)>,
    },
    /// The answer to `Rejoin`: per room, whether it was recovered, and
    /// the replayed frames, back to back.
    Rejoined {
        sid: u64,
        epoch: u32,
        rooms: Seq<'a, (&'a str, bool)>,
        frames: &'a [u8],
    },
    /// A session of the sender is gone: release its seats with `why`.
    Release { sid: u64, why: Why },
    /// `list`: the receiver's public rooms, filtered (`state: None` is any
    /// state; a state byte out of range reads as `None`).
    ListReq {
        qid: u32,
        state: Option<RoomState>,
        has_space: bool,
        limit: u16,
    },
    /// The answer to `ListReq`.
    ListResp {
        qid: u32,
        rooms: Seq<'a, Listed<'a>>,
    },
    /// An HTTP room API call for a room homed on the receiver (or its part
    /// of `GET /rooms`).
    ApiReq {
        qid: u32,
        method: &'a str,
        path: &'a str,
        body: &'a [u8],
    },
    /// The answer to `ApiReq`: HTTP status and JSON body.
    ApiResp {
        qid: u32,
        status: u16,
        body: &'a [u8],
    },
    /// `/metrics/all`: the receiver's `/metrics` text.
    MetricsReq { qid: u32 },
    /// The answer to `MetricsReq`.
    MetricsResp {
        qid: u32,
        status: u16,
        text: &'a [u8],
    },
    /// Relayed sessions (see `relay`): a `hello` with a token of the
    /// receiver's, asked by the worker the new connection is on.
    Resume(ResumeAsk<'a>),
    /// The answer to `Resume`: the resumed session's id on the sender, 0
    /// when there is none.
    Resumed { bsid: u64, asid: u64 },
    /// A client request of relayed session `asid` (of the receiver), as the
    /// client sent it to stand-in `bsid` (of the sender).
    RReq {
        asid: u64,
        bsid: u64,
        proto: Proto,
        payload: &'a [u8],
    },
    /// A relayed session's connection ended, with its close reason
    /// (`conn::CloseReason::index`; checked by the receiver).
    Detach { asid: u64, bsid: u64, reason: u8 },
    /// Close the connection of stand-in `bsid` with a close reason
    /// (`conn::CloseReason::index`; checked by the receiver).
    Kick { bsid: u64, reason: u8 },
    /// The queues homed on the sender a session of the receiver waits in
    /// (all of them).
    Places { sid: u64, queues: Seq<'a, &'a str> },
    /// A batch of lobby updates of rooms homed on the sender (see `lobby`).
    LobbyUpd(Seq<'a, LobbyRoom<'a>>),
    /// Whether the sender has lobby subscribers (it wants `LobbyUpd`).
    LobbyInterest { on: bool },
    /// A client connection for the receiver, which homes the room its
    /// upgrade asks for (`?room=`): the socket travels with this message
    /// (`SCM_RIGHTS`, see `bus::Link`), and `head` is everything read from
    /// it so far (the HTTP request head, and whatever followed it).
    Handoff { head: &'a [u8] },
    /// An open client connection for the receiver, with its session and
    /// the request it moves with (see `hub::moves`): the socket travels
    /// with this message, as with `Handoff`.
    Move(Arrival<'a>),
    /// The session of a resume token the receiver issued (its index key)
    /// lives on worker `to` now (`u32::MAX`: it ended).
    Moved { key: u64, to: u32 },
}

/// A `Move`: the session (member id, token, subprotocol, `meta`, grant,
/// whether its `hello` came), the connection's rate buckets (tokens left,
/// as `f32` bits) and bad requests in a row, the request it moves with,
/// the whole messages read after it, the bytes read and not parsed yet,
/// and the bytes not yet written to it.
#[derive(Debug, PartialEq)]
pub struct Arrival<'a> {
    pub member: u64,
    pub token: &'a [u8],
    pub proto: Proto,
    pub meta: Option<&'a [u8]>,
    pub grant: Option<Cow<'a, Grant>>,
    pub hello_done: bool,
    /// Times the connection moved, this move included.
    pub hops: u8,
    pub rates: [u32; 3],
    pub bad: u32,
    pub req: &'a [u8],
    pub msgs: Seq<'a, &'a [u8]>,
    pub input: &'a [u8],
    pub output: &'a [u8],
}

/// What went wrong with a message from a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusError {
    /// It ends before its last field (`kind` 0: it is empty).
    Truncated { kind: u8 },
    /// A kind this build does not know.
    UnknownKind(u8),
    /// A field's value has no meaning (`what` names the field).
    Invalid { kind: u8, what: &'static str },
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::Truncated { kind } => write!(f, "truncated message of kind {kind}"),
            BusError::UnknownKind(k) => write!(f, "unknown kind {k}"),
            BusError::Invalid { kind, what } => write!(f, "message of kind {kind}: bad {what}"),
        }
    }
}

impl std::error::Error for BusError {}

/// A `Resume`: the stand-in session `bsid` of the asking worker, its
/// connection's subprotocol, the `hello`'s `rid`, token, `meta` and `last`,
/// and the grant of the connection's token. `origin`: the asking worker
/// when the sender only passes the question on (the session moved from
/// the worker that issued the token, see `hub::moves`); `u32::MAX`: the
/// sender asks.
#[derive(Debug, PartialEq)]
pub struct ResumeAsk<'a> {
    pub origin: u32,
    pub bsid: u64,
    pub proto: Proto,
    pub rid: Option<u32>,
    pub token: &'a str,
    pub meta: Option<&'a [u8]>,
    pub grant: Option<Cow<'a, Grant>>,
    pub last: Seq<'a, (&'a str, u64)>,
}

/// A room in a `ListResp`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Listed<'a> {
    pub name: &'a str,
    pub members: u32,
    pub max: u16,
    pub state: RoomState,
    pub watchers: u32,
}

/// One room's change in a `LobbyUpd`: what was announced of it before and
/// what is now (`None`: not shown, or gone).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LobbyRoom<'a> {
    pub name: &'a str,
    pub max: u16,
    pub was: Option<Shown>,
    pub now: Option<Shown>,
}

/// One group of a `Fanout`: a frame, and the sessions it is for.
pub type Group<'a> = (&'a [u8], Seq<'a, u64>);

/// The groups of a `Fanout`.
#[derive(Clone, Copy)]
pub enum Groups<'a> {
    /// To send: (frame, sessions) per subprotocol. Groups with no sessions
    /// are left out of the message.
    Out(&'a [(&'a [u8], &'a [u64])]),
    /// Decoded.
    In(Seq<'a, Group<'a>>),
}

impl<'a> Groups<'a> {
    /// The groups with sessions.
    #[inline]
    pub fn iter(&self) -> GroupsIter<'a> {
        match *self {
            Groups::Out(gs) => GroupsIter::Out(gs.iter()),
            Groups::In(s) => GroupsIter::In(s.iter()),
        }
    }
}

pub enum GroupsIter<'a> {
    Out(std::slice::Iter<'a, (&'a [u8], &'a [u64])>),
    In(SeqIter<'a, Group<'a>>),
}

impl<'a> Iterator for GroupsIter<'a> {
    type Item = Group<'a>;
    #[inline]
    fn next(&mut self) -> Option<Group<'a>> {
        match self {
            GroupsIter::Out(gs) => gs
                .find(|g| !g.1.is_empty())
                .map(|&(frame, ids)| (frame, Seq::Items(ids))),
            GroupsIter::In(s) => s.next(),
        }
    }
}

impl fmt::Debug for Groups<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Groups<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

/// A list in a message: items to encode, or a decoded list (checked whole
/// when decoded, read again as it is iterated).
pub enum Seq<'a, T> {
    Items(&'a [T]),
    In { n: u32, raw: &'a [u8] },
}

impl<T> Clone for Seq<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Seq<'_, T> {}

impl<'a, T: Item<'a>> Seq<'a, T> {
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            Seq::Items(x) => x.len(),
            Seq::In { n, .. } => *n as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn iter(&self) -> SeqIter<'a, T> {
        match *self {
            Seq::Items(x) => SeqIter::Items(x.iter()),
            Seq::In { n, raw } => SeqIter::In {
                left: n,
                r: Reader { b: raw, kind: 0 },
            },
        }
    }

    /// The items, after their count.
    fn put(&self, w: &mut Writer) {
        match self {
            Seq::Items(x) => x.iter().for_each(|i| i.put(w)),
            Seq::In { raw, .. } => {
                w.raw(raw);
            }
        }
    }

    /// `n` items, each checked (items of a fixed size only counted).
    #[inline]
    fn get(r: &mut Reader<'a>, n: u32) -> Result<Self, BusError> {
        if T::SIZE > 0 {
            let raw = r.take((n as usize).saturating_mul(T::SIZE))?;
            return Ok(Seq::In { n, raw });
        }
        let start = r.b;
        for _ in 0..n {
            T::get(r)?;
        }
        let used = start.len() - r.b.len();
        Ok(Seq::In {
            n,
            raw: &start[..used],
        })
    }
}

impl<'a, T: Item<'a> + fmt::Debug> fmt::Debug for Seq<'a, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a, T: Item<'a> + PartialEq> PartialEq for Seq<'a, T> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

pub enum SeqIter<'a, T> {
    Items(std::slice::Iter<'a, T>),
    In { left: u32, r: Reader<'a> },
}

impl<'a, T: Item<'a>> Iterator for SeqIter<'a, T> {
    type Item = T;
    #[inline]
    fn next(&mut self) -> Option<T> {
        match self {
            SeqIter::Items(x) => x.next().copied(),
            SeqIter::In { left, r } => {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                // Checked when decoded: this does not fail.
                T::get(r).ok()
            }
        }
    }
}

/// An item of a list ([`Seq`]).
pub trait Item<'a>: Copy {
    /// Bytes each item takes on the wire when that is fixed, else 0.
    const SIZE: usize = 0;
    fn put(&self, w: &mut Writer);
    fn get(r: &mut Reader<'a>) -> Result<Self, BusError>;
}

impl<'a> Item<'a> for u64 {
    const SIZE: usize = 8;
    #[inline]
    fn put(&self, w: &mut Writer) {
        w.u64(*self);
    }
    #[inline]
    fn get(r: &mut Reader<'a>) -> Result<Self, BusError> {
        r.u64()
    }
}

impl<'a> Item<'a> for &'a [u8] {
    fn put(&self, w: &mut Writer) {
        w.bytes(self);
    }
    fn get(r: &mut Reader<'a>) -> Result<Self, BusError> {
        r.bytes()
    }
}

impl<'a> Item<'a> for &'a str {
    fn put(&self, w: &mut Writer) {
        w.bytes(self.as_bytes());
    }
    fn get(r: &mut Reader<'a>) -> Result<Self, BusError> {
        r.str()
    }
}

impl<'a> Item<'a> for (&'a str, u64) {
    fn put(&self, w: &mut Writer) {
        w.bytes(self.0.as_bytes()).u64(self.1);
    }
    fn get(r: &mut Reader<'a>) -> Result<Self, BusError> {
        Ok((r.str()?, r.u64()?))
    }
}

impl<'a> Item<'a> for (&'a str, bool) {
    fn put(&self, w: &mut Writer) {
        w.bytes(self.0.as_bytes()).u8(self.1.into());
    }
    fn get(r: &mut Reader<'a>) -> Result<Self, BusError> {
        Ok((r.str()?, r.bool()?))
    }
}

impl<'a> Item<'a> for Group<'a> {
    fn put(&self, w: &mut Writer) {
        w.bytes(self.0).u32(self.1.len() as u32);
        self.1.put(w);
    }
    #[inline]
    fn get(r: &mut Reader<'a>) -> Result<Self, BusError> {
        let frame = r.bytes()?;
        let n = r.u32()?;
        Ok((frame, Seq::get(r, n)?))
    }
}

impl<'a> Item<'a> for Listed<'a> {
    fn put(&self, w: &mut Writer) {
        w.bytes(self.name.as_bytes())
            .u32(self.members)
            .u16(self.max)
            .u8(state_byte(self.state))
            .u32(self.watchers);
    }
    fn get(r: &mut Reader<'a>) -> Result<Self, BusError> {
        Ok(Listed {
            name: r.str()?,
            members: r.u32()?,
            max: r.u16()?,
            state: r.state()?,
            watchers: r.u32()?,
        })
    }
}

impl<'a> Item<'a> for LobbyRoom<'a> {
    fn put(&self, w: &mut Writer) {
        w.bytes(self.name.as_bytes()).u16(self.max);
        put_shown(w, self.was.as_ref());
        put_shown(w, self.now.as_ref());
    }
    fn get(r: &mut Reader<'a>) -> Result<Self, BusError> {
        Ok(LobbyRoom {
            name: r.str()?,
            max: r.u16()?,
            was: get_shown(r)?,
            now: get_shown(r)?,
        })
    }
}

fn put_shown(w: &mut Writer, s: Option<&Shown>) {
    match s {
        Some(s) => w
            .u8(1)
            .u32(s.members)
            .u8(state_byte(s.state))
            .u32(s.watchers),
        None => w.u8(0),
    };
}

fn get_shown(r: &mut Reader) -> Result<Option<Shown>, BusError> {
    if !r.bool()? {
        return Ok(None);
    }
    Ok(Some(Shown {
        members: r.u32()?,
        state: r.state()?,
        watchers: r.u32()?,
    }))
}

fn put_grant(w: &mut Writer, g: Option<&Grant>) {
    let Some(g) = g else {
        w.u8(0);
        return;
    };
    w.u8(1);
    match &g.sub {
        Some(sub) => w.u8(1).bytes(sub.as_bytes()),
        None => w.u8(0),
    };
    match &g.rooms {
        Some(rooms) => {
            w.u8(1).u32(rooms.len() as u32);
            for r in rooms {
                w.bytes(r.as_bytes());
            }
        }
        None => {
            w.u8(0);
        }
    }
}

fn get_grant(r: &mut Reader) -> Result<Option<Grant>, BusError> {
    if !r.bool()? {
        return Ok(None);
    }
    let sub = match r.bool()? {
        false => None,
        true => Some(r.str()?.to_owned()),
    };
    let rooms = match r.bool()? {
        false => None,
        true => {
            let n = r.u32()?;
            let mut v = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                v.push(r.str()?.to_owned());
            }
            Some(v)
        }
    };
    Ok(Some(Grant { sub, rooms }))
}

/// Appends one message to a buffer (see [`BusMsg::encode`]).
pub struct Writer<'a> {
    b: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Writer<'a> {
    fn new(b: &'a mut Vec<u8>, kind: u8) -> Self {
        let start = b.len();
        b.extend_from_slice(&[0, 0, 0, 0, kind]);
        Writer { b, start }
    }
    #[inline]
    fn u8(&mut self, x: u8) -> &mut Self {
        self.b.push(x);
        self
    }
    #[inline]
    fn u16(&mut self, x: u16) -> &mut Self {
        self.b.extend_from_slice(&x.to_le_bytes());
        self
    }
    #[inline]
    fn u32(&mut self, x: u32) -> &mut Self {
        self.b.extend_from_slice(&x.to_le_bytes());
        self
    }
    #[inline]
    fn u64(&mut self, x: u64) -> &mut Self {
        self.b.extend_from_slice(&x.to_le_bytes());
        self
    }
    #[inline]
    fn raw(&mut self, x: &[u8]) -> &mut Self {
        self.b.extend_from_slice(x);
        self
    }
    #[inline]
    fn bytes(&mut self, x: &[u8]) -> &mut Self {
        self.u32(x.len() as u32);
        self.raw(x)
    }
    fn proto(&mut self, p: Proto) -> &mut Self {
        self.u8(proto_byte(p))
    }
    fn opt_bytes(&mut self, x: Option<&[u8]>) -> &mut Self {
        match x {
            Some(x) => self.u8(1).bytes(x),
            None => self.u8(0),
        }
    }
    /// Writes the length prefix.
    fn finish(self) {
        let len = (self.b.len() - self.start - 4) as u32;
        self.b[self.start..self.start + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// Reads one message's fields (see [`BusMsg::decode`]): a read past the
/// end is `Truncated`, never a panic.
pub struct Reader<'a> {
    b: &'a [u8],
    kind: u8,
}

impl<'a> Reader<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], BusError> {
        if self.b.len() < n {
            return Err(BusError::Truncated { kind: self.kind });
        }
        let (x, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(x)
    }
    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], BusError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn invalid(&self, what: &'static str) -> BusError {
        BusError::Invalid {
            kind: self.kind,
            what,
        }
    }
    #[inline]
    fn u8(&mut self) -> Result<u8, BusError> {
        Ok(self.array::<1>()?[0])
    }
    #[inline]
    fn bool(&mut self) -> Result<bool, BusError> {
        Ok(self.u8()? != 0)
    }
    #[inline]
    fn u16(&mut self) -> Result<u16, BusError> {
        self.array().map(u16::from_le_bytes)
    }
    #[inline]
    fn u32(&mut self) -> Result<u32, BusError> {
        self.array().map(u32::from_le_bytes)
    }
    #[inline]
    fn u64(&mut self) -> Result<u64, BusError> {
        self.array().map(u64::from_le_bytes)
    }
    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], BusError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    #[inline]
    fn str(&mut self) -> Result<&'a str, BusError> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|_| self.invalid("UTF-8"))
    }
    fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, BusError> {
        Ok(match self.bool()? {
            false => None,
            true => Some(self.bytes()?),
        })
    }
    fn proto(&mut self) -> Result<Proto, BusError> {
        match self.u8()? {
            0 => Ok(Proto::Msgpack),
            1 => Ok(Proto::Json),
            _ => Err(self.invalid("subprotocol")),
        }
    }
    fn state(&mut self) -> Result<RoomState, BusError> {
        let b = self.u8()?;
        STATES
            .get(b as usize)
            .copied()
            .ok_or_else(|| self.invalid("room state"))
    }
    fn why(&mut self) -> Result<Why, BusError> {
        let b = self.u8()?;
        WHYS.get(b as usize)
            .copied()
            .ok_or_else(|| self.invalid("why"))
    }
    fn seq<T: Item<'a>>(&mut self) -> Result<Seq<'a, T>, BusError> {
        let n = self.u32()?;
        Seq::get(self, n)
    }
}

impl<'a> BusMsg<'a> {
    /// This message's kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            BusMsg::Req { .. } => kind::REQ,
            BusMsg::Deliver { .. } => kind::DELIVER,
            BusMsg::Outcome { .. } => kind::OUTCOME,
            BusMsg::Seat { .. } => kind::SEAT,
            BusMsg::Fanout(_) => kind::FANOUT,
            BusMsg::Away { .. } => kind::AWAY,
            BusMsg::Rejoin { .. } => kind::REJOIN,
            BusMsg::Rejoined { .. } => kind::REJOINED,
            BusMsg::Release { .. } => kind::RELEASE,
            BusMsg::ListReq { .. } => kind::LIST_REQ,
            BusMsg::ListResp { .. } => kind::LIST_RESP,
            BusMsg::ApiReq { .. } => kind::API_REQ,
            BusMsg::ApiResp { .. } => kind::API_RESP,
            BusMsg::MetricsReq { .. } => kind::METRICS_REQ,
            BusMsg::MetricsResp { .. } => kind::METRICS_RESP,
            BusMsg::Resume(_) => kind::RESUME,
            BusMsg::Resumed { .. } => kind::RESUMED,
            BusMsg::RReq { .. } => kind::RREQ,
            BusMsg::Detach { .. } => kind::DETACH,
            BusMsg::Kick { .. } => kind::KICK,
            BusMsg::Places { .. } => kind::PLACES,
            BusMsg::LobbyUpd(_) => kind::LOBBY_UPD,
            BusMsg::LobbyInterest { .. } => kind::LOBBY_INTEREST,
            BusMsg::Handoff { .. } => kind::HANDOFF,
            BusMsg::Move(_) => kind::MOVE,
            BusMsg::Moved { .. } => kind::MOVED,
        }
    }

    /// Appends the whole message, length prefix included, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out, self.kind());
        match self {
            BusMsg::Req {
                sid,
                member,
                proto,
                meta,
                payload_proto,
                payload,
            } => {
                w.u64(*sid)
                    .u64(*member)
                    .proto(*proto)
                    .opt_bytes(*meta)
                    .proto(*payload_proto)
                    .bytes(payload);
            }
            BusMsg::Deliver { sid, frame } => {
                w.u64(*sid).bytes(frame);
            }
            BusMsg::Outcome { sid, code } => {
                w.u64(*sid).u8(*code);
            }
            BusMsg::Seat {
                sid,
                on,
                room,
                closed,
            } => {
                w.u64(*sid)
                    .u8((*on).into())
                    .bytes(room.as_bytes())
                    .opt_bytes(closed.map(str::as_bytes));
            }
            BusMsg::Fanout(Groups::Out(gs)) => {
                let mut gs = gs.iter().filter(|g| !g.1.is_empty());
                w.u8(gs.clone().count() as u8);
                for (frame, ids) in &mut gs {
                    w.bytes(frame).u32(ids.len() as u32);
                    for &id in *ids {
                        w.u64(id);
                    }
                }
            }
            BusMsg::Fanout(Groups::In(s)) => {
                w.u8(s.len() as u8);
                s.put(&mut w);
            }
            BusMsg::Away { sid } => {
                w.u64(*sid);
            }
            BusMsg::Rejoin {
                sid,
                epoch,
                proto,
                budget,
                last,
            } => {
                w.u64(*sid)
                    .u32(*epoch)
                    .proto(*proto)
                    .u32(*budget)
                    .u32(last.len() as u32);
                last.put(&mut w);
            }
            BusMsg::Rejoined {
                sid,
                epoch,
                rooms,
                frames,
            } => {
                w.u64(*sid).u32(*epoch).u32(rooms.len() as u32);
                rooms.put(&mut w);
                w.bytes(frames);
            }
            BusMsg::Release { sid, why } => {
                w.u64(*sid).u8(why_byte(*why));
            }
            BusMsg::ListReq {
                qid,
                state,
                has_space,
                limit,
            } => {
                w.u32(*qid)
                    .u8(state.map_or(u8::MAX, state_byte))
                    .u8((*has_space).into())
                    .u16(*limit);
            }
            BusMsg::ListResp { qid, rooms } => {
                w.u32(*qid).u32(rooms.len() as u32);
                rooms.put(&mut w);
            }
            BusMsg::ApiReq {
                qid,
                method,
                path,
                body,
            } => {
                w.u32(*qid)
                    .bytes(method.as_bytes())
                    .bytes(path.as_bytes())
                    .bytes(body);
            }
            BusMsg::ApiResp { qid, status, body } => {
                w.u32(*qid).u16(*status).bytes(body);
            }
            BusMsg::MetricsReq { qid } => {
                w.u32(*qid);
            }
            BusMsg::MetricsResp { qid, status, text } => {
                w.u32(*qid).u16(*status).bytes(text);
            }
            BusMsg::Resume(ResumeAsk {
                origin,
                bsid,
                proto,
                rid,
                token,
                meta,
                grant,
                last,
            }) => {
                w.u64(*bsid).proto(*proto);
                match rid {
                    Some(r) => w.u8(1).u32(*r),
                    None => w.u8(0),
                };
                w.bytes(token.as_bytes()).opt_bytes(*meta);
                put_grant(&mut w, grant.as_deref());
                w.u32(last.len() as u32);
                last.put(&mut w);
                w.u32(*origin);
            }
            BusMsg::Resumed { bsid, asid } => {
                w.u64(*bsid).u64(*asid);
            }
            BusMsg::RReq {
                asid,
                bsid,
                proto,
                payload,
            } => {
                w.u64(*asid).u64(*bsid).proto(*proto).bytes(payload);
            }
            BusMsg::Detach { asid, bsid, reason } => {
                w.u64(*asid).u64(*bsid).u8(*reason);
            }
            BusMsg::Kick { bsid, reason } => {
                w.u64(*bsid).u8(*reason);
            }
            BusMsg::Places { sid, queues } => {
                w.u64(*sid).u32(queues.len() as u32);
                queues.put(&mut w);
            }
            BusMsg::LobbyUpd(rooms) => {
                w.u32(rooms.len() as u32);
                rooms.put(&mut w);
            }
            BusMsg::LobbyInterest { on } => {
                w.u8((*on).into());
            }
            BusMsg::Handoff { head } => {
                w.bytes(head);
            }
            BusMsg::Move(a) => {
                w.u64(a.member)
                    .bytes(a.token)
                    .proto(a.proto)
                    .opt_bytes(a.meta);
                put_grant(&mut w, a.grant.as_deref());
                w.u8(a.hello_done.into()).u8(a.hops);
                for r in a.rates {
                    w.u32(r);
                }
                w.u32(a.bad).bytes(a.req).u32(a.msgs.len() as u32);
                a.msgs.put(&mut w);
                w.bytes(a.input).bytes(a.output);
            }
            BusMsg::Moved { key, to } => {
                w.u64(*key).u32(*to);
            }
        }
        w.finish();
    }

    /// One message: its kind byte, then its fields (the length prefix is
    /// the transport's, see `bus::split`). Bytes after the last field are
    /// ignored.
    pub fn decode(buf: &'a [u8]) -> Result<BusMsg<'a>, BusError> {
        let Some((&k, fields)) = buf.split_first() else {
            return Err(BusError::Truncated { kind: 0 });
        };
        let r = &mut Reader { b: fields, kind: k };
        Ok(match k {
            kind::REQ => BusMsg::Req {
                sid: r.u64()?,
                member: r.u64()?,
                proto: r.proto()?,
                meta: r.opt_bytes()?,
                payload_proto: r.proto()?,
                payload: r.bytes()?,
            },
            kind::DELIVER => BusMsg::Deliver {
                sid: r.u64()?,
                frame: r.bytes()?,
            },
            kind::OUTCOME => BusMsg::Outcome {
                sid: r.u64()?,
                code: r.u8()?,
            },
            kind::SEAT => BusMsg::Seat {
                sid: r.u64()?,
                on: r.bool()?,
                room: r.str()?,
                closed: match r.bool()? {
                    false => None,
                    true => Some(r.str()?),
                },
            },
            kind::FANOUT => {
                let n = r.u8()?;
                BusMsg::Fanout(Groups::In(Seq::get(r, n.into())?))
            }
            kind::AWAY => BusMsg::Away { sid: r.u64()? },
            kind::REJOIN => BusMsg::Rejoin {
                sid: r.u64()?,
                epoch: r.u32()?,
                proto: r.proto()?,
                budget: r.u32()?,
                last: r.seq()?,
            },
            kind::REJOINED => BusMsg::Rejoined {
                sid: r.u64()?,
                epoch: r.u32()?,
                rooms: r.seq()?,
                frames: r.bytes()?,
            },
            kind::RELEASE => BusMsg::Release {
                sid: r.u64()?,
                why: r.why()?,
            },
            kind::LIST_REQ => BusMsg::ListReq {
                qid: r.u32()?,
                state: STATES.get(r.u8()? as usize).copied(),
                has_space: r.bool()?,
                limit: r.u16()?,
            },
            kind::LIST_RESP => BusMsg::ListResp {
                qid: r.u32()?,
                rooms: r.seq()?,
            },
            kind::API_REQ => BusMsg::ApiReq {
                qid: r.u32()?,
                method: r.str()?,
                path: r.str()?,
                body: r.bytes()?,
            },
            kind::API_RESP => BusMsg::ApiResp {
                qid: r.u32()?,
                status: r.u16()?,
                body: r.bytes()?,
            },
            kind::METRICS_REQ => BusMsg::MetricsReq { qid: r.u32()? },
            kind::METRICS_RESP => BusMsg::MetricsResp {
                qid: r.u32()?,
                status: r.u16()?,
                text: r.bytes()?,
            },
            kind::RESUME => BusMsg::Resume(ResumeAsk {
                bsid: r.u64()?,
                proto: r.proto()?,
                rid: match r.bool()? {
                    false => None,
                    true => Some(r.u32()?),
                },
                token: r.str()?,
                meta: r.opt_bytes()?,
                grant: get_grant(r)?.map(Cow::Owned),
                last: r.seq()?,
                origin: r.u32()?,
            }),
            kind::RESUMED => BusMsg::Resumed {
                bsid: r.u64()?,
                asid: r.u64()?,
            },
            kind::RREQ => BusMsg::RReq {
                asid: r.u64()?,
                bsid: r.u64()?,
                proto: r.proto()?,
                payload: r.bytes()?,
            },
            kind::DETACH => BusMsg::Detach {
                asid: r.u64()?,
                bsid: r.u64()?,
                reason: r.u8()?,
            },
            kind::KICK => BusMsg::Kick {
                bsid: r.u64()?,
                reason: r.u8()?,
            },
            kind::PLACES => BusMsg::Places {
                sid: r.u64()?,
                queues: r.seq()?,
            },
            kind::LOBBY_UPD => BusMsg::LobbyUpd(r.seq()?),
            kind::LOBBY_INTEREST => BusMsg::LobbyInterest { on: r.bool()? },
            kind::HANDOFF => BusMsg::Handoff { head: r.bytes()? },
            kind::MOVE => BusMsg::Move(Arrival {
                member: r.u64()?,
                token: r.bytes()?,
                proto: r.proto()?,
                meta: r.opt_bytes()?,
                grant: get_grant(r)?.map(Cow::Owned),
                hello_done: r.bool()?,
                hops: r.u8()?,
                rates: [r.u32()?, r.u32()?, r.u32()?],
                bad: r.u32()?,
                req: r.bytes()?,
                msgs: r.seq()?,
                input: r.bytes()?,
                output: r.bytes()?,
            }),
            kind::MOVED => BusMsg::Moved {
                key: r.u64()?,
                to: r.u32()?,
            },
            k => return Err(BusError::UnknownKind(k)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS_A: [u64; 3] = [11, 12, 13];
    const IDS_B: [u64; 1] = [u64::MAX];
    const GROUPS: [(&[u8], &[u64]); 3] = [
        (b"\x81\xa1t\xa3msg", &IDS_A),
        (b"{\"t\":\"msg\"}", &[]),
        (b"{\"t\":\"msg\"}", &IDS_B),
    ];
    const LAST: [(&str, u64); 2] = [("a", 3), ("b", u64::MAX)];
    const SHOWN: Shown = Shown {
        members: 3,
        state: RoomState::Playing,
        watchers: 1,
    };

    /// One message of every kind, with lists, options and strings filled in
    /// (and, for some, left empty).
    fn samples() -> Vec<BusMsg<'static>> {
        vec![
            BusMsg::Req {
                sid: 1 << 40 | 7,
                member: 99,
                proto: Proto::Json,
                meta: Some(b"\x01\x02"),
                payload_proto: Proto::Msgpack,
                payload: b"\x82\xa1t\xa4join",
            },
            BusMsg::Req {
                sid: 7,
                member: 0,
                proto: Proto::Msgpack,
                meta: None,
                payload_proto: Proto::Json,
                payload: b"",
            },
            BusMsg::Deliver {
                sid: 3,
                frame: b"frame",
            },
            BusMsg::Outcome { sid: 3, code: 2 },
            BusMsg::Seat {
                sid: 4,
                on: false,
                room: "r\u{e9}",
                closed: Some("lost"),
            },
            BusMsg::Seat {
                sid: 4,
                on: true,
                room: "r",
                closed: None,
            },
            BusMsg::Fanout(Groups::Out(&GROUPS)),
            BusMsg::Away { sid: 5 },
            BusMsg::Rejoin {
                sid: 6,
                epoch: 2,
                proto: Proto::Json,
                budget: 1 << 20,
                last: Seq::Items(&LAST),
            },
            BusMsg::Rejoined {
                sid: 6,
                epoch: 2,
                rooms: Seq::Items(&[("a", true), ("b", false)]),
                frames: b"f1f2",
            },
            BusMsg::Release {
                sid: 8,
                why: Why::Kicked,
            },
            BusMsg::ListReq {
                qid: 9,
                state: Some(RoomState::Waiting),
                has_space: true,
                limit: 100,
            },
            BusMsg::ListReq {
                qid: 9,
                state: None,
                has_space: false,
                limit: 1000,
            },
            BusMsg::ListResp {
                qid: 9,
                rooms: Seq::Items(&[
                    Listed {
                        name: "x",
                        members: 2,
                        max: 8,
                        state: RoomState::Closed,
                        watchers: 0,
                    },
                    Listed {
                        name: "y",
                        members: 0,
                        max: 2,
                        state: RoomState::Created,
                        watchers: 5,
                    },
                ]),
            },
            BusMsg::ListResp {
                qid: 10,
                rooms: Seq::Items(&[]),
            },
            BusMsg::ApiReq {
                qid: 11,
                method: "POST",
                path: "/rooms/x/publish",
                body: b"{}",
            },
            BusMsg::ApiResp {
                qid: 11,
                status: 404,
                body: b"{\"error\":\"not_found\"}",
            },
            BusMsg::MetricsReq { qid: 12 },
            BusMsg::MetricsResp {
                qid: 12,
                status: 200,
                text: b"roomd_x 1\n",
            },
            BusMsg::Resume(ResumeAsk {
                origin: u32::MAX,
                bsid: 13,
                proto: Proto::Msgpack,
                rid: Some(4),
                token: "00112233445566778899aabbccddeeff",
                meta: Some(b"m"),
                grant: Some(Cow::Owned(Grant {
                    sub: Some("alice".into()),
                    rooms: Some(vec!["a".into(), "game-*".into()]),
                })),
                last: Seq::Items(&LAST),
            }),
            BusMsg::Resume(ResumeAsk {
                origin: u32::MAX,
                bsid: 13,
                proto: Proto::Json,
                rid: None,
                token: "",
                meta: None,
                grant: Some(Cow::Owned(Grant {
                    sub: None,
                    rooms: None,
                })),
                last: Seq::Items(&[]),
            }),
            BusMsg::Resume(ResumeAsk {
                origin: u32::MAX,
                bsid: 13,
                proto: Proto::Json,
                rid: None,
                token: "t",
                meta: None,
                grant: None,
                last: Seq::Items(&[]),
            }),
            BusMsg::Resumed { bsid: 13, asid: 0 },
            BusMsg::RReq {
                asid: 14,
                bsid: 15,
                proto: Proto::Json,
                payload: b"{\"t\":\"pub\"}",
            },
            BusMsg::Detach {
                asid: 14,
                bsid: 15,
                reason: 3,
            },
            BusMsg::Kick {
                bsid: 15,
                reason: 9,
            },
            BusMsg::Places {
                sid: 16,
                queues: Seq::Items(&["q1", "q2"]),
            },
            BusMsg::Places {
                sid: 16,
                queues: Seq::Items(&[]),
            },
            BusMsg::LobbyUpd(Seq::Items(&[
                LobbyRoom {
                    name: "new",
                    max: 4,
                    was: None,
                    now: Some(SHOWN),
                },
                LobbyRoom {
                    name: "gone",
                    max: 4,
                    was: Some(SHOWN),
                    now: None,
                },
            ])),
            BusMsg::LobbyInterest { on: true },
            BusMsg::Handoff {
                head: b"GET /?room=r HTTP/1.1\r\n\r\n",
            },
            BusMsg::Move(Arrival {
                member: 7 << 36 | 5,
                token: &[3; 16],
                proto: Proto::Json,
                meta: Some(b"{}"),
                grant: None,
                hello_done: true,
                hops: 1,
                rates: [1.5f32.to_bits(), 0, 7],
                bad: 1,
                req: br#"{"t":"join","room":"r"}"#,
                msgs: Seq::Items(&[b"{\"t\":\"pub\"}", b""]),
                input: &[0x81, 0x85],
                output: b"welcome",
            }),
            BusMsg::Moved { key: 9, to: 1 },
        ]
    }

    fn encoded(m: &BusMsg) -> Vec<u8> {
        let mut b = Vec::new();
        m.encode(&mut b);
        b
    }

    /// The layout every kind had when each site wrote its own (`Enc`
    /// calls in field order), built by hand.
    #[derive(Default)]
    struct Old(Vec<u8>);

    impl Old {
        fn u8(mut self, x: u8) -> Self {
            self.0.push(x);
            self
        }
        fn u16(mut self, x: u16) -> Self {
            self.0.extend_from_slice(&x.to_le_bytes());
            self
        }
        fn u32(mut self, x: u32) -> Self {
            self.0.extend_from_slice(&x.to_le_bytes());
            self
        }
        fn u64(mut self, x: u64) -> Self {
            self.0.extend_from_slice(&x.to_le_bytes());
            self
        }
        fn bytes(self, x: &[u8]) -> Self {
            let mut s = self.u32(x.len() as u32);
            s.0.extend_from_slice(x);
            s
        }
        fn msg(self, kind: u8) -> Vec<u8> {
            let mut b = ((self.0.len() + 1) as u32).to_le_bytes().to_vec();
            b.push(kind);
            b.extend_from_slice(&self.0);
            b
        }
    }

    #[test]
    fn every_kind_has_a_sample() {
        let mut kinds: Vec<u8> = samples().iter().map(BusMsg::kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds, (1..=26).collect::<Vec<u8>>());
    }

    #[test]
    fn every_variant_round_trips_byte_for_byte() {
        for m in samples() {
            let b = encoded(&m);
            let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
            assert_eq!(len, b.len() - 4, "{m:?}");
            assert_eq!(b[4], m.kind());
            let back = BusMsg::decode(&b[4..]);
            assert_eq!(back.as_ref(), Ok(&m));
            // What was decoded encodes to the same bytes.
            assert_eq!(back.map(|m| encoded(&m)), Ok(b.clone()), "{m:?}");
        }
    }

    #[test]
    fn the_wire_format_is_the_one_each_site_wrote() {
        let old = |m: &BusMsg| -> Vec<u8> {
            let o = Old::default();
            match m {
                BusMsg::Fanout(_) => o
                    .u8(2)
                    .bytes(GROUPS[0].0)
                    .u32(3)
                    .u64(11)
                    .u64(12)
                    .u64(13)
                    .bytes(GROUPS[2].0)
                    .u32(1)
                    .u64(u64::MAX)
                    .msg(kind::FANOUT),
                BusMsg::Seat {
                    closed: Some(_), ..
                } => o
                    .u64(4)
                    .u8(0)
                    .bytes("r\u{e9}".as_bytes())
                    .u8(1)
                    .bytes(b"lost")
                    .msg(kind::SEAT),
                BusMsg::Req { meta: Some(_), .. } => o
                    .u64(1 << 40 | 7)
                    .u64(99)
                    .u8(1)
                    .u8(1)
                    .bytes(b"\x01\x02")
                    .u8(0)
                    .bytes(b"\x82\xa1t\xa4join")
                    .msg(kind::REQ),
                BusMsg::Rejoin { .. } => o
                    .u64(6)
                    .u32(2)
                    .u8(1)
                    .u32(1 << 20)
                    .u32(2)
                    .bytes(b"a")
                    .u64(3)
                    .bytes(b"b")
                    .u64(u64::MAX)
                    .msg(kind::REJOIN),
                BusMsg::Rejoined { .. } => o
                    .u64(6)
                    .u32(2)
                    .u32(2)
                    .bytes(b"a")
                    .u8(1)
                    .bytes(b"b")
                    .u8(0)
                    .bytes(b"f1f2")
                    .msg(kind::REJOINED),
                BusMsg::Release { .. } => o.u64(8).u8(3).msg(kind::RELEASE),
                BusMsg::ListReq { state: None, .. } => {
                    o.u32(9).u8(255).u8(0).u16(1000).msg(kind::LIST_REQ)
                }
                BusMsg::ListReq { .. } => o.u32(9).u8(1).u8(1).u16(100).msg(kind::LIST_REQ),
                BusMsg::ListResp { qid: 9, .. } => o
                    .u32(9)
                    .u32(2)
                    .bytes(b"x")
                    .u32(2)
                    .u16(8)
                    .u8(4)
                    .u32(0)
                    .bytes(b"y")
                    .u32(0)
                    .u16(2)
                    .u8(0)
                    .u32(5)
                    .msg(kind::LIST_RESP),
                BusMsg::Resume(ResumeAsk { rid: Some(_), .. }) => o
                    .u64(13)
                    .u8(0)
                    .u8(1)
                    .u32(4)
                    .bytes(b"00112233445566778899aabbccddeeff")
                    .u8(1)
                    .bytes(b"m")
                    .u8(1)
                    .u8(1)
                    .bytes(b"alice")
                    .u8(1)
                    .u32(2)
                    .bytes(b"a")
                    .bytes(b"game-*")
                    .u32(2)
                    .bytes(b"a")
                    .u64(3)
                    .bytes(b"b")
                    .u64(u64::MAX)
                    .u32(u32::MAX)
                    .msg(kind::RESUME),
                BusMsg::Resume(ResumeAsk { grant: Some(_), .. }) => o
                    .u64(13)
                    .u8(1)
                    .u8(0)
                    .bytes(b"")
                    .u8(0)
                    .u8(1)
                    .u8(0)
                    .u8(0)
                    .u32(0)
                    .u32(u32::MAX)
                    .msg(kind::RESUME),
                BusMsg::Detach { .. } => o.u64(14).u64(15).u8(3).msg(kind::DETACH),
                BusMsg::Places { sid: 16, queues } if !queues.is_empty() => {
                    o.u64(16).u32(2).bytes(b"q1").bytes(b"q2").msg(kind::PLACES)
                }
                BusMsg::LobbyUpd(_) => o
                    .u32(2)
                    .bytes(b"new")
                    .u16(4)
                    .u8(0)
                    .u8(1)
                    .u32(3)
                    .u8(2)
                    .u32(1)
                    .bytes(b"gone")
                    .u16(4)
                    .u8(1)
                    .u32(3)
                    .u8(2)
                    .u32(1)
                    .u8(0)
                    .msg(kind::LOBBY_UPD),
                BusMsg::ApiReq { .. } => o
                    .u32(11)
                    .bytes(b"POST")
                    .bytes(b"/rooms/x/publish")
                    .bytes(b"{}")
                    .msg(kind::API_REQ),
                BusMsg::MetricsResp { .. } => o
                    .u32(12)
                    .u16(200)
                    .bytes(b"roomd_x 1\n")
                    .msg(kind::METRICS_RESP),
                _ => encoded(m),
            }
        };
        for m in samples() {
            assert_eq!(encoded(&m), old(&m), "{m:?}");
        }
    }

    #[test]
    fn a_fanout_leaves_out_empty_groups() {
        let b = encoded(&BusMsg::Fanout(Groups::Out(&GROUPS)));
        let Ok(BusMsg::Fanout(g)) = BusMsg::decode(&b[4..]) else {
            panic!("not a fanout");
        };
        let got: Vec<(&[u8], Vec<u64>)> =
            g.iter().map(|(f, ids)| (f, ids.iter().collect())).collect();
        assert_eq!(
            got,
            vec![(GROUPS[0].0, IDS_A.to_vec()), (GROUPS[2].0, IDS_B.to_vec())]
        );
    }

    #[test]
    fn every_proper_prefix_is_truncated() {
        for m in samples() {
            let b = encoded(&m);
            let body = &b[4..];
            assert_eq!(BusMsg::decode(&[]), Err(BusError::Truncated { kind: 0 }));
            for end in 1..body.len() {
                assert_eq!(
                    BusMsg::decode(&body[..end]),
                    Err(BusError::Truncated { kind: m.kind() }),
                    "{m:?} cut at {end}"
                );
            }
        }
    }

    #[test]
    fn an_unknown_kind_is_told_apart() {
        for k in [0, 27, 200, 255] {
            assert_eq!(BusMsg::decode(&[k]), Err(BusError::UnknownKind(k)));
            assert_eq!(BusMsg::decode(&[k, 1, 2, 3]), Err(BusError::UnknownKind(k)));
        }
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        for m in samples() {
            let mut b = encoded(&m);
            b.extend_from_slice(&[0xab, 0, 1]);
            assert_eq!(BusMsg::decode(&b[4..]).as_ref(), Ok(&m));
        }
    }

    #[test]
    fn meaningless_fields_are_invalid() {
        let invalid = |kind, what| Err(BusError::Invalid { kind, what });
        let req = Old::default().u64(1).u64(2).u8(2).msg(kind::REQ);
        assert_eq!(BusMsg::decode(&req[4..]), invalid(kind::REQ, "subprotocol"));
        let seat = Old::default()
            .u64(1)
            .u8(1)
            .bytes(b"\xff")
            .u8(0)
            .msg(kind::SEAT);
        assert_eq!(BusMsg::decode(&seat[4..]), invalid(kind::SEAT, "UTF-8"));
        let release = Old::default().u64(1).u8(4).msg(kind::RELEASE);
        assert_eq!(BusMsg::decode(&release[4..]), invalid(kind::RELEASE, "why"));
        let list = Old::default()
            .u32(1)
            .u32(1)
            .bytes(b"x")
            .u32(1)
            .u16(2)
            .u8(5)
            .u32(0)
            .msg(kind::LIST_RESP);
        assert_eq!(
            BusMsg::decode(&list[4..]),
            invalid(kind::LIST_RESP, "room state")
        );
        // An out-of-range filter state is no filter, as it always was.
        let ask = Old::default()
            .u32(1)
            .u8(77)
            .u8(0)
            .u16(5)
            .msg(kind::LIST_REQ);
        assert!(matches!(
            BusMsg::decode(&ask[4..]),
            Ok(BusMsg::ListReq { state: None, .. })
        ));
    }
}
