//! A worker that dies answers for itself: requests already forwarded to
//! it are answered `internal`, and players waiting in its queues are told
//! `match_timeout`, by the worker their connection is on.

#[macro_use]
mod common;

use common::*;

/// The process of worker `k` of `server`.
fn pid_of_worker(server: &Server, k: u32) -> i32 {
    pid_serving(server, &client_on(server, k))
}

/// Waits (at most 20 s) until process `pid` is reaped.
fn await_gone(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(std::time::Instant::now() < deadline, "{pid} still there");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a worker process of the server under test.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

/// Requests sent to a room's home while it is stopped, then killed: each
/// gets `err` `internal` with its `rid` from the client's own worker.
#[test]
fn requests_in_flight_to_a_dying_home_are_answered() {
    let server = start_workers(2, &["--grace-ms", "1000"]);
    let room = name_on("doomed", 1, 2);
    let mut a = client_on(&server, 0);
    // A seat on its own worker: the connection stays there, and its
    // requests for the other worker's room are forwarded.
    a.create(&name_on("here", 0, 2));
    a.create(&room);
    let victim = pid_of_worker(&server, 1);
    signal(victim, libc::SIGSTOP);
    let rids: Vec<u32> = (0..3).map(|_| a.rid()).collect();
    a.send(msg! {"t" => "pub", "rid" => rids[0], "room" => room.as_str(), "data" => bin(b"x")});
    a.send(msg! {"t" => "props", "rid" => rids[1], "room" => room.as_str(), "set" => msg! {"k" => bin(b"v")}});
    a.send(msg! {"t" => "join", "rid" => rids[2], "room" => room.as_str()});
    // Worker 0 answers `ping` itself, after it has sent the three on.
    a.send(msg! {"t" => "ping"});
    a.expect("pong");
    signal(victim, libc::SIGKILL);
    let mut answered = Vec::new();
    while answered.len() < 3 {
        let m = a.recv();
        if m.t() == "err" {
            assert_eq!(m["code"].s(), "internal", "{m:?}");
            answered.push(m["rid"].u() as u32);
        }
    }
    assert_eq!(answered, rids);
    assert_eq!(a.recv_type("closed")["why"].s(), "lost");
}

/// A player waiting in a queue homed on a worker that dies gets
/// `match_timeout` for it; a place elsewhere is unaffected.
#[test]
fn a_queue_lost_with_its_worker_tells_its_players() {
    let server = start_workers(2, &[]);
    let far = name_on("far-q", 1, 2);
    let near = name_on("near-q", 0, 2);
    let mut a = client_on(&server, 0);
    // The near place first: the connection stays on worker 0, and its
    // place in the far queue is held by the queue's home.
    for q in [&near, &far] {
        let rid = a.rid();
        a.send(msg! {"t" => "match", "rid" => rid, "queue" => q.as_str(), "size" => 2u16, "wait_ms" => 60_000u32});
        assert_eq!(a.expect("queued")["queue"].s(), q);
    }
    signal(pid_of_worker(&server, 1), libc::SIGKILL);
    let t = a.expect("match_timeout");
    assert_eq!(t["queue"].s(), far);
    // The near place is still held: a second match there is `exists`.
    a.send(msg! {"t" => "match", "rid" => 9u32, "queue" => near.as_str(), "size" => 2u16});
    a.expect_err_rid("exists", 9);
}

const KEY: &str = "admin-secret";

/// A stopped worker stalls no question asked of every worker: `list`,
/// `GET /rooms` and `/metrics/all` through the live worker answer within
/// `--peer-timeout-ms`, naming the worker that did not answer.
#[test]
fn a_stopped_worker_does_not_stall_questions_to_every_worker() {
    let server = start_workers(2, &["--peer-timeout-ms", "300", "--admin-key", KEY]);
    let here = name_on("here", 0, 2);
    let mut a = client_on(&server, 0);
    a.create(&here);
    let live = pid_serving(&server, &a);
    // HTTP connections on the live worker, opened before the other stops.
    let mut http: Vec<HttpConn> = Vec::new();
    for _ in 0..ATTEMPTS {
        let c = server.http_conn();
        let port = c.stream.local_addr().expect("local addr").port();
        if pid_serving_port(&server, port) == live {
            http.push(c);
            if http.len() == 2 {
                break;
            }
        }
    }
    assert_eq!(http.len(), 2, "two HTTP connections on worker 0");
    let victim = pid_of_worker(&server, 1);
    signal(victim, libc::SIGSTOP);
    struct Cont(i32);
    impl Drop for Cont {
        fn drop(&mut self) {
            signal(self.0, libc::SIGCONT);
        }
    }
    let _cont = Cont(victim);

    a.send(msg! {"t" => "list", "rid" => 1u32});
    let r = a.expect("rooms");
    assert_eq!(r["rooms"].arr().len(), 1, "{r:?}");
    assert_eq!(r["rooms"][0]["room"].s(), here);
    assert_eq!(
        r["missing"].arr().iter().map(|w| w.u()).collect::<Vec<_>>(),
        vec![1]
    );

    let mut rooms = http.pop().expect("a connection");
    rooms.send(
        format!("GET /rooms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n").as_bytes(),
    );
    let resp = rooms.response().expect("GET /rooms answered");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v: serde_json::Value = serde_json::from_slice(&resp.body).expect("JSON");
    assert_eq!(v["missing"], serde_json::json!([1]), "{v}");
    assert_eq!(v["rooms"][0]["room"], here.as_str());

    let mut metrics = http.pop().expect("a connection");
    metrics.send(b"GET /metrics/all HTTP/1.1\r\nHost: x\r\n\r\n");
    let resp = metrics.response().expect("/metrics/all answered");
    assert_eq!(resp.status, 200);
    let text = resp.text();
    assert!(text.contains("# roomd: worker 1 did not answer"), "{text}");
    assert!(text.contains("roomd_rooms{worker=\"0\"} 1"), "{text}");
}

/// A place in a queue homed on another worker leaves nothing behind on
/// that worker: not after `match_timeout`, not after the connection ends
/// (a clean close or a drop), and no ghost is matched afterwards.
#[test]
fn far_queue_places_leave_no_shadow_behind() {
    let server = start_workers(2, &["--grace-ms", "200"]);
    let far = name_on("far-leak", 1, 2);
    let shadows = "roomd_bus_shadow_sessions{worker=\"1\"}";
    let enqueue = |c: &mut Client, wait_ms: u32| {
        let rid = c.rid();
        c.send(msg! {"t" => "match", "rid" => rid, "queue" => far.as_str(), "size" => 2u16, "wait_ms" => wait_ms});
        assert_eq!(c.expect("queued")["queue"].s(), far);
    };
    let mut a = client_on(&server, 0);
    enqueue(&mut a, 50);
    assert_eq!(a.expect("match_timeout")["queue"].s(), far);
    server.await_metric("/metrics/all", shadows, |n| n == 0);

    enqueue(&mut a, 60_000);
    a.close(1000);
    server.await_metric("/metrics/all", shadows, |n| n == 0);
    let mut b = client_on(&server, 0);
    enqueue(&mut b, 60_000);
    b.drop_tcp();
    server.await_metric("/metrics/all", shadows, |n| n == 0);

    // The next player waits alone: nobody gone is matched with it.
    let mut c = client_on(&server, 1);
    enqueue(&mut c, 300);
    assert_eq!(c.expect("match_timeout")["queue"].s(), far);
}

/// A worker that stops answering (SIGSTOP) is killed and restarted after
/// `--hung-ms`, and the restart shows in `/metrics/all`, as does one of a
/// worker that died.
#[test]
fn a_hung_worker_is_killed_restarted_and_counted() {
    let server = start_workers(2, &["--hung-ms", "1500"]);
    let hung = "roomd_worker_restarts_total{worker=\"1\",reason=\"hung\"}";
    let died = "roomd_worker_restarts_total{worker=\"1\",reason=\"died\"}";
    assert_eq!(server.metric("/metrics/all", hung), 0);
    let victim = pid_of_worker(&server, 1);
    signal(victim, libc::SIGSTOP);
    // Until it is gone, connections the kernel hands to its listener wait.
    await_gone(victim);
    server.await_metric("/metrics/all", hung, |n| n == 1);
    let second = pid_of_worker(&server, 1);
    assert_ne!(second, victim, "a new process serves as worker 1");
    assert_eq!(server.metric("/metrics/all", died), 0);
    signal(second, libc::SIGKILL);
    await_gone(second);
    server.await_metric("/metrics/all", died, |n| n == 1);
    assert_eq!(server.metric("/metrics/all", hung), 1, "kept across lives");
}
