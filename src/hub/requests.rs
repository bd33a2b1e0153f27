//! Client requests (PROTOCOL.md "Requests and replies"), and the room and
//! session lifecycle they drive: joining, leaving, the grace period, idle
//! rooms, closing rooms. Every handler returns `Result<(), Fail>`; the error
//! goes back to the client as `err` with the request's `rid`.
//!
//! Fan-out goes through `fanout::fan_out` (the `broadcast!` macro): targets
//! are gathered from the room's members (`hub::fanout::Targets`), the
//! message is encoded once per subprotocol, and one `Fan` effect asks the
//! loop to queue the same bytes on every target.

use log::debug;

use super::cluster::Route;
use super::effects::CloseReason;
use super::rates::Rates;
use super::ConnId;
use super::{Hub, Timer};
use crate::hub::lookup::index_key;
use crate::hub::lookup::ListedRoom;
use crate::hub::out::{self, Presence};
use crate::hub::rules::{
    autostarts, check_join, check_state, data, initial_props, meta_of, room_max, room_name,
    PropsChange,
};
use crate::protocol::{self, err_v, Blob, Code, Fail, Proto, Req, To, V};
use crate::room::{valid_name, Member, Room, RoomId, RoomState, Why};
use crate::session::{Attach, Client, MemberId, Session, SessionId};

/// Longest idle time a client may ask for.
const MAX_IDLE_MS: u32 = 3_600_000;
/// Default and largest `list` sizes.
const LIST_DEFAULT: u16 = 100;
const LIST_MAX: u16 = 1000;

impl Hub {
    /// Sends an error to a local client; its connection counts it toward
    /// `--max-bad-requests` (close 4002) when it is bad input.
    pub(crate) fn fail(&mut self, (cid, proto): (ConnId, Proto), rid: Option<u32>, f: Fail) {
        self.metrics.error(f.code);
        self.out
            .push(cid, &protocol::encode_frame(proto, &err_v(rid, &f)));
        self.out.outcome(cid, f.code.is_bad_input());
    }

    /// Input: one WebSocket message from the client on connection `cid`,
    /// whose session is `sid`; `rates` are the connection's limits.
    pub fn on_message(
        &mut self,
        (cid, sid, proto): (ConnId, SessionId, Proto),
        rates: &mut Rates,
        payload: &[u8],
    ) {
        self.metrics.messages_in += 1;
        let now = self.millis();
        if !rates.requests.take(now, self.cfg.rate_limit, 1) {
            let rid = protocol::peek_rid(proto, payload);
            self.fail(
                (cid, proto),
                rid,
                Fail::new(Code::RateLimited, "too many requests; slow down"),
            );
            return;
        }
        self.on_request((cid, sid, proto), rates, payload);
    }

    /// A request of the client on `cid` (session `sid`), past the request
    /// rate: decoded, checked, and run here or forwarded to its room's home.
    pub fn on_request(
        &mut self,
        (cid, sid, proto): (ConnId, SessionId, Proto),
        rates: &mut Rates,
        payload: &[u8],
    ) {
        if let Some(to) = self.proxied(sid) {
            self.relay_request((cid, sid, proto), rates, to, payload);
            return;
        }
        let req = match protocol::decode(proto, payload) {
            Ok(r) => r,
            Err((rid, f)) => {
                self.fail((cid, proto), rid, f);
                return;
            }
        };
        if let Err(f) = self.check_rates(rates, &req) {
            self.fail((cid, proto), req.rid, f);
            return;
        }
        if let Some(to) = self.move_target(sid, &req) {
            // The loop moves the connection with this request, or hands
            // it back (`on_request_checked`).
            self.out.moving(cid, to);
            return;
        }
        self.run_request((cid, sid, proto), &req, payload);
    }

