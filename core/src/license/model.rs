//! The parsed license file: what a FlexLM license file says, typed.
//!
//! The parser (`parse.rs`) fills these; the engine builds its pools from
//! [`LicenseSet::pools`]. Nothing here does I/O.

use std::fmt;

use crate::clock::Millis;

/// A license file after parsing: every record that parsed, and a diagnostic
/// for every line that did not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LicenseSet {
    /// Where the text came from (a path, or a name such as `<embedded demo>`).
    pub source: String,
    /// `SERVER` lines, in file order.
    pub servers: Vec<ServerLine>,
    /// `VENDOR` / `DAEMON` lines, in file order.
    pub vendors: Vec<VendorLine>,
    /// Whether a `USE_SERVER` line was present.
    pub use_server: bool,
    /// The pools to serve, one per line: the `FEATURE` and `INCREMENT` lines
    /// in file order after [`expand`](crate::license::expand) applied the
    /// SUPERSEDE, UPGRADE and PACKAGE lines (a package's component lines in
    /// place of its enabling line, an upgrade's line after the line it took
    /// licenses from; superseded lines gone).
    pub pools: Vec<PoolLine>,
    /// `PACKAGE` lines as parsed (applied to [`LicenseSet::pools`]).
    pub packages: Vec<PackageLine>,
    /// `UPGRADE` lines as parsed (applied to [`LicenseSet::pools`]).
    pub upgrades: Vec<UpgradeLine>,
    /// What each PACKAGE, UPGRADE and SUPERSEDE did to the pools, in the
    /// order applied (for `tallyctl check-license`).
    pub applied: Vec<Applied>,
    /// The pool lines a SUPERSEDE removed, as parsed.
    pub superseded: Vec<PoolLine>,
    /// Whether [`expand`](crate::license::expand) has run (it runs once).
    pub expanded: bool,
    /// One entry per rejected or suspicious line; those lines were skipped.
    pub diagnostics: Vec<Diagnostic>,
    /// Lines that loaded but did less than they say (a PACKAGE nothing
    /// enables, an UPGRADE of more licenses than there are, a component
    /// named twice, ...): what [`expand`](crate::license::expand) found.
    pub warnings: Vec<Diagnostic>,
}

/// What one PACKAGE, UPGRADE or SUPERSEDE line did, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `PACKAGE`, `UPGRADE` or `SUPERSEDE`.
    pub keyword: &'static str,
    /// 1-based line of the PACKAGE / UPGRADE line, or of the line carrying
    /// SUPERSEDE.
    pub line: u32,
    /// What it became (`apple 1.5 x6 (from line 3)`, ...).
    pub summary: String,
}

/// A pool line made from a PACKAGE's component list: which package, and
/// whether a checkout also takes the package's suite feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentOf {
    /// The package (and, for a suite, the suite feature's) name.
    pub package: String,
    /// The PACKAGE line.
    pub package_line: u32,
    /// The enabling line's version (what an options-file rule naming the
    /// package with `:VERSION=` compares).
    pub package_version: Version,
    /// `OPTIONS=SUITE` or `SUITE_RESERVED`: a checkout of the component
    /// also checks out one license of the suite feature.
    pub suite: bool,
    /// `OPTIONS=SUITE_RESERVED`: while a holder has the suite license, one
    /// license of each other component is kept for them
    /// (`engine/suite.rs`).
    pub suite_reserved: bool,
    /// Which checkouts of the package's components share one suite
    /// license (`SUITE_DUP_GROUP=` on the enabling line, else `UHD`).
    pub suite_dup: DupGroup,
}

/// A problem found in a license file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file (same as [`LicenseSet::source`]).
    pub file: String,
    /// 1-based physical line of the offending token. For a record continued
    /// over several lines with `\` this may be after [`Diagnostic::record_line`];
    /// when a field is missing it is the line of the record keyword.
    pub line: u32,
    /// 1-based column (in characters, a tab counting one) of the offending
    /// token on [`Diagnostic::line`].
    pub column: u32,
    /// What is wrong, in words an operator understands.
    pub message: String,
    /// 1-based line number where the record starts.
    pub record_line: u32,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// `SERVER host hostid [port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLine {
    /// Host name (`this_host` is common).
    pub host: String,
    /// Host id (`ANY`, an ethernet address, ...).
    pub hostid: String,
    /// TCP port, when given.
    pub port: Option<u16>,
    /// Every further keyword (`PRIMARY_IS_MASTER`, `HEARTBEAT_INTERVAL=n`, ...)
    /// as `(key, value)`, `value` empty for a bare word, in order.
    pub other: Vec<(String, String)>,
    /// 1-based line number.
    pub line: u32,
}

