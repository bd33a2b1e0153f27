//! The bus between workers: one Unix stream socket per pair of workers
//! (made by the supervisor, see `supervisor`), carrying length-prefixed
//! binary messages. This module is the transport; the messages and their
//! wire format are [`BusMsg`] (`hub::bus_msg`), and what they mean is in
//! `cluster`.
//!
//! A message on the wire is `len: u32 LE` (of what follows), `kind: u8`, then
//! the kind's fields. Output to a peer is queued on the link's buffer like a
//! client's and written once per loop turn; a link whose unsent output passes
//! `--bus-buffer` is dropped (the peer is slow or stuck) and the supervisor
//! is asked for a new one. Unsent output is roomd's buffer plus what the
//! kernel holds for the peer (`SIOCOUTQ`, read when a write blocks; at most
//! the socket's send buffer, `net.core.wmem_default`). Input is read in
//! large chunks and parsed in place; a message longer than [`MAX_MSG`]
//! breaks the link.
//!
//! Invariants: a link is on `pending` at most once (`Link::pending`); a
//! dropped link is never written again (its slot is `None` until a new link
//! arrives).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};

use mio::net::UnixStream;

use crate::conn::{kernel_unsent, OutBuf, Queue};
use crate::hub::bus_msg::{BusMsg, Groups};

/// Bytes read from one link per turn before other work gets a turn.
pub const READ_CAP: usize = 1 << 20;
/// Bytes written to one link per turn.
pub const WRITE_CAP: usize = 4 << 20;

pub use crate::hub::bus_msg::{home, kind, split, Split, MAX_MSG};

/// One link to a peer worker.
pub struct Link {
    pub sock: UnixStream,
    pub out: OutBuf,
    /// Bytes the kernel held for the peer when a write last blocked (0 once
    /// `out` was written out whole).
    pub kernel: usize,
    /// Input read but not yet parsed.
    pub inbuf: Vec<u8>,
    /// On `Bus::pending`.
    pub pending: bool,
    /// On `Bus::read_more`.
    pub read_more: bool,
    /// Sockets to send, each with the message that carries it, by where
    /// that message starts in the link's stream (see [`Link::written`]).
    /// The fd goes with the first byte of its message (`SCM_RIGHTS`), so
    /// the peer has it by the time it reads the message.
    pub fds_out: VecDeque<(u64, OwnedFd)>,
    /// Bytes written to the link since it began.
    pub written: u64,
    /// Sockets received, in order; each message that carries one takes the
    /// oldest (`BusMsg::Handoff`).
    pub fds_in: VecDeque<OwnedFd>,
}

/// What a read from a link ended with.
pub enum ReadEnd {
    /// Nothing more for now.
    Drained,
    /// Stopped at [`READ_CAP`]; more may be waiting.
    Capped,
    /// EOF or an error: the peer is gone.
    Gone,
}

impl Link {
    pub fn new(sock: UnixStream) -> Self {
        Link {
            sock,
            out: OutBuf::default(),
            kernel: 0,
            inbuf: Vec::new(),
            pending: false,
            read_more: false,
            fds_out: VecDeque::new(),
            written: 0,
            fds_in: VecDeque::new(),
        }
    }

    /// Queues a message that carries a socket: the socket goes with the
    /// message's first byte.
    pub fn send_with_fd(&mut self, m: &BusMsg, fd: OwnedFd) {
        let at = self.written + self.out.len() as u64;
        self.fds_out.push_back((at, fd));
        m.encode(self.out.tail());
    }

    /// As [`Link::send_with_fd`], for a message already encoded.
    pub fn send_encoded_with_fd(&mut self, m: &[u8], fd: OwnedFd) {
        let at = self.written + self.out.len() as u64;
        self.fds_out.push_back((at, fd));
        self.out.extend(m);
    }

