//! Matchmaking queues (PROTOCOL.md `match`/`unmatch`), apart from sockets and
//! rooms: players wait in pools (queue name, group size) and are grouped by
//! rating; the caller turns [`Event`]s into rooms and messages.
//!
//! The rule. A player who has waited `w` ms has the window
//! `min(window + widen_per_s * w / 1000, window_max)` rating points. Its
//! candidate group is itself plus the `size - 1` other players of its pool
//! nearest to its rating (ties: the longer-waiting first). The group forms
//! once the farthest of them is within the player's window. Among players
//! whose group can form, the longest-waiting goes first, so a newcomer is
//! taken by the oldest player whose (wide) window reaches it.
//!
//! How it avoids scanning the queue. For each player, `need` is the distance
//! to the farthest member of its candidate group; as windows only grow, the
//! time its group can form is known in advance (`ready` time, kept in an
//! ordered set). Adding or removing a player changes `need` only for the
//! `size - 1` nearest players on either side of it in rating order, so only
//! those are recomputed. A pass pops the players whose ready time has come,
//! in arrival order, and nothing else.
//!
//! Costs, with `n` players in a pool and group size `k`: `enqueue`,
//! `leave`: O(k * (k + log n)); `run`: O(log n) when nothing is due, plus
//! O(k^2 * (k + log n)) per group formed and O(k * (k + log n)) per timeout;
//! `next_event`: O(log n). Memory: about 200 bytes per waiting player.
//!
//! Invariants (checked by `check` in tests): every entry sits once in its
//! pool's rating index and in `deadlines`; `ready` holds `(t, ticket)` for
//! exactly the entries whose group can ever form, with `t` their ready time;
//! after `run(now)` no entry's ready time is at or before `now`.
//!
//! Time is milliseconds on the caller's clock (an injected `u64`), so tests
//! and benches drive it by hand.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::ops::Bound;

/// A waiting player's place in line: lower is earlier (arrival order).
pub type Ticket = u64;

/// The window rule's constants (flags `--match-window`, `--match-widen`,
/// `--match-window-max`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Window on entering, in rating points either side.
    pub window: u32,
    /// Points the window widens per second of waiting.
    pub widen_per_s: u32,
    /// Widest window (a smaller value than `window` means `window`).
    pub window_max: u32,
}

impl Rules {
    fn max(&self) -> u64 {
        u64::from(self.window_max.max(self.window))
    }

    /// The window after `waited` ms.
    pub fn window_after(&self, waited: u64) -> u64 {
        let grown = u64::from(self.widen_per_s).saturating_mul(waited) / 1000;
        u64::from(self.window).saturating_add(grown).min(self.max())
    }

    /// The least wait (ms) after which the window is at least `need`; `None`
    /// when it never gets there.
    pub fn wait_for(&self, need: u64) -> Option<u64> {
        let base = u64::from(self.window);
        if need <= base {
            return Some(0);
        }
        if need > self.max() || self.widen_per_s == 0 {
            return None;
        }
        Some(((need - base) * 1000).div_ceil(u64::from(self.widen_per_s)))
    }
}

/// What a pass produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<O> {
    /// A group formed: `players` in arrival order (the longest-waiting first).
    Matched { queue: Box<str>, players: Vec<O> },
    /// A player waited past its deadline and left the queue.
    Timeout { queue: Box<str>, owner: O },
}

/// Why an `enqueue` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueError {
    /// The owner already waits in a queue of that name: `unmatch` first.
    AlreadyQueued,
}

struct Entry<O> {
    owner: O,
    pool: usize,
    rating: i32,
    since: u64,
    deadline: u64,
    /// Key in `ready`, when the group can ever form.
    ready: Option<u64>,
}

struct Pool {
    queue: Box<str>,
    size: u16,
    by_rating: BTreeSet<(i32, Ticket)>,
}

/// Every queue of a worker; `O` names a waiting player (a session id).
pub struct Matcher<O> {
    rules: Rules,
    entries: HashMap<Ticket, Entry<O>>,
    pools: slab::Slab<Pool>,
    /// Queue name -> (size, pool) of its non-empty pools.
    pool_of: HashMap<Box<str>, Vec<(u16, usize)>>,
    ready: BTreeSet<(u64, Ticket)>,
    deadlines: BTreeSet<(u64, Ticket)>,
    owners: HashMap<O, Vec<Ticket>>,
    next_ticket: Ticket,
    /// Reused buffers (no allocation per operation once warm).
    scratch: Vec<Ticket>,
    affected: Vec<Ticket>,
}

