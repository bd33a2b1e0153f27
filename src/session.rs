//! Sessions: a member's identity and seats, apart from any connection. A
//! session outlives its connection for the grace period (its seats stay,
//! others see `away`), so rooms point at sessions, never at connections.
//!
//! Invariants: `seats` holds each room once and matches the rooms' member
//! lists; a session is attached while `conn` (a connection here) or `relay`
//! (a connection on another worker, see `relay`) is `Some`, never both, and
//! `grace` is `Some` exactly while it is not attached and seats are held. A
//! shadow session (see `cluster`) has neither; its `grace` is armed only
//! after its worker is lost. `resuming` is `Some` only while attached.

use crate::arena::Id;
use crate::conn::ConnId;
use crate::protocol::Proto;
use crate::room::{RoomId, Why};
use crate::timer::TimerId;

pub type SessionId = Id<Session>;

/// A member id: unique on this server for its lifetime (PROTOCOL.md). With
/// several workers the worker's incarnation is in the bits above
/// [`MEMBER_BITS`] (and the whole stays below 2^53, exact in JSON).
pub type MemberId = u64;

/// Bits of a member id counted by its worker.
pub const MEMBER_BITS: u32 = 36;

pub struct Session {
    pub member: MemberId,
    /// The resume token sent in `welcome` (128 random bits, sent as 32
    /// lowercase hex digits; see [`Session::token_hex`]). All zero for a
    /// session that has none (a shadow), or whose token was forgotten.
    pub token: [u8; 16],
    pub meta: Option<Box<[u8]>>,
    /// The attached connection and its subprotocol.
    pub conn: Option<(ConnId, Proto)>,
    pub seats: Vec<RoomId>,
    /// Rooms homed here it watches (no seat; see `audience`).
    pub watching: Vec<RoomId>,
    pub hello_done: bool,
    /// What the client's token allows (`None` without `--jwt-key`).
    pub grant: Option<Box<crate::auth::Grant>>,
    /// The grace timer while detached, and why it was detached.
    pub grace: Option<(TimerId, Why)>,
    /// Seats in rooms homed on other workers (`None` until the first).
    pub remote: Option<Box<RemoteSeats>>,
    /// Set when this session stands, on a room's home worker, for a client
    /// session on another worker.
    pub shadow: Option<Box<Shadow>>,
    /// On the session's own worker: its client resumed it on a connection
    /// of another worker, which relays (see `relay`).
    pub relay: Option<Relay>,
    /// On a connection's worker: this session only stands in for a session
    /// of another worker; the connection's requests go there.
    pub proxy: Option<Box<Proxy>>,
    /// A resume waiting for the homes of its rooms on other workers.
    pub resuming: Option<Box<Resuming>>,
    /// Rooms that closed while the session was away, with the `why`: the
    /// resume reports them (`{"closed": why}`). At most one per seat it had.
    pub closed: Vec<(Box<str>, Box<str>)>,
    /// Its lobby subscription (see `lobby`).
    pub lobby: Option<Box<crate::lobby::Sub>>,
}

/// The connection of a session on another worker: its worker, the id of
/// the session standing in for it there, and its subprotocol.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Relay {
    pub worker: u32,
    pub rsid: u64,
    pub proto: Proto,
}

/// What a stand-in session stands in for (see `relay`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Proxy {
    pub worker: u32,
    /// The session's id there; `None` while the resume is being asked.
    pub sid: Option<u64>,
    /// The `rid` of the `hello` being asked about.
    pub rid: Option<u32>,
}

/// A resume in progress (see `resume`): the `resumed` answer is sent once
/// every home of a room elsewhere has sent its part, and everything for the
/// session until then is held, so the answer comes first.
pub struct Resuming {
    /// Tells this resume's answers from an earlier one's.
    pub epoch: u32,
    pub rid: Option<u32>,
    /// Homes that have not answered. Their frames for this session are
    /// dropped until they do: their answer replays from the client's `last`.
    pub waiting: Vec<u32>,
    /// Every room of the answer so far, and what became of it.
    pub rooms: Vec<(Box<str>, Part)>,
    /// Replays, then live frames, in the session's subprotocol.
    pub held: Vec<u8>,
    /// `held` would have passed `--out-buffer`: the client is closed 4001
    /// once the answer is complete.
    pub overflow: bool,
}

