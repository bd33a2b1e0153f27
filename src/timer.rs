//! Hashed timing wheel: the only timer structure of a worker loop.
//!
//! Owns every armed timer's payload until it fires or is cancelled. Time is
//! only read from the `now` arguments, so the caller's clock (and a test's
//! fake clock) is the sole source of time.
//!
//! Layout: a slab of entries (deadline tick, generation, payload) and a ring
//! of `slots`, each a list of `(key, generation)` pairs. A timer with
//! deadline tick `d` sits in slot `d % slots`; one further than a revolution
//! away stays in its slot and is skipped until its own round comes.
//!
//! Invariants (checked by `check_invariants` in tests):
//! - every live entry has exactly one pair: in `overdue`, or in the slot of
//!   its deadline with `deadline >= cursor` (ticks below `cursor` are done);
//! - `cancel` removes only the slab entry: the pair left behind is stale and
//!   is dropped when `expire` reaches it, so stale pairs live at most one
//!   revolution, and a reused key never matches an old `TimerId` because
//!   every `arm` takes a new generation;
//! - bit `i` of `occupied` is set exactly when slot `i` holds a pair;
//! - `next_tick` is at most the deadline of every live entry in the slots.
//!
//! Costs: `arm`, `cancel`, `len`, `next_timeout` are O(1); `expire` is
//! O(ticks elapsed, capped at one revolution + pairs visited), plus a scan of
//! `slots / 64` words when it passes the cached next deadline.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use slab::Slab;

/// Largest wheel accepted by `Wheel::new`: bigger requests are clamped so an
/// absurd argument cannot exhaust memory.
const MAX_SLOTS: usize = 1 << 20;

/// Ticks are clamped here (292 years at 1 ns a tick) so tick arithmetic
/// cannot overflow and `u64::MAX` stays free as the empty marker. A deadline
/// past it is rounded to `MAX_TICK + 1`, which no `now` reaches: never fires.
const MAX_TICK: u64 = u64::MAX / 4;

/// Handle to an armed timer, for `Wheel::cancel`.
///
/// A slab key plus the generation of the arm that created it. Generations
/// come from a per-wheel 32-bit counter that skips 0, so an old id can only
/// collide with a timer armed 2^32 - 1 arms later on the same key, and an
/// `Option<TimerId>` takes no more room than a `TimerId` (8 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    key: u32,
    generation: NonZeroU32,
}

struct Entry<T> {
    deadline: u64,
    generation: u32,
    payload: T,
}

/// Hashed timing wheel of payloads `T`; see the module doc for invariants.
pub struct Wheel<T> {
    entries: Slab<Entry<T>>,
    slots: Vec<Vec<(u32, u32)>>,
    /// One bit per slot: set when the slot holds any pair, live or stale.
    occupied: Vec<u64>,
    /// Timers armed with a deadline at or before `now`; fired by the next
    /// `expire` whatever its `now`.
    overdue: Vec<(u32, u32)>,
    mask: u64,
    tick_nanos: u128,
    origin: Instant,
    /// Latest `now` seen (construction or `expire`).
    now: Instant,
    /// Next tick to process: ticks below it are done.
    cursor: u64,
    /// Lower bound on the earliest deadline in the slots; `u64::MAX` when the
    /// slots are empty.
    next_tick: u64,
    generation: u32,
}

impl<T> Wheel<T> {
    /// Creates an empty wheel whose tick 0 is `now`.
    ///
    /// `tick`: granularity (roomd uses 10 ms); a zero tick is taken as 1 ns.
    /// `slots`: wheel size, rounded up to a power of two and clamped to
    /// `1..=2^20`; a timer more than `tick * slots` away costs one extra
    /// visit per revolution. `now`: the clock's current reading.
    pub fn new(tick: Duration, slots: usize, now: Instant) -> Self {
        let slots = slots
            .clamp(1, MAX_SLOTS)
            .checked_next_power_of_two()
            .unwrap_or(MAX_SLOTS);
        let mut ring = Vec::with_capacity(slots);
        ring.resize_with(slots, Vec::new);
        Wheel {
            entries: Slab::new(),
            slots: ring,
            occupied: vec![0; slots.div_ceil(64)],
            overdue: Vec::new(),
            mask: slots as u64 - 1,
            tick_nanos: tick.as_nanos().max(1),
            origin: now,
            now,
            cursor: 1,
            next_tick: u64::MAX,
            generation: 0,
        }
    }