fn dist(a: i32, b: i32) -> u64 {
    (i64::from(a) - i64::from(b)).unsigned_abs()
}

impl<O: Copy + Eq + Hash> Matcher<O> {
    pub fn new(rules: Rules) -> Self {
        Matcher {
            rules,
            entries: HashMap::new(),
            pools: slab::Slab::new(),
            pool_of: HashMap::new(),
            ready: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            owners: HashMap::new(),
            next_ticket: 1,
            scratch: Vec::new(),
            affected: Vec::new(),
        }
    }

    pub fn rules(&self) -> Rules {
        self.rules
    }

    /// Players waiting in every queue.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queues `owner` waits in. O(1).
    pub fn queued(&self, owner: O) -> usize {
        self.owners.get(&owner).map_or(0, Vec::len)
    }

    /// The queues `owner` waits in. O(queues of the owner).
    pub fn queues_of(&self, owner: O) -> impl Iterator<Item = &str> {
        self.owners
            .get(&owner)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let e = self.entries.get(t)?;
                Some(&*self.pools.get(e.pool)?.queue)
            })
    }

    /// Whether `owner` waits in `queue`. O(queues of the owner).
    pub fn is_queued(&self, owner: O, queue: &str) -> bool {
        self.ticket_of(owner, queue).is_some()
    }

    fn ticket_of(&self, owner: O, queue: &str) -> Option<Ticket> {
        self.owners.get(&owner)?.iter().copied().find(|t| {
            self.entries
                .get(t)
                .and_then(|e| self.pools.get(e.pool))
                .is_some_and(|p| &*p.queue == queue)
        })
    }

    /// The earliest time at which `run` has something to do (a group can
    /// form or a player times out). O(log n).
    pub fn next_event(&self) -> Option<u64> {
        let r = self.ready.first().map(|&(t, _)| t);
        let d = self.deadlines.first().map(|&(t, _)| t);
        match (r, d) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Puts `owner` in `queue` for groups of `size` (at least 1) until `now +
    /// wait`. Nothing is matched until the next `run`. O(k * (k + log n)).
    pub fn enqueue(
        &mut self,
        owner: O,
        queue: &str,
        size: u16,
        rating: i32,
        now: u64,
        wait: u64,
    ) -> Result<Ticket, EnqueueError> {
        if self.is_queued(owner, queue) {
            return Err(EnqueueError::AlreadyQueued);
        }
        let size = size.max(1);
        let pool = self.pool(queue, size);
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let deadline = now.saturating_add(wait);
        self.pools[pool].by_rating.insert((rating, ticket));
        self.deadlines.insert((deadline, ticket));
        self.owners.entry(owner).or_default().push(ticket);
        self.entries.insert(
            ticket,
            Entry {
                owner,
                pool,
                rating,
                since: now,
                deadline,
                ready: None,
            },
        );
        let mut affected = std::mem::take(&mut self.affected);
        affected.clear();
        affected.push(ticket);
        self.neighbours(pool, (rating, ticket), &mut affected);
        self.reschedule(affected);
        Ok(ticket)
    }

    /// Takes `owner` out of `queue`; false when it was not there.
    pub fn leave(&mut self, owner: O, queue: &str) -> bool {
        match self.ticket_of(owner, queue) {
            Some(t) => {
                let mut affected = std::mem::take(&mut self.affected);
                affected.clear();
                self.remove(t, &mut affected);
                self.reschedule(affected);
                true
            }
            None => false,
        }
    }

    /// Takes `owner` out of every queue (a disconnect); returns how many.
    pub fn leave_all(&mut self, owner: O) -> usize {
        let Some(tickets) = self.owners.get(&owner).cloned() else {
            return 0;
        };
        let mut affected = std::mem::take(&mut self.affected);
        affected.clear();
        for t in &tickets {
            self.remove(*t, &mut affected);
        }
        self.reschedule(affected);
        tickets.len()
    }

    /// One pass at time `now`: forms every group whose time has come (the
    /// longest-waiting player first), then times out players past their
    /// deadline. Events are appended to `out`.
    pub fn run(&mut self, now: u64, out: &mut Vec<Event<O>>) {
        let mut due = BTreeSet::new();
        let mut group = Vec::new();
        loop {
            while let Some(&(t, ticket)) = self.ready.first() {
                if t > now {
                    break;
                }
                self.ready.pop_first();
                if let Some(e) = self.entries.get_mut(&ticket) {
                    e.ready = None;
                }
                due.insert(ticket);
            }
            let Some(anchor) = due.pop_first() else {
                break;
            };
            let Some(e) = self.entries.get(&anchor) else {
                continue; // taken into an earlier group in this pass
            };
            let (pool, since) = (e.pool, e.since);
            let need = self.nearest(anchor, &mut group);
            let window = self.rules.window_after(now.saturating_sub(since));
            if need.is_none_or(|need| need > window) {
                // Its neighbourhood changed since it was scheduled.
                self.schedule(anchor);
                continue;
            }
            group.push(anchor);
            group.sort_unstable();
            let queue = self.pools[pool].queue.clone();
            let mut players = Vec::with_capacity(group.len());
            let mut affected = std::mem::take(&mut self.affected);
            affected.clear();
            for &t in &group {
                if let Some(owner) = self.remove(t, &mut affected) {
                    players.push(owner);
                }
            }
            self.reschedule(affected);
            out.push(Event::Matched { queue, players });
        }
        while let Some(&(d, ticket)) = self.deadlines.first() {
            if d > now {
                break;
            }
            let queue = self
                .entries
                .get(&ticket)
                .and_then(|e| self.pools.get(e.pool))
                .map(|p| p.queue.clone());
            let mut affected = std::mem::take(&mut self.affected);
            affected.clear();
            let owner = self.remove(ticket, &mut affected);
            self.reschedule(affected);
            match (queue, owner) {
                (Some(queue), Some(owner)) => out.push(Event::Timeout { queue, owner }),
                _ => {
                    // Not reachable while the invariants hold; never loop on it.
                    self.deadlines.remove(&(d, ticket));
                }
            }
        }
    }

    /// The pool for (queue, size), created when missing. O(1).
    fn pool(&mut self, queue: &str, size: u16) -> usize {
        if let Some(list) = self.pool_of.get(queue) {
            if let Some(&(_, p)) = list.iter().find(|(s, _)| *s == size) {
                return p;
            }
        }
        let p = self.pools.insert(Pool {
            queue: queue.into(),
            size,
            by_rating: BTreeSet::new(),
        });
        self.pool_of
            .entry(queue.into())
            .or_default()
            .push((size, p));
        p
    }

    /// The `size - 1` players of `ticket`'s pool nearest to its rating (ties:
    /// earlier ticket first) into `out`; returns the farthest one's distance
    /// (0 for groups of one), or `None` when the pool is too small.
    /// O(k + log n).
    fn nearest(&self, ticket: Ticket, out: &mut Vec<Ticket>) -> Option<u64> {
        out.clear();
        let e = self.entries.get(&ticket)?;
        let pool = self.pools.get(e.pool)?;
        let want = usize::from(pool.size) - 1;
        let key = (e.rating, ticket);
        let mut left = pool.by_rating.range(..key).rev().peekable();
        let mut right = pool
            .by_rating
            .range((Bound::Excluded(key), Bound::Unbounded))
            .peekable();
        let mut far = 0;
        while out.len() < want {
            let l = left.peek().map(|&&(r, t)| (dist(r, e.rating), t));
            let r = right.peek().map(|&&(r, t)| (dist(r, e.rating), t));
            let (d, t) = match (l, r) {
                (Some(l), Some(r)) if l <= r => {
                    left.next();
                    l
                }
                (_, Some(r)) => {
                    right.next();
                    r
                }
                (Some(l), None) => {
                    left.next();
                    l
                }
                (None, None) => return None,
            };
            far = d;
            out.push(t);
        }
        Some(far)
    }

    /// Collects the `size - 1` players on each side of `key` in its pool's
    /// rating order: the only ones whose candidate group an insert or a
    /// removal at `key` can change. O(k + log n).
    fn neighbours(&self, pool: usize, key: (i32, Ticket), out: &mut Vec<Ticket>) {
        let Some(p) = self.pools.get(pool) else {
            return;
        };
        let k = usize::from(p.size) - 1;
        out.extend(p.by_rating.range(..key).rev().take(k).map(|&(_, t)| t));
        out.extend(
            p.by_rating
                .range((Bound::Excluded(key), Bound::Unbounded))
                .take(k)
                .map(|&(_, t)| t),
        );
    }

    /// Recomputes `ticket`'s ready time. O(k + log n).
    fn schedule(&mut self, ticket: Ticket) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let need = self.nearest(ticket, &mut scratch);
        self.scratch = scratch;
        let rules = self.rules;
        let Some(e) = self.entries.get_mut(&ticket) else {
            return;
        };
        if let Some(t) = e.ready.take() {
            self.ready.remove(&(t, ticket));
        }
        let at = need
            .and_then(|n| rules.wait_for(n))
            .map(|w| e.since.saturating_add(w));
        if let Some(at) = at {
            e.ready = Some(at);
            self.ready.insert((at, ticket));
        }
    }

    /// Schedules each of `tickets` once; keeps the buffer for reuse.
    fn reschedule(&mut self, mut tickets: Vec<Ticket>) {
        tickets.sort_unstable();
        tickets.dedup();
        for &t in &tickets {
            self.schedule(t);
        }
        tickets.clear();
        self.affected = tickets;
    }

    /// Removes one entry from every index; its pool's neighbours go into
    /// `affected`. An emptied pool is freed.
    fn remove(&mut self, ticket: Ticket, affected: &mut Vec<Ticket>) -> Option<O> {
        let e = self.entries.remove(&ticket)?;
        self.deadlines.remove(&(e.deadline, ticket));
        if let Some(t) = e.ready {
            self.ready.remove(&(t, ticket));
        }
        if let Some(list) = self.owners.get_mut(&e.owner) {
            list.retain(|&t| t != ticket);
            if list.is_empty() {
                self.owners.remove(&e.owner);
            }
        }
        if let Some(p) = self.pools.get_mut(e.pool) {
            p.by_rating.remove(&(e.rating, ticket));
            if p.by_rating.is_empty() {
                let p = self.pools.remove(e.pool);
                if let Some(list) = self.pool_of.get_mut(&p.queue) {
                    list.retain(|&(_, i)| i != e.pool);
                    if list.is_empty() {
                        self.pool_of.remove(&p.queue);
                    }
                }
            } else {
                self.neighbours(e.pool, (e.rating, ticket), affected);
            }
        }
        Some(e.owner)
    }

    /// Debug check of the module invariants, for tests. O(n log n).
    #[doc(hidden)]
    pub fn check(&self, now: u64) {
        let mut seen = 0;
        for (pi, p) in &self.pools {
            assert!(!p.by_rating.is_empty(), "empty pool kept");
            for &(r, t) in &p.by_rating {
                let e = &self.entries[&t];
                assert_eq!((e.pool, e.rating), (pi, r));
                seen += 1;
            }
        }
        assert_eq!(seen, self.entries.len());
        assert_eq!(self.deadlines.len(), self.entries.len());
        let mut scratch = Vec::new();
        for (&t, e) in &self.entries {
            assert!(self.deadlines.contains(&(e.deadline, t)));
            let at = self
                .nearest(t, &mut scratch)
                .and_then(|n| self.rules.wait_for(n))
                .map(|w| e.since.saturating_add(w));
            assert_eq!(e.ready, at, "ticket {t} scheduled wrong");
            if let Some(at) = at {
                assert!(self.ready.contains(&(at, t)));
                assert!(at > now, "ticket {t} left ready at {at} <= {now}");
            }
        }
        assert_eq!(
            self.ready.len(),
            self.entries.values().filter(|e| e.ready.is_some()).count()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        window: 0,
        widen_per_s: 100,
        window_max: 1000,
    };
    const LONG: u64 = 1_000_000;

    fn run(m: &mut Matcher<u32>, now: u64) -> Vec<Event<u32>> {
        let mut out = Vec::new();
        m.run(now, &mut out);
        m.check(now);
        out
    }

    fn matched(players: &[u32]) -> Event<u32> {
        Event::Matched {
            queue: "q".into(),
            players: players.to_vec(),
        }
    }

    #[test]
    fn window_rule() {
        let r = Rules {
            window: 50,
            widen_per_s: 25,
            window_max: 300,
        };
        assert_eq!(r.window_after(0), 50);
        assert_eq!(r.window_after(1000), 75);
        assert_eq!(r.window_after(1_000_000), 300);
        assert_eq!(r.wait_for(50), Some(0));
        assert_eq!(r.wait_for(75), Some(1000));
        assert_eq!(r.wait_for(76), Some(1040));
        assert_eq!(r.window_after(1040), 76);
        assert_eq!(r.window_after(1039), 75);
        assert_eq!(r.wait_for(301), None);
        let still = Rules {
            widen_per_s: 0,
            ..r
        };
        assert_eq!(still.wait_for(51), None);
    }

    #[test]
    fn pairs_form_nearest_first_as_windows_widen() {
        let mut m = Matcher::new(RULES);
        // Pairs at distance 10, 30, 60, 90; every other gap is wider.
        let ratings = [1600, 1000, 2190, 1230, 1010, 2100, 1660, 1200];
        for (i, r) in ratings.iter().enumerate() {
            m.enqueue(i as u32, "q", 2, *r, 0, LONG).unwrap();
        }
        assert!(run(&mut m, 0).is_empty());
        assert_eq!(m.next_event(), Some(100));
        assert!(run(&mut m, 99).is_empty());
        assert_eq!(run(&mut m, 100), vec![matched(&[1, 4])]);
        assert_eq!(run(&mut m, 300), vec![matched(&[3, 7])]);
        assert_eq!(run(&mut m, 600), vec![matched(&[0, 6])]);
        assert_eq!(run(&mut m, 900), vec![matched(&[2, 5])]);
        assert!(m.is_empty());
        assert_eq!(m.next_event(), None);
    }

    #[test]
    fn a_pass_late_by_a_lot_still_pairs_nearest_first() {
        let mut m = Matcher::new(RULES);
        for (i, r) in [0, 25, 35, 100].iter().enumerate() {
            m.enqueue(i as u32, "q", 2, *r, 0, LONG).unwrap();
        }
        // At 2 s every window (200) covers everyone. Ticket order decides who
        // picks first, and each picks its nearest.
        assert_eq!(run(&mut m, 2000), vec![matched(&[0, 1]), matched(&[2, 3])]);
    }

    #[test]
    fn the_longest_waiting_takes_the_newcomer() {
        let mut m = Matcher::new(Rules {
            window: 10,
            widen_per_s: 100,
            window_max: 1000,
        });
        m.enqueue(1, "q", 2, 1000, 0, LONG).unwrap();
        m.enqueue(2, "q", 2, 1300, 0, LONG).unwrap();
        assert!(run(&mut m, 0).is_empty());
        // At 2 s player 1's window is 210: a newcomer at 1150 is 150 from
        // player 1 and 150 from player 2; player 1 came first and takes it.
        m.enqueue(3, "q", 2, 1150, 2000, LONG).unwrap();
        assert_eq!(run(&mut m, 2000), vec![matched(&[1, 3])]);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn groups_of_three_and_one() {
        let mut m = Matcher::new(Rules {
            window: 20,
            widen_per_s: 0,
            window_max: 20,
        });
        m.enqueue(1, "q", 3, 100, 0, LONG).unwrap();
        m.enqueue(2, "q", 3, 110, 0, LONG).unwrap();
        m.enqueue(9, "q", 2, 105, 0, LONG).unwrap(); // another size: another pool
        assert!(run(&mut m, 0).is_empty());
        m.enqueue(3, "q", 3, 121, 1, LONG).unwrap();
        // 1's group is {2, 3} at distance 21 > 20; 2's is {1, 3} at 11.
        assert_eq!(run(&mut m, 1), vec![matched(&[1, 2, 3])]);
        m.enqueue(4, "solo", 1, 0, 2, LONG).unwrap();
        assert_eq!(
            run(&mut m, 2),
            vec![Event::Matched {
                queue: "solo".into(),
                players: vec![4]
            }]
        );
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn timeout_at_the_deadline_and_not_before() {
        let mut m = Matcher::new(RULES);
        m.enqueue(1, "q", 2, 0, 10, 500).unwrap();
        assert_eq!(m.next_event(), Some(510));
        assert!(run(&mut m, 509).is_empty());
        assert_eq!(
            run(&mut m, 510),
            vec![Event::Timeout {
                queue: "q".into(),
                owner: 1
            }]
        );
        assert!(m.is_empty());
        // wait 0: one chance at entry.
        m.enqueue(1, "q", 2, 0, 20, 0).unwrap();
        m.enqueue(2, "q", 2, 0, 20, 0).unwrap();
        assert_eq!(run(&mut m, 20), vec![matched(&[1, 2])]);
    }

    #[test]
    fn leave_and_leave_all_and_double_enqueue() {
        let mut m = Matcher::new(RULES);
        m.enqueue(1, "q", 2, 0, 0, LONG).unwrap();
        assert_eq!(
            m.enqueue(1, "q", 4, 0, 0, LONG),
            Err(EnqueueError::AlreadyQueued)
        );
        m.enqueue(1, "other", 2, 0, 0, LONG).unwrap();
        assert_eq!(m.queued(1), 2);
        assert!(m.leave(1, "q"));
        assert!(!m.leave(1, "q"));
        m.check(0);
        m.enqueue(2, "other", 2, 900, 0, LONG).unwrap();
        assert_eq!(m.leave_all(1), 1);
        m.check(0);
        assert_eq!(m.queued(1), 0);
        // Player 2 alone now: no group ever, only its timeout is pending.
        assert_eq!(m.next_event(), Some(LONG));
        assert!(run(&mut m, 100_000).is_empty());
    }

    /// A small xorshift, so the randomized test needs no dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Random enqueues, leaves and passes: after each pass no player's group
    /// can form (checked against a scan of its whole pool), every group has
    /// one pool's size and lies within the window of one of its players.
    #[test]
    fn randomized_against_a_scan() {
        let rules = Rules {
            window: 5,
            widen_per_s: 40,
            window_max: 200,
        };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut m: Matcher<u32> = Matcher::new(rules);
        let mut info: HashMap<u32, (i32, u64, u16, &'static str)> = HashMap::new();
        let mut now = 0;
        let mut next_owner = 0;
        let (mut groups, mut timeouts) = (0, 0);
        for _ in 0..3000 {
            now += rng.next() % 40;
            match rng.next() % 10 {
                0..=5 => {
                    let size = [1u16, 2, 2, 3, 4][(rng.next() % 5) as usize];
                    let queue = ["a", "b"][(rng.next() % 2) as usize];
                    let rating = (rng.next() % 1000) as i32 - 500;
                    let wait = rng.next() % 5000;
                    next_owner += 1;
                    m.enqueue(next_owner, queue, size, rating, now, wait)
                        .unwrap();
                    info.insert(next_owner, (rating, now, size, queue));
                }
                6 => {
                    let o = (rng.next() % (next_owner as u64 + 1)) as u32;
                    m.leave_all(o);
                }
                _ => {}
            }
            let mut out = Vec::new();
            m.run(now, &mut out);
            m.check(now);
            for ev in out {
                match ev {
                    Event::Matched { queue, players } => {
                        groups += 1;
                        let ps: Vec<_> = players.iter().map(|p| info[p]).collect();
                        assert!(ps.iter().all(|p| p.2 as usize == players.len()));
                        assert!(ps.iter().all(|p| *p.3 == *queue));
                        let fits = ps.iter().any(|a| {
                            let w = rules.window_after(now - a.1);
                            ps.iter().all(|b| dist(a.0, b.0) <= w)
                        });
                        assert!(fits, "group {players:?} {ps:?} at {now}");
                    }
                    Event::Timeout { owner, .. } => {
                        timeouts += 1;
                        let (_, since, _, _) = info[&owner];
                        assert!(now >= since);
                    }
                }
            }
            // No group can form now: a scan of every pool.
            for e in m.entries.values() {
                let p = &m.pools[e.pool];
                let mut d: Vec<u64> = p
                    .by_rating
                    .iter()
                    .filter(|&&(_, t)| m.entries[&t].owner != e.owner)
                    .map(|&(r, _)| dist(r, e.rating))
                    .collect();
                d.sort_unstable();
                let k = usize::from(p.size) - 1;
                if d.len() >= k {
                    let need = if k == 0 { 0 } else { d[k - 1] };
                    assert!(
                        need > rules.window_after(now - e.since),
                        "a group could form at {now}"
                    );
                }
            }
        }
        assert!(
            groups > 300 && timeouts > 50,
            "{groups} groups, {timeouts} timeouts"
        );
    }
}
