//! Several workers (`--workers N`): a supervisor with N worker processes on
//! one port, wired by the bus. Through the real processes: one gapless
//! `seq` order for every member of a room while publishers on several
//! workers race, `/metrics/all` merged from every worker, and a worker
//! killed (its rooms `lost`, its clients through the grace period) and
//! restarted. Rooms across workers as the core sees them (forwarding,
//! presence, props and state, unicast, `list` merging, picked names, idle
//! closing, the seat limit, matchmaking, a lost peer) are unit tested in
//! `src/hub/tests/cluster.rs`.

#[macro_use]
mod common;

use common::*;
use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

#[track_caller]
fn expect_presence(c: &mut Client, room: &str, kind: &str, id: u64) -> Value {
    let p = c.expect("presence");
    assert_eq!(p["room"].s(), room, "client {}: {p:?}", c.id);
    let got = if kind == "join" {
        p["join"]["id"].u()
    } else {
        p[kind].u()
    };
    assert_eq!(got, id, "client {}: presence {kind} of {id}: {p:?}", c.id);
    p
}

// ---------------------------------------------------------------------------
// Ordering

const PER_PUBLISHER: usize = 100;

/// Every client of `clients` is in `room`; the clients at `publishers`
/// publish PER_PUBLISHER messages each (with echo), all at once, while every
/// client reads. Checks one gapless order for all, each publisher's messages
/// in its send order, and nothing more.
fn publish_round(clients: Vec<Client>, room: &str, publishers: &[usize]) -> Vec<Client> {
    let total = PER_PUBLISHER * publishers.len();
    let ids: Vec<u64> = clients.iter().map(|c| c.id).collect();
    let go = Arc::new(Barrier::new(publishers.len()));
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let p = publishers.iter().position(|&x| x == i);
            let go = go.clone();
            let room = room.to_string();
            thread::spawn(move || {
                if let Some(p) = p {
                    go.wait();
                    for j in 0..PER_PUBLISHER {
                        c.send(msg! {
                            "t" => "pub", "room" => room.as_str(),
                            "data" => bin(format!("p{p}-{j:03}")), "echo" => true,
                        });
                    }
                }
                let mut got = Vec::with_capacity(total);
                while got.len() < total {
                    let m = c.recv();
                    match m.t() {
                        "msg" => {
                            assert_eq!(m["room"].s(), room, "client {}: {m:?}", c.id);
                            got.push((m["seq"].u(), m["from"].u(), m["data"].b().to_vec()));
                        }
                        // Late joins of the setup.
                        "presence" => {}
                        _ => panic!("client {}: unexpected {m:?}", c.id),
                    }
                }
                // Exactly once: nothing after the last one.
                c.expect_silence(SILENCE);
                (c, got)
            })
        })
        .collect();
    let mut clients = Vec::new();
    let mut seen = Vec::new();
    for h in handles {
        let (c, got) = h.join().expect("a client thread panicked (see above)");
        clients.push(c);
        seen.push(got);
    }

    let first = &seen[0];
    let seqs: Vec<u64> = first.iter().map(|m| m.0).collect();
    let want: Vec<u64> = (1..=total as u64).collect();
    assert_eq!(seqs, want, "client {}: seq 1..={total} with no gap", ids[0]);
    for (i, got) in seen.iter().enumerate().skip(1) {
        if let Some(at) = (0..total).find(|&j| got[j] != first[j]) {
            panic!(
                "room {room}: client {} (#{i}) differs from client {} at #{at}: {:?} vs {:?}",
                ids[i], ids[0], got[at], first[at]
            );
        }
    }
    for (p, &at) in publishers.iter().enumerate() {
        let mine: Vec<String> = first
            .iter()
            .filter(|m| m.1 == ids[at])
            .map(|m| String::from_utf8_lossy(&m.2).into_owned())
            .collect();
        let sent: Vec<String> = (0..PER_PUBLISHER).map(|j| format!("p{p}-{j:03}")).collect();
        assert_eq!(mine, sent, "publisher {p} ({}) in its send order", ids[at]);
    }
    let from: BTreeSet<u64> = first.iter().map(|m| m.1).collect();
    let pubs: BTreeSet<u64> = publishers.iter().map(|&i| ids[i]).collect();
    assert_eq!(from, pubs, "every msg is from a publisher");
    clients
}

