//! The lobby (PROTOCOL.md "Lobby"): a live list of public rooms.
//!
//! `lobby` subscribes a connection: it gets the `rooms` snapshot of `list`
//! (merged from every worker), then `{"t":"lobby",...}` for every public
//! room matching its filter that appears or changes, and `gone` for one that
//! closes or stops matching. Each worker tracks the public rooms it homes
//! that changed (`touch`: a seat taken or freed, a state, the watcher
//! count); every [`TICK`] it compares each with the figures it last
//! announced (`LobbyList::shown`), so an update carries both, and a subscriber's
//! filter tells `lobby` (matches now), `gone` (matched before, not now) or
//! nothing. The batch goes to the subscribers here and, as one `LOBBY_UPD`,
//! to every worker that said it has subscribers (`LOBBY_INTEREST`). Each
//! update frame is encoded once per subprotocol for all subscribers.
//!
//! A subscription's updates wait behind its snapshot (`Sub::held`, bounded
//! by `--out-buffer`): subscribing tells the other workers first, so every
//! change after a worker's part of the snapshot reaches the subscriber,
//! after the snapshot.
//!
//! A worker tracks its rooms only while some worker has a subscriber
//! (`active`): creating and changing rooms costs nothing for the lobby
//! otherwise. Becoming active records every public room's figures as
//! shown, the state every snapshot taken from then on starts from.
//!
//! Invariants: `LobbyList::subs` holds exactly the local sessions whose
//! `lobby` is `Some`; a room is in `dirty` exactly when `lobby_dirty` is
//! set, and only while `active`; while `active`, `shown` holds what was
//! last announced of every public room homed here (a new one from its
//! first tick), and is empty otherwise.

use std::time::Duration;

use super::{Hub, Timer};
use crate::hub::bus_msg::{BusMsg, LobbyRoom, Seq};
use crate::hub::out;
use crate::protocol::{Code, Fail, Frames, Req};
use crate::room::{RoomId, RoomState};
use crate::session::SessionId;

/// Updates for one room go out at most this often.
pub const TICK: Duration = Duration::from_millis(250);
/// The snapshot's default and largest `limit`.
const LIMIT_DEFAULT: u16 = 100;
const LIMIT_MAX: u16 = 1000;

pub use crate::hub::lobby::{Filter, LobbyList, Seen, Sub, Update};

impl Hub {
    /// `lobby`: (re)subscribes with the filter, answers the snapshot.
    pub(crate) fn op_lobby(&mut self, sid: SessionId, req: &Req) -> Result<(), Fail> {
        let state = match req.state.as_deref() {
            Some(s) => Some(
                RoomState::parse(s)
                    .ok_or_else(|| Fail::new(Code::BadRequest, format!("unknown state {s:?}")))?,
            ),
            None => None,
        };
        let filter = Filter {
            state,
            has_space: req.has_space.unwrap_or(false),
        };
        let limit = req.limit.unwrap_or(LIMIT_DEFAULT).min(LIMIT_MAX);
        let Some(s) = self.sessions.get_mut(sid) else {
            return Ok(());
        };
        s.lobby = Some(Box::new(Sub {
            filter,
            held: Some(Vec::new()),
        }));
        if !self.lobby_list.subs.contains(&sid) {
            self.lobby_list.subs.push(sid);
            if self.lobby_list.subs.len() == 1 {
                self.lobby_interest(true);
                self.lobby_track();
            }
        }
        let mut rooms = Vec::new();
        self.list_rooms(filter.state, filter.has_space, limit, &mut rooms);
        self.gather_list(
            (sid, req.rid, true),
            (filter.state, filter.has_space, limit),
            rooms,
        );
        Ok(())
    }

    /// `unlobby`.
    pub(crate) fn op_unlobby(&mut self, sid: SessionId, req: &Req) -> Result<(), Fail> {
        self.lobby_end(sid);
        if req.rid.is_some() {
            self.send_to(sid, &out::ok(req.rid, vec![]));
        }
        Ok(())
    }

    /// Ends `sid`'s subscription, if any (`unlobby`, its connection gone).
    pub(crate) fn lobby_end(&mut self, sid: SessionId) {
        if let Some(s) = self.sessions.get_mut(sid) {
            s.lobby = None;
        }
        let subs = &mut self.lobby_list.subs;
        if let Some(i) = subs.iter().position(|&x| x == sid) {
            subs.swap_remove(i);
            if subs.is_empty() {
                self.lobby_interest(false);
                self.lobby_track();
            }
        }
    }

    /// The snapshot went out: what was held follows it.
    pub(crate) fn lobby_snapshot_sent(&mut self, sid: SessionId) {
        let held = self
            .sessions
            .get_mut(sid)
            .and_then(|s| s.lobby.as_mut())
            .and_then(|l| l.held.take());
        if let (Some(held), Some(route)) = (held, self.route(sid)) {
            if !held.is_empty() {
                self.push_route(route, &held);
            }
        }
    }

    /// Tells every other worker whether this one has subscribers.
    fn lobby_interest(&mut self, on: bool) {
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        for p in 0..bus.n {
            bus.send(p, &BusMsg::LobbyInterest { on });
        }
    }

    /// A new link to `p`: it learns whether this worker has subscribers.
    pub(crate) fn lobby_link_up(&mut self, p: u32) {
        if self.lobby_list.subs.is_empty() {
            return;
        }
        if let Some(bus) = self.bus.as_mut() {
            bus.send(p, &BusMsg::LobbyInterest { on: true });
        }
    }

