//! The messages the server sends its clients (PROTOCOL.md), one constructor
//! per `t`. Each returns the message as a value tree ([`V`]) for the caller
//! to encode once per subprotocol: `protocol::encode_frame` for one
//! session, `protocol::Frames` for a fan-out. Keys come in the order they
//! always had, so the bytes on the wire are the same. (`err` is
//! `protocol::err_v`, next to the `Fail` it is made from.)

use std::collections::BTreeMap;

use crate::protocol::{reply, V};
use crate::room::{Member, Room, RoomState, Shown, Why};
use crate::session::Part;

/// `{"id", "meta"?}`: a member as `joined`, `presence` and `matched` list it.
pub fn member_v(m: &Member) -> V<'_> {
    let mut kv = vec![("id", V::U(m.id))];
    if let Some(meta) = &m.meta {
        kv.push(("meta", V::Bin(meta)));
    }
    V::Map(kv)
}

/// A room's props as a map of binary values.
pub fn props_v(props: &BTreeMap<Box<str>, Box<[u8]>>) -> V<'_> {
    V::Map(props.iter().map(|(k, v)| (&**k, V::Bin(v))).collect())
}

/// `welcome`: the first message of a connection.
pub fn welcome(id: u64, session: &str, hb_ms: u64, worker: u64) -> V<'_> {
    V::Map(vec![
        ("t", V::Str("welcome")),
        ("id", V::U(id)),
        ("session", V::Str(session)),
        ("hb_ms", V::U(hb_ms)),
        (
            "server",
            V::Str(concat!("roomd/", env!("CARGO_PKG_VERSION"))),
        ),
        ("worker", V::U(worker)),
    ])
}

/// `resumed`: the session's member id and, per room, whether it was
/// recovered or why it closed.
pub fn resumed(rid: Option<u32>, id: u64, rooms: &[(Box<str>, Part)]) -> V<'_> {
    let rooms = rooms
        .iter()
        .map(|(name, part)| {
            let v = match part {
                Part::Recovered(rec) => ("recovered", V::Bool(*rec)),
                Part::Closed(why) => ("closed", V::Str(why)),
            };
            (&**name, V::Map(vec![v]))
        })
        .collect();
    let mut m = reply("resumed", rid);
    m.push(("id", V::U(id)));
    m.push(("rooms", V::Map(rooms)));
    V::Map(m)
}

/// `closing`: the server is draining; reconnect after `retry_ms`.
pub fn closing(retry_ms: u64) -> V<'static> {
    V::Map(vec![("t", V::Str("closing")), ("retry_ms", V::U(retry_ms))])
}

pub fn pong(rid: Option<u32>) -> V<'static> {
    V::Map(reply("pong", rid))
}

/// `ok` with the request's `rid` and the fields of the answer.
pub fn ok<'a>(rid: Option<u32>, extra: Vec<(&'a str, V<'a>)>) -> V<'a> {
    let mut m = reply("ok", rid);
    m.extend(extra);
    V::Map(m)
}

pub fn created(rid: Option<u32>, room: &str) -> V<'_> {
    let mut m = reply("created", rid);
    m.push(("room", V::Str(room)));
    V::Map(m)
}

/// `joined`: the room as a new member (or, with `watch`, a watcher) sees
/// it.
pub fn joined(rid: Option<u32>, room: &Room, watch: bool) -> V<'_> {
    let mut m = reply("joined", rid);
    m.push(("room", V::Str(&room.name)));
    m.push((
        "members",
        V::Arr(room.members.iter().map(member_v).collect()),
    ));
    m.push(("state", V::Str(room.state.as_str())));
    m.push(("props", props_v(room.props())));
    m.push(("ver", V::U(room.ver)));
    m.push(("seq", V::U(room.seq)));
    m.push(("owner", V::U(room.owner)));
    m.push(("watchers", V::U(room.watchers().into())));
    if watch {
        m.push(("watch", V::Bool(true)));
    }
    V::Map(m)
}

pub fn left(rid: Option<u32>, room: &str) -> V<'_> {
    let mut m = reply("left", rid);
    m.push(("room", V::Str(room)));
    V::Map(m)
}

/// A change in who is in a room.
pub enum Presence<'a> {
    /// A member joined (`null` if the room has none, which does not happen).
    Join(Option<&'a Member>),
    Leave(u64, Why),
    /// A member's connection went away (grace period), or it came back.
    Away(u64),
    Back(u64),
}

pub fn presence<'a>(room: &'a str, p: Presence<'a>) -> V<'a> {
    let mut m = Vec::with_capacity(4);
    m.push(("t", V::Str("presence")));
    m.push(("room", V::Str(room)));
    match p {
        Presence::Join(member) => m.push(("join", member.map_or(V::Nil, member_v))),
        Presence::Leave(id, why) => {
            m.push(("leave", V::U(id)));
            m.push(("why", V::Str(why.as_str())));
        }
        Presence::Away(id) => m.push(("away", V::U(id))),
        Presence::Back(id) => m.push(("back", V::U(id))),
    }
    V::Map(m)
}

