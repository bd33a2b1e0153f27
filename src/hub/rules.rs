//! A room's rules as pure functions of the room (PROTOCOL.md "Rooms" and
//! "Props"): whether a props change or a state change may happen, and what
//! it does to the room. The worker calls these and performs what follows
//! (the answer, the broadcast); the rules are unit-tested here without a
//! server.

use crate::protocol::{Blob, Code, Fail, Req};
use crate::room::{valid_name, Props, Room, RoomState};
use crate::session::MemberId;

/// Largest `meta` (PROTOCOL.md "Identities and names").
pub const MAX_META: usize = 1024;

/// A `meta` as kept: at most [`MAX_META`] bytes (`too_large`).
pub fn meta_of(b: &Option<Blob>) -> Result<Option<Box<[u8]>>, Fail> {
    match b {
        Some(m) if m.0.len() > MAX_META => Err(Fail::new(
            Code::TooLarge,
            format!("meta is {} bytes; at most {MAX_META}", m.0.len()),
        )),
        Some(m) => Ok(Some(m.0.as_ref().into())),
        None => Ok(None),
    }
}

/// The request's `room`: present (`bad_request`) and a valid name
/// (`bad_request`).
pub fn room_name<'a>(req: &'a Req) -> Result<&'a str, Fail> {
    match req.room.as_deref() {
        None => Err(Fail::new(Code::BadRequest, "missing \"room\"")),
        Some(n) if !valid_name(n) => Err(Fail::new(
            Code::BadRequest,
            "room names are 1 to 64 bytes of [A-Za-z0-9._:-]",
        )),
        Some(n) => Ok(n),
    }
}

/// The request's `data` (`bad_request` when missing).
pub fn data<'a>(req: &'a Req) -> Result<&'a [u8], Fail> {
    req.data
        .as_ref()
        .map(|d| d.0.as_ref())
        .ok_or_else(|| Fail::new(Code::BadRequest, "missing \"data\""))
}

/// Members a room takes when `create` does not say (at most the server's).
pub const DEFAULT_MAX: u16 = 16;

/// A room's member limit from `create`'s `max`: 16 when absent, the
/// server's `--max-members` for 0, never more than it.
pub fn room_max(asked: Option<u16>, server_max: u16) -> u16 {
    match asked {
        None => DEFAULT_MAX.min(server_max),
        Some(0) => server_max,
        Some(m) => m.min(server_max),
    }
}

/// A new room's props from `create`'s `props`, with their size (keys plus
/// values), which must stay within `max` (`too_large`).
pub fn initial_props<'a>(
    kv: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    max: usize,
) -> Result<(Props, usize), Fail> {
    let mut props = Props::new();
    let mut bytes = 0;
    for (k, v) in kv {
        if let Some(old) = props.insert(k.into(), v.into()) {
            bytes -= k.len() + old.len();
        }
        bytes += k.len() + v.len();
    }
    if bytes > max {
        return Err(Fail::new(
            Code::TooLarge,
            format!("props are {bytes} bytes; at most {max}"),
        ));
    }
    Ok((props, bytes))
}

/// Whether member `who` (not seated there) may take a seat in `room`: joins
/// are open (`created` or `waiting`, else `invalid_state`), a seat is free
/// (`full`), and `who` is not banned (`forbidden`).
pub fn check_join(room: &Room, who: MemberId) -> Result<(), Fail> {
    let name = &*room.name;
    if !room.state.accepts_joins() {
        return Err(Fail::new(
            Code::InvalidState,
            format!("room {name:?} is {}; joins are closed", room.state.as_str()),
        ));
    }
    if room.is_full() {
        return Err(Fail::new(
            Code::Full,
            format!("room {name:?} is full ({} members)", room.max),
        ));
    }
    if room.is_banned(who) {
        return Err(Fail::new(
            Code::Forbidden,
            format!("you are banned from {name:?}"),
        ));
    }
    Ok(())
}

/// An `autostart` room that just filled up while `waiting` starts `playing`.
pub fn autostarts(room: &Room) -> bool {
    room.autostart() && room.is_full() && room.state == RoomState::Waiting
}

