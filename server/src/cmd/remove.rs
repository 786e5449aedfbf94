//! REMOVE / REMOVE_HANDLE (lmremove): an admin checks licenses in; and
//! BORROW_RETURN (`tallyctl borrow return`): an admin ends borrows early.

use bytes::BytesMut;
use tally_core::engine::InstanceId;

use super::{Ctx, Effects};
use crate::debuglog::{Action, Event, FeatureRef};
use crate::protocol::{remove_display_matches, Reply};

/// Which instances an admin removal picks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pick<'a> {
    /// lmremove's `feature user host display`.
    Names {
        user: &'a str,
        host: &'a str,
        display: &'a str,
    },
    /// lmremove -h: the numeric license handle.
    Ticket(u64),
    /// BORROW_RETURN's `feature user host [display]`: the holder's
    /// borrowed licenses only (any display when none is given).
    Borrowed {
        user: &'a str,
        host: &'a str,
        display: Option<&'a str>,
    },
}

/// Checks in the feature's instances `pick` selects, logging each as
/// lmremove does (`REMOVING`, then the `IN`; a borrow's return is one
/// `IN ... (BORROW RETURNED)`).
pub(crate) fn remove(
    cx: &mut Ctx,
    feature: &str,
    pick: Pick<'_>,
    now: u64,
    out: &mut BytesMut,
    fx: &mut Effects,
) {
    let Some(fid) = cx.engine.feature_id(feature) else {
        let _ = Reply::NoSuchFeature { feature }.write_to(out);
        return;
    };
    // One visit of the table, keeping only the holders `pick` selects
    // (a few), then released in the order a snapshot listed them: pool
    // (a feature's pools have ids in file order), first checkout, ticket.
    let mut picked: Vec<(u32, u64, u64, InstanceId)> = Vec::new();
    cx.engine.for_each_holder(|h| {
        if h.feature != fid {
            return;
        }
        let (user, host, shown) = (h.holder.user(), h.holder.host(), h.holder.display());
        let selected = match pick {
            Pick::Names {
                user: u,
                host: m,
                display,
            } => user == u && host == m && remove_display_matches(shown, host, display),
            Pick::Ticket(t) => h.ticket() == t,
            Pick::Borrowed {
                user: u,
                host: m,
                display,
            } => {
                h.borrowed
                    && user == u
                    && host == m
                    && display.map_or(true, |d| remove_display_matches(shown, host, d))
            }
        };
        if selected {
            picked.push((h.pool.0, h.since_ms, h.ticket(), h.id));
        }
    });
    picked.sort_unstable_by_key(|&(pool, since, ticket, _)| (pool, since, ticket));
    let mut removed = 0;
    for (_, _, _, id) in picked {
        let Some(r) = cx.engine.release(id) else {
            continue;
        };
        removed += 1;
        if let Pick::Borrowed { .. } = pick {
            let batch = cx.released(&r, crate::metrics::Cause::BorrowReturn, now, fx);
            fx.gate(batch);
        } else {
            fx.log.push(Event::License {
                at_ms: now,
                action: Action::Removing,
                feature: FeatureRef::Id(fid),
                holder: r.holder,
                count: r.count,
                debug: true,
            });
            let batch = cx.released(&r, crate::metrics::Cause::Remove, now, fx);
            fx.gate(batch);
        }
    }
    let reply = match pick {
        Pick::Ticket(ticket) if removed == 0 => Reply::NoSuchTicket { feature, ticket },
        Pick::Borrowed { .. } => Reply::Returned(removed),
        _ => Reply::Removed(removed),
    };
    let _ = reply.write_to(out);
}
