//! Where a room message goes, and the fan-out itself: the connections here
//! (one [`Effect::Fan`] for the loop: the frame encoded once per
//! subprotocol, and the list of recipients), the sessions on other workers
//! (one `FANOUT` per worker with members there, see `cluster`), and the
//! sessions whose output is held while they resume. Called through the
//! `broadcast!` macro; measured by `benches/fanout.rs`.

use crate::arena::Arena;
use crate::protocol::{Proto, V};
use crate::room::{Room, RoomId};
use crate::session::{Attach, Client, Far, MemberId, Session, SessionId};

use super::effects::{BusOut, Effect, Out, Span};
use super::ConnId;

/// Sends one message to a room's members (all but `except`), encoded once
/// per subprotocol: one [`Effect::Fan`] for the connections here, held for
/// resuming sessions, and one bus message per other worker with members
/// there, with the list of its sessions. Takes the core's fields apart so
/// the message may borrow from the room. `count`: the loop counts the
/// deliveries it queues (a room message's). Returns the number held.
/// Cost: O(members + frame size), and O(recipients) for the loop.
#[allow(clippy::too_many_arguments)]
pub fn fan_out<'v>(
    rooms: &'v Arena<Room>,
    sessions: &mut Arena<Session>,
    out: &mut Out,
    t: &mut Targets,
    bus: &mut Option<BusOut>,
    (rid, except, count): (RoomId, Option<MemberId>, bool),
    build: impl FnOnce(&'v Room) -> V<'v>,
) -> u64 {
    let Some(room) = rooms.get(rid) else {
        return 0;
    };
    collect_targets(room, sessions, except, t);
    if t.local.is_empty() && t.remote.is_empty() && t.held.is_empty() {
        return 0;
    }
    // Each subprotocol's frame is encoded once, where the loop reads it.
    let v = build(room);
    let mut spans = [None, None];
    let mut frame = |out: &mut Out, p: Proto| -> Span {
        *spans[p as usize].get_or_insert_with(|| out.encode(p, &v))
    };
    if !t.local.is_empty() {
        let (mut mp, mut js) = (false, false);
        for &(_, p) in &t.local {
            match p {
                Proto::Msgpack => mp = true,
                Proto::Json => js = true,
            }
        }
        let msgpack = if mp {
            frame(out, Proto::Msgpack)
        } else {
            Span::default()
        };
        let json = if js {
            frame(out, Proto::Json)
        } else {
            Span::default()
        };
        let from = out.targets.len() as u32;
        out.targets.extend_from_slice(&t.local);
        out.list.push(Effect::Fan {
            msgpack,
            json,
            from,
            to: out.targets.len() as u32,
            count,
        });
    }
    let mut n = 0;
    for &(sid, p) in &t.held {
        let span = frame(out, p);
        if hold(sessions, sid, out.get(span), out.limit) {
            n += 1;
        }
    }
    if let (false, Some(bus)) = (t.remote.is_empty(), bus.as_mut()) {
        t.remote.sort_unstable_by_key(|&(w, p, _)| (w, p as u8));
        let mut rest = &t.remote[..];
        while let Some(&(w, _, _)) = rest.first() {
            let end = rest.iter().position(|x| x.0 != w).unwrap_or(rest.len());
            let (mine, next) = rest.split_at(end);
            rest = next;
            t.ids.clear();
            t.ids.extend(mine.iter().map(|x| x.2));
            let split = mine
                .iter()
                .position(|x| x.1 != mine[0].1)
                .unwrap_or(mine.len());
            let (a, b) = t.ids.split_at(split);
            let sa = frame(out, mine[0].1);
            let sb = mine.get(split).map(|x| frame(out, x.1));
            let fa = out.get(sa);
            let fb = sb.map_or(&[][..], |s| out.get(s));
            bus.fanout(w, &[(fa, a), (fb, b)]);
        }
    }
    n
}

/// Reused target lists for fan-out: connections here, sessions on other
/// workers as (worker, subprotocol, their session id), and sessions whose
/// output is held while they resume.
#[derive(Default)]
pub struct Targets {
    pub local: Vec<(ConnId, Proto)>,
    pub remote: Vec<(u32, Proto, u64)>,
    pub held: Vec<(SessionId, Proto)>,
    /// Scratch for one worker's session ids.
    pub ids: Vec<u64>,
}

/// Appends a frame to what a resuming session holds back (see
/// [`crate::session::Resuming`]); past `limit` bytes the session is marked
/// to be closed instead. Returns whether it was kept.
pub fn hold(sessions: &mut Arena<Session>, sid: SessionId, frame: &[u8], limit: usize) -> bool {
    let Some(r) = sessions
        .get_mut(sid)
        .and_then(|s| s.resuming.as_deref_mut())
    else {
        return false;
    };
    if r.overflow || r.held.len() + frame.len() > limit {
        r.overflow = true;
        return false;
    }
    r.held.extend_from_slice(frame);
    true
}

