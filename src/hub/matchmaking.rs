//! `match` and `unmatch` on the worker (PROTOCOL.md): requests go into the
//! [`Matcher`], and its events become rooms and messages.
//!
//! Matching runs when a player enters a queue and when the matcher's next
//! event comes due (a window wide enough for a group, or a `wait_ms`
//! deadline). One wheel timer is armed for that next event and re-armed
//! only when an earlier one appears, so an idle matcher costs nothing per
//! tick, and a pass touches only the players whose time has come (see
//! [`crate::matcher`] for the rule and its costs).
//!
//! A group becomes a private room with a server-picked name, `max` = size and
//! `autostart`, owned by its longest-waiting player. Each player, in arrival
//! order, gets `matched` then `joined` (and the others see its `presence`
//! join); the last join fills the room and starts it (`state` `playing`).
//! A session leaves every queue when its connection ends, when it is freed,
//! and on `unmatch`.

use std::time::{Duration, Instant};

use super::{Hub, Timer};
use crate::hub::out;
use crate::matcher::{EnqueueError, Event, Matcher, Rules};
use crate::protocol::{Code, Fail, Req};
use crate::room::valid_name;
use crate::session::SessionId;
use crate::timer::TimerId;
use crate::Config;

/// Longest `wait_ms` a client may ask for.
const MAX_WAIT_MS: u32 = 3_600_000;

/// The worker's matchmaking state.
pub struct Lobby {
    pub(crate) matcher: Matcher<SessionId>,
    /// Time 0 of the matcher's millisecond clock.
    epoch: Instant,
    /// The wheel timer armed for the matcher's next event, and that event's
    /// time on the matcher's clock.
    timer: Option<(TimerId, u64)>,
    events: Vec<Event<SessionId>>,
}

impl Lobby {
    pub(crate) fn new(cfg: &Config, now: Instant) -> Self {
        Lobby {
            matcher: Matcher::new(Rules {
                window: cfg.match_window,
                widen_per_s: cfg.match_widen,
                window_max: cfg.match_window_max,
            }),
            epoch: now,
            timer: None,
            events: Vec::new(),
        }
    }
}

fn queue_name<'a>(req: &'a Req) -> Result<&'a str, Fail> {
    match req.queue.as_deref() {
        None => Err(Fail::new(Code::BadRequest, "missing \"queue\"")),
        Some(q) if !valid_name(q) => Err(Fail::new(
            Code::BadRequest,
            "queue names are 1 to 64 bytes of [A-Za-z0-9._:-]",
        )),
        Some(q) => Ok(q),
    }
}

