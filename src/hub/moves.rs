//! Sessions move with their connections to the worker that homes their
//! room (the core's side; the loop's is `worker::moves`).
//!
//! A local client whose session holds nothing yet (no seat, no queue
//! place, no room watched, no lobby subscription, no request in flight
//! elsewhere) and whose request would take it into a room or queue homed on
//! another worker (`join`, `create`, `match`), or whose `hello` resumes a
//! session living on another worker, is not forwarded: the core asks the
//! loop to move the connection there ([`Effect::Move`]), with the request.
//! The loop takes the session out ([`Hub::move_out`]) and sends it, the
//! socket and the request over the link; the home takes it in
//! ([`Hub::move_in`]) and runs the request as a local one. The client
//! keeps its member id and its resume token; from then on its room's
//! traffic never crosses the bus.
//!
//! Resume follows a moved session: a token names the worker that issued
//! it, and that worker keeps where each of its sessions that moved away
//! lives now (`Hub::moved`: token key -> worker), told by `MOVED` messages
//! (the new worker sends one when the session ends, or when the issuing
//! worker comes back after a restart). A session moves at most once: only
//! a session still on the worker that issued it moves with a room request,
//! so no connection goes back and forth between rooms of different homes.
//! A connection that cannot move (the link is down or full, a frame is
//! half read) is served where it is, its request forwarded as before.
//!
//! [`Effect::Move`]: super::effects::Effect::Move

use log::debug;

use super::bus_msg::BusMsg;
use super::lookup::{index_key, token_key};
use super::{ConnId, Hub};
use crate::auth::Grant;
use crate::protocol::{Proto, Req};
use crate::session::{Attach, Client, MemberId, Session, SessionId};

/// A session on its way to another worker with its connection: all a
/// session that holds nothing has.
#[derive(Debug, PartialEq)]
pub struct Emigrant {
    pub member: MemberId,
    pub token: [u8; 16],
    pub proto: Proto,
    pub meta: Option<Box<[u8]>>,
    pub grant: Option<Box<Grant>>,
    pub hello_done: bool,
}

impl Hub {
    /// The worker session `sid`'s connection should move to with `req`,
    /// if any (see the module). O(1) but for the session's queue places.
    pub(crate) fn move_target(&self, sid: SessionId, req: &Req) -> Option<u32> {
        if self.cfg.no_moves {
            return None;
        }
        let bus = self.bus.as_ref()?;
        let s = self.sessions.get(sid)?;
        if !self.holds_nothing(sid, s) {
            return None;
        }
        let to = match req.t.as_deref()? {
            "hello" => {
                let token = req.resume.as_deref()?;
                if s.hello_done || self.find_session(token).is_some() {
                    return None;
                }
                self.resume_target(token)?
            }
            "join" if req.watch == Some(true) => return None,
            "join" | "match" | "create" => {
                // Only a session still on the worker that issued it.
                if s.token[0] != self.id as u8 {
                    return None;
                }
                self.remote_home(req)?
            }
            _ => return None,
        };
        (to != self.id && bus.up(to)).then_some(to)
    }

    /// A local client's session with nothing anywhere: it may go.
    fn holds_nothing(&self, sid: SessionId, s: &Session) -> bool {
        s.conn().is_some()
            && s.seats.is_empty()
            && s.watching.is_empty()
            && s.lobby.is_none()
            && s.proxy.is_none()
            && s.resuming.is_none()
            && s.closed.is_empty()
            && s.remote
                .as_deref()
                .is_none_or(|r| r.seats.is_empty() && r.places.is_empty() && r.asked.is_empty())
            && self.lobby.matcher.queued(sid) == 0
    }

    /// The worker a resume token's session lives on, when that is another
    /// one: the worker that issued it, or, for a token issued here, where
    /// its session moved.
    pub(crate) fn resume_target(&self, token: &str) -> Option<u32> {
        let w = self.token_worker(token)?;
        if w != self.id {
            return Some(w);
        }
        let key = index_key(&token_key(token)?.to_be_bytes());
        self.moved.get(&key).copied()
    }

