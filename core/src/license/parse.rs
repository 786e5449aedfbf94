//! The FlexLM license-file parser: text in, [`LicenseSet`] out.
//!
//! Records (see [`super::lexer`] for lines, continuations, quoting and
//! positions):
//!
//! - `SERVER host hostid [port | PORT=port] ...`
//! - `VENDOR name [daemon_path] [[OPTIONS=]options_path] [[PORT=]port]`,
//!   also spelled `DAEMON`
//! - `USE_SERVER`
//! - `FEATURE` / `INCREMENT name vendor version expiry count [key=value ...]`
//! - `PACKAGE name vendor [version] [COMPONENTS=...] ...`
//! - `UPGRADE feature vendor from_version to_version expiry count ...`
//!
//! Record keywords and `key=` names are case-insensitive. Keywords tally does
//! not interpret are kept, in order, in the record's `other` list (bare words
//! as `(word, "")`); they are never an error.
//!
//! The parser does no I/O: callers read the file (tallyd and tallyctl do,
//! with a size limit, in `tally_server::source`) and pass the text.
//!
//! **Errors never stop the parse.** A record that cannot be understood (an
//! unknown record keyword, missing fields, a bad date, count, version, port,
//! `DUP_GROUP`, `OVERDRAFT` or vendor-string field, an unterminated quote)
//! is skipped and becomes one [`Diagnostic`]. Its `line` and `column` are the
//! physical line and character column of the offending token, which for a
//! record continued with `\` may be a later line than the one the record
//! starts on ([`Diagnostic::record_line`]). When a field is missing there is
//! no offending token, and the position is the record keyword's.

use super::date::{parse_date, parse_expiry};
use super::lexer::{records, starts_of_lines, Pos, Record, Word};
use super::model::{
    Based, Date, Diagnostic, DupGroup, LicenseSet, PackageLine, PoolKind, PoolLine, ServerLine,
    UpgradeLine, VendorLine, VendorString, Version,
};
use super::vendor_string::parse_vendor_string;

/// Parses license text. Never fails: every record that cannot be understood
/// is skipped and reported in [`LicenseSet::diagnostics`]; the rest load.
/// `source` names the text in diagnostics (a path, `<embedded demo>`, ...).
/// The SUPERSEDE, UPGRADE and PACKAGE lines are then applied to the pools
/// ([`expand`](super::expand)).
pub fn parse_str(source: &str, text: &str) -> LicenseSet {
    super::expand(&parse_raw(source, text))
}

/// [`parse_str`] without [`expand`](super::expand): the lines as written.
pub(crate) fn parse_raw(source: &str, text: &str) -> LicenseSet {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut set = LicenseSet {
        source: source.to_string(),
        ..LicenseSet::default()
    };
    for record in records(text) {
        if let Err(problem) = parse_record(&mut set, &record) {
            set.diagnostics.push(Diagnostic {
                file: source.to_string(),
                line: problem.pos.line,
                column: problem.pos.column,
                message: problem.message,
                record_line: record.line,
            });
        }
    }
    set
}

/// Why a record was skipped, and where.
#[derive(Debug)]
struct Problem {
    pos: Pos,
    message: String,
}

impl Problem {
    fn new(pos: Pos, message: impl Into<String>) -> Problem {
        Problem {
            pos,
            message: message.into(),
        }
    }
}

/// The record keywords tally knows, for dispatch and "did you mean".
const RECORD_KEYWORDS: [&str; 8] = [
    "SERVER",
    "VENDOR",
    "DAEMON",
    "USE_SERVER",
    "FEATURE",
    "INCREMENT",
    "PACKAGE",
    "UPGRADE",
];

