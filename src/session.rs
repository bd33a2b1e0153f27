//! Sessions: a member's identity and seats, apart from any connection. A
//! session outlives its connection for the grace period (its seats stay,
//! others see `away`), so rooms point at sessions, never at connections.
//!
//! Invariants: `seats` holds each room once and matches the rooms' member
//! lists; `conn` is `Some` exactly while a connection is attached, and
//! `grace` is `Some` exactly while it is not and seats are held.

use crate::arena::Id;
use crate::conn::ConnId;
use crate::protocol::Proto;
use crate::room::{RoomId, Why};
use crate::timer::TimerId;

pub type SessionId = Id<Session>;

/// A member id: unique on this server for its lifetime (PROTOCOL.md).
pub type MemberId = u64;

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
}
