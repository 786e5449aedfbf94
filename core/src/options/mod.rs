//! FlexLM options files: who may use which feature, how many, and the
//! daemon's logging and timeout settings.
//!
//! [`parse_str`] turns the text into an [`OptionsFile`]: every rule that
//! parsed, in file order, and a [`Diagnostic`] (file:line:column) for every
//! line that did not (that line is skipped, the rest load). Nothing here does
//! I/O: callers read the file (with a size limit, `tally_server::source`).
//! The engine compiles an [`OptionsFile`] into per-pool admission data
//! (see `engine::Engine::with_options`); the format and its precedence
//! rules are described in `docs/options-file.md`.

mod parse;

pub use parse::parse_str;

pub use crate::license::Diagnostic;

/// Longest name (user, host, display, group) accepted, in bytes: the wire
/// protocol's field limit.
pub const MAX_NAME_BYTES: usize = 255;

/// FlexLM's smallest `TIMEOUT`/`TIMEOUTALL`, in seconds (15 minutes).
pub const FLEXLM_MIN_TIMEOUT_SECS: u64 = 900;

/// A parsed options file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptionsFile {
    /// Where the text came from.
    pub source: String,
    /// INCLUDE / EXCLUDE / INCLUDEALL / EXCLUDEALL / RESERVE / MAX, in order.
    pub rules: Vec<Rule>,
    /// `GROUP` (and `USER_GROUP`) lists; repeated lines of one name are
    /// concatenated, as FlexLM does.
    pub groups: Vec<Group>,
    /// `HOST_GROUP` lists, concatenated the same way.
    pub host_groups: Vec<Group>,
    /// `GROUPCASEINSENSITIVE ON`: names in group lists (and, in tally, every
    /// user and host name the rules mention) compare case-insensitively.
    pub group_case_insensitive: bool,
    /// `MAX_OVERDRAFT feature n`.
    pub max_overdraft: Vec<FeatureLimit>,
    /// `TIMEOUT feature secs`.
    pub timeouts: Vec<FeatureLimit>,
    /// `TIMEOUTALL secs`.
    pub timeout_all: Option<u64>,
    /// `LINGER feature secs`: the default linger of checkouts that give none.
    pub lingers: Vec<FeatureLimit>,
    /// `INCLUDE_BORROW` / `EXCLUDE_BORROW` (kinds [`RuleKind::Include`] and
    /// [`RuleKind::Exclude`]), in order: who may borrow a `BORROW` line's
    /// licenses. Matched as INCLUDE / EXCLUDE are, against the borrow only.
    pub borrow_rules: Vec<Rule>,
    /// `BORROW_LOWWATER feature n`: n licenses of the feature that are never
    /// borrowed.
    pub borrow_lowwater: Vec<FeatureLimit>,
    /// `MAX_BORROW_HOURS feature hours`: lowers the line's `BORROW` hours
    /// (never raises them); the last one for a feature counts.
    pub max_borrow_hours: Vec<FeatureLimit>,
    /// `NOLOG` lines.
    pub nolog: NoLog,
    /// `DEBUGLOG [+]path`.
    pub debug_log: Option<LogPath>,
    /// `REPORTLOG [+]path`.
    pub report_log: Option<LogPath>,
    /// One entry per skipped line.
    pub diagnostics: Vec<Diagnostic>,
    /// Lines that loaded but probably do not say what was meant (a name
    /// starting with `#`, read from what looks like a trailing comment).
    pub warnings: Vec<Diagnostic>,
}

impl OptionsFile {
    /// Members of the `GROUP` called `name`, if defined.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Members of the `HOST_GROUP` called `name`, if defined.
    pub fn host_group(&self, name: &str) -> Option<&Group> {
        self.host_groups.iter().find(|g| g.name == name)
    }

    /// The idle timeout for `feature` in seconds: its `TIMEOUT`, else
    /// `TIMEOUTALL`, else `None`.
    pub fn timeout_secs(&self, feature: &str) -> Option<u64> {
        self.component_timeout_secs(feature, None)
    }

    /// The idle timeout for `feature`, a component of `package` if given:
    /// the feature's own `TIMEOUT`, else the package's, else `TIMEOUTALL`.
    pub fn component_timeout_secs(&self, feature: &str, package: Option<&str>) -> Option<u64> {
        last_limit(&self.timeouts, feature, package).or(self.timeout_all)
    }

