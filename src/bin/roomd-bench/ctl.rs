//! Phases and the processes that run them.
//!
//! A scenario is a sequence of phases (`Cmd`) run by every worker on its own
//! slice of connections: in this process (`--procs 1`), or in K children
//! (the same binary re-executed with the hidden `--child-index`) that read one
//! JSON command per line on stdin and answer with JSON lines on stdout:
//! progress snapshots each second, then the phase's result. Phases end on
//! absolute CLOCK_MONOTONIC deadlines (shared by all processes), so no
//! message crosses between children in the middle of a phase. The parent
//! merges snapshots and results exactly (`Stats::merge`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stats::{Stats, WireStats};
use crate::sys::{now_ns, secs_ns};

/// One phase, as the parent asks every worker to run it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Cmd {
    /// Open the worker's connections (and join their rooms); `gen` names a
    /// fresh set of rooms.
    Setup { gen: u32 },
    /// Load from `t0` (absolute ns): warm-up, measured window, then drain.
    Run {
        step: u32,
        t0: u64,
        warmup_ns: u64,
        duration_ns: u64,
        drain_ns: u64,
        rate: f64,
    },
    /// Keep the connections open (answering pings) until `until`.
    Hold { until: u64 },
    /// `watch`: every watcher joins its room from `t0` (absolute ns), as
    /// fast as it can; the phase ends when each has its answer.
    Storm { t0: u64 },
    /// Close every connection.
    Teardown,
    /// Leave the process.
    Exit,
}

impl Cmd {
    pub fn label(&self) -> &'static str {
        match self {
            Cmd::Setup { .. } => "setup",
            Cmd::Run { .. } => "run",
            Cmd::Hold { .. } => "hold",
            Cmd::Storm { .. } => "storm",
            Cmd::Teardown => "teardown",
            Cmd::Exit => "exit",
        }
    }
}

/// What one worker reports at the end of a phase.
#[derive(Clone, Default)]
pub struct PhaseResult {
    pub stats: Stats,
    /// Wall time the phase took in this worker.
    pub elapsed_ns: u64,
    /// Some connection was lost: the set must be rebuilt before reuse.
    pub broken: bool,
}

