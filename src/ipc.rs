//! The boundary between the supervisor and its worker processes: the setup a
//! worker inherits, and the control channel both sides speak.
//!
//! A worker is the same binary re-executed with its sockets inherited as
//! plain fd numbers, listed in one environment variable ([`SETUP_ENV`], e.g.
//! `id=1;n=2;inc=3;listen=5;ctl=6;peers=7,-,9`). [`setup_from_env`] checks
//! and takes ownership of them, once.
//!
//! The control channel is a `SOCK_SEQPACKET` socketpair: every `send` is one
//! message, received whole or not at all, and a bus link travels with
//! [`FromSupervisor::Peer`] as `SCM_RIGHTS`. Messages are a tag byte and, for
//! the ones that name a worker, its id as 4 bytes little-endian:
//!
//! | message | bytes | fds |
//! |---|---|---|
//! | `Ready` | `01` | - |
//! | `Alive` | `02` | - |
//! | `Relink(n)` | `03 n n n n` | - |
//! | `Peer { id, link }` | `10 i i i i` | the link |
//!
//! Contract on both ends: the socket is non-blocking and `recv` returns
//! `Ok(None)` at WouldBlock, so a reader drains until then (mio is
//! edge-triggered). A message that does not parse is logged and skipped, and
//! every fd that arrives where none is expected is closed. The peer is our own
//! process, so a bad message means a version mismatch or a bug, never an
//! attack; skipping keeps the other side of the channel working.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use log::warn;

/// The environment variable that carries a worker's setup.
pub const SETUP_ENV: &str = "ROOMD_WORKER_SETUP";

const READY: u8 = 0x01;
const ALIVE: u8 = 0x02;
const RELINK: u8 = 0x03;
const PEER: u8 = 0x10;
/// Longest message we send is 5 bytes; a larger buffer lets a longer one be
/// recognised (and skipped) rather than silently truncated.
const MAX_MSG: usize = 64;
/// fds one message may carry before the kernel drops (and closes) the rest.
const MAX_FDS: usize = 4;

/// What a worker process gets from its supervisor.
pub struct WorkerSetup {
    /// This worker, `0..workers`.
    pub id: u32,
    /// N, the number of workers.
    pub workers: u32,
    /// >= 1, unique per spawn: no two lives of any worker share one.
    pub incarnation: u32,
    /// Earlier lives of this worker that ended: (died, killed as hung).
    pub restarts: (u32, u32),
    /// Nonblocking, listening, on the port every worker shares.
    pub listener: std::net::TcpListener,
    pub control: Control,
    /// Bus links; length N, index = peer id; `None` for this worker and for
    /// peers not running at spawn time (those arrive as
    /// [`FromSupervisor::Peer`]). Nonblocking.
    pub peers: Vec<Option<UnixStream>>,
}

/// Some(..) when this process was started as a worker ([`SETUP_ENV`] set);
/// the variable is removed after reading, so a second call returns `None`
/// and nothing this process starts inherits it.
///
/// Call it at the start of `main`, before any thread exists (it changes the
/// environment). Err when the setup does not parse or names an fd that is not
/// an open socket of the expected type; then no fd has been taken over.
pub fn setup_from_env() -> Option<io::Result<WorkerSetup>> {
    let raw = std::env::var_os(SETUP_ENV)?;
    std::env::remove_var(SETUP_ENV);
    Some(setup_from_str(&raw.to_string_lossy()))
}

/// The fd numbers and ids of a setup, as written in [`SETUP_ENV`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawSetup {
    pub id: u32,
    pub workers: u32,
    pub incarnation: u32,
    pub restarts: (u32, u32),
    pub listen: RawFd,
    pub ctl: RawFd,
    pub peers: Vec<Option<RawFd>>,
}

