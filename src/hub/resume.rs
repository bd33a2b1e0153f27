//! Resume (PROTOCOL.md "Reconnect and recovery"): the index from resume token
//! to session, moving a session to a new connection, and the replay of the
//! messages it missed from its rooms' histories.
//!
//! A `hello` with `resume` names a session by its token. While the session
//! exists (attached, or detached within the grace period) the new connection
//! takes it over: the connection's own fresh session is discarded, every seat
//! is re-attached, a connection still attached to the session (half-open) is
//! closed with 4003, and members who saw `away` see `back`. The reply is
//! `resumed`, then each room's messages after the client's `last`, oldest
//! first.
//!
//! With several workers a session lives on the worker that issued its token
//! (the token's first byte names it) and its rooms on their homes. A resume
//! landing on another worker is relayed there (see `relay`). The session's
//! worker replays the rooms homed on it at once and asks every other home
//! for its rooms (`REJOIN`). Until all have answered, everything for the
//! session is held back ([`crate::session::Resuming`]), and frames from a home
//! that has not answered yet are dropped, because its answer replays from
//! the client's `last` up to its present. Then `resumed` goes out, followed
//! by what was held. Every home's frames reach the session in one order
//! (each link is FIFO), so the replay meets live traffic with no gap and no
//! duplicate, as on one worker.
//!
//! Invariant: `Hub::tokens` maps the key of every live session's token
//! ([`index_key`], unique among them) to that session, and nothing else (sessions are freed through
//! [`Hub::free_session`]; a session that only stands in for a relayed one
//! leaves the index).

use log::debug;

use super::cluster::Route;
use super::effects::CloseReason;
use super::ConnId;
use super::Hub;
use crate::auth::Grant;
use crate::hub::bus_msg::{BusMsg, Seq};
use crate::hub::lookup::{index_key, token_key};
use crate::hub::out::Presence;
use crate::hub::replay::replay;
use crate::protocol::{self, Code, Fail, Proto, Req};
use crate::room::{RoomId, Why};
use crate::session::{Client, Far, Part, Relay, Resuming, Session, SessionId};

/// What a `hello` with `resume` brings besides the token.
pub(crate) struct Ask<'a> {
    pub rid: Option<u32>,
    /// The `meta` it sets, already checked.
    pub meta: Option<Box<[u8]>>,
    /// What the new connection's credential allows.
    pub grant: Option<Box<Grant>>,
    /// The client's `last` seq of a room, by name.
    pub last: &'a dyn Fn(&str) -> Option<u64>,
}

impl Hub {
    /// The worker a token names when there are several (its first byte);
    /// `None` with one worker, or for a token that names none.
    pub(crate) fn token_worker(&self, token: &str) -> Option<u32> {
        let n = self.bus.as_ref()?.n;
        token_key(token)?;
        let w = u32::from_str_radix(token.get(..2)?, 16).ok()?;
        (w < n).then_some(w)
    }

    /// `hello` with `resume` on connection `cid`, whose fresh session is
    /// `sid`. Unknown, expired or malformed tokens are `not_found` and the
    /// fresh session goes on; a token of another worker is asked there.
    /// Cost: O(seats * members) for `back`, plus the replayed messages.
    pub(crate) fn op_resume(
        &mut self,
        cid: ConnId,
        sid: SessionId,
        token: &str,
        req: &Req,
    ) -> Result<(), Fail> {
        let old = match self.find_session(token) {
            Some(old) => old,
            None => match self.resume_target(token) {
                Some(w) => return self.ask_resume(cid, sid, w, token, req),
                None => return Err(resume_gone()),
            },
        };
        if old == sid {
            return Err(Fail::new(
                Code::BadRequest,
                "that session is this connection's own",
            ));
        }
        let Some((_, proto)) = self.sessions.get(sid).and_then(Session::conn) else {
            return Ok(());
        };
        // The fresh session goes; anything it joined or queued for is left.
        let (meta, grant) = match self.sessions.get_mut(sid) {
            Some(s) => (
                if req.meta.is_some() {
                    s.meta.take()
                } else {
                    None
                },
                s.grant.take(),
            ),
            None => (None, None),
        };
        let last = |name: &str| req.last.as_ref().and_then(|m| m.get(name)).copied();
        let ask = Ask {
            rid: req.rid,
            meta,
            grant,
            last: &last,
        };
        self.take_over((cid, sid, proto), old, ask);
        Ok(())
    }

