//! A recorded history: the operations on one feature, with the times a
//! client sent each request and read its reply, and what the reply said.
//!
//! The text form (what [`History::parse`] reads and `Display` writes), one
//! item a line, `#` to the end of a line a comment:
//!
//! ```text
//! limit 2                          # the feature's count (required, first)
//! held h0 h9                       # handles held when recording began (optional)
//! # client kind     handle invoked responded outcome
//! 1        checkout h1     100     120       granted
//! 2        checkin  h0     105     130       released
//! 3        checkout h2     110     140       denied
//! 4        checkout h3     115     900       unknown
//! 5        checkin  h1     120     300       unknown 2000   # settled by 2000
//! 0        expiry   h1     200     250       released
//! ```

use std::collections::HashSet;
use std::fmt;

/// What an operation did to its handle's instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `CHECKOUT` of the handle: takes a seat if the handle holds none
    /// (a handle already held is renewed and takes no second seat).
    Checkout,
    /// `CHECKIN` of the handle.
    Checkin,
    /// The server released the handle's instance by itself (its linger
    /// ran out, or an admin removed it), as observed by the recorder: the
    /// interval runs from the earliest moment it can have happened (the
    /// deadline) to the moment it was seen (a STATUS poll, a log line).
    Expiry,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Checkout => "checkout",
            Kind::Checkin => "checkin",
            Kind::Expiry => "expiry",
        }
    }
}

/// What the reply said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A checkout's `GRANTED` (a new instance or a renewal).
    Granted,
    /// A checkout's `DENIED ALL_IN_USE`: every seat was out. Record only
    /// this denial reason; a request refused for any other reason (another
    /// denial reason, an `ERR`, `ERR NOT_LEADER`) did nothing and is left
    /// out of the history.
    Denied,
    /// A check-in's `OK`, or an observed expiry: the handle was held and is
    /// not any more.
    Released,
    /// A check-in's `ERR NOT_HELD`: the handle held nothing.
    NotHeld,
    /// No reply: a timeout, a connection that broke, a server that was
    /// killed. The request may have taken effect, at any time after it was
    /// sent (even after the client gave up), or never.
    Unknown,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Granted => "granted",
            Outcome::Denied => "denied",
            Outcome::Released => "released",
            Outcome::NotHeld => "not_held",
            Outcome::Unknown => "unknown",
        }
    }
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Who sent it (for reports only: the model does not depend on it).
    pub client: u32,
    /// What it asked for.
    pub kind: Kind,
    /// The instance's handle (tally's identity of an instance by default).
    pub handle: String,
    /// When the request was sent (any unit, one clock for the history).
    pub invoked: u64,
    /// When the reply was read (for [`Outcome::Unknown`]: when the client
    /// gave up; the checker treats the response as never coming).
    pub responded: u64,
    /// What the reply said.
    pub outcome: Outcome,
    /// For [`Outcome::Unknown`]: the latest time it can take effect, if
    /// the test knows one ([`Op::settled_by`]); `None`: any time.
    pub settled: Option<u64>,
}

impl Op {
    /// A checkout of `handle` by `client`, sent at `invoked`, answered at
    /// `responded`.
    pub fn checkout(
        client: u32,
        handle: &str,
        invoked: u64,
        responded: u64,
        outcome: Outcome,
    ) -> Op {
        Op::new(client, Kind::Checkout, handle, invoked, responded, outcome)
    }

    /// A check-in of `handle`.
    pub fn checkin(
        client: u32,
        handle: &str,
        invoked: u64,
        responded: u64,
        outcome: Outcome,
    ) -> Op {
        Op::new(client, Kind::Checkin, handle, invoked, responded, outcome)
    }

    /// An expiry of `handle`'s instance, due from `due` and seen at `seen`.
    pub fn expiry(client: u32, handle: &str, due: u64, seen: u64) -> Op {
        Op::new(client, Kind::Expiry, handle, due, seen, Outcome::Released)
    }