/// `VENDOR name [daemon_path] [[OPTIONS=]options_path] [[PORT=]port]`
/// (also written `DAEMON`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorLine {
    /// The vendor daemon name, e.g. `CITRIX`.
    pub name: String,
    /// Path of the vendor daemon binary, if given.
    pub daemon_path: Option<String>,
    /// Path of the options file, if given.
    pub options_path: Option<String>,
    /// Port of the vendor daemon, if given.
    pub port: Option<u16>,
    /// Every further word or keyword as `(key, value)`, `value` empty for a
    /// bare word, in order.
    pub other: Vec<(String, String)>,
    /// 1-based line number.
    pub line: u32,
}

/// Whether a line was `FEATURE` or `INCREMENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// `FEATURE`: in FlexLM a later FEATURE line of the same feature is ignored
    /// unless it is an INCREMENT; tally keeps every line as its own pool.
    Feature,
    /// `INCREMENT`: adds to the feature's other pools.
    Increment,
}

impl PoolKind {
    /// The keyword as written in the file.
    pub fn keyword(self) -> &'static str {
        match self {
            PoolKind::Feature => "FEATURE",
            PoolKind::Increment => "INCREMENT",
        }
    }
}

/// A FlexLM version number. FlexLM compares versions as decimal numbers
/// (so `1.10` equals `1.1` and is below `1.9`); this keeps that order and the
/// text as written, for display.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// Integer part times 10^9 plus the fraction in billionths.
    scaled: u64,
    text: String,
}

/// Digits of fraction a [`Version`] keeps.
const VERSION_FRACTION_DIGITS: usize = 9;

impl Version {
    /// Parses `12`, `1.0`, `2024.0501`. Returns `None` for anything else
    /// (signs, exponents, more than 9 fraction digits, empty).
    pub fn parse(text: &str) -> Option<Version> {
        Some(Version {
            scaled: Self::scaled_of(text)?,
            text: text.to_string(),
        })
    }

