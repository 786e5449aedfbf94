//! Why a checkout was refused, with FlexLM's code and text beside our name.

use std::fmt;

/// A refused checkout. Denials are values, not errors: the caller reports
/// them to the client and in the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// Why.
    pub reason: Reason,
}

/// The reason for a [`Denial`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The license set has no such feature.
    NoSuchFeature,
    /// Every license of every eligible pool is out.
    AllInUse,
    /// No pool serves the requested version.
    VersionTooHigh,
    /// Every pool of the feature that serves the version has expired.
    Expired,
    /// Every pool that serves the version starts later.
    NotYetStarted,
    /// The request itself is invalid; the text says what is wrong.
    BadRequest(&'static str),
    /// The checkout table has no free slot in the key's buckets (the table
    /// is sized at twice the licenses in the file, so this means a bug or a
    /// pathological hash distribution; it is counted and reported).
    TableFull,
}

impl Reason {
    /// tally's name for the reason, as sent on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Reason::NoSuchFeature => "NO_SUCH_FEATURE",
            Reason::AllInUse => "ALL_IN_USE",
            Reason::VersionTooHigh => "VERSION_TOO_HIGH",
            Reason::Expired => "EXPIRED",
            Reason::NotYetStarted => "NOT_YET_STARTED",
            Reason::BadRequest(_) => "BAD_REQUEST",
            Reason::TableFull => "TABLE_FULL",
        }
    }

    /// FlexLM's error code for the same situation (`lc_errstring` numbers).
    pub fn flexlm_code(&self) -> i32 {
        match self {
            Reason::NoSuchFeature => -5,
            Reason::AllInUse | Reason::TableFull => -4,
            Reason::VersionTooHigh => -25,
            Reason::Expired => -10,
            Reason::NotYetStarted => -31,
            // LM_BADPARAM: "Invalid parameter".
            Reason::BadRequest(_) => -42,
        }
    }

    /// FlexLM's text for the code (the words lmgrd writes in DENIED lines),
    /// or the specific problem for a bad request.
    pub fn text(&self) -> &'static str {
        match self {
            Reason::NoSuchFeature => "No such feature exists.",
            Reason::AllInUse => "Licensed number of users already reached.",
            Reason::VersionTooHigh => {
                "License server does not support this version of this feature."
            }
            Reason::Expired => "Feature has expired.",
            Reason::NotYetStarted => "Feature start date is in the future.",
            Reason::BadRequest(why) => why,
            Reason::TableFull => "Licensed number of users already reached (checkout table full).",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) {}",
            self.name(),
            self.flexlm_code(),
            self.text()
        )
    }
}

impl From<Reason> for Denial {
    fn from(reason: Reason) -> Denial {
        Denial { reason }
    }
}
