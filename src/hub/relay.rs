//! Relayed sessions: a client that resumes on a worker other than the one
//! holding its session. The kernel spreads connections over workers, so a
//! reconnect lands anywhere; the session (its seats, its grace period, its
//! place in every room's member list) stays on its own worker, and the
//! connection's worker relays.
//!
//! On the connection's worker (B) the connection keeps its fresh session as
//! a stand-in (`Session::proxy`). A `hello` whose token names worker A is
//! asked there (`RESUME`, with the `hello`'s fields and the connection's
//! credential) while the connection is paused, so nothing the client sent
//! after it runs on the wrong session. A answers with the `resumed` frames
//! (`DELIVER`) then `RESUMED` with the session's id (or 0 and an `err`).
//! From then on B sends every request of the connection to A as it came
//! (`RREQ`), after its own rate limits; A runs it as the session's own and
//! routes the session's output to B (`Relay`), which queues it on the
//! connection. When the connection ends B tells A (`DETACH`), and the
//! session goes through the grace period as usual; when the session is
//! resumed elsewhere A tells B to close it 4003 (`KICK`).
//!
//! If A is lost, its sessions are gone: B closes their connections 1011. If
//! B is lost, A's sessions relayed through it are disconnected (grace).
//!
//! Cost: a relayed client's traffic takes one more bus hop each way, until
//! it reconnects and lands on its session's worker.

use log::debug;

use std::borrow::Cow;

use super::effects::CloseReason;
use super::rates::Rates;
use super::resume::{resume_gone, Ask};
use super::ConnId;
use super::Hub;
use crate::hub::bus_msg::{BusMsg, ResumeAsk, Seq};
use crate::protocol::{self, err_v, Code, Fail, Proto, Req};
use crate::room::Why;
use crate::session::{Client, Proxy, Relay, Session, SessionId};

impl Hub {
    /// On B: `hello` with a token of worker `w`. Asks `w` and pauses the
    /// connection until the answer.
    pub(crate) fn ask_resume(
        &mut self,
        cid: ConnId,
        sid: SessionId,
        w: u32,
        token: &str,
        req: &Req,
    ) -> Result<(), Fail> {
        let Some(s) = self.sessions.get(sid) else {
            return Ok(());
        };
        let Some((_, proto)) = s.conn() else {
            return Ok(());
        };
        let meta = req.meta.as_ref().and(s.meta.as_deref());
        let last: Vec<(&str, u64)> = (req.last.iter().flatten())
            .map(|(room, seq)| (&**room, *seq))
            .collect();
        let m = BusMsg::Resume(ResumeAsk {
            origin: u32::MAX,
            bsid: sid.to_bits(),
            proto,
            rid: req.rid,
            token,
            meta,
            grant: s.grant.as_deref().map(Cow::Borrowed),
            last: Seq::Items(&last),
        });
        let bus = self.bus.as_mut().ok_or_else(resume_gone)?;
        if !bus.send(w, &m) {
            return Err(resume_gone());
        }
        if let Some(s) = self.sessions.get_mut(sid) {
            s.proxy = Some(Box::new(Proxy {
                worker: w,
                sid: None,
                rid: req.rid,
            }));
        }
        self.out.pause(cid, true);
        Ok(())
    }

    /// On A: a resume asked by worker `p` for its connection's session
    /// `bsid`. A token not found here is answered with the `err` and id 0.
    pub(crate) fn on_resume_ask(&mut self, p: u32, mut ask: ResumeAsk) {
        if ask.origin == u32::MAX {
            ask.origin = p;
            if self.find_session(ask.token).is_none() {
                // Its session moved from here: the question goes on, once.
                if let Some(h) = self.resume_target(ask.token).filter(|&h| h != self.id) {
                    let m = BusMsg::Resume(ask);
                    if self.bus.as_mut().is_some_and(|b| b.send(h, &m)) {
                        return;
                    }
                    let BusMsg::Resume(a) = m else { return };
                    ask = a;
                }
            }
        }
        // The worker of the connection: answers go there.
        let p = ask.origin;
        if p == self.id {
            self.resume_own_ask(ask);
            return;
        }
        let ResumeAsk {
            origin: _,
            bsid,
            proto,
            rid,
            token,
            meta,
            grant,
            last,
        } = ask;
        let meta = meta.map(Box::<[u8]>::from);
        let grant = grant.map(|g| Box::new(g.into_owned()));
        let Some(old) = self.find_session(token) else {
            let f = resume_gone();
            self.metrics.error(f.code);
            let frame = protocol::encode_frame(proto, &err_v(rid, &f));
            if let Some(bus) = self.bus.as_mut() {
                bus.send(
                    p,
                    &BusMsg::Deliver {
                        sid: bsid,
                        frame: &frame,
                    },
                );
                bus.send(p, &BusMsg::Resumed { bsid, asid: 0 });
            }
            return;
        };
        let lookup = |name: &str| last.iter().find(|x| x.0 == name).map(|x| x.1);
        let relay = Relay {
            worker: p,
            rsid: bsid,
            proto,
        };
        debug!(
            "w={} session of member={} resumed on worker {p}",
            self.id,
            self.sessions.get(old).map_or(0, |s| s.member)
        );
        self.resume_session(
            old,
            Client::Relayed(relay),
            Ask {
                rid,
                meta,
                grant,
                last: &lookup,
            },
        );
    }

