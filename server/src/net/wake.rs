//! Waking at a deadline to the microsecond: a `timerfd` in the loop's poll.
//!
//! `epoll_wait` takes its timeout in whole milliseconds (mio rounds a
//! shorter `Duration` up), and the loop's clock reads whole milliseconds,
//! so a loop that only slept by its poll timeout woke anywhere up to a
//! millisecond after a linger's deadline, plus the kernel's slack. With the
//! server on the system clock, each loop instead arms one `timerfd` at its
//! next deadline (absolute `CLOCK_REALTIME`, the clock [`SystemClock`]
//! reads, so a step of the wall clock moves the timer with the deadlines)
//! and the poll wakes when it fires. The poll timeout stays, a millisecond
//! after the deadline, as the backstop: a loop never sleeps longer than it
//! did without the timer.
//!
//! The timer is re-armed only when the loop's next deadline changes (one
//! `timerfd_settime` per change, not per round). If the `timerfd` cannot
//! be made (no descriptor left: EMFILE), the loop runs on its poll timeout
//! alone, as before; nothing else depends on it.
//!
//! [`SystemClock`]: tally_core::clock::SystemClock

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// Test hook, debug builds only: when set, making a loop's `timerfd` fails
/// as with EMFILE, so the loop runs on its poll timeout alone.
pub(crate) const DEBUG_NO_TIMERFD_ENV: &str = "TALLYD_DEBUG_NO_TIMERFD";

/// The system clock in Unix microseconds.
pub(crate) fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A loop's deadline timer.
#[derive(Debug)]
pub(crate) struct DeadlineTimer {
    fd: OwnedFd,
    /// The deadline (Unix ms) it is armed at, if any.
    armed: Option<u64>,
}

impl DeadlineTimer {
    /// A disarmed timer registered with `registry` under `token`.
    pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<DeadlineTimer> {
        #[cfg(debug_assertions)]
        if std::env::var_os(DEBUG_NO_TIMERFD_ENV).is_some() {
            return Err(io::Error::from_raw_os_error(libc::EMFILE));
        }
        // SAFETY: plain syscall; the descriptor returned is owned below.
        let fd = unsafe {
            libc::timerfd_create(libc::CLOCK_REALTIME, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(DeadlineTimer { fd, armed: None })
    }

    /// Makes the timer fire at `deadline` (Unix ms) unless it already
    /// will; the poll timeout to use with it (the backstop: a millisecond
    /// after the deadline, counted from `now`).
    pub(crate) fn wait_for(&mut self, deadline: u64, now: u64) -> Duration {
        if self.armed != Some(deadline) && self.arm(deadline).is_ok() {
            self.armed = Some(deadline);
        }
        let backstop = deadline.saturating_sub(now).saturating_add(1);
        Duration::from_millis(backstop)
    }

    fn arm(&self, deadline: u64) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                // An absolute time of 0 would disarm it: 1 ns at least.
                tv_sec: (deadline / 1_000) as libc::time_t,
                tv_nsec: ((deadline % 1_000) * 1_000_000).max(1) as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not asked for.
        let r = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// It fired (its token's event): reads the expiry count so the
    /// descriptor is not left readable.
    pub(crate) fn fired(&mut self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `count`; EAGAIN is harmless.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
        self.armed = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::time::Instant;

    fn unix_ms() -> u64 {
        unix_us() / 1_000
    }

    /// The poll wakes for the timer's token at the deadline, before its
    /// backstop timeout, and not before the deadline.
    #[test]
    fn the_poll_wakes_for_the_timer_at_its_deadline() {
        let mut poll = Poll::new().expect("poll");
        let token = Token(7);
        let mut t = DeadlineTimer::new(poll.registry(), token).expect("timerfd");
        let mut events = Events::with_capacity(4);
        for _ in 0..3 {
            let now = unix_ms();
            let deadline = now + 30;
            // The backstop alone would be 31 ms away: the poll is given a
            // much longer one, so only the timer can end it in time.
            let backstop = t.wait_for(deadline, now);
            assert_eq!(backstop, Duration::from_millis(31));
            let started = Instant::now();
            let mut woke_for_timer = false;
            while started.elapsed() < Duration::from_secs(5) && !woke_for_timer {
                poll.poll(&mut events, Some(Duration::from_secs(5)))
                    .expect("poll");
                woke_for_timer = events.iter().any(|e| e.token() == token);
            }
            assert!(woke_for_timer, "the timer never fired");
            assert!(unix_ms() >= deadline, "woke before the deadline");
            t.fired();
        }
    }

    /// It remembers the deadline it is armed at (so the same deadline
    /// costs no syscall), takes a new one, and forgets it once fired.
    #[test]
    fn it_remembers_the_deadline_it_is_armed_at() {
        let poll = Poll::new().expect("poll");
        let mut t = DeadlineTimer::new(poll.registry(), Token(3)).expect("timerfd");
        let now = unix_ms();
        t.wait_for(now + 1_000, now);
        assert_eq!(t.armed, Some(now + 1_000));
        t.wait_for(now + 500, now);
        assert_eq!(t.armed, Some(now + 500));
        t.fired();
        assert_eq!(t.armed, None);
    }
}
