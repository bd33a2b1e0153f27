//! The supervisor: with `--workers N` (N > 1) the `roomd` process starts N
//! worker processes, keeps them running, and stops them; it serves no client
//! itself. It is single-threaded: one mio loop on the workers' control
//! channels and the signal pipe (SIGTERM, SIGINT, SIGCHLD), with its timers
//! (restart backoff, hung workers, systemd watchdog, shutdown deadline) as the
//! poll timeout.
//!
//! **Spawn.** A worker is this binary re-executed (`/proc/self/exe`, same
//! argv), never a fork of a running process. It inherits by fd number, listed
//! in [`ipc::SETUP_ENV`]: its own SO_REUSEPORT listener on the shared port,
//! its end of a `SOCK_SEQPACKET` control channel, and its bus links. Every
//! fd is close-on-exec; the child clears the flag on exactly its own fds
//! before exec, joins a process group of its own (a terminal's Ctrl-C reaches
//! only the supervisor, which relays) and asks for SIGTERM when the
//! supervisor dies (so it drains rather than lingers). The supervisor closes
//! its copies right after the spawn: it holds no listener while running, or
//! the connections the kernel hashed to that copy would never be accepted.
//!
//! **Links.** Links are made at spawn time with every worker then running:
//! worker i gets a new stream socketpair with each running j; i inherits its
//! ends, and each j gets its end as [`FromSupervisor::Peer`]. A worker that
//! drops a link asks for a new one with [`ToSupervisor::Relink`].
//!
//! **Restart.** A worker that exits while the supervisor is not stopping is
//! started again with a freshly bound listener and a new incarnation: after
//! 100 ms, doubling up to 10 s while it keeps dying within 5 s of its start.
//! One that said `Ready` or `Alive` and then nothing for `--hung-ms` (10 s)
//! is killed (and restarted); each worker's `/metrics` counts the restarts
//! of its slot (`roomd_worker_restarts_total{reason="died"|"hung"}`).
//! Before the first `roomd listening on` line, a worker that exits fails the
//! whole start instead: an error at startup is a configuration or resource
//! problem that restarting cannot fix, and the operator should see it.
//!
//! **Signals.** The first SIGTERM or SIGINT sends `STOPPING=1` to systemd and
//! relays SIGTERM to every worker (each drains: `closing`, close 1001); the
//! supervisor exits once all are gone: 0, or 1 if any exited non-zero or by a
//! signal. A second signal relays SIGTERM again (a worker's second signal
//! skips its drain). At `--drain-ms` + 5 s the rest are killed and it exits 1.

use std::ffi::OsString;
use std::io::{self, Write};
use std::mem;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGCHLD, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::config::Config;
use crate::ipc::{self, FromSupervisor, RawSetup, ToSupervisor, WorkerControl};
use crate::worker;

/// Control channels use `Token(worker id)`.
const SIGNALS: Token = Token(usize::MAX);
/// First restart delay, and the one after a worker that lived [`STABLE`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A worker that lived this long resets its backoff.
const STABLE: Duration = Duration::from_secs(5);
/// Margin past `--drain-ms` before the workers left are killed.
const KILL_MARGIN: Duration = Duration::from_secs(5);
/// How long to wait for killed workers to be reaped before exiting anyway.
const REAP_WAIT: Duration = Duration::from_secs(1);