    /// A request of the client on `cid` whose rates were taken already,
    /// run here: its connection could not move with it, or moved here with
    /// it (see `moves`), and may move on once more when `again` (a resume
    /// whose session moved from the worker that issued its token).
    pub fn on_request_checked(
        &mut self,
        (cid, sid, proto): (ConnId, SessionId, Proto),
        payload: &[u8],
        again: bool,
    ) {
        let req = match protocol::decode(proto, payload) {
            Ok(req) => req,
            Err((rid, f)) => return self.fail((cid, proto), rid, f),
        };
        if let Some(to) = self.move_target(sid, &req).filter(|_| again) {
            self.out.moving(cid, to);
            return;
        }
        self.run_request((cid, sid, proto), &req, payload);
    }

    /// Runs a request here, or forwards it to its room's home.
    fn run_request(
        &mut self,
        (cid, sid, proto): (ConnId, SessionId, Proto),
        req: &Req,
        payload: &[u8],
    ) {
        let rid = req.rid;
        if let Some(home) = self.remote_home(req) {
            if let Err(f) = self.forward(sid, home, req, proto, payload) {
                self.fail((cid, proto), rid, f);
            }
            return;
        }
        match self.dispatch(Some(cid), sid, req) {
            Ok(()) => self.out.outcome(cid, false),
            Err(f) => self.fail((cid, proto), rid, f),
        }
    }

    /// Runs one request of session `sid` (a local client's, with its
    /// connection `cid`, or one forwarded from another worker).
    pub(crate) fn dispatch(
        &mut self,
        cid: Option<ConnId>,
        sid: SessionId,
        req: &Req,
    ) -> Result<(), Fail> {
        let rid = req.rid;
        match req.t.as_deref() {
            None => Err(Fail::new(Code::BadRequest, "missing \"t\"")),
            Some("pub") => self.op_pub(sid, req),
            Some("send") => self.op_send(sid, req),
            Some("join") => {
                let name = room_name(req)?.to_owned();
                if req.watch == Some(true) {
                    self.check_grant(sid, &name)?;
                    self.op_watch(sid, rid, &name)
                } else {
                    self.op_join(sid, rid, &name, req.meta.as_ref())
                }
            }
            Some("kick") => self.op_kick(sid, req),
            Some("leave") => self.op_leave(sid, req),
            Some("create") => self.op_create(sid, req),
            Some("props") => self.op_props(sid, req),
            Some("state") => self.op_state(sid, req),
            Some("list") => self.op_list(sid, req),
            Some("hello") => match cid {
                Some(cid) => self.op_hello(cid, sid, req),
                // A relayed session: its hello was the resume.
                None => Err(Fail::new(Code::BadRequest, "hello may be sent once")),
            },
            Some("ping") => {
                self.send_to(sid, &out::pong(rid));
                Ok(())
            }
            Some("match") => self.op_match(sid, req),
            Some("lobby") => self.op_lobby(sid, req),
            Some("unlobby") => self.op_unlobby(sid, req),
            Some("unmatch") => self.op_unmatch(sid, req),
            Some(t) => Err(Fail::new(Code::UnknownType, format!("unknown type {t:?}"))),
        }
    }