    /// Any operation.
    pub fn new(
        client: u32,
        kind: Kind,
        handle: &str,
        invoked: u64,
        responded: u64,
        outcome: Outcome,
    ) -> Op {
        Op {
            client,
            kind,
            handle: handle.to_string(),
            invoked,
            responded,
            outcome,
            settled: None,
        }
    }

    /// An unknown result that can take effect only until `t` (then it has,
    /// or never will). For a request to a leader that was killed, `t` is
    /// any time by which a later leader has answered some request: a new
    /// leader commits its term's first entry before it serves, and with it
    /// every entry of an older term it will ever commit. Without a bound,
    /// every unknown result overlaps everything after it, and a failing
    /// history with many of them is expensive to search.
    pub fn settled_by(mut self, t: u64) -> Op {
        self.settled = Some(t);
        self
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.client,
            self.kind.word(),
            self.handle,
            self.invoked,
            self.responded,
            self.outcome.word()
        )?;
        match self.settled {
            Some(t) => write!(f, " {t}"),
            None => Ok(()),
        }
    }
}

/// Why an operation or a history is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryError {
    /// Responded (or settled) before it was invoked.
    Backwards {
        /// The operation's index.
        op: usize,
    },
    /// An outcome its kind cannot have (a check-in `granted`, a checkout
    /// `released`, an expiry that is not `released`), or a settle time on
    /// a known outcome.
    Mismatch {
        /// The operation's index.
        op: usize,
    },
    /// A handle that is empty or has white space (the text form could not
    /// hold it).
    BadHandle {
        /// The operation's index.
        op: usize,
    },
    /// A line of the text form that cannot be read.
    Parse {
        /// Line number, from 1.
        line: usize,
        /// What is wrong.
        what: String,
    },
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::Backwards { op } => write!(f, "op {op} responded before it was invoked"),
            HistoryError::Mismatch { op } => {
                write!(f, "op {op} has an outcome its kind cannot have")
            }
            HistoryError::BadHandle { op } => {
                write!(f, "op {op} has an empty handle or one with white space")
            }
            HistoryError::Parse { line, what } => write!(f, "line {line}: {what}"),
        }
    }
}

impl std::error::Error for HistoryError {}

/// A history of one feature with a count limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    limit: u32,
    held: Vec<String>,
    ops: Vec<Op>,
}

impl History {
    /// An empty history of a feature of `limit` seats, nothing held.
    pub fn new(limit: u32) -> History {
        History {
            limit,
            held: Vec::new(),
            ops: Vec::new(),
        }
    }

    /// These handles held a seat each when recording began (repeats count
    /// once). More than `limit` of them is a history no order can satisfy.
    pub fn with_held<S: AsRef<str>>(mut self, handles: impl IntoIterator<Item = S>) -> History {
        for h in handles {
            let h = h.as_ref().to_string();
            if !self.held.contains(&h) {
                self.held.push(h);
            }
        }
        self
    }

    /// Adds an operation (checked: times in order, an outcome of its kind,
    /// a handle of one word).
    pub fn push(&mut self, op: Op) -> Result<(), HistoryError> {
        let i = self.ops.len();
        if op.responded < op.invoked || op.settled.is_some_and(|t| t < op.invoked) {
            return Err(HistoryError::Backwards { op: i });
        }
        if op.settled.is_some() && op.outcome != Outcome::Unknown {
            return Err(HistoryError::Mismatch { op: i });
        }
        let fits = matches!(
            (op.kind, op.outcome),
            (
                Kind::Checkout,
                Outcome::Granted | Outcome::Denied | Outcome::Unknown
            ) | (
                Kind::Checkin,
                Outcome::Released | Outcome::NotHeld | Outcome::Unknown
            ) | (Kind::Expiry, Outcome::Released)
        );
        if !fits {
            return Err(HistoryError::Mismatch { op: i });
        }
        if op.handle.is_empty()
            || op.handle.chars().any(char::is_whitespace)
            || op.handle.contains('#')
        {
            return Err(HistoryError::BadHandle { op: i });
        }
        self.ops.push(op);
        Ok(())
    }

