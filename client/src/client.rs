//! [`Client`]: the library an integrator links to take licenses from a
//! tally server (or a list of them), without speaking the line protocol by
//! hand.
//!
//! - **Server lists, failover in order.** A client is given a list of
//!   servers ([`crate::addr`]: `PORT@HOST` lists, license files,
//!   `TALLY_LICENSE_FILE` / `LM_LICENSE_FILE` as tallyctl reads them). It
//!   connects to the first that answers: a server that cannot be reached,
//!   or that does not answer `PING` with `PONG` (a server that answers
//!   garbage), is skipped and the next one tried. When none answers the
//!   call fails with [`ClientError::NoServer`], which lists what was tried.
//! - **Checkout, renew, return, check-in**, as seed 002's agent does them:
//!   [`Client::checkout`] with a linger; [`Client::renew`] is the same
//!   checkout again (same handle, same linger: the server moves the
//!   deadline, no second license is taken); [`Client::return_license`]
//!   checks out again with linger 1 s, so the server checks the license in
//!   a second later; [`Client::checkin`] checks in at once.
//! - **The startup license** ([`Client::startup_license`]): a checkout and
//!   at once a check-in (seed 002's first two lines, `OUT: "CITRIX"` and
//!   `IN: "CITRIX"`). tallyd checks an `LT=SYS` license in by itself; the
//!   client's CHECKIN then finds nothing held (`ERR NOT_HELD`), which is
//!   the expected answer and not an error.
//! - **Reconnection gets the same instance back.** The client remembers
//!   what it holds (every granted checkout, until returned or checked in;
//!   [`Client::held`]). When the connection fails in the middle of a call,
//!   the call reconnects (failing over in order), re-sends the checkout of
//!   everything held (the same handle, so the server hands back the same
//!   instance, or takes it again if a connection-bound one was checked in
//!   when the connection closed) and sends the call once more. A held
//!   checkout the new server does not grant (`DENIED`, `ERR`) is dropped
//!   from the list.
//! - **Typed denials**: a `DENIED` reply is [`ClientError::Denied`], with
//!   the reason (`ALL_IN_USE`, ...), the FlexLM code (`-4`) and the text.
//! - **Timeouts on every call** ([`Timeouts`], default
//!   [`crate::DEFAULT_TIMEOUT`] each): connecting to each server, every
//!   write and every read. A call waits at most about (connect + write +
//!   read) per server of the list, twice when it reconnects.
//!
//! ```no_run
//! use std::time::Duration;
//! use tally_client::{Checkout, Client, ClientError};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut client = Client::from_list("27000@lic1:27000@lic2")?;
//! client.startup_license("CITRIX", "USER15", "GENE-VM-2K3", "ec26edf8")?;
//! let product = Checkout::new("MPM_ADV_RC", "USER15", "GENE-VM-2K3", "ec26edf8")
//!     .linger(Duration::from_secs(21 * 24 * 3600));
//! match client.checkout(&product) {
//!     Ok(grant) => println!("held until {} (Unix ms)", grant.deadline_ms),
//!     Err(ClientError::Denied { reason, flexlm_code, text, .. }) => {
//!         println!("denied: {reason} ({flexlm_code}) {text}")
//!     }
//!     Err(e) => return Err(e.into()),
//! }
//! client.renew(&product)?; // every 6 hours
//! client.return_license(&product)?; // on shutdown
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use tally_core::clock::Millis;

use crate::addr::{discover, parse_list, AddrError, ServerAddr};
use crate::offline::Admission;
use crate::picture::Picture;
use crate::proto::{field_fault, Denial, ErrCode, FieldFault, Reply};
use crate::{Connection, Error, Timeouts};

/// The linger of [`Client::return_license`]: seed 002's agent returns a
/// license by checking it out again for one second.
pub const RETURN_LINGER: Duration = Duration::from_secs(1);

/// The startup license's feature in Citrix's license files (`LT=SYS`).
pub const STARTUP_FEATURE: &str = "CITRIX";

/// One checkout request: who asks for which feature, under which handle,
/// with which linger. Built with [`Checkout::new`] and its setters; the
/// same value is what [`Client::renew`] and [`Client::return_license`]
/// send again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The feature.
    pub feature: String,
    /// The user.
    pub user: String,
    /// The user's host.
    pub host: String,
    /// The client's handle: one instance per handle (docs/protocol.md).
    pub handle: String,
    /// Lowest version accepted (`version=`), if any.
    pub version: Option<String>,
    /// How long the server keeps the license after this checkout,
    /// milliseconds (sent with up to 3 decimals of a second); 0: held
    /// until check-in or until the connection closes.
    pub linger_ms: u64,
    /// The client's display (`display=`), if any.
    pub display: Option<String>,
    /// A borrow of this many hours (`borrow=`; docs/protocol.md): the
    /// server keeps the license out until then whatever the connection
    /// does, for use away from the network. `None`: an ordinary checkout.
    pub borrow_hours: Option<u32>,
}

