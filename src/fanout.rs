//! The fan-out the loop performs: a room message encoded once per
//! subprotocol and the same bytes queued on every local recipient's
//! connection, held for resuming sessions, and sent once per other worker
//! with members there (see `cluster`). The targets come from the core
//! (`hub::fanout`). Called through the `broadcast!` macro; measured by
//! `benches/fanout.rs`.

use crate::arena::Arena;
use crate::bus::Bus;
use crate::conn::Conns;
use crate::hub::fanout::{collect_targets, hold, Targets};
use crate::protocol::{Frames, V};
use crate::room::{Room, RoomId};
use crate::session::{MemberId, Session};

/// Sends one message to a room's members (all but `except`), encoded once
/// per subprotocol: queued on each local member's connection, and sent once
/// per other worker with members there, with the list of its sessions (see
/// `cluster`). Takes the worker's fields apart so the message may borrow
/// from the room while connections are written. Returns the number of local
/// recipients it was queued for (each worker counts its own deliveries).
/// Cost: O(members + recipients * frame size).
#[allow(clippy::too_many_arguments)]
pub fn fan_out<'v>(
    rooms: &'v Arena<Room>,
    sessions: &mut Arena<Session>,
    conns: &mut Conns,
    t: &mut Targets,
    bus: &mut Option<Bus>,
    rid: RoomId,
    except: Option<MemberId>,
    build: impl FnOnce(&'v Room) -> V<'v>,
) -> u64 {
    let Some(room) = rooms.get(rid) else {
        return 0;
    };
    collect_targets(room, sessions, except, t);
    if t.local.is_empty() && t.remote.is_empty() && t.held.is_empty() {
        return 0;
    }
    let mut frames = Frames::new(build(room));
    let mut n = conns.fanout(&t.local, &mut frames);
    for &(sid, p) in &t.held {
        if hold(sessions, sid, frames.get(p), conns.out_limit) {
            n += 1;
        }
    }
    if let (false, Some(bus)) = (t.remote.is_empty(), bus.as_mut()) {
        t.remote.sort_unstable_by_key(|&(w, p, _)| (w, p as u8));
        for &(_, p, _) in &t.remote {
            frames.get(p);
        }
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
            let fa = frames.encoded(mine[0].1);
            let fb = mine.get(split).map_or(&[][..], |x| frames.encoded(x.1));
            bus.fanout(w, &[(fa, a), (fb, b)]);
        }
    }
    n
}
