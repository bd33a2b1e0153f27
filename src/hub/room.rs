//! Rooms: members (as sessions, wherever their connections are), the state
//! machine, props with their version, and the message sequence.
//!
//! Invariants: `members` is in join order with unique member ids; `seq` is
//! the number of the last `pub` (gapless from 1); `ver` counts every change of
//! props or state; `props_bytes` is the sum of key and value lengths; an
//! empty room has `idle` armed, a non-empty one does not.
//!
//! An empty room is small (see README "What an empty room costs"): its name
//! is inline when short, and its member list, props, history, watchers and
//! bans take heap memory only once it has some.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::time::Duration;

use crate::arena::Id;
use crate::history::History;
use crate::names::{Named, RoomName};
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

/// A room's props: key -> value.
pub type Props = BTreeMap<Box<str>, Box<[u8]>>;

/// The props of a room that has none.
static NO_PROPS: Props = BTreeMap::new();

/// What only some rooms need, allocated on first use: props, the audience
/// of watchers, and the member ids a kick banned.
///
/// Invariants: `props_bytes` is the sum of the key and value lengths of
/// `props`; `attached` counts the watchers whose session is attached (here,
/// relayed, or a shadow whose worker has its connection); `banned` holds
/// each id once, at most [`MAX_BANS`].
#[derive(Default)]
pub struct Extra {
    pub props: Props,
    pub props_bytes: usize,
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

/// A room's member list in join order: no heap block while it is empty
/// (8 bytes in the room rather than a `Vec`'s 24). Derefs to a slice.
// The box is the point: 8 bytes in every room, the Vec's 24 only in a room
// with members.
#[allow(clippy::box_collection)]
#[derive(Default)]
pub struct Members(Option<Box<Vec<Member>>>);

impl Members {
    pub fn push(&mut self, m: Member) {
        self.0.get_or_insert_with(Default::default).push(m);
    }

    /// Takes out member `i` (None past the end), keeping the order; the
    /// last one out frees the list.
    pub fn remove(&mut self, i: usize) -> Option<Member> {
        let v = self.0.as_mut()?;
        if i >= v.len() {
            return None;
        }
        let m = v.remove(i);
        if v.is_empty() {
            self.0 = None;
        }
        Some(m)
    }
}

impl Deref for Members {
    type Target = [Member];
    fn deref(&self) -> &[Member] {
        self.0.as_deref().map_or(&[], |v| &v[..])
    }
}

impl<'a> IntoIterator for &'a Members {
    type Item = &'a Member;
    type IntoIter = std::slice::Iter<'a, Member>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// `Room::flags` bits.
const PRIVATE: u8 = 1;
const AUTOSTART: u8 = 2;
const LOBBY_DIRTY: u8 = 4;

/// 88 bytes (96 in the arena, with its generation): see README "What an
/// empty room costs" before adding a field.
pub struct Room {
    pub name: RoomName,
    pub owner: MemberId,
    pub ver: u64,
    pub seq: u64,
    pub members: Members,
    /// The last `--history` messages, from the room's first message on.
    pub history: Option<Box<History>>,
    /// Props, watchers and bans (`None` until the first).
    pub extra: Option<Box<Extra>>,
    pub idle: Option<TimerId>,
    /// How long it may stay empty (at most `MAX_IDLE_MS`, in `requests`).
    pub idle_ms: u32,
    pub max: u16,
    pub state: RoomState,
    /// `PRIVATE`, `AUTOSTART`, `LOBBY_DIRTY`.
    flags: u8,
}

impl Named for Room {
    fn name(&self) -> &[u8] {
        self.name.as_bytes()
    }
}

impl Room {
    /// A new room: `created`, empty, no props (the caller arms `idle`).
    pub fn new(
        name: &str,
        owner: MemberId,
        max: u16,
        idle_ms: u32,
        private: bool,
        autostart: bool,
    ) -> Self {
        Room {
            name: name.into(),
            owner,
            ver: 0,
            seq: 0,
            members: Members::default(),
            history: None,
            extra: None,
            idle: None,
            idle_ms,
            max,
            state: RoomState::Created,
            flags: if private { PRIVATE } else { 0 } | if autostart { AUTOSTART } else { 0 },
        }
    }

    /// How long it may stay empty before it closes.
    pub fn idle_after(&self) -> Duration {
        Duration::from_millis(self.idle_ms.into())
    }

    pub fn private(&self) -> bool {
        self.flags & PRIVATE != 0
    }

    pub fn autostart(&self) -> bool {
        self.flags & AUTOSTART != 0
    }

    /// It changed since the lobby last looked (see `lobby`).
    pub fn lobby_dirty(&self) -> bool {
        self.flags & LOBBY_DIRTY != 0
    }

    pub fn set_lobby_dirty(&mut self, on: bool) {
        if on {
            self.flags |= LOBBY_DIRTY;
        } else {
            self.flags &= !LOBBY_DIRTY;
        }
    }

    pub fn props(&self) -> &Props {
        self.extra.as_ref().map_or(&NO_PROPS, |x| &x.props)
    }

    /// The sum of key and value lengths of its props.
    pub fn props_bytes(&self) -> usize {
        self.extra.as_ref().map_or(0, |x| x.props_bytes)
    }

    /// Its `Extra`, allocated here on first use.
    pub fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Default::default)
    }

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

    /// An empty room's footprint (README "What an empty room costs").
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn sizes() {
        use std::mem::size_of;
        assert_eq!(size_of::<RoomName>(), 24);
        assert_eq!(size_of::<Members>(), 8);
        assert_eq!(size_of::<Option<TimerId>>(), 8);
        assert_eq!(size_of::<Room>(), 88);
    }

    fn member(id: MemberId) -> Member {
        Member {
            id,
            session: SessionId::from_bits(id),
            meta: None,
        }
    }

    #[test]
    fn members_hold_memory_only_while_not_empty() {
        let mut ms = Members::default();
        assert!(ms.is_empty() && ms.0.is_none());
        assert!(ms.remove(0).is_none());
        for id in 1..=4 {
            ms.push(member(id));
        }
        let ids = |ms: &Members| ms.iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(&ms), [1, 2, 3, 4]);
        assert!(ms.remove(4).is_none());
        assert_eq!(ms.remove(1).map(|m| m.id), Some(2));
        assert_eq!(ids(&ms), [1, 3, 4]);
        assert_eq!((&ms).into_iter().count(), 3);
        for _ in 0..3 {
            assert!(ms.remove(0).is_some());
        }
        assert!(ms.is_empty() && ms.0.is_none());
        ms.push(member(9));
        assert_eq!(ids(&ms), [9]);
    }

    #[test]
    fn new_room_is_empty_and_flags_stay_apart() {
        for (private, autostart) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut r = Room::new("r-1", 7, 16, 60_000, private, autostart);
            assert_eq!((r.private(), r.autostart()), (private, autostart));
            assert!(!r.lobby_dirty());
            r.set_lobby_dirty(true);
            assert!(r.lobby_dirty());
            assert_eq!((r.private(), r.autostart()), (private, autostart));
            r.set_lobby_dirty(false);
            assert!(!r.lobby_dirty());
            assert_eq!((r.private(), r.autostart()), (private, autostart));
            assert!(r.members.is_empty() && r.extra.is_none() && r.history.is_none());
            assert!(r.props().is_empty() && r.props_bytes() == 0);
            assert_eq!(r.idle_after(), Duration::from_secs(60));
            assert_eq!((&*r.name, r.owner, r.state), ("r-1", 7, RoomState::Created));
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