impl Checkout {
    /// A checkout of `feature` by `user` on `host` under `handle`, no
    /// linger, any version.
    pub fn new(
        feature: impl Into<String>,
        user: impl Into<String>,
        host: impl Into<String>,
        handle: impl Into<String>,
    ) -> Checkout {
        Checkout {
            feature: feature.into(),
            user: user.into(),
            host: host.into(),
            handle: handle.into(),
            version: None,
            linger_ms: 0,
            display: None,
            borrow_hours: None,
        }
    }

    /// A borrow for `hours` (`borrow=`): only a license-file line with
    /// `BORROW` lends, for at most its hours (and the options file's
    /// `MAX_BORROW_HOURS`). A borrow is not renewed: return it early with
    /// [`Client::checkin`], or an admin does (`tallyctl borrow return`).
    ///
    /// ```
    /// use tally_client::Checkout;
    ///
    /// let c = Checkout::new("ROAD", "alice", "laptop1", "h1").borrow(48);
    /// assert_eq!(c.line().unwrap(), "CHECKOUT ROAD alice laptop1 h1 borrow=48");
    /// ```
    pub fn borrow(mut self, hours: u32) -> Checkout {
        self.borrow_hours = Some(hours);
        self
    }

    /// With this linger (rounded down to the millisecond).
    pub fn linger(mut self, linger: Duration) -> Checkout {
        self.linger_ms = u64::try_from(linger.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Asking for at least this version.
    pub fn version(mut self, version: impl Into<String>) -> Checkout {
        self.version = Some(version.into());
        self
    }

    /// With this display.
    pub fn display(mut self, display: impl Into<String>) -> Checkout {
        self.display = Some(display.into());
        self
    }

    /// The linger as a [`Duration`].
    pub fn linger_duration(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }

    /// The request line, every field checked by the protocol's field rule
    /// ([`field_fault`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tally_client::Checkout;
    ///
    /// let c = Checkout::new("MPM_ADV_RC", "USER15", "GENE-VM-2K3", "ec26edf8")
    ///     .linger(Duration::from_millis(1_814_400_500));
    /// assert_eq!(
    ///     c.line().unwrap(),
    ///     "CHECKOUT MPM_ADV_RC USER15 GENE-VM-2K3 ec26edf8 linger=1814400.500"
    /// );
    /// assert!(Checkout::new("F", "a user", "h", "x").line().is_err());
    /// ```
    pub fn line(&self) -> Result<String, ClientError> {
        let mut line = format!(
            "CHECKOUT {} {} {} {}",
            checked("feature", &self.feature)?,
            checked("user", &self.user)?,
            checked("host", &self.host)?,
            checked("handle", &self.handle)?
        );
        if let Some(v) = &self.version {
            line.push_str(" version=");
            line.push_str(checked("version", v)?);
        }
        if self.linger_ms > 0 {
            line.push_str(&format!(" linger={}", secs_text(self.linger_ms)));
        }
        if let Some(d) = &self.display {
            line.push_str(" display=");
            line.push_str(checked("display", d)?);
        }
        if let Some(h) = self.borrow_hours {
            line.push_str(&format!(" borrow={h}"));
        }
        Ok(line)
    }

    fn same_instance(&self, feature: &str, handle: &str) -> bool {
        self.feature == feature && self.handle == handle
    }
}

/// Milliseconds as the protocol's seconds (`1814400`, `1.500`).
fn secs_text(ms: u64) -> String {
    let (s, ms) = (ms / 1000, ms % 1000);
    if ms == 0 {
        format!("{s}")
    } else {
        format!("{s}.{ms:03}")
    }
}

/// The `RECONCILE` request line of an offline admission
/// (docs/protocol.md): `RECONCILE <feature> <user> <host> <handle>
/// start=<unix-ms> id=<id> [count=<n>] [version=<v>] [linger=<secs>]`,
/// every field checked by the field rule.
///
/// ```
/// use tally_client::client::reconcile_line;
/// use tally_client::offline::Admission;
///
/// let a = Admission {
///     id: "3f9c0d2a11b4e5f6-1".into(),
///     feature: "MPS_ENT_CCU".into(),
///     version: None,
///     user: "USER51".into(),
///     host: "ts1".into(),
///     handle: "h51".into(),
///     start_ms: 1_796_000_000_000,
///     count: 1,
///     pool_version: "2007.0726".into(),
///     pool_expiry: "permanent".into(),
///     linger_ms: Some(3_600_000),
/// };
/// assert_eq!(
///     reconcile_line(&a).unwrap(),
///     "RECONCILE MPS_ENT_CCU USER51 ts1 h51 start=1796000000000 id=3f9c0d2a11b4e5f6-1 linger=3600"
/// );
/// ```
pub fn reconcile_line(a: &Admission) -> Result<String, ClientError> {
    let mut line = format!(
        "RECONCILE {} {} {} {} start={} id={}",
        checked("feature", &a.feature)?,
        checked("user", &a.user)?,
        checked("host", &a.host)?,
        checked("handle", &a.handle)?,
        a.start_ms,
        checked("id", &a.id)?
    );
    if a.count > 1 {
        line.push_str(&format!(" count={}", a.count));
    }
    if let Some(v) = &a.version {
        line.push_str(" version=");
        line.push_str(checked("version", v)?);
    }
    if let Some(l) = a.linger_ms.filter(|&l| l > 0) {
        line.push_str(&format!(" linger={}", secs_text(l)));
    }
    Ok(line)
}

/// What the server recorded for one offline admission (the reply to
/// `RECONCILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// `OK RECONCILED <feature> <handle> <deadline>`: a real checkout now,
    /// within the pool's count.
    Counted {
        /// The feature.
        feature: String,
        /// The handle.
        handle: String,
        /// Its deadline, Unix ms (0: none).
        deadline_ms: Millis,
    },
    /// `OK OVERDRAFT <feature> <handle> <deadline> <excess>`: a real
    /// checkout beyond the pool's count; `excess` is how many of this
    /// session's licenses are beyond it (1 for a one-license session).
    Overdraft {
        /// The feature.
        feature: String,
        /// The handle.
        handle: String,
        /// Its deadline, Unix ms (0: none).
        deadline_ms: Millis,
        /// Licenses over the count.
        excess: u32,
    },
    /// `OK DUPLICATE <feature> <handle>`: the server had recorded this
    /// admission id before (a repeated report, or a retry after a lost
    /// reply): nothing counted twice.
    Duplicate {
        /// The feature.
        feature: String,
        /// The handle.
        handle: String,
    },
}

impl Reconciled {
    /// Parses the text after `OK ` of a RECONCILE reply.
    fn parse(rest: &str) -> Option<Reconciled> {
        let w: Vec<&str> = rest.split(' ').collect();
        let (f, h) = (w.get(1)?.to_string(), w.get(2)?.to_string());
        match (w[0], w.len()) {
            ("RECONCILED", 4) => Some(Reconciled::Counted {
                feature: f,
                handle: h,
                deadline_ms: w[3].parse().ok()?,
            }),
            ("OVERDRAFT", 5) => Some(Reconciled::Overdraft {
                feature: f,
                handle: h,
                deadline_ms: w[3].parse().ok()?,
                excess: w[4].parse().ok()?,
            }),
            ("DUPLICATE", 3) => Some(Reconciled::Duplicate {
                feature: f,
                handle: h,
            }),
            _ => None,
        }
    }
}

fn checked<'a>(what: &'static str, value: &'a str) -> Result<&'a str, ClientError> {
    match field_fault(value) {
        None => Ok(value),
        Some(fault) => Err(ClientError::BadField {
            what,
            value: value.chars().take(200).collect(),
            fault,
        }),
    }
}

/// A granted checkout: `OK <feature> <handle> <deadline>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The feature.
    pub feature: String,
    /// The handle.
    pub handle: String,
    /// When the server will check the license in, Unix milliseconds; 0:
    /// held until check-in or until the connection closes.
    pub deadline_ms: Millis,
    /// The server that granted it.
    pub server: ServerAddr,
}