    /// The loop moves session `sid`'s connection to worker `to`: the
    /// session leaves this worker (nobody here sees it go: it holds
    /// nothing). `None` if it is gone.
    pub fn move_out(&mut self, sid: SessionId, to: u32) -> Option<Emigrant> {
        let s = self.sessions.remove(sid)?;
        let key = index_key(&s.token);
        if self.tokens.get(&key) == Some(&sid) {
            self.tokens.remove(&key);
        }
        self.whereabouts(&s.token, Some(to));
        debug!("w={} member={} moves to worker {to}", self.id, s.member);
        let proto = s.proto().unwrap_or(Proto::Json);
        Some(Emigrant {
            member: s.member,
            token: s.token,
            proto,
            meta: s.meta,
            grant: s.grant,
            hello_done: s.hello_done,
        })
    }

    /// A session moved here with its connection, now `cid`. Its token is
    /// found here from now on (a token that collides with one here, one
    /// chance in 2^64, is left out of the index: that session cannot be
    /// resumed). The worker that issued the token is told where it is now,
    /// unless it is `from`, the worker it came from (which noted it).
    pub fn move_in(&mut self, cid: ConnId, e: Emigrant, from: u32) -> SessionId {
        let mut s = Session::fresh(e.member, e.token, Attach::On(Client::Local(cid, e.proto)));
        s.meta = e.meta;
        s.grant = e.grant;
        s.hello_done = e.hello_done;
        let sid = self.sessions.insert(s);
        let key = index_key(&e.token);
        if e.token != [0; 16] && !self.tokens.contains_key(&key) {
            self.tokens.insert(key, sid);
        }
        if u32::from(e.token[0]) != from {
            self.whereabouts(&e.token, Some(self.id));
        }
        sid
    }

    /// Where the session of `token` lives now (`None`: it ended): noted
    /// when this worker issued the token, else told to the one that did by
    /// the worker the session lives on (one link, so in order).
    pub(crate) fn whereabouts(&mut self, token: &[u8; 16], at: Option<u32>) {
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        if *token == [0; 16] {
            return;
        }
        let key = index_key(token);
        let issuer = u32::from(token[0]);
        if issuer == self.id {
            match at {
                Some(w) if w != self.id => self.moved.insert(key, w),
                _ => self.moved.remove(&key),
            };
            return;
        }
        match at {
            // Its new worker says so.
            Some(w) if w != self.id => {}
            _ => {
                let to = at.unwrap_or(u32::MAX);
                bus.send(issuer, &BusMsg::Moved { key, to });
            }
        }
    }

    /// `MOVED` from worker `p`: a session of a token issued here lives on
    /// `to` now (`u32::MAX`: it ended, or it is back here).
    pub(crate) fn on_moved(&mut self, p: u32, key: u64, to: u32) {
        if to == self.id || (to == u32::MAX && self.moved.get(&key) == Some(&p)) {
            self.moved.remove(&key);
        } else if to < self.workers() {
            self.moved.insert(key, to);
        }
    }

    /// The link to worker `p` is up: if `p` issued tokens of sessions that
    /// live here (it restarted since, and forgot), it is told again.
    /// O(sessions).
    pub(crate) fn moves_link_up(&mut self, p: u32) {
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        for (_, s) in self.sessions.iter() {
            if s.token != [0; 16] && u32::from(s.token[0]) == p && p != self.id {
                let key = index_key(&s.token);
                bus.send(p, &BusMsg::Moved { key, to: self.id });
            }
        }
    }

    /// Worker `p` is gone, and the sessions that had moved there with it.
    pub(crate) fn moves_peer_lost(&mut self, p: u32) {
        self.moved.retain(|_, w| *w != p);
    }
}
