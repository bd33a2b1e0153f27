//! Rooms across workers: what the bus messages (see `bus`) mean to a worker.
//!
//! Every room and matchmaking queue lives on one worker, its home
//! ([`bus::home`] of its name; a name the server picks is picked so its home
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
//! Invariants: `Worker::shadows` maps (worker, remote session) to the shadow
//! session standing for it while that worker's link is up; a local
//! session's `remote.seats` mirrors the `SEAT` messages of each home, in
//! link order.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use log::{debug, info, warn};
use mio::unix::SourceFd;
use mio::{Interest, Token};

use crate::bus::{self, kind, Bus, Link, ReadEnd};
use crate::conn::{CloseReason, ConnId};
use crate::hub::bus_msg::{BusError, BusMsg, Listed, Seq};
use crate::hub::lookup::ListedRoom;
use crate::hub::out::{self, Presence};
use crate::ipc::{Control, FromSupervisor, ToSupervisor};
use crate::protocol::{self, err_v, Code, Fail, Proto, Req, V};
use crate::room::{valid_name, RoomState, Why};
use crate::session::{Asked, Attach, Client, Far, Part, Session, SessionId, Shadow, MEMBER_BITS};
use crate::worker::{Timer, Worker};

pub(crate) const CONTROL: Token = Token(usize::MAX - 3);
/// Link to peer `p` is `Token(LINK_BASE + p)` (at most 64 workers).
const LINK_BASE: usize = usize::MAX - 200;
/// How often a worker tells the supervisor it is alive.
const ALIVE_EVERY: Duration = Duration::from_secs(1);

pub(crate) fn link_of(t: Token) -> Option<u32> {
    (t.0 >= LINK_BASE && t.0 < LINK_BASE + 64).then(|| (t.0 - LINK_BASE) as u32)
}

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
pub(crate) struct PendingList {
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

impl Worker {
    /// Joins the workers of a supervisor: registers the control channel and
    /// the links, numbers members from this incarnation, and tells the
    /// supervisor this worker is ready.
    pub fn attach_cluster(
        &mut self,
        workers: u32,
        incarnation: u32,
        control: Control,
        peers: Vec<Option<std::os::unix::net::UnixStream>>,
    ) -> io::Result<()> {
        self.poll.registry().register(
            &mut SourceFd(&control.as_raw_fd()),
            CONTROL,
            Interest::READABLE,
        )?;
        self.hub.next_member = (u64::from(incarnation) << MEMBER_BITS) | 1;
        self.bus = Some(Bus {
            me: self.id,
            n: workers,
            links: (0..workers).map(|_| None).collect(),
            control,
            pending: Vec::new(),
            read_more: Vec::new(),
            overflow: Vec::new(),
            out_limit: usize::try_from(self.cfg.bus_buffer).unwrap_or(usize::MAX),
            bytes_in: 0,
            bytes_out: 0,
            msgs_in: 0,
            msgs_out: 0,
            peers_lost: 0,
        });
        for (p, sock) in peers.into_iter().enumerate() {
            if let Some(sock) = sock {
                self.install_link(p as u32, sock)?;
            }
        }
        self.timers.arm(self.now + ALIVE_EVERY, Timer::Alive);
        if let Some(bus) = &self.bus {
            bus.control.send(ToSupervisor::Ready)?;
        }
        info!(
            "w={} one of {workers} workers (incarnation {incarnation})",
            self.id
        );
        Ok(())
    }

