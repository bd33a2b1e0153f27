//! The HTTP room API (PROTOCOL.md "Server API"), present only with
//! `--admin-key`: list, inspect, create, publish to, kick from and close
//! rooms. Every
//! call needs `Authorization: Bearer <admin key>`; answers are JSON, errors
//! too (`{"error": code, "msg": text}`), and bodies are bounded by
//! `--max-message`.

use base64::Engine;
use serde_json::{json, Value};

use super::ConnId;
use super::Hub;
use crate::http::ApiReq;
use crate::hub::bus_msg::BusMsg;
use crate::protocol::{self, Code, Fail, Proto};
use crate::room::valid_name;

/// Where an API answer goes: the HTTP connection, or (for a call forwarded
/// to the room's home) back to the worker that holds it, under its query id.
#[derive(Clone, Copy)]
pub(crate) enum ApiTo {
    Conn(ConnId),
    Peer(u32, u32),
}

/// An API call waiting for other workers.
pub enum ApiWait {
    /// A call forwarded to the room's home (connection, home).
    One(ConnId, u32),
    /// `GET /rooms`: the rooms gathered so far, who has yet to answer, and
    /// who never will (lost, or out of time).
    List {
        conn: ConnId,
        waiting: Vec<u32>,
        rooms: Vec<Value>,
        missing: Vec<u32>,
    },
    /// `/metrics/all`: each worker's text so far.
    Metrics {
        conn: ConnId,
        waiting: Vec<u32>,
        texts: Vec<String>,
        missing: Vec<u32>,
    },
}

impl ApiWait {
    /// The workers it still waits for.
    pub(crate) fn waiting(&self) -> Vec<u32> {
        match self {
            ApiWait::One(_, home) => vec![*home],
            ApiWait::List { waiting, .. } | ApiWait::Metrics { waiting, .. } => waiting.clone(),
        }
    }
}

/// Compares without an early exit, so the time taken does not reveal how
/// much of a guessed key was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The room an API path names (`/rooms/{room}...`), or "" for `/rooms`.
fn api_room(path: &str) -> &str {
    let rest = path.trim_start_matches("/rooms").trim_start_matches('/');
    rest.split_once('/').map_or(rest, |(n, _)| n)
}

fn status_of(code: Code) -> u16 {
    match code {
        Code::NotFound => 404,
        Code::Exists | Code::Conflict | Code::InvalidState => 409,
        Code::TooLarge => 413,
        Code::Unauthorized => 401,
        Code::Forbidden => 403,
        Code::ShuttingDown => 503,
        Code::Internal => 500,
        _ => 400,
    }
}

impl Hub {
    fn api_json(&mut self, to: ApiTo, status: u16, v: &Value) {
        let body = v.to_string();
        match to {
            ApiTo::Conn(id) => self
                .out
                .respond(id, status, "application/json", body.as_bytes()),
            ApiTo::Peer(p, qid) => {
                let m = BusMsg::ApiResp {
                    qid,
                    status,
                    body: body.as_bytes(),
                };
                if let Some(bus) = self.bus.as_mut() {
                    bus.send(p, &m);
                }
            }
        }
    }

    fn api_fail(&mut self, id: ApiTo, f: &Fail) {
        let v = json!({"error": f.code.as_str(), "msg": f.msg});
        self.api_json(id, status_of(f.code), &v);
    }

    /// Answers one API request whose whole body has been read.
    pub fn api(&mut self, conn: ConnId, req: ApiReq, body: &[u8]) {
        let id = ApiTo::Conn(conn);
        let Some(key) = self.cfg.admin_key.as_deref() else {
            self.out.respond(conn, 404, "text/plain", b"not found\n");
            return;
        };
        if !req
            .bearer
            .as_deref()
            .is_some_and(|b| same(b.as_bytes(), key.as_bytes()))
        {
            let f = Fail::new(
                Code::Unauthorized,
                "Authorization: Bearer <admin key> required",
            );
            self.api_fail(id, &f);
            return;
        }
        // With several workers: a call for one room goes to its home, and
        // the list asks every worker.
        if self.bus.is_some() {
            let named = match (req.method.as_str(), api_room(&req.path)) {
                ("POST", "") => protocol::decode(Proto::Json, body)
                    .ok()
                    .and_then(|r| r.room.map(|n| n.into_owned())),
                (_, "") => None,
                (_, room) => Some(room.to_owned()),
            };
            if let Some(home) = named
                .filter(|n| valid_name(n) && !self.homed_here(n))
                .and_then(|n| self.remote_home_of(&n))
            {
                self.api_forward(conn, home, &req.method, &req.path, body);
                return;
            }
            if req.method == "GET" && api_room(&req.path).is_empty() {
                self.api_list_all(conn);
                return;
            }
        }
        self.api_route(id, &req.method, &req.path, body);
    }

