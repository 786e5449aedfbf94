//! Why a checkout was refused, with FlexLM's code and text beside our name.

use std::fmt;

use super::BorrowRefusal;

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
    /// pathological hash distribution; the denial says so).
    TableFull,
    /// The options file excludes the requester (EXCLUDE / EXCLUDEALL).
    Excluded,
    /// The options file has an INCLUDE list for the feature and the
    /// requester is not on it.
    NotIncluded,
    /// A MAX rule of the options file caps the requester (or their group)
    /// below this checkout.
    OverMax,
    /// The request is for more licenses than any pool of the feature can
    /// ever grant (its count plus overdraft): it is denied at once, never
    /// queued.
    CountTooHigh,
    /// The instance the request names (by its handle) is held by another
    /// user or host: only its holder may renew or check it in.
    NotHolder,
    /// Licenses are free, but RESERVE rules hold them for others; `line` is
    /// the options-file line of one such reservation.
    ReservedForOthers {
        /// Options-file line of the RESERVE rule.
        line: u32,
    },
    /// A borrow ([`super::Engine::borrow`]) was refused, or a checkout
    /// would have renewed a borrowed instance.
    Borrow(BorrowRefusal),
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
            Reason::Excluded => "EXCLUDED",
            Reason::NotIncluded => "NOT_INCLUDED",
            Reason::OverMax => "OVER_MAX",
            Reason::CountTooHigh => "COUNT_TOO_HIGH",
            Reason::NotHolder => "NOT_HOLDER",
            Reason::ReservedForOthers { .. } => "RESERVED",
            Reason::Borrow(r) => r.name(),
        }
    }

    /// FlexLM's error code for the same situation (`lc_errstring` numbers).
    pub fn flexlm_code(&self) -> i32 {
        match self {
            Reason::NoSuchFeature => -5,
            Reason::AllInUse | Reason::TableFull | Reason::ReservedForOthers { .. } => -4,
            // LM_USERSEXCLUDED, LM_USERNOTINCLUDED, LM_MAXLIMIT.
            Reason::Excluded => -38,
            Reason::NotIncluded => -39,
            Reason::OverMax => -87,
            // LM_MAXUSERS: "Licensed number of users already reached", which
            // lmgrd answers for a count no pool has.
            Reason::CountTooHigh => -4,
            // LM_BADPARAM: the handle is not the requester's to use.
            Reason::NotHolder => -42,
            Reason::VersionTooHigh => -25,
            Reason::Expired => -10,
            Reason::NotYetStarted => -31,
            // LM_BADPARAM: "Invalid parameter".
            Reason::BadRequest(_) => -42,
            Reason::Borrow(r) => r.flexlm_code(),
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
            Reason::Excluded => "User/host on EXCLUDE list for feature.",
            Reason::NotIncluded => "User/host not on INCLUDE list for feature.",
            Reason::OverMax => "Checkout exceeds MAX specified in options file.",
            Reason::CountTooHigh => {
                "Licensed number of users already reached (more licenses asked for than the license file has)."
            }
            Reason::NotHolder => {
                "The handle's license is held by another user or host; only its holder may renew or check it in."
            }
            Reason::ReservedForOthers { .. } => {
                "Licensed number of users already reached (the free licenses are reserved for others)."
            }
            Reason::Borrow(r) => r.text(),
        }
    }

    /// [`Reason::text`] plus what only a value can say (which RESERVE or
    /// BORROW_LOWWATER rule holds the licenses back, the most hours a
    /// borrow may last). Formats without allocating.
    pub fn full_text(&self) -> FullText {
        FullText(*self)
    }
}

/// A reason's text with its details; see [`Reason::full_text`].
#[derive(Debug, Clone, Copy)]
pub struct FullText(Reason);

impl fmt::Display for FullText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.text())?;
        match self.0 {
            Reason::ReservedForOthers { line } => {
                write!(f, " (RESERVE on line {line} of the options file)")?
            }
            Reason::Borrow(BorrowRefusal::TooLong { max_hours }) => {
                write!(f, " (at most {max_hours} hours)")?
            }
            Reason::Borrow(BorrowRefusal::LowWater { keep, line }) => write!(
                f,
                " ({keep} kept by BORROW_LOWWATER on line {line} of the options file)"
            )?,
            _ => {}
        }
        Ok(())
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