/// What a [`Client`] call can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server denied the checkout (`DENIED ...`).
    #[error("{server}: denied: {reason} ({flexlm_code}) {text}")]
    Denied {
        /// `ALL_IN_USE`, `NO_SUCH_FEATURE`, ... (docs/protocol.md).
        reason: String,
        /// FlexLM's error code (`-4`).
        flexlm_code: i32,
        /// The server's text.
        text: String,
        /// The server that denied it.
        server: ServerAddr,
    },
    /// The server answered `ERR <CODE> <text>`.
    #[error("{server}: ERR {code} {text}")]
    Server {
        /// The server.
        server: ServerAddr,
        /// The code.
        code: ErrCode,
        /// Its text.
        text: String,
    },
    /// The server's reply is not what the protocol says (the connection
    /// is dropped: the next call connects afresh).
    #[error("{server}: unexpected reply ({why}): {reply:?}")]
    BadReply {
        /// The server.
        server: ServerAddr,
        /// The reply, cut to 200 characters.
        reply: String,
        /// What was expected.
        why: String,
    },
    /// No server of the list answered. `tried` has one message per server,
    /// in order (each starts with the server, `27000@lic1: cannot connect:
    /// ...`).
    #[error("no license server answered ({})", tried.join("; "))]
    NoServer {
        /// What happened at each server.
        tried: Vec<String>,
    },
    /// A value cannot be sent as one protocol field; nothing was sent.
    #[error("{what} {value:?} {fault}")]
    BadField {
        /// Which value (`feature`, `user`, ...).
        what: &'static str,
        /// The value, cut to 200 characters.
        value: String,
        /// What is wrong with it.
        fault: FieldFault,
    },
}

