//! Sessions: a member's identity and seats, apart from any connection. A
//! session outlives its connection for the grace period (its seats stay,
//! others see `away`), so rooms point at sessions, never at connections.
//!
//! Invariants: `seats` holds each room once and matches the rooms' member
//! lists. Where a session is, [`Attach`], is one of: on a client's
//! connection (here, or on another worker, which relays: see `relay`);
//! a shadow standing here for a session of another worker (see `cluster`);
//! away, in its grace period until a timer, seats or not; or, only within
//! a turn, detached with no grace period, on its way to be freed. A
//! shadow's grace timer is armed (its client is [`Far::Lost`]) only after
//! its worker is lost. `resuming` is `Some` only while attached; `proxy`
//! (a stand-in on a local connection) is apart from all this.

use crate::arena::Id;
use crate::hub::ConnId;
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
    /// Where it is: on a client's connection, a shadow, away.
    pub at: Attach,
    pub seats: Vec<RoomId>,
    /// Rooms homed here it watches (no seat; see `audience`).
    pub watching: Vec<RoomId>,
    pub hello_done: bool,
    /// What the client's token allows (`None` without `--jwt-key`).
    pub grant: Option<Box<crate::auth::Grant>>,
    /// Seats in rooms homed on other workers (`None` until the first).
    pub remote: Option<Box<RemoteSeats>>,
    /// On a connection's worker: this session only stands in for a session
    /// of another worker; the connection's requests go there.
    pub proxy: Option<Box<Proxy>>,
    /// A resume waiting for the homes of its rooms on other workers.
    pub resuming: Option<Box<Resuming>>,
    /// Rooms that closed while the session was away, with the `why`: the
    /// resume reports them (`{"closed": why}`). At most one per seat it had.
    pub closed: Vec<(Box<str>, Box<str>)>,
    /// Its lobby subscription (see `lobby`).
    pub lobby: Option<Box<super::lobby::Sub>>,
}

/// Where a session is (see the module's invariants).
#[derive(PartialEq, Eq, Debug)]
pub enum Attach {
    /// A client is connected to it.
    On(Client),
    /// It stands, on a room's home worker, for a client session on another
    /// worker.
    Shadow(Box<Shadow>),
    /// Its connection is gone and its grace period runs until `timer`;
    /// `why` it was detached.
    Away { timer: TimerId, why: Why },
    /// Neither connected nor in a grace period: just cut from its
    /// connection, or out of its grace period. Nothing keeps it: it is
    /// released and freed within the turn.
    Detached,
}

/// The connection a session is attached to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Client {
    /// A connection of this worker, and its subprotocol.
    Local(ConnId, Proto),
    /// A connection of another worker, which relays (see `relay`): on the
    /// session's own worker, its client resumed it there.
    Relayed(Relay),
}

impl Client {
    pub fn proto(self) -> Proto {
        match self {
            Client::Local(_, p) => p,
            Client::Relayed(r) => r.proto,
        }
    }
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
    /// Its number, for its deadline (`Hub::forwarded`).
    pub n: u32,
    /// Its deadline passed and the client was answered `internal`; the
    /// home's `OUTCOME` (if it ever comes) still takes it off the list.
    pub expired: bool,
}

impl RemoteSeats {
    /// Homes of forwarded requests that may bring a seat.
    pub fn seating_homes(&self) -> impl Iterator<Item = u32> + '_ {
        self.asked.iter().filter(|a| a.seating).map(|a| a.home)
    }
}

/// The session on another worker a shadow session stands for.
#[derive(PartialEq, Eq, Debug)]
pub struct Shadow {
    pub worker: u32,
    /// Its session id there ([`crate::arena::Id::to_bits`]).
    pub rsid: u64,
    pub proto: Proto,
    /// Where its client is.
    pub client: Far,
}

/// Where the client of the session a shadow stands for is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Far {
    /// Connected to its worker.
    Attached,
    /// Not connected; the grace period is its worker's to keep.
    Away,
    /// Its worker was lost: the grace period runs here, until `timer`.
    Lost { timer: TimerId, why: Why },
}

