//! The `roomd` binary: parses the command line and runs one of three things:
//! a worker started by a supervisor (`ROOMD_WORKER_SETUP` set), a single
//! in-process worker (`--workers 1`), or the supervisor of N workers.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use log::{error, info};

use roomd::ipc::{self, WorkerSetup};
use roomd::supervisor::{self, notify};
use roomd::{worker, Config, Worker};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    // Before anything else: it removes the variable from the environment.
    let setup = ipc::setup_from_env();
    let cfg = Config::parse();
    match setup {
        Some(Ok(setup)) => {
            let id = setup.id;
            match worker_main(cfg, setup) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("w={id} failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(Err(e)) => {
            eprintln!("roomd: bad {}: {e}", ipc::SETUP_ENV);
            ExitCode::FAILURE
        }
        None if cfg.worker_count() == 1 => single(cfg),
        None => supervisor::run(cfg),
    }
}

/// A worker under the supervisor: serves on the listener it inherited. It
/// prints nothing on stdout and does not talk to systemd (the supervisor
/// does both).
fn worker_main(cfg: Config, setup: WorkerSetup) -> io::Result<()> {
    let mut w = Worker::new(cfg, setup.id, setup.listener)?;
    w.handle_signals()?;
    info!("w={} (inc {}) serving", setup.id, setup.incarnation);
    // Registers the control channel and the bus links, then says Ready.
    let lives = (setup.incarnation, setup.restarts);
    w.attach_cluster(setup.workers, lives, setup.control, setup.peers)?;
    w.run()
}

/// `--workers 1`: one worker in this process, no supervisor.
fn single(cfg: Config) -> ExitCode {
    let listener = match worker::bind(cfg.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("roomd: cannot listen on {}: {e}", cfg.listen);
            return ExitCode::FAILURE;
        }
    };
    let mut w = match Worker::new(cfg, 0, listener) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("roomd: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = w.handle_signals() {
        eprintln!("roomd: cannot handle signals: {e}");
        return ExitCode::FAILURE;
    }
    let addr = w.local_addr();
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "roomd listening on {addr}").and_then(|()| out.flush());
    drop(out);
    notify("READY=1");
    info!("w=0 serving on {addr}");
    match w.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("w=0 loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
