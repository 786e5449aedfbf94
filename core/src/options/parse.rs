//! The options-file parser. Records and words come from the license
//! lexer (same `\` continuations, `#` comments, quotes and positions).
//!
//! Keywords and type names are read case-insensitively; feature, user, host,
//! display and group names are kept as written.

use super::{
    Diagnostic, FeatureLimit, FeatureSpec, Group, IpPattern, LogPath, OptionsFile, Qualifier,
    QualifierKey, Rule, RuleKind, Target, TargetKind, MAX_NAME_BYTES,
};
use crate::license::lexer::{records, starts_of_lines, Pos, Record, Word};

/// Parses options text. Never fails: a line that cannot be understood is
/// skipped and reported in [`OptionsFile::diagnostics`].
pub fn parse_str(source: &str, text: &str) -> OptionsFile {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut file = OptionsFile {
        source: source.to_string(),
        ..OptionsFile::default()
    };
    // Where each rule naming a group was, to check the group exists once
    // the whole file is read (FlexLM allows a group defined further down).
    let mut group_refs: Vec<(usize, Pos, u32)> = Vec::new();
    // The same for INCLUDE_BORROW / EXCLUDE_BORROW rules.
    let mut borrow_group_refs: Vec<(usize, Pos, u32)> = Vec::new();
    for record in records(text) {
        let borrow_rules = file.borrow_rules.len();
        let parsed = check_record(&record).and_then(|()| parse_record(&mut file, &record));
        match parsed {
            Ok(group) => {
                if let Some(pos) = group {
                    if file.borrow_rules.len() > borrow_rules {
                        borrow_group_refs.push((borrow_rules, pos, record.line));
                    } else {
                        group_refs.push((file.rules.len() - 1, pos, record.line));
                    }
                }
                if let Some(p) = hash_name(&record) {
                    file.warnings.push(diag(source, &p, record.line));
                }
            }
            Err(p) => file.diagnostics.push(diag(source, &p, record.line)),
        }
    }
    // Drop rules naming an undefined group, with a diagnostic each.
    let borrow_dropped = undefined_groups(&mut file, source, borrow_group_refs, true);
    for index in borrow_dropped.into_iter().rev() {
        file.borrow_rules.remove(index);
    }
    let dropped = undefined_groups(&mut file, source, group_refs, false);
    for index in dropped.into_iter().rev() {
        file.rules.remove(index);
    }
    file.diagnostics
        .sort_by_key(|d| (d.line, d.column, d.record_line));
    file
}

/// The rules of `refs` (indices into the file's rules, or its borrow rules)
/// that name a group the file does not define, each with a diagnostic.
fn undefined_groups(
    file: &mut OptionsFile,
    source: &str,
    refs: Vec<(usize, Pos, u32)>,
    borrow: bool,
) -> Vec<usize> {
    let mut dropped = Vec::new();
    for (index, pos, record_line) in refs {
        let rules = if borrow {
            &file.borrow_rules
        } else {
            &file.rules
        };
        let t = &rules[index].target;
        let known = match t.kind {
            TargetKind::Group => file.group(&t.name).is_some(),
            TargetKind::HostGroup => file.host_group(&t.name).is_some(),
            _ => true,
        };
        if !known {
            let p = Problem::at(
                pos,
                format!(
                    "{} {} is not defined in this file; rule skipped",
                    t.kind.keyword(),
                    t.name
                ),
            );
            file.diagnostics.push(diag(source, &p, record_line));
            dropped.push(index);
        }
    }
    dropped
}

/// Every options keyword, for spotting a line joined to the one above.
const OPTION_KEYWORDS: [&str; 21] = [
    "INCLUDE",
    "EXCLUDE",
    "RESERVE",
    "MAX",
    "INCLUDEALL",
    "EXCLUDEALL",
    "GROUP",
    "USER_GROUP",
    "HOST_GROUP",
    "GROUPCASEINSENSITIVE",
    "MAX_OVERDRAFT",
    "TIMEOUT",
    "LINGER",
    "TIMEOUTALL",
    "NOLOG",
    "DEBUGLOG",
    "REPORTLOG",
    "INCLUDE_BORROW",
    "EXCLUDE_BORROW",
    "BORROW_LOWWATER",
    "MAX_BORROW_HOURS",
];

