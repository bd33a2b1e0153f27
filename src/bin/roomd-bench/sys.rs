//! What the harness asks of the OS directly: the shared monotonic clock, a
//! nanosecond timer for mio, the open-files limit, and readings from /proc
//! (a server's RSS and CPU time summed over its process tree, CPU steal).
//!
//! Every process of one run reads the same `CLOCK_MONOTONIC`, so a send time
//! written into a payload by one child is comparable with the receive time
//! read by another.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Nanoseconds on `CLOCK_MONOTONIC` (shared by every process on the host).
/// Cost: one vDSO call, about 20 ns.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Seconds (float) to nanoseconds, saturating.
pub fn secs_ns(s: f64) -> u64 {
    if s <= 0.0 {
        0
    } else {
        (s * 1e9).min(u64::MAX as f64 / 2.0) as u64
    }
}

/// A `timerfd` on `CLOCK_MONOTONIC` armed at absolute times, registered with
/// mio as a readable source, so the loop wakes at a send time with the
/// kernel's timer slack (50 µs) instead of epoll's millisecond timeout.
pub struct Timer {
    fd: OwnedFd,
    armed: u64,
}

impl Timer {
    pub fn new() -> io::Result<Timer> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Timer { fd, armed: 0 })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Arms the timer at absolute time `at_ns` (0 disarms). Re-arming at the
    /// same time is free.
    pub fn arm(&mut self, at_ns: u64) {
        if at_ns == self.armed {
            return;
        }
        self.armed = at_ns;
        // An absolute time of 0 would disarm; a time already past fires at once.
        let at = at_ns.max(if at_ns == 0 { 0 } else { 1 });
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at / 1_000_000_000) as libc::time_t,
                tv_nsec: (at % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: valid fd and spec; errors (impossible with valid arguments) are ignored
        // because the loop re-checks its deadlines every turn anyway.
        unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
    }

    /// Consumes the expiration count so the edge-triggered registration fires again.
    pub fn clear(&mut self) {
        let mut buf = [0u8; 8];
        // SAFETY: reading 8 bytes into a valid buffer; WouldBlock is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        self.armed = 0;
    }
}

/// Asks the kernel for 1 µs timer slack (default 50 µs) so the timerfd wakes
/// the loop close to a send time. Harmless if refused.
pub fn tight_timer_slack() {
    // SAFETY: prctl with PR_SET_TIMERSLACK takes a plain integer.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0) };
}

/// Raises the soft open-files limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 1024;
    }
    if rl.rlim_cur < rl.rlim_max {
        let want = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: valid pointer; failure leaves the old limit in place.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } == 0 {
            return rl.rlim_max;
        }
    }
    rl.rlim_cur
}

/// `pid` and all its descendants (from the parent links in `/proc/*/stat`),
/// `pid` first. Cost: one read of every `/proc/*/stat` on the host.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(pp) = ppid(p) {
                parents.push((p, pp));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let cur = tree[i];
        for &(p, pp) in &parents {
            if pp == cur && !tree.contains(&p) {
                tree.push(p);
            }
        }
        i += 1;
    }
    tree
}

/// Resident set size in bytes of `pid` and all its descendants, from
/// `/proc/*/stat` (parent links) and `/proc/PID/statm` (resident pages).
/// `None` when `pid` does not exist.
pub fn tree_rss(pid: u32) -> Option<u64> {
    let page = page_size();
    let mut total = 0u64;
    let mut found = false;
    for p in process_tree(pid) {
        if let Ok(s) = fs::read_to_string(format!("/proc/{p}/statm")) {
            if let Some(res) = s
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
            {
                total += res * page;
                found = true;
            }
        }
    }
    found.then_some(total)
}

/// CPU time (user + system) in nanoseconds that `pid` and all its
/// descendants have used so far, from `utime` and `stime` in
/// `/proc/PID/stat` (clock ticks, usually 10 ms). A worker that exits
/// between two readings takes its time with it. `None` when `pid` does not
/// exist.
pub fn tree_cpu_ns(pid: u32) -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    let mut ticks = 0u64;
    let mut found = false;
    for p in process_tree(pid) {
        if let Some(t) = fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|s| cpu_ticks(&s))
        {
            ticks += t;
            found = true;
        }
    }
    found.then_some(ticks * 1_000_000_000 / hz)
}

/// `utime + stime` from the text of a `/proc/PID/stat` (fields 14 and 15;
/// the command name in parentheses may contain spaces).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

fn ppid(pid: u32) -> Option<u32> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = s.get(s.rfind(')')? + 2..)?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// Aggregate CPU counters (total, steal) in jiffies from `/proc/stat`.
pub fn cpu_steal() -> Option<(u64, u64)> {
    let s = fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    let total: u64 = v.iter().take(8).sum();
    Some((total, *v.get(7)?))
}

/// Percentage of CPU time stolen by the host between two `cpu_steal` readings.
pub fn steal_pct(a: Option<(u64, u64)>, b: Option<(u64, u64)>) -> f64 {
    match (a, b) {
        (Some((t0, s0)), Some((t1, s1))) if t1 > t0 => {
            100.0 * (s1.saturating_sub(s0)) as f64 / (t1 - t0) as f64
        }
        _ => 0.0,
    }
}

/// The 1-minute load average (how busy the host was besides this run).
pub fn load_avg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_of_a_stat_line() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime ...
        let s = "42 (roomd w 0) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0";
        assert_eq!(cpu_ticks(s), Some(325));
        assert_eq!(cpu_ticks("42 (x) S 1"), None);
        let me = tree_cpu_ns(std::process::id());
        assert!(me.is_some());
    }
}
