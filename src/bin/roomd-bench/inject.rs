//! The fault injector of the `faults` scenario: which process is which
//! worker, signals to them, and how long a replacement takes to accept.
//! Everything here is blocking and runs on a thread of its own (or before
//! and after the load), never in the clients' loop.
//!
//! Worker processes are the live children of `--server-pid` (the
//! supervisor), from `/proc/*/stat`. Which child is worker `k`: a probe
//! connection is upgraded, its `welcome` names the worker (`worker`), and
//! the child holding the server end of that TCP connection (its inode in
//! `/proc/net/tcp`, a `socket:[inode]` link in `/proc/PID/fd`) is that
//! worker's process. This uses only what the server already shows any
//! client and the OS shows the same user, and it stays right across
//! restarts: a replacement is mapped by the probe that finds it accepting.
//!
//! Probes are closed with close code 1000, so the server frees their
//! sessions at once and they leave nothing for the leftover count.

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::sys::now_ns;
use crate::wire;

/// How long one probe may take to connect, upgrade and get its `welcome`.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
/// Pause between two probes looking for a worker.
const PROBE_GAP: Duration = Duration::from_millis(3);
/// How often a stopped or killed worker's process is looked at.
const POLL: Duration = Duration::from_millis(2);
/// The longest wait for a killed worker's replacement to accept.
const BACK_WAIT_NS: u64 = 20_000_000_000;

/// What was done to a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// SIGKILL.
    Kill,
    /// SIGSTOP for a while, then SIGCONT unless the watchdog killed it.
    Stop,
}

/// One fault, as it happened. Times are `now_ns` (CLOCK_MONOTONIC).
#[derive(Clone, Debug)]
pub struct Fault {
    pub worker: u32,
    pub kind: Kind,
    pub pid: u32,
    /// When the signal was sent (the record is made just before, so a
    /// client that sees the effect finds the record).
    pub at: u64,
    /// When the process was seen gone (reaped, or a zombie).
    pub gone: Option<u64>,
    /// When a probe first got a `welcome` from the replacement.
    pub back: Option<u64>,
    pub new_pid: Option<u32>,
    /// Stop: SIGCONT was sent (the process outlived the stop).
    pub continued: bool,
}

/// The fault log, shared by the injector and the clients.
pub type Log = Arc<Mutex<Vec<Fault>>>;

/// Has worker `w` had a fault (kill or stop) that began at or after `since`?
pub fn faulted_since(log: &Log, w: u32, since: u64) -> bool {
    match log.lock() {
        Ok(l) => l.iter().any(|f| f.worker == w && f.at >= since),
        Err(p) => p
            .into_inner()
            .iter()
            .any(|f| f.worker == w && f.at >= since),
    }
}