/// Runs the supervisor until every worker has exited after SIGTERM/SIGINT
/// (or the start failed). Startup errors go to stderr as `roomd: ...`.
pub fn run(cfg: Config) -> ExitCode {
    let n = cfg.worker_count() as usize;
    let mut sup = match Supervisor::new(cfg, n) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("roomd: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    // All N listeners before any worker: a bad --listen fails with nothing
    // to clean up. The first may ask for port 0; the rest take its port.
    let mut listeners = Vec::with_capacity(n);
    let mut addr = sup.addr;
    for _ in 0..n {
        match worker::bind(addr).and_then(|l| Ok((l.local_addr()?, l))) {
            Ok((local, l)) => {
                addr = local;
                listeners.push(l);
            }
            Err(e) => {
                eprintln!("roomd: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    sup.addr = addr;
    for (i, l) in listeners.into_iter().enumerate() {
        if let Err(e) = sup.spawn(i, l) {
            eprintln!("roomd: cannot start worker {i}: {e}");
            sup.failed = true;
            sup.stop();
            break;
        }
    }
    sup.run()
}

/// Sends `state` (e.g. `"READY=1\nMAINPID=42"`) to systemd as one datagram
/// when `NOTIFY_SOCKET` is set; a name starting with `@` is an abstract
/// socket. Failures are logged: systemd notices a missing READY by itself.
pub fn notify(state: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            error!("NOTIFY_SOCKET: {e}");
            return;
        }
    };
    let res = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = res {
        error!("NOTIFY_SOCKET {path}: {e}");
    }
}

struct Slot {
    state: State,
    /// Lives of this slot that ended, by how: died on their own, or killed
    /// as hung (handed to each new life, for its `/metrics`).
    died: u32,
    hung: u32,
    /// Delay before the next restart; doubles while the worker dies young.
    backoff: Duration,
}

enum State {
    Running(Running),
    /// Exited; to be started again at this instant.
    Restart(Instant),
    /// Not running and not to be restarted (stopping, or never started).
    Down,
}

struct Running {
    pid: libc::pid_t,
    inc: u32,
    ctl: WorkerControl,
    started: Instant,
    ready: bool,
    /// The last `Ready` or `Alive`; None before the first (and after a hung
    /// kill).
    alive: Option<Instant>,
    /// Killed by the supervisor as hung.
    hung_killed: bool,
}

struct Supervisor {
    drain: Duration,
    /// `--hung-ms`: silence after an `Alive` after which a worker counts as
    /// hung.
    hung: Duration,
    poll: Poll,
    signals: Signals,
    /// `--listen`, then the real address once bound.
    addr: SocketAddr,
    slots: Vec<Slot>,
    next_inc: u32,
    arg0: OsString,
    args: Vec<OsString>,
    /// The listening line and READY=1 are out.
    announced: bool,
    /// Set by the first SIGTERM/SIGINT: when the workers left get SIGKILL.
    deadline: Option<Instant>,
    /// When that SIGKILL went out.
    killed: Option<Instant>,
    /// Exit 1: a start failed, or a worker failed while stopping.
    failed: bool,
    /// systemd watchdog: interval and next ping.
    watchdog: Option<(Duration, Instant)>,
}

impl Supervisor {
    fn new(cfg: Config, n: usize) -> io::Result<Supervisor> {
        let poll = Poll::new()?;
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGCHLD])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        let mut argv = std::env::args_os();
        let now = Instant::now();
        Ok(Supervisor {
            drain: cfg.drain(),
            hung: Duration::from_millis(cfg.hung_ms.into()),
            poll,
            signals,
            addr: cfg.listen,
            slots: (0..n)
                .map(|_| Slot {
                    state: State::Down,
                    backoff: MIN_BACKOFF,
                    died: 0,
                    hung: 0,
                })
                .collect(),
            next_inc: 1,
            arg0: argv.next().unwrap_or_else(|| "roomd".into()),
            args: argv.collect(),
            announced: false,
            deadline: None,
            killed: None,
            failed: false,
            watchdog: watchdog_interval().map(|every| (every, now + every)),
        })
    }

    fn run(&mut self) -> ExitCode {
        let mut events = Events::with_capacity(64);
        loop {
            if self.deadline.is_some() && self.running().next().is_none() {
                info!("sup all workers exited");
                break;
            }
            if self.killed.is_some_and(|k| k.elapsed() >= REAP_WAIT) {
                error!("sup workers still not reaped {REAP_WAIT:?} after SIGKILL; exiting");
                break;
            }
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // The workers get SIGTERM (PR_SET_PDEATHSIG) and drain.
                    error!("sup poll failed: {e}; exiting");
                    return ExitCode::FAILURE;
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    SIGNALS => self.on_signals(),
                    Token(i) => self.on_control(i),
                }
            }
            self.expire(Instant::now());
        }
        if self.failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    }

    fn running(&self) -> impl Iterator<Item = (usize, &Running)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.state {
                State::Running(r) => Some((i, r)),
                _ => None,
            })
    }

    /// Starts worker `i` on `listener` with links to every running worker.
    /// On Err nothing was started and slot `i` is unchanged.
    fn spawn(&mut self, i: usize, listener: TcpListener) -> io::Result<()> {
        let n = self.slots.len();
        let (ctl, ctl_child) = WorkerControl::pair()?;
        let mut mine: Vec<Option<UnixStream>> = (0..n).map(|_| None).collect();
        let mut theirs = Vec::new();
        for (j, _) in self.running().filter(|&(j, _)| j != i) {
            let (a, b) = ipc::link_pair()?;
            mine[j] = Some(a);
            theirs.push((j, b));
        }
        let inc = self.next_inc;
        let setup = RawSetup {
            id: i as u32,
            workers: n as u32,
            incarnation: inc,
            restarts: (self.slots[i].died, self.slots[i].hung),
            listen: listener.as_raw_fd(),
            ctl: ctl_child.as_raw_fd(),
            peers: mine
                .iter()
                .map(|p| p.as_ref().map(|s| s.as_raw_fd()))
                .collect(),
        };
        let keep: Vec<RawFd> = setup.fds().collect();
        let parent = std::process::id() as libc::pid_t;
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0(&self.arg0)
            .args(&self.args)
            .env(ipc::SETUP_ENV, setup.encode())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            // setpgid(0, 0) in the child: Ctrl-C on a terminal goes to the
            // foreground group, which is then the supervisor alone.
            .process_group(0);
        // SAFETY: the closure runs between fork and exec and makes only
        // async-signal-safe calls (fcntl, prctl, getppid) without allocating.
        unsafe {
            cmd.pre_exec(move || in_child(&keep, parent));
        }
        let token = Token(i);
        self.poll.registry().register(
            &mut SourceFd(&ctl.as_raw_fd()),
            token,
            Interest::READABLE,
        )?;
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&ctl.as_raw_fd()));
                return Err(e);
            }
        };
        self.next_inc += 1;
        let pid = child.id() as libc::pid_t;
        info!("sup worker {i} (inc {inc}) started: pid {pid}");
        for (j, link) in theirs {
            let id = i as u32;
            self.send_peer(j, FromSupervisor::Peer { id, link });
        }
        self.slots[i].state = State::Running(Running {
            pid,
            inc,
            ctl,
            started: Instant::now(),
            ready: false,
            alive: None,
            hung_killed: false,
        });
        // `listener`, `ctl_child` and `mine` close here: the child has them.
        Ok(())
    }

    /// Sends `m` to worker `j`. A failure is logged and otherwise left
    /// alone: the other end of the link sees EOF and may ask to relink.
    fn send_peer(&self, j: usize, m: FromSupervisor) {
        if let State::Running(r) = &self.slots[j].state {
            if let Err(e) = r.ctl.send(m) {
                warn!("sup worker {j} (inc {}): cannot send a link: {e}", r.inc);
            }
        }
    }

    fn on_signals(&mut self) {
        let sigs: Vec<i32> = self.signals.pending().collect();
        for sig in sigs {
            match sig {
                SIGCHLD => self.reap(),
                _ if self.deadline.is_none() => {
                    info!(
                        "sup {}: stopping {} workers (drain up to {} ms)",
                        sig_name(sig),
                        self.running().count(),
                        self.drain.as_millis()
                    );
                    self.stop();
                }
                _ => {
                    info!("sup {} again: workers exit now", sig_name(sig));
                    self.signal_all(libc::SIGTERM);
                }
            }
        }
    }

    /// Begins the shutdown: no more restarts, SIGTERM to every worker.
    fn stop(&mut self) {
        if self.deadline.is_some() {
            return;
        }
        self.deadline = Some(Instant::now() + self.drain + KILL_MARGIN);
        notify("STOPPING=1");
        for s in &mut self.slots {
            if matches!(s.state, State::Restart(_)) {
                s.state = State::Down;
            }
        }
        self.signal_all(libc::SIGTERM);
    }

    fn signal_all(&self, sig: libc::c_int) {
        for (i, r) in self.running() {
            // SAFETY: kill(2). The pid is our child and not yet reaped, so it
            // cannot have been reused.
            if unsafe { libc::kill(r.pid, sig) } != 0 {
                let e = io::Error::last_os_error();
                error!("sup worker {i} (pid {}): kill {sig}: {e}", r.pid);
            }
        }
    }

    /// Collects every exited child (SIGCHLD may stand for several).
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes only to `status`.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid > 0 {
                self.on_exit(pid, ExitStatus::from_raw(status));
                continue;
            }
            if pid < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if e.raw_os_error() != Some(libc::ECHILD) {
                    error!("sup waitpid: {e}");
                }
            }
            return;
        }
    }

    fn on_exit(&mut self, pid: libc::pid_t, status: ExitStatus) {
        let Some(i) = self.running().find(|(_, r)| r.pid == pid).map(|(i, _)| i) else {
            warn!("sup reaped an unknown child {pid}: {status}");
            return;
        };
        let State::Running(r) = mem::replace(&mut self.slots[i].state, State::Down) else {
            unreachable!("found running above");
        };
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&r.ctl.as_raw_fd()));
        let lived = r.started.elapsed();
        if self.deadline.is_some() {
            if status.success() {
                info!("sup worker {i} (inc {}) exited: {status}", r.inc);
            } else {
                warn!(
                    "sup worker {i} (inc {}) exited while stopping: {status}",
                    r.inc
                );
                self.failed = true;
            }
            return;
        }
        if !self.announced {
            eprintln!("roomd: worker {i} exited during startup: {status}");
            self.failed = true;
            self.stop();
            return;
        }
        let slot = &mut self.slots[i];
        if r.hung_killed {
            slot.hung += 1;
        } else {
            slot.died += 1;
        }
        if lived >= STABLE {
            slot.backoff = MIN_BACKOFF;
        }
        let delay = slot.backoff;
        slot.backoff = (delay * 2).min(MAX_BACKOFF);
        slot.state = State::Restart(Instant::now() + delay);
        warn!(
            "sup worker {i} (inc {}) exited after {} ms: {status}; restarting in {} ms",
            r.inc,
            lived.as_millis(),
            delay.as_millis()
        );
    }

    /// Reads worker `i`'s control channel until WouldBlock.
    fn on_control(&mut self, i: usize) {
        let Some(Slot {
            state: State::Running(r),
            ..
        }) = self.slots.get_mut(i)
        else {
            return; // an event for a worker already reaped
        };
        let mut relink = Vec::new();
        loop {
            match r.ctl.recv() {
                Ok(Some(ToSupervisor::Ready)) => {
                    info!("sup worker {i} (inc {}) ready", r.inc);
                    r.ready = true;
                    // Its first sign of life: one that hangs before its
                    // first `Alive` is hung too.
                    r.alive = Some(Instant::now());
                }
                Ok(Some(ToSupervisor::Alive)) => r.alive = Some(Instant::now()),
                Ok(Some(ToSupervisor::Relink(n))) => relink.push(n),
                Ok(None) => break,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    // It is exiting; SIGCHLD follows. Edge-triggered: this
                    // EOF is not reported again.
                    debug!("sup worker {i} (inc {}) closed its control channel", r.inc);
                    break;
                }
                Err(e) => {
                    error!("sup worker {i} (inc {}) control channel: {e}", r.inc);
                    break;
                }
            }
        }
        for n in relink {
            self.relink(i, n as usize);
        }
        self.announce();
    }

    /// A new link between running workers `i` and `n`, at `i`'s request.
    fn relink(&mut self, i: usize, n: usize) {
        if self.deadline.is_some() {
            return;
        }
        if n == i || n >= self.slots.len() {
            warn!("sup worker {i} asked for a link to {n}: no such peer");
            return;
        }
        if !matches!(self.slots[n].state, State::Running(_)) {
            debug!(
                "sup worker {i} asked for a link to {n}, which is down: it links when it starts"
            );
            return;
        }
        match ipc::link_pair() {
            Ok((a, b)) => {
                info!("sup new link {i}-{n}, asked by {i}");
                self.send_peer(
                    i,
                    FromSupervisor::Peer {
                        id: n as u32,
                        link: a,
                    },
                );
                self.send_peer(
                    n,
                    FromSupervisor::Peer {
                        id: i as u32,
                        link: b,
                    },
                );
            }
            Err(e) => error!("sup link {i}-{n}: {e}"),
        }
    }

    /// Once every worker is ready: the listening line and READY=1, once.
    fn announce(&mut self) {
        if self.announced || self.deadline.is_some() {
            return;
        }
        if !self
            .slots
            .iter()
            .all(|s| matches!(&s.state, State::Running(r) if r.ready))
        {
            return;
        }
        self.announced = true;
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "roomd listening on {}", self.addr).and_then(|()| out.flush());
        notify(&format!("READY=1\nMAINPID={}", std::process::id()));
        info!(
            "sup serving on {} with {} workers",
            self.addr,
            self.slots.len()
        );
    }

    /// The nearest timer: a restart, a hung check, the watchdog, or the
    /// shutdown deadline.
    fn next_deadline(&self) -> Option<Instant> {
        let restarts = self.slots.iter().filter_map(|s| match s.state {
            State::Restart(at) => Some(at),
            _ => None,
        });
        let hung = self
            .running()
            .filter(|_| self.deadline.is_none())
            .filter_map(|(_, r)| r.alive.map(|a| a + self.hung));
        let stop = match self.killed {
            Some(k) => Some(k + REAP_WAIT),
            None => self.deadline,
        };
        restarts
            .chain(hung)
            .chain(self.watchdog.map(|(_, at)| at))
            .chain(stop)
            .min()
    }

    fn expire(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            match &mut self.slots[i].state {
                State::Restart(at) if *at <= now => self.restart(i),
                State::Running(r)
                    if self.deadline.is_none() && r.alive.is_some_and(|a| now >= a + self.hung) =>
                {
                    warn!(
                        "sup worker {i} (inc {}) sent no Alive for {} ms: killing it",
                        r.inc,
                        self.hung.as_millis()
                    );
                    r.alive = None;
                    r.hung_killed = true;
                    // SAFETY: kill(2) of our unreaped child.
                    if unsafe { libc::kill(r.pid, libc::SIGKILL) } != 0 {
                        error!("sup kill {}: {}", r.pid, io::Error::last_os_error());
                    }
                }
                _ => {}
            }
        }
        if let Some((every, at)) = &mut self.watchdog {
            if now >= *at {
                notify("WATCHDOG=1");
                *at = now + *every;
            }
        }
        if self.deadline.is_some_and(|d| now >= d) && self.killed.is_none() {
            error!(
                "sup drain deadline passed: killing {} workers",
                self.running().count()
            );
            self.signal_all(libc::SIGKILL);
            self.failed = true;
            self.killed = Some(now);
        }
    }

    /// Starts worker `i` again; on failure tries later with its backoff.
    fn restart(&mut self, i: usize) {
        let res = worker::bind(self.addr).and_then(|l| self.spawn(i, l));
        if let Err(e) = res {
            let slot = &mut self.slots[i];
            let delay = slot.backoff;
            slot.backoff = (delay * 2).min(MAX_BACKOFF);
            slot.state = State::Restart(Instant::now() + delay);
            error!(
                "sup worker {i}: cannot restart on {}: {e}; retrying in {} ms",
                self.addr,
                delay.as_millis()
            );
        }
    }
}

/// In the child between fork and exec: keep `fds` across exec, and get
/// SIGTERM if the supervisor dies. Async-signal-safe, no allocation.
fn in_child(fds: &[RawFd], parent: libc::pid_t) -> io::Result<()> {
    for &fd in fds {
        ipc::clear_cloexec(fd)?;
    }
    // PDEATHSIG fires when the thread that forked exits; the supervisor's
    // only thread is its main one, so that is when the process exits.
    // SAFETY: prctl and getppid take no pointers.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
            return Err(io::Error::last_os_error());
        }
        // The supervisor died before prctl took effect: don't start orphaned.
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

fn sig_name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// systemd's watchdog interval halved, when it is meant for this process.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