impl RawSetup {
    /// The value of [`SETUP_ENV`]:
    /// `id=1;n=2;inc=3;died=0;hung=0;listen=5;ctl=6;peers=7,-,9`.
    pub fn encode(&self) -> String {
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|p| p.map_or_else(|| "-".to_string(), |fd| fd.to_string()))
            .collect();
        format!(
            "id={};n={};inc={};died={};hung={};listen={};ctl={};peers={}",
            self.id,
            self.workers,
            self.incarnation,
            self.restarts.0,
            self.restarts.1,
            self.listen,
            self.ctl,
            peers.join(",")
        )
    }

    /// Parses and checks the shape (ids in range, fds distinct and above
    /// stdio); says nothing about whether the fds are open.
    pub fn parse(s: &str) -> Result<RawSetup, String> {
        let mut fields = std::collections::HashMap::new();
        for part in s.split(';') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not key=value"))?;
            if fields.insert(k, v).is_some() {
                return Err(format!("{k} given twice"));
            }
        }
        let get = |k: &str| fields.get(k).copied().ok_or(format!("no {k}"));
        let num = |k: &str| -> Result<u32, String> {
            let v = get(k)?;
            v.parse().map_err(|_| format!("{k}={v:?} is not a number"))
        };
        let fd = |k: &str, v: &str| -> Result<RawFd, String> {
            match v.parse::<RawFd>() {
                Ok(fd) if fd > 2 => Ok(fd),
                _ => Err(format!("{k}: {v:?} is not an fd above 2")),
            }
        };
        let setup = RawSetup {
            id: num("id")?,
            workers: num("n")?,
            incarnation: num("inc")?,
            restarts: (num("died")?, num("hung")?),
            listen: fd("listen", get("listen")?)?,
            ctl: fd("ctl", get("ctl")?)?,
            peers: get("peers")?
                .split(',')
                .map(|p| (p != "-").then(|| fd("peers", p)).transpose())
                .collect::<Result<_, _>>()?,
        };
        if setup.id >= setup.workers || setup.incarnation == 0 {
            return Err(format!(
                "id {} of {} workers, incarnation {}",
                setup.id, setup.workers, setup.incarnation
            ));
        }
        if setup.peers.len() != setup.workers as usize || setup.peers[setup.id as usize].is_some() {
            return Err(format!(
                "peers must list {} entries with '-' for this worker",
                setup.workers
            ));
        }
        let mut fds: Vec<RawFd> = setup.fds().collect();
        fds.sort_unstable();
        if fds.windows(2).any(|w| w[0] == w[1]) {
            return Err("an fd is listed twice".to_string());
        }
        Ok(setup)
    }

    /// Every fd the setup names.
    pub fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        [self.listen, self.ctl]
            .into_iter()
            .chain(self.peers.iter().flatten().copied())
    }
}

fn setup_from_str(s: &str) -> io::Result<WorkerSetup> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
    let raw = RawSetup::parse(s).map_err(bad)?;
    // Check every fd before owning any, so an error closes nothing that
    // belongs to someone else.
    let want = |fd: RawFd, ty: libc::c_int, what: &str| match sock_type(fd) {
        Ok(t) if t == ty => Ok(()),
        Ok(_) => Err(bad(format!("{what} fd {fd} is the wrong kind of socket"))),
        Err(e) => Err(bad(format!("{what} fd {fd}: {e}"))),
    };
    want(raw.listen, libc::SOCK_STREAM, "listen")?;
    want(raw.ctl, libc::SOCK_SEQPACKET, "ctl")?;
    for fd in raw.peers.iter().flatten() {
        want(*fd, libc::SOCK_STREAM, "peer")?;
    }
    // SAFETY: each fd was checked open above, is listed once, and nothing
    // else in this process knows its number: the supervisor handed it to us
    // by exec, so we are its only owner.
    let own = |fd: RawFd| unsafe { OwnedFd::from_raw_fd(fd) };
    let listener = std::net::TcpListener::from(own(raw.listen));
    let control = Control { fd: own(raw.ctl) };
    let peers: Vec<Option<UnixStream>> = raw
        .peers
        .iter()
        .map(|p| p.map(|fd| UnixStream::from(own(fd))))
        .collect();
    // Inherited fds lost FD_CLOEXEC on the way in; put it back so nothing
    // this worker might start inherits them.
    set_cloexec(listener.as_fd())?;
    set_cloexec(control.fd.as_fd())?;
    listener.set_nonblocking(true)?;
    for p in peers.iter().flatten() {
        set_cloexec(p.as_fd())?;
        p.set_nonblocking(true)?;
    }
    Ok(WorkerSetup {
        id: raw.id,
        workers: raw.workers,
        incarnation: raw.incarnation,
        restarts: raw.restarts,
        listener,
        control,
        peers,
    })
}