    /// The per-connection byte rate of `pub`/`send` data and the room
    /// creation rate (`--pub-bytes-rate`, `--create-rate`).
    pub(crate) fn check_rates(&mut self, rates: &mut Rates, req: &Req) -> Result<(), Fail> {
        let (now, bytes_rate, create_rate) =
            (self.millis(), self.cfg.pub_bytes_rate, self.cfg.create_rate);
        match req.t.as_deref() {
            Some("pub" | "send") => {
                let n = req.data.as_ref().map_or(0, |d| d.0.len());
                if !rates.pub_bytes.take(now, bytes_rate, n as u32) {
                    return Err(Fail::new(
                        Code::RateLimited,
                        format!("more than {bytes_rate} data bytes per second; slow down"),
                    ));
                }
            }
            Some("create") if !rates.creates.take(now, create_rate, 1) => {
                return Err(Fail::new(
                    Code::RateLimited,
                    format!("more than {create_rate} rooms created per second; slow down"),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    fn ok(&mut self, sid: SessionId, rid: Option<u32>, extra: Vec<(&str, V)>) {
        if rid.is_some() {
            self.send_to(sid, &out::ok(rid, extra));
        }
    }

    fn member_room(&self, sid: SessionId, req: &Req) -> Result<RoomId, Fail> {
        let name = room_name(req)?;
        match self.seated(sid, name)? {
            (rid, true) => Ok(rid),
            (rid, false)
                if self
                    .rooms
                    .get(rid)
                    .is_some_and(|r| r.watcher(sid).is_some()) =>
            {
                Err(Fail::new(
                    Code::Forbidden,
                    format!("a watcher of {name:?} may only watch"),
                ))
            }
            (_, false) => Err(Fail::new(
                Code::NotMember,
                format!("not a member of {name:?}"),
            )),
        }
    }

    /// Input: connection `cid` became a WebSocket (in subprotocol
    /// `proto`, with the credential `grant` allows): a fresh session for
    /// it, with a fresh resume token. Fails only when there is no
    /// randomness for the token.
    pub fn open_session(
        &mut self,
        cid: ConnId,
        proto: Proto,
        grant: Option<Box<crate::auth::Grant>>,
    ) -> Result<SessionId, getrandom::Error> {
        let mut raw = [0u8; 16];
        // Drawn until it is neither all zero (not drawn yet; no session's
        // token is) nor taken in the index, which is keyed by the token's
        // last 64 bits (at a million sessions, a redraw once in 2^44).
        while raw == [0; 16] || self.tokens.contains_key(&index_key(&raw)) {
            getrandom::fill(&mut raw)?;
            if self.bus.is_some() {
                // With several workers the first byte names the session's
                // worker, so a resume landing on another one finds it (120
                // random bits are left).
                raw[0] = self.id as u8;
            }
        }
        let member = self.next_member;
        self.next_member += 1;
        let mut session = Session::fresh(member, raw, Attach::On(Client::Local(cid, proto)));
        session.meta = grant
            .as_ref()
            .and_then(|g| g.sub.as_deref())
            .map(|s| s.as_bytes().into());
        session.grant = grant;
        let sid = self.sessions.insert(session);
        self.tokens.insert(index_key(&raw), sid);
        Ok(sid)
    }

    /// The `welcome` of a fresh session.
    pub fn welcome(&mut self, sid: SessionId) {
        let Some(s) = self.sessions.get(sid) else {
            return;
        };
        let token = s.token_hex();
        let m = out::welcome(s.member, &token, self.cfg.hb_ms.into(), self.id.into());
        self.send_to(sid, &m);
    }

    fn op_hello(&mut self, cid: ConnId, sid: SessionId, req: &Req) -> Result<(), Fail> {
        let meta = meta_of(&req.meta)?;
        let Some(s) = self.sessions.get_mut(sid) else {
            return Ok(());
        };
        if s.hello_done {
            return Err(Fail::new(Code::BadRequest, "hello may be sent once"));
        }
        s.hello_done = true;
        if meta.is_some() {
            s.meta = meta;
        }
        if let Some(token) = req.resume.as_deref() {
            return self.op_resume(cid, sid, token, req);
        }
        self.ok(sid, req.rid, vec![]);
        Ok(())
    }

    /// With `--jwt-key`, the token's `rooms` claim limits which rooms a
    /// client may create or join (`unauthorized` otherwise).
    pub(crate) fn check_grant(&self, sid: SessionId, name: &str) -> Result<(), Fail> {
        let allowed = self
            .sessions
            .get(sid)
            .and_then(|s| s.grant.as_ref())
            .is_none_or(|g| g.allows(name));
        if allowed {
            Ok(())
        } else {
            Err(Fail::new(
                Code::Unauthorized,
                format!("your token does not allow room {name:?}"),
            ))
        }
    }

    /// Seats plus places in matchmaking queues (a match brings a seat), on
    /// this worker and on every other.
    pub(crate) fn check_seat_limit(&self, sid: SessionId) -> Result<(), Fail> {
        let n = self
            .sessions
            .get(sid)
            .map_or(0, |s| s.seats.len() + s.watching.len() + s.remote_held())
            + self.lobby.matcher.queued(sid);
        if n >= self.cfg.max_rooms_per_conn as usize {
            return Err(Fail::new(
                Code::Forbidden,
                format!(
                    "room limit per connection ({}) reached, queues included",
                    self.cfg.max_rooms_per_conn
                ),
            ));
        }
        Ok(())
    }

    fn pick_name(&self) -> Result<String, Fail> {
        // With several workers a name is picked so it is homed here: about
        // one try in N is.
        for _ in 0..64 * self.workers() {
            let mut raw = [0u8; 8];
            getrandom::fill(&mut raw)
                .map_err(|_| Fail::new(Code::Internal, "no randomness for a room name"))?;
            let name = format!("r-{:016x}", u64::from_le_bytes(raw));
            if !self.homed_here(&name) {
                continue;
            }
            if !self.names.contains(&self.rooms, &name) {
                return Ok(name);
            }
        }
        Err(Fail::new(Code::Internal, "could not pick a room name"))
    }

    fn op_create(&mut self, sid: SessionId, req: &Req) -> Result<(), Fail> {
        let join = req.join.unwrap_or(true);
        if join {
            self.check_seat_limit(sid)?;
            meta_of(&req.meta)?;
        }
        let (_, name) = self.create_room(req, self.member_id(sid), Some(sid))?;
        debug!(
            "w={} room {name:?} created by member={}",
            self.id,
            self.member_id(sid)
        );
        self.send_to(sid, &out::created(req.rid, &name));
        if join {
            self.op_join(sid, req.rid, &name, req.meta.as_ref())?;
        }
        Ok(())
    }

    /// Creates a room from `create`'s fields (also the HTTP API's): picks a
    /// name when none is given, clamps `max` and `idle_ms`, bounds props.
    /// `owner` is the creator's member id (0 for the API); with `grant_of`,
    /// that session's token must allow the name. The room starts empty, its
    /// idle timer armed.
    pub(crate) fn create_room(
        &mut self,
        req: &Req,
        owner: MemberId,
        grant_of: Option<SessionId>,
    ) -> Result<(RoomId, String), Fail> {
        let name = match &req.room {
            Some(_) => {
                let n = room_name(req)?;
                if self.names.contains(&self.rooms, n) {
                    return Err(Fail::new(Code::Exists, format!("room {n:?} exists")));
                }
                n.to_owned()
            }
            None => self.pick_name()?,
        };
        if let Some(sid) = grant_of {
            self.check_grant(sid, &name)?;
        }
        let max = room_max(req.max, self.cfg.max_members);
        let kv = req.props.iter().flatten();
        let (props, props_bytes) = initial_props(
            kv.map(|(k, v)| (&**k, v.0.as_ref())),
            self.cfg.max_message as usize,
        )?;
        let idle_ms = req.idle_ms.unwrap_or(self.cfg.idle_ms).min(MAX_IDLE_MS);
        let mut room = Room::new(
            &name,
            owner,
            max,
            idle_ms,
            req.private.unwrap_or(false),
            req.autostart.unwrap_or(false),
        );
        if !props.is_empty() {
            let x = room.extra_mut();
            x.props = props;
            x.props_bytes = props_bytes;
        }
        let rid = self.rooms.insert(room);
        let indexed = self.names.insert(&self.rooms, rid);
        debug_assert!(indexed, "room names are unique");
        self.arm_idle(rid);
        self.lobby_touch(rid);
        Ok((rid, name))
    }

    fn arm_idle(&mut self, rid: RoomId) {
        let Some(room) = self.rooms.get_mut(rid) else {
            return;
        };
        if room.idle.is_none() {
            room.idle = Some(
                self.timers
                    .arm(self.now + room.idle_after(), Timer::Idle(rid)),
            );
        }
    }

    /// `join` (also `?room=` and `create` with `join`).
    pub(crate) fn op_join(
        &mut self,
        sid: SessionId,
        rid_req: Option<u32>,
        name: &str,
        meta: Option<&Blob>,
    ) -> Result<(), Fail> {
        if !valid_name(name) {
            return Err(Fail::new(
                Code::BadRequest,
                "room names are 1 to 64 bytes of [A-Za-z0-9._:-]",
            ));
        }
        self.check_grant(sid, name)?;
        self.join_room(sid, rid_req, name, meta)
    }

    /// `join` past the name and token checks (also for rooms the server
    /// picked, e.g. a match's).
    pub(crate) fn join_room(
        &mut self,
        sid: SessionId,
        rid_req: Option<u32>,
        name: &str,
        meta: Option<&Blob>,
    ) -> Result<(), Fail> {
        let (rid, seated) = self.seated(sid, name)?;
        if !seated {
            let room = self
                .rooms
                .get(rid)
                .ok_or_else(|| Fail::new(Code::NotFound, "gone"))?;
            check_join(room, self.member_id(sid))?;
            let meta = meta_of(&meta.cloned())?;
            // A watcher taking a seat stops watching.
            if !self.remove_watcher(rid, sid) {
                self.check_seat_limit(sid)?;
            }
            self.seat(sid, rid, meta);
        }
        self.send_joined(sid, rid, rid_req, false);
        if seated {
            return Ok(());
        }
        let member = self.member_id(sid);
        broadcast!(self, rid, Some(member), |room: &Room| {
            out::presence(&room.name, Presence::Join(room.members.last()))
        });
        self.autostart(rid);
        Ok(())
    }

    /// With `autostart`, a room that just filled up starts `playing`.
    pub(crate) fn autostart(&mut self, rid: RoomId) {
        let start = self.rooms.get(rid).is_some_and(autostarts);
        if start {
            self.set_state(rid, RoomState::Playing);
        }
    }

    /// Seats session `sid` in room `rid`, every check done: it joins the
    /// member list (with `meta`, else the session's), the room leaves
    /// `created`, and a shadow's worker is told. Announces nothing.
    pub(crate) fn seat(&mut self, sid: SessionId, rid: RoomId, meta: Option<Box<[u8]>>) {
        let meta = meta.or_else(|| self.sessions.get(sid).and_then(|s| s.meta.clone()));
        let member = self.member_id(sid);
        let Some(room) = self.rooms.get_mut(rid) else {
            return;
        };
        room.members.push(Member {
            id: member,
            session: sid,
            meta,
        });
        if let Some(t) = room.idle.take() {
            self.timers.cancel(t);
        }
        if room.state == RoomState::Created {
            room.state = RoomState::Waiting;
            room.ver += 1;
        }
        let name = room.name.clone();
        self.members += 1;
        if let Some(s) = self.sessions.get_mut(sid) {
            s.seats.push(rid);
        }
        self.tell_seat(sid, &name, true, None);
        self.lobby_touch(rid);
    }

    /// The `joined` snapshot of room `rid` for session `sid` (a watcher's
    /// carries `watch`).
    pub(crate) fn send_joined(
        &mut self,
        sid: SessionId,
        rid: RoomId,
        rid_req: Option<u32>,
        watch: bool,
    ) {
        let Some(route) = self.route(sid) else {
            return;
        };
        let Some(room) = self.rooms.get(rid) else {
            return;
        };
        let frame = protocol::encode_frame(route.proto(), &out::joined(rid_req, room, watch));
        self.push_route(route, &frame);
    }

    /// Moves a room to `to` (already checked legal) and tells every member.
    pub(crate) fn set_state(&mut self, rid: RoomId, to: RoomState) -> u64 {
        let Some(room) = self.rooms.get_mut(rid) else {
            return 0;
        };
        room.state = to;
        room.ver += 1;
        let ver = room.ver;
        self.lobby_touch(rid);
        broadcast!(self, rid, None, |room: &Room| out::state(
            &room.name, room.state, room.ver
        ));
        ver
    }

    fn op_leave(&mut self, sid: SessionId, req: &Req) -> Result<(), Fail> {
        let (rid, seated) = self.seated(sid, room_name(req)?)?;
        if seated {
            self.remove_member(rid, sid, Why::Left);
        } else if !self.remove_watcher(rid, sid) {
            self.member_room(sid, req)?;
        }
        self.send_to(sid, &out::left(req.rid, room_name(req)?));
        Ok(())
    }

    /// Takes a session's seat out of a room: others see `leave` with `why`,
    /// ownership passes to the longest-seated member, an emptied room starts
    /// its idle timer. O(members).
    pub(crate) fn remove_member(&mut self, rid: RoomId, sid: SessionId, why: Why) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        s.seats.retain(|&r| r != rid);
        let member = s.member;
        let Some(room) = self.rooms.get_mut(rid) else {
            return;
        };
        let Some(i) = room.members.iter().position(|m| m.session == sid) else {
            return;
        };
        room.members.remove(i);
        self.members -= 1;
        if room.owner == member {
            if let Some(first) = room.members.first() {
                room.owner = first.id;
            }
        }
        let empty = room.members.is_empty();
        let name = room.name.clone();
        self.tell_seat(sid, &name, false, None);
        broadcast!(self, rid, None, |room: &Room| out::presence(
            &room.name,
            Presence::Leave(member, why)
        ));
        if empty {
            self.arm_idle(rid);
        }
        self.lobby_touch(rid);
    }

    fn op_pub(&mut self, sid: SessionId, req: &Req) -> Result<(), Fail> {
        let rid = self.member_room(sid, req)?;
        let data = data(req)?;
        let from = self.member_id(sid);
        let except = if req.echo.unwrap_or(false) {
            None
        } else {
            Some(from)
        };
        let seq = self.publish(rid, from, data, except);
        self.ok(sid, req.rid, vec![("seq", V::U(seq))]);
        Ok(())
    }

    /// Numbers one message in its room and fans it out to every member but
    /// `except`; returns its `seq`. `from` is 0 for the HTTP API. Every
    /// published message goes through here (the one place `seq` moves).
    pub(crate) fn publish(
        &mut self,
        rid: RoomId,
        from: MemberId,
        data: &[u8],
        except: Option<MemberId>,
    ) -> u64 {
        let Some(room) = self.rooms.get_mut(rid) else {
            return 0;
        };
        room.seq += 1;
        let seq = room.seq;
        self.history.record(&mut room.history, seq, from, data);
        let n = super::fanout::fan_out(
            &self.rooms,
            &mut self.sessions,
            &mut self.out,
            &mut self.scratch,
            &mut self.bus,
            (rid, except, true),
            |room: &Room| out::msg(&room.name, from, seq, data),
        );
        self.metrics.published += 1;
        self.metrics.deliveries += n;
        seq
    }

    fn op_send(&mut self, sid: SessionId, req: &Req) -> Result<(), Fail> {
        let rid = self.member_room(sid, req)?;
        let to = match req.to {
            Some(To::Id(id)) => id,
            _ => return Err(Fail::new(Code::BadRequest, "\"to\" must be a member id")),
        };
        let data = data(req)?;
        let from = self.member_id(sid);
        let Some(room) = self.rooms.get(rid) else {
            return Ok(());
        };
        let target = room.member(to).ok_or_else(|| {
            Fail::new(
                Code::NotMember,
                format!("member {to} is not in {:?}", room.name),
            )
        })?;
        let route = self
            .route(target.session)
            .ok_or_else(|| Fail::new(Code::NotFound, format!("member {to} is away")))?;
        let frame = protocol::encode_frame(route.proto(), &out::msg_to(&room.name, from, to, data));
        // Here the loop counts it once the connection took it.
        let counted = match route {
            Route::Local(c, _) => {
                self.out.send(c, &frame, true);
                false
            }
            r => self.push_route(r, &frame),
        };
        if counted {
            self.metrics.deliveries += 1;
        }
        self.ok(sid, req.rid, vec![]);
        Ok(())
    }

    fn op_props(&mut self, sid: SessionId, req: &Req) -> Result<(), Fail> {
        let rid = self.member_room(sid, req)?;
        let set = req
            .set
            .as_ref()
            .ok_or_else(|| Fail::new(Code::BadRequest, "missing \"set\""))?;
        let max = self.cfg.max_message as usize;
        let Some(room) = self.rooms.get_mut(rid) else {
            return Ok(());
        };
        let set = set
            .iter()
            .map(|(k, v)| (&**k, v.as_ref().map(|v| v.0.as_ref())));
        let change = PropsChange::check(room, set, req.expect, max)?;
        if change.is_empty() {
            // Nothing moves (PROTOCOL.md): the current `ver`, no broadcast.
            let ver = room.ver;
            self.ok(sid, req.rid, vec![("ver", V::U(ver))]);
            return Ok(());
        }
        let ver = change.apply(room);
        let changed = change.changed;
        self.ok(sid, req.rid, vec![("ver", V::U(ver))]);
        // The broadcast carries the changed keys only.
        broadcast!(self, rid, None, |room: &Room| out::props(
            &room.name,
            changed.iter().copied(),
            ver
        ));
        Ok(())
    }

    fn op_state(&mut self, sid: SessionId, req: &Req) -> Result<(), Fail> {
        let name = room_name(req)?;
        let (rid, _) = self.seated(sid, name)?;
        let to = match &req.to {
            Some(To::Name(s)) => RoomState::parse(s)
                .ok_or_else(|| Fail::new(Code::BadRequest, format!("unknown state {s:?}")))?,
            _ => return Err(Fail::new(Code::BadRequest, "\"to\" must be a state name")),
        };
        let member = self.member_id(sid);
        let Some(room) = self.rooms.get(rid) else {
            return Ok(());
        };
        check_state(room, member, to)?;
        let ver = room.ver + 1;
        self.ok(sid, req.rid, vec![("ver", V::U(ver))]);
        self.set_state(rid, to);
        if to == RoomState::Closed {
            self.close_room(rid, "owner");
        }
        Ok(())
    }

    fn op_list(&mut self, sid: SessionId, req: &Req) -> Result<(), Fail> {
        let want = match req.state.as_deref() {
            Some(s) => Some(
                RoomState::parse(s)
                    .ok_or_else(|| Fail::new(Code::BadRequest, format!("unknown state {s:?}")))?,
            ),
            None => None,
        };
        let limit = req.limit.unwrap_or(LIST_DEFAULT).min(LIST_MAX);
        let space = req.has_space.unwrap_or(false);
        let mut rooms = Vec::new();
        self.list_rooms(want, space, limit, &mut rooms);
        self.gather_list((sid, req.rid, false), (want, space, limit), rooms);
        Ok(())
    }

    /// Sends `rooms` (the merged `list` answer); `missing` names the workers
    /// whose rooms it lacks (lost, or no answer within `--peer-timeout-ms`).
    pub(crate) fn send_list(
        &mut self,
        sid: SessionId,
        rid: Option<u32>,
        rooms: &[ListedRoom],
        missing: &[u32],
    ) {
        let rooms = (rooms.iter())
            .map(|r| out::listed(&r.name, r.members, r.max, r.state, r.watchers))
            .collect();
        let m = out::rooms(rid, rooms, missing);
        let Some(route) = self.route(sid) else {
            return;
        };
        let frame = protocol::encode_frame(route.proto(), &m);
        self.push_route(route, &frame);
    }

    /// Closes a room: every member gets `closed` with `why`, seats are
    /// released, the name is free again.
    pub(crate) fn close_room(&mut self, rid: RoomId, why: &str) {
        broadcast!(self, rid, None, |room: &Room| out::closed(&room.name, why));
        let Some(room) = self.rooms.remove(rid) else {
            return;
        };
        self.names.remove(&self.rooms, &room.name, rid);
        if let Some(t) = room.idle {
            self.timers.cancel(t);
        }
        self.lobby_closed(rid, &room.name, room.max);
        self.members -= room.members.len();
        for (_, sid) in room.audience() {
            let Some(s) = self.sessions.get_mut(sid) else {
                continue;
            };
            s.seats.retain(|&r| r != rid);
            s.watching.retain(|&r| r != rid);
            if matches!(s.at, Attach::Away { .. } | Attach::Detached) {
                s.closed.push(((*room.name).into(), why.into()));
            }
            self.tell_seat(sid, &room.name, false, Some(why));
            // A shadow with no seats left has nothing to wait for.
            if self.disposable(sid) {
                self.free_session(sid);
            }
        }
        if let Some(t) = room.extra.as_ref().and_then(|x| x.timer) {
            self.timers.cancel(t);
        }
        debug!("w={} room {:?} closed ({why})", self.id, room.name);
    }

    /// Input: the connection of `sid` is gone (closed for `reason`, by
    /// the loop's end step). A clean close (1000) releases the
    /// session at once; any other end keeps it (and its seats) for the
    /// grace period while the other members see `away`, seats or not, so
    /// it can be resumed. Queue places end either way.
    pub fn detach(&mut self, sid: SessionId, reason: CloseReason) {
        let reason = match self.detach_proxy(sid, reason) {
            Some(r) => r,
            None => return,
        };
        if reason == CloseReason::Shutdown || reason == CloseReason::Replaced {
            // Shutdown: the process is going away; rooms go with it.
            // Replaced: the session lives on, on the connection that resumed it.
            return;
        }
        self.unqueue(sid);
        let why = if reason == CloseReason::Timeout {
            Why::Timeout
        } else {
            Why::Disconnect
        };
        let grace = self.cfg.grace();
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        s.cut();
        s.resuming = None;
        self.watch_attach(sid, false);
        self.lobby_end(sid);
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        if reason == CloseReason::ClientNormal || grace.is_zero() {
            let why = if reason == CloseReason::ClientNormal {
                Why::Left
            } else {
                why
            };
            self.release_session(sid, why);
            return;
        }
        let member = s.member;
        let timer = self.timers.arm(self.now + grace, Timer::Grace(sid));
        if let Some(old) = s.go_away(timer, why) {
            self.timers.cancel(old);
        }
        let seats = s.seats.clone();
        self.announce(&seats, member, Presence::Away);
        self.tell_homes(sid, super::bus_msg::kind::AWAY, why);
    }

    /// Tells the other members of each room in `seats` that `member` is
    /// `away` or `back` (`change`). O(seats * members).
    pub(crate) fn announce(
        &mut self,
        seats: &[RoomId],
        member: MemberId,
        change: fn(MemberId) -> Presence<'static>,
    ) {
        for &rid in seats {
            broadcast!(self, rid, Some(member), |room: &Room| out::presence(
                &room.name,
                change(member)
            ));
        }
    }

    pub(crate) fn grace_over(&mut self, sid: SessionId) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        // The grace timer has fired; release without cancelling it.
        let Some((_, why)) = s.take_grace() else {
            return;
        };
        self.release_session(sid, why);
    }

    /// Frees a session and every seat it holds (others see `leave`).
    pub(crate) fn release_session(&mut self, sid: SessionId, why: Why) {
        self.release_seats(sid, why);
        self.free_session(sid);
    }

    /// Lets every seat of a session go (others see `leave` with `why`),
    /// here and on other workers, and ends its grace period; the session
    /// itself stays.
    pub(crate) fn release_seats(&mut self, sid: SessionId, why: Why) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        if let Some((t, _)) = s.take_grace() {
            self.timers.cancel(t);
        }
        let watching = s.watching.clone();
        for rid in s.seats.clone() {
            self.remove_member(rid, sid, why);
        }
        for rid in watching {
            self.remove_watcher(rid, sid);
        }
        self.tell_homes(sid, super::bus_msg::kind::RELEASE, why);
    }

    pub(crate) fn idle_over(&mut self, rid: RoomId) {
        let Some(room) = self.rooms.get_mut(rid) else {
            return;
        };
        room.idle = None;
        if room.members.is_empty() {
            self.close_room(rid, "idle");
        }
    }
}
