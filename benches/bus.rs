//! The bus between workers, per message, both ends:
//!
//! - `codec`: one `FANOUT` (a 100-byte frame for 5 sessions, what a room of
//!   10 with half its members on the other worker sends per `pub`) appended
//!   to a link's output buffer, then split off the input and decoded, with
//!   no system call;
//! - `socketpair_1`: the same through a real Unix stream socket pair, one
//!   `write` and one `read` per message (a turn that carries one message);
//! - `socketpair_64`: 64 messages coalesced into one `write` and read back
//!   (a busy turn).
//!
//! Criterion's throughput is per bus message.
//!
//! Run: `cargo bench --bench bus`.

use std::hint::black_box;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use roomd::bus::{self, Link, ReadEnd};
use roomd::hub::bus_msg::{BusMsg, Groups};

const FRAME: usize = 100;
const IDS: [u64; 5] = [11, 12, 13, 14, 15];

/// Appends one FANOUT as `Bus::fanout` does.
fn encode(out: &mut Vec<u8>, frame: &[u8]) {
    BusMsg::Fanout(Groups::Out(&[(frame, &IDS)])).encode(out);
}

/// Splits and decodes every message in `buf` as the receiving worker does;
/// returns how many there were and the sum of their ids (so nothing is
/// optimized away).
fn decode_all(buf: &[u8]) -> (usize, u64) {
    let (mut pos, mut n, mut sum) = (0, 0, 0);
    while let Ok(Some((m, used))) = bus::split(&buf[pos..]) {
        let Ok(BusMsg::Fanout(groups)) = BusMsg::decode(m) else {
            panic!("not a fanout");
        };
        for (frame, ids) in groups.iter() {
            assert_eq!(frame.len(), FRAME);
            sum += ids.iter().sum::<u64>();
        }
        pos += used;
        n += 1;
    }
    assert_eq!(pos, buf.len(), "only whole messages");
    (n, sum)
}

fn pair() -> (Link, Link) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("nonblocking");
    b.set_nonblocking(true).expect("nonblocking");
    (
        Link::new(mio::net::UnixStream::from_std(a)),
        Link::new(mio::net::UnixStream::from_std(b)),
    )
}

/// `batch` messages written as one and read back; returns the time taken.
fn through(tx: &mut Link, rx: &mut Link, chunk: &mut [u8], frame: &[u8], batch: usize) -> Duration {
    let t = Instant::now();
    for _ in 0..batch {
        encode(tx.out.tail(), frame);
    }
    let (_, ok) = tx.flush();
    assert!(ok && tx.out.is_empty(), "the socket takes the whole batch");
    let mut got = 0;
    while got < batch {
        let (end, _) = rx.read(chunk);
        assert!(!matches!(end, ReadEnd::Gone), "the link is up");
        let (n, sum) = decode_all(&rx.inbuf);
        black_box(sum);
        got += n;
        rx.inbuf.clear();
    }
    let d = t.elapsed();
    assert_eq!(got, batch);
    d
}

fn bus_bench(c: &mut Criterion) {
    let frame = vec![b'x'; FRAME];
    let mut group = c.benchmark_group("bus");

    group.throughput(Throughput::Elements(1));
    let mut buf = Vec::new();
    group.bench_function("codec", |b| {
        b.iter(|| {
            buf.clear();
            encode(&mut buf, black_box(&frame));
            black_box(decode_all(&buf))
        })
    });

    let (mut tx, mut rx) = pair();
    let mut chunk = vec![0u8; 64 * 1024];
    for batch in [1usize, 64] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("socketpair_{batch}"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| through(&mut tx, &mut rx, &mut chunk, &frame, batch))
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bus_bench);
criterion_main!(benches);