    /// The question this worker asked came back here: the session moved
    /// here from the worker that issued its token. The connection's fresh
    /// session `bsid` takes it over as a local resume.
    fn resume_own_ask(&mut self, ask: ResumeAsk) {
        let sid = SessionId::from_bits(ask.bsid);
        let conn = self
            .sessions
            .get(sid)
            .filter(|s| s.proxy.as_deref().is_some_and(|x| x.sid.is_none()))
            .and_then(Session::conn);
        let Some((cid, proto)) = conn else {
            // The connection ended while the question was on its way.
            return;
        };
        if let Some(s) = self.sessions.get_mut(sid) {
            s.proxy = None;
        }
        self.out.pause(cid, false);
        let Some(old) = self.find_session(ask.token) else {
            self.fail((cid, proto), ask.rid, resume_gone());
            return;
        };
        let last = ask.last;
        let lookup = |name: &str| last.iter().find(|x| x.0 == name).map(|x| x.1);
        let new = Ask {
            rid: ask.rid,
            meta: ask.meta.map(Box::<[u8]>::from),
            grant: ask.grant.map(|g| Box::new(g.into_owned())),
            last: &lookup,
        };
        self.take_over((cid, sid, proto), old, new);
    }

    /// On B: worker `p`'s answer to the resume of `bsid`'s connection. On
    /// success the fresh session lets its seats and places go and from now
    /// on stands in for session `asid` of `p`.
    pub(crate) fn on_resumed(&mut self, p: u32, bsid: u64, asid: u64) {
        let sid = SessionId::from_bits(bsid);
        let cid = self
            .sessions
            .get(sid)
            // From the worker asked, or from the one it passed the
            // question on to (the session moved there).
            .filter(|s| s.proxy.as_deref().is_some_and(|x| x.sid.is_none()))
            .and_then(Session::conn)
            .map(|c| c.0);
        let Some(cid) = cid else {
            // The connection ended while the resume was on its way.
            if asid != 0 {
                self.send_detach(p, asid, bsid, CloseReason::Dropped);
            }
            return;
        };
        if asid == 0 {
            if let Some(s) = self.sessions.get_mut(sid) {
                s.proxy = None;
            }
            self.out.pause(cid, false);
            return;
        }
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        if let Some(x) = s.proxy.as_mut() {
            x.worker = p;
            x.sid = Some(asid);
        }
        let token = std::mem::take(&mut s.token);
        self.forget_token(sid, token);
        self.release_seats(sid, Why::Left);
        self.unqueue(sid);
        self.lobby_end(sid);
        self.out.pause(cid, false);
    }

    /// On B: the proxied session `asid` of worker `w`, if `sid` stands in
    /// for one.
    pub(crate) fn proxied(&self, sid: SessionId) -> Option<(u32, u64)> {
        let x = *self.sessions.get(sid)?.proxy.as_deref()?;
        Some((x.worker, x.sid?))
    }

    /// On B: a request of a relayed connection, past the request rate: the
    /// byte and creation rates are checked here, the rest runs on worker `w`.
    pub(crate) fn relay_request(
        &mut self,
        (cid, sid, proto): (ConnId, SessionId, Proto),
        rates: &mut Rates,
        (w, asid): (u32, u64),
        payload: &[u8],
    ) {
        if let Ok(req) = protocol::decode(proto, payload) {
            if let Err(f) = self.check_rates(rates, &req) {
                self.fail((cid, proto), req.rid, f);
                return;
            }
        }
        let m = BusMsg::RReq {
            asid,
            bsid: sid.to_bits(),
            proto,
            payload,
        };
        if !self.bus.as_mut().is_some_and(|b| b.send(w, &m)) {
            self.out.close(cid, CloseReason::SessionLost);
        }
    }

    /// On A: a request of relayed session `asid`, from its connection on
    /// worker `p`; run as a local client's, with the outcome sent back for
    /// the connection's bad-request count.
    pub(crate) fn on_relayed_request(
        &mut self,
        p: u32,
        (asid, bsid): (u64, u64),
        proto: Proto,
        payload: &[u8],
    ) {
        let sid = SessionId::from_bits(asid);
        if !self.relayed_via(sid, p, bsid) {
            // The session moved on (or ended) after this was sent.
            return;
        }
        let code = match protocol::decode(proto, payload) {
            Err((rid, f)) => self.fail_remote(sid, rid, f),
            Ok(req) => match self.remote_home(&req) {
                // Its home answers the outcome, relayed on from here.
                Some(home) => match self.forward(sid, home, &req, proto, payload) {
                    Ok(()) => return,
                    Err(f) => self.fail_remote(sid, req.rid, f),
                },
                None => match self.dispatch(None, sid, &req) {
                    Ok(()) => 0,
                    Err(f) => self.fail_remote(sid, req.rid, f),
                },
            },
        };
        if let Some(bus) = self.bus.as_mut() {
            bus.send(p, &BusMsg::Outcome { sid: bsid, code });
        }
    }