/// A `props` request checked against a room: the keys whose value moves,
/// and the room's props size once they have.
#[derive(Debug, PartialEq, Eq)]
pub struct PropsChange<'a> {
    /// (key, new value or `None` to delete), in the order given.
    pub changed: Vec<(&'a str, Option<&'a [u8]>)>,
    size: usize,
}

impl<'a> PropsChange<'a> {
    /// Checks `set` against `room`: `expect` must be the room's `ver` when
    /// given (`conflict`, carrying the current `ver`); keys whose value does
    /// not move (deleting an absent key, setting the value a key has) are
    /// left out; the props' size (keys plus values) must stay within `max`
    /// (`too_large`).
    pub fn check(
        room: &Room,
        set: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
        expect: Option<u64>,
        max: usize,
    ) -> Result<PropsChange<'a>, Fail> {
        if let Some(e) = expect {
            if e != room.ver {
                let mut f = Fail::new(
                    Code::Conflict,
                    format!("expected ver {e}, room is at {}", room.ver),
                );
                f.ver = Some(room.ver);
                return Err(f);
            }
        }
        let props = room.props();
        let changed: Vec<_> = set
            .into_iter()
            .filter(|&(k, v)| props.get(k).map(|b| &**b) != v)
            .collect();
        let mut size = room.props_bytes();
        for &(k, v) in &changed {
            if let Some(old) = props.get(k) {
                size -= k.len() + old.len();
            }
            if let Some(v) = v {
                size += k.len() + v.len();
            }
        }
        if size > max {
            return Err(Fail::new(
                Code::TooLarge,
                format!("props would be {size} bytes; at most {max}"),
            ));
        }
        Ok(PropsChange { changed, size })
    }

    /// Nothing moves: the answer is the current `ver`, and nobody is told.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }

    /// Applies the change; `ver` moves by one. Returns the new `ver`.
    pub fn apply(&self, room: &mut Room) -> u64 {
        let x = room.extra_mut();
        for &(k, v) in &self.changed {
            match v {
                Some(v) => {
                    x.props.insert(k.into(), v.into());
                }
                None => {
                    x.props.remove(k);
                }
            }
        }
        x.props_bytes = self.size;
        room.ver += 1;
        room.ver
    }
}