/// The worker's end of its control channel (`SOCK_SEQPACKET`, nonblocking).
pub struct Control {
    fd: OwnedFd,
}

impl AsRawFd for Control {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Control {
    /// Sends one message; Err(WouldBlock) if the supervisor has not read the
    /// last ~200 KiB of them, Err(BrokenPipe) when it is gone.
    pub fn send(&self, m: ToSupervisor) -> io::Result<()> {
        let mut b = [0u8; 5];
        let len = match m {
            ToSupervisor::Ready => {
                b[0] = READY;
                1
            }
            ToSupervisor::Alive => {
                b[0] = ALIVE;
                1
            }
            ToSupervisor::Relink(n) => {
                b[0] = RELINK;
                b[1..5].copy_from_slice(&n.to_le_bytes());
                5
            }
        };
        send_packet(self.fd.as_fd(), &b[..len], None)
    }

    /// The next message: Ok(None) when nothing is waiting (WouldBlock);
    /// Err(UnexpectedEof) when the supervisor is gone.
    pub fn recv(&self) -> io::Result<Option<FromSupervisor>> {
        loop {
            let Some(p) = recv_packet(self.fd.as_fd())? else {
                return Ok(None);
            };
            let peer = p.id_of(PEER);
            let mut fds = p.fds.into_iter();
            let m = match peer {
                Some(id) => match fds.next() {
                    Some(fd) => {
                        let link = UnixStream::from(fd);
                        link.set_nonblocking(true)?;
                        Some(FromSupervisor::Peer { id, link })
                    }
                    None => {
                        warn!("ipc: Peer {id} without its link; skipped");
                        None
                    }
                },
                None => {
                    warn!(
                        "ipc: skipped an unknown control message {:02x?}",
                        &p.buf[..p.len]
                    );
                    None
                }
            };
            close_extra(fds);
            if m.is_some() {
                return Ok(m);
            }
        }
    }
}

/// The supervisor's end of a worker's control channel.
pub struct WorkerControl {
    fd: OwnedFd,
}

impl AsRawFd for WorkerControl {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl WorkerControl {
    /// A new channel: the supervisor's end, and the worker's (to be inherited
    /// by fd number). Both nonblocking and close-on-exec.
    pub fn pair() -> io::Result<(WorkerControl, OwnedFd)> {
        let mut fds = [0; 2];
        let ty = libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        // SAFETY: fds is a valid [c_int; 2] for socketpair to fill.
        if unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: socketpair succeeded, so both fds are new and ours alone.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((WorkerControl { fd: a }, b))
    }

    /// Sends one message (the link goes as `SCM_RIGHTS`; the supervisor's
    /// copy is closed when `m` drops). Err(BrokenPipe) when the worker is
    /// gone; Err(WouldBlock) when it has not read its channel for a long time.
    pub fn send(&self, m: FromSupervisor) -> io::Result<()> {
        match m {
            FromSupervisor::Peer { id, link } => {
                let mut b = [PEER, 0, 0, 0, 0];
                b[1..5].copy_from_slice(&id.to_le_bytes());
                send_packet(self.fd.as_fd(), &b, Some(link.as_fd()))
            }
        }
    }