/// `msg` of a `pub`: to every member, numbered in the room's history.
pub fn msg<'a>(room: &'a str, from: u64, seq: u64, data: &'a [u8]) -> V<'a> {
    V::Map(vec![
        ("t", V::Str("msg")),
        ("room", V::Str(room)),
        ("from", V::U(from)),
        ("seq", V::U(seq)),
        ("data", V::Bin(data)),
    ])
}

/// `msg` of a `send`: to one member, not in the history.
pub fn msg_to<'a>(room: &'a str, from: u64, to: u64, data: &'a [u8]) -> V<'a> {
    V::Map(vec![
        ("t", V::Str("msg")),
        ("room", V::Str(room)),
        ("from", V::U(from)),
        ("to", V::U(to)),
        ("data", V::Bin(data)),
    ])
}

pub fn state(room: &str, state: RoomState, ver: u64) -> V<'_> {
    V::Map(vec![
        ("t", V::Str("state")),
        ("room", V::Str(room)),
        ("state", V::Str(state.as_str())),
        ("ver", V::U(ver)),
    ])
}

/// `props`: the keys that changed (a removed one is `nil`).
pub fn props<'a>(
    room: &'a str,
    set: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    ver: u64,
) -> V<'a> {
    V::Map(vec![
        ("t", V::Str("props")),
        ("room", V::Str(room)),
        (
            "set",
            V::Map(set.map(|(k, v)| (k, v.map_or(V::Nil, V::Bin))).collect()),
        ),
        ("ver", V::U(ver)),
    ])
}

pub fn closed<'a>(room: &'a str, why: &'a str) -> V<'a> {
    V::Map(vec![
        ("t", V::Str("closed")),
        ("room", V::Str(room)),
        ("why", V::Str(why)),
    ])
}

/// One room of a `rooms` answer.
pub fn listed(name: &str, members: u32, max: u16, state: RoomState, watchers: u32) -> V<'_> {
    V::Map(vec![
        ("room", V::Str(name)),
        ("members", V::U(members.into())),
        ("max", V::U(max.into())),
        ("state", V::Str(state.as_str())),
        ("watchers", V::U(watchers.into())),
    ])
}

/// `rooms`: the answer to `list` ([`listed`] each); `missing` names the
/// workers whose rooms it lacks.
pub fn rooms<'a>(rid: Option<u32>, rooms: Vec<V<'a>>, missing: &[u32]) -> V<'a> {
    let mut m = reply("rooms", rid);
    m.push(("rooms", V::Arr(rooms)));
    if !missing.is_empty() {
        m.push((
            "missing",
            V::Arr(missing.iter().map(|&w| V::U(w.into())).collect()),
        ));
    }
    V::Map(m)
}

pub fn watchers(room: &str, n: u32) -> V<'_> {
    V::Map(vec![
        ("t", V::Str("watchers")),
        ("room", V::Str(room)),
        ("n", V::U(n.into())),
    ])
}

pub fn kicked(room: &str) -> V<'_> {
    V::Map(vec![("t", V::Str("kicked")), ("room", V::Str(room))])
}

/// `lobby`: a public room as a subscriber now sees it.
pub fn lobby(room: &str, max: u16, s: Shown) -> V<'_> {
    V::Map(vec![
        ("t", V::Str("lobby")),
        ("room", V::Str(room)),
        ("members", V::U(s.members.into())),
        ("max", V::U(max.into())),
        ("state", V::Str(s.state.as_str())),
        ("watchers", V::U(s.watchers.into())),
    ])
}

/// `lobby` with `gone`: the room is no longer shown.
pub fn lobby_gone(room: &str) -> V<'_> {
    V::Map(vec![
        ("t", V::Str("lobby")),
        ("room", V::Str(room)),
        ("gone", V::Bool(true)),
    ])
}

pub fn queued<'a>(rid: Option<u32>, queue: &'a str) -> V<'a> {
    let mut m = reply("queued", rid);
    m.push(("queue", V::Str(queue)));
    V::Map(m)
}

pub fn match_timeout(queue: &str) -> V<'_> {
    V::Map(vec![
        ("t", V::Str("match_timeout")),
        ("queue", V::Str(queue)),
    ])
}