impl Session {
    /// A session as its connection's `welcome` starts it.
    pub fn fresh(member: MemberId, token: [u8; 16], at: Attach) -> Session {
        Session {
            member,
            token,
            meta: None,
            at,
            seats: Vec::new(),
            watching: Vec::new(),
            hello_done: false,
            grant: None,
            remote: None,
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

    /// The connection a client attached it to, if any.
    pub fn client(&self) -> Option<Client> {
        match self.at {
            Attach::On(c) => Some(c),
            _ => None,
        }
    }

    /// Its connection on this worker and that connection's subprotocol.
    pub fn conn(&self) -> Option<(ConnId, Proto)> {
        match self.at {
            Attach::On(Client::Local(c, p)) => Some((c, p)),
            _ => None,
        }
    }

    /// Its connection on another worker, which relays.
    pub fn relay(&self) -> Option<Relay> {
        match self.at {
            Attach::On(Client::Relayed(r)) => Some(r),
            _ => None,
        }
    }

    /// What it stands for, when it is a shadow.
    pub fn shadow(&self) -> Option<&Shadow> {
        match &self.at {
            Attach::Shadow(sh) => Some(sh),
            _ => None,
        }
    }

    pub fn shadow_mut(&mut self) -> Option<&mut Shadow> {
        match &mut self.at {
            Attach::Shadow(sh) => Some(sh),
            _ => None,
        }
    }

    /// Its grace timer, and why it was detached: away, or a shadow whose
    /// worker was lost.
    pub fn grace(&self) -> Option<(TimerId, Why)> {
        match &self.at {
            Attach::Away { timer, why } => Some((*timer, *why)),
            Attach::Shadow(sh) => match sh.client {
                Far::Lost { timer, why } => Some((timer, why)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Ends its grace period, if one runs: an away session is then
    /// detached, a shadow's client away. Returns the timer (the caller
    /// cancels it unless it is the one that fired) and why.
    pub fn take_grace(&mut self) -> Option<(TimerId, Why)> {
        let g = self.grace()?;
        match &mut self.at {
            Attach::Shadow(sh) => sh.client = Far::Away,
            at => *at = Attach::Detached,
        }
        Some(g)
    }

    /// Its client's connection is gone: detached, with no grace period yet
    /// (one not attached stays as it is).
    pub fn cut(&mut self) {
        if self.attached() {
            self.at = Attach::Detached;
        }
    }

    /// Starts its grace period, until `timer`: away, or for a shadow, its
    /// client lost with its worker. Returns a grace timer it replaces, for
    /// the caller to cancel.
    pub fn go_away(&mut self, timer: TimerId, why: Why) -> Option<TimerId> {
        let old = self.grace().map(|g| g.0);
        match &mut self.at {
            Attach::Shadow(sh) => sh.client = Far::Lost { timer, why },
            at => *at = Attach::Away { timer, why },
        }
        old
    }

    /// Attaches it to the connection of `client`, wherever it was. Returns
    /// the grace timer this ends, for the caller to cancel.
    pub fn attach(&mut self, client: Client) -> Option<TimerId> {
        let old = self.grace().map(|g| g.0);
        self.at = Attach::On(client);
        old
    }

    /// The subprotocol its output is encoded in, wherever it goes.
    pub fn proto(&self) -> Option<Proto> {
        match &self.at {
            Attach::On(c) => Some(c.proto()),
            Attach::Shadow(sh) => Some(sh.proto),
            Attach::Away { .. } | Attach::Detached => None,
        }
    }

    /// A client is connected to it, here or on another worker.
    pub fn attached(&self) -> bool {
        matches!(self.at, Attach::On(_))
    }

    /// Its client is connected: here, relayed, or (a shadow) on its own
    /// worker.
    pub fn live(&self) -> bool {
        match &self.at {
            Attach::On(_) => true,
            Attach::Shadow(sh) => sh.client == Far::Attached,
            Attach::Away { .. } | Attach::Detached => false,
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timer::Wheel;
    use std::time::{Duration, Instant};

    /// Two timer ids, as a worker's wheel hands them out.
    fn timers() -> (TimerId, TimerId) {
        let now = Instant::now();
        let mut w = Wheel::new(Duration::from_millis(10), 64, now);
        (w.arm(now, ()), w.arm(now, ()))
    }

    fn local() -> Client {
        Client::Local(ConnId::from_bits(7), Proto::Json)
    }

    #[test]
    fn size() {
        // member 8, token 16, meta 16, at 16 (the largest `Attach` is a
        // `Relay`: worker 4, rsid 8, proto 1; the variant tag sits in the
        // niche of its `Proto`), seats, watching and closed 24 each,
        // grant, remote, proxy, resuming and lobby 8 each (boxes), and
        // `hello_done` 1, padded to 8: 176. It was 208 with `conn`,
        // `relay`, `shadow` and `grace` side by side.
        assert_eq!(std::mem::size_of::<Attach>(), 16);
        assert_eq!(std::mem::size_of::<Session>(), 176);
    }

    #[test]
    fn away_and_back() {
        let (t1, t2) = timers();
        let mut s = Session::fresh(1, [1; 16], Attach::On(local()));
        assert!(s.attached() && s.live());
        assert_eq!(s.conn(), Some((ConnId::from_bits(7), Proto::Json)));
        assert_eq!((s.relay(), s.grace()), (None, None));
        // The connection ends: detached, then away until a timer.
        s.cut();
        assert_eq!(s.at, Attach::Detached);
        assert_eq!(s.go_away(t1, Why::Timeout), None);
        assert!(!s.attached() && !s.live());
        assert_eq!((s.grace(), s.proto()), (Some((t1, Why::Timeout)), None));
        // Cut again while away: the grace period stays.
        s.cut();
        assert_eq!(s.grace(), Some((t1, Why::Timeout)));
        // Resumed through another worker: the grace timer is the caller's
        // to cancel, once.
        let r = Relay {
            worker: 2,
            rsid: 9,
            proto: Proto::Msgpack,
        };
        assert_eq!(s.attach(Client::Relayed(r)), Some(t1));
        assert_eq!((s.relay(), s.conn(), s.grace()), (Some(r), None, None));
        assert_eq!(s.proto(), Some(Proto::Msgpack));
        // Moved to a connection here: no timer to cancel.
        assert_eq!(s.attach(local()), None);
        assert_eq!(s.client(), Some(local()));
        // Away again, then the timer fires: taken once, then detached.
        s.cut();
        assert_eq!(s.go_away(t2, Why::Disconnect), None);
        assert_eq!(s.take_grace(), Some((t2, Why::Disconnect)));
        assert_eq!(s.take_grace(), None);
        assert_eq!(s.at, Attach::Detached);
    }

    #[test]
    fn shadow_lost() {
        let (t1, _) = timers();
        let sh = Shadow {
            worker: 3,
            rsid: 5,
            proto: Proto::Json,
            client: Far::Attached,
        };
        let mut s = Session::fresh(1, [0; 16], Attach::Shadow(Box::new(sh)));
        assert!(!s.attached() && s.live());
        assert_eq!(
            (s.proto(), s.grace(), s.conn()),
            (Some(Proto::Json), None, None)
        );
        // A shadow has no connection to cut.
        s.cut();
        assert!(s.shadow().is_some_and(|sh| sh.client == Far::Attached));
        if let Some(sh) = s.shadow_mut() {
            sh.client = Far::Away;
        }
        assert!(!s.live());
        // Its worker is lost: the grace period runs here, and it stays a
        // shadow throughout.
        assert_eq!(s.go_away(t1, Why::Disconnect), None);
        assert_eq!(s.grace(), Some((t1, Why::Disconnect)));
        assert_eq!(s.take_grace(), Some((t1, Why::Disconnect)));
        assert!(s.shadow().is_some_and(|sh| sh.client == Far::Away));
        assert_eq!(s.grace(), None);
    }
}
