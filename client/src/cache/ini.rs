//! The INI layer of the cache file: lines, sections and their CRCs,
//! without knowing what the keys mean (that is [`super::format`]).
//!
//! The rules, strict on purpose (a cache file is written only by
//! [`super::Cache::to_text`]; anything else is damage):
//!
//! - UTF-8 text, lines ended by LF, the last one too; no empty line, no
//!   comment, no whitespace trimmed anywhere.
//! - A line is a header `[NAME]` or `KEY=VALUE` (split at the first `=`;
//!   the value may hold `=`, as `VendorStr` does). The first line is a
//!   header; a key appears at most once per section.
//! - Every section has exactly one `CRC=<decimal u32>` line: CRC-32C
//!   (Castagnoli, the `crc32c` crate) of the section's header line and all
//!   its other lines, each followed by its LF, in file order, the CRC line
//!   left out. So an edited value, a line moved into another section or a
//!   renamed section all fail the check.

/// A problem at one place of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    /// The section it is in (the expected one when there is none yet).
    pub(crate) section: String,
    /// 1-based line number.
    pub(crate) line: usize,
    /// What is wrong.
    pub(crate) what: String,
}

impl Fault {
    pub(crate) fn new(section: &str, line: usize, what: impl Into<String>) -> Fault {
        Fault {
            section: section.to_string(),
            line,
            what: what.into(),
        }
    }
}

/// One `KEY=VALUE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    /// 1-based line number.
    pub(crate) line: usize,
    /// The key (before the first `=`).
    pub(crate) key: &'a str,
    /// The value (after it).
    pub(crate) value: &'a str,
}

/// One section, its CRC checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Section<'a> {
    /// The name between the brackets.
    pub(crate) name: &'a str,
    /// Line number of the header.
    pub(crate) line: usize,
    /// Its lines but the CRC line, in file order.
    pub(crate) entries: Vec<Entry<'a>>,
    /// Line number of the last line of the section.
    pub(crate) last_line: usize,
}

/// The CRC of a section: CRC-32C over `header` and `lines`, each with a LF.
pub(crate) fn section_crc<'a>(header: &str, lines: impl IntoIterator<Item = &'a str>) -> u32 {
    let mut crc = crc32c::crc32c_append(0, header.as_bytes());
    crc = crc32c::crc32c_append(crc, b"\n");
    for line in lines {
        crc = crc32c::crc32c_append(crc, line.as_bytes());
        crc = crc32c::crc32c_append(crc, b"\n");
    }
    crc
}

/// Splits the file into sections and checks each one's CRC. `first` names
/// the section expected first (for a fault before any header).
pub(crate) fn sections<'a>(bytes: &'a [u8], first: &str) -> Result<Vec<Section<'a>>, Fault> {
    if bytes.is_empty() {
        return Err(Fault::new(first, 1, "the file is empty"));
    }
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // After the final LF, split leaves an empty piece.
    if lines.pop().is_some_and(|last| !last.is_empty()) {
        let n = lines.len() + 1;
        let section = last_header(&lines).unwrap_or(first.to_string());
        return Err(Fault::new(
            &section,
            n,
            "no line feed at the end: the file is cut off",
        ));
    }
    let mut out: Vec<Section<'a>> = Vec::new();
    let mut crcs: Vec<Option<(u32, usize)>> = Vec::new();
    for (i, raw) in lines.iter().enumerate() {
        let n = i + 1;
        let here = out.last().map_or(first, |s| s.name).to_string();
        let Ok(line) = std::str::from_utf8(raw) else {
            return Err(Fault::new(&here, n, "not UTF-8 text"));
        };
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(Fault::new(&here, n, format!("bad section header {line:?}")));
            };
            if name.is_empty() || name.contains(['[', ']']) {
                return Err(Fault::new(&here, n, format!("bad section header {line:?}")));
            }
            out.push(Section {
                name,
                line: n,
                entries: Vec::new(),
                last_line: n,
            });
            crcs.push(None);
            continue;
        }
        let (Some(section), Some(crc)) = (out.last_mut(), crcs.last_mut()) else {
            return Err(Fault::new(
                first,
                n,
                "a line before the first section header",
            ));
        };
        section.last_line = n;
        let Some((key, value)) = line.split_once('=') else {
            let what = if line.is_empty() {
                "an empty line".to_string()
            } else {
                format!("no '=' in {line:?}")
            };
            return Err(Fault::new(section.name, n, what));
        };
        if key.is_empty() {
            return Err(Fault::new(section.name, n, "a line without a key"));
        }
        if key == "CRC" {
            if let Some((_, at)) = crc {
                return Err(Fault::new(
                    section.name,
                    n,
                    format!("a second CRC line (the first is line {at})"),
                ));
            }
            let Some(v) = decimal_u32(value) else {
                return Err(Fault::new(section.name, n, format!("bad CRC {value:?}")));
            };
            *crc = Some((v, n));
            continue;
        }
        if let Some(prev) = section.entries.iter().find(|e| e.key == key) {
            return Err(Fault::new(
                section.name,
                n,
                format!("{key} given twice (also line {})", prev.line),
            ));
        }
        section.entries.push(Entry {
            line: n,
            key,
            value,
        });
    }
    for (section, crc) in out.iter().zip(&crcs) {
        let Some((stored, at)) = *crc else {
            return Err(Fault::new(
                section.name,
                section.last_line,
                "no CRC line: the section is cut off or edited",
            ));
        };
        let header = format!("[{}]", section.name);
        let lines: Vec<String> = section
            .entries
            .iter()
            .map(|e| format!("{}={}", e.key, e.value))
            .collect();
        let actual = section_crc(&header, lines.iter().map(String::as_str));
        if actual != stored {
            return Err(Fault::new(
                section.name,
                at,
                format!(
                    "CRC mismatch: the file says {stored}, the section's lines give {actual} \
                     (edited or damaged)"
                ),
            ));
        }
    }
    Ok(out)
}