/// What makes a whole record unreadable before its keyword is looked at:
/// a `\` that joined the next line (which starts with an options keyword)
/// to this one, or a `\` at the end of the file.
fn check_record(record: &Record) -> Result<(), Problem> {
    let Ok(words) = &record.words else {
        return Ok(());
    };
    let is_keyword = |w: &Word| OPTION_KEYWORDS.contains(&w.text.to_ascii_uppercase().as_str());
    if let (Some(first), Some(joined)) = (
        words.first(),
        starts_of_lines(words).find(|w| is_keyword(w)),
    ) {
        return Err(Problem::at(
            joined.pos,
            format!(
                "{} starts a new line here, but the \\ at the end of line {} joins it to the \
                 {} line of line {}; both are skipped (remove that \\)",
                joined.text,
                joined.pos.line.saturating_sub(1),
                first.text,
                record.line
            ),
        ));
    }
    if let Some(pos) = record.dangling {
        return Err(Problem::at(
            pos,
            "the \\ at the end of the file continues this line onto a line that does not \
             exist (was the file cut short?); line skipped",
        ));
    }
    Ok(())
}

/// A loaded line with a name starting with `#`: options files have no
/// trailing comments (FlexLM's have none either), so `GROUP eng erik  # old`
/// makes users `#` and `old`. A warning, at the first such word.
fn hash_name(record: &Record) -> Option<Problem> {
    let words = record.words.as_ref().ok()?;
    let (first, rest) = words.split_first()?;
    let at = rest.iter().position(|w| w.text.starts_with('#'))?;
    let read: Vec<String> = rest[at..]
        .iter()
        .take(4)
        .map(|w| format!("\"{}\"", w.text))
        .collect();
    let more = if rest.len() - at > 4 { ", ..." } else { "" };
    Some(Problem::at(
        rest[at].pos,
        format!(
            "\"{}\" is read as a name on this {} line: a # starts a comment only at the \
             beginning of a line, so {}{more} are names here",
            rest[at].text,
            first.text,
            read.join(", ")
        ),
    ))
}

fn diag(source: &str, p: &Problem, record_line: u32) -> Diagnostic {
    Diagnostic {
        file: source.to_string(),
        line: p.pos.line,
        column: p.pos.column,
        message: p.message.clone(),
        record_line,
    }
}

struct Problem {
    pos: Pos,
    message: String,
}

impl Problem {
    fn at(pos: Pos, message: impl Into<String>) -> Problem {
        Problem {
            pos,
            message: message.into(),
        }
    }
}

/// Reads the words of a record one at a time, reporting a missing one at
/// the end of the last.
struct Words<'a> {
    words: &'a [Word],
    next: usize,
    keyword: &'a str,
}

impl<'a> Words<'a> {
    fn next(&mut self, what: &str) -> Result<&'a Word, Problem> {
        let w = self.words.get(self.next).ok_or_else(|| {
            let last = self
                .words
                .last()
                .map_or(Pos { line: 1, column: 1 }, |w| w.pos);
            Problem::at(last, format!("{} needs {what}", self.keyword))
        })?;
        self.next += 1;
        Ok(w)
    }

    fn end(&self) -> Result<(), Problem> {
        match self.words.get(self.next) {
            None => Ok(()),
            Some(w) => Err(Problem::at(
                w.pos,
                format!(
                    "unexpected \"{}\" after the end of {}{}",
                    w.text,
                    self.keyword,
                    if w.text.starts_with('#') {
                        " (a # starts a comment only at the beginning of a line)"
                    } else {
                        ""
                    }
                ),
            )),
        }
    }
}