    /// Connection `cid` (its fresh session `sid` let go) takes session
    /// `old` of this worker over.
    pub(crate) fn take_over(
        &mut self,
        (cid, sid, proto): (ConnId, SessionId, Proto),
        old: SessionId,
        ask: Ask,
    ) {
        self.release_session(sid, Why::Left);
        self.out.bind(cid, old);
        self.resume_session(old, Client::Local(cid, proto), ask);
    }

    /// Moves session `old` (of this worker) to the client at `to`: takes it
    /// from where it is attached (closed 4003), replays the rooms homed here
    /// and asks the other homes for theirs. `resumed` goes out from
    /// [`Hub::resume_done`], now or once the last home has answered.
    pub(crate) fn resume_session(&mut self, old: SessionId, to: Client, ask: Ask) {
        let Some(s) = self.sessions.get(old) else {
            return;
        };
        let (old_conn, old_relay) = (s.conn(), s.relay());
        if let Some((ocid, _)) = old_conn {
            // Half-open: closed 4003; `detach` leaves the session alone for
            // `Replaced`, so it stays attached until it is moved below.
            self.out.close(ocid, CloseReason::Replaced);
        }
        if let Some(r) = old_relay {
            self.kick(r, CloseReason::Replaced);
        }
        let was_away = old_conn.is_none() && old_relay.is_none();
        let up = |h: &u32| self.bus.as_ref().is_some_and(|b| b.up(*h));
        let Some(s) = self.sessions.get_mut(old) else {
            return;
        };
        if let Some(t) = s.attach(to) {
            self.timers.cancel(t);
        }
        let proto = to.proto();
        s.hello_done = true;
        if ask.meta.is_some() {
            s.meta = ask.meta;
        }
        // The credential of the connection in use decides future joins.
        s.grant = ask.grant;
        let member = s.member;
        let seats = s.seats.clone();
        let watching = s.watching.clone();
        let remote: Vec<(u32, Box<str>)> = s.remote.iter().flat_map(|r| r.seats.clone()).collect();
        let mut homes: Vec<u32> = remote.iter().map(|x| x.0).filter(up).collect();
        homes.sort_unstable();
        homes.dedup();
        // The replay budget, split evenly between here and each home.
        let closed = std::mem::take(&mut s.closed);
        let share = self.cfg.out_buffer as usize / 2 / (homes.len() + 1);
        let (mut held, mut rooms, mut used) = (Vec::new(), Vec::new(), 0);
        for &rid in seats.iter().chain(&watching) {
            if let Some(r) = self.replay_room(rid, ask.last, proto, share, &mut used, &mut held) {
                rooms.push(r);
            }
        }
        rooms.extend(
            closed
                .into_iter()
                .map(|(name, why)| (name, Part::Closed(why))),
        );
        self.next_resume = self.next_resume.wrapping_add(1);
        let epoch = self.next_resume;
        if let Some(s) = self.sessions.get_mut(old) {
            s.resuming = Some(Box::new(Resuming {
                epoch,
                rid: ask.rid,
                waiting: homes.clone(),
                rooms,
                held,
                overflow: false,
            }));
        }
        debug!(
            "w={} resumed member={member} ({} seats here, {} homes elsewhere{})",
            self.id,
            seats.len(),
            homes.len(),
            if was_away { "" } else { ", took over" }
        );
        if was_away {
            self.announce(&seats, member, Presence::Back);
            self.watch_attach(old, true);
        }
        let share = u32::try_from(share).unwrap_or(u32::MAX);
        for &h in &homes {
            let last: Vec<(&str, u64)> = (remote.iter().filter(|x| x.0 == h))
                .map(|x| (&*x.1, (ask.last)(&x.1).unwrap_or(u64::MAX)))
                .collect();
            let m = BusMsg::Rejoin {
                sid: old.to_bits(),
                epoch,
                proto,
                budget: share,
                last: Seq::Items(&last),
            };
            if let Some(bus) = self.bus.as_mut() {
                bus.send(h, &m);
            }
        }
        if homes.is_empty() {
            self.resume_done(old);
        }
    }

