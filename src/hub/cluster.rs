//! Rooms across workers: what the bus messages (see `bus`) mean to a worker.
//!
//! Every room and matchmaking queue lives on one worker, its home
//! ([`home`] of its name; a name the server picks is picked so its home
//! is the creating worker). A client's session lives on the worker its
//! connection landed on. A request for a room homed elsewhere is forwarded
//! there as it came (`REQ`), with the session's member id and subprotocol;
//! the home runs it with the same handler code as a local one, on a *shadow
//! session* that stands for the remote one, and answers with frames for that
//! session (`DELIVER`), the seats it got or lost (`SEAT`), and one `OUTCOME`
//! per request. Fan-out sends one `FANOUT` per worker with members, carrying
//! the frame once per subprotocol and the list of its sessions; that worker
//! queues the same bytes on each of their connections. A room's order is its
//! home's, and each link is FIFO, so every member everywhere sees one order.
//!
//! The session's worker keeps its grace period and tells homes `AWAY`,
//! `BACK` and `RELEASE`. `list` asks every worker (`LIST_REQ`) and merges the
//! answers. When a peer is lost (its link ends: it died, or it was too slow
//! and the link was dropped), rooms homed there are gone (members here get
//! `closed` with `why: "lost"`), and shadows of its sessions go through the
//! grace period as disconnects.
//!
//! Invariants: `Hub::shadows` maps (worker, remote session) to the shadow
//! session standing for it while that worker's link is up; a local
//! session's `remote.seats` mirrors the `SEAT` messages of each home, in
//! link order.

use std::time::Duration;

use log::warn;

use super::bus_msg::{home, kind};
use super::effects::CloseReason;
use super::ConnId;
use super::{Hub, Timer};
use crate::hub::bus_msg::{BusError, BusMsg, Listed, Seq};
use crate::hub::lookup::ListedRoom;
use crate::hub::out::{self, Presence};
use crate::protocol::{self, err_v, Code, Fail, Proto, Req, V};
use crate::room::{valid_name, RoomState, Why};
use crate::session::{Asked, Attach, Client, Far, Part, Session, SessionId, Shadow};

/// Where a session's output goes.
#[derive(Clone, Copy)]
pub(crate) enum Route {
    Local(ConnId, Proto),
    /// (worker, its session id, subprotocol).
    Remote(u32, u64, Proto),
    /// Held back while the session resumes (see `resume`).
    Hold(SessionId, Proto),
}

impl Route {
    pub(crate) fn proto(self) -> Proto {
        match self {
            Route::Local(_, p) | Route::Remote(_, _, p) | Route::Hold(_, p) => p,
        }
    }
}

/// A `list` waiting for other workers' answers.
pub struct PendingList {
    sid: SessionId,
    rid: Option<u32>,
    /// The snapshot of a `lobby` subscription.
    lobby: bool,
    /// Workers that were lost or did not answer in time.
    missing: Vec<u32>,
    limit: u16,
    waiting: Vec<u32>,
    rooms: Vec<ListedRoom>,
}

impl Hub {
    pub(crate) fn workers(&self) -> u32 {
        self.bus.as_ref().map_or(1, |b| b.n)
    }

    /// The home of `name` when that is another worker.
    pub(crate) fn remote_home_of(&self, name: &str) -> Option<u32> {
        let bus = self.bus.as_ref()?;
        let h = home(name, bus.n);
        (h != bus.me).then_some(h)
    }

    pub(crate) fn homed_here(&self, name: &str) -> bool {
        self.bus.as_ref().is_none_or(|b| home(name, b.n) == b.me)
    }

    pub(crate) fn route(&self, sid: SessionId) -> Option<Route> {
        let s = self.sessions.get(sid)?;
        if s.resuming.is_some() {
            return Some(Route::Hold(sid, s.proto()?));
        }
        match &s.at {
            Attach::On(Client::Local(c, p)) => Some(Route::Local(*c, *p)),
            Attach::On(Client::Relayed(r)) => Some(Route::Remote(r.worker, r.rsid, r.proto)),
            Attach::Shadow(sh) => {
                (sh.client == Far::Attached).then_some(Route::Remote(sh.worker, sh.rsid, sh.proto))
            }
            Attach::Away { .. } | Attach::Detached => None,
        }
    }