/// Parses one record. `Ok(Some(pos))`: a rule naming a group was added
/// (pos of the group name).
fn parse_record(file: &mut OptionsFile, record: &Record) -> Result<Option<Pos>, Problem> {
    let words = match &record.words {
        Ok(w) => w,
        Err(q) => {
            return Err(Problem::at(
                q.pos,
                "quote is not closed before the end of the line",
            ))
        }
    };
    let Some(first) = words.first() else {
        return Ok(None);
    };
    let keyword = first.text.to_ascii_uppercase();
    let mut w = Words {
        words,
        next: 1,
        keyword: &first.text,
    };
    match keyword.as_str() {
        "INCLUDE" | "EXCLUDE" | "RESERVE" | "MAX" => {
            let kind = match keyword.as_str() {
                "INCLUDE" => RuleKind::Include,
                "EXCLUDE" => RuleKind::Exclude,
                "RESERVE" => RuleKind::Reserve(count(w.next("a number of licenses")?)?),
                _ => RuleKind::Max(count(w.next("a number of licenses")?)?),
            };
            let feature = feature_spec(w.next("a feature name")?)?;
            rule(file, &mut w, kind, Some(feature), record.line)
        }
        "INCLUDEALL" | "EXCLUDEALL" => {
            let kind = if keyword == "INCLUDEALL" {
                RuleKind::Include
            } else {
                RuleKind::Exclude
            };
            rule(file, &mut w, kind, None, record.line)
        }
        "GROUP" | "USER_GROUP" | "HOST_GROUP" => {
            let name = name(w.next("a group name")?)?;
            let mut members = Vec::new();
            while let Some(m) = words.get(w.next) {
                w.next += 1;
                members.push(self::name(m)?);
            }
            if members.is_empty() {
                return Err(Problem::at(
                    first.pos,
                    format!("{} {name} lists no members", first.text),
                ));
            }
            let list = if keyword == "HOST_GROUP" {
                &mut file.host_groups
            } else {
                &mut file.groups
            };
            // FlexLM joins repeated definitions of one group.
            match list.iter_mut().find(|g| g.name == name) {
                Some(g) => g.members.extend(members),
                None => list.push(Group { name, members }),
            }
            Ok(None)
        }
        "GROUPCASEINSENSITIVE" => {
            let v = w.next("ON or OFF")?;
            file.group_case_insensitive = match v.text.to_ascii_uppercase().as_str() {
                "ON" => true,
                "OFF" => false,
                _ => return Err(Problem::at(v.pos, "GROUPCASEINSENSITIVE takes ON or OFF")),
            };
            w.end()?;
            Ok(None)
        }
        "INCLUDE_BORROW" | "EXCLUDE_BORROW" => {
            let kind = if keyword == "INCLUDE_BORROW" {
                RuleKind::Include
            } else {
                RuleKind::Exclude
            };
            let feature = feature_spec(w.next("a feature name")?)?;
            let group = rule(file, &mut w, kind, Some(feature), record.line)?;
            // Kept apart: they govern borrowing, not checkouts.
            if let Some(r) = file.rules.pop() {
                file.borrow_rules.push(r);
            }
            Ok(group)
        }
        "MAX_OVERDRAFT" | "TIMEOUT" | "LINGER" | "BORROW_LOWWATER" | "MAX_BORROW_HOURS" => {
            let feature = feature_spec(w.next("a feature name")?)?;
            let v = w.next(match keyword.as_str() {
                "MAX_OVERDRAFT" | "BORROW_LOWWATER" => "a number of licenses",
                "MAX_BORROW_HOURS" => "a number of hours",
                _ => "a number of seconds",
            })?;
            let value = count(v)?;
            w.end()?;
            let limit = FeatureLimit {
                feature,
                value,
                line: record.line,
            };
            match keyword.as_str() {
                "MAX_OVERDRAFT" => file.max_overdraft.push(limit),
                "TIMEOUT" => file.timeouts.push(limit),
                "BORROW_LOWWATER" => file.borrow_lowwater.push(limit),
                "MAX_BORROW_HOURS" => file.max_borrow_hours.push(limit),
                _ => file.lingers.push(limit),
            }
            Ok(None)
        }
        "TIMEOUTALL" => {
            file.timeout_all = Some(u64::from(count(w.next("a number of seconds")?)?));
            w.end()?;
            Ok(None)
        }
        "NOLOG" => {
            let v = w.next("IN, OUT, DENIED or QUEUED")?;
            match v.text.to_ascii_uppercase().as_str() {
                "IN" => file.nolog.checkin = true,
                "OUT" => file.nolog.checkout = true,
                "DENIED" => file.nolog.denied = true,
                "QUEUED" => file.nolog.queued = true,
                _ => {
                    return Err(Problem::at(
                        v.pos,
                        format!("NOLOG takes IN, OUT, DENIED or QUEUED, not \"{}\"", v.text),
                    ))
                }
            }
            w.end()?;
            Ok(None)
        }
        "DEBUGLOG" | "REPORTLOG" => {
            let v = w.next("a file path")?;
            let (path, append) = match v.text.strip_prefix('+') {
                Some(p) => (p.to_string(), true),
                None => (v.text.clone(), false),
            };
            if path.is_empty() {
                return Err(Problem::at(
                    v.pos,
                    format!("{} needs a file path", first.text),
                ));
            }
            w.end()?;
            let lp = Some(LogPath { path, append });
            if keyword == "DEBUGLOG" {
                file.debug_log = lp;
            } else {
                file.report_log = lp;
            }
            Ok(None)
        }
        _ => Err(Problem::at(
            first.pos,
            format!(
                "unknown or unsupported options keyword \"{}\"; line skipped",
                first.text
            ),
        )),
    }
}