    /// One room's part of a resume (see [`crate::hub::replay::replay`]).
    fn replay_room(
        &self,
        rid: RoomId,
        last: &dyn Fn(&str) -> Option<u64>,
        proto: Proto,
        budget: usize,
        used: &mut usize,
        out: &mut Vec<u8>,
    ) -> Option<(Box<str>, Part)> {
        let room = self.rooms.get(rid)?;
        let recovered = replay(room, last(&room.name), proto, budget, used, out);
        Some(((*room.name).into(), Part::Recovered(recovered)))
    }

    /// Every part of a resume is in: sends `resumed` and then what was held
    /// (the replays, then live traffic). A relayed client's worker is told
    /// the session's id after these frames.
    pub(crate) fn resume_done(&mut self, sid: SessionId) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        let Some(r) = s.resuming.take() else {
            return;
        };
        let member = s.member;
        let Some(route) = self.route(sid) else {
            return;
        };
        let m = crate::hub::out::resumed(r.rid, member, &r.rooms);
        let mut frame = protocol::encode_frame(route.proto(), &m);
        match route {
            Route::Local(cid, _) => {
                self.out.push(cid, &frame);
                self.out.push(cid, &r.held);
                if r.overflow {
                    self.out.close(cid, CloseReason::SlowConsumer);
                }
            }
            Route::Remote(w, bsid, proto) => {
                frame.extend_from_slice(&r.held);
                if let Some(bus) = self.bus.as_mut() {
                    bus.send(
                        w,
                        &BusMsg::Deliver {
                            sid: bsid,
                            frame: &frame,
                        },
                    );
                    let asid = sid.to_bits();
                    bus.send(w, &BusMsg::Resumed { bsid, asid });
                }
                if r.overflow {
                    let relay = Relay {
                        worker: w,
                        rsid: bsid,
                        proto,
                    };
                    self.kick(relay, CloseReason::SlowConsumer);
                }
            }
            Route::Hold(..) => {}
        }
    }

    /// On a room's home: a session with seats here resumed (`REJOIN`). Its
    /// shadow is attached again (`back` where it was away), in the
    /// subprotocol of the new connection, and each room's replay goes back
    /// in the answer.
    pub(crate) fn on_rejoin(
        &mut self,
        p: u32,
        (asid, epoch, proto, budget): (u64, u32, Proto, u32),
        last: Seq<(&str, u64)>,
    ) {
        let budget = budget as usize;
        let lookup = |name: &str| {
            last.iter()
                .find(|x| x.0 == name)
                .map(|x| x.1)
                .filter(|&l| l != u64::MAX)
        };
        let (mut frames, mut rooms, mut used) = (Vec::new(), Vec::new(), 0);
        let shadow = self.shadows.get(&(p, asid)).copied();
        if let Some((sid, s)) = shadow.and_then(|sid| Some((sid, self.sessions.get_mut(sid)?))) {
            let (member, seats) = (s.member, s.seats.clone());
            let watching = s.watching.clone();
            let was = s.shadow().is_some_and(|sh| sh.client == Far::Attached);
            if let Some(sh) = s.shadow_mut() {
                sh.client = Far::Attached;
                sh.proto = proto;
            }
            if !was {
                self.announce(&seats, member, Presence::Back);
                self.watch_attach(sid, true);
            }
            for rid in seats.into_iter().chain(watching) {
                if let Some(r) =
                    self.replay_room(rid, &lookup, proto, budget, &mut used, &mut frames)
                {
                    rooms.push(r);
                }
            }
        }
        let rooms: Vec<(&str, bool)> = (rooms.iter())
            .map(|(name, part)| (&**name, matches!(part, Part::Recovered(true))))
            .collect();
        let m = BusMsg::Rejoined {
            sid: asid,
            epoch,
            rooms: Seq::Items(&rooms),
            frames: &frames,
        };
        if let Some(bus) = self.bus.as_mut() {
            bus.send(p, &m);
        }
    }

    /// On the session's worker: one home's part of a resume.
    pub(crate) fn on_rejoined(
        &mut self,
        p: u32,
        (asid, epoch): (u64, u32),
        rooms: Seq<(&str, bool)>,
        frames: &[u8],
    ) {
        let rooms = (rooms.iter()).map(|(name, on)| (Box::<str>::from(name), Part::Recovered(on)));
        let sid = SessionId::from_bits(asid);
        let limit = self.out.limit;
        let Some(r) = self
            .sessions
            .get_mut(sid)
            .and_then(|s| s.resuming.as_deref_mut())
            .filter(|r| r.epoch == epoch && r.waiting.contains(&p))
        else {
            return;
        };
        r.waiting.retain(|&w| w != p);
        r.rooms.extend(rooms);
        let done = r.waiting.is_empty();
        crate::hub::fanout::hold(&mut self.sessions, sid, frames, limit);
        if done {
            self.resume_done(sid);
        }
    }

    /// Worker `p` is gone: a resume waiting for it goes on without it (its
    /// rooms are lost, and their `closed` is held like the rest).
    pub(crate) fn resume_peer_lost(&mut self, p: u32, sid: SessionId) {
        let Some(r) = self
            .sessions
            .get_mut(sid)
            .and_then(|s| s.resuming.as_deref_mut())
        else {
            return;
        };
        if r.waiting.contains(&p) {
            r.waiting.retain(|&w| w != p);
            if r.waiting.is_empty() {
                self.resume_done(sid);
            }
        }
    }

    /// Frees a session: its grace timer, its token, its queue places. Every
    /// session leaves the arena through here.
    pub(crate) fn free_session(&mut self, sid: SessionId) {
        let Some(s) = self.sessions.remove(sid) else {
            return;
        };
        if let Some((t, _)) = s.grace() {
            self.timers.cancel(t);
        }
        self.forget_token(sid, s.token);
        self.forget_remote(sid, &s);
        self.unqueue(sid);
        if s.lobby.is_some() {
            self.lobby_end(sid);
        }
    }

    /// Takes `token` out of the index if it names `sid` there.
    /// The session is gone for resume: the worker that issued the token
    /// no longer sends resumes here (see `moves`).
    pub(crate) fn forget_token(&mut self, sid: SessionId, token: [u8; 16]) {
        let k = index_key(&token);
        if self.tokens.get(&k) == Some(&sid) {
            self.tokens.remove(&k);
        }
        self.whereabouts(&token, None);
    }
}

/// The answer to a token that names no live session.
pub(crate) fn resume_gone() -> Fail {
    Fail::new(
        Code::NotFound,
        "unknown or expired session; a fresh session goes on",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_keys() {
        let t = "00112233445566778899aabbccddeeff";
        assert_eq!(token_key(t), Some(0x00112233445566778899aabbccddeeff));
        assert_eq!(token_key(&t[1..]), None);
        assert_eq!(token_key(&format!("{t}0")), None);
        assert_eq!(token_key("+0112233445566778899aabbccddeeff"), None);
        assert_eq!(token_key("zz112233445566778899aabbccddeeff"), None);
        assert_eq!(token_key("00112233445566778899AABBCCDDEEFF"), None);
        assert_eq!(token_key(""), None);
    }
}
