//! `--workers N`: a supervisor process runs N workers on one port, says
//! READY (and WATCHDOG) to systemd, restarts a killed worker while the port
//! keeps serving, and drains every worker on SIGTERM.
//!
//! Workers are found as the supervisor's children
//! (`/proc/<pid>/task/<pid>/children`), and the worker serving a connection
//! by the socket inode in `/proc/net/tcp` and the workers' fd tables.

#[macro_use]
mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The children of `pid`, i.e. the supervisor's workers.
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Waits until `pid` has exactly `n` children and returns them.
#[track_caller]
fn wait_children(pid: i32, n: usize) -> Vec<i32> {
    let mut kids = Vec::new();
    let ok = eventually(Duration::from_secs(5), || {
        kids = children(pid);
        kids.len() == n
    });
    assert!(ok, "expected {n} workers, have {kids:?}");
    kids
}

/// The worker (among `workers`) holding the server side of the connection
/// whose client end is bound to `client`.
fn worker_of(server: SocketAddr, client: SocketAddr, workers: &[i32]) -> Option<i32> {
    let hex_port = |p: u16| format!("{p:04X}");
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = tcp.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let local_port = f.get(1)?.rsplit(':').next()?;
        let remote_port = f.get(2)?.rsplit(':').next()?;
        // Established only: a TIME_WAIT entry of an earlier connection with
        // the same ports (a busy machine reuses them) has no socket.
        let established = f.get(3) == Some(&"01");
        (established
            && local_port == hex_port(server.port())
            && remote_port == hex_port(client.port()))
        .then(|| f.get(9).map(|s| format!("socket:[{s}]")))
        .flatten()
    })?;
    workers.iter().copied().find(|w| {
        std::fs::read_dir(format!("/proc/{w}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == inode))
    })
}

/// Connects clients until every worker serves at least one; returns the
/// clients with their worker's pid.
fn clients_on_every_worker(server: &Server, workers: &[i32]) -> Vec<(Client, i32)> {
    let mut out: Vec<(Client, i32)> = Vec::new();
    for _ in 0..200 {
        let c = server.client();
        let local = c.ws.get_ref().local_addr().expect("local addr");
        let w = worker_of(server.addr, local, workers)
            .unwrap_or_else(|| panic!("no worker among {workers:?} holds {local}"));
        out.push((c, w));
        if workers.iter().all(|w| out.iter().any(|(_, cw)| cw == w)) {
            return out;
        }
    }
    panic!("200 connections did not reach every worker of {workers:?}");
}

/// `GET /healthz` on a fresh connection: Ok(true) for 200, Err when the
/// connect itself fails (nothing listening).
fn healthz(addr: SocketAddr) -> std::io::Result<bool> {
    let mut s = TcpStream::connect(addr)?;
    let answered = (|| {
        s.set_read_timeout(Some(WATCHDOG))?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: roomd\r\nConnection: close\r\n\r\n")?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        Ok::<_, std::io::Error>(resp.starts_with(b"HTTP/1.1 200"))
    })();
    Ok(answered.unwrap_or(false))
}

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`.
struct Notify {
    sock: UnixDatagram,
    path: Option<PathBuf>,
    /// The value for `NOTIFY_SOCKET`.
    name: String,
}

impl Notify {
    fn new() -> Notify {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "roomd-notify-{}-{}.sock",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        let name = path.to_string_lossy().into_owned();
        Notify {
            sock,
            path: Some(path),
            name,
        }
    }

    /// An abstract socket, `@name` in `NOTIFY_SOCKET`.
    fn abstract_name() -> Notify {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("roomd-notify-{}-{:?}", std::process::id(), Instant::now());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract name");
        let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract notify socket");
        Notify {
            sock,
            path: None,
            name: format!("@{name}"),
        }
    }

    /// The next datagram within `within`.
    fn recv(&self, within: Duration) -> Option<String> {
        self.sock
            .set_read_timeout(Some(within.max(Duration::from_millis(1))))
            .expect("timeout");
        let mut buf = [0u8; 512];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Datagrams until one satisfies `pred` (returned with all before it).
    #[track_caller]
    fn until(&self, within: Duration, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        while let Some(d) = self.recv(deadline.saturating_duration_since(Instant::now())) {
            let done = pred(&d);
            got.push(d);
            if done {
                return got;
            }
        }
        panic!("no matching notification within {within:?}; got {got:?}");
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `roomd` started with extra environment (what `Server` has no way to
/// give): killed on drop, printing its stderr if the test failed.
struct Proc {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Proc {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roomd"));
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ROOMD_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("spawn roomd");
        let stdout = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        {
            let stderr = stderr.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = err.read(&mut buf) {
                    stderr.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut p = Proc {
            child,
            addr: "0.0.0.0:0".parse().expect("addr"),
            stderr,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the listening line");
        p.addr = line
            .strip_prefix("roomd listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected stdout line {line:?}"));
        p
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) of our own child.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let mut code = None;
        eventually(within, || match self.child.try_wait() {
            Ok(Some(s)) => {
                code = Some(s.code().unwrap_or(-1));
                true
            }
            _ => false,
        });
        code
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let log = self.stderr.lock().unwrap();
            eprintln!("---- roomd stderr ----\n{}", String::from_utf8_lossy(&log));
        }
    }
}

fn serves_on_every_worker(n: usize) {
    let server = Server::start(&["--workers", &n.to_string()]);
    let workers = wait_children(server.pid(), n);
    let clients = clients_on_every_worker(&server, &workers);
    for (mut c, _) in clients {
        c.roundtrip();
    }
    for _ in 0..10 {
        let r = server.get("/healthz");
        assert_eq!((r.status, r.text().trim().to_string()), (200, "ok".into()));
    }
    assert_eq!(
        server.stdout_lines(),
        vec![format!("roomd listening on {}", server.addr)],
        "the listening line, once"
    );
}

#[test]
fn two_workers_serve_one_port() {
    serves_on_every_worker(2);
}

#[test]
fn three_workers_serve_one_port() {
    serves_on_every_worker(3);
}

#[test]
fn notify_ready_then_stopping_and_exit_0() {
    let notify = Notify::new();
    let mut p = Proc::start(&["--workers", "2"], &[("NOTIFY_SOCKET", &notify.name)]);
    let got = notify.until(WATCHDOG, |d| d.lines().any(|l| l == "READY=1"));
    let ready = got.last().expect("READY");
    assert!(
        ready.lines().any(|l| l == format!("MAINPID={}", p.pid())),
        "READY names the supervisor as the main pid: {ready:?}"
    );
    assert_eq!(got.len(), 1, "nothing before READY: {got:?}");
    assert_eq!(children(p.pid()).len(), 2);
    assert!(healthz(p.addr).expect("connect"), "serving once READY");

    p.signal(libc::SIGTERM);
    let got = notify.until(WATCHDOG, |d| d == "STOPPING=1");
    assert_eq!(got, vec!["STOPPING=1"], "no second READY from a worker");
    assert_eq!(p.wait_exit(WATCHDOG), Some(0));
}

#[test]
fn one_worker_notifies_ready_too() {
    let notify = Notify::abstract_name();
    let mut p = Proc::start(&["--workers", "1"], &[("NOTIFY_SOCKET", &notify.name)]);
    notify.until(WATCHDOG, |d| d.lines().any(|l| l == "READY=1"));
    assert!(
        children(p.pid()).is_empty(),
        "no supervisor with one worker"
    );
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_exit(WATCHDOG), Some(0));
}

#[test]
fn watchdog_pings_every_half_interval() {
    let notify = Notify::new();
    let p = Proc::start(
        &["--workers", "2"],
        &[("NOTIFY_SOCKET", &notify.name), ("WATCHDOG_USEC", "200000")],
    );
    notify.until(WATCHDOG, |d| d.starts_with("READY=1"));
    let start = Instant::now();
    for _ in 0..5 {
        notify.until(Duration::from_secs(1), |d| d == "WATCHDOG=1");
    }
    // Five pings 100 ms apart: about 500 ms, surely not 2 s.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    drop(p);

    // WATCHDOG_PID naming another process: not ours to answer.
    let notify = Notify::new();
    let _p = Proc::start(
        &["--workers", "2"],
        &[
            ("NOTIFY_SOCKET", &notify.name),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    notify.until(WATCHDOG, |d| d.starts_with("READY=1"));
    assert_eq!(notify.recv(Duration::from_millis(400)), None);
}

#[test]
fn a_killed_worker_is_restarted_while_the_port_serves() {
    let server = Server::start(&["--workers", "2"]);
    let workers = wait_children(server.pid(), 2);
    let clients = clients_on_every_worker(&server, &workers);
    let victim = workers[0];
    let (mut survivor, _) = clients
        .into_iter()
        .find(|(_, w)| *w != victim)
        .expect("a client on the other worker");

    // Connect over and over for the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (stop, addr) = (stop.clone(), server.addr);
        thread::spawn(move || {
            let (mut ok, mut failed, mut refused) = (0, 0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match healthz(addr) {
                    Ok(true) => ok += 1,
                    Ok(false) => failed += 1,
                    Err(e) => refused.push(e.to_string()),
                }
                // A bounded load: about a thousand probes a second. Unpaced,
                // it spent the loopback's ephemeral ports (tens of
                // thousands of TIME_WAIT sockets per run) and starved the
                // tests running beside it.
                thread::sleep(Duration::from_millis(1));
            }
            (ok, failed, refused)
        })
    };

    // SAFETY: kill(2) of a pid we just read from /proc.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let mut now = Vec::new();
    let restarted = eventually(Duration::from_secs(5), || {
        now = children(server.pid());
        now.len() == 2 && !now.contains(&victim)
    });
    assert!(restarted, "no new worker: children {now:?}");
    let fresh = *now.iter().find(|w| !workers.contains(w)).expect("new pid");

    // The survivor's connection never noticed.
    survivor.send(msg! {"t" => "ping", "rid" => 5u32});
    assert_eq!(survivor.expect("pong")["rid"].u(), 5);
    // The new worker accepts on the shared port.
    let on_fresh = clients_on_every_worker(&server, &now);
    assert!(on_fresh.iter().any(|(_, w)| *w == fresh));

    stop.store(true, Ordering::Relaxed);
    let (ok, failed, refused) = prober.join().expect("prober");
    // A connection the kernel had queued on the killed worker's listener
    // is reset with it (SO_REUSEPORT), unless the kernel hands it to
    // another worker's (net.ipv4.tcp_migrate_req = 1).
    let migrate = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req")
        .is_ok_and(|v| v.trim() == "1");
    if migrate {
        assert!(refused.is_empty(), "connects refused: {refused:?}");
    } else {
        assert!(
            refused.len() <= 2 && refused.iter().all(|e| e.contains("reset")),
            "connects refused: {refused:?}"
        );
    }
    // At most the one request in flight on the killed worker is lost.
    assert!(failed <= 1, "{failed} requests failed ({ok} answered)");
    assert!(ok >= 20, "only {ok} requests answered");
    assert_eq!(server.stdout_lines().len(), 1, "one listening line only");
}

#[test]
fn sigterm_drains_every_worker_and_exits_0() {
    let mut server = Server::start(&["--workers", "2", "--drain-ms", "3000"]);
    let workers = wait_children(server.pid(), 2);
    let mut clients = clients_on_every_worker(&server, &workers);
    server.signal(libc::SIGTERM);
    for (c, w) in &mut clients {
        let before = c.expect_close(1001);
        let closing: Vec<_> = before.iter().filter(|m| m.t() == "closing").collect();
        assert_eq!(
            closing.len(),
            1,
            "worker {w}: one closing first: {before:?}"
        );
    }
    drop(clients);
    let status = server
        .wait_exit(Duration::from_secs(4))
        .expect("exits once the workers drained");
    assert_eq!(status.code(), Some(0), "{status:?}");
}