impl ClientError {
    /// True when no server could be reached ([`ClientError::NoServer`]):
    /// what an offline path (cache and grace) acts on. A denial, an `ERR`
    /// or a garbled reply came from a server that answered.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::NoServer { .. })
    }

    fn denied(d: Denial, server: &ServerAddr) -> ClientError {
        ClientError::Denied {
            reason: d.reason,
            flexlm_code: d.flexlm_code,
            text: d.text,
            server: server.clone(),
        }
    }
}

/// A failure of one server during a call: try the next one (`Down`), or
/// give up and report (`Answered`: the server spoke, wrongly).
enum Fault {
    Down(String),
    Answered(ClientError),
}

/// A blocking client of a list of tally servers ([module docs](self)).
pub struct Client {
    servers: Vec<ServerAddr>,
    timeouts: Timeouts,
    conn: Option<(ServerAddr, Connection)>,
    held: Vec<Checkout>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("servers", &self.servers)
            .field("timeouts", &self.timeouts)
            .field("connected", &self.connected())
            .field("held", &self.held.len())
            .finish()
    }
}

impl Client {
    /// A client of `servers`, tried in order, with the default timeouts.
    /// Nothing is connected until the first call (or [`Client::connect`]).
    pub fn new(servers: Vec<ServerAddr>) -> Client {
        Client::with_timeouts(servers, Timeouts::default())
    }

    /// A client of `servers` with these timeouts.
    pub fn with_timeouts(servers: Vec<ServerAddr>, timeouts: Timeouts) -> Client {
        Client {
            servers,
            timeouts,
            conn: None,
            held: Vec::new(),
        }
    }

    /// A client of a server list as `-c` takes it (`27000@lic1:@lic2`,
    /// license files; [`crate::addr`]).
    ///
    /// ```
    /// let c = tally_client::Client::from_list("27001@lic1:@lic2").unwrap();
    /// let names: Vec<String> = c.servers().iter().map(|s| s.to_string()).collect();
    /// assert_eq!(names, ["27001@lic1", "27000@lic2"]);
    /// ```
    pub fn from_list(list: &str) -> Result<Client, AddrError> {
        Ok(Client::new(parse_list(list, "-c", &mut |_| {})?))
    }

    /// A client of the servers the environment names, as tallyctl finds
    /// them without `-c`: `TALLY_LICENSE_FILE`, else `LM_LICENSE_FILE`,
    /// else `27000@localhost`. License files that name no server are
    /// skipped silently.
    pub fn from_env() -> Result<Client, AddrError> {
        let servers = discover(None, |n| std::env::var(n).ok(), &mut |_| {})?;
        Ok(Client::new(servers))
    }

    /// The servers, in the order they are tried.
    pub fn servers(&self) -> &[ServerAddr] {
        &self.servers
    }

    /// Replaces the server list; the connection (if any) is kept until it
    /// fails, the next connection tries the new list in order.
    pub fn set_servers(&mut self, servers: Vec<ServerAddr>) {
        self.servers = servers;
    }