    pub(crate) fn push_route(&mut self, r: Route, frame: &[u8]) -> bool {
        match r {
            Route::Local(c, _) => self.out.push(c, frame),
            Route::Hold(sid, _) => {
                crate::hub::fanout::hold(&mut self.sessions, sid, frame, self.out.limit)
            }
            Route::Remote(w, rsid, _) => {
                let m = BusMsg::Deliver { sid: rsid, frame };
                self.bus.as_mut().is_some_and(|b| b.send(w, &m))
            }
        }
    }

    /// Queues one message for a session, wherever its connection is.
    pub(crate) fn send_to(&mut self, sid: SessionId, v: &V) -> bool {
        let Some(r) = self.route(sid) else {
            return false;
        };
        if let Route::Local(c, p) = r {
            // Encoded where the loop reads it: no buffer of its own.
            let span = self.out.encode(p, v);
            self.out.send_kept(c, span, false);
            return true;
        }
        let frame = protocol::encode_frame(r.proto(), v);
        self.push_route(r, &frame)
    }

    /// A session with nothing left to wait for: a shadow with no seats, no
    /// rooms it watches and no queue places, or a detached one out of its grace period (a
    /// session in its grace period stays resumable, seats or not).
    pub(crate) fn disposable(&self, sid: SessionId) -> bool {
        let Some(s) = self.sessions.get(sid) else {
            return false;
        };
        match s.at {
            Attach::Shadow(_) => {
                s.seats.is_empty() && s.watching.is_empty() && self.lobby.matcher.queued(sid) == 0
            }
            Attach::Detached => true,
            Attach::On(_) | Attach::Away { .. } => false,
        }
    }

    /// The worker and remote session id a shadow stands for.
    fn shadow_of(&self, sid: SessionId) -> Option<(u32, u64)> {
        self.sessions
            .get(sid)
            .and_then(Session::shadow)
            .map(|sh| (sh.worker, sh.rsid))
    }

    /// On a room's home: tells a shadow's worker its session got or lost a
    /// seat; `closed` is the room's `why` when it lost it because the room
    /// closed.
    pub(crate) fn tell_seat(&mut self, sid: SessionId, name: &str, on: bool, closed: Option<&str>) {
        let Some((w, rsid)) = self.shadow_of(sid) else {
            return;
        };
        let m = BusMsg::Seat {
            sid: rsid,
            on,
            room: name,
            closed,
        };
        if let Some(bus) = self.bus.as_mut() {
            bus.send(w, &m);
        }
    }

    /// On a queue's home: tells a shadow's worker the queues its session
    /// waits in here, so they count against its seat limit there and it
    /// can be told if this worker is lost.
    pub(crate) fn tell_places(&mut self, sid: SessionId) {
        let Some((w, rsid)) = self.shadow_of(sid) else {
            return;
        };
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        let queues: Vec<&str> = self.lobby.matcher.queues_of(sid).collect();
        let m = BusMsg::Places {
            sid: rsid,
            queues: Seq::Items(&queues),
        };
        bus.send(w, &m);
    }

    /// On a session's worker: tells every home where it holds (or is
    /// joining) a seat that it is `AWAY`, or released (`RELEASE`, which
    /// also forgets those seats here).
    pub(crate) fn tell_homes(&mut self, sid: SessionId, k: u8, why: Why) {
        let Some(r) = self.sessions.get_mut(sid).and_then(|s| s.remote.as_mut()) else {
            return;
        };
        // Either ends the session's queue places there.
        let mut homes: Vec<u32> = r
            .seats
            .iter()
            .map(|x| x.0)
            .chain(r.places.drain(..).map(|x| x.0))
            .collect();
        // A join or `match` still on its way is done before this arrives.
        homes.extend(r.seating_homes());
        if k == kind::RELEASE {
            r.seats.clear();
        }
        homes.sort_unstable();
        homes.dedup();
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        let sid = sid.to_bits();
        let m = match k {
            kind::RELEASE => BusMsg::Release { sid, why },
            _ => BusMsg::Away { sid },
        };
        for h in homes {
            bus.send(h, &m);
        }
    }

