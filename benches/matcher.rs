//! Matchmaker micro-benches with 100,000 players waiting in one pool (queue
//! "ranked", groups of 2), ratings 10 points apart, windows starting at 4
//! points and widening 2 points a second, so nobody pairs before 3 s:
//!
//! - `enqueue_pass_leave`: one more player enters (no group for it), a pass
//!   runs, it leaves: the cost of a `match` that waits, and of `unmatch`;
//! - `enqueue_pair`: two players enter and pair at once: a `match` that
//!   forms a group (the pool stays at 100,000);
//! - `pass_idle`: a pass with nothing due, as on a timer tick;
//! - `sweep`: the clock jumps to 3 s, when every window covers a neighbour,
//!   and one pass forms 43,169 pairs (the other 13,662 players find both
//!   neighbours taken and the next ones out of reach);
//! - `fill`: 100,000 players enter an empty pool.
//!
//! The first three also run with 1,000 waiting, for comparison.
//!
//! Run: `cargo bench --bench matcher`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use roomd::matcher::{Event, Matcher, Rules};

const PLAYERS: u32 = 100_000;
const RULES: Rules = Rules {
    window: 4,
    widen_per_s: 2,
    window_max: 1000,
};
const WAIT: u64 = 1 << 40;
/// Groups the sweep forms: players are taken greedily in arrival order, so
/// some are left with both neighbours gone and the next ones out of reach.
const SWEEP_GROUPS: usize = 43_169;

/// Players `0..n` in a shuffled entry order (player `i` has rating `10 * i`).
fn order(n: u32) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

/// A matcher with `n` players waiting, none of whom can pair before 3 s.
fn full(n: u32) -> Matcher<u32> {
    let mut m = Matcher::new(RULES);
    let mut out = Vec::new();
    for i in order(n) {
        m.enqueue(i, "ranked", 2, i as i32 * 10, 0, WAIT).unwrap();
        m.run(0, &mut out);
    }
    assert!(out.is_empty() && m.len() == n as usize);
    m
}

fn per_operation(c: &mut Criterion) {
    // 1,000 for comparison: the cost per operation grows with log n only.
    for n in [1_000, PLAYERS] {
        let mut group = c.benchmark_group(format!("matcher_{n}"));
        let mut m = full(n);
        let mut out: Vec<Event<u32>> = Vec::new();
        let mut i = 0u32;
        group.bench_function("enqueue_pass_leave", |b| {
            b.iter(|| {
                // Midway between two waiting players: 5 from each, window 4.
                i = (i + 7919) % n;
                let owner = n + 1;
                m.enqueue(owner, "ranked", 2, i as i32 * 10 + 5, 1, WAIT)
                    .unwrap();
                m.run(1, &mut out);
                black_box(m.leave(owner, "ranked"));
            })
        });
        assert!(out.is_empty());
        let mut next = n + 10;
        group.bench_function("enqueue_pair", |b| {
            b.iter(|| {
                next += 2;
                let r = -(next as i32) * 100;
                m.enqueue(next, "ranked", 2, r, 1, WAIT).unwrap();
                m.enqueue(next + 1, "ranked", 2, r, 1, WAIT).unwrap();
                m.run(1, &mut out);
                black_box(out.pop());
            })
        });
        assert_eq!(m.len(), n as usize);
        group.bench_function("pass_idle", |b| {
            b.iter(|| {
                m.run(black_box(2), &mut out);
            })
        });
        assert!(out.is_empty());
        group.finish();
    }
}

fn whole_queue(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("matcher_{PLAYERS}_once"));
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(PLAYERS)));
    group.bench_function("sweep", |b| {
        b.iter_batched(
            || full(PLAYERS),
            |mut m| {
                let mut out = Vec::with_capacity(PLAYERS as usize / 2);
                m.run(3000, &mut out);
                assert_eq!(out.len(), SWEEP_GROUPS);
                (m, out)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("fill", |b| b.iter(|| full(PLAYERS)));
    group.finish();
}

criterion_group!(benches, per_operation, whole_queue);
criterion_main!(benches);