    /// The timeouts of every call.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Sets the timeouts (from the next connection on).
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
    }

    /// The server connected to, if any.
    pub fn connected(&self) -> Option<&ServerAddr> {
        self.conn.as_ref().map(|(s, _)| s)
    }

    /// The checkouts held: granted and not yet returned or checked in,
    /// each as last sent (what a reconnection re-sends).
    pub fn held(&self) -> &[Checkout] {
        &self.held
    }

    /// The connection, if any (its socket: for tests that cut it).
    pub fn connection(&self) -> Option<&Connection> {
        self.conn.as_ref().map(|(_, c)| c)
    }

    /// Closes the connection. Connection-bound checkouts (no linger) are
    /// checked in by the server; the next call reconnects and re-sends
    /// every held checkout.
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    /// Connects (if not connected) to the first server of the list that
    /// answers `PING`, and re-sends the checkouts held; returns the server.
    pub fn connect(&mut self) -> Result<&ServerAddr, ClientError> {
        if self.conn.is_none() {
            self.reconnect(None)?;
        }
        match &self.conn {
            Some((s, _)) => Ok(s),
            None => Err(ClientError::NoServer { tried: Vec::new() }),
        }
    }

    /// Checks that the server answers (`PING`).
    pub fn ping(&mut self) -> Result<ServerAddr, ClientError> {
        let (server, mut replies) = self.call(&["PING".to_string()], None)?;
        match replies.pop() {
            Some(Reply::Pong) => Ok(server),
            other => Err(self.bad_reply(&server, other, "PONG")),
        }
    }

    /// Checks `req` out; on `OK` the checkout is remembered as held (what
    /// a reconnection re-sends). A denial is [`ClientError::Denied`] (an
    /// instance already held under the handle stays held until its
    /// deadline, and stays on the list).
    pub fn checkout(&mut self, req: &Checkout) -> Result<Grant, ClientError> {
        let line = req.line()?;
        let (server, mut replies) = self.call(&[line], Some(req))?;
        let grant = self.grant(&server, req, replies.pop())?;
        self.held
            .retain(|h| !h.same_instance(&req.feature, &req.handle));
        // A borrow is the server's to keep across connections: nothing to
        // send again on a reconnection.
        if req.borrow_hours.is_none() {
            self.held.push(req.clone());
        }
        Ok(grant)
    }

    /// Renews: the same checkout again (same handle, same linger). The
    /// server takes no second license; it moves the deadline to now +
    /// linger (seed 002: every 6 hours, linger 21 days).
    pub fn renew(&mut self, req: &Checkout) -> Result<Grant, ClientError> {
        self.checkout(req)
    }

    /// Returns the license the way seed 002's agent does: `req` checked
    /// out again with linger 1 s ([`RETURN_LINGER`]); the server checks it
    /// in a second later. On `OK` it is no longer held.
    pub fn return_license(&mut self, req: &Checkout) -> Result<Grant, ClientError> {
        let ret = req.clone().linger(RETURN_LINGER);
        let line = ret.line()?;
        let (server, mut replies) = self.call(&[line], Some(req))?;
        let grant = self.grant(&server, &ret, replies.pop())?;
        self.held
            .retain(|h| !h.same_instance(&req.feature, &req.handle));
        Ok(grant)
    }

    /// Checks `feature` in for `handle` at once. Nothing held there
    /// (`ERR NOT_HELD`: already checked in, or lingered out) is success
    /// too: afterwards nothing is held either way.
    pub fn checkin(&mut self, feature: &str, handle: &str) -> Result<(), ClientError> {
        let line = format!(
            "CHECKIN {} {}",
            checked("feature", feature)?,
            checked("handle", handle)?
        );
        let (server, mut replies) = self.call(&[line], None)?;
        self.held.retain(|h| !h.same_instance(feature, handle));
        checkin_reply(&server, replies.pop(), feature, handle).map_err(|e| {
            if matches!(e, ClientError::BadReply { .. }) {
                self.conn = None;
            }
            e
        })
    }

    /// The license picture (`PICTURE`, docs/protocol.md): what the offline
    /// cache is built from. A server without PICTURE answers `ERR
    /// UNKNOWN_COMMAND` ([`ClientError::Server`]); a reply that is not a
    /// picture (cut off, garbage) is [`ClientError::BadReply`] and drops the
    /// connection.
    pub fn picture(&mut self) -> Result<Picture, ClientError> {
        let (server, mut replies) = self.call(&["PICTURE".to_string()], None)?;
        match replies.pop() {
            Some(Reply::Err { code, text }) => Err(ClientError::Server { server, code, text }),
            Some(Reply::Ok(rest)) => match Picture::parse_reply(&format!("OK {rest}")) {
                Ok(p) => Ok(p),
                Err(e) => {
                    let why = e.to_string();
                    Err(self.bad_reply(&server, Some(Reply::Ok(rest)), &why))
                }
            },
            other => Err(self.bad_reply(&server, other, "OK <picture JSON>")),
        }
    }

    /// Reports one session admitted offline (`RECONCILE`,
    /// [`reconcile_line`]): the server turns it into a real checkout with
    /// its original start time, as overdraft beyond the pool's count. The
    /// server knows admission ids it has recorded, so sending the same one
    /// again (a retry after a lost reply: this call itself re-sends once
    /// when the connection fails under it) counts nothing twice
    /// ([`Reconciled::Duplicate`]). A `DENIED` (the feature is gone, ...)
    /// is [`ClientError::Denied`].
    pub fn reconcile(&mut self, admission: &Admission) -> Result<Reconciled, ClientError> {
        let line = reconcile_line(admission)?;
        let (server, mut replies) = self.call(&[line], None)?;
        match replies.pop() {
            Some(Reply::Ok(rest)) => match Reconciled::parse(&rest) {
                Some(r) => Ok(r),
                None => Err(self.bad_reply(
                    &server,
                    Some(Reply::Ok(rest)),
                    "OK RECONCILED|OVERDRAFT|DUPLICATE <feature> <handle> ...",
                )),
            },
            Some(Reply::Denied(d)) => Err(ClientError::denied(d, &server)),
            Some(Reply::Err { code, text }) => Err(ClientError::Server { server, code, text }),
            other => Err(self.bad_reply(&server, other, "OK RECONCILED ...")),
        }
    }

    /// The startup license: `feature` (Citrix's is [`STARTUP_FEATURE`])
    /// checked out and at once checked in, in one round trip (CHECKOUT and
    /// CHECKIN pipelined). A denial is [`ClientError::Denied`]. Nothing is
    /// held afterwards.
    pub fn startup_license(
        &mut self,
        feature: &str,
        user: &str,
        host: &str,
        handle: &str,
    ) -> Result<Grant, ClientError> {
        let req = Checkout::new(feature, user, host, handle);
        let lines = [
            req.line()?,
            format!("CHECKIN {} {}", req.feature, req.handle),
        ];
        let (server, mut replies) = self.call(&lines, None)?;
        let checkin = replies.pop();
        let grant = self.grant(&server, &req, replies.pop())?;
        if let Err(e) = checkin_reply(&server, checkin, feature, handle) {
            if matches!(e, ClientError::BadReply { .. }) {
                self.conn = None;
            }
            return Err(e);
        }
        Ok(grant)
    }

    /// `OK <feature> <handle> <deadline>` for `req`, or its error.
    fn grant(
        &mut self,
        server: &ServerAddr,
        req: &Checkout,
        reply: Option<Reply>,
    ) -> Result<Grant, ClientError> {
        match reply {
            Some(Reply::Ok(rest)) => {
                let mut words = rest.split(' ');
                match (words.next(), words.next(), words.next(), words.next()) {
                    (Some(f), Some(h), Some(d), None) if f == req.feature && h == req.handle => {
                        if let Ok(deadline_ms) = d.parse::<u64>() {
                            return Ok(Grant {
                                feature: req.feature.clone(),
                                handle: req.handle.clone(),
                                deadline_ms,
                                server: server.clone(),
                            });
                        }
                    }
                    _ => {}
                }
                let why = format!("expected OK {} {} <deadline>", req.feature, req.handle);
                Err(self.bad_reply(server, Some(Reply::Ok(rest)), &why))
            }
            Some(Reply::Denied(d)) => Err(ClientError::denied(d, server)),
            Some(Reply::Err { code, text }) => Err(ClientError::Server {
                server: server.clone(),
                code,
                text,
            }),
            other => Err(self.bad_reply(server, other, "OK or DENIED")),
        }
    }

    /// The error for a reply that breaks the protocol; the connection is
    /// dropped (who knows where the next reply begins).
    fn bad_reply(&mut self, server: &ServerAddr, reply: Option<Reply>, why: &str) -> ClientError {
        self.conn = None;
        ClientError::BadReply {
            server: server.clone(),
            reply: reply.map_or_else(String::new, |r| reply_text(&r)),
            why: why.to_string(),
        }
    }

    /// Sends `lines` (pipelined) and reads one reply each, on the current
    /// connection or a new one. When the current connection fails (write
    /// or read), reconnects once ([`Client::reconnect`], re-sending what is
    /// held except `about`, the instance the call itself is about) and
    /// sends again.
    fn call(
        &mut self,
        lines: &[String],
        about: Option<&Checkout>,
    ) -> Result<(ServerAddr, Vec<Reply>), ClientError> {
        let mut earlier = None;
        if let Some((server, conn)) = &mut self.conn {
            let server = server.clone();
            match exchange(conn, &server, lines) {
                Ok(replies) => return Ok((server, replies)),
                Err(Fault::Answered(e)) => {
                    self.conn = None;
                    return Err(e);
                }
                Err(Fault::Down(why)) => {
                    self.conn = None;
                    earlier = Some(why);
                }
            }
        }
        self.reconnect(about).map_err(|e| match (e, earlier) {
            (ClientError::NoServer { mut tried }, Some(why)) => {
                tried.insert(0, format!("{why} (connection lost)"));
                ClientError::NoServer { tried }
            }
            (e, _) => e,
        })?;
        let Some((server, conn)) = &mut self.conn else {
            return Err(ClientError::NoServer { tried: Vec::new() });
        };
        let server = server.clone();
        match exchange(conn, &server, lines) {
            Ok(replies) => Ok((server, replies)),
            Err(fault) => {
                self.conn = None;
                Err(match fault {
                    Fault::Answered(e) => e,
                    Fault::Down(why) => ClientError::NoServer { tried: vec![why] },
                })
            }
        }
    }

    /// Connects to the first server of the list that answers `PING` with
    /// `PONG`, and re-sends there the checkout of everything held (but
    /// `except`); a held checkout the server denies is dropped from the
    /// list. A server that fails during this is skipped like one that
    /// cannot be reached.
    fn reconnect(&mut self, except: Option<&Checkout>) -> Result<(), ClientError> {
        self.conn = None;
        let mut tried = Vec::new();
        let restore: Vec<Checkout> = self
            .held
            .iter()
            .filter(|h| !matches!(except, Some(e) if h.same_instance(&e.feature, &e.handle)))
            .cloned()
            .collect();
        let mut lines = vec!["PING".to_string()];
        for h in &restore {
            lines.push(h.line()?);
        }
        for server in self.servers.clone() {
            let mut conn = match Connection::connect(&server.host, server.port, self.timeouts) {
                Ok(c) => c,
                Err(e) => {
                    tried.push(e.to_string());
                    continue;
                }
            };
            let replies = match exchange(&mut conn, &server, &lines) {
                Ok(r) => r,
                Err(Fault::Down(why)) => {
                    tried.push(why);
                    continue;
                }
                Err(Fault::Answered(e)) => {
                    tried.push(e.to_string());
                    continue;
                }
            };
            if replies.first() != Some(&Reply::Pong) {
                let got = replies.first().map(reply_text).unwrap_or_default();
                tried.push(format!(
                    "{server}: unexpected reply (expected PONG): {:?}",
                    got.chars().take(200).collect::<String>()
                ));
                continue;
            }
            let denied: Vec<&Checkout> = restore
                .iter()
                .zip(&replies[1..])
                .filter(|(_, r)| !r.is_ok())
                .map(|(h, _)| h)
                .collect();
            self.held.retain(|h| {
                !denied
                    .iter()
                    .any(|d| h.same_instance(&d.feature, &d.handle))
            });
            self.conn = Some((server, conn));
            return Ok(());
        }
        Err(ClientError::NoServer { tried })
    }
}