/// 12 clients spread evenly over `n` workers, one room homed on each worker
/// in turn (created from the next worker), three publishers on different
/// workers (worker 0 twice when n is 2).
fn ordering(n: u32) {
    let server = start_workers(n, &[]);
    let per = 12usize.div_ceil(n as usize);
    let mut clients: Vec<Client> = spread(&server, n, per).into_iter().flatten().collect();
    // clients[w * per + i] is the i-th client on worker w.
    let publishers: Vec<usize> = (0..3)
        .map(|p| (p % n as usize) * per + p / n as usize)
        .collect();
    for k in 0..n {
        let room = name_on(&format!("room-order{k}"), k, n);
        let creator = ((k + 1) % n) as usize * per;
        clients[creator].create(&room);
        for (i, c) in clients.iter_mut().enumerate() {
            if i != creator {
                let joined = c.join(&room);
                assert_eq!(joined["seq"].u(), 0, "{joined:?}");
            }
        }
        clients = publish_round(clients, &room, &publishers);
    }
}

#[test]
fn one_order_for_everyone_with_two_workers() {
    ordering(2);
}

#[test]
fn one_order_for_everyone_with_three_workers() {
    ordering(3);
}

// ---------------------------------------------------------------------------
// Metrics

/// The value of the sample `name{worker="w"}` in a Prometheus text body.
fn sample(body: &str, name: &str, w: u32) -> Option<u64> {
    let key = format!("{name}{{worker=\"{w}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn metrics_all_merges_every_workers_figures() {
    // b's connection stays on worker 1, so each worker delivers.
    let server = start_workers(2, &["--no-moves"]);
    let room = name_on("metered", 0, 2);
    let mut a = client_on(&server, 0);
    let mut b = client_on(&server, 1);
    a.create(&room);
    b.join(&room);
    expect_presence(&mut a, &room, "join", b.id);
    // Both numbered on the home (worker 0); each worker counts the
    // deliveries to its own connections.
    a.publish(&room, b"to b");
    assert_eq!(b.expect("msg")["data"].b(), b"to b");
    b.publish(&room, b"to a");
    assert_eq!(a.expect("msg")["data"].b(), b"to a");

    // Whichever worker answers, every worker's series is there, under one
    // header per family.
    for _ in 0..4 {
        let resp = server.get("/metrics/all");
        assert_eq!(resp.status, 200, "{resp:?}");
        let body = resp.text();
        assert_eq!(sample(&body, "roomd_published_total", 0), Some(2), "{body}");
        assert_eq!(sample(&body, "roomd_published_total", 1), Some(0), "{body}");
        assert_eq!(
            sample(&body, "roomd_deliveries_total", 0),
            Some(1),
            "{body}"
        );
        assert_eq!(
            sample(&body, "roomd_deliveries_total", 1),
            Some(1),
            "{body}"
        );
        for family in ["roomd_published_total", "roomd_loop_turn_seconds"] {
            assert_eq!(
                body.matches(&format!("# TYPE {family} ")).count(),
                1,
                "one TYPE line for {family}:\n{body}"
            );
        }
        // /metrics alone is the answering worker's own.
        let own = server.get("/metrics").text();
        let workers = (0..2)
            .filter(|&w| sample(&own, "roomd_published_total", w).is_some())
            .count();
        assert_eq!(workers, 1, "/metrics is one worker's:\n{own}");
    }
}

// ---------------------------------------------------------------------------
// Losing a worker

#[test]
fn worker_loss_closes_its_rooms_and_its_clients_go_through_grace() {
    // Connections stay where they landed, with seats on both workers.
    let mut server = start_workers(
        2,
        &["--grace-ms", "300", "--create-rate", "0", "--no-moves"],
    );
    let r0 = name_on("room", 0, 2);
    let r1 = name_on("room", 1, 2);
    let mut a = client_on(&server, 0);
    let mut d = client_on(&server, 0);
    let mut b = client_on(&server, 1);
    a.create(&r0);
    b.join(&r0);
    expect_presence(&mut a, &r0, "join", b.id);
    d.join(&r0);
    expect_presence(&mut a, &r0, "join", d.id);
    expect_presence(&mut b, &r0, "join", d.id);
    b.create(&r1);
    a.join(&r1);
    expect_presence(&mut b, &r1, "join", a.id);
    assert_eq!(a.publish(&r1, b"before"), 1);
    assert_eq!(b.expect("msg")["data"].b(), b"before");

    let pids = worker_pids(&server);
    assert_eq!(pids.len(), 2, "two worker processes: {pids:?}");
    let victim = pid_serving(&server, &b);
    assert_ne!(
        pid_serving(&server, &a),
        victim,
        "clients on workers 0 and 1 are served by different processes"
    );
    // SAFETY: kill(2) on a worker process we started (through the supervisor).
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let killed = Instant::now();

    // b's connection is gone with its worker.
    assert!(
        socket_closed_within(b.ws.get_mut(), WATCHDOG),
        "b's connection ends when its worker dies"
    );

    // a: r1 (homed on the dead worker) is lost; in r0 b is away, then gone.
    let (mut closed, mut away, mut leave) = (false, false, None);
    while !closed || leave.is_none() {
        let m = a.recv();
        let room = m["room"].s().to_string();
        match m.t() {
            "closed" if room == r1 => {
                assert_eq!(m["why"].s(), "lost", "{m:?}");
                assert!(!closed, "closed twice: {m:?}");
                closed = true;
            }
            "presence" if room == r0 && m.has("away") => {
                assert_eq!(m["away"].u(), b.id, "{m:?}");
                assert!(!away, "away twice: {m:?}");
                away = true;
            }
            "presence" if room == r0 && m.has("leave") => {
                assert_eq!(m["leave"].u(), b.id, "{m:?}");
                assert_eq!(m["why"].s(), "disconnect", "{m:?}");
                assert!(away, "away comes before leave: {m:?}");
                leave = Some(killed.elapsed());
            }
            _ => panic!("a: unexpected {m:?} after the kill"),
        }
    }
    let after = leave.unwrap();
    assert!(
        after >= Duration::from_millis(250),
        "leave after the grace period, not {after:?}"
    );
    expect_presence(&mut d, &r0, "away", b.id);
    let p = expect_presence(&mut d, &r0, "leave", b.id);
    assert_eq!(p["why"].s(), "disconnect");

    // r0, homed on the survivor, keeps working.
    assert_eq!(a.publish(&r0, b"still here"), 1);
    let m = d.expect("msg");
    assert_eq!(m["seq"].u(), 1);
    assert_eq!(m["data"].b(), b"still here");
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "the supervisor survives a worker's death"
    );

    // The worker comes back: a new connection lands on worker 1.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut e = loop {
        let c = server.client();
        if worker_of(&c) == 1 {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "worker 1 not back 5 s after the kill"
        );
        thread::sleep(Duration::from_millis(10));
    };
    let pids = worker_pids(&server);
    assert_eq!(pids.len(), 2, "two workers again: {pids:?}");
    assert!(!pids.contains(&victim), "a new process: {pids:?}");

    // The lost room's name is free once its home is back.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rid = a.rid();
        a.send(msg! {"t" => "create", "rid" => rid, "room" => r1.as_str()});
        let m = a.recv();
        match m.t() {
            "created" => break,
            "err" if m["code"].s() == "internal" && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(50));
            }
            _ => panic!("create {r1} after the restart: {m:?}"),
        }
    }
    let joined = a.expect("joined");
    assert_eq!(member_ids(&joined), vec![a.id], "a new room: {joined:?}");
    assert_eq!(joined["seq"].u(), 0, "a new room: {joined:?}");

    // Both rooms work with the new worker, in both directions.
    assert_eq!(member_ids(&e.join(&r1)), vec![a.id, e.id]);
    expect_presence(&mut a, &r1, "join", e.id);
    assert_eq!(member_ids(&e.join(&r0)), vec![a.id, d.id, e.id]);
    expect_presence(&mut a, &r0, "join", e.id);
    expect_presence(&mut d, &r0, "join", e.id);
    assert_eq!(e.publish(&r1, b"back"), 1);
    assert_eq!(a.expect("msg")["data"].b(), b"back");
    assert_eq!(e.publish(&r0, b"hello"), 2);
    assert_eq!(a.expect("msg")["seq"].u(), 2);
    assert_eq!(d.expect("msg")["data"].b(), b"hello");
}