    /// The numeric value of a version string, without allocating; `None`
    /// where [`Version::parse`] would fail.
    pub fn scaled_of(text: &str) -> Option<u64> {
        let (int, frac) = match text.split_once('.') {
            Some((i, f)) => (i, f),
            None => (text, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if frac.len() > VERSION_FRACTION_DIGITS {
            return None;
        }
        let int_val: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut frac_val: u64 = 0;
        for i in 0..VERSION_FRACTION_DIGITS {
            let d = frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
            frac_val = frac_val * 10 + d;
        }
        int_val.checked_mul(1_000_000_000)?.checked_add(frac_val)
    }

    /// Version `0.0`, which every pool satisfies.
    pub fn zero() -> Version {
        Version {
            scaled: 0,
            text: "0.0".to_string(),
        }
    }

    /// The version as written in the file.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The numeric value used for comparisons (integer part × 10^9 + fraction).
    pub fn scaled(&self) -> u64 {
        self.scaled
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.scaled
            .cmp(&other.scaled)
            .then_with(|| self.text.cmp(&other.text))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A calendar date (proleptic Gregorian, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Full year, e.g. 2026.
    pub year: u16,
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
}

impl Date {
    /// Unix milliseconds of 00:00:00 UTC on this date.
    pub fn start_ms(self) -> Millis {
        days_from_civil(
            i64::from(self.year),
            u32::from(self.month),
            u32::from(self.day),
        )
        .max(0) as u64
            * 86_400_000
    }

    /// Unix milliseconds of the first instant after this date (the next
    /// midnight, UTC). A license that expires on this date is valid until then.
    pub fn end_ms(self) -> Millis {
        self.start_ms() + 86_400_000
    }

    /// FlexLM's spelling, `31-dec-2026`.
    pub fn flexlm(self) -> String {
        const MONTHS: [&str; 12] = [
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        let m = MONTHS[usize::from(self.month.clamp(1, 12)) - 1];
        format!("{}-{}-{}", self.day, m, self.year)
    }
}

/// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// When a pool stops serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Expiry {
    /// `permanent`, `0`, `1-jan-0`, `1-jan-00`, `1-jan-0000`.
    Permanent,
    /// Valid through the end of this day (UTC).
    On(Date),
}

impl Expiry {
    /// True when the pool no longer serves at `now`.
    pub fn is_expired(&self, now: Millis) -> bool {
        match self {
            Expiry::Permanent => false,
            Expiry::On(d) => now >= d.end_ms(),
        }
    }

    /// `permanent` or FlexLM's date spelling.
    pub fn flexlm(&self) -> String {
        match self {
            Expiry::Permanent => "permanent".to_string(),
            Expiry::On(d) => d.flexlm(),
        }
    }
}

/// FlexLM's duplicate grouping: which checkouts count as "the same" and so
/// share one license. An empty mask (also `DUP_GROUP=NONE`, or no keyword)
/// means tally's default: the same client handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DupGroup(u8);

impl DupGroup {
    /// Same user.
    pub const USER: u8 = 1;
    /// Same host.
    pub const HOST: u8 = 2;
    /// Same display.
    pub const DISPLAY: u8 = 4;
    /// Same vendor (every checkout of the feature).
    pub const VENDOR: u8 = 8;

    /// Grouping by handle only (the default).
    pub const fn by_handle() -> DupGroup {
        DupGroup(0)
    }

    /// From a bit mask of [`DupGroup::USER`] etc.
    pub const fn from_mask(mask: u8) -> DupGroup {
        DupGroup(mask & 0x0f)
    }

    /// Parses `NONE`, `SITE` (= `V`) or letters among `U`, `H`, `D`, `V`
    /// (`UHD`, `HV`, ...), case-insensitive. `None` for anything else.
    pub fn parse(text: &str) -> Option<DupGroup> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("NONE") {
            return Some(DupGroup(0));
        }
        if t.eq_ignore_ascii_case("SITE") {
            return Some(DupGroup(Self::VENDOR));
        }
        if t.is_empty() {
            return None;
        }
        let mut mask = 0;
        for c in t.chars() {
            mask |= match c.to_ascii_uppercase() {
                'U' => Self::USER,
                'H' => Self::HOST,
                'D' => Self::DISPLAY,
                'V' => Self::VENDOR,
                _ => return None,
            };
        }
        Some(DupGroup(mask))
    }

    /// The bit mask.
    pub const fn mask(self) -> u8 {
        self.0
    }

    /// True for the default (per-handle) grouping.
    pub const fn is_by_handle(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for DupGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("NONE");
        }
        for (bit, c) in [
            (Self::USER, 'U'),
            (Self::HOST, 'H'),
            (Self::DISPLAY, 'D'),
            (Self::VENDOR, 'V'),
        ] {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// A Citrix vendor string, `;LT=SYS;GP=96;CL=ENT,ADV;SA=0;ODP=0;DUP_GROUP=HV`,
/// with the fields tally uses typed and the rest kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VendorString {
    /// The string as written.
    pub raw: String,
    /// `LT`: license type (`SYS`, `Eval`, `Retail`, `NFR`, ...).
    pub license_type: Option<String>,
    /// `GP`: offline grace period, hours.
    pub grace_hours: Option<u32>,
    /// `CL`: component list.
    pub components: Vec<String>,
    /// `SA`: subscription advantage flag / value.
    pub subscription: Option<String>,
    /// `ODP`: overdraft percentage.
    pub overdraft_percent: Option<u32>,
    /// `DUP_GROUP` inside the vendor string.
    pub dup_group: Option<DupGroup>,
    /// Every other `KEY=VALUE` field, in order.
    pub other: Vec<(String, String)>,
}

impl VendorString {
    /// True for Citrix's startup license type (`LT=SYS`).
    pub fn is_startup(&self) -> bool {
        self.license_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("SYS"))
    }
}

/// How long a bare `BORROW` lets a license be borrowed: 168 hours (a week),
/// as FlexNet.
pub const DEFAULT_BORROW_HOURS: u32 = 168;

/// One `FEATURE` or `INCREMENT` line: one pool of licenses.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolLine {
    /// FEATURE or INCREMENT.
    pub kind: PoolKind,
    /// Feature name, e.g. `MPM_ADV_RC`.
    pub feature: String,
    /// Vendor daemon name, e.g. `CITRIX`.
    pub vendor: String,
    /// Highest version this pool serves.
    pub version: Version,
    /// Last day the pool serves.
    pub expiry: Expiry,
    /// Number of licenses; `None` when `uncounted` (or 0).
    pub count: Option<u32>,
    /// `START=` date, if any.
    pub start: Option<Date>,
    /// `VENDOR_STRING=`, parsed.
    pub vendor_string: Option<VendorString>,
    /// Effective duplicate grouping: `DUP_GROUP=` if present, else the
    /// vendor string's, else by handle.
    pub dup_group: DupGroup,
    /// Licenses allowed beyond `count`: `OVERDRAFT=n`, else `ODP` percent
    /// of count (rounded down), else 0.
    pub overdraft: u32,
    /// `HOSTID=`, if any.
    pub hostid: Option<String>,
    /// `ISSUER=`, if any.
    pub issuer: Option<String>,
    /// `ISSUED=`, if any.
    pub issued: Option<Date>,
    /// `NOTICE=`, if any.
    pub notice: Option<String>,
    /// `SIGN=` (or `SIGN2=`), if any; kept, not verified.
    pub sign: Option<String>,
    /// `SUPERSEDE` present (with its optional list).
    pub supersede: Option<String>,
    /// Every `key=value` (or bare keyword) tally does not interpret, in order.
    pub other: Vec<(String, String)>,
    /// 1-based line number where the record starts (for a package
    /// component: the enabling line's; for an upgrade: the UPGRADE line's).
    pub line: u32,
    /// Set on the lines a PACKAGE made: the package they come from.
    pub package: Option<ComponentOf>,
    /// `USER_BASED[=n]` or `HOST_BASED[=n]`: only users (hosts) the options
    /// file INCLUDEs may use the line, at most `n` of them.
    pub based: Option<Based>,
}

impl PoolLine {
    /// A FEATURE line with only the five positional fields set: permanent,
    /// no keywords, line 0. For embedders and tests that build licenses in
    /// code; set other fields afterwards.
    pub fn new(feature: &str, vendor: &str, version: Version, count: Option<u32>) -> PoolLine {
        PoolLine {
            kind: PoolKind::Feature,
            feature: feature.to_string(),
            vendor: vendor.to_string(),
            version,
            expiry: Expiry::Permanent,
            count,
            start: None,
            vendor_string: None,
            dup_group: DupGroup::by_handle(),
            overdraft: 0,
            hostid: None,
            issuer: None,
            issued: None,
            notice: None,
            sign: None,
            supersede: None,
            other: Vec::new(),
            line: 0,
            package: None,
            based: None,
        }
    }

    /// `BORROW[=hours]`: the longest a license of this line may be
    /// borrowed, in hours ([`DEFAULT_BORROW_HOURS`] for a bare `BORROW`);
    /// `None` if the line has no `BORROW`, or its value is not a whole
    /// number of hours of at least 1 (such a line is not borrowable).
    /// Kept in [`PoolLine::other`], so package components inherit it.
    pub fn borrow_hours(&self) -> Option<u32> {
        let (_, v) = self
            .other
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("BORROW"))?;
        if v.is_empty() {
            return Some(DEFAULT_BORROW_HOURS);
        }
        v.parse::<u32>().ok().filter(|&h| h >= 1)
    }

    /// True for the Citrix startup license (`LT=SYS` in the vendor string).
    pub fn is_startup(&self) -> bool {
        self.vendor_string
            .as_ref()
            .is_some_and(VendorString::is_startup)
    }
}

/// What a `USER_BASED[=n]` / `HOST_BASED[=n]` keyword says: the line may
/// be used only by the users (hosts) named in the options file's INCLUDE
/// lines for its feature, and at most `limit` of them may be named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Based {
    /// Users (`USER_BASED`) or hosts (`HOST_BASED`).
    pub kind: BasedKind,
    /// `n` of `=n`; `None`: the line's count (no limit if uncounted).
    pub n: Option<u32>,
}