/// The reply as it came (approximately: parsed replies print back).
fn reply_text(r: &Reply) -> String {
    let text = match r {
        Reply::Ok(rest) if rest.is_empty() => "OK".to_string(),
        Reply::Ok(rest) => format!("OK {rest}"),
        Reply::Denied(d) => format!(
            "DENIED {} {} {} {} {}",
            d.feature, d.handle, d.reason, d.flexlm_code, d.text
        ),
        Reply::Err { code, text } => format!("ERR {code} {text}"),
        Reply::Pong => "PONG".to_string(),
        Reply::Bye => "BYE".to_string(),
        Reply::Other(line) => line.clone(),
    };
    text.chars().take(200).collect()
}

/// A CHECKIN's reply: `OK`, or `ERR NOT_HELD` (nothing to check in).
fn checkin_reply(
    server: &ServerAddr,
    reply: Option<Reply>,
    feature: &str,
    handle: &str,
) -> Result<(), ClientError> {
    match reply {
        Some(Reply::Ok(_)) => Ok(()),
        Some(Reply::Err {
            code: ErrCode::NotHeld,
            ..
        }) => Ok(()),
        Some(Reply::Err { code, text }) => Err(ClientError::Server {
            server: server.clone(),
            code,
            text,
        }),
        other => Err(ClientError::BadReply {
            server: server.clone(),
            reply: other.map_or_else(String::new, |r| reply_text(&r)),
            why: format!("expected OK {feature} {handle} or ERR NOT_HELD"),
        }),
    }
}

