//! The lobby's data (see `crate::lobby` for what the worker does with it):
//! subscriptions and their filters, the rooms changed since the last tick,
//! and what a subscriber is told of each change.

use crate::room::{RoomId, RoomState, Shown};
use crate::session::SessionId;
use crate::timer::TimerId;

/// What a subscriber wants to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    pub state: Option<RoomState>,
    pub has_space: bool,
}

/// What a subscriber is told of a room's change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The room as it is now (it matches the filter).
    Changed,
    /// `gone`: it matched the filter and no longer does, or it closed.
    Gone,
}

impl Filter {
    pub fn matches(self, s: &Shown, max: u16) -> bool {
        self.state.is_none_or(|st| st == s.state) && (!self.has_space || s.members < u32::from(max))
    }

    /// What a subscriber with this filter is told of `u`: the room as it
    /// is when it matches now, `gone` when it matched before and does not
    /// now (or closed), nothing when it matched neither time.
    pub fn sees(self, u: &Update) -> Option<Seen> {
        let now = u.now.as_ref().is_some_and(|s| self.matches(s, u.max));
        let was = u.was.as_ref().is_some_and(|s| self.matches(s, u.max));
        match (now, was) {
            (true, _) => Some(Seen::Changed),
            (false, true) => Some(Seen::Gone),
            (false, false) => None,
        }
    }
}

/// A session's subscription.
pub struct Sub {
    pub filter: Filter,
    /// Updates held until the snapshot has gone out.
    pub held: Option<Vec<u8>>,
}

/// One room's change, as the tick saw it.
pub struct Update {
    pub name: Box<str>,
    pub max: u16,
    pub was: Option<Shown>,
    pub now: Option<Shown>,
}

/// A worker's lobby state.
#[derive(Default)]
pub struct LobbyList {
    pub subs: Vec<SessionId>,
    pub dirty: Vec<RoomId>,
    /// Public rooms closed since the last tick that had been announced.
    pub gone: Vec<Update>,
    pub timer: Option<TimerId>,
    /// Workers with subscribers (bit per worker).
    pub peers: u64,
    /// Some worker (this one or a peer) has subscribers: rooms are tracked.
    pub active: bool,
    pub shown: std::collections::HashMap<RoomId, Shown>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(members: u32, state: RoomState) -> Shown {
        Shown {
            members,
            state,
            watchers: 0,
        }
    }

    fn update(was: Option<Shown>, now: Option<Shown>) -> Update {
        Update {
            name: "r".into(),
            max: 4,
            was,
            now,
        }
    }

    const ALL: Filter = Filter {
        state: None,
        has_space: false,
    };

    #[test]
    fn everything_seen_without_a_filter_and_a_close_is_gone() {
        let w = shown(1, RoomState::Waiting);
        assert_eq!(
            ALL.sees(&update(None, Some(w))),
            Some(Seen::Changed),
            "new room"
        );
        assert_eq!(ALL.sees(&update(Some(w), Some(w))), Some(Seen::Changed));
        assert_eq!(ALL.sees(&update(Some(w), None)), Some(Seen::Gone), "closed");
        assert_eq!(ALL.sees(&update(None, None)), None);
    }

    #[test]
    fn a_room_leaving_the_filter_is_gone_and_entering_it_is_shown() {
        let f = Filter {
            state: Some(RoomState::Waiting),
            has_space: true,
        };
        let waiting = shown(2, RoomState::Waiting);
        let full = shown(4, RoomState::Waiting);
        let playing = shown(2, RoomState::Playing);
        assert_eq!(
            f.sees(&update(Some(waiting), Some(full))),
            Some(Seen::Gone),
            "filled up"
        );
        assert_eq!(
            f.sees(&update(Some(full), Some(waiting))),
            Some(Seen::Changed),
            "a seat freed"
        );
        assert_eq!(
            f.sees(&update(Some(waiting), Some(playing))),
            Some(Seen::Gone),
            "started"
        );
        assert_eq!(
            f.sees(&update(Some(playing), Some(playing))),
            None,
            "never seen"
        );
        assert_eq!(
            f.sees(&update(Some(full), None)),
            None,
            "closed, but never seen"
        );
    }

    #[test]
    fn has_space_counts_members_against_the_room_max() {
        let f = Filter {
            state: None,
            has_space: true,
        };
        assert!(f.matches(&shown(3, RoomState::Created), 4));
        assert!(!f.matches(&shown(4, RoomState::Created), 4));
        assert!(ALL.matches(&shown(4, RoomState::Created), 4));
    }
}
