//! Recording a history from a test's client threads.

use std::sync::Mutex;
use std::time::Instant;

use crate::history::{History, HistoryError, Op};

/// One clock and one list for every client thread of a test: each thread
/// reads [`Recorder::now`] before it sends a request and after it reads
/// the reply, and pushes the operation. Times are microseconds since the
/// recorder was made (a monotonic clock, so they order across threads).
///
/// ```
/// use tally_check::{Checker, Op, Outcome, Recorder};
///
/// let rec = Recorder::new();
/// std::thread::scope(|s| {
///     for client in 0..2u32 {
///         let rec = &rec;
///         s.spawn(move || {
///             let sent = rec.now();
///             // ... CHECKOUT over the wire; here every client is granted ...
///             let read = rec.now();
///             rec.push(Op::checkout(client, &format!("h{client}"), sent, read, Outcome::Granted));
///         });
///     }
/// });
/// let history = rec.history(2)?;
/// assert!(Checker::new().check(&history).is_linearizable());
/// # Ok::<(), tally_check::HistoryError>(())
/// ```
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Microseconds since the recorder was made.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Records an operation (checked when the history is made).
    pub fn push(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    /// The history of everything recorded, of a feature of `limit` seats,
    /// ordered by invocation (the order does not matter to the checker;
    /// it makes the text form readable).
    pub fn history(&self, limit: u32) -> Result<History, HistoryError> {
        let mut ops = self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone();
        ops.sort_by_key(|o| (o.invoked, o.responded, o.client));
        History::from_ops(limit, ops)
    }
}
