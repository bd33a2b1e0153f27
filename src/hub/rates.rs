//! Per-connection rate limits: token buckets on the worker's millisecond
//! clock, and the three a client connection has (PROTOCOL.md "Limits").

use std::time::Instant;

/// A token bucket: `rate` tokens per second, holding at most `rate` (one
/// second of burst). O(1), no timer: it refills when asked. Time is the
/// worker's millisecond clock ([`millis`]); 8 bytes.
pub struct Bucket {
    tokens: f32,
    /// When it was last refilled.
    last: u32,
}

/// Milliseconds from `epoch` to `now`, wrapping after about 49 days (a
/// bucket measures at most a second, so a wrap costs at most one partial
/// refill).
pub fn millis(epoch: Instant, now: Instant) -> u32 {
    now.saturating_duration_since(epoch).as_millis() as u32
}

impl Bucket {
    pub fn full(rate: u32, now_ms: u32) -> Self {
        Bucket {
            tokens: rate as f32,
            last: now_ms,
        }
    }

    /// The tokens it holds at `now_ms` (refilled to then).
    pub fn left(&self, now_ms: u32, rate: u32) -> f32 {
        let dt = now_ms.wrapping_sub(self.last) as f32 / 1000.0;
        (self.tokens + dt * rate as f32).min(rate as f32)
    }

    /// Takes `n` tokens if there are that many; `rate` 0 means unlimited.
    /// A request larger than the whole burst is allowed when the bucket is
    /// full (and empties it), so a limit never refuses one item forever.
    pub fn take(&mut self, now_ms: u32, rate: u32, n: u32) -> bool {
        if rate == 0 {
            return true;
        }
        let rate = rate as f32;
        let dt = now_ms.wrapping_sub(self.last) as f32 / 1000.0;
        self.last = now_ms;
        self.tokens = (self.tokens + dt * rate).min(rate);
        let n = (n as f32).min(rate);
        if self.tokens < n {
            return false;
        }
        self.tokens -= n;
        true
    }
}

/// A connection's rate limits (`--rate-limit`, `--create-rate`,
/// `--pub-bytes-rate`): 24 bytes, kept with the connection and handed to
/// the core with each of its requests.
pub struct Rates {
    /// Requests per second.
    pub requests: Bucket,
    /// Rooms created per second.
    pub creates: Bucket,
    /// `pub`/`send` data bytes per second.
    pub pub_bytes: Bucket,
}

impl Rates {
    pub fn full(cfg: &crate::Config, now_ms: u32) -> Self {
        Rates {
            requests: Bucket::full(cfg.rate_limit, now_ms),
            creates: Bucket::full(cfg.create_rate, now_ms),
            pub_bytes: Bucket::full(cfg.pub_bytes_rate, now_ms),
        }
    }

    /// The tokens each bucket holds at `now_ms`, as `f32` bits: what a
    /// connection moving to another worker takes along (clocks differ
    /// between workers; time left in a bucket does not).
    pub fn export(&self, cfg: &crate::Config, now_ms: u32) -> [u32; 3] {
        [
            self.requests.left(now_ms, cfg.rate_limit).to_bits(),
            self.creates.left(now_ms, cfg.create_rate).to_bits(),
            self.pub_bytes.left(now_ms, cfg.pub_bytes_rate).to_bits(),
        ]
    }

    /// Buckets holding what [`Rates::export`] said, at `now_ms` of this
    /// worker's clock (a value that is not a number of tokens reads as 0).
    pub fn import(bits: [u32; 3], now_ms: u32) -> Self {
        let bucket = |b: u32| {
            let t = f32::from_bits(b);
            Bucket {
                tokens: if t.is_finite() { t.max(0.0) } else { 0.0 },
                last: now_ms,
            }
        };
        Rates {
            requests: bucket(bits[0]),
            creates: bucket(bits[1]),
            pub_bytes: bucket(bits[2]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_by_the_millisecond() {
        let mut b = Bucket::full(1000, 5);
        assert!(b.take(5, 1000, 1000), "a full second's burst");
        assert!(!b.take(5, 1000, 1), "then nothing");
        assert!(!b.take(5, 1000, 1));
        assert!(b.take(6, 1000, 1), "one token a millisecond");
        assert!(!b.take(6, 1000, 1));
        assert!(b.take(1006, 1000, 1000), "a second refills it whole");
        assert!(b.take(u32::MAX, 1000, 1), "the clock may wrap");
        assert!(b.take(100, 1000, 100), "across the wrap");
        assert!(Bucket::full(0, 0).take(0, 0, u32::MAX), "rate 0: unlimited");
        assert!(
            Bucket::full(10, 0).take(0, 10, 50),
            "one item over the burst, when full"
        );
    }
}