    /// The next message: Ok(None) when nothing is waiting (WouldBlock);
    /// Err(UnexpectedEof) when the worker has closed its end (it is exiting).
    pub fn recv(&self) -> io::Result<Option<ToSupervisor>> {
        loop {
            let Some(p) = recv_packet(self.fd.as_fd())? else {
                return Ok(None);
            };
            let m = match p.bytes() {
                [READY] => Some(ToSupervisor::Ready),
                [ALIVE] => Some(ToSupervisor::Alive),
                _ => p.id_of(RELINK).map(ToSupervisor::Relink),
            };
            if m.is_none() {
                warn!("ipc: skipped an unknown control message {:02x?}", p.bytes());
            }
            close_extra(p.fds.into_iter());
            if m.is_some() {
                return Ok(m);
            }
        }
    }
}

/// A worker to its supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToSupervisor {
    /// The worker's listener is registered and its loop is about to run.
    Ready,
    /// Sent about once a second; 10 s without one (after the first) and the
    /// supervisor kills the worker as hung.
    Alive,
    /// The worker dropped its link to peer N (slow or broken): please make a
    /// new pair for (me, N).
    Relink(u32),
}

/// The supervisor to a worker.
#[derive(Debug)]
pub enum FromSupervisor {
    /// A new bus link to worker `id` (nonblocking); replaces any old one.
    Peer { id: u32, link: UnixStream },
}

/// A bus link pair: two connected, nonblocking, close-on-exec stream sockets.
pub fn link_pair() -> io::Result<(UnixStream, UnixStream)> {
    let (a, b) = UnixStream::pair()?; // std sets SOCK_CLOEXEC
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    Ok((a, b))
}

/// One received message.
struct Packet {
    buf: [u8; MAX_MSG],
    len: usize,
    fds: Vec<OwnedFd>,
}

impl Packet {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The id of a 5-byte message with this tag.
    fn id_of(&self, tag: u8) -> Option<u32> {
        match *self.bytes() {
            [t, a, b, c, d] if t == tag => Some(u32::from_le_bytes([a, b, c, d])),
            _ => None,
        }
    }
}

fn close_extra(fds: impl Iterator<Item = OwnedFd>) {
    let n = fds.count(); // dropping them closes them
    if n > 0 {
        warn!("ipc: closed {n} unexpected fds from a control message");
    }
}

/// sendmsg of one message, with `fd` as SCM_RIGHTS; retries EINTR. Never
/// raises SIGPIPE (MSG_NOSIGNAL) or blocks (MSG_DONTWAIT).
fn send_packet(sock: BorrowedFd, bytes: &[u8], fd: Option<BorrowedFd>) -> io::Result<()> {
    let n = send_with_fd(sock, bytes, fd)?;
    // SOCK_SEQPACKET sends all of a message or nothing.
    debug_assert_eq!(n, bytes.len());
    Ok(())
}

/// sendmsg of `bytes`, with `fd` (if any) as SCM_RIGHTS on the first of
/// them; returns how many were sent (on a stream socket, possibly fewer:
/// the fd went with the first). Retries EINTR; never raises SIGPIPE
/// (MSG_NOSIGNAL) or blocks (MSG_DONTWAIT). Used for the control channel
/// and for a connection handed to another worker over a bus link.
pub fn send_with_fd(sock: BorrowedFd, bytes: &[u8], fd: Option<BorrowedFd>) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut cbuf = CmsgBuf::new();
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        let raw = fd.as_raw_fd();
        // SAFETY: cbuf is aligned for cmsghdr and larger than
        // CMSG_SPACE(sizeof(int)); CMSG_FIRSTHDR of a msghdr whose control
        // length covers that space is non-null and points into cbuf.
        unsafe {
            let space = libc::CMSG_SPACE(mem::size_of::<RawFd>() as u32) as usize;
            msg.msg_control = cbuf.0.as_mut_ptr().cast();
            msg.msg_controllen = space;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<RawFd>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), raw);
        }
    }
    loop {
        // SAFETY: msg points at iov and cbuf, which outlive the call.
        let n = unsafe {
            libc::sendmsg(
                sock.as_raw_fd(),
                &msg,
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// recvmsg on a stream socket into `buf`; the fds that came with the bytes
/// are appended to `fds` (close-on-exec). Ok(0) is EOF. Err(InvalidData)
/// when more fds came than there was room for (the kernel closed the rest:
/// what they belonged to can no longer be told).
pub fn recv_with_fds(
    sock: BorrowedFd,
    buf: &mut [u8],
    fds: &mut std::collections::VecDeque<OwnedFd>,
) -> io::Result<usize> {
    let (n, cut) = recvmsg_fds(sock, buf, |fd| fds.push_back(fd))?;
    if cut {
        return Err(io::ErrorKind::InvalidData.into());
    }
    Ok(n)
}

/// One non-blocking recvmsg into `buf` (EINTR retried): the bytes read, and
/// whether fds were cut off (`MSG_CTRUNC`: more than [`MAX_FDS`] came); the
/// fds that came are handed to `put` in order, close-on-exec. Other errors
/// (`WouldBlock` included) are returned as they are.
fn recvmsg_fds(
    sock: BorrowedFd,
    buf: &mut [u8],
    put: impl FnMut(OwnedFd),
) -> io::Result<(usize, bool)> {
    let mut cbuf = CmsgBuf::new();
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zeroed is a valid empty header.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of::<CmsgBuf>();
    let n = loop {
        let flags = libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT;
        // SAFETY: msg points at iov (into buf) and cbuf, which outlive the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    take_fds(&msg, put);
    Ok((n, msg.msg_flags & libc::MSG_CTRUNC != 0))
}

/// Takes ownership of every fd that came as SCM_RIGHTS with the message
/// `recvmsg` just filled in `msg`, in order.
fn take_fds(msg: &libc::msghdr, mut put: impl FnMut(OwnedFd)) {
    // SAFETY: the kernel filled msg_control up to msg_controllen with
    // well-formed cmsghdrs; CMSG_FIRSTHDR/NXTHDR stay within it, and each
    // SCM_RIGHTS payload is cmsg_len - CMSG_LEN(0) bytes of fds, now ours.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let count = ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / mem::size_of::<RawFd>();
                for i in 0..count {
                    put(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
}

/// Control-message space for [`MAX_FDS`] fds, aligned for `cmsghdr`.
struct CmsgBuf([usize; 8]);

impl CmsgBuf {
    fn new() -> CmsgBuf {
        // SAFETY: CMSG_SPACE is arithmetic.
        const NEED: u32 = unsafe { libc::CMSG_SPACE((MAX_FDS * mem::size_of::<RawFd>()) as u32) };
        const _: () = assert!(mem::size_of::<CmsgBuf>() >= NEED as usize);
        CmsgBuf([0; 8])
    }
}

/// recvmsg of one message; Ok(None) at WouldBlock, Err(UnexpectedEof) when
/// the other end is closed (also when it closed with messages unread, which
/// the kernel reports as ECONNRESET). Received fds are close-on-exec
/// (MSG_CMSG_CLOEXEC) and owned by the packet. A message too long for the
/// buffer comes back cut (it then parses as nothing and is skipped).
fn recv_packet(sock: BorrowedFd) -> io::Result<Option<Packet>> {
    let mut p = Packet {
        buf: [0; MAX_MSG],
        len: 0,
        fds: Vec::new(),
    };
    let (n, cut) = match recvmsg_fds(sock, &mut p.buf, |fd| p.fds.push(fd)) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
        // What a peer that closed with our messages unread leaves.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
            return Err(io::ErrorKind::UnexpectedEof.into())
        }
        Err(e) => return Err(e),
    };
    if n == 0 && p.fds.is_empty() {
        // We never send empty messages: this is the peer's close.
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if cut {
        warn!("ipc: a control message carried more than {MAX_FDS} fds; the rest were dropped");
    }
    p.len = n.min(MAX_MSG);
    Ok(Some(p))
}

fn sock_type(fd: RawFd) -> io::Result<libc::c_int> {
    let mut ty: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: ty and len are valid for getsockopt to write; a bad fd is an
    // error return, not UB.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ty)
}

fn set_cloexec(fd: BorrowedFd) -> io::Result<()> {
    // SAFETY: fcntl on a borrowed (open) fd.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Clears FD_CLOEXEC, so `fd` survives exec. Async-signal-safe: meant for
/// `Command::pre_exec` in the child.
pub(crate) fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl has no memory effects; a bad fd is an error return.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn channel() -> (WorkerControl, Control) {
        let (sup, w) = WorkerControl::pair().expect("socketpair");
        (sup, Control { fd: w })
    }

    #[test]
    fn setup_round_trips() {
        let s = RawSetup {
            id: 1,
            workers: 3,
            incarnation: 7,
            restarts: (2, 1),
            listen: 5,
            ctl: 6,
            peers: vec![Some(7), None, Some(9)],
        };
        let text = s.encode();
        assert_eq!(
            text,
            "id=1;n=3;inc=7;died=2;hung=1;listen=5;ctl=6;peers=7,-,9"
        );
        assert_eq!(RawSetup::parse(&text), Ok(s));
    }

    #[test]
    fn bad_setups_are_refused() {
        for bad in [
            "",
            "id=1;n=1;inc=1;died=0;hung=0;listen=5;ctl=6;peers=-", // id out of range
            "id=0;n=1;inc=0;died=0;hung=0;listen=5;ctl=6;peers=-", // incarnation 0
            "id=0;n=2;inc=1;died=0;hung=0;listen=5;ctl=6;peers=-", // peers too short
            "id=0;n=2;inc=1;died=0;hung=0;listen=5;ctl=6;peers=7,8", // self has a link
            "id=0;n=2;inc=1;died=0;hung=0;listen=5;ctl=5;peers=-,7", // fd twice
            "id=0;n=2;inc=1;died=0;hung=0;listen=2;ctl=6;peers=-,7", // stdio
            "id=0;n=2;inc=1;died=0;hung=0;listen=5;ctl=6;peers=-,x", // not a number
            "id=0;id=0;n=1;inc=1;died=0;hung=0;listen=5;ctl=6;peers=-", // key twice
            "id=0;n=1;inc=1;listen=5;ctl=6;peers=-",               // no restart counts
        ] {
            assert!(RawSetup::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_cross_both_ways() {
        let (sup, w) = channel();
        assert!(w.recv().expect("recv").is_none(), "nothing waiting");
        assert!(sup.recv().expect("recv").is_none(), "nothing waiting");
        for m in [
            ToSupervisor::Ready,
            ToSupervisor::Alive,
            ToSupervisor::Relink(0xdead_beef),
        ] {
            w.send(m).expect("send");
            assert_eq!(sup.recv().expect("recv"), Some(m));
        }

        let (mine, theirs) = link_pair().expect("pair");
        sup.send(FromSupervisor::Peer {
            id: 3,
            link: theirs,
        })
        .expect("send");
        let Some(FromSupervisor::Peer { id, mut link }) = w.recv().expect("recv") else {
            panic!("expected Peer");
        };
        assert_eq!(id, 3);
        (&mine).write_all(b"hi").expect("write");
        let mut b = [0u8; 2];
        link.set_nonblocking(false).expect("blocking");
        link.read_exact(&mut b).expect("the link works");
        assert_eq!(&b, b"hi");
    }

    #[test]
    fn odd_messages_are_skipped() {
        let (sup, w) = channel();
        let (a, _b) = link_pair().expect("pair");
        // Junk, a Ready carrying an fd, a short Relink, then a good message.
        send_packet(w.fd.as_fd(), &[0x7f, 1, 2], None).expect("send");
        send_packet(w.fd.as_fd(), &[READY], Some(a.as_fd())).expect("send");
        send_packet(w.fd.as_fd(), &[RELINK, 1], None).expect("send");
        send_packet(w.fd.as_fd(), &[0u8; 200], None).expect("send");
        w.send(ToSupervisor::Alive).expect("send");
        assert_eq!(sup.recv().expect("recv"), Some(ToSupervisor::Ready));
        assert_eq!(sup.recv().expect("recv"), Some(ToSupervisor::Alive));
        assert_eq!(sup.recv().expect("recv"), None);

        // A Peer without its fd is skipped too.
        send_packet(sup.fd.as_fd(), &[PEER, 1, 0, 0, 0], None).expect("send");
        assert!(w.recv().expect("recv").is_none());
    }

    #[test]
    fn a_closed_end_reads_as_eof() {
        let (sup, w) = channel();
        w.send(ToSupervisor::Ready).expect("send");
        drop(w);
        assert_eq!(sup.recv().expect("queued first"), Some(ToSupervisor::Ready));
        let e = sup.recv().expect_err("then EOF");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e = sup.send(FromSupervisor::Peer {
            id: 0,
            link: link_pair().expect("pair").0,
        });
        assert_eq!(e.expect_err("gone").kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn a_close_with_messages_unread_reads_as_eof() {
        // The kernel says ECONNRESET here; the contract says EOF.
        let (sup, w) = channel();
        let link = link_pair().expect("pair").0;
        sup.send(FromSupervisor::Peer { id: 1, link })
            .expect("send");
        drop(w);
        let e = sup.recv().expect_err("EOF");
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
