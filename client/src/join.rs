//! The join of online and offline: what a program does with the cache
//! ([`crate::offline`]) while a server answers.
//!
//! - [`refresh`] after a successful contact: fetches `PICTURE` and stores
//!   it through [`Offline::contact`] (the cache file is rewritten, atomically,
//!   only when the terms changed; the contact time is recorded in the side
//!   file, which is what grace is measured from). A server without
//!   PICTURE (`ERR UNKNOWN_COMMAND`) is [`Refresh::Unsupported`]: nothing is
//!   stored and nothing recorded, and the online path goes on.
//! - [`reconcile`] when a server answers again after an outage: one
//!   `RECONCILE` per pending offline admission, each marked reconciled in
//!   the side file once the server has answered for it (`RECONCILED`,
//!   `OVERDRAFT` or `DUPLICATE`). An admission is marked only after the
//!   server's answer, so a crash or a lost reply leaves it pending and the
//!   next reconcile sends it again: the server knows the id and answers
//!   `DUPLICATE`, counting nothing twice. A `DENIED` answer is final (the
//!   server judges eligibility at reconcile time: a session admitted
//!   before an expiry is refused after it): the admission is marked
//!   `rejected` (it leaves the count and is not sent again) and reported
//!   `REJECTED <feature> <handle> <REASON> ...`.
//!
//! Both work through [`Licensing`], which [`crate::Client`] implements.

use std::fmt;
use std::path::Path;

use tally_core::clock::Millis;

use crate::addr::ServerAddr;
use crate::agent::Licensing;
use crate::cache::{Identity, Stored};
use crate::client::{ClientError, Reconciled};
use crate::grace::rfc3339;
use crate::offline::{Admission, Durability, Offline, OfflineError};
use crate::proto::ErrCode;

/// What went wrong in [`refresh`].
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The server failed or answered wrongly.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The cache or its side file could not be written or read.
    #[error(transparent)]
    Offline(#[from] OfflineError),
}

/// What [`refresh`] did.
#[derive(Debug)]
pub enum Refresh {
    /// The picture is stored (`stored` says whether the file was rewritten)
    /// and the contact recorded; `offline` is the cache's state now.
    Stored {
        /// The cache and its side file.
        offline: Box<Offline>,
        /// Rewritten or unchanged.
        stored: Stored,
    },
    /// The server does not know `PICTURE` (`ERR UNKNOWN_COMMAND`): the
    /// cache is not refreshed.
    Unsupported {
        /// The server.
        server: ServerAddr,
    },
}

/// After a successful contact at `now`: fetches `PICTURE` and stores it in
/// the cache at `cache_path` ([module docs](self)).
pub fn refresh<L: Licensing>(
    lic: &mut L,
    cache_path: &Path,
    identity: &Identity,
    now: Millis,
    durability: Durability,
) -> Result<Refresh, JoinError> {
    let picture = match lic.picture() {
        Ok(p) => p,
        Err(ClientError::Server {
            server,
            code: ErrCode::UnknownCommand,
            ..
        }) => return Ok(Refresh::Unsupported { server }),
        Err(e) => return Err(e.into()),
    };
    let (offline, stored) = Offline::contact(cache_path, &picture, identity, now, durability)?;
    Ok(Refresh::Stored {
        offline: Box::new(offline),
        stored,
    })
}

/// One admission reported, and what the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The admission.
    pub admission: Admission,
    /// The server's answer; an error leaves the admission pending.
    pub result: Result<Reconciled, ClientError>,
}