    fn install_link(&mut self, p: u32, sock: std::os::unix::net::UnixStream) -> io::Result<()> {
        sock.set_nonblocking(true)?;
        let mut sock = mio::net::UnixStream::from_std(sock);
        self.poll.registry().register(
            &mut sock,
            Token(LINK_BASE + p as usize),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let Some(slot) = self.bus.as_mut().and_then(|b| b.links.get_mut(p as usize)) else {
            return Ok(());
        };
        *slot = Some(Link::new(sock));
        debug!("w={} link to worker {p} up", self.id);
        // Edge-triggered: input sent before registration raises no event.
        self.on_link(p);
        Ok(())
    }

    pub(crate) fn workers(&self) -> u32 {
        self.bus.as_ref().map_or(1, |b| b.n)
    }

    /// The home of `name` when that is another worker.
    pub(crate) fn remote_home_of(&self, name: &str) -> Option<u32> {
        let bus = self.bus.as_ref()?;
        let h = bus::home(name, bus.n);
        (h != bus.me).then_some(h)
    }

    pub(crate) fn homed_here(&self, name: &str) -> bool {
        self.bus
            .as_ref()
            .is_none_or(|b| bus::home(name, b.n) == b.me)
    }

    pub(crate) fn bus_busy(&self) -> bool {
        self.bus
            .as_ref()
            .is_some_and(|b| !b.pending.is_empty() || !b.read_more.is_empty())
    }

    /// Where output for `sid` goes: its connection, the worker its
    /// connection is on (relayed), or its worker when it is a shadow; held
    /// while it resumes; `None` while it is away.
    pub(crate) fn route(&self, sid: SessionId) -> Option<Route> {
        let s = self.hub.sessions.get(sid)?;
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
            Route::Local(c, _) => self.conns.push(c, frame),
            Route::Hold(sid, _) => {
                crate::hub::fanout::hold(&mut self.hub.sessions, sid, frame, self.conns.out_limit)
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
        let frame = protocol::encode_frame(r.proto(), v);
        self.push_route(r, &frame)
    }

    /// A session with nothing left to wait for: a shadow with no seats, no
    /// rooms it watches and no queue places, or a detached one out of its grace period (a
    /// session in its grace period stays resumable, seats or not).
    pub(crate) fn disposable(&self, sid: SessionId) -> bool {
        let Some(s) = self.hub.sessions.get(sid) else {
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
        self.hub
            .sessions
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
        let Some(r) = self
            .hub
            .sessions
            .get_mut(sid)
            .and_then(|s| s.remote.as_mut())
        else {
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
            if self.hub.shadows.get(&(sh.worker, sh.rsid)) == Some(&sid) {
                self.hub.shadows.remove(&(sh.worker, sh.rsid));
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
        let h = bus::home(key, bus.n);
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
        let Some(s) = self.hub.sessions.get(sid) else {
            return Ok(());
        };
        let seated = s
            .remote
            .as_ref()
            .is_some_and(|r| r.seats.iter().any(|(h, n)| *h == home && &**n == name));
        if seating && !seated {
            self.check_seat_limit(sid)?;
        }
        let Some(s) = self.hub.sessions.get(sid) else {
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
        if let Some(s) = self.hub.sessions.get_mut(sid) {
            s.remote
                .get_or_insert_with(Default::default)
                .asked
                .push(Asked {
                    home,
                    rid: req.rid,
                    seating,
                });
        }
        Ok(())
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

    /// The control channel is readable: new links from the supervisor.
    pub(crate) fn on_control(&mut self) {
        loop {
            let Some(bus) = self.bus.as_ref() else {
                return;
            };
            match bus.control.recv() {
                Ok(Some(FromSupervisor::Peer { id, link })) => {
                    self.replace_link(id, link);
                }
                Ok(None) => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("w={} supervisor gone ({e}): draining", self.id);
                    if let Some(bus) = self.bus.as_ref() {
                        let fd = bus.control.as_raw_fd();
                        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                    }
                    self.start_drain();
                    return;
                }
            }
        }
    }

    /// A new link to `p` replaces any old one: what the old one still holds
    /// is read and handled first, then `p` counts as lost (its new life
    /// starts with nothing of the old one's).
    fn replace_link(&mut self, p: u32, sock: std::os::unix::net::UnixStream) {
        if p >= self.workers() || p == self.id {
            warn!(
                "w={} supervisor sent a link to worker {p}: ignored",
                self.id
            );
            return;
        }
        if self.bus.as_ref().is_some_and(|b| b.up(p)) {
            for _ in 0..1024 {
                if !self.read_link(p) {
                    break;
                }
            }
            self.peer_lost(p, "replaced");
        }
        match self.install_link(p, sock) {
            Ok(()) => self.lobby_link_up(p),
            Err(e) => warn!("w={} link to worker {p}: {e}", self.id),
        }
    }

    pub(crate) fn on_link_event(&mut self, p: u32, ev: &mio::event::Event) {
        if ev.is_writable() {
            if let Some(bus) = self.bus.as_mut() {
                if let Some(Some(l)) = bus.links.get_mut(p as usize) {
                    if !l.out.is_empty() && !l.pending {
                        l.pending = true;
                        bus.pending.push(p);
                    }
                }
            }
        }
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.on_link(p);
        }
    }

    /// Reads and handles what link `p` has (up to the per-turn cap).
    pub(crate) fn on_link(&mut self, p: u32) {
        if self.read_link(p) {
            if let Some(bus) = self.bus.as_mut() {
                if let Some(Some(l)) = bus.links.get_mut(p as usize) {
                    if !l.read_more {
                        l.read_more = true;
                        bus.read_more.push(p);
                    }
                }
            }
        }
    }

    /// Links whose reads stopped at the cap last turn.
    pub(crate) fn read_links_more(&mut self) {
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        for p in std::mem::take(&mut bus.read_more) {
            if let Some(Some(l)) = self.bus.as_mut().and_then(|b| b.links.get_mut(p as usize)) {
                l.read_more = false;
                self.on_link(p);
            }
        }
    }

    /// One read of link `p` and the messages it completed. Returns true when
    /// more input may be waiting.
    fn read_link(&mut self, p: u32) -> bool {
        let mut chunk = std::mem::take(&mut self.rbuf);
        if chunk.is_empty() {
            chunk = vec![0; 64 * 1024];
        }
        let res = self
            .bus
            .as_mut()
            .and_then(|b| b.links.get_mut(p as usize))
            .and_then(|l| l.as_mut())
            .map(|l| l.read(&mut chunk));
        self.rbuf = chunk;
        let Some((end, n)) = res else {
            return false;
        };
        if let Some(bus) = self.bus.as_mut() {
            bus.bytes_in += n as u64;
        }
        let mut inbuf = match self
            .bus
            .as_mut()
            .and_then(|b| b.links.get_mut(p as usize))
            .and_then(|l| l.as_mut())
        {
            Some(l) => std::mem::take(&mut l.inbuf),
            None => return false,
        };
        let mut pos = 0;
        let mut broken = false;
        loop {
            match bus::split(&inbuf[pos..]) {
                Ok(Some((m, used))) => {
                    pos += used;
                    if let Some(bus) = self.bus.as_mut() {
                        bus.msgs_in += 1;
                    }
                    match BusMsg::decode(m) {
                        Ok(m) => self.on_bus(p, m),
                        Err(e) => self.skip_bus_message(p, e, m.len()),
                    }
                }
                Ok(None) => break,
                Err(len) => {
                    warn!("w={} bus message of {len} bytes from worker {p}", self.id);
                    broken = true;
                    break;
                }
            }
        }
        inbuf.drain(..pos);
        if broken {
            self.peer_lost(p, "bad message");
            return false;
        }
        if let Some(Some(l)) = self.bus.as_mut().and_then(|b| b.links.get_mut(p as usize)) {
            l.inbuf = inbuf;
        }
        match end {
            ReadEnd::Drained => false,
            ReadEnd::Capped => true,
            ReadEnd::Gone => {
                self.peer_lost(p, "link closed");
                false
            }
        }
    }

    /// A message of `len` bytes from peer `p` that does not parse: logged
    /// and skipped; the link goes on.
    fn skip_bus_message(&self, p: u32, e: BusError, len: usize) {
        let w = self.id;
        match e {
            BusError::Truncated { kind } => warn!(
                "w={w} truncated bus message kind {kind} ({len} bytes) from worker {p}: skipped"
            ),
            BusError::UnknownKind(k) => {
                warn!("w={w} unknown bus message kind {k} from worker {p}: skipped")
            }
            BusError::Invalid { kind, what } => {
                warn!("w={w} bad bus message kind {kind} from worker {p} ({what}): skipped")
            }
        }
    }

    /// One message from peer `p`.
    fn on_bus(&mut self, p: u32, m: BusMsg) {
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
                    for rsid in ids.iter() {
                        if self.deliver(p, rsid, frame) {
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
                if let Some(&sid) = self.hub.shadows.get(&(p, rsid)) {
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
                None => self.skip_bus_message(p, invalid(kind::DETACH, "close reason"), 0),
            },
            BusMsg::Kick { bsid, reason } => match CloseReason::from_index(reason) {
                Some(reason) => self.on_kick(p, bsid, reason),
                None => self.skip_bus_message(p, invalid(kind::KICK, "close reason"), 0),
            },
            BusMsg::Release { sid: rsid, why } => {
                if let Some(&sid) = self.hub.shadows.get(&(p, rsid)) {
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
                self.hub.list_rooms(state, has_space, limit, &mut rooms);
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
            BusMsg::MetricsReq { qid } => {
                let text = self.metrics.render(&self.gauges());
                let m = BusMsg::MetricsResp {
                    qid,
                    status: 200,
                    text: text.as_bytes(),
                };
                if let Some(bus) = self.bus.as_mut() {
                    bus.send(p, &m);
                }
            }
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
        let sid = SessionId::from_bits(rsid);
        let Some(s) = self.hub.sessions.get(sid) else {
            return false;
        };
        if s.resuming.as_ref().is_some_and(|r| r.waiting.contains(&p)) {
            return false;
        }
        match self.route(sid) {
            Some(r) => self.push_route(r, frame),
            None => false,
        }
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
        if let Some(&sid) = self.hub.shadows.get(&(p, rsid)) {
            if let Some(s) = self.hub.sessions.get_mut(sid) {
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
        let sid = self.hub.sessions.insert(s);
        self.hub.shadows.insert((p, rsid), sid);
        sid
    }

    /// On a session's worker: a forwarded request is done. Bad input counts
    /// toward the connection's bad-request limit as it does here.
    fn on_outcome(&mut self, p: u32, sid: SessionId, code: u8) {
        let max = self.cfg.max_bad_requests;
        let Some(s) = self.hub.sessions.get_mut(sid) else {
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
        let Some(ws) = self.conn_ws(cid) else {
            return;
        };
        if code == 1 {
            ws.bad += 1;
            if ws.bad >= max {
                warn!("w={} conn={cid:?} {max} bad requests in a row", self.id);
                self.close_conn(cid, CloseReason::BadRequests);
            }
        } else {
            ws.bad = 0;
        }
    }

    /// A local session that can hold seats and places elsewhere: not one
    /// that only stands in for a resumed session of another worker.
    fn holder_mut(&mut self, sid: SessionId) -> Option<&mut Session> {
        self.hub
            .sessions
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
        let Some(s) = self.hub.sessions.get_mut(sid) else {
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

    /// Link `p` is gone. Rooms homed there are lost to members here;
    /// shadows of its sessions are disconnected (grace period, then
    /// `leave`); a `list` waiting for it goes on without it.
    pub(crate) fn peer_lost(&mut self, p: u32, why: &str) {
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        let Some(mut link) = bus.links.get_mut(p as usize).and_then(Option::take) else {
            return;
        };
        bus.peers_lost += 1;
        self.on_lobby_interest(p, false);
        let _ = self.poll.registry().deregister(&mut link.sock);
        drop(link);
        warn!("w={} lost worker {p} ({why})", self.id);
        // Local sessions with seats in rooms homed there, relayed through
        // it, standing in for its sessions, or resuming and waiting for it.
        // A scan of the sessions, once per lost worker.
        for sid in self.hub.sessions.ids() {
            self.relay_peer_lost(p, sid);
            let mut lost = Vec::new();
            let attached = self.hub.sessions.get(sid).is_some_and(|s| s.attached());
            let (mut unanswered, mut unqueued) = (Vec::new(), Vec::new());
            if let Some(r) = self
                .hub
                .sessions
                .get_mut(sid)
                .and_then(|s| s.remote.as_mut())
            {
                r.asked.retain(|a| {
                    if a.home == p {
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
                    if let Some(s) = self.hub.sessions.get_mut(sid) {
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
        self.hub.shadows.retain(|&(w, _), &mut sid| {
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
                .hub
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

    /// Writes queued bus output; drops links that passed their limit and
    /// asks the supervisor for new ones.
    pub(crate) fn flush_bus(&mut self) {
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        let mut dead = Vec::new();
        for p in std::mem::take(&mut bus.pending) {
            let Some(Some(l)) = bus.links.get_mut(p as usize) else {
                continue;
            };
            l.pending = false;
            let (n, ok) = l.flush();
            bus.bytes_out += n as u64;
            if !ok {
                dead.push(p);
            } else if !l.out.is_empty() && n >= bus::WRITE_CAP {
                l.pending = true;
                bus.pending.push(p);
            }
        }
        let overflow = std::mem::take(&mut bus.overflow);
        for p in dead {
            self.peer_lost(p, "write failed");
        }
        for p in overflow {
            warn!(
                "w={} link to worker {p} passed --bus-buffer: dropping it",
                self.id
            );
            self.peer_lost(p, "slow");
            if let Some(bus) = self.bus.as_ref() {
                if let Err(e) = bus.control.send(ToSupervisor::Relink(p)) {
                    warn!("w={} asking for a new link: {e}", self.id);
                }
            }
        }
    }

    /// `Timer::Alive`.
    pub(crate) fn alive(&mut self) {
        if let Some(bus) = self.bus.as_ref() {
            if let Err(e) = bus.control.send(ToSupervisor::Alive) {
                debug!("w={} alive: {e}", self.id);
            }
            self.timers.arm(self.now + ALIVE_EVERY, Timer::Alive);
        }
    }
}