/// The name of the last complete header among `lines`, if any.
fn last_header(lines: &[&[u8]]) -> Option<String> {
    lines.iter().rev().find_map(|l| {
        let l = std::str::from_utf8(l).ok()?;
        Some(l.strip_prefix('[')?.strip_suffix(']')?.to_string())
    })
}

/// A decimal number as the writer writes it: digits only, no sign, no
/// leading zero (but `0`), fits `u32`.
pub(crate) fn decimal_u32(s: &str) -> Option<u32> {
    decimal_u64(s).and_then(|v| u32::try_from(v).ok())
}

/// [`decimal_u32`] for `u64`.
pub(crate) fn decimal_u64(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}

/// Builds one section's text, CRC included.
#[derive(Debug)]
pub(crate) struct SectionText {
    header: String,
    before: Vec<String>,
    after: Vec<String>,
}

impl SectionText {
    /// A section called `name`.
    pub(crate) fn new(name: &str) -> SectionText {
        SectionText {
            header: format!("[{name}]"),
            before: Vec::new(),
            after: Vec::new(),
        }
    }

    /// A `KEY=VALUE` line before the CRC line.
    pub(crate) fn line(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        self.before.push(format!("{key}={value}"));
        self
    }

    /// A `KEY=VALUE` line after the CRC line (seed 001 puts
    /// `SubSectionCount` there; the CRC covers it all the same).
    pub(crate) fn line_after_crc(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        self.after.push(format!("{key}={value}"));
        self
    }

    /// Appends the section to `out`.
    pub(crate) fn write_to(&self, out: &mut String) {
        let lines = self.before.iter().chain(&self.after).map(String::as_str);
        let crc = section_crc(&self.header, lines);
        for line in std::iter::once(&self.header).chain(&self.before) {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(&format!("CRC={crc}\n"));
        for line in &self.after {
            out.push_str(line);
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str) -> String {
        let mut out = String::new();
        SectionText::new(name)
            .line("A", "1")
            .line("V", ";x=y")
            .line_after_crc("SubSectionCount", 0)
            .write_to(&mut out);
        out
    }

    #[test]
    fn a_written_section_reads_back() {
        let text = one("S");
        let s = sections(text.as_bytes(), "S").expect("valid");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].entries.len(), 3);
        assert_eq!(s[0].entries[1].value, ";x=y");
        assert_eq!(s[0].last_line, 5);
    }

    #[test]
    fn crc_covers_the_header() {
        let text = one("S").replace("[S]", "[T]");
        let err = sections(text.as_bytes(), "S").unwrap_err();
        assert_eq!((err.section.as_str(), err.line), ("T", 4));
        assert!(err.what.starts_with("CRC mismatch"), "{}", err.what);
    }

    #[test]
    fn numbers_are_canonical() {
        assert_eq!(decimal_u32("0"), Some(0));
        assert_eq!(decimal_u32("4294967295"), Some(u32::MAX));
        for bad in ["", "+1", "01", "1 ", "4294967296", "-0"] {
            assert_eq!(decimal_u32(bad), None, "{bad:?}");
        }
    }
}