    /// Forwards an API call to the room's home; the answer comes back as
    /// `API_RESP`.
    fn api_forward(&mut self, conn: ConnId, home: u32, method: &str, path: &str, body: &[u8]) {
        let qid = self.next_list;
        let m = BusMsg::ApiReq {
            qid,
            method,
            path,
            body,
        };
        if !self.bus.as_mut().is_some_and(|b| b.send(home, &m)) {
            let f = Fail::new(Code::Internal, "the room's worker is restarting; try again");
            self.api_fail(ApiTo::Conn(conn), &f);
            return;
        }
        self.next_list = self.next_list.wrapping_add(1);
        self.api_waits.insert(qid, ApiWait::One(conn, home));
        self.await_answers(qid);
    }

    fn api_list_all(&mut self, conn: ConnId) {
        let rooms = self.api_rooms();
        let (qid, waiting) = self.ask_all(|qid| BusMsg::ApiReq {
            qid,
            method: "GET",
            path: "/rooms",
            body: b"",
        });
        if waiting.is_empty() {
            self.api_json(ApiTo::Conn(conn), 200, &json!({ "rooms": rooms }));
            return;
        }
        self.api_waits.insert(
            qid,
            ApiWait::List {
                conn,
                waiting,
                rooms,
                missing: Vec::new(),
            },
        );
        self.await_answers(qid);
    }

    /// `GET /metrics/all`: this worker's figures and every other worker's,
    /// merged into one exposition (see `metrics::merge`).
    pub fn metrics_all(&mut self, conn: ConnId, text: String) {
        let (qid, waiting) = self.ask_all(|qid| BusMsg::MetricsReq { qid });
        if waiting.is_empty() {
            self.out
                .respond(conn, 200, "text/plain; version=0.0.4", text.as_bytes());
            return;
        }
        self.api_waits.insert(
            qid,
            ApiWait::Metrics {
                conn,
                waiting,
                texts: vec![text],
                missing: Vec::new(),
            },
        );
        self.await_answers(qid);
    }

    /// On a room's home: an API call forwarded by worker `p`.
    pub(crate) fn api_remote(&mut self, p: u32, qid: u32, method: &str, path: &str, body: &[u8]) {
        self.api_route(ApiTo::Peer(p, qid), method, path, body);
    }

    /// Worker `p` answered API query `qid` (`None`: it was lost).
    pub(crate) fn api_answered(&mut self, qid: u32, p: u32, answer: Option<(u16, &[u8])>) {
        let Some(wait) = self.api_waits.get_mut(&qid) else {
            return;
        };
        match wait {
            ApiWait::One(conn, home) => {
                if *home != p {
                    return;
                }
                let conn = *conn;
                self.api_waits.remove(&qid);
                match answer {
                    Some((status, body)) => {
                        self.out.respond(conn, status, "application/json", body);
                    }
                    None => {
                        let f = Fail::new(
                            Code::Internal,
                            "the room's worker was lost or did not answer in time; try again",
                        );
                        self.api_fail(ApiTo::Conn(conn), &f);
                    }
                }
            }
            ApiWait::Metrics {
                waiting,
                texts,
                missing,
                ..
            } => {
                if !waiting.contains(&p) {
                    return;
                }
                waiting.retain(|&w| w != p);
                match answer {
                    Some((_, body)) => texts.push(String::from_utf8_lossy(body).into_owned()),
                    None => missing.push(p),
                }
                if waiting.is_empty() {
                    if let Some(ApiWait::Metrics {
                        conn,
                        texts,
                        missing,
                        ..
                    }) = self.api_waits.remove(&qid)
                    {
                        let mut body = crate::metrics::merge(&texts);
                        for w in missing {
                            body.push_str(&format!("# roomd: worker {w} did not answer\n"));
                        }
                        self.out
                            .respond(conn, 200, "text/plain; version=0.0.4", body.as_bytes());
                    }
                }
            }
            ApiWait::List {
                waiting,
                rooms,
                missing,
                ..
            } => {
                if !waiting.contains(&p) {
                    return;
                }
                waiting.retain(|&w| w != p);
                match answer {
                    Some((_, body)) => {
                        if let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(body) {
                            if let Some(Value::Array(more)) = m.remove("rooms") {
                                rooms.extend(more);
                            }
                        }
                    }
                    None => missing.push(p),
                }
                if waiting.is_empty() {
                    if let Some(ApiWait::List {
                        conn,
                        rooms,
                        missing,
                        ..
                    }) = self.api_waits.remove(&qid)
                    {
                        let v = if missing.is_empty() {
                            json!({ "rooms": rooms })
                        } else {
                            json!({ "rooms": rooms, "missing": missing })
                        };
                        self.api_json(ApiTo::Conn(conn), 200, &v);
                    }
                }
            }
        }
    }

