//! Watchers and kicks (PROTOCOL.md "Watchers" and "Kick"): the audience of
//! a live room, and the owner's way to remove someone.
//!
//! A watcher gets what members get (fan-out walks `Extra::watchers` after
//! the members, with the same encode-once frames) but holds no seat: it is
//! not in `members`, has no presence, and may not `pub`, `send`, `props`,
//! `state` or `kick` (`forbidden`). It counts against
//! `--max-rooms-per-conn` like a seat, so what one connection can hold stays
//! bounded; on another worker it is a seat there like any other (`SEAT`).
//! Members and watchers see the number of attached watchers in
//! `{"t":"watchers","room","n"}`, at most once per [`WATCHERS_EVERY`] per
//! room: a change inside that window is sent when it ends, with the count of
//! that moment.
//!
//! A watcher whose connection drops is no longer counted (no `away`); its
//! place is kept for the grace period so a resume re-attaches it, with the
//! same replay as a seat.
//!
//! Invariants: a session's `watching` holds a room exactly when the room's
//! `Extra::watchers` holds the session, and never a room whose `members`
//! holds it; `Extra::attached` is the number of those watchers whose session
//! is [`crate::session::Session::live`].

use std::time::Duration;

use super::{Hub, Timer};
use crate::hub::out;
use crate::protocol::{Code, Fail, Req};
use crate::room::{Room, RoomId, Watcher, Why};
use crate::session::SessionId;

/// At most one `watchers` message per room this often.
pub const WATCHERS_EVERY: Duration = Duration::from_secs(1);

impl Hub {
    /// `join` with `watch`: the session becomes a watcher of room `name`.
    /// Watching again answers a fresh `joined`. Cost: O(watchers) to find
    /// the session among them.
    pub(crate) fn op_watch(
        &mut self,
        sid: SessionId,
        rid_req: Option<u32>,
        name: &str,
    ) -> Result<(), Fail> {
        let (rid, seated) = self.seated(sid, name)?;
        if seated {
            return Err(Fail::new(
                Code::BadRequest,
                format!("already a member of {name:?}; leave it first to watch"),
            ));
        }
        let member = self.member_id(sid);
        let room = self
            .rooms
            .get(rid)
            .ok_or_else(|| Fail::new(Code::NotFound, format!("no room {name:?}")))?;
        if room.watcher(sid).is_none() {
            if room.is_banned(member) {
                return Err(Fail::new(
                    Code::Forbidden,
                    format!("you are banned from {name:?}"),
                ));
            }
            let n = room.extra.as_ref().map_or(0, |x| x.watchers.len());
            if n >= self.cfg.max_watchers as usize {
                return Err(Fail::new(
                    Code::Full,
                    format!(
                        "room {name:?} has its most watchers ({})",
                        self.cfg.max_watchers
                    ),
                ));
            }
            self.check_seat_limit(sid)?;
            let live = self.sessions.get(sid).is_some_and(|s| s.live());
            let Some(room) = self.rooms.get_mut(rid) else {
                return Ok(());
            };
            let x = room.extra.get_or_insert_with(Default::default);
            x.watchers.push(Watcher {
                id: member,
                session: sid,
            });
            if live {
                x.attached += 1;
            }
            if let Some(s) = self.sessions.get_mut(sid) {
                s.watching.push(rid);
            }
            self.tell_seat(sid, name, true, None);
            self.send_joined(sid, rid, rid_req, true);
            self.watchers_changed(rid);
            return Ok(());
        }
        self.send_joined(sid, rid, rid_req, true);
        Ok(())
    }

    /// Ends session `sid`'s watching of room `rid` (`leave`, a kick, its
    /// session ending). Returns whether it was watching.
    pub(crate) fn remove_watcher(&mut self, rid: RoomId, sid: SessionId) -> bool {
        let Some(s) = self.sessions.get_mut(sid) else {
            return false;
        };
        s.watching.retain(|&r| r != rid);
        let live = s.live();
        let Some(room) = self.rooms.get_mut(rid) else {
            return false;
        };
        let Some(x) = room.extra.as_deref_mut() else {
            return false;
        };
        let Some(i) = x.watchers.iter().position(|w| w.session == sid) else {
            return false;
        };
        x.watchers.swap_remove(i);
        if live {
            x.attached -= 1;
        }
        let name = room.name.clone();
        self.tell_seat(sid, &name, false, None);
        self.watchers_changed(rid);
        true
    }

