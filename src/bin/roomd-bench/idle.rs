//! `idle`: open N connections at a set rate, hold them while the server
//! pings, and measure the server's memory per connection.
//!
//! A connection counts as open at its 101 reply (roomd also sends
//! `welcome`, which is read and ignored). The latency histogram holds the
//! connect + upgrade time of each connection. Any close during the hold is
//! an error (a missed heartbeat would show up here).

use crate::ctl::{Cmd, Fleet, PhaseResult, Worker};
use crate::engine::{Engine, Handler, Io, Why};
use crate::fanout::teardown;
use crate::opts::{slice, Endpoint, IdleArgs};
use crate::pace::Opener;
use crate::report::Report;
use crate::stats::Stats;
use crate::sys::{now_ns, secs_ns};

struct State {
    stats: Stats,
    open: u64,
    inflight: usize,
}

impl Handler for State {
    fn opened(&mut self, io: &mut Io, id: usize, _tag: u32, now: u64) {
        self.inflight -= 1;
        self.open += 1;
        self.stats.opened += 1;
        self.stats.lat.record_ns(now.saturating_sub(io.started(id)));
    }

    fn message(
        &mut self,
        _io: &mut Io,
        _id: usize,
        _tag: u32,
        _data: &[u8],
        _bin: bool,
        _now: u64,
    ) {
    }

    fn closed(&mut self, _io: &mut Io, _id: usize, _tag: u32, why: Why, _now: u64) {
        if why.before_open() {
            self.inflight -= 1;
            self.stats.failed += 1;
        } else {
            self.open -= 1;
        }
        if let Some(l) = why.label() {
            self.stats.error(l);
        }
    }
}

pub struct IdleWorker {
    eng: Engine,
    s: State,
    ep: Endpoint,
    room: String,
    conns: usize,
    rate: f64,
    max_inflight: usize,
}

impl IdleWorker {
    pub fn new(a: &IdleArgs, index: usize, procs: usize) -> Result<IdleWorker, String> {
        let ep = Endpoint::from_common(&a.common)?;
        let (lo, hi) = slice(a.conns, index, procs);
        let rb = if a.common.read_buffer > 0 {
            a.common.read_buffer
        } else {
            4096
        };
        let mut eng = Engine::new(rb).map_err(|e| format!("cannot create the event loop: {e}"))?;
        eng.connect_timeout_ns = ep.target.connect_timeout_ns;
        Ok(IdleWorker {
            eng,
            s: State {
                stats: Stats::default(),
                open: 0,
                inflight: 0,
            },
            ep,
            room: a.room.clone(),
            conns: hi - lo,
            rate: a.common.connect_rate / procs as f64,
            max_inflight: a.common.max_inflight,
        })
    }

    fn setup(&mut self, progress: &mut dyn FnMut(&Stats)) -> Result<PhaseResult, String> {
        let start = now_ns();
        self.s.stats = Stats::default();
        let path = self.ep.path_for(&self.room);
        let mut opener = Opener::new(self.conns, self.rate, self.max_inflight, start);
        let mut next_progress = start + 1_000_000_000;
        loop {
            let now = now_ns();
            for _ in 0..opener.due(now, self.s.inflight) {
                let i = opener.take();
                match self.eng.io.connect(&self.ep.target, &path, i as u32) {
                    Ok(_) => self.s.inflight += 1,
                    Err(e) => {
                        self.s.stats.failed += 1;
                        self.s.stats.error(format!("connect: {e}"));
                    }
                }
            }
            if opener.done() && self.s.inflight == 0 {
                break;
            }
            if now >= next_progress {
                next_progress += 1_000_000_000;
                self.s.stats.conns = self.s.open;
                progress(&self.s.stats);
            }
            let mut wake = next_progress;
            if let Some(t) = opener.next_at(self.s.inflight) {
                wake = wake.min(t);
            }
            self.eng
                .turn(&mut self.s, wake)
                .map_err(|e| format!("poll: {e}"))?;
        }
        self.s.stats.conns = self.s.open;
        Ok(PhaseResult::ended(&mut self.s.stats, start, false))
    }

    fn hold(
        &mut self,
        until: u64,
        progress: &mut dyn FnMut(&Stats),
    ) -> Result<PhaseResult, String> {
        let start = now_ns();
        let mut next_progress = start + 1_000_000_000;
        loop {
            let now = now_ns();
            if now >= until {
                break;
            }
            if now >= next_progress {
                next_progress += 1_000_000_000;
                self.s.stats.conns = self.s.open;
                progress(&self.s.stats);
            }
            self.eng
                .turn(&mut self.s, until.min(next_progress))
                .map_err(|e| format!("poll: {e}"))?;
        }
        self.s.stats.conns = self.s.open;
        Ok(PhaseResult::ended(&mut self.s.stats, start, false))
    }
}

impl Worker for IdleWorker {
    fn phase(
        &mut self,
        cmd: &Cmd,
        progress: &mut dyn FnMut(&Stats),
    ) -> Result<PhaseResult, String> {
        match *cmd {
            Cmd::Setup { .. } => self.setup(progress),
            Cmd::Hold { until } => self.hold(until, progress),
            Cmd::Teardown => {
                let elapsed_ns = teardown(&mut self.eng, &mut self.s)?;
                self.s.stats = Stats::default();
                Ok(PhaseResult {
                    elapsed_ns,
                    ..Default::default()
                })
            }
            Cmd::Run { .. } | Cmd::Storm { .. } | Cmd::Exit => Ok(PhaseResult::default()),
        }
    }
}

/// The controller: open, sample RSS, hold, sample RSS, close.
pub fn control(a: &IdleArgs, fleet: &mut Fleet, report: &mut Report) -> Result<(), String> {
    let c = &a.common;
    let su = crate::setup(fleet, 0, c.quiet, a.conns)?;
    let secs = su.elapsed_ns as f64 / 1e9;
    report.conns = su.stats.conns;
    report.connect_failed = su.stats.failed;
    report.connect_rate = Some(if secs > 0.0 {
        su.stats.opened as f64 / secs
    } else {
        0.0
    });
    let until = now_ns() + secs_ns(a.hold);
    let h = fleet.phase(Cmd::Hold { until }, "hold", c.quiet)?;
    report.server_rss_after = c.server_pid.and_then(crate::sys::tree_rss);
    let mut all = su.stats.clone();
    all.merge(&h.stats);
    report.take_stats(&all, a.hold);
    report.conns = h.stats.conns;
    if let (Some(b), Some(af)) = (report.server_rss_before, report.server_rss_after) {
        if h.stats.conns > 0 {
            report.bytes_per_conn = Some((af as f64 - b as f64) / h.stats.conns as f64);
        }
    }
    fleet.phase(Cmd::Teardown, "teardown", true)?;
    Ok(())
}