    /// Runs an API call on the rooms homed here (authorized already).
    fn api_route(&mut self, id: ApiTo, method: &str, path: &str, body: &[u8]) {
        let rest = path.trim_start_matches("/rooms").trim_start_matches('/');
        let (name, action) = match rest.split_once('/') {
            Some((n, a)) => (n, a),
            None => (rest, ""),
        };
        match (method, name, action) {
            ("GET", "", "") => self.api_list(id),
            ("POST", "", "") => self.api_create(id, body),
            ("GET", room, "") => self.api_get(id, room),
            ("DELETE", room, "") => self.api_close(id, room),
            ("POST", room, "publish") => self.api_publish(id, room, body),
            ("POST", room, "kick") => self.api_kick(id, room, body),
            (_, _, "" | "publish" | "kick") => {
                self.api_fail(id, &Fail::new(Code::BadRequest, "method not allowed here"));
            }
            _ => self.api_fail(id, &Fail::new(Code::NotFound, "no such API path")),
        }
    }

    fn api_rooms(&self) -> Vec<Value> {
        self.rooms
            .iter()
            .map(|(_, r)| {
                json!({"room": &*r.name, "members": r.members.len(), "max": r.max,
                       "state": r.state.as_str(), "private": r.private(),
                       "watchers": r.watchers()})
            })
            .collect()
    }

    fn api_list(&mut self, id: ApiTo) {
        let rooms = self.api_rooms();
        self.api_json(id, 200, &json!({ "rooms": rooms }));
    }

    fn api_get(&mut self, id: ApiTo, name: &str) {
        let Some(room) = self
            .names
            .get(&self.rooms, name)
            .and_then(|r| self.rooms.get(r))
        else {
            self.api_fail(id, &Fail::new(Code::NotFound, format!("no room {name:?}")));
            return;
        };
        let members: Vec<Value> = room
            .members
            .iter()
            .map(|m| match &m.meta {
                Some(meta) => json!({"id": m.id, "meta": b64(meta)}),
                None => json!({"id": m.id}),
            })
            .collect();
        let props: serde_json::Map<String, Value> = room
            .props()
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(b64(v))))
            .collect();
        let v = json!({"room": &*room.name, "members": members, "max": room.max,
            "private": room.private(), "state": room.state.as_str(), "owner": room.owner,
            "props": props, "ver": room.ver, "seq": room.seq,
            "watchers": room.watchers()});
        self.api_json(id, 200, &v);
    }

    /// `POST /rooms` with a JSON body like `create` (props values are strings
    /// or `{"data64": ...}`); the server owns the room (owner 0).
    fn api_create(&mut self, id: ApiTo, body: &[u8]) {
        let body = if body.iter().all(u8::is_ascii_whitespace) {
            &b"{}"[..]
        } else {
            body
        };
        let res = match protocol::decode(Proto::Json, body) {
            Ok(req) => self.create_room(&req, 0, None),
            Err((_, f)) => Err(f),
        };
        match res {
            Ok((_, name)) => self.api_json(id, 201, &json!({ "room": name })),
            Err(f) => self.api_fail(id, &f),
        }
    }

    /// `POST /rooms/{room}/publish`: the raw body is `data`, sent as `msg`
    /// with `from: 0`.
    fn api_publish(&mut self, id: ApiTo, name: &str, body: &[u8]) {
        let Some(rid) = self.names.get(&self.rooms, name) else {
            self.api_fail(id, &Fail::new(Code::NotFound, format!("no room {name:?}")));
            return;
        };
        let seq = self.publish(rid, 0, body, None);
        self.api_json(id, 200, &json!({ "room": name, "seq": seq }));
    }

    /// `POST /rooms/{room}/kick` with `{"id","ban"?}`: as `kick` from the
    /// room's owner.
    fn api_kick(&mut self, id: ApiTo, name: &str, body: &[u8]) {
        let Some(rid) = self.names.get(&self.rooms, name) else {
            self.api_fail(id, &Fail::new(Code::NotFound, format!("no room {name:?}")));
            return;
        };
        let res = match protocol::decode(Proto::Json, body) {
            Ok(req) => match req.id {
                Some(who) => self
                    .kick_from(rid, who, req.ban.unwrap_or(false))
                    .map(|()| who),
                None => Err(Fail::new(Code::BadRequest, "missing \"id\"")),
            },
            Err((_, f)) => Err(f),
        };
        match res {
            Ok(who) => self.api_json(id, 200, &json!({ "room": name, "kicked": who })),
            Err(f) => self.api_fail(id, &f),
        }
    }

    fn api_close(&mut self, id: ApiTo, name: &str) {
        let Some(rid) = self.names.get(&self.rooms, name) else {
            self.api_fail(id, &Fail::new(Code::NotFound, format!("no room {name:?}")));
            return;
        };
        self.close_room(rid, "api");
        self.api_json(id, 200, &json!({ "room": name, "closed": true }));
    }
}
