//! Room histories: the last `--history` `msg`s of a room (seq, from, data),
//! replayed to a session that resumes (PROTOCOL.md "Reconnect and recovery").
//!
//! A room holds `Option<Box<History>>`, `None` until its first message, so a
//! room that never carries a message costs one word. Bounds, all enforced on
//! append: at most `--history` messages and `--history-bytes` bytes per room,
//! and `--history-total` bytes across every room of the worker (a byte of
//! history counts its data plus [`ENTRY_COST`] of bookkeeping). Past a bound
//! the room drops its own oldest messages; when the worker total is full and
//! the room has nothing left to drop, the message is not kept and the room's
//! history restarts after it.
//!
//! Invariants: the entries are the messages `start()..next` with no gap (a
//! message that cannot be kept empties the history, so a replay is always
//! complete or refused); `bytes` is the sum of their costs, and the shared
//! total is the sum of `bytes` over live histories (a history gives its bytes
//! back when dropped, with its room).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct Entry {
    from: u64,
    data: Box<[u8]>,
}

/// Bookkeeping bytes counted per kept message on top of its data: the ring
/// slot (member id and boxed slice).
pub const ENTRY_COST: usize = std::mem::size_of::<Entry>();

/// Ring capacity reserved on a room's first message (it grows past this only
/// when `--history` is larger).
const FIRST_CAPACITY: usize = 64;

/// One room's recent messages.
pub struct History {
    entries: VecDeque<Entry>,
    /// Seq of the message after the last one kept.
    next: u64,
    bytes: usize,
    total: Arc<AtomicUsize>,
}