/// One room's part of a `resumed` answer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Part {
    /// Re-attached; whether its missed messages were replayed.
    Recovered(bool),
    /// It closed while the session was away (`why`); not re-attached.
    Closed(Box<str>),
}

/// A session's ties to rooms homed on other workers.
#[derive(Default)]
pub struct RemoteSeats {
    /// (home worker, room name) of every seat held there.
    pub seats: Vec<(u32, Box<str>)>,
    /// (home worker, queue) of every place held in a queue homed there, as
    /// each home last told (`PLACES`); they count against the seat limit.
    pub places: Vec<(u32, Box<str>)>,
    /// Every request forwarded to a home and not yet done (`OUTCOME`),
    /// oldest first: answered `internal` if the home is lost first. Those
    /// that may bring a seat (join, create, match) count against the limit.
    pub asked: Vec<Asked>,
}

/// A request forwarded to a room's (or queue's) home.
#[derive(Clone, Copy, Debug)]
pub struct Asked {
    pub home: u32,
    pub rid: Option<u32>,
    /// It may bring a seat or a queue place.
    pub seating: bool,
}

impl RemoteSeats {
    /// Homes of forwarded requests that may bring a seat.
    pub fn seating_homes(&self) -> impl Iterator<Item = u32> + '_ {
        self.asked.iter().filter(|a| a.seating).map(|a| a.home)
    }
}

/// The session on another worker a shadow session stands for.
pub struct Shadow {
    pub worker: u32,
    /// Its session id there ([`crate::arena::Id::to_bits`]).
    pub rsid: u64,
    pub proto: Proto,
    /// Its connection is up (not in the grace period).
    pub attached: bool,
}

impl Session {
    /// A session as its connection's `welcome` starts it.
    pub fn fresh(member: MemberId, token: [u8; 16], conn: Option<(ConnId, Proto)>) -> Session {
        Session {
            member,
            token,
            meta: None,
            conn,
            seats: Vec::new(),
            watching: Vec::new(),
            hello_done: false,
            grant: None,
            grace: None,
            remote: None,
            shadow: None,
            relay: None,
            proxy: None,
            resuming: None,
            closed: Vec::new(),
            lobby: None,
        }
    }

    /// The token as the client sees it.
    pub fn token_hex(&self) -> String {
        format!("{:032x}", u128::from_be_bytes(self.token))
    }

    /// The subprotocol its output is encoded in, wherever it goes.
    pub fn proto(&self) -> Option<Proto> {
        if let Some((_, p)) = self.conn {
            return Some(p);
        }
        if let Some(r) = self.relay {
            return Some(r.proto);
        }
        self.shadow.as_deref().map(|sh| sh.proto)
    }

    /// A client is connected to it, here or on another worker.
    pub fn attached(&self) -> bool {
        self.conn.is_some() || self.relay.is_some()
    }

    /// Its client is connected: here, relayed, or (a shadow) on its own
    /// worker.
    pub fn live(&self) -> bool {
        self.attached() || self.shadow.as_deref().is_some_and(|sh| sh.attached)
    }

    /// Seats held here and on other workers.
    pub fn seat_count(&self) -> usize {
        self.seats.len() + self.remote.as_ref().map_or(0, |r| r.seats.len())
    }

    /// Seats, places in queues and joins on their way, on other workers
    /// (each counts against `--max-rooms-per-conn`).
    pub fn remote_held(&self) -> usize {
        self.remote.as_ref().map_or(0, |r| {
            r.seats.len() + r.seating_homes().count() + r.places.len()
        })
    }
}