/// Which names a [`Based`] line counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasedKind {
    /// `USER_BASED`: INCLUDE ... USER / GROUP.
    User,
    /// `HOST_BASED`: INCLUDE ... HOST / HOST_GROUP.
    Host,
}

impl Based {
    /// Reads `key[=value]` if `key` is `USER_BASED` or `HOST_BASED` (any
    /// case): `None` for another key, `Some(Err(()))` for a value that is
    /// not a whole number of at least 1.
    pub fn parse(key: &str, value: Option<&str>) -> Option<Result<Based, ()>> {
        let kind = if key.eq_ignore_ascii_case("USER_BASED") {
            BasedKind::User
        } else if key.eq_ignore_ascii_case("HOST_BASED") {
            BasedKind::Host
        } else {
            return None;
        };
        let n = match value {
            None => None,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n >= 1 && v.bytes().all(|b| b.is_ascii_digit()) => Some(n),
                _ => return Some(Err(())),
            },
        };
        Some(Ok(Based { kind, n }))
    }

    /// The keyword as written in license files.
    pub fn keyword(&self) -> &'static str {
        match self.kind {
            BasedKind::User => "USER_BASED",
            BasedKind::Host => "HOST_BASED",
        }
    }

    /// Most distinct names the options file may INCLUDE for a line with
    /// `count` licenses (`None`: uncounted): `n`, else the count, else no
    /// limit.
    pub fn limit(&self, count: Option<u32>) -> Option<u32> {
        self.n.or(count)
    }
}

