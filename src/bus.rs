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

use std::io::{self, Read, Write};

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
        }
    }

    /// Reads what is waiting (up to [`READ_CAP`]) onto `inbuf`.
    pub fn read(&mut self, chunk: &mut [u8]) -> (ReadEnd, usize) {
        let mut total = 0;
        loop {
            if total >= READ_CAP {
                return (ReadEnd::Capped, total);
            }
            match self.sock.read(chunk) {
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
            match self.sock.write(self.out.unsent()) {
                Ok(0) => return (written, false),
                Ok(n) => {
                    self.out.consume(n);
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
}
