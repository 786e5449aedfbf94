//! Denials in the last hour and the last day: per loop, a ring of
//! per-minute counts, written by that loop only.
//!
//! Slot `m % MINUTES` holds minute `m` (minutes since the Unix epoch, of the
//! server's clock) in its high 32 bits and that minute's count in its low
//! 32; the writer keeps the count when the slot is still its minute and
//! starts it over at 1 otherwise (a load and a store, no read-modify-write,
//! as the other counters). A reader sums the slots whose minute lies in
//! the window, so "the last hour" is the current minute and the 59 before
//! it: exact to the minute at its old end, never more than one minute
//! longer than an hour. A minute ahead of the reader's (the clock stepped
//! back) is not counted.

use std::sync::atomic::{AtomicU64, Ordering};

/// Minutes the ring keeps: one day.
pub(crate) const MINUTES: usize = 24 * 60;

/// Milliseconds in a minute.
const MINUTE_MS: u64 = 60_000;

/// One loop's ring of per-minute counts.
#[derive(Debug)]
pub(crate) struct MinuteRing {
    slots: Box<[AtomicU64]>,
}

impl Default for MinuteRing {
    fn default() -> MinuteRing {
        MinuteRing {
            slots: (0..MINUTES).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// Counts in a trailing window, summed over loops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recent {
    /// The current minute and the 59 before it.
    pub(crate) hour: u64,
    /// The current minute and the 1 439 before it.
    pub(crate) day: u64,
}

impl MinuteRing {
    /// Counts one at `now_ms`. Only the owning loop calls this.
    #[inline]
    pub(crate) fn count(&self, now_ms: u64) {
        let minute = now_ms / MINUTE_MS;
        let slot = &self.slots[(minute % MINUTES as u64) as usize];
        let v = slot.load(Ordering::Relaxed);
        let next = if v >> 32 == minute && v as u32 != u32::MAX {
            v + 1
        } else if v >> 32 == minute {
            v // saturated: 4 billion in one minute
        } else {
            (minute << 32) | 1
        };
        slot.store(next, Ordering::Relaxed);
    }

    /// Adds this ring's counts of the windows ending at `now_ms` to `sum`.
    pub(crate) fn add_to(&self, now_ms: u64, sum: &mut Recent) {
        let now = now_ms / MINUTE_MS;
        for slot in self.slots.iter() {
            let v = slot.load(Ordering::Relaxed);
            let (minute, n) = (v >> 32, v & u64::from(u32::MAX));
            if n == 0 || minute > now {
                continue;
            }
            let age = now - minute;
            if age < 60 {
                sum.hour += n;
            }
            if age < MINUTES as u64 {
                sum.day += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recent(r: &MinuteRing, now: u64) -> Recent {
        let mut s = Recent::default();
        r.add_to(now, &mut s);
        s
    }

    #[test]
    fn counts_fall_out_of_the_hour_then_the_day() {
        let r = MinuteRing::default();
        let t0 = 1_000 * MINUTE_MS + 5;
        r.count(t0);
        r.count(t0 + 1);
        r.count(t0 + MINUTE_MS); // the next minute
        assert_eq!(recent(&r, t0 + MINUTE_MS), Recent { hour: 3, day: 3 });
        // 59 minutes on: the first minute is the window's oldest.
        assert_eq!(recent(&r, t0 + 59 * MINUTE_MS), Recent { hour: 3, day: 3 });
        assert_eq!(recent(&r, t0 + 60 * MINUTE_MS), Recent { hour: 1, day: 3 });
        assert_eq!(recent(&r, t0 + 61 * MINUTE_MS), Recent { hour: 0, day: 3 });
        let day = MINUTES as u64 * MINUTE_MS;
        assert_eq!(recent(&r, t0 + day), Recent { hour: 0, day: 1 });
        assert_eq!(recent(&r, t0 + day + MINUTE_MS), Recent::default());
    }

    #[test]
    fn a_minute_a_day_later_takes_the_slot_over() {
        let r = MinuteRing::default();
        let t0 = 7 * MINUTE_MS;
        r.count(t0);
        r.count(t0);
        let later = t0 + MINUTES as u64 * MINUTE_MS; // same slot
        r.count(later);
        assert_eq!(recent(&r, later), Recent { hour: 1, day: 1 });
        // Read with a clock behind the writer's: the future minute is left out.
        assert_eq!(recent(&r, t0), Recent::default());
    }
}