/// Whether member `by` may move `room` to `to`: only the owner
/// (`forbidden`), and only along the room's transitions (`invalid_state`).
pub fn check_state(room: &Room, by: MemberId, to: RoomState) -> Result<(), Fail> {
    if room.owner != by {
        return Err(Fail::new(
            Code::Forbidden,
            "only the room's owner may change its state",
        ));
    }
    if !room.state.can_move(to) {
        return Err(Fail::new(
            Code::InvalidState,
            format!("cannot go from {} to {}", room.state.as_str(), to.as_str()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> Room {
        Room::new("r", 1, 8, 60_000, false, false)
    }

    fn req(json: &str) -> Req<'_> {
        crate::protocol::decode(crate::protocol::Proto::Json, json.as_bytes())
            .unwrap_or_else(|(_, f)| panic!("a request: {}", f.msg))
    }

    #[test]
    fn a_room_name_must_be_there_and_valid() {
        assert_eq!(
            room_name(&req(r#"{"t":"join","room":"a.b-c_1:2"}"#)).ok(),
            Some("a.b-c_1:2")
        );
        for bad in [
            r#"{"t":"join"}"#,
            r#"{"t":"join","room":""}"#,
            r#"{"t":"join","room":"a b"}"#,
        ] {
            assert_eq!(
                room_name(&req(bad)).map_err(|f| f.code),
                Err(Code::BadRequest),
                "{bad}"
            );
        }
        let long = format!(r#"{{"t":"join","room":"{}"}}"#, "x".repeat(65));
        assert_eq!(
            room_name(&req(&long)).map_err(|f| f.code),
            Err(Code::BadRequest)
        );
    }

    #[test]
    fn data_must_be_there() {
        assert_eq!(
            data(&req(r#"{"t":"pub","data":"hi"}"#)).ok(),
            Some(&b"hi"[..])
        );
        assert_eq!(
            data(&req(r#"{"t":"pub"}"#)).map_err(|f| f.code),
            Err(Code::BadRequest)
        );
    }

    #[test]
    fn meta_is_bounded() {
        assert_eq!(meta_of(&None).ok(), Some(None));
        let ok = Some(Blob(vec![7; MAX_META].into()));
        assert_eq!(meta_of(&ok).ok().flatten().map(|m| m.len()), Some(MAX_META));
        let big = Some(Blob(vec![7; MAX_META + 1].into()));
        assert_eq!(meta_of(&big).map_err(|f| f.code), Err(Code::TooLarge));
    }

    #[test]
    fn max_defaults_to_16_and_never_passes_the_server() {
        assert_eq!(room_max(None, 64), 16);
        assert_eq!(room_max(None, 8), 8);
        assert_eq!(room_max(Some(0), 64), 64, "0: the server's limit");
        assert_eq!(room_max(Some(2), 64), 2);
        assert_eq!(room_max(Some(1000), 64), 64);
    }

    #[test]
    fn initial_props_are_bounded_and_counted() {
        let (p, n) = initial_props([("a", &b"12"[..]), ("bb", b"")], 5).expect("5 bytes");
        assert_eq!(n, 5);
        assert_eq!(p.len(), 2);
        let f = initial_props([("a", &b"123"[..]), ("bb", b"")], 5).expect_err("6 bytes");
        assert_eq!(f.code, Code::TooLarge);
        let (p, n) = initial_props([("a", &b"1234"[..]), ("a", b"1")], 2).expect("last wins");
        assert_eq!((p.len(), n), (1, 2));
        assert_eq!(
            initial_props([], 0).map(|(p, n)| (p.len(), n)).ok(),
            Some((0, 0))
        );
    }

    #[test]
    fn joins_need_an_open_state_a_free_seat_and_no_ban() {
        let mut r = Room::new("r", 1, 1, 60_000, false, false);
        assert!(check_join(&r, 2).is_ok());
        for (state, ok) in [
            (RoomState::Created, true),
            (RoomState::Waiting, true),
            (RoomState::Playing, false),
            (RoomState::Settling, false),
            (RoomState::Closed, false),
        ] {
            r.state = state;
            let got = check_join(&r, 2);
            assert_eq!(got.is_ok(), ok, "{state:?}");
            if let Err(f) = got {
                assert_eq!(f.code, Code::InvalidState);
            }
        }
        r.state = RoomState::Waiting;
        r.extra_mut().banned.push(3);
        assert_eq!(check_join(&r, 3).map_err(|f| f.code), Err(Code::Forbidden));
        assert!(check_join(&r, 2).is_ok(), "a ban is per member");
    }

    fn set<'a>(kv: &[(&'a str, Option<&'a [u8]>)]) -> Vec<(&'a str, Option<&'a [u8]>)> {
        kv.to_vec()
    }

    fn apply(r: &mut Room, kv: &[(&str, Option<&[u8]>)]) -> u64 {
        let c = PropsChange::check(r, set(kv), None, 1 << 20).expect("allowed");
        c.apply(r)
    }

    #[test]
    fn a_change_moves_ver_by_one_and_is_kept() {
        let mut r = room();
        assert_eq!(apply(&mut r, &[("a", Some(b"1")), ("b", Some(b"22"))]), 1);
        assert_eq!(r.props().get("a").map(|v| &**v), Some(&b"1"[..]));
        assert_eq!(r.props_bytes(), 1 + 1 + 1 + 2);
        assert_eq!(apply(&mut r, &[("a", Some(b"333"))]), 2);
        assert_eq!(
            r.props_bytes(),
            1 + 3 + 1 + 2,
            "a replaced value counts once"
        );
        assert_eq!(apply(&mut r, &[("b", None)]), 3);
        assert_eq!(r.props_bytes(), 1 + 3);
        assert!(!r.props().contains_key("b"));
    }

    #[test]
    fn only_keys_whose_value_moves_are_changed() {
        let mut r = room();
        apply(&mut r, &[("a", Some(b"1"))]);
        let c = PropsChange::check(
            &r,
            set(&[("a", Some(b"1")), ("gone", None), ("b", Some(b"2"))]),
            None,
            100,
        )
        .expect("allowed");
        assert_eq!(c.changed, vec![("b", Some(&b"2"[..]))]);
    }

    #[test]
    fn a_change_that_moves_nothing_keeps_ver() {
        let mut r = room();
        apply(&mut r, &[("a", Some(b"1"))]);
        let c = PropsChange::check(&r, set(&[("a", Some(b"1")), ("x", None)]), Some(1), 100)
            .expect("allowed");
        assert!(c.is_empty());
        assert_eq!(r.ver, 1);
    }

    #[test]
    fn expect_must_match_ver_and_a_conflict_carries_it() {
        let mut r = room();
        apply(&mut r, &[("a", Some(b"1"))]);
        let f =
            PropsChange::check(&r, set(&[("a", Some(b"2"))]), Some(0), 100).expect_err("stale ver");
        assert_eq!(f.code, Code::Conflict);
        assert_eq!(f.ver, Some(1));
        assert!(PropsChange::check(&r, set(&[("a", Some(b"2"))]), Some(1), 100).is_ok());
    }

    #[test]
    fn the_size_limit_counts_keys_and_values_after_the_change() {
        let mut r = room();
        apply(&mut r, &[("k", Some(&[0; 9]))]); // 10 bytes
        let f =
            PropsChange::check(&r, set(&[("j", Some(&[0; 10]))]), None, 20).expect_err("21 bytes");
        assert_eq!(f.code, Code::TooLarge);
        assert_eq!(r.ver, 1, "a refused change changes nothing");
        // Replacing and deleting in the same request make room.
        let c = PropsChange::check(&r, set(&[("k", None), ("j", Some(&[0; 19]))]), None, 20)
            .expect("exactly 20 bytes");
        c.apply(&mut r);
        assert_eq!(r.props_bytes(), 20);
    }

    #[test]
    fn a_room_without_props_allocates_none_until_the_first() {
        let mut r = room();
        assert!(r.props().is_empty());
        assert_eq!(r.props_bytes(), 0);
        let c = PropsChange::check(&r, set(&[("x", None)]), None, 10).expect("allowed");
        assert!(c.is_empty(), "deleting an absent key moves nothing");
        assert!(r.extra.is_none(), "nothing allocated for it");
        apply(&mut r, &[("x", Some(b""))]);
        assert_eq!(
            r.props().get("x").map(|v| v.len()),
            Some(0),
            "an empty value is a value"
        );
    }

    #[test]
    fn only_the_owner_moves_the_state() {
        let r = room();
        let f = check_state(&r, 2, RoomState::Waiting).expect_err("not the owner");
        assert_eq!(f.code, Code::Forbidden);
        assert!(check_state(&r, 1, RoomState::Waiting).is_ok());
    }

    #[test]
    fn the_state_moves_only_along_its_transitions() {
        let mut r = room();
        for (from, to, ok) in [
            (RoomState::Created, RoomState::Playing, false),
            (RoomState::Created, RoomState::Waiting, true),
            (RoomState::Waiting, RoomState::Created, false),
            (RoomState::Playing, RoomState::Settling, true),
            (RoomState::Settling, RoomState::Closed, true),
            (RoomState::Created, RoomState::Closed, true),
            (RoomState::Closed, RoomState::Closed, false),
        ] {
            r.state = from;
            let got = check_state(&r, 1, to);
            assert_eq!(got.is_ok(), ok, "{from:?} -> {to:?}");
            if let Err(f) = got {
                assert_eq!(f.code, Code::InvalidState);
                assert!(f.msg.contains(from.as_str()) && f.msg.contains(to.as_str()));
            }
        }
    }
}