    /// Arms a timer that fires at `at` (never earlier; at most one tick
    /// later, given expire is called). A deadline in the past fires on the
    /// next expire. O(1).
    ///
    /// "Past" means at or before the latest `now` this wheel was given; a
    /// deadline inside the current tick but after that `now` fires at the
    /// next tick boundary.
    pub fn arm(&mut self, at: Instant, payload: T) -> TimerId {
        self.generation = self.generation.wrapping_add(1).max(1);
        let generation = self.generation;
        let overdue = at <= self.now;
        // Rounded up so a timer never fires before `at`.
        let deadline = if overdue {
            self.ticks_ceil(at)
        } else {
            self.ticks_ceil(at).max(self.cursor)
        };
        let key = self.entries.insert(Entry {
            deadline,
            generation,
            payload,
        });
        // Four billion live timers would need far more memory than a worker
        // has. Should it happen, the saturated key addresses no entry: that
        // timer stays armed without firing, and no other timer is touched.
        debug_assert!(u32::try_from(key).is_ok(), "timer slab key overflow");
        let key = u32::try_from(key).unwrap_or(u32::MAX);
        if overdue {
            self.overdue.push((key, generation));
        } else {
            let idx = self.slot_index(deadline);
            if let Some(slot) = self.slots.get_mut(idx) {
                slot.push((key, generation));
            }
            self.set_occupied(idx, true);
            self.next_tick = self.next_tick.min(deadline);
        }
        TimerId {
            key,
            generation: NonZeroU32::new(generation).unwrap_or(NonZeroU32::MIN),
        }
    }

