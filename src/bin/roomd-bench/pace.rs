//! Pacing of connection opening: at most `rate` per second (0 = unpaced) and
//! at most `max_inflight` connects or upgrades outstanding at once.

pub struct Opener {
    total: usize,
    next: usize,
    ns_per_conn: f64,
    start: u64,
    max_inflight: usize,
}

impl Opener {
    pub fn new(total: usize, rate: f64, max_inflight: usize, start: u64) -> Opener {
        Opener {
            total,
            next: 0,
            ns_per_conn: if rate > 0.0 { 1e9 / rate } else { 0.0 },
            start,
            max_inflight: max_inflight.max(1),
        }
    }

    /// How many connections may be started now, given `inflight` outstanding.
    pub fn due(&self, now: u64, inflight: usize) -> usize {
        let left = self.total - self.next;
        let room = self.max_inflight.saturating_sub(inflight);
        let by_rate = if self.ns_per_conn > 0.0 {
            let allowed = ((now.saturating_sub(self.start)) as f64 / self.ns_per_conn) as usize + 1;
            allowed.saturating_sub(self.next)
        } else {
            usize::MAX
        };
        left.min(room).min(by_rate)
    }

    /// Index of the next connection to start (call only `due` times).
    pub fn take(&mut self) -> usize {
        let i = self.next;
        self.next += 1;
        i
    }

    pub fn done(&self) -> bool {
        self.next >= self.total
    }

    /// When the loop must wake to start the next connection: only when the
    /// rate, not the in-flight limit, holds it back (an in-flight slot frees
    /// on a socket event, which wakes the loop anyway).
    pub fn next_at(&self, inflight: usize) -> Option<u64> {
        if self.done() || inflight >= self.max_inflight || self.ns_per_conn == 0.0 {
            return None;
        }
        Some(self.start + (self.next as f64 * self.ns_per_conn) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paced_by_rate_and_inflight() {
        let mut o = Opener::new(10, 1000.0, 4, 0);
        // At t=0 one connection is allowed by the rate.
        assert_eq!(o.due(0, 0), 1);
        o.take();
        assert_eq!(o.next_at(1), Some(1_000_000));
        // 10 ms later the rate allows all, the in-flight limit only 4.
        assert_eq!(o.due(10_000_000, 0), 4);
        assert_eq!(o.due(10_000_000, 4), 0);
        assert_eq!(o.next_at(4), None);
    }

    #[test]
    fn unpaced_opens_up_to_the_limit() {
        let mut o = Opener::new(3, 0.0, 100, 0);
        assert_eq!(o.due(0, 0), 3);
        for _ in 0..3 {
            o.take();
        }
        assert!(o.done());
        assert_eq!(o.due(0, 0), 0);
    }
}
