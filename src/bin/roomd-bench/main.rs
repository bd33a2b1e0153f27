//! roomd-bench: the load harness of roomd (issue 3). Standalone: it speaks
//! roomd's protocol (PROTOCOL.md) or the peers' raw room protocol over the
//! wire and shares no code with the server.
//!
//! `main` parses the command line, then either runs as a child worker
//! (hidden `--child-index`, driven over stdin/stdout by the parent) or as the
//! controller of a scenario: it starts the fleet of workers, runs the
//! scenario's phases, samples the server's RSS between them and writes the
//! report.

mod churn;
mod ctl;
mod engine;
mod fanout;
mod faults;
mod findmax;
mod frames;
mod idle;
mod inject;
mod lobby;
mod opts;
mod pace;
mod report;
mod rooms;
mod stats;
mod summary;
mod sys;
mod watch;
mod wire;

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;

use crate::ctl::{Cmd, Fleet, PhaseResult, Worker};
use crate::opts::{check_common, Cli, Command, Common, FanoutArgs, Proto, Scenario};
use crate::report::Report;

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let scenario = match cli.command {
        Command::Summary(a) => {
            return match summary::run(&a.dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("roomd-bench summary: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Scenario(s) => *s,
    };
    let limit = sys::raise_nofile();
    sys::tight_timer_slack();
    let common = scenario.common().clone();
    if let Some(index) = common.child_index {
        return match make_worker(&scenario, index, common.procs).and_then(ctl::child_main) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("roomd-bench child {index}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if limit < 1024 {
        eprintln!("roomd-bench: warning: only {limit} open files allowed per process");
    }
    match controller(&scenario) {
        Ok(report) => {
            report.print();
            if let Some(path) = &common.json {
                if let Err(e) = report.write_json(path) {
                    eprintln!("roomd-bench: {e}");
                    return ExitCode::FAILURE;
                }
            }
            if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                for f in &report.failed {
                    eprintln!("roomd-bench: FAILED: {f}");
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("roomd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The id shared by every process of one run (names rooms uniquely per run).
fn run_id(child: bool) -> u32 {
    if child {
        // SAFETY: getppid has no preconditions.
        (unsafe { libc::getppid() }) as u32
    } else {
        std::process::id()
    }
}

/// The worker for process `index` of `procs`.
fn make_worker(sc: &Scenario, index: usize, procs: usize) -> Result<Box<dyn Worker>, String> {
    let c = sc.common();
    let rid = run_id(c.child_index.is_some());
    Ok(match sc {
        Scenario::Fanout(a) => Box::new(fanout::FanoutWorker::new(
            fanout::Plan::new(a, index, procs, rid)?,
            c.read_buffer,
        )?),
        Scenario::Idle(a) => Box::new(idle::IdleWorker::new(a, index, procs)?),
        Scenario::Rooms(a) => Box::new(rooms::RoomsWorker::new(a, index, procs, rid)?),
        Scenario::Churn(a) => Box::new(churn::ChurnWorker::new(a, index, procs, rid)?),
        Scenario::Watch(a) => Box::new(watch::WatchWorker::new(a, index, procs, rid)?),
        Scenario::Lobby(a) => Box::new(lobby::LobbyWorker::new(a, rid)?),
        Scenario::Faults(_) => return Err("faults runs in one process".into()),
    })
}

fn fleet(sc: &Scenario) -> Result<Fleet, String> {
    let procs = sc.common().procs;
    if procs <= 1 {
        Ok(Fleet::Local(make_worker(sc, 0, 1)?))
    } else {
        // Validate the plan here so a bad flag fails once, in the parent.
        make_worker_check(sc, procs)?;
        Fleet::spawn(procs)
    }
}

fn make_worker_check(sc: &Scenario, procs: usize) -> Result<(), String> {
    match sc {
        Scenario::Fanout(a) => fanout::Plan::new(a, 0, procs, 0).map(|_| ()),
        Scenario::Watch(a) => watch::check(a),
        Scenario::Lobby(a) => lobby::check(a),
        _ => Ok(()),
    }
}

fn rss(c: &Common) -> Option<u64> {
    c.server_pid.and_then(sys::tree_rss)
}

fn base_report(sc: &Scenario) -> Report {
    let c = sc.common();
    let mut params = BTreeMap::new();
    params.insert(
        "argv".to_string(),
        std::env::args().skip(1).collect::<Vec<_>>().join(" "),
    );
    Report {
        scenario: sc.name().to_string(),
        label: c.label.clone(),
        proto: match c.proto {
            Proto::Roomd => "roomd".into(),
            Proto::Raw => "raw".into(),
        },
        url: c.url.clone(),
        procs: c.procs,
        params,
        ..Default::default()
    }
}

fn controller(sc: &Scenario) -> Result<Report, String> {
    let c = sc.common();
    let conns = match sc {
        Scenario::Fanout(a) => a.conns,
        Scenario::Idle(a) => a.conns,
        Scenario::Rooms(a) => rooms::conns_needed(a),
        Scenario::Churn(a) => a.conns,
        Scenario::Watch(a) => a.watchers + 1,
        Scenario::Lobby(a) => lobby::conns_needed(a),
        Scenario::Faults(a) => a.conns,
    };
    check_common(c, conns.div_ceil(c.procs.max(1)) + 1)?;
    if c.server_pid.is_some() && rss(c).is_none() {
        return Err(format!(
            "--server-pid {}: no such process",
            c.server_pid.unwrap_or(0)
        ));
    }
    let steal0 = sys::cpu_steal();
    let mut report = base_report(sc);
    report.load_avg_start = sys::load_avg();
    report.server_rss_before = rss(c);
    if let Scenario::Faults(a) = sc {
        // One process, with the fault injector beside the clients' loop.
        faults::control(a, &mut report)?;
        report.steal_pct = sys::steal_pct(steal0, sys::cpu_steal());
        report.load_avg_end = sys::load_avg();
        return Ok(report);
    }
    let mut fleet = fleet(sc)?;
    match sc {
        Scenario::Fanout(a) => run_fanout(a, &mut fleet, &mut report)?,
        Scenario::Idle(a) => idle::control(a, &mut fleet, &mut report)?,
        Scenario::Rooms(a) => rooms::control(a, &mut fleet, &mut report)?,
        Scenario::Churn(a) => churn::control(a, &mut fleet, &mut report)?,
        Scenario::Watch(a) => watch::control(a, &mut fleet, &mut report)?,
        Scenario::Lobby(a) => lobby::control(a, &mut fleet, &mut report)?,
        Scenario::Faults(_) => {}
    }
    let _ = fleet.phase(Cmd::Exit, "exit", true);
    report.steal_pct = sys::steal_pct(steal0, sys::cpu_steal());
    report.load_avg_end = sys::load_avg();
    Ok(report)
}

/// Runs `Setup` and says how it went; fails when no connection got ready.
pub fn setup(fleet: &mut Fleet, gen: u32, quiet: bool, want: usize) -> Result<PhaseResult, String> {
    let r = fleet.phase(Cmd::Setup { gen }, "setup", quiet)?;
    eprintln!(
        "setup: {} of {} connections ready in {:.2} s{}",
        r.stats.conns,
        want,
        r.elapsed_ns as f64 / 1e9,
        if r.stats.failed > 0 {
            format!(", {} failed", r.stats.failed)
        } else {
            String::new()
        }
    );
    if r.stats.conns == 0 {
        let why: Vec<String> = r
            .stats
            .errors
            .iter()
            .map(|(k, v)| format!("{k} ({v})"))
            .collect();
        return Err(format!("no connection got ready: {}", why.join("; ")));
    }
    Ok(r)
}

fn run_fanout(a: &FanoutArgs, fleet: &mut Fleet, report: &mut Report) -> Result<(), String> {
    let c = &a.common;
    let mut gen = 0;
    let su = setup(fleet, gen, c.quiet, a.conns)?;
    report.conns = su.stats.conns;
    report.connect_failed = su.stats.failed;
    let broken = su.broken;
    let run = |fleet: &mut Fleet, step: u32, rate: f64| {
        fleet.run_step(step, rate, (a.warmup, a.duration, a.drain), c.quiet)
    };
    if !a.find_max {
        let r = run(fleet, 0, a.rate)?;
        report.server_rss_after = rss(c);
        report.take_stats(&r.stats, a.duration);
        report.errors += su.stats.error_count();
        for (k, v) in &su.stats.errors {
            *report.error_kinds.entry(k.clone()).or_insert(0) += v;
        }
        fleet.phase(Cmd::Teardown, "teardown", true)?;
        return Ok(());
    }
    let search = findmax::Search {
        rate: a.rate,
        step_factor: a.step_factor,
        max_steps: a.max_steps,
        p99_budget_ms: a.p99_budget_ms,
        duration: a.duration,
        deliveries_per_msg: (a.room_size - 1) as f64,
    };
    let rebuild = |fleet: &mut Fleet| {
        fleet.phase(Cmd::Teardown, "teardown", true)?;
        gen += 1;
        Ok(setup(fleet, gen, c.quiet, a.conns)?.broken)
    };
    let found = findmax::search(&search, fleet, report, broken, rebuild, run)?;
    report.server_rss_after = rss(c);
    fleet.phase(Cmd::Teardown, "teardown", true)?;
    found.fill(report, a.duration);
    Ok(())
}