    /// The default linger of `feature` in seconds (`LINGER`), if any.
    pub fn linger_secs(&self, feature: &str) -> Option<u64> {
        self.component_linger_secs(feature, None)
    }

    /// The default linger of `feature`, a component of `package` if given:
    /// the feature's own `LINGER`, else the package's.
    pub fn component_linger_secs(&self, feature: &str, package: Option<&str>) -> Option<u64> {
        last_limit(&self.lingers, feature, package)
    }
}

/// The value of the last of `limits` naming `feature`, else of the last
/// naming `package`.
fn last_limit(limits: &[FeatureLimit], feature: &str, package: Option<&str>) -> Option<u64> {
    let last = |name: &str| {
        limits
            .iter()
            .rev()
            .find(|t| t.feature.name == name)
            .map(|t| u64::from(t.value))
    };
    last(feature).or_else(|| package.and_then(last))
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleKind {
    /// `INCLUDE` / `INCLUDEALL`: only those listed may use the feature.
    Include,
    /// `EXCLUDE` / `EXCLUDEALL`: those listed may not (beats INCLUDE).
    Exclude,
    /// `RESERVE n`: n licenses held back for the target.
    Reserve(u32),
    /// `MAX n`: the target (a user, or a group as a whole) holds at most n.
    Max(u32),
}

impl RuleKind {
    /// The keyword as written (without `ALL`).
    pub fn keyword(self) -> &'static str {
        match self {
            RuleKind::Include => "INCLUDE",
            RuleKind::Exclude => "EXCLUDE",
            RuleKind::Reserve(_) => "RESERVE",
            RuleKind::Max(_) => "MAX",
        }
    }
}

/// One INCLUDE / EXCLUDE / RESERVE / MAX line (or an `...ALL` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// What it does.
    pub kind: RuleKind,
    /// The feature; `None` for INCLUDEALL / EXCLUDEALL (every feature).
    pub feature: Option<FeatureSpec>,
    /// Whom it is about.
    pub target: Target,
    /// 1-based line where the record starts.
    pub line: u32,
}

impl Rule {
    /// A short label naming the rule, e.g. `RESERVE 2 f1 USER bob (line 4)`.
    pub fn label(&self) -> String {
        let count = match self.kind {
            RuleKind::Reserve(n) | RuleKind::Max(n) => format!(" {n}"),
            _ => String::new(),
        };
        let feature = match &self.feature {
            Some(f) => format!(" {f}"),
            None => String::new(),
        };
        let all = if self.feature.is_none() { "ALL" } else { "" };
        format!(
            "{}{all}{count}{feature} {} {} (line {})",
            self.kind.keyword(),
            self.target.kind.keyword(),
            self.target.name,
            self.line
        )
    }
}

/// `feature` or `feature:KEYWORD=value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FeatureSpec {
    /// Feature name (case-sensitive, as in the license file).
    pub name: String,
    /// The qualifier selecting some of the feature's pools, if any.
    pub qualifier: Option<Qualifier>,
}

impl std::fmt::Display for FeatureSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if let Some(q) = &self.qualifier {
            write!(f, ":{}={}", q.key.keyword(), q.value)?;
        }
        Ok(())
    }
}

/// A `keyword=value` qualifier on a feature name: the rule applies only to
/// the pools (FEATURE/INCREMENT lines) whose field has that value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Qualifier {
    /// Which field.
    pub key: QualifierKey,
    /// The value it must have.
    pub value: String,
}

/// Fields a [`Qualifier`] can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QualifierKey {
    /// `VERSION=`: the pool's version (compared as a decimal number).
    Version,
    /// `EXPDATE=`: the expiry date as written (`31-dec-2026`, `permanent`).
    ExpDate,
    /// `VENDOR_STRING=`: the vendor string, exactly.
    VendorString,
    /// `ISSUER=`.
    Issuer,
    /// `NOTICE=`.
    Notice,
    /// `SIGN=` / `KEY=`: the signature.
    Sign,
}

