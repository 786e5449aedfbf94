//! Exponential backoff with jitter between the attempts of one upload.
//!
//! Pure: the schedule is a function of the attempt number and a jitter
//! value the caller draws ([`Jitter`]), so it is tested without a clock.

use std::time::Duration;

/// The retry schedule: the wait after failed attempt `n` (0-based) is
/// `min(max, base · 2ⁿ)` scaled by a jitter factor in `[½, 1)` ("equal
/// jitter": never less than half the exponential step, so retries from
/// many servers spread out but still back off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait's ceiling.
    pub base: Duration,
    /// The ceiling of every wait.
    pub max: Duration,
}

impl Default for Backoff {
    /// 30 s doubling up to 1 hour.
    fn default() -> Backoff {
        Backoff {
            base: Duration::from_secs(30),
            max: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The wait after failed attempt `attempt` (0 for the first), given
    /// a jitter draw `jitter` in `[0, 1)` (values outside are clamped).
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let step = self
            .base
            .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        let j = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        step.mul_f64(0.5 + j / 2.0).min(self.max)
    }
}

/// Where the jitter comes from: a small xorshift generator, seeded from
/// the standard library's random hasher keys (no crate for eight bytes of
/// noise), or fixed by a test.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// A generator seeded at random.
    pub fn random() -> Jitter {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Jitter::seeded(seed)
    }

    /// A generator with a given seed (tests).
    pub fn seeded(seed: u64) -> Jitter {
        Jitter(seed | 1)
    }

    /// The next draw in `[0, 1)`.
    pub fn draw(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_secs(30),
        max: Duration::from_secs(3600),
    };

    #[test]
    fn doubles_from_base_then_caps_at_max() {
        // jitter 0: half of each step; jitter → 1: the whole step.
        let lows: Vec<u64> = (0..9).map(|n| B.delay(n, 0.0).as_secs()).collect();
        assert_eq!(lows, [15, 30, 60, 120, 240, 480, 960, 1800, 1800]);
        assert_eq!(B.delay(0, 0.999_999).as_millis(), 29_999);
        assert_eq!(B.delay(3, 0.5), Duration::from_secs(180));
        assert_eq!(B.delay(7, 0.999_999).as_secs(), 3599);
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        for n in [31, 32, 63, 64, 1000, u32::MAX] {
            let d = B.delay(n, 0.75);
            assert!(d <= B.max && d >= B.max / 2, "{n}: {d:?}");
        }
    }

    #[test]
    fn odd_jitter_is_clamped() {
        assert_eq!(B.delay(0, -3.0), Duration::from_secs(15));
        assert_eq!(B.delay(0, f64::NAN), Duration::from_secs(15));
        assert_eq!(B.delay(0, 7.0), Duration::from_secs(30));
    }

    #[test]
    fn jitter_draws_stay_in_range_and_vary() {
        let mut j = Jitter::seeded(42);
        let draws: Vec<f64> = (0..1000).map(|_| j.draw()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let first = draws[0];
        assert!(draws.iter().any(|d| (d - first).abs() > 0.1));
    }
}