    /// A session leaves the arena: a shadow leaves the index; homes still
    /// holding seats of a local one let them go.
    pub(crate) fn forget_remote(&mut self, sid: SessionId, s: &Session) {
        if let Some(sh) = s.shadow() {
            if self.shadows.get(&(sh.worker, sh.rsid)) == Some(&sid) {
                self.shadows.remove(&(sh.worker, sh.rsid));
            }
        }
        let Some(r) = s.remote.as_deref() else {
            return;
        };
        let mut homes: Vec<u32> = r
            .seats
            .iter()
            .map(|x| x.0)
            .chain(r.seating_homes())
            .chain(r.places.iter().map(|x| x.0))
            .collect();
        homes.sort_unstable();
        homes.dedup();
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        let m = BusMsg::Release {
            sid: sid.to_bits(),
            why: Why::Disconnect,
        };
        for h in homes {
            bus.send(h, &m);
        }
    }

    /// The home of the room or queue a request is for, when that is another
    /// worker. Invalid names stay here, to be refused by the usual checks.
    pub(crate) fn remote_home(&self, req: &Req) -> Option<u32> {
        let bus = self.bus.as_ref()?;
        let key = match req.t.as_deref()? {
            "join" | "leave" | "pub" | "send" | "props" | "state" | "create" | "kick" => {
                req.room.as_deref()?
            }
            "match" | "unmatch" => req.queue.as_deref()?,
            _ => return None,
        };
        if !valid_name(key) {
            return None;
        }
        let h = home(key, bus.n);
        (h != bus.me).then_some(h)
    }

    /// Sends a request of local session `sid` to the home of its room or
    /// queue, after the checks that need the session (token grant, seat
    /// limit). `payload` is the request as the client sent it.
    pub(crate) fn forward(
        &mut self,
        sid: SessionId,
        home: u32,
        req: &Req,
        payload_proto: Proto,
        payload: &[u8],
    ) -> Result<(), Fail> {
        let t = req.t.as_deref().unwrap_or_default();
        let seating = match t {
            "join" | "match" => true,
            "create" => req.join.unwrap_or(true),
            _ => false,
        };
        let name = req
            .room
            .as_deref()
            .or(req.queue.as_deref())
            .unwrap_or_default();
        if matches!(t, "join" | "create") {
            self.check_grant(sid, name)?;
        }
        let Some(s) = self.sessions.get(sid) else {
            return Ok(());
        };
        let seated = s
            .remote
            .as_ref()
            .is_some_and(|r| r.seats.iter().any(|(h, n)| *h == home && &**n == name));
        if seating && !seated {
            self.check_seat_limit(sid)?;
        }
        let Some(s) = self.sessions.get(sid) else {
            return Ok(());
        };
        let Some(proto) = s.proto() else {
            return Ok(());
        };
        let member = s.member;
        let meta = if seating { s.meta.as_deref() } else { None };
        let gone = || {
            Fail::new(
                Code::Internal,
                format!("the worker of {name:?} is restarting; try again"),
            )
        };
        let m = BusMsg::Req {
            sid: sid.to_bits(),
            member,
            proto,
            meta,
            payload_proto,
            payload,
        };
        let bus = self.bus.as_mut().ok_or_else(gone)?;
        if !bus.send(home, &m) {
            return Err(gone());
        }
        let n = self.next_forwarded;
        self.next_forwarded = n.wrapping_add(1);
        if let Some(s) = self.sessions.get_mut(sid) {
            s.remote
                .get_or_insert_with(Default::default)
                .asked
                .push(Asked {
                    home,
                    rid: req.rid,
                    seating,
                    n,
                    expired: false,
                });
        }
        let at = self.now + Duration::from_millis(self.cfg.peer_timeout_ms.into());
        self.forwarded.push_back((at, sid, n));
        if self.forwarded_timer.is_none() {
            self.forwarded_timer = Some(self.timers.arm(at, Timer::Forwarded));
        }
        Ok(())
    }

