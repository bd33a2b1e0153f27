//! The HTTP room API (PROTOCOL.md "Server API"), present only with
//! `--admin-key`: list, inspect, create, publish to and close rooms. Every
//! call needs `Authorization: Bearer <admin key>`; answers are JSON, errors
//! too (`{"error": code, "msg": text}`), and bodies are bounded by
//! `--max-message`.

use base64::Engine;
use serde_json::{json, Value};

use crate::conn::ConnId;
use crate::http::ApiReq;
use crate::protocol::{self, Code, Fail, Proto};
use crate::worker::Worker;

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

impl Worker {
    fn api_json(&mut self, id: ConnId, status: u16, v: &Value) {
        let body = v.to_string();
        self.respond(id, status, "application/json", body.as_bytes());
    }

    fn api_fail(&mut self, id: ConnId, f: &Fail) {
        let v = json!({"error": f.code.as_str(), "msg": f.msg});
        self.api_json(id, status_of(f.code), &v);
    }

    /// Answers one API request whose whole body has been read.
    pub(crate) fn api(&mut self, id: ConnId, req: ApiReq, body: &[u8]) {
        let Some(key) = self.cfg.admin_key.as_deref() else {
            self.respond(id, 404, "text/plain", b"not found\n");
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
        let rest = req
            .path
            .trim_start_matches("/rooms")
            .trim_start_matches('/');
        let (name, action) = match rest.split_once('/') {
            Some((n, a)) => (n, a),
            None => (rest, ""),
        };
        match (req.method.as_str(), name, action) {
            ("GET", "", "") => self.api_list(id),
            ("POST", "", "") => self.api_create(id, body),
            ("GET", room, "") => self.api_get(id, room),
            ("DELETE", room, "") => self.api_close(id, room),
            ("POST", room, "publish") => self.api_publish(id, room, body),
            (_, _, "" | "publish") => {
                self.api_fail(id, &Fail::new(Code::BadRequest, "method not allowed here"));
            }
            _ => self.api_fail(id, &Fail::new(Code::NotFound, "no such API path")),
        }
    }

    fn api_list(&mut self, id: ConnId) {
        let rooms: Vec<Value> = self
            .rooms
            .iter()
            .map(|(_, r)| {
                json!({"room": &*r.name, "members": r.members.len(), "max": r.max,
                       "state": r.state.as_str(), "private": r.private})
            })
            .collect();
        self.api_json(id, 200, &json!({ "rooms": rooms }));
    }

    fn api_get(&mut self, id: ConnId, name: &str) {
        let Some(room) = self.names.get(name).and_then(|&r| self.rooms.get(r)) else {
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
            .props
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(b64(v))))
            .collect();
        let v = json!({"room": &*room.name, "members": members, "max": room.max,
            "private": room.private, "state": room.state.as_str(), "owner": room.owner,
            "props": props, "ver": room.ver, "seq": room.seq});
        self.api_json(id, 200, &v);
    }

    /// `POST /rooms` with a JSON body like `create` (props values are strings
    /// or `{"data64": ...}`); the server owns the room (owner 0).
    fn api_create(&mut self, id: ConnId, body: &[u8]) {
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
    fn api_publish(&mut self, id: ConnId, name: &str, body: &[u8]) {
        let Some(&rid) = self.names.get(name) else {
            self.api_fail(id, &Fail::new(Code::NotFound, format!("no room {name:?}")));
            return;
        };
        let seq = self.publish(rid, 0, body, None);
        self.api_json(id, 200, &json!({ "room": name, "seq": seq }));
    }

    fn api_close(&mut self, id: ConnId, name: &str) {
        let Some(&rid) = self.names.get(name) else {
            self.api_fail(id, &Fail::new(Code::NotFound, format!("no room {name:?}")));
            return;
        };
        self.close_room(rid, "api");
        self.api_json(id, 200, &json!({ "room": name, "closed": true }));
    }
}