impl PhaseResult {
    /// The end of a phase that started at `start_ns`: takes the stats it
    /// gathered.
    pub fn ended(stats: &mut Stats, start_ns: u64, broken: bool) -> Self {
        PhaseResult {
            stats: std::mem::take(stats),
            elapsed_ns: now_ns() - start_ns,
            broken,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub enum Reply {
    Progress(WireStats),
    Done {
        stats: WireStats,
        elapsed_ns: u64,
        broken: bool,
    },
    Failed(String),
}

/// A scenario's worker: runs one phase on its slice of connections, calling
/// `progress` about once a second with the phase's running counts.
pub trait Worker {
    fn phase(&mut self, cmd: &Cmd, progress: &mut dyn FnMut(&Stats))
        -> Result<PhaseResult, String>;
}

/// Formats the one-line progress report.
pub fn progress_line(label: &str, since_ns: u64, s: &Stats) -> String {
    let t = now_ns().saturating_sub(since_ns) as f64 / 1e9;
    let mut line = format!("[{label:>8} {t:6.1}s] conns {:>6}", s.conns);
    if s.sent > 0 || s.delivered > 0 {
        line += &format!("  sent {:>9}  delivered {:>10}", s.sent, s.delivered);
    }
    if s.lat.count() > 0 {
        line += &format!("  p99 {}", fmt_us(s.lat.quantile_us(0.99)));
    }
    let errs = s.error_count() + s.failed;
    if errs > 0 {
        line += &format!("  errors {errs}");
    }
    line
}

/// Microseconds as a short human figure.
pub fn fmt_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{us}µs")
    }
}

pub struct ChildProc {
    proc: Child,
    stdin: ChildStdin,
}

/// The workers of a run: this process, or K children.
pub enum Fleet {
    Local(Box<dyn Worker>),
    Children {
        kids: Vec<ChildProc>,
        rx: Receiver<(usize, Option<Reply>)>,
    },
}

impl Fleet {
    /// Starts `procs` children running this binary with the current
    /// arguments plus `--child-index i`.
    pub fn spawn(procs: usize) -> Result<Fleet, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
        let args: Vec<_> = std::env::args_os().skip(1).collect();
        let (tx, rx) = channel();
        let mut kids = Vec::new();
        for i in 0..procs {
            let mut proc = Command::new(&exe)
                .args(&args)
                .arg("--child-index")
                .arg(i.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("cannot start child {i}: {e}"))?;
            let (Some(stdin), Some(stdout)) = (proc.stdin.take(), proc.stdout.take()) else {
                return Err(format!("child {i}: no pipes"));
            };
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    match serde_json::from_str::<Reply>(&line) {
                        Ok(r) => {
                            if tx.send((i, Some(r))).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ =
                                tx.send((i, Some(Reply::Failed(format!("bad reply line: {e}")))));
                        }
                    }
                }
                let _ = tx.send((i, None));
            });
            kids.push(ChildProc { proc, stdin });
        }
        Ok(Fleet::Children { kids, rx })
    }

    pub fn size(&self) -> usize {
        match self {
            Fleet::Local(_) => 1,
            Fleet::Children { kids, .. } => kids.len(),
        }
    }

    /// One measured step at `rate` messages/s on every worker, starting
    /// 200 ms from now (so every child has it before it begins): `warmup`,
    /// `duration` and `drain` in seconds.
    pub fn run_step(
        &mut self,
        step: u32,
        rate: f64,
        (warmup, duration, drain): (f64, f64, f64),
        quiet: bool,
    ) -> Result<PhaseResult, String> {
        let t0 = now_ns() + 200_000_000;
        self.phase(
            Cmd::Run {
                step,
                t0,
                warmup_ns: secs_ns(warmup),
                duration_ns: secs_ns(duration),
                drain_ns: secs_ns(drain),
                rate,
            },
            "run",
            quiet,
        )
    }

    /// Runs `cmd` on every worker and merges their results. Prints progress
    /// each second unless `quiet`.
    pub fn phase(&mut self, cmd: Cmd, label: &str, quiet: bool) -> Result<PhaseResult, String> {
        let start = now_ns();
        match self {
            Fleet::Local(w) => {
                let mut print = |s: &Stats| {
                    if !quiet {
                        eprintln!("{}", progress_line(label, start, s));
                    }
                };
                w.phase(&cmd, &mut print)
            }
            Fleet::Children { kids, rx } => {
                let line = serde_json::to_string(&cmd).map_err(|e| e.to_string())?;
                for (i, k) in kids.iter_mut().enumerate() {
                    writeln!(k.stdin, "{line}")
                        .and_then(|_| k.stdin.flush())
                        .map_err(|e| format!("child {i}: cannot send command: {e}"))?;
                }
                if matches!(cmd, Cmd::Exit) {
                    for k in kids.iter_mut() {
                        let _ = k.proc.wait();
                    }
                    return Ok(PhaseResult::default());
                }
                let n = kids.len();
                let mut latest: Vec<Stats> = vec![Stats::default(); n];
                let mut done: Vec<Option<PhaseResult>> = vec![None; n];
                let mut next_print = start + 1_000_000_000;
                while done.iter().any(|d| d.is_none()) {
                    let wait = next_print.saturating_sub(now_ns()).max(1_000_000);
                    match rx.recv_timeout(Duration::from_nanos(wait)) {
                        Ok((i, Some(Reply::Progress(w)))) => latest[i] = Stats::from_wire(&w),
                        Ok((
                            i,
                            Some(Reply::Done {
                                stats,
                                elapsed_ns,
                                broken,
                            }),
                        )) => {
                            let stats = Stats::from_wire(&stats);
                            latest[i] = stats.clone();
                            done[i] = Some(PhaseResult {
                                stats,
                                elapsed_ns,
                                broken,
                            });
                        }
                        Ok((i, Some(Reply::Failed(e)))) => return Err(format!("child {i}: {e}")),
                        Ok((i, None)) => return Err(format!("child {i} exited during {label}")),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => {
                            return Err("all children gone".into())
                        }
                    }
                    if now_ns() >= next_print {
                        next_print += 1_000_000_000;
                        if !quiet {
                            let mut m = Stats::default();
                            for s in &latest {
                                m.merge(s);
                            }
                            eprintln!("{}", progress_line(label, start, &m));
                        }
                    }
                }
                let mut out = PhaseResult::default();
                for d in done.into_iter().flatten() {
                    out.stats.merge(&d.stats);
                    out.elapsed_ns = out.elapsed_ns.max(d.elapsed_ns);
                    out.broken |= d.broken;
                }
                Ok(out)
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Fleet::Children { kids, .. } = self {
            for k in kids.iter_mut() {
                let _ = writeln!(
                    k.stdin,
                    "{}",
                    serde_json::to_string(&Cmd::Exit).unwrap_or_default()
                );
                let _ = k.stdin.flush();
            }
            for k in kids.iter_mut() {
                let _ = k.proc.wait();
            }
        }
    }
}

/// Writes one reply line to stdout (the pipe to the parent).
fn emit(r: &Reply) -> Result<(), String> {
    let s = serde_json::to_string(r).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}")
        .and_then(|_| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

/// The child's side: read commands from stdin, run them, write replies.
/// Returns when stdin closes or `Exit` arrives.
pub fn child_main(mut w: Box<dyn Worker>) -> Result<(), String> {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let cmd: Cmd = serde_json::from_str(&line).map_err(|e| format!("bad command: {e}"))?;
        if matches!(cmd, Cmd::Exit) {
            break;
        }
        let mut progress = |s: &Stats| {
            let _ = emit(&Reply::Progress(s.to_wire()));
        };
        match w.phase(&cmd, &mut progress) {
            Ok(r) => emit(&Reply::Done {
                stats: r.stats.to_wire(),
                elapsed_ns: r.elapsed_ns,
                broken: r.broken,
            })?,
            Err(e) => {
                emit(&Reply::Failed(e.clone()))?;
                return Err(e);
            }
        }
    }
    Ok(())
}
