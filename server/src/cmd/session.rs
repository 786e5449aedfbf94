//! A connection's session: what the commands know about the client on the
//! other end (everything of a connection that is not its socket or its
//! buffers).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tally_core::engine::{Engine, FeatureId, HolderBuf, InstanceId};

/// Names (user, host) a connection remembers having checked out as; a
/// client multiplexing more users must name the holder in CHECKIN.
pub(crate) const MAX_IDENTITIES: usize = 16;

/// NOT_HOLDER refusals after which a connection is closed: a holder never
/// gets one, a client trying handles it does not hold gets a few.
pub(crate) const MAX_NOT_HOLDER: u32 = 3;

/// A license this connection checked out (for disconnect and CHECKIN).
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) id: InstanceId,
    pub(crate) feature: FeatureId,
    /// Under DUP_GROUP: the handles (in full) of this connection's uses of
    /// the shared instance, each ended on its own (`uses.rs`), and whether
    /// the use is bound (its latest checkout had no linger). Empty for a
    /// handle's own instance.
    pub(crate) handles: Vec<(Box<str>, bool)>,
}

impl Held {
    /// This connection's uses of the instance.
    pub(crate) fn uses(&self) -> u32 {
        (self.handles.len() as u32).max(1)
    }

    /// Of those, the bound ones.
    pub(crate) fn bound(&self) -> u32 {
        self.handles.iter().filter(|(_, b)| *b).count() as u32
    }

    /// This connection's use by `handle`: whether it is bound.
    pub(crate) fn use_of(&self, handle: &str) -> Option<bool> {
        self.handles
            .iter()
            .find(|(h, _)| &**h == handle)
            .map(|(_, b)| *b)
    }

    /// Whether `handle` is one of this connection's uses.
    pub(crate) fn has_handle(&self, handle: &str) -> bool {
        self.use_of(handle).is_some()
    }
}

/// One connection's session state.
#[derive(Debug)]
pub(crate) struct Session {
    /// The peer's address (admin rights, the engine's INCLUDE/EXCLUDE by
    /// address, log lines).
    pub(crate) peer: SocketAddr,
    /// The connection's slab key in its loop, and its serial number there
    /// (keys are reused): where a queued reply or a STATUS goes back to.
    pub(crate) key: usize,
    pub(crate) serial: u64,
    /// Instances this connection checked out that its close or a CHECKIN
    /// by handle must find: connection-bound ones (no linger) and those of
    /// DUP_GROUP features (keyed by the names used). Pruned of released
    /// instances as it grows; O(1) per checkout whatever its size.
    pub(crate) held: HashMap<InstanceId, Held>,
    /// Prune `held` when it grows past this.
    pub(crate) prune_at: usize,
    /// AUTH succeeded (and no AUTH failed since).
    pub(crate) authed: bool,
    /// Failed AUTH requests (the connection closes at
    /// [`crate::auth::MAX_AUTH_FAILURES`]).
    pub(crate) auth_failures: u32,
    /// Requests refused NOT_HOLDER (the connection closes at
    /// [`MAX_NOT_HOLDER`]: a client guessing handles).
    pub(crate) not_holder: u32,
    /// Unix ms of the last request (idle TIMEOUT).
    pub(crate) last_seen: u64,
    /// Queued (feature, sequence number): no further line is answered
    /// until this one is.
    pub(crate) waiting: Option<(String, u64)>,
    /// The (user, host) names this connection has checked out as, at
    /// most [`MAX_IDENTITIES`]: a CHECKIN of a license held under one of
    /// them is the holder's (see `checkin`).
    pub(crate) identities: Vec<(Box<str>, Box<str>)>,
}

impl Session {
    /// A new connection's session, at `now`.
    pub(crate) fn new(peer: SocketAddr, key: usize, serial: u64, now: u64) -> Session {
        Session {
            peer,
            key,
            serial,
            held: HashMap::new(),
            prune_at: 64,
            authed: false,
            auth_failures: 0,
            not_holder: 0,
            last_seen: now,
            waiting: None,
            identities: Vec::new(),
        }
    }

    /// Whether the peer may make admin requests: a local one, or after AUTH.
    pub(crate) fn is_admin(&self) -> bool {
        self.authed || is_local_admin(self.peer.ip())
    }

    /// Whether this connection has checked out as `holder`'s user@host.
    pub(crate) fn checked_out_as(&self, holder: &HolderBuf) -> bool {
        self.identities
            .iter()
            .any(|(u, h)| holder.is_user_host(u, h))
    }

    /// Remembers that this connection checked out as `user`@`host` (see
    /// `checkin`); a comparison per checkout, an allocation only for a new
    /// name.
    pub(crate) fn remember_identity(&mut self, user: &str, host: &str) {
        let known = self
            .identities
            .iter()
            .any(|(u, h)| &**u == user && &**h == host);
        if !known && self.identities.len() < MAX_IDENTITIES {
            self.identities.push((user.into(), host.into()));
        }
    }

    /// Drops entries for instances no longer held, when the list has grown.
    pub(crate) fn prune_held(&mut self, engine: &Engine) {
        if self.held.len() >= self.prune_at {
            self.held.retain(|_, h| engine.is_live(h.id));
            self.prune_at = (self.held.len() * 2).max(64);
        }
    }
}

/// Peers that may make admin requests without AUTH: exactly 127.0.0.1 and
/// ::1 (and ::ffff:127.0.0.1). Other 127.x sources, such as a port-forwarding
/// proxy, count as remote.
pub(crate) fn is_local_admin(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4 == Ipv4Addr::LOCALHOST,
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped() == Some(Ipv4Addr::LOCALHOST),
    }
}
