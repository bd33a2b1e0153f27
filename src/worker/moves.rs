//! Connections move to their room's home (issue 11, its first step): an
//! upgrade that names a room (`/?room=`) homed on another worker is handed
//! there before the 101. The socket goes over the bus link to that worker
//! as `SCM_RIGHTS`, with everything read from it so far (`BUSMSG::Handoff`);
//! the home parses the head again and serves the connection as if it had
//! accepted it, so the room's traffic never crosses the bus for it.
//!
//! A connection is handed on at most once. One that cannot go (the home's
//! link is down or over `--bus-buffer`, or the socket cannot be duplicated)
//! is served where it landed, as before.

use std::os::fd::{AsFd, OwnedFd};

use log::{debug, warn};

use crate::conn::{Conn, ConnId, Phase};
use crate::http::Upgrade;
use crate::hub::bus_msg::BusMsg;
use crate::hub::effects::CloseReason;

use super::Worker;

const OUT: usize = 0;
const IN: usize = 1;
const REFUSED: usize = 2;

impl Worker {
    /// Hands connection `id` (its upgrade `up` parsed, `rest` read after
    /// the head) to the home of the room it names, if that is another
    /// worker that can take it. Returns whether it was handed on.
    pub(crate) fn hand_off(&mut self, id: ConnId, up: &Upgrade, rest: &[u8]) -> bool {
        let Some(room) = up.room.as_deref() else {
            return false;
        };
        if up.echo {
            return false;
        }
        let Some(home) = self.hub.remote_home_of(room) else {
            return false;
        };
        let Some(c) = self.conns.arena.get_mut(id) else {
            return false;
        };
        let Phase::Http { head, moved: false } = &mut c.phase else {
            return false;
        };
        let Some(bus) = self.bus.as_mut() else {
            return false;
        };
        let limit = bus.out_limit;
        let link = match bus.links.get_mut(home as usize) {
            Some(Some(l)) => l,
            _ => {
                self.hub.metrics.moves[REFUSED] += 1;
                return false;
            }
        };
        if link.over(limit) {
            self.hub.metrics.moves[REFUSED] += 1;
            return false;
        }
        // Ours is closed when the slot is freed; the copy travels.
        let fd: OwnedFd = match c.sock.as_fd().try_clone_to_owned() {
            Ok(fd) => fd,
            Err(e) => {
                warn!("w={} conn={id:?} cannot hand off: {e}", self.id);
                self.hub.metrics.moves[REFUSED] += 1;
                return false;
            }
        };
        let mut bytes = std::mem::take(head);
        bytes.extend_from_slice(rest);
        link.send_with_fd(&BusMsg::Handoff { head: &bytes }, fd);
        if !link.pending {
            link.pending = true;
            bus.pending.push(home);
        }
        bus.msgs_out += 1;
        self.hub.metrics.moves[OUT] += 1;
        debug!(
            "w={} conn={id:?} peer={} handed to worker {home} (room {room:?})",
            self.id, c.peer
        );
        self.free_conn(id, CloseReason::Moved);
        true
    }

    /// A connection handed here by worker `p` with what was read from it
    /// (`head`): taken on as if accepted, and its head routed.
    pub(crate) fn adopt(&mut self, p: u32, head: &[u8], fd: OwnedFd) {
        let sock = std::net::TcpStream::from(fd);
        let peer = match sock.peer_addr() {
            Ok(a) => a,
            // The client is gone already.
            Err(_) => return,
        };
        if let Err(e) = sock.set_nonblocking(true) {
            warn!("w={} peer={peer} from worker {p}: {e}", self.id);
            return;
        }
        if self.conns.arena.len() >= self.cfg.max_connections as usize + 1024 {
            warn!(
                "w={} peer={peer} from worker {p} refused: {} connections open",
                self.id,
                self.conns.arena.len()
            );
            return;
        }
        let sock = mio::net::TcpStream::from_std(sock);
        let mut conn = Conn::new(sock, peer, self.millis());
        conn.phase = Phase::Http {
            head: head.to_vec(),
            moved: true,
        };
        let Some(id) = self.take_in(conn) else {
            return;
        };
        self.hub.metrics.moves[IN] += 1;
        debug!(
            "w={} conn={id:?} peer={peer} taken from worker {p}",
            self.id
        );
        // The head is whole (it was routed there); input that came after it
        // waits in the socket, and no new event would say so.
        if !self.route_head(id) {
            self.on_readable(id);
        }
    }
}