impl QualifierKey {
    /// Parses the keyword (case-insensitive).
    pub fn parse(text: &str) -> Option<QualifierKey> {
        Some(match text.to_ascii_uppercase().as_str() {
            "VERSION" => QualifierKey::Version,
            "EXPDATE" => QualifierKey::ExpDate,
            "VENDOR_STRING" => QualifierKey::VendorString,
            "ISSUER" => QualifierKey::Issuer,
            "NOTICE" => QualifierKey::Notice,
            "SIGN" | "KEY" => QualifierKey::Sign,
            _ => return None,
        })
    }

    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            QualifierKey::Version => "VERSION",
            QualifierKey::ExpDate => "EXPDATE",
            QualifierKey::VendorString => "VENDOR_STRING",
            QualifierKey::Issuer => "ISSUER",
            QualifierKey::Notice => "NOTICE",
            QualifierKey::Sign => "SIGN",
        }
    }
}

/// The kind of a [`Target`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// A user name.
    User,
    /// A host name.
    Host,
    /// A display name.
    Display,
    /// A `GROUP` of users.
    Group,
    /// A `HOST_GROUP` of hosts.
    HostGroup,
    /// An IPv4 address, `*` wildcards allowed per octet (`192.168.1.*`).
    Internet,
}

impl TargetKind {
    /// Parses the type keyword (case-insensitive). `USER_GROUP` reads as
    /// `GROUP`.
    pub fn parse(text: &str) -> Option<TargetKind> {
        Some(match text.to_ascii_uppercase().as_str() {
            "USER" => TargetKind::User,
            "HOST" => TargetKind::Host,
            "DISPLAY" => TargetKind::Display,
            "GROUP" | "USER_GROUP" => TargetKind::Group,
            "HOST_GROUP" => TargetKind::HostGroup,
            "INTERNET" => TargetKind::Internet,
            _ => return None,
        })
    }

    /// The keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            TargetKind::User => "USER",
            TargetKind::Host => "HOST",
            TargetKind::Display => "DISPLAY",
            TargetKind::Group => "GROUP",
            TargetKind::HostGroup => "HOST_GROUP",
            TargetKind::Internet => "INTERNET",
        }
    }
}

/// Whom a rule is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The type.
    pub kind: TargetKind,
    /// The name (or group name, or IP pattern).
    pub name: String,
}

/// A `GROUP` / `HOST_GROUP` definition (all lines of that name, joined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Group name.
    pub name: String,
    /// Members, in order of appearance.
    pub members: Vec<String>,
}

/// `MAX_OVERDRAFT`, `TIMEOUT`, `LINGER`, `BORROW_LOWWATER`,
/// `MAX_BORROW_HOURS`: a feature and a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureLimit {
    /// The feature.
    pub feature: FeatureSpec,
    /// The number (licenses, seconds or hours).
    pub value: u32,
    /// 1-based line.
    pub line: u32,
}

/// Which license events `NOLOG` keeps out of the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NoLog {
    /// `NOLOG IN`.
    pub checkin: bool,
    /// `NOLOG OUT`.
    pub checkout: bool,
    /// `NOLOG DENIED`.
    pub denied: bool,
    /// `NOLOG QUEUED`.
    pub queued: bool,
}

/// `DEBUGLOG` / `REPORTLOG` path: `+path` appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPath {
    /// The path.
    pub path: String,
    /// Written with a leading `+`: append rather than truncate.
    pub append: bool,
}

/// An IPv4 pattern: each octet a number or `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPattern {
    octets: [Option<u8>; 4],
}

impl IpPattern {
    /// Parses `192.168.1.*`, `10.*.*.*`, `127.0.0.1`. `None` otherwise.
    pub fn parse(text: &str) -> Option<IpPattern> {
        let mut octets = [None; 4];
        let mut parts = text.split('.');
        for o in &mut octets {
            let part = parts.next()?;
            *o = if part == "*" {
                None
            } else {
                if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Some(part.parse().ok()?)
            };
        }
        parts.next().is_none().then_some(IpPattern { octets })
    }

    /// Whether `ip` matches (IPv6 addresses match only if IPv4-mapped).
    pub fn matches(&self, ip: std::net::IpAddr) -> bool {
        let v4 = match ip {
            std::net::IpAddr::V4(v4) => v4,
            std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4,
                None => return false,
            },
        };
        self.octets
            .iter()
            .zip(v4.octets())
            .all(|(p, o)| p.map_or(true, |p| p == o))
    }
}

#[cfg(test)]
mod tests;