    /// Cancels; returns the payload if it had not fired yet. A stale id
    /// (fired, cancelled, or slot reused) returns None and touches nothing.
    /// O(1).
    ///
    /// The slot keeps a stale pair until `expire` passes it, and
    /// `next_timeout` may still wake for it once.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        self.take_live(id.key, id.generation.get())
    }

    /// Moves the payload of every timer due at `now` into `out`, in deadline
    /// order by tick. Cost: O(ticks elapsed, capped at one revolution +
    /// timers visited in those slots).
    ///
    /// Due means: armed as past (see `arm`), or deadline rounded up to a tick
    /// at or before `now`. Timers due in the same tick come out in arm order.
    /// A `now` earlier than a previous one fires only the past-armed timers.
    /// After a jump of more than a revolution the fired timers are sorted:
    /// O(k log k) for k fired.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<T>) {
        if now > self.now {
            self.now = now;
        }
        self.drain_overdue(out);

        let target = self.ticks_floor(now);
        if target < self.cursor {
            return;
        }
        if target < self.next_tick {
            // Nothing live is due by `target` (`next_tick` is at or before
            // the earliest live deadline): the slots passed hold only later
            // rounds and stale pairs, which a later pass meets. O(1) for a
            // turn with no timer due, the common case.
            self.cursor = target + 1;
            return;
        }
        let revolution = self.mask + 1;
        let steps = target - self.cursor + 1;
        if steps <= revolution {
            // Slots visited in tick order; each holds only deadlines equal to
            // its tick or a later round, so `out` is in deadline order.
            for tick in self.cursor..=target {
                self.drain_slot(self.slot_index(tick), target, |_, p| out.push(p));
            }
        } else {
            // More than a revolution passed: one pass over every slot,
            // starting at the cursor, fires all rounds that are due; those
            // rounds interleave, hence the sort.
            let mut fired = Vec::new();
            for tick in self.cursor..self.cursor + revolution {
                self.drain_slot(self.slot_index(tick), target, |d, p| fired.push((d, p)));
            }
            fired.sort_by_key(|&(d, _)| d);
            out.extend(fired.into_iter().map(|(_, p)| p));
        }
        self.cursor = target + 1;
        if self.next_tick < self.cursor {
            self.next_tick = self.scan_next_tick();
        }
    }

    /// How long the poll loop may sleep: None when no timer is armed, else
    /// the time until the earliest tick that may hold a due timer (may be
    /// conservative, i.e. shorter, but never longer than the true next
    /// deadline rounded up to a tick). O(1): it is called once per loop turn.
    ///
    /// Conservative after a cancel (until `expire` passes the stale pair) and
    /// for timers a revolution or more away (one wake per revolution).
    pub fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if self.entries.is_empty() {
            return None;
        }
        if !self.overdue.is_empty() {
            return Some(Duration::ZERO);
        }
        debug_assert!(self.next_tick != u64::MAX, "live timers but no slot");
        if self.next_tick == u64::MAX {
            // Broken invariant: waking every tick is safe, sleeping is not.
            return Some(self.tick());
        }
        let wake = u128::from(self.next_tick).saturating_mul(self.tick_nanos);
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        let nanos = wake.saturating_sub(elapsed);
        Some(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }

    /// Number of armed timers (fired and cancelled ones excluded).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn tick(&self) -> Duration {
        Duration::from_nanos(u64::try_from(self.tick_nanos).unwrap_or(u64::MAX))
    }

    fn ticks_floor(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(nanos / self.tick_nanos).map_or(MAX_TICK, |t| t.min(MAX_TICK))
    }

    fn ticks_ceil(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(nanos.div_ceil(self.tick_nanos)).map_or(MAX_TICK + 1, |t| t.min(MAX_TICK + 1))
    }

    fn slot_index(&self, tick: u64) -> usize {
        // The mask is below MAX_SLOTS, so the result fits in usize.
        (tick & self.mask) as usize
    }

    fn set_occupied(&mut self, idx: usize, on: bool) {
        if let Some(word) = self.occupied.get_mut(idx / 64) {
            let bit = 1u64 << (idx % 64);
            if on {
                *word |= bit;
            } else {
                *word &= !bit;
            }
        }
    }

    /// Fires the live timers of `overdue` in deadline order and drops the
    /// stale pairs. Cost: O(k log k) for k pairs; empty in the usual turn.
    fn drain_overdue(&mut self, out: &mut Vec<T>) {
        if self.overdue.is_empty() {
            return;
        }
        let mut pairs = std::mem::take(&mut self.overdue);
        let entries = &self.entries;
        pairs.sort_by_key(|&(key, _)| entries.get(key as usize).map_or(0, |e| e.deadline));
        for &(key, generation) in &pairs {
            if let Some(payload) = self.take_live(key, generation) {
                out.push(payload);
            }
        }
        pairs.clear();
        // Keeps the allocation for the next burst.
        self.overdue = pairs;
    }

    /// Fires the live timers of slot `idx` whose deadline is at most `limit`,
    /// passing (deadline, payload) to `fire`; drops stale pairs and keeps
    /// later rounds. Cost: O(pairs in the slot).
    fn drain_slot(&mut self, idx: usize, limit: u64, mut fire: impl FnMut(u64, T)) {
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        if slot.is_empty() {
            return;
        }
        let mut pairs = std::mem::take(slot);
        let entries = &mut self.entries;
        pairs.retain(|&(key, generation)| {
            let key = key as usize;
            match entries.get(key) {
                Some(e) if e.generation == generation => {
                    if e.deadline > limit {
                        return true;
                    }
                    if let Some(e) = entries.try_remove(key) {
                        fire(e.deadline, e.payload);
                    }
                    false
                }
                _ => false,
            }
        });
        let empty = pairs.is_empty();
        if let Some(slot) = self.slots.get_mut(idx) {
            *slot = pairs;
        }
        self.set_occupied(idx, !empty);
    }

    /// Removes the entry `key` if it is still the arm of `generation`.
    fn take_live(&mut self, key: u32, generation: u32) -> Option<T> {
        let key = key as usize;
        match self.entries.get(key) {
            Some(e) if e.generation == generation => {
                self.entries.try_remove(key).map(|e| e.payload)
            }
            _ => None,
        }
    }

    /// The first tick at or after `cursor` whose slot holds a pair, or
    /// `u64::MAX` if every slot is empty. A lower bound on the earliest
    /// deadline in the slots: a slot holds only deadlines congruent to its
    /// ticks. Cost: O(slots / 64) words.
    fn scan_next_tick(&self) -> u64 {
        let from = self.slot_index(self.cursor);
        let found =
            first_set_bit(&self.occupied, from).or_else(|| first_set_bit(&self.occupied, 0));
        match found {
            Some(idx) => {
                let distance = (idx as u64).wrapping_sub(from as u64) & self.mask;
                self.cursor + distance
            }
            None => u64::MAX,
        }
    }

    /// Checks the module invariants; O(timers + slots + pairs).
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut seen = std::collections::HashMap::new();
        for &(key, generation) in &self.overdue {
            if let Some(e) = self.entries.get(key as usize) {
                if e.generation == generation {
                    *seen.entry(key).or_insert(0) += 1;
                }
            }
        }
        for (idx, slot) in self.slots.iter().enumerate() {
            let bit = self.occupied[idx / 64] >> (idx % 64) & 1 == 1;
            assert_eq!(bit, !slot.is_empty(), "occupied bit of slot {idx}");
            for &(key, generation) in slot {
                if let Some(e) = self.entries.get(key as usize) {
                    if e.generation == generation {
                        assert_eq!(self.slot_index(e.deadline), idx, "slot of {key}");
                        assert!(e.deadline >= self.cursor, "{key} behind cursor");
                        assert!(e.deadline >= self.next_tick, "{key} before next_tick");
                        *seen.entry(key).or_insert(0) += 1;
                    }
                }
            }
        }
        for (key, _) in &self.entries {
            assert_eq!(seen.get(&(key as u32)), Some(&1), "pairs of live {key}");
        }
    }
}