    /// `Timer::Forwarded`: a request forwarded to a room's home that has
    /// not answered by `--peer-timeout-ms` (the home is stopped, or too
    /// busy) is answered `internal` here, so no client waits on a `rid`
    /// forever. Whatever the home sends later still arrives. O(requests
    /// due + the session's requests in flight).
    pub(crate) fn forwarded_due(&mut self) {
        self.forwarded_timer = None;
        while let Some(&(at, sid, n)) = self.forwarded.front() {
            if at > self.now {
                self.forwarded_timer = Some(self.timers.arm(at, Timer::Forwarded));
                return;
            }
            self.forwarded.pop_front();
            let Some(r) = self.sessions.get_mut(sid).and_then(|s| s.remote.as_mut()) else {
                continue;
            };
            let Some(a) = r.asked.iter_mut().find(|a| a.n == n && !a.expired) else {
                continue;
            };
            a.expired = true;
            let (home, rid) = (a.home, a.rid);
            warn!(
                "w={} worker {home} did not answer a forwarded request in time",
                self.id
            );
            let f = Fail::new(
                Code::Internal,
                "the worker of that room or queue did not answer in time; try again",
            );
            self.metrics.error(f.code);
            self.send_to(sid, &err_v(rid, &f));
        }
    }

    /// Sends the query `ask` makes of its id to every other worker with a
    /// link up. Returns the query id and the workers asked; when none was,
    /// the caller answers at once and the id is not used up. Ids come from
    /// one counter for every kind.
    pub(crate) fn ask_all(&mut self, ask: impl Fn(u32) -> BusMsg<'static>) -> (u32, Vec<u32>) {
        let qid = self.next_list;
        let m = ask(qid);
        let mut waiting = Vec::new();
        if let Some(bus) = self.bus.as_mut() {
            for p in 0..bus.n {
                if bus.send(p, &m) {
                    waiting.push(p);
                }
            }
        }
        if !waiting.is_empty() {
            self.next_list = self.next_list.wrapping_add(1);
        }
        (qid, waiting)
    }

    /// `list` (or a `lobby` snapshot) with the rooms homed here in hand:
    /// asks the other workers for theirs with the filter `(state,
    /// has_space, limit)`, and answers once all have (or were lost).
    pub(crate) fn gather_list(
        &mut self,
        (sid, rid, lobby): (SessionId, Option<u32>, bool),
        (want, space, limit): (Option<RoomState>, bool, u16),
        rooms: Vec<ListedRoom>,
    ) {
        let (qid, waiting) = self.ask_all(|qid| BusMsg::ListReq {
            qid,
            state: want,
            has_space: space,
            limit,
        });
        if waiting.is_empty() {
            self.list_done(sid, rid, &rooms, lobby, &[]);
            return;
        }
        self.lists.insert(
            qid,
            PendingList {
                sid,
                rid,
                lobby,
                missing: Vec::new(),
                limit,
                waiting,
                rooms,
            },
        );
        self.await_answers(qid);
    }

    /// Query `qid` (to other workers) is answered by the deadline
    /// (`--peer-timeout-ms`), with or without every part.
    pub(crate) fn await_answers(&mut self, qid: u32) {
        let at = self.now + std::time::Duration::from_millis(self.cfg.peer_timeout_ms.into());
        self.query_deadlines.push_back((at, qid));
        if self.query_timer.is_none() {
            self.query_timer = Some(self.timers.arm(at, Timer::Queries));
        }
    }

    /// `Timer::Queries`: every query past its deadline is answered with
    /// what came, as if the workers still waited for had been lost.
    pub(crate) fn queries_due(&mut self) {
        self.query_timer = None;
        while let Some(&(at, qid)) = self.query_deadlines.front() {
            if at > self.now {
                self.query_timer = Some(self.timers.arm(at, Timer::Queries));
                return;
            }
            self.query_deadlines.pop_front();
            let waiting: Vec<u32> = match (self.lists.get(&qid), self.api_waits.get(&qid)) {
                (Some(l), _) => l.waiting.clone(),
                (None, Some(w)) => w.waiting(),
                (None, None) => continue,
            };
            for p in waiting {
                warn!(
                    "w={} worker {p} did not answer query {qid} in time",
                    self.id
                );
                self.list_answered(qid, p, None);
                self.api_answered(qid, p, None);
            }
        }
    }

    /// The merged answer is in: `rooms` (naming the workers `missing`
    /// from it), and for a lobby, what it held.
    fn list_done(
        &mut self,
        sid: SessionId,
        rid: Option<u32>,
        rooms: &[ListedRoom],
        lobby: bool,
        missing: &[u32],
    ) {
        self.send_list(sid, rid, rooms, missing);
        if lobby {
            self.lobby_snapshot_sent(sid);
        }
    }