fn rule(
    file: &mut OptionsFile,
    w: &mut Words<'_>,
    kind: RuleKind,
    feature: Option<FeatureSpec>,
    line: u32,
) -> Result<Option<Pos>, Problem> {
    let t = w.next("a type (USER, HOST, DISPLAY, GROUP, HOST_GROUP or INTERNET)")?;
    let mut tkind = TargetKind::parse(&t.text).ok_or_else(|| {
        let hint = if t.text.eq_ignore_ascii_case("PROJECT") {
            " (PROJECT is not supported: tally clients send no project)"
        } else {
            ""
        };
        Problem::at(
            t.pos,
            format!(
                "unknown type \"{}\"; expected USER, HOST, DISPLAY, GROUP, HOST_GROUP or INTERNET{hint}",
                t.text
            ),
        )
    })?;
    let n = w.next("a name")?;
    let name = name(n)?;
    w.end()?;
    // FlexLM lets HOST name an IP address, with wildcards.
    if tkind == TargetKind::Host && IpPattern::parse(&name).is_some() && name.contains('*') {
        tkind = TargetKind::Internet;
    }
    if tkind == TargetKind::Internet {
        if IpPattern::parse(&name).is_none() {
            return Err(Problem::at(
                n.pos,
                format!("\"{name}\" is not an IPv4 address or pattern such as 192.168.1.*"),
            ));
        }
        if matches!(kind, RuleKind::Reserve(_) | RuleKind::Max(_)) {
            return Err(Problem::at(
                t.pos,
                "INTERNET targets are supported in INCLUDE/EXCLUDE rules only",
            ));
        }
    }
    if matches!(kind, RuleKind::Reserve(0)) {
        return Err(Problem::at(
            w.words[1].pos,
            "RESERVE 0 reserves nothing; line skipped",
        ));
    }
    let is_group = matches!(tkind, TargetKind::Group | TargetKind::HostGroup);
    file.rules.push(Rule {
        kind,
        feature,
        target: Target { kind: tkind, name },
        line,
    });
    Ok(is_group.then_some(n.pos))
}

fn count(w: &Word) -> Result<u32, Problem> {
    if !w.text.bytes().all(|b| b.is_ascii_digit()) || w.text.is_empty() {
        return Err(Problem::at(
            w.pos,
            format!("\"{}\" is not a whole number", w.text),
        ));
    }
    w.text
        .parse()
        .map_err(|_| Problem::at(w.pos, format!("{} is too large", w.text)))
}

fn name(w: &Word) -> Result<String, Problem> {
    if w.text.is_empty() {
        return Err(Problem::at(w.pos, "empty name"));
    }
    if w.text.len() > MAX_NAME_BYTES {
        return Err(Problem::at(
            w.pos,
            format!("name is longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    Ok(w.text.clone())
}

/// `feature` or `feature:KEYWORD=value` (quotes already removed).
fn feature_spec(w: &Word) -> Result<FeatureSpec, Problem> {
    let text = &w.text;
    let Some((feature, rest)) = text.split_once(':') else {
        if text.contains('=') {
            return Err(Problem::at(
                w.pos,
                format!("\"{text}\": a qualifier is written feature:KEYWORD=value"),
            ));
        }
        return Ok(FeatureSpec {
            name: name(w)?,
            qualifier: None,
        });
    };
    let Some((key, value)) = rest.split_once('=') else {
        return Err(Problem::at(
            w.pos,
            format!("\"{text}\": a qualifier is written feature:KEYWORD=value"),
        ));
    };
    if feature.is_empty() {
        return Err(Problem::at(w.pos, "empty feature name"));
    }
    let key = QualifierKey::parse(key).ok_or_else(|| {
        Problem::at(
            w.pos,
            format!(
                "unknown qualifier \"{key}\"; tally knows VERSION, EXPDATE, VENDOR_STRING, ISSUER, NOTICE, SIGN/KEY"
            ),
        )
    })?;
    if key == QualifierKey::Version && crate::license::Version::parse(value).is_none() {
        return Err(Problem::at(
            w.pos,
            format!("\"{value}\" is not a version number"),
        ));
    }
    Ok(FeatureSpec {
        name: feature.to_string(),
        qualifier: Some(Qualifier {
            key,
            value: value.to_string(),
        }),
    })
}
