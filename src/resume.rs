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
//! first. All of it is queued on the new connection within the one request,
//! on the worker's one thread: no message of these rooms can be queued in
//! between, so the replay meets live traffic with no gap and no duplicate.
//!
//! Invariant: `Worker::tokens` maps the key of every live session's token to
//! that session, and nothing else (sessions are freed through
//! [`Worker::free_session`]).

use log::debug;

use crate::conn::{CloseReason, ConnId, Phase};
use crate::history;
use crate::protocol::{self, reply, Code, Fail, Proto, Req, V};
use crate::room::{Room, RoomId, Why};
use crate::session::SessionId;
use crate::worker::Worker;

/// The index key of a resume token (its 128 bits); `None` for anything that
/// is not 32 hex digits.
pub(crate) fn token_key(token: &str) -> Option<u128> {
    if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(token, 16).ok()
}

/// Bytes a replayed message is counted for against the replay budget: its
/// data (base64 on JSON connections, to be safe) plus the frame and keys.
fn replay_cost(data: &[u8], room: &str, proto: Proto) -> usize {
    let data = match proto {
        Proto::Msgpack => data.len(),
        Proto::Json => data.len().div_ceil(3) * 4,
    };
    data + room.len() + 64
}

impl Worker {
    /// `hello` with `resume` on connection `cid`, whose fresh session is
    /// `sid`. Unknown, expired or malformed tokens are `not_found` and the
    /// fresh session goes on. Cost: O(seats * members) for `back`, plus the
    /// replayed messages.
    pub(crate) fn op_resume(
        &mut self,
        cid: ConnId,
        sid: SessionId,
        token: &str,
        req: &Req,
    ) -> Result<(), Fail> {
        let gone = || {
            Fail::new(
                Code::NotFound,
                "unknown or expired session; a fresh session goes on",
            )
        };
        let old = token_key(token)
            .and_then(|k| self.tokens.get(&k).copied())
            .ok_or_else(gone)?;
        // The index is keyed by value; the token must also match as written.
        let (old_conn, member) = match self.sessions.get(old) {
            Some(s) if &*s.token == token => (s.conn, s.member),
            _ => return Err(gone()),
        };
        if old == sid {
            return Err(Fail::new(
                Code::BadRequest,
                "that session is this connection's own",
            ));
        }
        let Some((_, proto)) = self.sessions.get(sid).and_then(|s| s.conn) else {
            return Ok(());
        };
        if let Some((ocid, _)) = old_conn {
            // Half-open: the old connection is closed (4003); `detach`
            // leaves the session alone for `Replaced`, so it stays attached
            // until it is moved below.
            self.close_conn(ocid, CloseReason::Replaced);
        }
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
        self.release_session(sid, Why::Left);
        let Some(s) = self.sessions.get_mut(old) else {
            return Err(gone());
        };
        let was_away = s.conn.is_none();
        if let Some((t, _)) = s.grace.take() {
            self.timers.cancel(t);
        }
        s.conn = Some((cid, proto));
        s.hello_done = true;
        if meta.is_some() {
            s.meta = meta;
        }
        // The credential of the connection in use decides future joins.
        s.grant = grant;
        let seats = s.seats.clone();
        // Rooms homed on other workers are re-attached (`back`), but their
        // history is there: they report `recovered: false` (see README).
        let remote: Vec<Box<str>> = s
            .remote
            .iter()
            .flat_map(|r| r.seats.iter().map(|(_, n)| n.clone()))
            .collect();
        if let Some(c) = self.conns.arena.get_mut(cid) {
            if let Phase::Ws(ws) = &mut c.phase {
                ws.session = old;
            }
        }
        debug!(
            "w={} conn={cid:?} resumed member={member} ({} seats{})",
            self.id,
            seats.len(),
            if was_away { "" } else { ", took over" }
        );
        if was_away {
            for &rid in &seats {
                crate::handler::broadcast!(self, rid, Some(member), |room: &Room| {
                    V::Map(vec![
                        ("t", V::Str("presence")),
                        ("room", V::Str(&room.name)),
                        ("back", V::U(member)),
                    ])
                });
            }
            self.tell_homes(old, crate::bus::kind::BACK, Why::Left);
        }
        self.replay(cid, proto, req, member, &seats, &remote);
        Ok(())
    }

    /// Sends `resumed` and each recovered room's missed messages. A room is
    /// recovered when the client named its `last` seq, the history still
    /// holds every message after it, and the replay fits: all replays of one
    /// resume together get at most half of `--out-buffer`, so a replay alone
    /// never makes the connection a slow consumer.
    fn replay(
        &mut self,
        cid: ConnId,
        proto: Proto,
        req: &Req,
        member: u64,
        seats: &[RoomId],
        remote: &[Box<str>],
    ) {
        let budget = self.cfg.out_buffer as usize / 2;
        let mut used = 0;
        let mut plan: Vec<(RoomId, Option<u64>)> = Vec::with_capacity(seats.len());
        for &rid in seats {
            let Some(room) = self.rooms.get(rid) else {
                continue;
            };
            let last = req.last.as_ref().and_then(|m| m.get(&*room.name)).copied();
            let recovered = last.filter(|&last| {
                let Some(missed) = history::since(room.history.as_deref(), last, room.seq) else {
                    return false;
                };
                let cost: usize = missed
                    .map(|(_, _, d)| replay_cost(d, &room.name, proto))
                    .sum();
                if used + cost > budget {
                    return false;
                }
                used += cost;
                true
            });
            plan.push((rid, recovered));
        }
        let frame = {
            let rooms = plan
                .iter()
                .filter_map(|&(rid, rec)| {
                    let room = self.rooms.get(rid)?;
                    Some((
                        &*room.name,
                        V::Map(vec![("recovered", V::Bool(rec.is_some()))]),
                    ))
                })
                .chain(
                    remote
                        .iter()
                        .map(|n| (&**n, V::Map(vec![("recovered", V::Bool(false))]))),
                )
                .collect();
            let mut m = reply("resumed", req.rid);
            m.push(("id", V::U(member)));
            m.push(("rooms", V::Map(rooms)));
            protocol::encode_frame(proto, &V::Map(m))
        };
        self.conns.push(cid, &frame);
        for (rid, last) in plan {
            let (Some(last), Some(room)) = (last, self.rooms.get(rid)) else {
                continue;
            };
            let missed = history::since(room.history.as_deref(), last, room.seq);
            for (seq, from, data) in missed.into_iter().flatten() {
                let f = protocol::encode_frame(
                    proto,
                    &V::Map(vec![
                        ("t", V::Str("msg")),
                        ("room", V::Str(&room.name)),
                        ("from", V::U(from)),
                        ("seq", V::U(seq)),
                        ("data", V::Bin(data)),
                    ]),
                );
                if !self.conns.push(cid, &f) {
                    return;
                }
            }
        }
    }

    /// Frees a session: its grace timer, its token, its queue places. Every
    /// session leaves the arena through here.
    pub(crate) fn free_session(&mut self, sid: SessionId) {
        let Some(s) = self.sessions.remove(sid) else {
            return;
        };
        if let Some((t, _)) = s.grace {
            self.timers.cancel(t);
        }
        if let Some(k) = token_key(&s.token) {
            if self.tokens.get(&k) == Some(&sid) {
                self.tokens.remove(&k);
            }
        }
        self.forget_remote(sid, &s);
        self.unqueue(sid);
    }
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
        assert_eq!(token_key(""), None);
    }
}