    /// Worker `p`'s part of list `qid` (`None`: it was lost, or its time
    /// is up).
    fn list_answered(&mut self, qid: u32, p: u32, rooms: Option<Vec<ListedRoom>>) {
        let Some(l) = self.lists.get_mut(&qid) else {
            return;
        };
        if !l.waiting.contains(&p) {
            return;
        }
        l.waiting.retain(|&w| w != p);
        match rooms {
            Some(rooms) => {
                let room = (l.limit as usize).saturating_sub(l.rooms.len());
                l.rooms.extend(rooms.into_iter().take(room));
            }
            None => l.missing.push(p),
        }
        if l.waiting.is_empty() {
            if let Some(l) = self.lists.remove(&qid) {
                self.list_done(l.sid, l.rid, &l.rooms, l.lobby, &l.missing);
            }
        }
    }

    /// Input: one message from worker `p` (`METRICS_REQ` is the loop's to
    /// answer: the figures are its and the core's).
    pub fn on_bus(&mut self, p: u32, m: BusMsg) {
        let invalid = |kind, what| BusError::Invalid { kind, what };
        match m {
            BusMsg::Req {
                sid,
                member,
                proto,
                meta,
                payload_proto,
                payload,
            } => self.on_req(p, (sid, member, proto, meta), payload_proto, payload),
            BusMsg::Deliver { sid, frame } => {
                self.deliver(p, sid, frame);
            }
            BusMsg::Fanout(groups) => {
                for (frame, ids) in groups.iter() {
                    // Kept once for every connection here that gets it.
                    let mut kept = None;
                    for rsid in ids.iter() {
                        let sid = SessionId::from_bits(rsid);
                        if let Some(Route::Local(c, _)) = self.deliverable(p, sid) {
                            let span = *kept.get_or_insert_with(|| self.out.keep(frame));
                            self.out.send_kept(c, span, true);
                        } else if self.deliver(p, rsid, frame) {
                            self.metrics.deliveries += 1;
                        }
                    }
                }
            }
            BusMsg::Outcome { sid, code } => self.on_outcome(p, SessionId::from_bits(sid), code),
            BusMsg::Seat {
                sid,
                on,
                room,
                closed,
            } => self.on_seat(p, sid, on, room, closed),
            BusMsg::LobbyUpd(rooms) => self.on_lobby_upd(rooms),
            BusMsg::LobbyInterest { on } => self.on_lobby_interest(p, on),
            BusMsg::Places { sid, queues } => {
                let queues = queues.iter().map(Box::<str>::from).collect();
                self.on_places(p, sid, queues);
            }
            BusMsg::Away { sid: rsid } => {
                if let Some(&sid) = self.shadows.get(&(p, rsid)) {
                    self.shadow_away(sid);
                    if self.disposable(sid) {
                        self.free_session(sid);
                    }
                }
            }
            BusMsg::Rejoin {
                sid,
                epoch,
                proto,
                budget,
                last,
            } => self.on_rejoin(p, (sid, epoch, proto, budget), last),
            BusMsg::Rejoined {
                sid,
                epoch,
                rooms,
                frames,
            } => self.on_rejoined(p, (sid, epoch), rooms, frames),
            BusMsg::Resume(ask) => self.on_resume_ask(p, ask),
            BusMsg::Resumed { bsid, asid } => self.on_resumed(p, bsid, asid),
            BusMsg::RReq {
                asid,
                bsid,
                proto,
                payload,
            } => self.on_relayed_request(p, (asid, bsid), proto, payload),
            BusMsg::Detach { asid, bsid, reason } => match CloseReason::from_index(reason) {
                Some(reason) => self.on_relay_detached(p, asid, bsid, reason),
                None => skip(self.id, p, invalid(kind::DETACH, "close reason"), 0),
            },
            BusMsg::Kick { bsid, reason } => match CloseReason::from_index(reason) {
                Some(reason) => self.on_kick(p, bsid, reason),
                None => skip(self.id, p, invalid(kind::KICK, "close reason"), 0),
            },
            BusMsg::Release { sid: rsid, why } => {
                if let Some(&sid) = self.shadows.get(&(p, rsid)) {
                    self.release_session(sid, why);
                }
            }
            BusMsg::ListReq {
                qid,
                state,
                has_space,
                limit,
            } => {
                let mut rooms = Vec::new();
                self.list_rooms(state, has_space, limit, &mut rooms);
                let listed: Vec<Listed> = rooms
                    .iter()
                    .map(|r| Listed {
                        name: &r.name,
                        members: r.members,
                        max: r.max,
                        state: r.state,
                        watchers: r.watchers,
                    })
                    .collect();
                let m = BusMsg::ListResp {
                    qid,
                    rooms: Seq::Items(&listed),
                };
                if let Some(bus) = self.bus.as_mut() {
                    bus.send(p, &m);
                }
            }
            BusMsg::ListResp { qid, rooms } => {
                let rooms = rooms
                    .iter()
                    .map(|r| ListedRoom {
                        name: r.name.into(),
                        members: r.members,
                        max: r.max,
                        state: r.state,
                        watchers: r.watchers,
                    })
                    .collect();
                self.list_answered(qid, p, Some(rooms));
            }
            BusMsg::ApiReq {
                qid,
                method,
                path,
                body,
            } => self.api_remote(p, qid, method, path, body),
            // The loop's: its answer has figures of the loop's, and a
            // handed-off connection is the loop's to take.
            BusMsg::Moved { key, to } => self.on_moved(p, key, to),
            // The loop's (it holds the sockets).
            BusMsg::MetricsReq { .. } | BusMsg::Handoff { .. } | BusMsg::Move(_) => {}
            BusMsg::ApiResp { qid, status, body }
            | BusMsg::MetricsResp {
                qid,
                status,
                text: body,
            } => self.api_answered(qid, p, Some((status, body))),
        }
    }