    /// On A: `sid` is relayed through worker `p`'s stand-in `bsid` (a
    /// message about an earlier connection of the session is not).
    fn relayed_via(&self, sid: SessionId, p: u32, bsid: u64) -> bool {
        self.sessions
            .get(sid)
            .and_then(Session::relay)
            .is_some_and(|r| r.worker == p && r.rsid == bsid)
    }

    fn send_detach(&mut self, w: u32, asid: u64, bsid: u64, reason: CloseReason) {
        let reason = reason.index() as u8;
        if let Some(bus) = self.bus.as_mut() {
            bus.send(w, &BusMsg::Detach { asid, bsid, reason });
        }
    }

    /// On B: the connection of stand-in `sid` ended. `None` when that is
    /// all there is to it; else the reason its own session ends for: it
    /// stands in for nothing (an ordinary session), or its resume is still
    /// being asked, which now will not take. A connection closed 4003
    /// then lost that resume to a later one, and its own fresh session
    /// ends as a dropped one does.
    pub(crate) fn detach_proxy(
        &mut self,
        sid: SessionId,
        reason: CloseReason,
    ) -> Option<CloseReason> {
        let Some(s) = self.sessions.get_mut(sid) else {
            return Some(reason);
        };
        match s.proxy.as_deref().copied() {
            None => Some(reason),
            Some(Proxy { sid: None, .. }) => {
                s.proxy = None;
                Some(match reason {
                    CloseReason::Replaced => CloseReason::Dropped,
                    r => r,
                })
            }
            Some(Proxy {
                worker: w,
                sid: Some(asid),
                ..
            }) => {
                // A whole worker going away takes its clients with it, but
                // the session lives on its own worker: a disconnect there.
                let reason = match reason {
                    CloseReason::Shutdown => CloseReason::Dropped,
                    r => r,
                };
                if reason != CloseReason::Replaced {
                    self.send_detach(w, asid, sid.to_bits(), reason);
                }
                self.free_session(sid);
                None
            }
        }
    }

    /// On A: the connection of relayed session `asid` on worker `p` ended.
    pub(crate) fn on_relay_detached(&mut self, p: u32, asid: u64, bsid: u64, reason: CloseReason) {
        let sid = SessionId::from_bits(asid);
        if !self.relayed_via(sid, p, bsid) {
            return;
        }
        if let Some(s) = self.sessions.get_mut(sid) {
            s.cut();
        }
        self.detach(sid, reason);
    }

    /// On A: closes a relayed session's connection (4003 when the session
    /// moved to another connection, 4001 when its resume overflowed).
    pub(crate) fn kick(&mut self, r: Relay, reason: CloseReason) {
        let m = BusMsg::Kick {
            bsid: r.rsid,
            reason: reason.index() as u8,
        };
        if let Some(bus) = self.bus.as_mut() {
            bus.send(r.worker, &m);
        }
    }

    /// On B: worker `p` closes the connection of stand-in `bsid`.
    pub(crate) fn on_kick(&mut self, p: u32, bsid: u64, reason: CloseReason) {
        let cid = self
            .sessions
            .get(SessionId::from_bits(bsid))
            .filter(|s| s.proxy.as_deref().is_some_and(|x| x.worker == p))
            .and_then(Session::conn);
        if let Some((cid, _)) = cid {
            self.out.close(cid, reason);
        }
    }

    /// Worker `p` is gone. On A: a session relayed through it is
    /// disconnected (grace). On B: a stand-in for one of its sessions is
    /// closed 1011, or, while its resume was still being asked, answered
    /// `not_found` and goes on as a fresh session.
    pub(crate) fn relay_peer_lost(&mut self, p: u32, sid: SessionId) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        if s.relay().is_some_and(|r| r.worker == p) {
            s.cut();
            self.detach(sid, CloseReason::Dropped);
            return;
        }
        let Some(conn) = s.conn() else {
            return;
        };
        let cid = conn.0;
        match s.proxy.as_deref().copied() {
            Some(x) if x.worker == p && x.sid.is_some() => {
                s.proxy = None;
                self.out.close(cid, CloseReason::SessionLost);
            }
            Some(x) if x.worker == p => {
                s.proxy = None;
                self.fail(
                    conn,
                    x.rid,
                    Fail::new(
                        Code::NotFound,
                        "the session's worker is gone; a fresh session goes on",
                    ),
                );
                self.out.pause(cid, false);
            }
            _ => {}
        }
    }
}