pub fn matched<'a>(queue: &'a str, room: &'a str, players: &'a [Member]) -> V<'a> {
    V::Map(vec![
        ("t", V::Str("matched")),
        ("queue", V::Str(queue)),
        ("room", V::Str(room)),
        ("players", V::Arr(players.iter().map(member_v).collect())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode_payload, Proto};
    use crate::session::SessionId;

    fn json(v: V) -> String {
        String::from_utf8(encode_payload(Proto::Json, &v)).unwrap_or_default()
    }

    #[test]
    fn keys_come_in_the_order_they_always_had() {
        let m = Member {
            id: 7,
            session: SessionId::from_bits(1),
            meta: Some(b"me".to_vec().into()),
        };
        let parts: [(Box<str>, Part); 2] = [
            ("a".into(), Part::Recovered(true)),
            ("b".into(), Part::Closed("idle".into())),
        ];
        let server = concat!("roomd/", env!("CARGO_PKG_VERSION"));
        let cases = [
            (
                welcome(7, "tok", 5000, 1),
                format!(
                    r#"{{"t":"welcome","id":7,"session":"tok","hb_ms":5000,"server":"{server}","worker":1}}"#
                ),
            ),
            (pong(Some(3)), r#"{"t":"pong","rid":3}"#.into()),
            (
                ok(Some(3), vec![("ver", V::U(2))]),
                r#"{"t":"ok","rid":3,"ver":2}"#.into(),
            ),
            (ok(None, vec![]), r#"{"t":"ok"}"#.into()),
            (
                created(None, "r"),
                r#"{"t":"created","room":"r"}"#.into(),
            ),
            (left(Some(1), "r"), r#"{"t":"left","rid":1,"room":"r"}"#.into()),
            (
                presence("r", Presence::Join(Some(&m))),
                r#"{"t":"presence","room":"r","join":{"id":7,"meta":"me"}}"#.into(),
            ),
            (
                presence("r", Presence::Leave(7, Why::Timeout)),
                r#"{"t":"presence","room":"r","leave":7,"why":"timeout"}"#.into(),
            ),
            (
                presence("r", Presence::Away(7)),
                r#"{"t":"presence","room":"r","away":7}"#.into(),
            ),
            (
                presence("r", Presence::Back(7)),
                r#"{"t":"presence","room":"r","back":7}"#.into(),
            ),
            (
                msg("r", 7, 9, b"hi"),
                r#"{"t":"msg","room":"r","from":7,"seq":9,"data":"hi"}"#.into(),
            ),
            (
                msg_to("r", 7, 8, b"hi"),
                r#"{"t":"msg","room":"r","from":7,"to":8,"data":"hi"}"#.into(),
            ),
            (
                state("r", RoomState::Playing, 4),
                r#"{"t":"state","room":"r","state":"playing","ver":4}"#.into(),
            ),
            (
                props("r", [("a", Some(&b"1"[..])), ("b", None)].into_iter(), 5),
                r#"{"t":"props","room":"r","set":{"a":"1","b":null},"ver":5}"#.into(),
            ),
            (
                closed("r", "lost"),
                r#"{"t":"closed","room":"r","why":"lost"}"#.into(),
            ),
            (
                rooms(
                    Some(2),
                    vec![listed("r", 1, 4, RoomState::Waiting, 0)],
                    &[1],
                ),
                r#"{"t":"rooms","rid":2,"rooms":[{"room":"r","members":1,"max":4,"state":"waiting","watchers":0}],"missing":[1]}"#.into(),
            ),
            (rooms(None, vec![], &[]), r#"{"t":"rooms","rooms":[]}"#.into()),
            (
                watchers("r", 3),
                r#"{"t":"watchers","room":"r","n":3}"#.into(),
            ),
            (kicked("r"), r#"{"t":"kicked","room":"r"}"#.into()),
            (
                lobby(
                    "r",
                    4,
                    Shown {
                        members: 1,
                        state: RoomState::Created,
                        watchers: 2,
                    },
                ),
                r#"{"t":"lobby","room":"r","members":1,"max":4,"state":"created","watchers":2}"#
                    .into(),
            ),
            (
                lobby_gone("r"),
                r#"{"t":"lobby","room":"r","gone":true}"#.into(),
            ),
            (
                queued(Some(1), "q"),
                r#"{"t":"queued","rid":1,"queue":"q"}"#.into(),
            ),
            (
                match_timeout("q"),
                r#"{"t":"match_timeout","queue":"q"}"#.into(),
            ),
            (
                matched("q", "r", std::slice::from_ref(&m)),
                r#"{"t":"matched","queue":"q","room":"r","players":[{"id":7,"meta":"me"}]}"#
                    .into(),
            ),
            (
                resumed(Some(1), 7, &parts),
                r#"{"t":"resumed","rid":1,"id":7,"rooms":{"a":{"recovered":true},"b":{"closed":"idle"}}}"#.into(),
            ),
            (
                closing(1000),
                r#"{"t":"closing","retry_ms":1000}"#.into(),
            ),
        ];
        for (v, want) in cases {
            assert_eq!(json(v), want);
        }
    }
}