impl fmt::Display for Outcome {
    /// One line: `RECONCILED ...`, `OVERDRAFT ... excess N`, `DUPLICATE
    /// ...` or `FAILED ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.admission;
        let who = format!(
            "{}@{} started {} id {}",
            a.user,
            a.host,
            rfc3339(a.start_ms),
            a.id
        );
        match &self.result {
            Ok(Reconciled::Counted { deadline_ms, .. }) => write!(
                f,
                "RECONCILED {} {} {who} deadline {deadline_ms}",
                a.feature, a.handle
            ),
            Ok(Reconciled::Overdraft {
                deadline_ms,
                excess,
                ..
            }) => write!(
                f,
                "OVERDRAFT {} {} {who} deadline {deadline_ms} excess {excess}",
                a.feature, a.handle
            ),
            Ok(Reconciled::Duplicate { .. }) => write!(
                f,
                "DUPLICATE {} {} {who} (recorded before: counted once)",
                a.feature, a.handle
            ),
            Err(ClientError::Denied {
                reason,
                flexlm_code,
                text,
                ..
            }) => write!(
                f,
                "REJECTED {} {} {reason} {who}: {flexlm_code} {text} (not counted, not sent again)",
                a.feature, a.handle
            ),
            Err(e) => write!(
                f,
                "FAILED {} {} {who}: {e} (left pending)",
                a.feature, a.handle
            ),
        }
    }
}

/// What [`reconcile`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// One per admission reported, in order.
    pub outcomes: Vec<Outcome>,
    /// Set when the server stopped answering: the admissions after the
    /// last outcome were not sent (they stay pending).
    pub stopped: Option<ClientError>,
    /// Admissions still pending afterwards.
    pub left: usize,
}

impl Report {
    /// `(within count, overdraft, duplicate, failed)`; rejected ones are
    /// [`Report::rejected`].
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut c = (0, 0, 0, 0);
        for o in &self.outcomes {
            match o.result {
                Ok(Reconciled::Counted { .. }) => c.0 += 1,
                Ok(Reconciled::Overdraft { .. }) => c.1 += 1,
                Ok(Reconciled::Duplicate { .. }) => c.2 += 1,
                Err(ClientError::Denied { .. }) => {}
                Err(_) => c.3 += 1,
            }
        }
        c
    }

    /// Admissions the server refused for good (`DENIED`).
    pub fn rejected(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.result, Err(ClientError::Denied { .. })))
            .count()
    }

    /// Licenses reconciled beyond their pools' counts: the sum of the
    /// `OVERDRAFT` replies' excesses (a reply's excess is its session's
    /// licenses beyond the count).
    pub fn excess(&self) -> u64 {
        self.outcomes
            .iter()
            .filter_map(|o| match o.result {
                Ok(Reconciled::Overdraft { excess, .. }) => Some(u64::from(excess)),
                _ => None,
            })
            .sum()
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        let (counted, over, dup, failed) = self.counts();
        let mut s = format!(
            "reconciled {} offline admissions: {counted} within the count, {over} overdraft \
             ({} licenses beyond the count), {dup} duplicate, {} rejected, {failed} failed; \
             {} pending",
            counted + over + dup,
            self.excess(),
            self.rejected(),
            self.left
        );
        if let Some(e) = &self.stopped {
            s.push_str(&format!(" (stopped: {e})"));
        }
        s
    }
}

/// Reports every pending admission of `offline` ([module docs](self)).
/// An error is the side file's (an answered admission could not be marked;
/// it is sent again next time and answered `DUPLICATE`).
pub fn reconcile<L: Licensing>(lic: &mut L, offline: &mut Offline) -> Result<Report, OfflineError> {
    let pending: Vec<Admission> = offline.pending().into_iter().cloned().collect();
    let mut report = Report::default();
    for a in pending {
        match lic.reconcile(&a) {
            Ok(r) => {
                offline.mark_reconciled(&a.id)?;
                report.outcomes.push(Outcome {
                    admission: a,
                    result: Ok(r),
                });
            }
            Err(e) if e.is_unreachable() => {
                report.stopped = Some(e);
                break;
            }
            Err(e @ ClientError::Denied { .. }) => {
                // Final: the server judged it (an expiry since, a feature
                // gone...). Not counted there, so not here either.
                if let ClientError::Denied { reason, .. } = &e {
                    offline.mark_rejected(&a.id, reason)?;
                }
                report.outcomes.push(Outcome {
                    admission: a,
                    result: Err(e),
                });
            }
            Err(e) => report.outcomes.push(Outcome {
                admission: a,
                result: Err(e),
            }),
        }
    }
    report.left = offline.pending().len();
    Ok(report)
}

#[cfg(test)]
mod tests;