    /// Reads what is waiting (up to [`READ_CAP`]) onto `inbuf`.
    pub fn read(&mut self, chunk: &mut [u8]) -> (ReadEnd, usize) {
        let mut total = 0;
        loop {
            if total >= READ_CAP {
                return (ReadEnd::Capped, total);
            }
            match crate::ipc::recv_with_fds(self.sock.as_fd(), chunk, &mut self.fds_in) {
                Ok(0) => return (ReadEnd::Gone, total),
                Ok(n) => {
                    self.inbuf.extend_from_slice(&chunk[..n]);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return (ReadEnd::Drained, total)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return (ReadEnd::Gone, total),
            }
        }
    }

    /// Writes queued output (up to [`WRITE_CAP`]). Returns the bytes written
    /// and whether the link is still good.
    pub fn flush(&mut self) -> (usize, bool) {
        let mut written = 0;
        while !self.out.is_empty() && written < WRITE_CAP {
            let unsent = self.out.unsent();
            // Bytes up to the next message with a socket go by plain
            // write; that message's first byte goes with its socket.
            let (res, with_fd) = match self.fds_out.front() {
                Some((at, fd)) if *at == self.written => {
                    let end = self
                        .fds_out
                        .get(1)
                        .map_or(unsent.len(), |(next, _)| (next - self.written) as usize);
                    let bytes = &unsent[..end.min(unsent.len())];
                    (
                        crate::ipc::send_with_fd(self.sock.as_fd(), bytes, Some(fd.as_fd())),
                        true,
                    )
                }
                Some((at, _)) => {
                    let end = ((at - self.written) as usize).min(unsent.len());
                    (self.sock.write(&unsent[..end]), false)
                }
                None => (self.sock.write(unsent), false),
            };
            match res {
                Ok(0) => return (written, false),
                Ok(n) => {
                    if with_fd {
                        // Ours is closed; the peer's copy is in flight.
                        self.fds_out.pop_front();
                    }
                    self.out.consume(n);
                    self.written += n as u64;
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.kernel = kernel_unsent(&self.sock, Queue::Unix);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return (written, false),
            }
        }
        if self.out.is_empty() {
            self.kernel = 0;
        }
        (written, true)
    }

    /// roomd's and the kernel's unsent bytes are past `limit`; the kernel is
    /// asked again (one ioctl) before saying so.
    pub fn over(&mut self, limit: usize) -> bool {
        if self.out.len() + self.kernel <= limit {
            return false;
        }
        self.kernel = kernel_unsent(&self.sock, Queue::Unix);
        self.out.len() + self.kernel > limit
    }
}

/// This worker's links, its control channel, and the per-turn work lists.
pub struct Bus {
    /// This worker's index and the number of workers.
    pub me: u32,
    pub n: u32,
    /// Indexed by peer; `None` for this worker and for peers with no link.
    pub links: Vec<Option<Link>>,
    pub control: crate::ipc::Control,
    /// Links with output to write this turn.
    pub pending: Vec<u32>,
    /// Links whose reads stopped at the cap.
    pub read_more: Vec<u32>,
    /// Links whose output passed the limit: dropped at a safe point.
    pub overflow: Vec<u32>,
    pub out_limit: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub msgs_out: u64,
    pub msgs_in: u64,
    pub peers_lost: u64,
}

impl Bus {
    pub fn up(&self, peer: u32) -> bool {
        matches!(self.links.get(peer as usize), Some(Some(_)))
    }

    /// Queues one message to `peer` on its link, encoded straight onto
    /// the link's output buffer. False when there is no link (or it just
    /// overflowed): the message is dropped.
    pub fn send(&mut self, peer: u32, m: &BusMsg) -> bool {
        let Some(Some(link)) = self.links.get_mut(peer as usize) else {
            return false;
        };
        if link.over(self.out_limit) {
            if !self.overflow.contains(&peer) {
                self.overflow.push(peer);
            }
            return false;
        }
        if !link.pending {
            link.pending = true;
            self.pending.push(peer);
        }
        self.msgs_out += 1;
        m.encode(link.out.tail());
        true
    }

    /// One frame per group, each for a list of sessions on `peer`. Empty
    /// groups are left out.
    pub fn fanout(&mut self, peer: u32, groups: &[(&[u8], &[u64])]) {
        self.send(peer, &BusMsg::Fanout(Groups::Out(groups)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn home_is_stable_and_spread() {
        assert_eq!(home("anything", 1), 0);
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c.
        assert_eq!(home("a", 7), (0xaf63_dc4c_8601_ec8c_u64 % 7) as u32);
        let mut per = [0u32; 4];
        for i in 0..4000 {
            per[home(&format!("room-{i}"), 4) as usize] += 1;
        }
        assert!(per.iter().all(|&n| n > 800), "{per:?}");
    }

    #[test]
    fn messages_split_whole_and_short_ones_wait() {
        let mut b = Vec::new();
        let seat = BusMsg::Seat {
            sid: 7,
            on: true,
            room: "lobby",
            closed: None,
        };
        seat.encode(&mut b);
        BusMsg::Away { sid: 9 }.encode(&mut b);
        let Ok(Some((m, used))) = split(&b) else {
            panic!("no message");
        };
        assert_eq!(BusMsg::decode(m), Ok(seat));
        let Ok(Some((m, _))) = split(&b[used..]) else {
            panic!("no second message");
        };
        assert_eq!(BusMsg::decode(m), Ok(BusMsg::Away { sid: 9 }));
        assert!(matches!(split(&b[used..used + 6]), Ok(None)));
        assert!(split(&[0, 0, 0, 0]).is_err());
        assert!(split(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn what_the_kernel_holds_counts_against_the_limit() {
        let (a, b) = UnixStream::pair().expect("socketpair");
        let mut link = Link::new(a);
        link.out.extend(&vec![7u8; 4 << 20]);
        let (written, ok) = link.flush();
        assert!(ok && written > 0 && !link.out.is_empty(), "{written}");
        assert!(link.kernel > 0, "the kernel holds what was written");
        // roomd's own bytes alone are within this limit; with the kernel's
        // they are not.
        let limit = link.out.len() + 1;
        assert!(link.over(limit));
        // The peer reads everything: the kernel is asked again.
        let mut b = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(b));
        b.set_nonblocking(true).expect("nonblocking");
        let mut chunk = vec![0u8; 1 << 20];
        let mut read = 0;
        while read < written {
            match b.read(&mut chunk) {
                Ok(n) => read += n,
                Err(e) => panic!("read {read} of {written}: {e}"),
            }
        }
        assert!(!link.over(limit), "kernel {}", link.kernel);
        assert_eq!(link.kernel, 0);
    }

    #[test]
    fn a_socket_goes_with_its_message_between_others() {
        let (a, b) = UnixStream::pair().expect("socketpair");
        let (mut tx, mut rx) = (Link::new(a), Link::new(b));
        // The socket to hand over: one end of another pair.
        let (x, mut y) = std::os::unix::net::UnixStream::pair().expect("pair");
        BusMsg::Away { sid: 1 }.encode(tx.out.tail());
        tx.send_with_fd(&BusMsg::Handoff { head: b"GET /" }, OwnedFd::from(x));
        BusMsg::Away { sid: 2 }.encode(tx.out.tail());
        let (n, ok) = tx.flush();
        assert!(ok && tx.out.is_empty() && tx.fds_out.is_empty(), "{n}");
        let mut chunk = vec![0u8; 4096];
        let (_, got) = rx.read(&mut chunk);
        assert_eq!(got, n);
        let mut msgs = Vec::new();
        let mut rest = &rx.inbuf[..];
        while let Ok(Some((m, used))) = split(rest) {
            msgs.push(BusMsg::decode(m).expect("a message").kind());
            rest = &rest[used..];
        }
        assert_eq!(msgs, [kind::AWAY, kind::HANDOFF, kind::AWAY]);
        let fd = rx.fds_in.pop_front().expect("the socket came");
        assert!(rx.fds_in.is_empty());
        // It is the same socket: what is written to it comes out of `y`.
        let mut x = std::os::unix::net::UnixStream::from(fd);
        x.write_all(b"hello").expect("write");
        let mut buf = [0u8; 5];
        y.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"hello");
    }
}
