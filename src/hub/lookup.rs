//! Lookups over the core's state ([`Hub`]): a session's member id, a room
//! by name and whether a session sits in it, a session by its resume
//! token, the public rooms a `list` shows, the target of a kick. Pure
//! reads, unit-tested here on a hub built by hand.

use crate::protocol::{Code, Fail};
use crate::room::{RoomId, RoomState, MAX_BANS};
use crate::session::{MemberId, SessionId};

use super::Hub;

/// One room of a `list` answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedRoom {
    pub name: Box<str>,
    pub members: u32,
    pub max: u16,
    pub state: RoomState,
    pub watchers: u32,
}

/// The 128 bits of a resume token as sent (32 lowercase hex digits, one
/// spelling per token); `None` for anything else.
pub fn token_key(token: &str) -> Option<u128> {
    if token.len() != 32
        || !token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u128::from_str_radix(token, 16).ok()
}

/// A token's key in the hub's index: its last 64 bits (random; the first
/// byte may name a worker). 16 bytes a bucket with the session id.
pub fn index_key(token: &[u8; 16]) -> u64 {
    let mut k = [0u8; 8];
    k.copy_from_slice(&token[8..]);
    u64::from_be_bytes(k)
}

impl Hub {
    /// A session's member id (0 for none).
    pub fn member_id(&self, sid: SessionId) -> MemberId {
        self.sessions.get(sid).map_or(0, |s| s.member)
    }

    /// The room by name (`not_found`), and whether this session sits in it.
    pub fn seated(&self, sid: SessionId, name: &str) -> Result<(RoomId, bool), Fail> {
        let rid = self
            .names
            .get(&self.rooms, name)
            .ok_or_else(|| Fail::new(Code::NotFound, format!("no room {name:?}")))?;
        let seated = self
            .sessions
            .get(sid)
            .is_some_and(|s| s.seats.contains(&rid));
        Ok((rid, seated))
    }

    /// The session a token names here: the whole token must match, not
    /// only the index key.
    pub fn find_session(&self, token: &str) -> Option<SessionId> {
        let token = token_key(token)?.to_be_bytes();
        let sid = *self.tokens.get(&index_key(&token))?;
        let s = self.sessions.get(sid)?;
        (s.token == token).then_some(sid)
    }

    /// Up to `limit` public rooms (`out` counts toward it), filtered as
    /// `list` asks: by state, and with a free seat when `space`.
    pub fn list_rooms(
        &self,
        want: Option<RoomState>,
        space: bool,
        limit: u16,
        out: &mut Vec<ListedRoom>,
    ) {
        let rooms = self
            .rooms
            .iter()
            .map(|(_, r)| r)
            .filter(|r| !r.private())
            .filter(|r| want.is_none_or(|s| r.state == s))
            .filter(|r| !space || !r.is_full())
            .take((limit as usize).saturating_sub(out.len()))
            .map(|r| ListedRoom {
                name: (*r.name).into(),
                members: r.members.len() as u32,
                max: r.max,
                state: r.state,
                watchers: r.watchers(),
            });
        out.extend(rooms);
    }

