//! Counters and latency histograms of one phase, and their exact merge across
//! processes.
//!
//! A histogram crosses a pipe as its non-empty buckets `(value, count)`, and is
//! rebuilt by `record_n` into a histogram of the same bounds: every bucket maps
//! back onto itself, so the merged histogram equals the one a single process
//! would have recorded (percentiles are never averaged).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency recorded, in microseconds (one hour); above it values clamp.
const HIST_MAX_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds, 3 significant figures.
#[derive(Clone)]
pub struct Lat(Histogram<u64>);

impl Default for Lat {
    fn default() -> Self {
        Lat(Histogram::new_with_bounds(1, HIST_MAX_US, 3)
            .expect("static histogram bounds are valid"))
    }
}

impl Lat {
    /// Records one latency given in nanoseconds. Cost: a few ns.
    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        let us = (ns / 1000).clamp(1, HIST_MAX_US);
        // In range by the clamp, so this cannot fail.
        let _ = self.0.record(us);
    }

    pub fn merge(&mut self, other: &Lat) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.value_at_quantile(q)
        }
    }

    pub fn max_us(&self) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.max()
        }
    }

    pub fn min_us(&self) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.min()
        }
    }

    /// How many values were recorded at or below `us` (to the histogram's
    /// precision: values in the same bucket as `us` count).
    pub fn count_le_us(&self, us: u64) -> u64 {
        if self.0.is_empty() {
            0
        } else {
            self.0.count_between(0, us.clamp(1, HIST_MAX_US))
        }
    }

    pub fn summary(&self) -> LatSummary {
        LatSummary {
            p50: self.quantile_us(0.5),
            p90: self.quantile_us(0.9),
            p99: self.quantile_us(0.99),
            p999: self.quantile_us(0.999),
            max: self.max_us(),
            count: self.count(),
        }
    }

    /// Non-empty buckets, for the pipe.
    pub fn to_wire(&self) -> Vec<(u64, u64)> {
        self.0
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    }

    pub fn from_wire(buckets: &[(u64, u64)]) -> Lat {
        let mut l = Lat::default();
        for &(v, n) in buckets {
            let _ = l.0.record_n(v.clamp(1, HIST_MAX_US), n);
        }
        l
    }
}

/// Percentiles in microseconds, as written to the JSON report.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct LatSummary {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub count: u64,
}

/// The counters of one phase in one process (or merged over all of them).
#[derive(Clone, Default)]
pub struct Stats {
    /// Connections open and ready at the time of the snapshot.
    pub conns: u64,
    /// Messages (or operations) sent in the measured window.
    pub sent: u64,
    /// Deliveries expected for the messages sent in the measured window.
    pub expected: u64,
    /// Distinct deliveries of measured messages.
    pub delivered: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Connections opened (handshake complete) and failed, in setup phases.
    pub opened: u64,
    pub failed: u64,
    /// Errors by kind ("closed by server: 4001", "connect: Connection refused", ...).
    pub errors: BTreeMap<String, u64>,
    /// Main latency: delivery latency from the scheduled send time (fanout),
    /// handshake time (idle), operation time (rooms), cycle time (churn).
    pub lat: Lat,
    /// Per-operation latencies (churn, rooms).
    pub ops: BTreeMap<String, Lat>,
    /// Named counters a scenario needs beyond the ones above (bytes, frames
    /// by type, ...), summed across processes.
    pub counts: BTreeMap<String, u64>,
}