/// Collects where a room's members and watchers (all but `except`) are
/// reached: connections here, sessions on other workers, and sessions whose
/// output is held while they resume.
pub fn collect_targets(
    room: &Room,
    sessions: &Arena<Session>,
    except: Option<MemberId>,
    t: &mut Targets,
) {
    t.local.clear();
    t.remote.clear();
    t.held.clear();
    for (id, session) in room.audience() {
        if Some(id) == except {
            continue;
        }
        let Some(s) = sessions.get(session) else {
            continue;
        };
        if s.resuming.is_some() {
            if let Some(p) = s.proto() {
                t.held.push((session, p));
            }
            continue;
        }
        match &s.at {
            Attach::On(Client::Local(c, p)) => t.local.push((*c, *p)),
            Attach::On(Client::Relayed(r)) => t.remote.push((r.worker, r.proto, r.rsid)),
            Attach::Shadow(sh) if sh.client == Far::Attached => {
                t.remote.push((sh.worker, sh.proto, sh.rsid));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::Member;
    use crate::session::{Relay, Resuming, Shadow};

    struct Setup {
        sessions: Arena<Session>,
        room: Room,
    }

    impl Setup {
        fn new() -> Setup {
            Setup {
                sessions: Arena::default(),
                room: Room::new("r", 1, 16, 60_000, false, false),
            }
        }

        fn add(&mut self, at: Attach) -> SessionId {
            let id = self.room.members.len() as u64 + 1;
            let sid = self.sessions.insert(Session::fresh(id, [0; 16], at));
            self.room.members.push(Member {
                id,
                session: sid,
                meta: None,
            });
            sid
        }
    }

    fn conn(i: u64) -> ConnId {
        ConnId::from_bits(i << 32 | 1)
    }

    #[test]
    fn targets_are_local_remote_or_held_and_skip_the_sender_and_the_away() {
        let mut s = Setup::new();
        s.add(Attach::On(Client::Local(conn(1), Proto::Msgpack)));
        s.add(Attach::On(Client::Relayed(Relay {
            worker: 2,
            rsid: 77,
            proto: Proto::Json,
        })));
        s.add(Attach::Shadow(Box::new(Shadow {
            worker: 3,
            rsid: 88,
            proto: Proto::Msgpack,
            client: Far::Attached,
        })));
        s.add(Attach::Shadow(Box::new(Shadow {
            worker: 3,
            rsid: 99,
            proto: Proto::Msgpack,
            client: Far::Away,
        })));
        s.add(Attach::Detached);
        let resuming = s.add(Attach::On(Client::Local(conn(6), Proto::Json)));
        if let Some(x) = s.sessions.get_mut(resuming) {
            x.resuming = Some(Box::new(Resuming {
                epoch: 1,
                rid: None,
                waiting: vec![2],
                rooms: Vec::new(),
                held: Vec::new(),
                overflow: false,
            }));
        }
        s.add(Attach::On(Client::Local(conn(7), Proto::Json)));

        let mut t = Targets::default();
        collect_targets(&s.room, &s.sessions, Some(7), &mut t);
        assert_eq!(
            t.local,
            vec![(conn(1), Proto::Msgpack)],
            "the sender is skipped"
        );
        assert_eq!(
            t.remote,
            vec![(2, Proto::Json, 77), (3, Proto::Msgpack, 88)]
        );
        assert_eq!(t.held, vec![(resuming, Proto::Json)]);

        // Reused: the lists start empty every time.
        collect_targets(&s.room, &s.sessions, None, &mut t);
        assert_eq!(t.local.len(), 2);
    }

    #[test]
    fn a_resuming_session_holds_frames_up_to_the_limit() {
        let mut s = Setup::new();
        let sid = s.add(Attach::On(Client::Local(conn(1), Proto::Msgpack)));
        assert!(
            !hold(&mut s.sessions, sid, b"abc", 10),
            "not resuming: nothing held"
        );
        if let Some(x) = s.sessions.get_mut(sid) {
            x.resuming = Some(Box::new(Resuming {
                epoch: 1,
                rid: None,
                waiting: Vec::new(),
                rooms: Vec::new(),
                held: Vec::new(),
                overflow: false,
            }));
        }
        assert!(hold(&mut s.sessions, sid, b"abcdef", 10));
        assert!(!hold(&mut s.sessions, sid, b"ghijk", 10), "past the limit");
        assert!(
            !hold(&mut s.sessions, sid, b"g", 10),
            "and nothing after it"
        );
        let r = s.sessions.get(sid).and_then(|x| x.resuming.as_deref());
        assert_eq!(
            r.map(|r| (&r.held[..], r.overflow)),
            Some((&b"abcdef"[..], true))
        );
    }
}