    /// A history of `limit` seats from these operations.
    pub fn from_ops(
        limit: u32,
        ops: impl IntoIterator<Item = Op>,
    ) -> Result<History, HistoryError> {
        let mut h = History::new(limit);
        for op in ops {
            h.push(op)?;
        }
        Ok(h)
    }

    /// The feature's count.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The handles held when recording began.
    pub fn held(&self) -> &[String] {
        &self.held
    }

    /// The operations, in the order they were pushed (indices are what a
    /// [`crate::Verdict`] names).
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Reads the text form (module docs).
    pub fn parse(text: &str) -> Result<History, HistoryError> {
        let mut history: Option<History> = None;
        let bad = |line: usize, what: &str| HistoryError::Parse {
            line,
            what: what.to_string(),
        };
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let words: Vec<&str> = raw
                .split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            let Some(&first) = words.first() else {
                continue;
            };
            match (first, history.as_mut()) {
                ("limit", None) => {
                    let [_, n] = words[..] else {
                        return Err(bad(line, "expected `limit N`"));
                    };
                    let n = n
                        .parse()
                        .map_err(|_| bad(line, "the limit is not a number"))?;
                    history = Some(History::new(n));
                }
                ("limit", Some(_)) => return Err(bad(line, "a second `limit`")),
                (_, None) => return Err(bad(line, "the first line must be `limit N`")),
                ("held", Some(h)) => {
                    let mut held = std::mem::take(&mut h.held);
                    for w in &words[1..] {
                        if !held.iter().any(|x| x == w) {
                            held.push(w.to_string());
                        }
                    }
                    h.held = held;
                }
                (_, Some(h)) => {
                    let (words, settled) = match words[..] {
                        [.., "unknown", t] => (&words[..words.len() - 1], Some(t)),
                        _ => (&words[..], None),
                    };
                    let [client, kind, handle, invoked, responded, outcome] = words[..] else {
                        return Err(bad(
                            line,
                            "expected `client kind handle invoked responded outcome [settled]`",
                        ));
                    };
                    let client = client
                        .parse()
                        .map_err(|_| bad(line, "the client is not a number"))?;
                    let kind = match kind {
                        "checkout" => Kind::Checkout,
                        "checkin" => Kind::Checkin,
                        "expiry" => Kind::Expiry,
                        _ => return Err(bad(line, "kind is checkout, checkin or expiry")),
                    };
                    let invoked = invoked
                        .parse()
                        .map_err(|_| bad(line, "invoked is not a number"))?;
                    let responded = responded
                        .parse()
                        .map_err(|_| bad(line, "responded is not a number"))?;
                    let outcome = match outcome {
                        "granted" => Outcome::Granted,
                        "denied" => Outcome::Denied,
                        "released" => Outcome::Released,
                        "not_held" => Outcome::NotHeld,
                        "unknown" => Outcome::Unknown,
                        _ => {
                            return Err(bad(
                                line,
                                "outcome is granted, denied, released, not_held or unknown",
                            ))
                        }
                    };
                    let mut op = Op::new(client, kind, handle, invoked, responded, outcome);
                    if let Some(t) = settled {
                        op = op.settled_by(
                            t.parse()
                                .map_err(|_| bad(line, "settled is not a number"))?,
                        );
                    }
                    h.push(op).map_err(|e| bad(line, &e.to_string()))?;
                }
            }
        }
        history.ok_or_else(|| bad(1, "no `limit N` line"))
    }

    /// The distinct handles, in order of first appearance (initially held
    /// ones first).
    pub(crate) fn handles(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for h in self
            .held
            .iter()
            .map(String::as_str)
            .chain(self.ops.iter().map(|o| o.handle.as_str()))
        {
            if seen.insert(h) {
                out.push(h);
            }
        }
        out
    }
}

impl fmt::Display for History {
    /// The text form, which [`History::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "limit {}", self.limit)?;
        if !self.held.is_empty() {
            writeln!(f, "held {}", self.held.join(" "))?;
        }
        for op in &self.ops {
            writeln!(f, "{op}")?;
        }
        Ok(())
    }
}
