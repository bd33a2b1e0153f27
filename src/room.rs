//! Rooms: members (as sessions, wherever their connections are), the state
//! machine, props with their version, and the message sequence.
//!
//! Invariants: `members` is in join order with unique member ids; `seq` is
//! the number of the last `pub` (gapless from 1); `ver` counts every change of
//! props or state; `props_bytes` is the sum of key and value lengths; an
//! empty room has `idle` armed, a non-empty one does not.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::arena::Id;
use crate::history::History;
use crate::session::{MemberId, SessionId};
use crate::timer::TimerId;

pub type RoomId = Id<Room>;

/// PROTOCOL.md "Rooms": `created -> waiting -> playing -> settling ->
/// closed`, plus any state -> `closed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomState {
    Created,
    Waiting,
    Playing,
    Settling,
    Closed,
}

impl RoomState {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomState::Created => "created",
            RoomState::Waiting => "waiting",
            RoomState::Playing => "playing",
            RoomState::Settling => "settling",
            RoomState::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => RoomState::Created,
            "waiting" => RoomState::Waiting,
            "playing" => RoomState::Playing,
            "settling" => RoomState::Settling,
            "closed" => RoomState::Closed,
            _ => return None,
        })
    }

    /// Whether `self -> to` is one of the legal transitions.
    pub fn can_move(self, to: RoomState) -> bool {
        use RoomState::*;
        matches!(
            (self, to),
            (Created, Waiting) | (Waiting, Playing) | (Playing, Settling)
        ) || (to == Closed && self != Closed)
    }

    pub fn accepts_joins(self) -> bool {
        matches!(self, RoomState::Created | RoomState::Waiting)
    }
}

/// Why a member left (presence `why`) or was let go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    Left,
    Disconnect,
    Timeout,
    Kicked,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Left => "left",
            Why::Disconnect => "disconnect",
            Why::Timeout => "timeout",
            Why::Kicked => "kicked",
        }
    }
}

pub struct Member {
    pub id: MemberId,
    pub session: SessionId,
    pub meta: Option<Box<[u8]>>,
}

/// A watcher of a room (PROTOCOL.md "Watchers"): it gets what members get
/// but holds no seat and has no presence.
pub struct Watcher {
    pub id: MemberId,
    pub session: SessionId,
}

/// What only some rooms need, allocated on first use: the audience of
/// watchers, and the member ids a kick banned.
///
/// Invariants: `attached` counts the watchers whose session is attached
/// (here, relayed, or a shadow whose worker has its connection); `banned`
/// holds each id once, at most [`MAX_BANS`].
#[derive(Default)]
pub struct Extra {
    pub watchers: Vec<Watcher>,
    pub attached: u32,
    /// The count last sent in `watchers`.
    pub sent: u32,
    /// No `watchers` update goes out before this.
    pub quiet_until: Option<std::time::Instant>,
    /// Armed while an update waits for `quiet_until`.
    pub timer: Option<TimerId>,
    pub banned: Vec<MemberId>,
}

/// A public room's figures as the lobby last announced them (see `lobby`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown {
    pub members: u32,
    pub state: RoomState,
    pub watchers: u32,
}

/// Bans one room keeps (`too_large` past it).
pub const MAX_BANS: usize = 4096;

pub struct Room {
    pub name: Box<str>,
    pub max: u16,
    pub private: bool,
    pub autostart: bool,
    pub idle_after: Duration,
    pub state: RoomState,
    pub owner: MemberId,
    pub props: BTreeMap<Box<str>, Box<[u8]>>,
    pub props_bytes: usize,
    pub ver: u64,
    pub seq: u64,
    pub members: Vec<Member>,
    pub idle: Option<TimerId>,
    /// The last `--history` messages, from the room's first message on.
    pub history: Option<Box<History>>,
    /// Watchers and bans (`None` until the first).
    pub extra: Option<Box<Extra>>,
    /// It changed since the lobby last looked (see `lobby`).
    pub lobby_dirty: bool,
}

impl Room {
    pub fn member(&self, id: MemberId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    pub fn is_full(&self) -> bool {
        self.members.len() >= self.max as usize
    }

    /// Everyone a room message reaches, as (id, session): the members in
    /// join order, then the watchers.
    pub fn audience(&self) -> impl Iterator<Item = (MemberId, SessionId)> + '_ {
        let watchers = self.extra.as_ref().map_or(&[][..], |x| &x.watchers[..]);
        self.members
            .iter()
            .map(|m| (m.id, m.session))
            .chain(watchers.iter().map(|w| (w.id, w.session)))
    }

    /// Watchers whose connection is up (the count members see).
    pub fn watchers(&self) -> u32 {
        self.extra.as_ref().map_or(0, |x| x.attached)
    }

    /// Its figures as the lobby shows them.
    pub fn shown(&self) -> Shown {
        Shown {
            members: self.members.len() as u32,
            state: self.state,
            watchers: self.watchers(),
        }
    }

    pub fn is_banned(&self, id: MemberId) -> bool {
        self.extra.as_ref().is_some_and(|x| x.banned.contains(&id))
    }

    pub fn watcher(&self, sid: SessionId) -> Option<&Watcher> {
        self.extra
            .as_ref()?
            .watchers
            .iter()
            .find(|w| w.session == sid)
    }
}

/// PROTOCOL.md: "Room name: 1 to 64 bytes of `[A-Za-z0-9._:-]`".
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        use RoomState::*;
        let all = [Created, Waiting, Playing, Settling, Closed];
        let legal = [
            (Created, Waiting),
            (Waiting, Playing),
            (Playing, Settling),
            (Settling, Closed),
            (Created, Closed),
            (Waiting, Closed),
            (Playing, Closed),
        ];
        for a in all {
            for b in all {
                assert_eq!(a.can_move(b), legal.contains(&(a, b)), "{a:?} -> {b:?}");
            }
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("a"));
        assert!(valid_name("Game-1.x_y:z"));
        assert!(valid_name(&"a".repeat(64)));
        assert!(!valid_name(""));
        assert!(!valid_name(&"a".repeat(65)));
        assert!(!valid_name("a b"));
        assert!(!valid_name("é"));
        assert!(!valid_name("a/b"));
    }
}