    /// The session of member or watcher `id` of room `rid`, and whether it
    /// is a member: `not_found` when it is neither; `too_large` when `ban`
    /// would pass [`MAX_BANS`].
    pub fn kick_target(&self, rid: RoomId, id: u64, ban: bool) -> Result<(SessionId, bool), Fail> {
        let Some(room) = self.rooms.get(rid) else {
            return Err(Fail::new(Code::NotFound, "no such room"));
        };
        let target = room
            .members
            .iter()
            .find(|m| m.id == id)
            .map(|m| (m.session, true))
            .or_else(|| {
                room.extra
                    .as_ref()
                    .and_then(|x| x.watchers.iter().find(|w| w.id == id))
                    .map(|w| (w.session, false))
            });
        let Some(target) = target else {
            return Err(Fail::new(
                Code::NotFound,
                format!("{id} is not in room {:?}", room.name),
            ));
        };
        let bans = room.extra.as_ref().map_or(0, |x| x.banned.len());
        if ban && !room.is_banned(id) && bans >= MAX_BANS {
            return Err(Fail::new(
                Code::TooLarge,
                format!("a room keeps at most {MAX_BANS} bans"),
            ));
        }
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::{Member, Room};
    use crate::session::{Attach, Session};

    fn hub() -> Hub {
        let mut cfg = crate::Config::defaults();
        (cfg.history, cfg.history_bytes, cfg.history_total) = (8, 1 << 16, 1 << 20);
        Hub::new(cfg, 0, std::time::Instant::now())
    }

    /// A session with member id `member` and a token of its own.
    fn session(h: &mut Hub, member: MemberId) -> SessionId {
        let token =
            (0x1111_0000_0000_0000_0000_0000_0000_0000u128 + u128::from(member)).to_be_bytes();
        let sid = h
            .sessions
            .insert(Session::fresh(member, token, Attach::Detached));
        h.tokens.insert(index_key(&token), sid);
        sid
    }

    fn room(h: &mut Hub, name: &str, max: u16, private: bool) -> RoomId {
        let rid = h
            .rooms
            .insert(Room::new(name, 1, max, 60_000, private, false));
        assert!(h.names.insert(&h.rooms, rid));
        rid
    }

    fn seat(h: &mut Hub, sid: SessionId, rid: RoomId) {
        let id = h.member_id(sid);
        if let Some(r) = h.rooms.get_mut(rid) {
            r.members.push(Member {
                id,
                session: sid,
                meta: None,
            });
        }
        if let Some(s) = h.sessions.get_mut(sid) {
            s.seats.push(rid);
        }
    }

    #[test]
    fn seated_finds_the_room_and_tells_a_seat_from_none() {
        let mut h = hub();
        let (a, b) = (session(&mut h, 1), session(&mut h, 2));
        let r = room(&mut h, "r", 4, false);
        seat(&mut h, a, r);
        assert_eq!(h.seated(a, "r").ok(), Some((r, true)));
        assert_eq!(h.seated(b, "r").ok(), Some((r, false)));
        assert_eq!(h.seated(a, "nope").map_err(|f| f.code), Err(Code::NotFound));
        assert_eq!(h.member_id(b), 2);
        h.sessions.remove(b);
        assert_eq!(h.member_id(b), 0, "a gone session has no member id");
    }

    #[test]
    fn a_token_finds_its_session_only_when_whole() {
        let mut h = hub();
        let a = session(&mut h, 7);
        let token = format!("{:032x}", 0x1111_0000_0000_0000_0000_0000_0000_0007u128);
        assert_eq!(h.find_session(&token), Some(a));
        // Same last 64 bits (the index key), another first half.
        let other = format!("2{}", &token[1..]);
        assert_eq!(h.find_session(&other), None);
        assert_eq!(h.find_session(&format!("{token}0")), None);
        assert_eq!(h.find_session("zz"), None);
        h.sessions.remove(a);
        assert_eq!(h.find_session(&token), None, "a freed session is not found");
    }

    #[test]
    fn tokens_are_lowercase_hex_of_32_digits() {
        let t = "00112233445566778899aabbccddeeff";
        assert_eq!(token_key(t), Some(0x00112233445566778899aabbccddeeff));
        assert_eq!(token_key(&t.to_uppercase()), None);
        assert_eq!(token_key(&t[1..]), None);
        assert_eq!(token_key(&format!("{t}0")), None);
        assert_eq!(token_key("+0112233445566778899aabbccddeeff"), None);
        assert_eq!(token_key(""), None);
        assert_eq!(
            index_key(&0x00112233445566778899aabbccddeeffu128.to_be_bytes()),
            0x8899aabbccddeeff
        );
    }

    #[test]
    fn list_shows_public_rooms_filtered_and_bounded() {
        let mut h = hub();
        let a = session(&mut h, 1);
        let full = room(&mut h, "full", 1, false);
        seat(&mut h, a, full);
        room(&mut h, "open", 4, false);
        room(&mut h, "secret", 4, true);
        let playing = room(&mut h, "playing", 4, false);
        if let Some(r) = h.rooms.get_mut(playing) {
            r.state = RoomState::Playing;
        }
        let names = |want, space, limit| {
            let mut out = Vec::new();
            h.list_rooms(want, space, limit, &mut out);
            let mut n: Vec<String> = out.iter().map(|r| r.name.to_string()).collect();
            n.sort();
            n
        };
        assert_eq!(
            names(None, false, 10),
            ["full", "open", "playing"],
            "private rooms never"
        );
        assert_eq!(names(None, true, 10), ["open", "playing"], "has_space");
        assert_eq!(names(Some(RoomState::Playing), false, 10), ["playing"]);
        assert_eq!(names(None, false, 2).len(), 2, "limit");
        let mut out = vec![ListedRoom {
            name: "elsewhere".into(),
            members: 0,
            max: 1,
            state: RoomState::Created,
            watchers: 0,
        }];
        h.list_rooms(None, false, 2, &mut out);
        assert_eq!(out.len(), 2, "rooms already listed count toward the limit");
        let f = names(None, false, 10);
        assert!(!f.contains(&"secret".to_string()));
    }

    #[test]
    fn a_kick_targets_a_member_or_a_watcher_and_bans_are_bounded() {
        let mut h = hub();
        let (a, b) = (session(&mut h, 1), session(&mut h, 2));
        let r = room(&mut h, "r", 4, false);
        seat(&mut h, a, r);
        assert_eq!(h.kick_target(r, 1, false).ok(), Some((a, true)));
        assert_eq!(
            h.kick_target(r, 2, false).map_err(|f| f.code),
            Err(Code::NotFound)
        );
        if let Some(room) = h.rooms.get_mut(r) {
            room.extra_mut()
                .watchers
                .push(crate::room::Watcher { id: 2, session: b });
        }
        assert_eq!(h.kick_target(r, 2, true).ok(), Some((b, false)));
        if let Some(room) = h.rooms.get_mut(r) {
            room.extra_mut().banned = (100..100 + MAX_BANS as u64).collect();
        }
        assert_eq!(
            h.kick_target(r, 1, true).map_err(|f| f.code),
            Err(Code::TooLarge)
        );
        assert!(
            h.kick_target(r, 1, false).is_ok(),
            "a kick without ban still goes"
        );
        assert_eq!(
            h.kick_target(RoomId::from_bits(u64::MAX), 1, false)
                .map_err(|f| f.code),
            Err(Code::NotFound)
        );
    }
}