/// A copy of the log.
pub fn snapshot(log: &Log) -> Vec<Fault> {
    match log.lock() {
        Ok(l) => l.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

fn record(log: &Log, f: impl FnOnce(&mut Vec<Fault>)) {
    match log.lock() {
        Ok(mut l) => f(&mut l),
        Err(p) => f(&mut p.into_inner()),
    }
}

/// The room's home: the server's own function (README "Rooms across
/// workers"), so the harness names rooms where it wants them.
pub use roomd::bus::home;

/// The parent pid and state letter of `pid`, from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(u32, char)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let mut f = s.get(s.rfind(')')? + 2..)?.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Is `pid` a live (not zombie) child of `sup`?
pub fn is_worker(sup: u32, pid: u32) -> bool {
    matches!(stat(pid), Some((pp, st)) if pp == sup && st != 'Z')
}

/// The live children of `sup` running the same executable (workers are
/// the supervisor's binary re-executed): the worker processes. Cost: one
/// read of every `/proc/*/stat` on the host.
pub fn children(sup: u32) -> Vec<u32> {
    let exe = |p: u32| fs::read_link(format!("/proc/{p}/exe")).ok();
    let Some(own) = exe(sup) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if is_worker(sup, p) && exe(p).as_ref() == Some(&own) {
                out.push(p);
            }
        }
    }
    out.sort_unstable();
    out
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: libc::c_int) -> Result<(), String> {
    // SAFETY: kill(2) takes plain integers; the caller checked that `pid`
    // is a worker of the server under test.
    if unsafe { libc::kill(pid as libc::pid_t, sig) } == 0 {
        Ok(())
    } else {
        Err(format!(
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// An upgraded probe connection and what its `welcome` said.
struct Probe {
    stream: TcpStream,
    worker: u32,
}

/// Opens a WebSocket connection to `addr`, reads its `welcome`; None on
/// any failure (refused, reset, timeout, no `welcome`).
fn probe(addr: SocketAddr) -> Option<Probe> {
    let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok()?;
    s.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    s.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    let _ = s.set_nodelay(true);
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: roomd.v1.msgpack\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let deadline = now_ns() + PROBE_TIMEOUT.as_nanos() as u64;
    let head = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if now_ns() > deadline || buf.len() > 16 * 1024 {
            return None;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if !buf.starts_with(b"HTTP/1.1 101") {
        return None;
    }
    buf.drain(..head);
    // One server frame (unmasked): FIN + opcode, then the length.
    let payload = loop {
        if let Some(p) = frame(&buf) {
            break p;
        }
        if now_ns() > deadline || buf.len() > 1 << 20 {
            return None;
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let m = wire::parse(payload)?;
    if m.t != "welcome" {
        return None;
    }
    Some(Probe {
        worker: m.worker.unwrap_or(0) as u32,
        stream: s,
    })
}

/// The payload of the complete frame at the start of `b`, if it is all there.
fn frame(b: &[u8]) -> Option<&[u8]> {
    let len7 = (*b.get(1)? & 0x7f) as usize;
    let (len, at): (usize, usize) = match len7 {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => {
            let mut x = [0u8; 8];
            x.copy_from_slice(b.get(2..10)?);
            (u64::from_be_bytes(x) as usize, 10)
        }
        n => (n, 2),
    };
    b.get(at..at.checked_add(len)?)
}

/// Ends a probe with a close frame (code 1000: the server frees its
/// session at once) and waits briefly for the server to close.
fn close_probe(mut p: Probe) {
    // Client frames are masked (RFC 6455 5.3); a zero mask is a valid mask.
    let _ = p.stream.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);
    let _ = p.stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut sink = [0u8; 256];
    while let Ok(n) = p.stream.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

/// The child of `sup` that holds the server end of the connection from
/// local port `mine` to `server`: its inode from `/proc/net/tcp`, then the
/// child with a `socket:[inode]` among its fds.
fn pid_holding(sup: u32, server: SocketAddr, mine: u16) -> Option<u32> {
    let tcp = fs::read_to_string("/proc/net/tcp").ok()?;
    let port = |a: &str| {
        a.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    let inode = tcp.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 9 && port(f[1]) == Some(server.port()) && port(f[2]) == Some(mine))
            .then(|| f[9].to_string())
    })?;
    if inode == "0" {
        return None;
    }
    let want = format!("socket:[{inode}]");
    children(sup).into_iter().find(|&pid| {
        fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|d| {
            d.flatten()
                .any(|e| fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == want.as_str()))
        })
    })
}

/// Probes until one lands on worker `w` and maps it to its process, or
/// `deadline` passes (or `stop` is set). Returns (time of its `welcome`, pid).
fn find_worker(
    sup: u32,
    addr: SocketAddr,
    w: u32,
    deadline: u64,
    stop: &AtomicBool,
) -> Option<(u64, u32)> {
    while now_ns() < deadline && !stop.load(Ordering::Relaxed) {
        if let Some(p) = probe(addr) {
            let at = now_ns();
            let port = p.stream.local_addr().map(|a| a.port()).ok();
            let found = p.worker == w;
            let pid = if found {
                port.and_then(|port| pid_holding(sup, addr, port))
            } else {
                None
            };
            close_probe(p);
            if found {
                if let Some(pid) = pid {
                    return Some((at, pid));
                }
            }
        }
        thread::sleep(PROBE_GAP);
    }
    None
}

/// Worker `k`'s pid for every k < `n`: probes until each is found, or
/// fails after `wait_ns`.
pub fn map_workers(sup: u32, addr: SocketAddr, n: u32, wait_ns: u64) -> Result<Vec<u32>, String> {
    let deadline = now_ns() + wait_ns;
    let mut pids = vec![0u32; n as usize];
    let mut tries = 0u32;
    let mut refused = 0u32;
    while pids.contains(&0) {
        if refused >= 20 {
            return Err(format!(
                "cannot connect a probe to {addr} (is the server there?)"
            ));
        }
        if now_ns() > deadline {
            let missing: Vec<usize> = (0..pids.len()).filter(|&k| pids[k] == 0).collect();
            return Err(format!(
                "no probe connection landed on worker(s) {missing:?} of --server-pid {sup} \
                 in {tries} tries (is {addr} that server?)"
            ));
        }
        tries += 1;
        let p = probe(addr);
        refused = if p.is_none() { refused + 1 } else { 0 };
        if let Some(p) = p {
            let k = p.worker as usize;
            let port = p.stream.local_addr().map(|a| a.port()).ok();
            if k < pids.len() && pids[k] == 0 {
                if let Some(pid) = port.and_then(|port| pid_holding(sup, addr, port)) {
                    pids[k] = pid;
                }
            } else if k >= pids.len() {
                close_probe(p);
                return Err(format!(
                    "welcome names worker {k}, but --server-pid {sup} has {n} worker processes"
                ));
            }
            close_probe(p);
        }
        thread::sleep(PROBE_GAP);
    }
    Ok(pids)
}

/// When and how the injector acts.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// SIGKILL one worker every this often (0: never).
    pub kill_every_ns: u64,
    /// SIGSTOP one worker every this often (0: never) for `stop_for_ns`.
    pub stop_every_ns: u64,
    pub stop_for_ns: u64,
    /// Faults begin at `start` + their interval; none begins after `end`.
    pub start: u64,
    pub end: u64,
}

/// The injector: owns the worker map and the schedule.
pub struct Injector {
    pub sup: u32,
    pub addr: SocketAddr,
    pub pids: Vec<u32>,
    pub sched: Schedule,
    pub log: Log,
    pub stop: Arc<AtomicBool>,
}

impl Injector {
    /// Runs the schedule to its end: one fault at a time, round robin over
    /// the workers, each followed to its recovery (bounded). Returns the
    /// first OS failure (a signal refused), after which no fault is made.
    pub fn run(mut self) -> Result<(), String> {
        let s = self.sched.clone();
        let every = |e: u64| if e == 0 { u64::MAX } else { s.start + e };
        let mut next_kill = every(s.kill_every_ns);
        // Stops fall between kills when both are asked for.
        let mut next_stop = match (s.kill_every_ns, s.stop_every_ns) {
            (0, _) | (_, 0) => every(s.stop_every_ns),
            (_, e) => s.start + e + s.kill_every_ns.min(e) / 2,
        };
        let mut victim = 0u32;
        loop {
            let (due, kind) = if next_kill <= next_stop {
                (next_kill, Kind::Kill)
            } else {
                (next_stop, Kind::Stop)
            };
            if due > s.end {
                return Ok(());
            }
            while now_ns() < due {
                if self.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                thread::sleep(Duration::from_nanos((due - now_ns()).min(20_000_000)));
            }
            let w = victim % self.pids.len() as u32;
            victim += 1;
            self.fault(w, kind)?;
            let now = now_ns();
            let bump = |next: &mut u64, e: u64| {
                while *next <= now {
                    *next = next.saturating_add(e);
                }
            };
            match kind {
                Kind::Kill => bump(&mut next_kill, s.kill_every_ns),
                Kind::Stop => bump(&mut next_stop, s.stop_every_ns),
            }
        }
    }

    /// One fault of worker `w`, followed until the replacement accepts
    /// (when the process died) or it was continued.
    fn fault(&mut self, w: u32, kind: Kind) -> Result<(), String> {
        let mut pid = self.pids[w as usize];
        if !is_worker(self.sup, pid) {
            // The watchdog (or someone else) replaced it since it was mapped.
            let deadline = now_ns() + BACK_WAIT_NS;
            match find_worker(self.sup, self.addr, w, deadline, &self.stop) {
                Some((_, p)) => pid = p,
                None => return Err(format!("worker {w}: no process found to signal")),
            }
            self.pids[w as usize] = pid;
        }
        let at = now_ns();
        record(&self.log, |l| {
            l.push(Fault {
                worker: w,
                kind,
                pid,
                at,
                gone: None,
                back: None,
                new_pid: None,
                continued: false,
            })
        });
        let sig = match kind {
            Kind::Kill => libc::SIGKILL,
            Kind::Stop => libc::SIGSTOP,
        };
        signal(pid, sig)?;
        let until = match kind {
            Kind::Kill => at + 5_000_000_000,
            Kind::Stop => at + self.sched.stop_for_ns,
        };
        let mut gone = None;
        while now_ns() < until {
            if !is_worker(self.sup, pid) {
                gone = Some(now_ns());
                break;
            }
            thread::sleep(POLL);
        }
        let Some(gone) = gone else {
            if kind == Kind::Stop {
                // Outlived its stop: the watchdog did not fire.
                let _ = signal(pid, libc::SIGCONT);
                record(&self.log, |l| {
                    if let Some(f) = l.last_mut() {
                        f.continued = true;
                    }
                });
                return Ok(());
            }
            return Err(format!(
                "worker {w} (pid {pid}) still there 5 s after SIGKILL"
            ));
        };
        record(&self.log, |l| {
            if let Some(f) = l.last_mut() {
                f.gone = Some(gone);
            }
        });
        if let Some((back, new_pid)) =
            find_worker(self.sup, self.addr, w, gone + BACK_WAIT_NS, &self.stop)
        {
            self.pids[w as usize] = new_pid;
            record(&self.log, |l| {
                if let Some(f) = l.last_mut() {
                    f.back = Some(back);
                    f.new_pid = Some(new_pid);
                }
            });
        }
        Ok(())
    }
}

/// `GET PATH` on `addr` (plain HTTP on the server's port); the body of a
/// 200, else an error naming the status.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let t = Duration::from_secs(5);
    let mut s = TcpStream::connect_timeout(&addr, t).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(t))
        .and_then(|()| s.set_write_timeout(Some(t)))
        .map_err(|e| format!("{addr}: {e}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{addr}{path}: {e}"))?;
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset && !out.is_empty() => {}
        Err(e) => return Err(format!("{addr}{path}: {e}")),
    }
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr}{path}: no HTTP reply"))?;
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("{addr}{path}: {status}"));
    }
    Ok(body.to_string())
}