    /// A frame from worker `p` for session `rsid` of this worker: queued
    /// wherever its client is (here, or relayed on), or held while it
    /// resumes; dropped while it is away, and while a resume waits for
    /// `p`'s answer (which replays what these frames carried).
    fn deliver(&mut self, p: u32, rsid: u64, frame: &[u8]) -> bool {
        match self.deliverable(p, SessionId::from_bits(rsid)) {
            Some(r) => self.push_route(r, frame),
            None => false,
        }
    }

    /// Where a frame from worker `p` for session `sid` goes (see
    /// [`Hub::deliver`]).
    fn deliverable(&self, p: u32, sid: SessionId) -> Option<Route> {
        let s = self.sessions.get(sid)?;
        if s.resuming.as_ref().is_some_and(|r| r.waiting.contains(&p)) {
            return None;
        }
        self.route(sid)
    }

    /// On a home: a forwarded request, run on the shadow of its session
    /// (`rsid` of `p`, with its member id, subprotocol and `meta`).
    fn on_req(
        &mut self,
        p: u32,
        (rsid, member, proto, meta): (u64, u64, Proto, Option<&[u8]>),
        payload_proto: Proto,
        payload: &[u8],
    ) {
        let sid = self.shadow_for(p, rsid, member, proto, meta);
        let code = match protocol::decode(payload_proto, payload) {
            Ok(req) => {
                let code = match self.dispatch(None, sid, &req) {
                    Ok(()) => 0,
                    Err(f) => self.fail_remote(sid, req.rid, f),
                };
                if matches!(req.t.as_deref(), Some("match" | "unmatch")) {
                    self.tell_places(sid);
                }
                code
            }
            Err((rid, f)) => self.fail_remote(sid, rid, f),
        };
        if let Some(bus) = self.bus.as_mut() {
            bus.send(p, &BusMsg::Outcome { sid: rsid, code });
        }
        if self.disposable(sid) {
            self.free_session(sid);
        }
    }

    /// Answers a request of a session that has no connection here (a
    /// shadow, or a relayed session) with an error; returns the `OUTCOME`
    /// code: 1 for bad input (counted by the connection's worker), 2 else.
    pub(crate) fn fail_remote(&mut self, sid: SessionId, rid: Option<u32>, f: Fail) -> u8 {
        self.metrics.error(f.code);
        self.send_to(sid, &err_v(rid, &f));
        if f.code.is_bad_input() {
            1
        } else {
            2
        }
    }