/// One round trip on `conn`: every line in one write, one reply each.
/// Transport failures are `Down` (try elsewhere); a reply that is not a
/// line of text is `Answered`.
fn exchange(
    conn: &mut Connection,
    server: &ServerAddr,
    lines: &[String],
) -> Result<Vec<Reply>, Fault> {
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    conn.send_lines(&refs).map_err(|e| fault(server, e))?;
    let mut replies = Vec::with_capacity(lines.len());
    for _ in lines {
        replies.push(conn.read_reply().map_err(|e| fault(server, e))?);
    }
    Ok(replies)
}

fn fault(server: &ServerAddr, e: Error) -> Fault {
    match e {
        Error::Resolve { .. }
        | Error::Connect { .. }
        | Error::Write { .. }
        | Error::Read { .. } => Fault::Down(e.to_string()),
        Error::ReplyTooLong { .. } | Error::NotUtf8 { .. } => {
            Fault::Answered(ClientError::BadReply {
                server: server.clone(),
                reply: String::new(),
                why: e.to_string(),
            })
        }
        Error::BadRequest { line, why } => Fault::Answered(ClientError::BadReply {
            server: server.clone(),
            reply: line,
            why: why.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    fn short() -> Timeouts {
        Timeouts::all(Duration::from_secs(2))
    }

    /// A port nobody listens on.
    fn dead() -> ServerAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        ServerAddr {
            port,
            host: "127.0.0.1".into(),
        }
    }

    /// A peer that answers each line with `answer(line)` (None: close).
    fn peer(answer: fn(&str) -> Option<String>) -> ServerAddr {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for s in l.incoming().take(4).flatten() {
                let mut w = s.try_clone().expect("clone");
                for line in BufReader::new(s).lines() {
                    let Ok(line) = line else { break };
                    match answer(&line) {
                        Some(a) => {
                            let _ = w.write_all(a.as_bytes());
                        }
                        None => break,
                    }
                }
            }
        });
        ServerAddr {
            port,
            host: "127.0.0.1".into(),
        }
    }

    fn tally_like(line: &str) -> Option<String> {
        let w: Vec<&str> = line.split(' ').collect();
        Some(match w[0] {
            "PING" => "PONG\n".to_string(),
            "CHECKOUT" if w[1] == "BUSY" => {
                format!(
                    "DENIED BUSY {} ALL_IN_USE -4 Licensed number of users already reached.\n",
                    w[4]
                )
            }
            "CHECKOUT" => format!("OK {} {} 1234\n", w[1], w[4]),
            "CHECKIN" => format!("ERR NOT_HELD {} is not checked out\n", w[1]),
            _ => "ERR UNKNOWN_COMMAND x\n".to_string(),
        })
    }

    #[test]
    fn lines_and_linger_formats() {
        let c = Checkout::new("F", "u", "h", "x");
        assert_eq!(c.line().unwrap(), "CHECKOUT F u h x");
        let c = c
            .linger(Duration::from_millis(1500))
            .version("2.0")
            .display("console");
        assert_eq!(
            c.line().unwrap(),
            "CHECKOUT F u h x version=2.0 linger=1.500 display=console"
        );
        let bad = Checkout::new("F\nDOWN", "u", "h", "x").line().unwrap_err();
        assert!(
            bad.to_string().starts_with("feature \"F\\nDOWN\" contains"),
            "{bad}"
        );
    }

    #[test]
    fn fails_over_in_order_and_types_denials() {
        let mut c = Client::with_timeouts(vec![dead(), peer(tally_like)], short());
        let g = c
            .checkout(&Checkout::new("F", "u", "h", "x"))
            .expect("grant");
        assert_eq!((g.deadline_ms, &g.server), (1234, &c.servers()[1]));
        assert_eq!(c.held().len(), 1);
        match c.checkout(&Checkout::new("BUSY", "u", "h", "y")) {
            Err(ClientError::Denied {
                reason,
                flexlm_code,
                ..
            }) => assert_eq!((reason.as_str(), flexlm_code), ("ALL_IN_USE", -4)),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.held().len(), 1);
        // NOT_HELD on a check-in is not an error; nothing is held after.
        c.checkin("F", "x").expect("checkin");
        assert!(c.held().is_empty());
    }

    #[test]
    fn nobody_answers_lists_every_server() {
        let (a, b) = (dead(), dead());
        let mut c = Client::with_timeouts(vec![a.clone(), b.clone()], short());
        let e = c.checkout(&Checkout::new("F", "u", "h", "x")).unwrap_err();
        assert!(e.is_unreachable());
        let text = e.to_string();
        assert!(
            text.starts_with("no license server answered (")
                && text.contains(&format!("{a}: cannot connect"))
                && text.contains(&format!("{b}: cannot connect")),
            "{text}"
        );
    }

    #[test]
    fn garbage_servers_are_skipped_or_reported() {
        // Answers junk to PING: skipped like a dead one.
        let junk = peer(|_| Some("HELLO \u{1} junk\n".to_string()));
        let mut c = Client::with_timeouts(vec![junk.clone()], short());
        let e = c.ping().unwrap_err();
        assert!(e.to_string().contains("expected PONG"), "{e}");
        // PONG, then junk to the checkout: a clear BadReply.
        let half = peer(|l| Some(if l == "PING" { "PONG\n" } else { "OK what\n" }.into()));
        let mut c = Client::with_timeouts(vec![half], short());
        let e = c.checkout(&Checkout::new("F", "u", "h", "x")).unwrap_err();
        assert!(matches!(e, ClientError::BadReply { .. }), "{e}");
        assert!(c.connected().is_none() && c.held().is_empty());
    }

    #[test]
    fn a_lost_connection_reconnects_and_resends_what_is_held() {
        let mut c = Client::with_timeouts(vec![peer(tally_like)], short());
        let a = Checkout::new("A", "u", "h", "a");
        let b = Checkout::new("B", "u", "h", "b").linger(Duration::from_secs(60));
        c.checkout(&a).expect("a");
        c.checkout(&b).expect("b");
        let first = c
            .connection()
            .expect("connected")
            .stream()
            .local_addr()
            .ok();
        let _ = c
            .connection()
            .expect("connected")
            .stream()
            .shutdown(std::net::Shutdown::Both);
        c.renew(&b).expect("renew after reconnect");
        let second = c
            .connection()
            .expect("connected")
            .stream()
            .local_addr()
            .ok();
        assert_ne!(first, second);
        assert_eq!(c.held(), [a, b]);
    }
}