impl Hub {
    fn lobby_now(&self) -> u64 {
        let ms = self
            .now
            .saturating_duration_since(self.lobby.epoch)
            .as_millis();
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    /// `match`: enters a queue, answers `queued`, and matches at once when a
    /// group is already there. A place in a queue counts as a seat against
    /// `--max-rooms-per-conn`, so the room a match brings can always be
    /// joined. O(k * (k + log n)) plus the groups it forms.
    pub(crate) fn op_match(&mut self, sid: SessionId, req: &Req) -> Result<(), Fail> {
        let queue = queue_name(req)?;
        let size = req
            .size
            .ok_or_else(|| Fail::new(Code::BadRequest, "missing \"size\""))?;
        if size == 0 || size > self.cfg.max_members {
            return Err(Fail::new(
                Code::BadRequest,
                format!("size must be 1 to {}", self.cfg.max_members),
            ));
        }
        self.check_seat_limit(sid)?;
        let wait = req
            .wait_ms
            .unwrap_or(self.cfg.match_wait_ms)
            .min(MAX_WAIT_MS);
        let now = self.lobby_now();
        let rating = req.rating.unwrap_or(0);
        match self
            .lobby
            .matcher
            .enqueue(sid, queue, size, rating, now, wait.into())
        {
            Ok(_) => {}
            Err(EnqueueError::AlreadyQueued) => {
                return Err(Fail::new(
                    Code::Exists,
                    format!("already waiting in queue {queue:?}"),
                ))
            }
        }
        self.send_to(sid, &out::queued(req.rid, queue));
        self.run_matcher();
        Ok(())
    }

    /// `unmatch`: leaves a queue (`not_found` when not in it, e.g. just
    /// matched or timed out).
    pub(crate) fn op_unmatch(&mut self, sid: SessionId, req: &Req) -> Result<(), Fail> {
        let queue = queue_name(req)?;
        if !self.lobby.matcher.leave(sid, queue) {
            return Err(Fail::new(
                Code::NotFound,
                format!("not waiting in queue {queue:?}"),
            ));
        }
        if req.rid.is_some() {
            self.send_to(sid, &out::ok(req.rid, vec![]));
        }
        Ok(())
    }

    /// Takes a session out of every queue (its connection ended, or it is
    /// freed). Silent: there is no one to tell.
    pub(crate) fn unqueue(&mut self, sid: SessionId) {
        self.lobby.matcher.leave_all(sid);
    }

    /// `Timer::Match`: the matcher's next event is due.
    pub(crate) fn match_due(&mut self) {
        self.lobby.timer = None;
        self.run_matcher();
    }

    /// One matcher pass at the worker's `now`; then the timer for the next
    /// event.
    fn run_matcher(&mut self) {
        let now = self.lobby_now();
        let mut events = std::mem::take(&mut self.lobby.events);
        self.lobby.matcher.run(now, &mut events);
        for ev in events.drain(..) {
            match ev {
                Event::Matched { queue, players } => {
                    self.start_match(&queue, &players);
                    for &p in &players {
                        self.tell_places(p);
                    }
                }
                Event::Timeout { queue, owner } => {
                    self.send_to(owner, &out::match_timeout(&queue));
                    self.tell_places(owner);
                    if self.disposable(owner) {
                        self.free_session(owner);
                    }
                }
            }
        }
        self.lobby.events = events;
        self.arm_matcher();
    }

    /// Arms the wheel for the matcher's next event unless a timer at or
    /// before it is armed already (that one fires, finds nothing, re-arms).
    fn arm_matcher(&mut self) {
        let Some(next) = self.lobby.matcher.next_event() else {
            return;
        };
        if let Some((t, at)) = self.lobby.timer {
            if at <= next {
                return;
            }
            self.timers.cancel(t);
        }
        let when = self.lobby.epoch + Duration::from_millis(next);
        self.lobby.timer = Some((self.timers.arm(when, Timer::Match), next));
    }

    /// A group formed: creates its room and seats every player at once.
    /// Each gets `matched` listing the whole group, then `joined` (which
    /// lists it too; no `presence` join for each other), then `state`
    /// `playing` once the room is full. O(k^2) for k players.
    fn start_match(&mut self, queue: &str, players: &[SessionId]) {
        let Some(owner) = players.first().and_then(|&s| self.sessions.get(s)) else {
            return;
        };
        let owner = owner.member;
        let req = Req {
            max: Some(u16::try_from(players.len()).unwrap_or(u16::MAX)),
            autostart: Some(true),
            private: Some(true),
            ..Req::default()
        };
        let (rid, name) = match self.create_room(&req, owner, None) {
            Ok(r) => r,
            Err(f) => {
                log::error!(
                    "w={} queue {queue:?}: no room for a match: {}",
                    self.id,
                    f.msg
                );
                for &sid in players {
                    self.metrics.error(f.code);
                    self.send_to(sid, &crate::protocol::err_v(None, &f));
                }
                return;
            }
        };
        log::debug!(
            "w={} queue {queue:?}: {} players matched into {name:?}",
            self.id,
            players.len()
        );
        let seated: Vec<SessionId> = players
            .iter()
            .copied()
            .filter(|&sid| self.route(sid).is_some())
            .collect();
        for &sid in &seated {
            self.seat(sid, rid, None);
        }
        for &sid in &seated {
            let Some(room) = self.rooms.get(rid) else {
                return;
            };
            let Some(route) = self.route(sid) else {
                continue;
            };
            let m = out::matched(queue, &name, &room.members);
            let frame = crate::protocol::encode_frame(route.proto(), &m);
            self.push_route(route, &frame);
            self.send_joined(sid, rid, None, false);
        }
        self.autostart(rid);
    }
}
