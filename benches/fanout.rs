//! Fan-out of one message to 1,000 members, in-process, against real
//! loopback sockets that accept writes:
//!
//! - `queue_1000`: `Frames::new(msg)` and `Conns::fanout` to 1,000 open
//!   WebSocket connections (one encode, 1,000 copies into the connections'
//!   output buffers), as the handler does for a `pub`;
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
use roomd::conn::{Bucket, Conn, ConnId, Conns, Phase, Ws};
use roomd::protocol::{Frames, Proto, V};
use roomd::session::{Attach, Client, Session};

const MEMBERS: usize = 1_000;
const ROOM: &str = "lobby-42";
/// roomd's default `--out-buffer`.
const OUT_LIMIT: usize = 1 << 20;

/// The server's `msg` for one published message, as the handler builds it.
fn msg(data: &[u8]) -> V<'_> {
    V::Map(vec![
        ("t", V::Str("msg")),
        ("room", V::Str(ROOM)),
        ("from", V::U(123_456)),
        ("seq", V::U(987_654)),
        ("data", V::Bin(data)),
    ])
}

/// 1,000 open WebSocket connections on loopback sockets, and their client
/// ends (nonblocking, for draining).
struct Room {
    conns: Conns,
    targets: Vec<(ConnId, Proto)>,
    clients: Vec<TcpStream>,
    /// Kept so the session ids stay meaningful.
    _sessions: Arena<Session>,
}

fn room() -> Room {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback listener");
    let addr = listener.local_addr().expect("listener address");
    let mut conns = Conns::new(OUT_LIMIT);
    let mut sessions = Arena::<Session>::default();
    let mut targets = Vec::with_capacity(MEMBERS);
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
        let mut conn = Conn::new(sock, peer, 0);
        conn.phase = Phase::Ws(Ws {
            parser: None,
            proto,
            session,
            requests: Bucket::full(0, 0),
            creates: Bucket::full(0, 0),
            pub_bytes: Bucket::full(0, 0),
            bad: 0,
            echo: false,
            paused: false,
        });
        assert_eq!(conns.arena.insert(conn), cid);
        targets.push((cid, proto));
        clients.push(client);
    }
    Room {
        conns,
        targets,
        clients,
        _sessions: sessions,
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

fn fanout(c: &mut Criterion) {
    let data = vec![b'x'; 64];
    let frame = Frames::new(msg(&data)).get(Proto::Msgpack).to_vec();
    let mut r = room();
    let mut buf = vec![0u8; 64 * 1024];

    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(MEMBERS as u64));

    group.bench_function("queue_1000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let mut frames = Frames::new(msg(black_box(&data)));
                let n = r.conns.fanout(&r.targets, &mut frames);
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
                let mut frames = Frames::new(msg(black_box(&data)));
                let n = r.conns.fanout(&r.targets, &mut frames);
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
    for (id, _) in &r.targets {
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