    /// Session `sid`'s client came (`on`) or went: the rooms it watches
    /// count it or stop counting it. Called on every change of
    /// [`crate::session::Session::live`] for a session that may watch.
    pub(crate) fn watch_attach(&mut self, sid: SessionId, on: bool) {
        let Some(s) = self.sessions.get(sid) else {
            return;
        };
        if s.watching.is_empty() {
            return;
        }
        for rid in s.watching.clone() {
            if let Some(x) = self.extra_mut(rid) {
                if on {
                    x.attached += 1;
                } else {
                    x.attached = x.attached.saturating_sub(1);
                }
            }
            self.watchers_changed(rid);
        }
    }

    /// The number of watchers of `rid` may have changed: sent now when the
    /// room has been quiet for [`WATCHERS_EVERY`], else when that ends.
    pub(crate) fn watchers_changed(&mut self, rid: RoomId) {
        self.lobby_touch(rid);
        let now = self.now;
        let Some(x) = self.rooms.get_mut(rid).and_then(|r| r.extra.as_deref_mut()) else {
            return;
        };
        if x.timer.is_some() {
            return;
        }
        match x.quiet_until {
            Some(t) if t > now => {
                x.timer = Some(self.timers.arm(t, Timer::Watchers(rid)));
            }
            _ => self.send_watchers(rid),
        }
    }

    /// `Timer::Watchers`.
    pub(crate) fn watchers_due(&mut self, rid: RoomId) {
        if let Some(x) = self.extra_mut(rid) {
            x.timer = None;
        }
        self.send_watchers(rid);
    }

    /// Sends `watchers` to every member and watcher of `rid` if the count
    /// moved since the last one.
    fn send_watchers(&mut self, rid: RoomId) {
        let now = self.now;
        let Some(x) = self.extra_mut(rid) else {
            return;
        };
        if x.attached == x.sent {
            return;
        }
        x.sent = x.attached;
        x.quiet_until = Some(now + WATCHERS_EVERY);
        broadcast!(self, rid, None, |room: &Room| out::watchers(
            &room.name,
            room.watchers()
        ));
    }

    /// `kick`: the owner removes a member or watcher, which gets `kicked`;
    /// members see `leave` with `why:"kicked"`. With `ban` the id may not
    /// join or watch this room again while it exists.
    pub(crate) fn op_kick(&mut self, sid: SessionId, req: &Req) -> Result<(), Fail> {
        let name = crate::hub::rules::room_name(req)?;
        let (rid, seated) = self.seated(sid, name)?;
        let me = self.member_id(sid);
        let owner = self.rooms.get(rid).map(|r| r.owner);
        if !seated || owner != Some(me) {
            return Err(Fail::new(Code::Forbidden, "only the room's owner may kick"));
        }
        let id = req
            .id
            .ok_or_else(|| Fail::new(Code::BadRequest, "missing \"id\""))?;
        if id == me {
            return Err(Fail::new(
                Code::BadRequest,
                "the owner cannot kick itself; use leave",
            ));
        }
        let ban = req.ban.unwrap_or(false);
        let target = self.kick_target(rid, id, ban)?;
        if req.rid.is_some() {
            self.send_to(sid, &out::ok(req.rid, vec![]));
        }
        self.kick_out(rid, id, target, ban);
        Ok(())
    }

    /// A kick by the room's owner or the HTTP API: checks, then removes.
    pub(crate) fn kick_from(&mut self, rid: RoomId, id: u64, ban: bool) -> Result<(), Fail> {
        let target = self.kick_target(rid, id, ban)?;
        self.kick_out(rid, id, target, ban);
        Ok(())
    }

    /// Removes `id` (session `tsid`, a member or not) from room `rid`: it
    /// gets `kicked`, members see `leave` with `why:"kicked"`.
    fn kick_out(&mut self, rid: RoomId, id: u64, (tsid, member): (SessionId, bool), ban: bool) {
        if ban {
            if let Some(x) = self
                .rooms
                .get_mut(rid)
                .map(|r| r.extra.get_or_insert_with(Default::default))
            {
                if !x.banned.contains(&id) {
                    x.banned.push(id);
                }
            }
        }
        let name: Box<str> = self.rooms.get(rid).map_or("".into(), |r| (*r.name).into());
        self.send_to(tsid, &out::kicked(&name));
        if member {
            self.remove_member(rid, tsid, Why::Kicked);
        } else {
            self.remove_watcher(rid, tsid);
        }
        if self.disposable(tsid) {
            self.free_session(tsid);
        }
    }
}