impl Stats {
    pub fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_insert(0) += 1;
    }

    /// Counts an `err` reply by its code; the first one of each code in this
    /// process is also printed with its message (messages name rooms, so
    /// they would make one error kind per room).
    pub fn server_err(&mut self, code: &str, msg: &str) {
        let key = format!("server err {code}");
        if !self.errors.contains_key(&key) {
            eprintln!("roomd-bench: server answered err {code}: {msg}");
        }
        self.error(key);
    }

    /// Adds `n` to the named counter.
    pub fn count(&mut self, name: &str, n: u64) {
        if let Some(c) = self.counts.get_mut(name) {
            *c += n;
        } else {
            self.counts.insert(name.to_string(), n);
        }
    }

    /// The named counter (0 when never counted).
    pub fn counted(&self, name: &str) -> u64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    /// A connection ended: a failure when it never opened, and an error of
    /// its kind unless it was a clean end.
    pub fn conn_closed(&mut self, why: &crate::engine::Why) {
        if why.before_open() {
            self.failed += 1;
        }
        if let Some(l) = why.label() {
            self.error(l);
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn op(&mut self, name: &str, ns: u64) {
        if let Some(l) = self.ops.get_mut(name) {
            l.record_ns(ns);
        } else {
            let mut l = Lat::default();
            l.record_ns(ns);
            self.ops.insert(name.to_string(), l);
        }
    }

    /// Adds `o` into `self` (counts summed, histograms merged).
    pub fn merge(&mut self, o: &Stats) {
        self.conns += o.conns;
        self.sent += o.sent;
        self.expected += o.expected;
        self.delivered += o.delivered;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.opened += o.opened;
        self.failed += o.failed;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_insert(0) += v;
        }
        self.lat.merge(&o.lat);
        for (k, v) in &o.ops {
            self.ops.entry(k.clone()).or_default().merge(v);
        }
        for (k, v) in &o.counts {
            *self.counts.entry(k.clone()).or_insert(0) += v;
        }
    }

    pub fn missing(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    pub fn to_wire(&self) -> WireStats {
        WireStats {
            conns: self.conns,
            sent: self.sent,
            expected: self.expected,
            delivered: self.delivered,
            duplicated: self.duplicated,
            reordered: self.reordered,
            opened: self.opened,
            failed: self.failed,
            errors: self.errors.clone(),
            lat: self.lat.to_wire(),
            ops: self
                .ops
                .iter()
                .map(|(k, v)| (k.clone(), v.to_wire()))
                .collect(),
            counts: self.counts.clone(),
        }
    }

    pub fn from_wire(w: &WireStats) -> Stats {
        Stats {
            conns: w.conns,
            sent: w.sent,
            expected: w.expected,
            delivered: w.delivered,
            duplicated: w.duplicated,
            reordered: w.reordered,
            opened: w.opened,
            failed: w.failed,
            errors: w.errors.clone(),
            lat: Lat::from_wire(&w.lat),
            ops: w
                .ops
                .iter()
                .map(|(k, v)| (k.clone(), Lat::from_wire(v)))
                .collect(),
            counts: w.counts.clone(),
        }
    }
}

/// `Stats` as it crosses the pipe from a child to the parent.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct WireStats {
    pub conns: u64,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub opened: u64,
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
    pub lat: Vec<(u64, u64)>,
    pub ops: BTreeMap<String, Vec<(u64, u64)>>,
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
}

/// Exactly-once and order check of one sender's sequence as seen by one
/// receiver. Sequences start at 0 in each step.
///
/// Invariant: every seq below `next` was either seen or is inside one of the
/// `gaps` (half-open ranges of seqs not seen yet). A seq below `next` outside
/// every gap is therefore a duplicate; inside a gap it arrived late
/// (reordered). Gaps are bounded (oldest dropped) so a lossy run cannot grow
/// memory without end.
#[derive(Clone, Default)]
pub struct Tracker {
    next: u32,
    gaps: Vec<(u32, u32)>,
}

/// What one arrival was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    InOrder,
    Late,
    Duplicate,
}

const MAX_GAPS: usize = 64;

impl Tracker {
    pub fn reset(&mut self) {
        self.next = 0;
        self.gaps.clear();
    }

    #[inline]
    pub fn arrive(&mut self, seq: u32) -> Arrival {
        if seq == self.next {
            self.next += 1;
            return Arrival::InOrder;
        }
        if seq > self.next {
            if self.gaps.len() == MAX_GAPS {
                self.gaps.remove(0);
            }
            self.gaps.push((self.next, seq));
            self.next = seq + 1;
            return Arrival::InOrder;
        }
        for i in 0..self.gaps.len() {
            let (a, b) = self.gaps[i];
            if seq >= a && seq < b {
                match (seq == a, seq + 1 == b) {
                    (true, true) => {
                        self.gaps.remove(i);
                    }
                    (true, false) => self.gaps[i].0 = seq + 1,
                    (false, true) => self.gaps[i].1 = seq,
                    (false, false) => {
                        self.gaps[i].1 = seq;
                        self.gaps.insert(i + 1, (seq + 1, b));
                    }
                }
                return Arrival::Late;
            }
        }
        Arrival::Duplicate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_classifies() {
        let mut t = Tracker::default();
        assert_eq!(t.arrive(0), Arrival::InOrder);
        assert_eq!(t.arrive(1), Arrival::InOrder);
        assert_eq!(t.arrive(1), Arrival::Duplicate);
        assert_eq!(t.arrive(5), Arrival::InOrder);
        assert_eq!(t.arrive(3), Arrival::Late);
        assert_eq!(t.arrive(3), Arrival::Duplicate);
        assert_eq!(t.arrive(2), Arrival::Late);
        assert_eq!(t.arrive(4), Arrival::Late);
        assert_eq!(t.arrive(4), Arrival::Duplicate);
        assert!(t.gaps.is_empty());
    }

    #[test]
    fn histogram_merge_is_exact() {
        let mut a = Lat::default();
        let mut b = Lat::default();
        let mut both = Lat::default();
        for i in 0..10_000u64 {
            let ns = i * i * 37 + 1000;
            if i % 3 == 0 {
                a.record_ns(ns)
            } else {
                b.record_ns(ns)
            }
            both.record_ns(ns);
        }
        let mut m = Lat::from_wire(&a.to_wire());
        m.merge(&Lat::from_wire(&b.to_wire()));
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(m.quantile_us(q), both.quantile_us(q));
        }
        assert_eq!(m.count(), both.count());
    }
}
