//! The `roomd` binary: parses the command line and runs the server.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use log::{error, info};

use roomd::{worker, Config, Worker};

/// Tells systemd (when `NOTIFY_SOCKET` is set) that the service is ready.
fn notify_ready() {
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
            .and_then(|a| sock.send_to_addr(b"READY=1", &a))
    } else {
        sock.send_to(b"READY=1", &path)
    };
    if let Err(e) = res {
        error!("NOTIFY_SOCKET {path}: {e}");
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let cfg = Config::parse();
    if cfg.workers > 1 {
        eprintln!(
            "roomd: --workers {} is not supported yet; this version runs one worker",
            cfg.workers
        );
        return ExitCode::from(2);
    }
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
    println!("roomd listening on {addr}");
    let _ = std::io::stdout().flush();
    notify_ready();
    info!("w=0 serving on {addr}");
    match w.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("w=0 loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