/// Index of the first set bit at or after `from`, if any.
fn first_set_bit(words: &[u64], from: usize) -> Option<usize> {
    let mut w = from / 64;
    let mut word = words.get(w)? & (!0u64 << (from % 64));
    loop {
        if word != 0 {
            return Some(w * 64 + word.trailing_zeros() as usize);
        }
        w += 1;
        word = *words.get(w)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A wheel of 64 slots (a 640 ms revolution) and its base instant.
    fn wheel<T>() -> (Wheel<T>, Instant) {
        let base = Instant::now();
        (Wheel::new(TICK, 64, base), base)
    }

    fn expire<T>(w: &mut Wheel<T>, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        w.expire(now, &mut out);
        w.check_invariants();
        out
    }

    /// Deadlines in ms must come out ordered by their 10 ms tick.
    fn assert_in_tick_order(fired: &[u64]) {
        for pair in fired.windows(2) {
            assert!(
                pair[0].div_ceil(10) <= pair[1].div_ceil(10),
                "out of order: {pair:?}"
            );
        }
    }

    /// Deterministic xorshift64 for property loops.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn fires_not_early_and_within_one_tick() {
        for offset in [1, 5, 10, 11, 99, 100, 101, 639, 640, 641] {
            let (mut w, base) = wheel();
            let at = base + ms(offset);
            w.arm(at, offset);
            let mut fired_at = None;
            // Step the clock by 1 ms.
            for t in 0..=offset + 20 {
                if !expire(&mut w, base + ms(t)).is_empty() {
                    fired_at = Some(t);
                    break;
                }
            }
            let fired_at = fired_at.expect("timer never fired");
            assert!(
                fired_at >= offset,
                "{offset} ms timer fired early at {fired_at}"
            );
            assert!(
                fired_at < offset + 10,
                "{offset} ms timer fired late at {fired_at}"
            );
        }
    }

    #[test]
    fn turns_with_nothing_due_skip_ahead_and_lose_nothing() {
        let (mut w, base) = wheel();
        let far = w.arm(base + ms(5_000), "far");
        let gone = w.arm(base + ms(30), "cancelled");
        w.cancel(gone);
        // Many turns, nothing due: the cursor moves without a walk.
        for t in 0..200 {
            assert!(expire(&mut w, base + ms(t)).is_empty(), "at {t} ms");
        }
        w.check_invariants();
        // A timer armed after them fires on time, the far one on its own.
        w.arm(base + ms(250), "near");
        assert!(expire(&mut w, base + ms(249)).is_empty());
        assert_eq!(expire(&mut w, base + ms(260)), ["near"]);
        assert!(expire(&mut w, base + ms(4_990)).is_empty());
        assert_eq!(expire(&mut w, base + ms(5_010)), ["far"]);
        assert_eq!(w.cancel(far), None);
        assert!(w.is_empty());
        w.check_invariants();
    }

    #[test]
    fn fires_in_deadline_order_across_ticks() {
        let (mut w, base) = wheel();
        for (i, offset) in [50, 10, 300, 20, 10, 200].into_iter().enumerate() {
            w.arm(base + ms(offset), (offset, i));
        }
        let out = expire(&mut w, base + ms(400));
        let offsets: Vec<u64> = out.iter().map(|&(o, _)| o).collect();
        assert_eq!(offsets, [10, 10, 20, 50, 200, 300]);
        // Same tick: arm order.
        assert_eq!(out[0].1, 1);
        assert_eq!(out[1].1, 4);
    }

    #[test]
    fn cancel_before_fire_returns_payload_and_never_fires() {
        let (mut w, base) = wheel();
        let id = w.arm(base + ms(50), "a");
        w.arm(base + ms(50), "b");
        assert_eq!(w.cancel(id), Some("a"));
        assert_eq!(w.cancel(id), None);
        assert_eq!(expire(&mut w, base + ms(2000)), ["b"]);
        assert!(w.is_empty());
    }

    #[test]
    fn cancel_after_fire_returns_none() {
        let (mut w, base) = wheel();
        let id = w.arm(base + ms(30), 1);
        assert_eq!(expire(&mut w, base + ms(30)), [1]);
        assert_eq!(w.cancel(id), None);
    }

    #[test]
    fn stale_id_after_slot_reuse_does_not_cancel() {
        let (mut w, base) = wheel();
        let old = w.arm(base + ms(30), "old");
        assert_eq!(w.cancel(old), Some("old"));
        let new = w.arm(base + ms(30), "new");
        assert_eq!(new.key, old.key, "slab key should be reused");
        assert_eq!(w.cancel(old), None);
        assert_eq!(w.len(), 1);
        // The stale pair of `old` shares the slot and must not fire twice.
        assert_eq!(expire(&mut w, base + ms(30)), ["new"]);

        let fired = w.arm(base + ms(40), "fired");
        assert_eq!(expire(&mut w, base + ms(40)), ["fired"]);
        let reuse = w.arm(base + ms(50), "reuse");
        assert_eq!(reuse.key, fired.key);
        assert_eq!(w.cancel(fired), None);
        assert_eq!(expire(&mut w, base + ms(50)), ["reuse"]);
    }

    #[test]
    fn beyond_one_revolution_fires_on_its_round() {
        let (mut w, base) = wheel();
        // 64 slots of 10 ms: 640 ms a revolution.
        let far = 2 * 640 + 70;
        w.arm(base + ms(far), "far");
        w.arm(base + ms(70), "near");
        let mut fired = Vec::new();
        for t in (0..=far + 10).step_by(10) {
            for p in expire(&mut w, base + ms(t)) {
                fired.push((t, p));
            }
        }
        assert_eq!(fired, [(70, "near"), (far, "far")]);
    }

    #[test]
    fn many_timers_in_one_slot() {
        let (mut w, base) = wheel();
        let ids: Vec<TimerId> = (0..1000).map(|i| w.arm(base + ms(100), i)).collect();
        // Same slot, a revolution later: must stay.
        w.arm(base + ms(100 + 640), 5000);
        for id in ids.iter().step_by(2) {
            assert!(w.cancel(*id).is_some());
        }
        assert!(expire(&mut w, base + ms(99)).is_empty());
        let out = expire(&mut w, base + ms(100));
        assert_eq!(out, (1..1000).step_by(2).collect::<Vec<_>>());
        assert_eq!(w.len(), 1);
        assert_eq!(expire(&mut w, base + ms(740)), [5000]);
    }

    #[test]
    fn big_jump_fires_everything_due_exactly_once() {
        let (mut w, base) = wheel();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut deadlines: Vec<u64> = (0..2000).map(|_| 1 + rng.next() % 5000).collect();
        for &d in &deadlines {
            w.arm(base + ms(d), d);
        }
        // 3000 ms is over four revolutions.
        let mut out = expire(&mut w, base + ms(3000));
        assert_in_tick_order(&out);
        let mut due: Vec<u64> = deadlines.iter().copied().filter(|&d| d <= 3000).collect();
        due.sort_unstable();
        out.sort_unstable();
        assert_eq!(out, due, "every due timer exactly once");
        assert_eq!(w.len(), deadlines.len() - due.len());

        let mut rest = expire(&mut w, base + ms(10_000));
        assert_in_tick_order(&rest);
        rest.sort_unstable();
        deadlines.retain(|&d| d > 3000);
        deadlines.sort_unstable();
        assert_eq!(rest, deadlines);
        assert!(w.is_empty());
        assert!(expire(&mut w, base + ms(20_000)).is_empty());
    }

    #[test]
    fn past_deadline_fires_on_next_expire() {
        let (mut w, base) = wheel();
        assert!(expire(&mut w, base + ms(1005)).is_empty());
        w.arm(base + ms(1003), "inside current tick");
        w.arm(base + ms(500), "long past");
        w.arm(base, "at origin");
        w.arm(base + ms(1005), "exactly now");
        let id = w.arm(base + ms(200), "cancelled");
        w.cancel(id);
        assert_eq!(w.next_timeout(base + ms(1005)), Some(Duration::ZERO));
        // Same `now` again: still fires, in deadline order.
        let out = expire(&mut w, base + ms(1005));
        assert_eq!(
            out,
            [
                "at origin",
                "long past",
                "inside current tick",
                "exactly now"
            ]
        );
        assert!(w.is_empty());
        assert_eq!(w.next_timeout(base + ms(1005)), None);
    }

    #[test]
    fn earlier_now_fires_nothing_new() {
        let (mut w, base) = wheel();
        w.arm(base + ms(100), 1);
        expire(&mut w, base + ms(50));
        assert!(expire(&mut w, base + ms(20)).is_empty());
        assert_eq!(expire(&mut w, base + ms(100)), [1]);
    }

    #[test]
    fn next_timeout_none_when_empty() {
        let (mut w, base) = wheel::<u32>();
        assert_eq!(w.next_timeout(base), None);
        let id = w.arm(base + ms(100), 1);
        assert_eq!(w.next_timeout(base), Some(ms(100)));
        w.cancel(id);
        assert_eq!(w.next_timeout(base), None);
    }

    #[test]
    fn next_timeout_never_later_than_earliest_deadline() {
        let (mut w, base) = wheel();
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let mut now = 0u64;
        let mut live: Vec<(TimerId, u64)> = Vec::new();
        for _ in 0..5000 {
            match rng.next() % 4 {
                // Deadlines up to three revolutions ahead, some in the past.
                0 | 1 => {
                    let at = (now + rng.next() % 2000).saturating_sub(50);
                    live.push((w.arm(base + ms(at), at), at));
                }
                2 if !live.is_empty() => {
                    let i = (rng.next() % live.len() as u64) as usize;
                    let (id, at) = live.swap_remove(i);
                    assert_eq!(w.cancel(id), Some(at));
                }
                _ => {
                    now += rng.next() % 300;
                    for at in expire(&mut w, base + ms(now)) {
                        assert!(at <= now, "fired {at} early at {now}");
                        let i = live
                            .iter()
                            .position(|&(_, a)| a == at)
                            .expect("fired twice");
                        live.swap_remove(i);
                    }
                    // Due by tick: the deadline rounded up to a tick.
                    let due = |at: u64| at.div_ceil(10) * 10 <= now;
                    assert!(!live.iter().any(|&(_, at)| due(at)), "due timer left armed");
                }
            }
            assert_eq!(w.len(), live.len());
            let timeout = w.next_timeout(base + ms(now));
            match live.iter().map(|&(_, at)| at).min() {
                None => assert_eq!(timeout, None),
                Some(earliest) => {
                    let timeout = timeout.expect("armed timers but no timeout");
                    let rounded = earliest.div_ceil(10) * 10;
                    assert!(
                        timeout <= ms(rounded.saturating_sub(now)),
                        "timeout {timeout:?} at {now} past earliest {earliest}"
                    );
                }
            }
        }
    }

    #[test]
    fn next_timeout_skips_to_next_occupied_tick() {
        let (mut w, base) = wheel();
        w.arm(base + ms(35), 1);
        w.arm(base + ms(300), 2);
        assert_eq!(w.next_timeout(base + ms(1)), Some(ms(39)));
        assert_eq!(expire(&mut w, base + ms(40)), [1]);
        // Sleeps straight to 300 ms, not one tick at a time.
        assert_eq!(w.next_timeout(base + ms(40)), Some(ms(260)));
        assert_eq!(expire(&mut w, base + ms(300)), [2]);
        assert_eq!(w.next_timeout(base + ms(300)), None);
    }

    #[test]
    fn len_tracks_arm_cancel_expire() {
        let (mut w, base) = wheel();
        assert!(w.is_empty());
        let a = w.arm(base + ms(10), 'a');
        w.arm(base + ms(20), 'b');
        w.arm(base + ms(30), 'c');
        assert_eq!(w.len(), 3);
        w.cancel(a);
        assert_eq!(w.len(), 2);
        w.cancel(a);
        assert_eq!(w.len(), 2);
        expire(&mut w, base + ms(20));
        assert_eq!(w.len(), 1);
        expire(&mut w, base + ms(30));
        assert_eq!(w.len(), 0);
        assert!(w.is_empty());
    }

    #[test]
    fn odd_arguments_do_not_panic() {
        let base = Instant::now();
        for (tick, slots) in [
            (Duration::ZERO, 0),
            (TICK, 3),
            (TICK, usize::MAX),
            (Duration::MAX, 1),
        ] {
            let mut w = Wheel::new(tick, slots, base);
            assert!(w.slots.len().is_power_of_two() && w.slots.len() <= MAX_SLOTS);
            w.arm(base + Duration::from_secs(1 << 20), 1);
            let id = w.arm(base + ms(1), 2);
            assert!(w.next_timeout(base).is_some());
            let mut out = Vec::new();
            w.expire(base + Duration::from_secs(1 << 21), &mut out);
            w.check_invariants();
            assert_eq!(out.len() + w.len(), 2);
            assert!(out.len() == 2 || tick == Duration::MAX);
            w.cancel(id);
            w.expire(base, &mut out);
        }
    }
}