/// `PACKAGE name vendor [version] components=...`, kept as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageLine {
    /// Package name.
    pub name: String,
    /// Vendor daemon.
    pub vendor: String,
    /// Version, if given.
    pub version: Option<String>,
    /// `COMPONENTS=` list as written.
    pub components: Option<String>,
    /// Every other keyword.
    pub other: Vec<(String, String)>,
    /// 1-based line number.
    pub line: u32,
}

/// `UPGRADE feature vendor from_version to_version exp_date count ...`, kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeLine {
    /// Feature name.
    pub feature: String,
    /// Vendor daemon.
    pub vendor: String,
    /// Version upgraded from.
    pub from_version: String,
    /// Version upgraded to.
    pub to_version: String,
    /// Every remaining field as written.
    pub rest: Vec<String>,
    /// 1-based line number.
    pub line: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_decimals() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("1.10") < v("1.9"));
        assert_eq!(v("1.1").scaled(), v("1.10").scaled());
        assert!(v("2024.0501") > v("11.17"));
        assert!(v("12") > v("11.999"));
        assert_eq!(v("3").as_str(), "3");
        assert!(Version::parse("").is_none());
        assert!(Version::parse("1.0a").is_none());
        assert!(Version::parse("-1").is_none());
    }

    #[test]
    fn dates_convert_to_unix_ms() {
        let d = Date {
            year: 1970,
            month: 1,
            day: 2,
        };
        assert_eq!(d.start_ms(), 86_400_000);
        let d = Date {
            year: 2026,
            month: 12,
            day: 31,
        };
        // 2027-01-01T00:00:00Z
        assert_eq!(d.end_ms(), 1_798_761_600_000);
        assert_eq!(d.flexlm(), "31-dec-2026");
        assert!(!Expiry::On(d).is_expired(1_798_761_599_999));
        assert!(Expiry::On(d).is_expired(1_798_761_600_000));
    }

    #[test]
    fn dup_group_letters() {
        assert_eq!(DupGroup::parse("UHD").unwrap().mask(), 7);
        assert_eq!(DupGroup::parse("hv").unwrap().to_string(), "HV");
        assert!(DupGroup::parse("NONE").unwrap().is_by_handle());
        assert_eq!(DupGroup::parse("SITE").unwrap().mask(), DupGroup::VENDOR);
        assert!(DupGroup::parse("UX").is_none());
    }
}
