//! Feature names the license file accepts but the protocol cannot carry,
//! or that display deceptively: warned about when a license file is loaded
//! (`tallyd` start, `tallyctl check-license`), never rejected (the line may
//! matter to a REREAD or to another tool).
//!
//! Whether a name can be checked out is decided by the protocol's field
//! rule ([`crate::proto::field_fault`]: at most 255 bytes, no space, no
//! control character). tallyd prints the same warnings at start from its
//! own copy of this module; `server/tests/client_contract.rs` checks that
//! the two, and the server's parser, agree. Bidirectional controls (U+202A–U+202E, U+2066–U+2069) are
//! format characters the protocol carries; a name holding one can be
//! checked out, but it shows reordered in terminals and logs (a
//! "Trojan Source" name can look like another feature's).

use std::fmt;

use tally_core::license::LicenseSet;

use crate::proto::{field_fault, FieldFault};

/// One warning about a feature name: where, and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameWarning {
    /// The license file.
    pub file: String,
    /// 1-based line where the FEATURE/INCREMENT record starts.
    pub line: u32,
    /// False when no request can ever name this feature.
    pub can_check_out: bool,
    /// What is wrong, in words an operator understands.
    pub message: String,
}

impl fmt::Display for NameWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// True for the Unicode bidirectional embedding, override and isolate
/// controls.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A warning for every pool whose feature name the protocol cannot carry,
/// or that holds a bidirectional control. One per pool line.
pub fn feature_name_warnings(set: &LicenseSet) -> Vec<NameWarning> {
    let mut out = Vec::new();
    for pool in &set.pools {
        let name = &pool.feature;
        let shown: String = name.chars().take(40).flat_map(char::escape_debug).collect();
        let shown = if name.chars().count() > 40 {
            format!("\"{shown}...\" ({} bytes)", name.len())
        } else {
            format!("\"{shown}\"")
        };
        let what = format!("{} {shown}", pool.kind.keyword());
        if let Some(fault) = field_fault(name) {
            let why = match fault {
                FieldFault::TooLong => format!(
                    "is longer than the {} bytes a protocol field can hold",
                    crate::proto::MAX_FIELD_BYTES
                ),
                other => other.to_string(),
            };
            out.push(NameWarning {
                file: set.source.clone(),
                line: pool.line,
                can_check_out: false,
                message: format!(
                    "warning: {what}: the feature name {why}, so it can never be checked out"
                ),
            });
        } else if let Some(c) = name.chars().find(|&c| is_bidi_control(c)) {
            out.push(NameWarning {
                file: set.source.clone(),
                line: pool.line,
                can_check_out: true,
                message: format!(
                    "warning: {what}: the feature name holds the bidirectional control \
                     U+{:04X}; it can be checked out, but terminals and logs may show it \
                     reordered, like another name",
                    u32::from(c)
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::license::parse_str;

    /// Issue 12: such names were accepted without a word.
    #[test]
    fn long_and_bidi_names_are_warned_about() {
        let long = "L".repeat(256);
        let fits = "F".repeat(255);
        let text = format!(
            "FEATURE ok V 1.0 permanent 1\n\
             FEATURE {long} V 1.0 permanent 1\n\
             FEATURE {fits} V 1.0 permanent 1\n\
             INCREMENT ab\u{202E}cd V 1.0 permanent 1\n\
             FEATURE \"sp ace\" V 1.0 permanent 1\n\
             FEATURE x\u{2066}y V 1.0 permanent 1\n"
        );
        let set = parse_str("t.lic", &text);
        assert_eq!(set.pools.len(), 6, "{:?}", set.diagnostics);
        let w = feature_name_warnings(&set);
        let lines: Vec<(u32, bool)> = w.iter().map(|w| (w.line, w.can_check_out)).collect();
        assert_eq!(
            lines,
            [(2, false), (4, true), (5, false), (6, true)],
            "{w:?}"
        );
        assert!(
            w[0].to_string()
                .starts_with("t.lic:2: warning: FEATURE \"LLL"),
            "{}",
            w[0]
        );
        assert!(w[0].message.contains("256 bytes") && w[0].message.contains("never"));
        assert!(w[1].message.contains("U+202E"), "{}", w[1]);
        assert!(w[2].message.contains("space"), "{}", w[2]);
    }
}
