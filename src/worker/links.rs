//! The worker's side of the bus: the control channel from the supervisor,
//! the links to other workers (registered in the poll, read and written
//! once per turn), and the messages read from them, handed to the core
//! ([`crate::hub::Hub::on_bus`]). What the messages mean is in
//! `hub::cluster`; their wire format in `hub::bus_msg`.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use log::{debug, info, warn};
use mio::unix::SourceFd;
use mio::{Interest, Token};

use crate::bus::{self, Bus, Link, ReadEnd};
use crate::hub::bus_msg::BusMsg;
use crate::hub::cluster::skip;
use crate::ipc::{Control, FromSupervisor, ToSupervisor};

use super::{Timer, Worker};

pub(crate) const CONTROL: Token = Token(usize::MAX - 3);
/// Link to peer `p` is `Token(LINK_BASE + p)` (at most 64 workers).
const LINK_BASE: usize = usize::MAX - 200;
/// How often a worker tells the supervisor it is alive.
const ALIVE_EVERY: Duration = Duration::from_secs(1);

pub(crate) fn link_of(t: Token) -> Option<u32> {
    (t.0 >= LINK_BASE && t.0 < LINK_BASE + 64).then(|| (t.0 - LINK_BASE) as u32)
}

impl Worker {
    /// Joins the workers of a supervisor: registers the control channel and
    /// the links, numbers members from this incarnation, keeps how many
    /// earlier lives of this worker ended (died, hung) for `/metrics`, and
    /// tells the supervisor this worker is ready.
    pub fn attach_cluster(
        &mut self,
        workers: u32,
        (incarnation, (died, hung)): (u32, (u32, u32)),
        control: Control,
        peers: Vec<Option<std::os::unix::net::UnixStream>>,
    ) -> io::Result<()> {
        self.hub.metrics.restarts = (died.into(), hung.into());
        self.poll.registry().register(
            &mut SourceFd(&control.as_raw_fd()),
            CONTROL,
            Interest::READABLE,
        )?;
        self.hub.join_cluster(workers, incarnation);
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
        self.hub.link_up(p);
        self.perform();
        // Edge-triggered: input sent before registration raises no event.
        self.on_link(p);
        Ok(())
    }

    pub(crate) fn bus_busy(&self) -> bool {
        self.bus
            .as_ref()
            .is_some_and(|b| !b.pending.is_empty() || !b.read_more.is_empty())
    }

    /// Where output for `sid` goes: its connection, the worker its
    /// connection is on (relayed), or its worker when it is a shadow; held
    /// while it resumes; `None` while it is away.
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
        if p >= self.bus.as_ref().map_or(1, |b| b.n) || p == self.id {
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
            self.drop_link(p, "replaced");
        }
        if let Err(e) = self.install_link(p, sock) {
            warn!("w={} link to worker {p}: {e}", self.id);
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
                        Ok(BusMsg::MetricsReq { qid }) => {
                            // The figures are the loop's and the core's.
                            let text = self.hub.metrics.render(&self.gauges());
                            let m = BusMsg::MetricsResp {
                                qid,
                                status: 200,
                                text: text.as_bytes(),
                            };
                            if let Some(bus) = self.hub.bus.as_mut() {
                                bus.send(p, &m);
                            }
                            self.perform();
                        }
                        Ok(m @ (BusMsg::Handoff { .. } | BusMsg::Move(_))) => {
                            let fd = self.bus.as_mut().and_then(|b| {
                                b.links.get_mut(p as usize)?.as_mut()?.fds_in.pop_front()
                            });
                            match (fd, m) {
                                (Some(fd), BusMsg::Handoff { head }) => self.adopt(p, head, fd),
                                (Some(fd), BusMsg::Move(a)) => self.arrive(p, a, fd),
                                _ => {
                                    warn!(
                                        "w={} a connection from worker {p} without its socket",
                                        self.id
                                    );
                                    broken = true;
                                    break;
                                }
                            }
                        }
                        Ok(m) => {
                            self.hub.on_bus(p, m);
                            self.perform();
                        }
                        Err(e) => skip(self.id, p, e, m.len()),
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
            self.drop_link(p, "bad message");
            return false;
        }
        if let Some(Some(l)) = self.bus.as_mut().and_then(|b| b.links.get_mut(p as usize)) {
            l.inbuf = inbuf;
        }
        match end {
            ReadEnd::Drained => false,
            ReadEnd::Capped => true,
            ReadEnd::Gone => {
                self.drop_link(p, "link closed");
                false
            }
        }
    }

    /// Link `p` is gone (it ended, broke, or passed its limit): it is
    /// deregistered and dropped, and the core is told.
    pub(crate) fn drop_link(&mut self, p: u32, why: &str) {
        let Some(bus) = self.bus.as_mut() else {
            return;
        };
        let Some(mut link) = bus.links.get_mut(p as usize).and_then(Option::take) else {
            return;
        };
        bus.peers_lost += 1;
        let _ = self.poll.registry().deregister(&mut link.sock);
        drop(link);
        warn!("w={} lost worker {p} ({why})", self.id);
        self.hub.peer_lost(p);
        self.perform();
    }

    /// Moves what the core encoded for other workers onto their links. A
    /// link past `--bus-buffer` (its bytes and the kernel's) takes nothing
    /// more and is dropped at the end of the turn ([`Worker::flush_bus`]).
    pub(crate) fn take_bus_output(&mut self) {
        let (Some(out), Some(bus)) = (self.hub.bus.as_mut(), self.bus.as_mut()) else {
            return;
        };
        bus.msgs_out += std::mem::take(&mut out.msgs);
        for &p in &out.pending {
            let Some(buf) = out.bufs.get_mut(p as usize) else {
                continue;
            };
            if let Some(Some(link)) = bus.links.get_mut(p as usize) {
                if link.over(bus.out_limit) {
                    if !bus.overflow.contains(&p) {
                        bus.overflow.push(p);
                    }
                } else {
                    link.out.extend(buf);
                    if !link.pending {
                        link.pending = true;
                        bus.pending.push(p);
                    }
                }
            }
            buf.clear();
            // A burst's buffer is not kept.
            if buf.capacity() > 64 << 10 {
                *buf = Vec::new();
            }
        }
        out.pending.clear();
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
            self.drop_link(p, "write failed");
        }
        for p in overflow {
            warn!(
                "w={} link to worker {p} passed --bus-buffer: dropping it",
                self.id
            );
            self.drop_link(p, "slow");
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