impl History {
    /// Seq of the oldest message kept (`next` when none is).
    pub fn start(&self) -> u64 {
        self.next - self.entries.len() as u64
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes this history counts against the worker total.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn pop(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            let cost = e.data.len() + ENTRY_COST;
            self.bytes -= cost;
            self.total.fetch_sub(cost, Ordering::Relaxed);
        }
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The messages of a room after `last`, when they are all still kept:
/// `Some` (maybe empty) or `None` (`recovered:false`). `seq` is the room's
/// current seq. A `last` beyond `seq` names messages that never existed and
/// is `None` too. O(1) to decide; the iterator yields `(seq, from, data)`.
pub fn since(
    h: Option<&History>,
    last: u64,
    seq: u64,
) -> Option<impl Iterator<Item = (u64, u64, &[u8])>> {
    if last > seq {
        return None;
    }
    let (entries, start) = match h {
        Some(h) if h.next == seq + 1 && last + 1 >= h.start() => (&h.entries, h.start()),
        _ if last == seq => return Some(None.into_iter().flatten()),
        _ => return None,
    };
    let skip = (last + 1 - start) as usize;
    let it = entries
        .iter()
        .skip(skip)
        .enumerate()
        .map(move |(i, e)| (last + 1 + i as u64, e.from, &*e.data));
    Some(Some(it).into_iter().flatten())
}

/// The bounds and the worker-wide byte count; appends go through here.
pub struct Recorder {
    per_room: usize,
    room_bytes: usize,
    total_cap: usize,
    total: Arc<AtomicUsize>,
}

impl Recorder {
    /// `per_room` messages (0 keeps none), `room_bytes` per room,
    /// `total_cap` across rooms.
    pub fn new(per_room: usize, room_bytes: usize, total_cap: usize) -> Self {
        Recorder {
            per_room,
            room_bytes,
            total_cap,
            total: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Bytes kept by every live history.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Keeps message `seq` (the room's newest) in its room's history,
    /// allocating the history on the room's first message and dropping the
    /// oldest messages past a bound. O(1) amortized plus one copy of `data`.
    pub fn record(&self, h: &mut Option<Box<History>>, seq: u64, from: u64, data: &[u8]) {
        if self.per_room == 0 {
            return;
        }
        let h = h.get_or_insert_with(|| {
            Box::new(History {
                entries: VecDeque::with_capacity(self.per_room.min(FIRST_CAPACITY)),
                next: seq,
                bytes: 0,
                total: self.total.clone(),
            })
        });
        if h.next != seq {
            // A message went by unrecorded: what is kept cannot be replayed
            // as a whole any more.
            while !h.is_empty() {
                h.pop();
            }
        }
        h.next = seq + 1;
        let cost = data.len() + ENTRY_COST;
        while h.len() >= self.per_room || (!h.is_empty() && h.bytes + cost > self.room_bytes) {
            h.pop();
        }
        while !h.is_empty() && self.total() + cost > self.total_cap {
            h.pop();
        }
        if cost > self.room_bytes || self.total() + cost > self.total_cap {
            // Cannot keep it; the history restarts after it.
            while !h.is_empty() {
                h.pop();
            }
            return;
        }
        h.entries.push_back(Entry {
            from,
            data: data.into(),
        });
        h.bytes += cost;
        self.total.fetch_add(cost, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(h: &Option<Box<History>>, last: u64, seq: u64) -> Option<Vec<u64>> {
        since(h.as_deref(), last, seq).map(|it| it.map(|(s, _, _)| s).collect())
    }

    #[test]
    fn keeps_the_last_n_and_replays_after_last() {
        let r = Recorder::new(4, 1 << 20, 1 << 20);
        let mut h = None;
        assert_eq!(seqs(&h, 0, 0), Some(vec![]), "nothing missed, nothing kept");
        assert_eq!(seqs(&h, 0, 1), None);
        for seq in 1..=6 {
            r.record(&mut h, seq, 7, &[seq as u8]);
        }
        let hist = h.as_ref().unwrap();
        assert_eq!((hist.start(), hist.len()), (3, 4));
        assert_eq!(seqs(&h, 2, 6), Some(vec![3, 4, 5, 6]));
        assert_eq!(seqs(&h, 4, 6), Some(vec![5, 6]));
        assert_eq!(seqs(&h, 6, 6), Some(vec![]));
        assert_eq!(seqs(&h, 1, 6), None, "seq 2 is gone");
        assert_eq!(seqs(&h, 7, 6), None, "beyond the room's seq");
        let got: Vec<_> = since(h.as_deref(), 5, 6).unwrap().collect();
        assert_eq!(got, vec![(6, 7, &[6u8][..])]);
        assert_eq!(r.total(), 4 * (1 + ENTRY_COST));
        drop(h);
        assert_eq!(r.total(), 0, "a dropped history gives its bytes back");
    }

    #[test]
    fn byte_bounds_per_room_and_in_total() {
        let cost = 100 + ENTRY_COST;
        let r = Recorder::new(64, 3 * cost, 5 * cost);
        let (mut a, mut b) = (None, None);
        for seq in 1..=4 {
            r.record(&mut a, seq, 1, &[0; 100]);
        }
        assert_eq!(a.as_ref().unwrap().len(), 3, "per-room bytes");
        for seq in 1..=3 {
            r.record(&mut b, seq, 1, &[0; 100]);
        }
        // 6 messages would pass the total: b made room from its own oldest.
        assert_eq!(b.as_ref().unwrap().len(), 2);
        assert_eq!(r.total(), 5 * cost);
        assert_eq!(seqs(&b, 1, 3), Some(vec![2, 3]));
        // A message larger than a room may hold empties the history.
        r.record(&mut b, 4, 1, &[0; 400]);
        assert!(b.as_ref().unwrap().is_empty());
        assert_eq!(seqs(&b, 3, 4), None);
        assert_eq!(seqs(&b, 4, 4), Some(vec![]));
        r.record(&mut b, 5, 1, &[0; 100]);
        assert_eq!(seqs(&b, 4, 5), Some(vec![5]));
        assert_eq!(r.total(), 4 * cost);
    }

    #[test]
    fn total_full_and_nothing_to_drop_keeps_nothing() {
        let cost = 10 + ENTRY_COST;
        let r = Recorder::new(64, 1 << 20, 2 * cost);
        let (mut a, mut b) = (None, None);
        r.record(&mut a, 1, 1, &[0; 10]);
        r.record(&mut a, 2, 1, &[0; 10]);
        r.record(&mut b, 1, 1, &[0; 10]);
        assert!(b.as_ref().unwrap().is_empty());
        assert_eq!(seqs(&b, 0, 1), None);
        r.record(&mut a, 3, 1, &[0; 10]);
        assert_eq!(seqs(&a, 1, 3), Some(vec![2, 3]));
        drop(a);
        r.record(&mut b, 2, 1, &[0; 10]);
        assert_eq!(seqs(&b, 1, 2), Some(vec![2]));
    }

    #[test]
    fn disabled_keeps_nothing() {
        let r = Recorder::new(0, 1 << 20, 1 << 20);
        let mut h = None;
        r.record(&mut h, 1, 1, b"x");
        assert!(h.is_none());
        assert_eq!(seqs(&h, 0, 1), None);
        assert_eq!(seqs(&h, 1, 1), Some(vec![]));
    }

    #[test]
    fn a_gap_empties_the_history() {
        let r = Recorder::new(8, 1 << 20, 1 << 20);
        let mut h = None;
        r.record(&mut h, 1, 1, b"a");
        r.record(&mut h, 3, 1, b"c");
        assert_eq!(seqs(&h, 2, 3), Some(vec![3]));
        assert_eq!(seqs(&h, 1, 3), None);
    }
}