    pub(crate) fn on_lobby_interest(&mut self, p: u32, on: bool) {
        let bit = 1u64 << p;
        if on {
            self.lobby_list.peers |= bit;
        } else {
            self.lobby_list.peers &= !bit;
        }
        self.lobby_track();
    }

    /// Starts or stops tracking rooms as subscribers come and go. Starting
    /// records every public room's figures, O(rooms) once; stopping
    /// forgets them.
    fn lobby_track(&mut self) {
        let l = &mut self.lobby_list;
        let want = !l.subs.is_empty() || l.peers != 0;
        if want == l.active {
            return;
        }
        l.active = want;
        if want {
            l.shown.extend(
                self.rooms
                    .iter()
                    .filter(|(_, r)| !r.private())
                    .map(|(rid, r)| (rid, r.shown())),
            );
        } else {
            l.shown = Default::default();
            l.gone.clear();
            for rid in std::mem::take(&mut l.dirty) {
                if let Some(r) = self.rooms.get_mut(rid) {
                    r.set_lobby_dirty(false);
                }
            }
        }
    }

    /// A public room's figures may have changed: looked at on the next tick.
    pub(crate) fn lobby_touch(&mut self, rid: RoomId) {
        if !self.lobby_list.active {
            return;
        }
        let Some(room) = self.rooms.get_mut(rid) else {
            return;
        };
        if room.private() || room.lobby_dirty() {
            return;
        }
        room.set_lobby_dirty(true);
        self.lobby_list.dirty.push(rid);
        self.arm_lobby();
    }

    /// Room `rid` (out of the arena already) closed: `gone` for those who
    /// saw it.
    pub(crate) fn lobby_closed(&mut self, rid: RoomId, name: &str, max: u16) {
        let Some(was) = self.lobby_list.shown.remove(&rid) else {
            return;
        };
        self.lobby_list.gone.push(Update {
            name: name.into(),
            max,
            was: Some(was),
            now: None,
        });
        self.arm_lobby();
    }

    fn arm_lobby(&mut self) {
        if self.lobby_list.timer.is_none() {
            self.lobby_list.timer = Some(self.timers.arm(self.now + TICK, Timer::Lobby));
        }
    }

    /// `Timer::Lobby`: the changes since the last tick go out.
    /// O(changed rooms * (subscribers here + workers with subscribers)).
    pub(crate) fn lobby_tick(&mut self) {
        self.lobby_list.timer = None;
        let mut ups = std::mem::take(&mut self.lobby_list.gone);
        for rid in std::mem::take(&mut self.lobby_list.dirty) {
            let Some(room) = self.rooms.get_mut(rid) else {
                continue;
            };
            room.set_lobby_dirty(false);
            let now = room.shown();
            let was = self.lobby_list.shown.insert(rid, now);
            if was == Some(now) {
                continue;
            }
            ups.push(Update {
                name: (*room.name).into(),
                max: room.max,
                was,
                now: Some(now),
            });
        }
        if ups.is_empty() {
            return;
        }
        let peers = self.lobby_list.peers;
        if let Some(bus) = self.bus.as_mut().filter(|_| peers != 0) {
            let rooms: Vec<LobbyRoom> = (ups.iter())
                .map(|u| LobbyRoom {
                    name: &u.name,
                    max: u.max,
                    was: u.was,
                    now: u.now,
                })
                .collect();
            let m = BusMsg::LobbyUpd(Seq::Items(&rooms));
            for p in (0..bus.n).filter(|p| peers & (1 << p) != 0) {
                bus.send(p, &m);
            }
        }
        self.lobby_deliver(&ups);
    }

    /// Another worker's batch of updates.
    pub(crate) fn on_lobby_upd(&mut self, rooms: Seq<LobbyRoom>) {
        let ups: Vec<Update> = (rooms.iter())
            .map(|r| Update {
                name: r.name.into(),
                max: r.max,
                was: r.was,
                now: r.now,
            })
            .collect();
        self.lobby_deliver(&ups);
    }

    /// Sends each subscriber here what it should see of `ups`: each frame
    /// encoded once per subprotocol.
    fn lobby_deliver(&mut self, ups: &[Update]) {
        if self.lobby_list.subs.is_empty() {
            return;
        }
        let subs = self.lobby_list.subs.clone();
        let limit = self.out.limit;
        for u in ups {
            let mut changed = (u.now).map(|s| Frames::new(out::lobby(&u.name, u.max, s)));
            let mut gone = Frames::new(out::lobby_gone(&u.name));
            for &sid in &subs {
                let Some(sub) = self.sessions.get(sid).and_then(|s| s.lobby.as_deref()) else {
                    continue;
                };
                let frames = match (sub.filter.sees(u), &mut changed) {
                    (Some(Seen::Changed), Some(c)) => c,
                    (Some(Seen::Gone), _) => &mut gone,
                    _ => continue,
                };
                let Some(route) = self.route(sid) else {
                    continue;
                };
                let frame = frames.get(route.proto());
                let held = self
                    .sessions
                    .get_mut(sid)
                    .and_then(|s| s.lobby.as_deref_mut())
                    .and_then(|l| l.held.as_mut());
                match held {
                    Some(h) if h.len() + frame.len() <= limit => h.extend_from_slice(frame),
                    // Past --out-buffer while the snapshot is on its way:
                    // as slow as a consumer gets.
                    Some(_) => {
                        if let super::cluster::Route::Local(cid, _) = route {
                            self.out
                                .close(cid, super::effects::CloseReason::SlowConsumer);
                        }
                    }
                    None => {
                        self.push_route(route, frame);
                    }
                }
            }
        }
    }
}
