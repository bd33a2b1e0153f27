//! Sessions: a member's identity and seats, apart from any connection. A
//! session outlives its connection for the grace period (its seats stay,
//! others see `away`), so rooms point at sessions, never at connections.
//!
//! Invariants: `seats` holds each room once and matches the rooms' member
//! lists; `conn` is `Some` exactly while a connection is attached, and
//! `grace` is `Some` exactly while it is not and seats are held. A shadow
//! session (see `cluster`) never has a `conn`; its `grace` is armed only after
//! its worker is lost.

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
    /// The resume token sent in `welcome` (hex, 128 random bits).
    pub token: Box<str>,
    pub meta: Option<Box<[u8]>>,
    /// The attached connection and its subprotocol.
    pub conn: Option<(ConnId, Proto)>,
    pub seats: Vec<RoomId>,
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
}

/// A session's ties to rooms homed on other workers.
#[derive(Default)]
pub struct RemoteSeats {
    /// (home worker, room name) of every seat held there.
    pub seats: Vec<(u32, Box<str>)>,
    /// Home workers of forwarded join/create/match requests not yet done;
    /// they count against the seat limit.
    pub inflight: Vec<u32>,
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
    /// Seats held here and on other workers.
    pub fn seat_count(&self) -> usize {
        self.seats.len() + self.remote.as_ref().map_or(0, |r| r.seats.len())
    }
}
