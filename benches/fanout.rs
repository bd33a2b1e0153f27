//! Fan-out of one message to a room of 1,000 members, in-process, through
//! the server's own fan-out (`roomd::hub::fanout::fan_out`, what `pub`
//! calls, then `roomd::worker::perform`, what the loop does with its effect),
//! against real loopback sockets that accept writes:
//!
//! - `queue_1000`: the room's targets gathered from its members' sessions
//!   (`hub::fanout::collect_targets`), the `msg` encoded once, and queued on
//!   1,000 open WebSocket connections' output buffers;
//! - `queue_write_1000`: the same, then one `write` per connection of its
//!   output to its socket, as the worker's flush does at the end of a turn.
//!
//! The message is a `msg` with 64 bytes of data, sent to MessagePack
//! connections. The client ends are drained after every iteration, outside
//! the timing, so socket buffers never fill and every write is accepted
//! whole; each drain checks that every client received exactly the frame.
//! Criterion's throughput is per delivery: time per delivery is the time
//! per iteration divided by 1,000.
//!
//! Run: `cargo bench --bench fanout`.

use std::hint::black_box;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use roomd::arena::Arena;
use roomd::conn::{Conn, Conns, Phase, Rates, Ws};
use roomd::hub::effects::Out;
use roomd::hub::fanout::{fan_out, Targets};
use roomd::hub::out;
use roomd::metrics::Metrics;
use roomd::protocol::{Frames, Proto};
use roomd::room::{Member, Room as RoomData, RoomId};
use roomd::session::{Attach, Client, Session};

const MEMBERS: usize = 1_000;
const ROOM: &str = "lobby-42";
/// roomd's default `--out-buffer`.
const OUT_LIMIT: usize = 1 << 20;

/// 1,000 open WebSocket connections on loopback sockets, and their client
/// ends (nonblocking, for draining).
struct Room {
    conns: Conns,
    rooms: Arena<RoomData>,
    rid: RoomId,
    sessions: Arena<Session>,
    targets: Targets,
    out: Out,
    metrics: Metrics,
    clients: Vec<TcpStream>,
}

fn room() -> Room {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let addr = listener.local_addr().expect("listener address");
    let mut conns = Conns::new(OUT_LIMIT);
    let mut sessions = Arena::<Session>::default();
    let mut rooms = Arena::<RoomData>::default();
    let rid = rooms.insert(RoomData::new(ROOM, 1, MEMBERS as u16, 60_000, false, false));
    let mut clients = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        // The backlog holds one pending connection at a time here, so the
        // accept never waits on more than one connect.
        let client = TcpStream::connect(addr).expect("connect to the loopback listener");
        let (server, peer) = listener.accept().expect("accept a loopback connection");
        client
            .set_nonblocking(true)
            .expect("set the client end nonblocking");
        server
            .set_nonblocking(true)
            .expect("set the server end nonblocking");
        let sock = mio::net::TcpStream::from_std(server);
        let proto = Proto::Msgpack;
        let cid = conns.arena.next_id();
        let mut session = Session::fresh(
            i as u64 + 1,
            (i as u128).to_be_bytes(),
            Attach::On(Client::Local(cid, proto)),
        );
        session.hello_done = true;
        let session = sessions.insert(session);
        if let Some(room) = rooms.get_mut(rid) {
            room.members.push(Member {
                id: i as u64 + 1,
                session,
                meta: None,
            });
        }
        let mut conn = Conn::new(sock, peer, 0);
        let rates = Rates::full(&roomd::Config::defaults(), 0);
        conn.phase = Phase::Ws(Ws::new(proto, session, rates));
        assert_eq!(conns.arena.insert(conn), cid);
        clients.push(client);
    }
    Room {
        conns,
        rooms,
        rid,
        sessions,
        targets: Targets::default(),
        out: Out::new(OUT_LIMIT),
        metrics: Metrics::default(),
        clients,
    }
}

/// Drops every connection's queued output without writing it.
fn discard(conns: &mut Conns) {
    for id in std::mem::take(&mut conns.pending) {
        if let Some(c) = conns.arena.get_mut(id) {
            c.pending = false;
            let n = c.out.len();
            c.out.consume(n);
        }
    }
}

/// Writes each pending connection's output to its socket, once, as the
/// worker's flush does; what the socket does not take stays queued.
fn flush(conns: &mut Conns) {
    for id in std::mem::take(&mut conns.pending) {
        let Some(c) = conns.arena.get_mut(id) else {
            continue;
        };
        c.pending = false;
        match c.sock.write(c.out.unsent()) {
            Ok(n) => c.out.consume(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("loopback write failed: {e}"),
        }
    }
}

/// Reads everything each client has received; every one must have exactly
/// `frame` (all writes were accepted whole, and loopback delivers at once).
fn drain(clients: &mut [TcpStream], frame: &[u8], buf: &mut [u8]) {
    for (i, client) in clients.iter_mut().enumerate() {
        let mut got = 0;
        loop {
            match client.read(buf) {
                Ok(0) => panic!("client {i}: the server end closed"),
                Ok(n) => {
                    assert!(
                        got + n <= frame.len() && buf[..n] == frame[got..got + n],
                        "client {i}: unexpected bytes"
                    );
                    got += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("client {i}: read failed: {e}"),
            }
        }
        assert_eq!(got, frame.len(), "client {i}: incomplete frame");
    }
}

/// What `pub` does past its checks: the server's fan-out of one `msg`
/// (seq and sender fixed, so every iteration's frame is the same).
fn publish(r: &mut Room, data: &[u8]) -> u64 {
    let held = fan_out(
        &r.rooms,
        &mut r.sessions,
        &mut r.out,
        &mut r.targets,
        &mut None,
        (r.rid, None, true),
        |room| out::msg(&room.name, 123_456, 987_654, data),
    );
    let before = r.metrics.deliveries;
    roomd::worker::perform(
        &mut r.conns,
        &mut r.out,
        &mut r.metrics,
        u32::MAX,
        &mut Vec::new(),
    );
    held + r.metrics.deliveries - before
}

fn fanout(c: &mut Criterion) {
    let data = vec![b'x'; 64];
    let frame = Frames::new(out::msg(ROOM, 123_456, 987_654, &data))
        .get(Proto::Msgpack)
        .to_vec();
    let mut r = room();
    let mut buf = vec![0u8; 64 * 1024];

    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(MEMBERS as u64));

    group.bench_function("queue_1000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let n = publish(&mut r, black_box(&data));
                total += t.elapsed();
                assert_eq!(n, MEMBERS as u64);
                discard(&mut r.conns);
            }
            total
        })
    });

    group.bench_function("queue_write_1000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let n = publish(&mut r, black_box(&data));
                flush(&mut r.conns);
                total += t.elapsed();
                assert_eq!(n, MEMBERS as u64);
                drain(&mut r.clients, &frame, &mut buf);
            }
            total
        })
    });
    group.finish();

    assert!(r.conns.overflow.is_empty(), "no connection overflowed");
    for (id, _) in &r.targets.local {
        let c = r
            .conns
            .arena
            .get(*id)
            .expect("every connection is still there");
        assert!(c.out.is_empty() && !c.pending && !c.overflowed);
    }
}

criterion_group!(benches, fanout);
criterion_main!(benches);