    fn shadow_for(
        &mut self,
        p: u32,
        rsid: u64,
        member: u64,
        proto: Proto,
        meta: Option<&[u8]>,
    ) -> SessionId {
        if let Some(&sid) = self.shadows.get(&(p, rsid)) {
            if let Some(s) = self.sessions.get_mut(sid) {
                if let Some(m) = meta {
                    s.meta = Some(m.into());
                }
                return sid;
            }
        }
        let shadow = Shadow {
            worker: p,
            rsid,
            proto,
            client: Far::Attached,
        };
        let mut s = Session::fresh(member, [0; 16], Attach::Shadow(Box::new(shadow)));
        s.meta = meta.map(Into::into);
        s.hello_done = true;
        let sid = self.sessions.insert(s);
        self.shadows.insert((p, rsid), sid);
        sid
    }

    /// On a session's worker: a forwarded request is done. Bad input counts
    /// toward the connection's bad-request limit as it does here.
    fn on_outcome(&mut self, p: u32, sid: SessionId, code: u8) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        if let Some(r) = s.remote.as_mut() {
            // Each link is FIFO: this answers the oldest request sent to `p`.
            if let Some(i) = r.asked.iter().position(|a| a.home == p) {
                r.asked.remove(i);
            }
        }
        let Some((cid, _)) = s.conn() else {
            // Relayed: the connection's worker keeps the count.
            if let (Some(r), Some(bus)) = (s.relay(), self.bus.as_mut()) {
                bus.send(r.worker, &BusMsg::Outcome { sid: r.rsid, code });
            }
            return;
        };
        self.out.outcome(cid, code == 1);
    }

    /// A local session that can hold seats and places elsewhere: not one
    /// that only stands in for a resumed session of another worker.
    fn holder_mut(&mut self, sid: SessionId) -> Option<&mut Session> {
        self.sessions
            .get_mut(sid)
            .filter(|s| s.proxy.as_deref().is_none_or(|x| x.sid.is_none()))
    }

    /// The session ended (or now only stands in for a resumed one) while
    /// a join or a queue place of it was on its way to home `p`: let it go.
    fn release_stray(&mut self, p: u32, rsid: u64) {
        let m = BusMsg::Release {
            sid: rsid,
            why: Why::Left,
        };
        if let Some(bus) = self.bus.as_mut() {
            bus.send(p, &m);
        }
    }

    /// On a session's worker: a home seated it or let it go (`closed`: the
    /// room closed; a session away hears of it when it resumes).
    fn on_seat(&mut self, p: u32, rsid: u64, on: bool, name: &str, closed: Option<&str>) {
        let sid = SessionId::from_bits(rsid);
        let Some(s) = self.holder_mut(sid) else {
            if on {
                self.release_stray(p, rsid);
            }
            return;
        };
        let attached = s.attached();
        let r = s.remote.get_or_insert_with(Default::default);
        let at = r.seats.iter().position(|(h, n)| *h == p && &**n == name);
        match (on, at) {
            (true, None) => r.seats.push((p, name.into())),
            (false, Some(i)) => {
                r.seats.swap_remove(i);
                if let Some(why) = closed {
                    match s.resuming.as_deref_mut() {
                        // Its `closed` frame is dropped until `p` answers
                        // the resume, which will not list the room.
                        Some(rs) if rs.waiting.contains(&p) => {
                            rs.rooms.push((name.into(), Part::Closed(why.into())));
                        }
                        _ if !attached => s.closed.push((name.into(), why.into())),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        if !on && self.disposable(sid) {
            self.free_session(sid);
        }
    }

    /// On a session's worker: the queues homed on `p` the session waits
    /// in.
    fn on_places(&mut self, p: u32, rsid: u64, queues: Vec<Box<str>>) {
        let sid = SessionId::from_bits(rsid);
        let Some(s) = self.holder_mut(sid) else {
            if !queues.is_empty() {
                self.release_stray(p, rsid);
            }
            return;
        };
        if !s.attached() {
            // Its connection ended after this was sent: the `AWAY` on its
            // way there ends those places.
            return;
        }
        let r = s.remote.get_or_insert_with(Default::default);
        r.places.retain(|x| x.0 != p);
        r.places.extend(queues.into_iter().map(|q| (p, q)));
    }

    /// On a home: the connection of the session shadow `sid` stands for
    /// went away (`back` comes with `REJOIN`, see `resume`).
    fn shadow_away(&mut self, sid: SessionId) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        let member = s.member;
        let was = s.shadow().is_some_and(|sh| sh.client == Far::Attached);
        if let Some(sh) = s.shadow_mut() {
            sh.client = Far::Away;
        }
        let seats = s.seats.clone();
        if was {
            self.watch_attach(sid, false);
        }
        self.unqueue(sid);
        self.announce(&seats, member, Presence::Away);
    }

    /// Input: worker `p` is lost (its link ended: it died, or it was too
    /// slow and the link was dropped). Rooms homed there are lost to members here;
    /// shadows of its sessions are disconnected (grace period, then
    /// `leave`); a `list` waiting for it goes on without it.
    pub fn peer_lost(&mut self, p: u32) {
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        if !bus.up(p) {
            return;
        }
        bus.up &= !(1 << p);
        if let Some(b) = bus.bufs.get_mut(p as usize) {
            *b = Vec::new();
        }
        bus.pending.retain(|&x| x != p);
        self.on_lobby_interest(p, false);
        self.moves_peer_lost(p);
        // Local sessions with seats in rooms homed there, relayed through
        // it, standing in for its sessions, or resuming and waiting for it.
        // A scan of the sessions, once per lost worker.
        for sid in self.sessions.ids() {
            self.relay_peer_lost(p, sid);
            let mut lost = Vec::new();
            let attached = self.sessions.get(sid).is_some_and(|s| s.attached());
            let (mut unanswered, mut unqueued) = (Vec::new(), Vec::new());
            if let Some(r) = self.sessions.get_mut(sid).and_then(|s| s.remote.as_mut()) {
                r.asked.retain(|a| {
                    if a.home == p && !a.expired {
                        unanswered.push(a.rid);
                    }
                    a.home != p
                });
                r.places.retain(|(h, q)| {
                    if *h == p {
                        unqueued.push(q.clone());
                    }
                    *h != p
                });
                r.seats.retain(|(h, n)| {
                    if *h == p {
                        lost.push(n.clone());
                    }
                    *h != p
                });
            }
            for rid in unanswered {
                let f = Fail::new(
                    Code::Internal,
                    "the worker of that room or queue was lost; try again",
                );
                self.metrics.error(f.code);
                self.send_to(sid, &err_v(rid, &f));
            }
            for queue in unqueued {
                self.send_to(sid, &out::match_timeout(&queue));
            }
            for name in lost {
                if !attached {
                    if let Some(s) = self.sessions.get_mut(sid) {
                        s.closed.push((name.clone(), "lost".into()));
                    }
                }
                self.send_to(sid, &out::closed(&name, "lost"));
            }
            self.resume_peer_lost(p, sid);
            if self.disposable(sid) {
                self.free_session(sid);
            }
        }
        // Shadows of its sessions.
        let mut shadows: Vec<SessionId> = Vec::new();
        self.shadows.retain(|&(w, _), &mut sid| {
            if w == p {
                shadows.push(sid);
            }
            w != p
        });
        let grace = self.cfg.grace();
        for sid in shadows {
            if grace.is_zero() {
                self.release_session(sid, Why::Disconnect);
                continue;
            }
            self.shadow_away(sid);
            let t = self.timers.arm(self.now + grace, Timer::Grace(sid));
            let old = self
                .sessions
                .get_mut(sid)
                .and_then(|s| s.go_away(t, Why::Disconnect));
            if let Some(old) = old {
                self.timers.cancel(old);
            }
        }
        let qids: Vec<u32> = self.lists.keys().copied().collect();
        for qid in qids {
            self.list_answered(qid, p, None);
        }
        let qids: Vec<u32> = self.api_waits.keys().copied().collect();
        for qid in qids {
            self.api_answered(qid, p, None);
        }
    }
}

/// A message of `len` bytes from worker `p` that does not parse (seen by
/// worker `w`): logged and skipped; the link goes on.
pub fn skip(w: u32, p: u32, e: BusError, len: usize) {
    match e {
        BusError::Truncated { kind } => {
            warn!("w={w} truncated bus message kind {kind} ({len} bytes) from worker {p}: skipped")
        }
        BusError::UnknownKind(k) => {
            warn!("w={w} unknown bus message kind {k} from worker {p}: skipped")
        }
        BusError::Invalid { kind, what } => {
            warn!("w={w} bad bus message kind {kind} from worker {p} ({what}): skipped")
        }
    }
}