fn parse_record(set: &mut LicenseSet, record: &Record) -> Result<(), Problem> {
    let words = record.words.as_ref().map_err(|u| {
        Problem::new(
            u.pos,
            "unterminated quoted string: the \" here is not closed before the end of the record",
        )
    })?;
    let Some((head, rest)) = words.split_first() else {
        return Ok(());
    };
    if let Some(joined) = starts_of_lines(words).find(|w| is_record_keyword(w)) {
        return Err(swallowed(head, rest, joined, record.line));
    }
    if let Some(pos) = record.dangling {
        return Err(Problem::new(
            pos,
            format!(
                "the \\ at the end of the file continues this {} record onto a line \
                 that does not exist (was the file cut short?); record skipped",
                head.text.to_ascii_uppercase()
            ),
        ));
    }
    let line = record.line;
    let keyword = head.text.to_ascii_uppercase();
    match keyword.as_str() {
        _ if !head.is_bare() => return Err(unknown_keyword(head)),
        "SERVER" => set.servers.push(parse_server(head, rest, line)?),
        "VENDOR" | "DAEMON" => set.vendors.push(parse_vendor(head, rest, line)?),
        "USE_SERVER" => set.use_server = true,
        "FEATURE" => set
            .pools
            .push(parse_pool(PoolKind::Feature, head, rest, line)?),
        "INCREMENT" => set
            .pools
            .push(parse_pool(PoolKind::Increment, head, rest, line)?),
        "PACKAGE" => set.packages.push(parse_package(head, rest, line)?),
        "UPGRADE" => set.upgrades.push(parse_upgrade(head, rest, line)?),
        _ => return Err(unknown_keyword(head)),
    }
    Ok(())
}

/// True for a bare word that is a record keyword (`INCREMENT`, `vendor`).
fn is_record_keyword(word: &Word) -> bool {
    word.is_bare() && RECORD_KEYWORDS.contains(&word.text.to_ascii_uppercase().as_str())
}

/// The record of `line` swallowed the record that `joined` starts: a `\`
/// ended the line before `joined`'s. FlexLM rejects the joined line; so does
/// tally, naming both records so that neither disappears without a word.
fn swallowed(head: &Word, rest: &[Word], joined: &Word, line: u32) -> Problem {
    let name_after = |w: &Word| -> String {
        let mut all = std::iter::once(head).chain(rest);
        let next = all
            .by_ref()
            .position(|x| std::ptr::eq(x, w))
            .and_then(|_| all.next());
        next.map_or(String::new(), |n| format!(" {}", n.text))
    };
    let first = format!(
        "{}{}",
        head.text.to_ascii_uppercase(),
        rest.first()
            .map_or(String::new(), |n| format!(" {}", n.text))
    );
    let second = format!("{}{}", joined.text.to_ascii_uppercase(), name_after(joined));
    Problem::new(
        joined.pos,
        format!(
            "{second} starts a new record here, but the \\ at the end of line {} joins it \
             to the {first} record of line {line}; both are skipped (remove that \\)",
            joined.pos.line.saturating_sub(1)
        ),
    )
}

fn unknown_keyword(head: &Word) -> Problem {
    let mut message = format!("unknown record keyword \"{}\"", head.raw);
    if let Some(guess) = closest_keyword(&head.text) {
        message.push_str(&format!(" (did you mean {guess}?)"));
    }
    Problem::new(head.pos, message)
}