/// Each named family of a Prometheus text exposition summed over its
/// samples (all workers, all labels), for the families in `names`.
pub fn sum_families(text: &str, names: &[&str]) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = names.iter().map(|n| (n.to_string(), 0)).collect();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((key, v)) = line.rsplit_once(' ') else {
            continue;
        };
        let family = key.split('{').next().unwrap_or(key);
        if let (Some(slot), Ok(v)) = (out.get_mut(family), v.parse::<f64>()) {
            *slot += v.max(0.0) as u64;
        }
    }
    out
}

/// The samples of `family` whose labels include `label` (e.g.
/// `reason="died"`), summed.
pub fn sum_labelled(text: &str, family: &str, label: &str) -> u64 {
    let mut n = 0.0;
    for line in text.lines() {
        let Some((key, v)) = line.rsplit_once(' ') else {
            continue;
        };
        if key.starts_with(family) && key[family.len()..].starts_with('{') && key.contains(label) {
            n += v.parse::<f64>().unwrap_or(0.0).max(0.0);
        }
    }
    n as u64
}

/// The workers that did not answer a `/metrics/all` (its comment lines).
pub fn silent_workers(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("# roomd: worker") && l.ends_with("did not answer"))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_summed_over_workers() {
        let t = "# HELP roomd_sessions x\n# TYPE roomd_sessions gauge\n\
                 roomd_sessions{worker=\"0\"} 2\nroomd_sessions{worker=\"1\"} 3\n\
                 roomd_worker_restarts_total{worker=\"1\",reason=\"died\"} 4\n\
                 # roomd: worker 1 did not answer\n";
        let s = sum_families(t, &["roomd_sessions", "roomd_worker_restarts_total", "x"]);
        assert_eq!(s["roomd_sessions"], 5);
        assert_eq!(s["roomd_worker_restarts_total"], 4);
        assert_eq!(s["x"], 0);
        assert_eq!(silent_workers(t), 1);
        assert_eq!(
            sum_labelled(t, "roomd_worker_restarts_total", "reason=\"died\""),
            4
        );
        assert_eq!(
            sum_labelled(t, "roomd_worker_restarts_total", "reason=\"hung\""),
            0
        );
    }

    #[test]
    fn frames_are_cut_at_their_length() {
        assert_eq!(frame(&[0x82, 3, 1, 2, 3, 9]), Some(&[1u8, 2, 3][..]));
        assert_eq!(frame(&[0x82, 3, 1, 2]), None);
        let mut long = vec![0x82, 126, 0, 200];
        long.extend(std::iter::repeat_n(7u8, 200));
        assert_eq!(frame(&long).map(<[u8]>::len), Some(200));
    }
}
