//! Timer wheel micro-benches at roomd's settings (10 ms tick, 4096 slots):
//! arm+cancel of 100k timers, and expiring 100k timers spread over 5 s with
//! the clock stepped one tick at a time, as the worker loop does.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use roomd::timer::{TimerId, Wheel};

const TIMERS: u32 = 100_000;
const TICK: Duration = Duration::from_millis(10);
const SLOTS: usize = 4096;
const SPREAD: Duration = Duration::from_secs(5);

/// Deadline of timer `i`: evenly spread over `SPREAD` after `base`.
fn deadline(base: Instant, i: u32) -> Instant {
    base + SPREAD / TIMERS * (i + 1)
}

fn arm_cancel(c: &mut Criterion) {
    let mut group = c.benchmark_group("timer");
    group.throughput(Throughput::Elements(u64::from(TIMERS)));
    group.bench_function("arm_cancel_100k", |b| {
        let base = Instant::now();
        b.iter_batched(
            || {
                let wheel = Wheel::new(TICK, SLOTS, base);
                (wheel, Vec::<TimerId>::with_capacity(TIMERS as usize))
            },
            |(mut wheel, mut ids)| {
                for i in 0..TIMERS {
                    ids.push(wheel.arm(deadline(base, i), i));
                }
                for id in &ids {
                    black_box(wheel.cancel(*id));
                }
                // Dropped outside the measurement.
                (wheel, ids)
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

fn expire(c: &mut Criterion) {
    let mut group = c.benchmark_group("timer");
    group.throughput(Throughput::Elements(u64::from(TIMERS)));
    // Setup arms 100k timers per sample; fewer samples keep the run near 5 s.
    group.sample_size(50);
    group.bench_function("expire_100k_over_5s", |b| {
        let base = Instant::now();
        b.iter_batched(
            || {
                let mut wheel = Wheel::new(TICK, SLOTS, base);
                for i in 0..TIMERS {
                    wheel.arm(deadline(base, i), i);
                }
                (wheel, Vec::with_capacity(TIMERS as usize))
            },
            |(mut wheel, mut out)| {
                let mut now = base;
                while now <= base + SPREAD {
                    now += TICK;
                    wheel.expire(now, &mut out);
                    black_box(wheel.next_timeout(now));
                }
                assert_eq!(out.len(), TIMERS as usize);
                (wheel, out)
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, arm_cancel, expire);
criterion_main!(benches);