/// The record keyword within edit distance 2 of `word`, if any.
fn closest_keyword(word: &str) -> Option<&'static str> {
    if word.chars().count() < 4 {
        return None;
    }
    let upper = word.to_ascii_uppercase();
    RECORD_KEYWORDS
        .iter()
        .map(|k| (edit_distance(&upper, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Number of bare words at the start of `words` (the positional fields).
fn leading_bare(words: &[Word]) -> usize {
    words.iter().take_while(|w| w.is_bare()).count()
}

/// True when `word` is `KEY=...` for `key` (case-insensitive).
fn has_key(word: &Word, key: &str) -> bool {
    word.key().is_some_and(|k| k.eq_ignore_ascii_case(key))
}

/// A bare word or `key=value` as an `other` entry.
fn other_entry(word: &Word) -> (String, String) {
    match word.key() {
        Some(key) => (key.to_string(), word.value().to_string()),
        None => (word.text.clone(), String::new()),
    }
}

fn parse_port(what: &str, word: &Word) -> Result<u16, Problem> {
    let text = word.value();
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_port(what, word));
    }
    text.parse().map_err(|_| bad_port(what, word))
}

fn bad_port(what: &str, word: &Word) -> Problem {
    Problem::new(
        word.value_pos,
        format!(
            "{what}: bad port \"{}\" (expected a number from 0 to 65535)",
            word.value()
        ),
    )
}

fn is_number(word: &Word) -> bool {
    word.is_bare() && !word.text.is_empty() && word.text.bytes().all(|b| b.is_ascii_digit())
}

/// `SERVER host hostid [port | PORT=port] ...`. The host id is taken whole,
/// so `ID=123` or `INTERNET=10.0.0.1` work as host ids.
fn parse_server(head: &Word, rest: &[Word], line: u32) -> Result<ServerLine, Problem> {
    let found = rest
        .iter()
        .take(2)
        .take_while(|w| !has_key(w, "PORT"))
        .count();
    let (Some(host), Some(hostid), true) = (rest.first(), rest.get(1), found == 2) else {
        return Err(Problem::new(
            head.pos,
            format!("SERVER line needs 2 fields (host hostid), found {found}"),
        ));
    };
    let what = format!("SERVER {}", host.text);
    let mut server = ServerLine {
        host: host.text.clone(),
        hostid: hostid.text.clone(),
        port: None,
        other: Vec::new(),
        line,
    };
    for word in &rest[2..] {
        if server.port.is_none() && (is_number(word) || has_key(word, "PORT")) {
            server.port = Some(parse_port(&what, word)?);
        } else {
            server.other.push(other_entry(word));
        }
    }
    Ok(server)
}

/// `VENDOR name [daemon_path] [[OPTIONS=]options_path] [[PORT=]port]`.
/// Bare words fill daemon path, then options path; a bare number is the port.
fn parse_vendor(head: &Word, rest: &[Word], line: u32) -> Result<VendorLine, Problem> {
    let keyword = head.text.to_ascii_uppercase();
    let Some(name) = rest.first().filter(|w| w.is_bare()) else {
        return Err(Problem::new(
            head.pos,
            format!("{keyword} line needs a vendor daemon name"),
        ));
    };
    let what = format!("{keyword} {}", name.text);
    let mut vendor = VendorLine {
        name: name.text.clone(),
        daemon_path: None,
        options_path: None,
        port: None,
        other: Vec::new(),
        line,
    };
    for word in &rest[1..] {
        if has_key(word, "PORT") || (is_number(word) && vendor.port.is_none()) {
            vendor.port = Some(parse_port(&what, word)?);
        } else if has_key(word, "OPTIONS") {
            vendor.options_path = Some(word.value().to_string());
        } else if word.is_bare() && vendor.daemon_path.is_none() {
            vendor.daemon_path = Some(word.text.clone());
        } else if word.is_bare() && vendor.options_path.is_none() {
            vendor.options_path = Some(word.text.clone());
        } else {
            vendor.other.push(other_entry(word));
        }
    }
    Ok(vendor)
}

/// Field names of a FEATURE/INCREMENT line, for the "needs" message.
const POOL_FIELDS: [&str; 5] = ["name", "vendor", "version", "expiry", "count"];

fn parse_pool(kind: PoolKind, head: &Word, rest: &[Word], line: u32) -> Result<PoolLine, Problem> {
    let found = leading_bare(rest);
    let (Some([name, vendor, version, expiry, count]), keywords) = (
        rest.first_chunk::<5>().filter(|_| found >= 5),
        rest.get(5..),
    ) else {
        return Err(Problem::new(
            head.pos,
            format!(
                "{} line needs 5 fields ({}), found {}",
                kind.keyword(),
                POOL_FIELDS.join(" "),
                found.min(5)
            ),
        ));
    };
    let what = format!("{} {}", kind.keyword(), name.text);
    // Checked in field order, so the first bad field is the one reported.
    let version = parse_version(&what, version)?;
    let parsed_expiry = parse_expiry(&expiry.text).map_err(|e| {
        Problem::new(
            expiry.pos,
            format!("{what}: bad expiry date \"{}\" ({e})", expiry.text),
        )
    })?;
    let count = parse_count(&what, count)?;
    let mut pool = PoolLine::new(&name.text, &vendor.text, version, count);
    pool.kind = kind;
    pool.line = line;
    pool.expiry = parsed_expiry;
    let mut extras = PoolExtras::default();
    for (index, word) in keywords.unwrap_or_default().iter().enumerate() {
        if word.is_bare() && !is_bare_keyword(index, word) {
            return Err(stray_word(&what, word));
        }
        apply_pool_keyword(&what, &mut pool, &mut extras, word)?;
    }
    finish_pool(&mut pool, extras);
    Ok(pool)
}

/// Shortest old-style positional license key, in hex digits (FlexLM's
/// keys before `SIGN=` are 12 or 20).
const MIN_OLD_KEY_DIGITS: usize = 12;

/// Whether a bare word after a pool line's 5 fields is one FlexLM accepts:
/// the old positional license key right after the count (hex digits), an
/// old quoted vendor string, or a flag keyword (`SUPERSEDE`, `TS_OK`,
/// `BORROW`: letters, digits and `_`, starting with a letter, and not a
/// record keyword). Anything else (`5`, `31-dec-2026`, `#`) is a stray
/// positional token, which FlexLM rejects.
fn is_bare_keyword(index: usize, word: &Word) -> bool {
    let text = word.text.as_str();
    let old_key = index == 0
        && text.len() >= MIN_OLD_KEY_DIGITS
        && text.bytes().all(|b| b.is_ascii_hexdigit());
    let quoted = word.raw.starts_with('"');
    let flag = text.starts_with(|c: char| c.is_ascii_alphabetic())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !is_record_keyword(word);
    old_key || quoted || flag
}

fn stray_word(what: &str, word: &Word) -> Problem {
    let hint = if word.text.starts_with('#') {
        "a # starts a comment only at the beginning of a line"
    } else {
        "keywords are KEY=value or a bare name such as SUPERSEDE"
    };
    Problem::new(
        word.pos,
        format!(
            "{what}: unexpected word \"{}\" after the 5 fields ({hint}); record skipped",
            word.raw
        ),
    )
}

/// Keywords whose effect is settled only after the whole line is read.
#[derive(Debug, Default)]
struct PoolExtras {
    dup_group: Option<DupGroup>,
    overdraft: Option<u32>,
    sign2: Option<String>,
}

fn apply_pool_keyword(
    what: &str,
    pool: &mut PoolLine,
    extras: &mut PoolExtras,
    word: &Word,
) -> Result<(), Problem> {
    let Some(key) = word.key() else {
        if word.text.eq_ignore_ascii_case("SUPERSEDE") {
            pool.supersede = Some(String::new());
        } else if let Some(based) = Based::parse(&word.text, None) {
            pool.based = based.ok();
        } else {
            pool.other.push(other_entry(word));
        }
        return Ok(());
    };
    let value = word.value();
    match key.to_ascii_uppercase().as_str() {
        "VENDOR_STRING" => pool.vendor_string = Some(vendor_string(what, word)?),
        "HOSTID" => pool.hostid = Some(value.to_string()),
        "ISSUER" => pool.issuer = Some(value.to_string()),
        "ISSUED" => pool.issued = Some(keyword_date(what, "ISSUED", word)?),
        "START" => pool.start = Some(keyword_date(what, "START", word)?),
        "NOTICE" => pool.notice = Some(value.to_string()),
        "SIGN" => pool.sign = Some(value.to_string()),
        "SIGN2" => extras.sign2 = Some(value.to_string()),
        "SUPERSEDE" => pool.supersede = Some(value.to_string()),
        "DUP_GROUP" => {
            extras.dup_group = Some(DupGroup::parse(value).ok_or_else(|| {
                Problem::new(
                    word.value_pos,
                    format!(
                        "{what}: bad DUP_GROUP \"{value}\" \
                         (expected NONE, SITE or letters from U, H, D, V)"
                    ),
                )
            })?);
        }
        "OVERDRAFT" => {
            extras.overdraft = Some(whole_number(value).ok_or_else(|| {
                Problem::new(
                    word.value_pos,
                    format!("{what}: bad OVERDRAFT \"{value}\" (expected a whole number)"),
                )
            })?);
        }
        "USER_BASED" | "HOST_BASED" => pool.based = Some(based_keyword(what, key, word)?),
        _ => pool.other.push(other_entry(word)),
    }
    Ok(())
}

/// Settles `dup_group`, `overdraft` and `sign` once every keyword is read.
fn finish_pool(pool: &mut PoolLine, extras: PoolExtras) {
    let vs = pool.vendor_string.as_ref();
    pool.dup_group = extras
        .dup_group
        .or_else(|| vs.and_then(|v| v.dup_group))
        .unwrap_or_default();
    let percent = vs.and_then(|v| v.overdraft_percent);
    pool.overdraft = extras
        .overdraft
        .unwrap_or_else(|| match (pool.count, percent) {
            (Some(count), Some(percent)) => {
                let n = u64::from(count) * u64::from(percent) / 100;
                u32::try_from(n).unwrap_or(u32::MAX)
            }
            _ => 0,
        });
    if let Some(sign2) = extras.sign2 {
        if pool.sign.is_none() {
            pool.sign = Some(sign2);
        } else {
            pool.other.push(("SIGN2".to_string(), sign2));
        }
    }
}

fn vendor_string(what: &str, word: &Word) -> Result<VendorString, Problem> {
    parse_vendor_string(word.value()).map_err(|e| {
        Problem::new(
            word.value_pos,
            format!("{what}: bad VENDOR_STRING field {e}"),
        )
    })
}

fn keyword_date(what: &str, key: &str, word: &Word) -> Result<Date, Problem> {
    parse_date(word.value()).map_err(|e| {
        Problem::new(
            word.value_pos,
            format!("{what}: bad {key} date \"{}\" ({e})", word.value()),
        )
    })
}

fn based_keyword(what: &str, key: &str, word: &Word) -> Result<Based, Problem> {
    let value = word.value();
    Based::parse(key, Some(value))
        .and_then(Result::ok)
        .ok_or_else(|| {
            Problem::new(
                word.value_pos,
                format!(
                    "{what}: bad {} \"{value}\" (expected a whole number of users or hosts, at least 1)",
                    key.to_ascii_uppercase()
                ),
            )
        })
}

/// Digits only (no sign), fitting a `u32`.
fn whole_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_version(what: &str, word: &Word) -> Result<Version, Problem> {
    Version::parse(&word.text).ok_or_else(|| {
        Problem::new(
            word.pos,
            format!(
                "{what}: bad version \"{}\" (expected digits with an optional decimal \
                 fraction, such as 1.0 or 2024.0501)",
                word.text
            ),
        )
    })
}

/// A license count: `None` for `uncounted` or 0.
fn parse_count(what: &str, word: &Word) -> Result<Option<u32>, Problem> {
    if word.text.eq_ignore_ascii_case("uncounted") {
        return Ok(None);
    }
    match whole_number(&word.text) {
        Some(0) => Ok(None),
        Some(n) => Ok(Some(n)),
        None => Err(Problem::new(
            word.pos,
            format!(
                "{what}: bad license count \"{}\" (expected a positive whole number, \
                 \"uncounted\" or 0)",
                word.text
            ),
        )),
    }
}

/// `PACKAGE name vendor [version] [COMPONENTS=...] ...`, kept as parsed.
fn parse_package(head: &Word, rest: &[Word], line: u32) -> Result<PackageLine, Problem> {
    let found = leading_bare(rest);
    let (Some([name, vendor]), true) = (rest.first_chunk::<2>(), found >= 2) else {
        return Err(Problem::new(
            head.pos,
            format!(
                "PACKAGE line needs at least 2 fields (name vendor), found {}",
                found.min(2)
            ),
        ));
    };
    let mut package = PackageLine {
        name: name.text.clone(),
        vendor: vendor.text.clone(),
        version: None,
        components: None,
        other: Vec::new(),
        line,
    };
    let mut keywords = &rest[2..];
    if let Some(version) = keywords.first().filter(|w| w.is_bare()) {
        if Version::parse(&version.text).is_some() {
            package.version = Some(version.text.clone());
            keywords = &keywords[1..];
        }
    }
    for word in keywords {
        if has_key(word, "COMPONENTS") {
            package.components = Some(word.value().to_string());
        } else {
            package.other.push(other_entry(word));
        }
    }
    Ok(package)
}

/// `UPGRADE feature vendor from_version to_version expiry count ...`: the
/// versions, expiry and count are checked, then kept as written.
fn parse_upgrade(head: &Word, rest: &[Word], line: u32) -> Result<UpgradeLine, Problem> {
    let found = leading_bare(rest);
    let (Some([feature, vendor, from, to, expiry, count]), true) =
        (rest.first_chunk::<6>(), found >= 6)
    else {
        return Err(Problem::new(
            head.pos,
            format!(
                "UPGRADE line needs 6 fields (feature vendor from_version to_version \
                 expiry count), found {}",
                found.min(6)
            ),
        ));
    };
    let what = format!("UPGRADE {}", feature.text);
    parse_version(&what, from)?;
    parse_version(&what, to)?;
    parse_expiry(&expiry.text).map_err(|e| {
        Problem::new(
            expiry.pos,
            format!("{what}: bad expiry date \"{}\" ({e})", expiry.text),
        )
    })?;
    parse_count(&what, count)?;
    Ok(UpgradeLine {
        feature: feature.text.clone(),
        vendor: vendor.text.clone(),
        from_version: from.text.clone(),
        to_version: to.text.clone(),
        rest: rest[4..].iter().map(|w| w.raw.clone()).collect(),
        line,
    })
}

#[cfg(test)]
mod tests;
