//! The names a checkout carries: its feature and who asks.

use super::key::KeyFields;
use super::HolderBuf;

/// Which feature a license is for and who asks for (or holds) it: the
/// feature's name and the holder's four names. One type for a checkout
/// ([`Request::names`](super::Request::names)) and an instance put back
/// ([`Restore::names`](super::Restore::names)), and in a server for the
/// protocol's CHECKOUT, the journal's records and the queue's entries, so
/// each hands the names on whole, never field by field. `S` is `&str`
/// where the names are borrowed (building one does not allocate) and
/// `String` where they are kept ([`Names::to_owned`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Names<S> {
    /// Feature name.
    pub feature: S,
    /// User name.
    pub user: S,
    /// Host name.
    pub host: S,
    /// Display (terminal) name (`""` when none was given).
    pub display: S,
    /// The client's handle.
    pub handle: S,
}

impl<'a> Names<&'a str> {
    /// Names with display `""`.
    pub fn new(feature: &'a str, user: &'a str, host: &'a str, handle: &'a str) -> Self {
        Names {
            feature,
            user,
            host,
            display: "",
            handle,
        }
    }

    /// The holder's text an instance keeps (shortened as [`HolderBuf`]
    /// says): build it once, when a new instance or a log line needs it.
    pub fn holder(&self) -> HolderBuf {
        HolderBuf::new(self.user, self.host, self.display, self.handle)
    }

    /// An owned copy.
    pub fn to_owned(&self) -> Names<String> {
        Names {
            feature: self.feature.to_owned(),
            user: self.user.to_owned(),
            host: self.host.to_owned(),
            display: self.display.to_owned(),
            handle: self.handle.to_owned(),
        }
    }

    pub(super) fn key_fields(&self) -> KeyFields<'a> {
        KeyFields {
            user: self.user,
            host: self.host,
            display: self.display,
            handle: self.handle,
        }
    }
}

impl<S: AsRef<str>> Names<S> {
    /// The names, borrowed.
    pub fn as_str(&self) -> Names<&str> {
        Names {
            feature: self.feature.as_ref(),
            user: self.user.as_ref(),
            host: self.host.as_ref(),
            display: self.display.as_ref(),
            handle: self.handle.as_ref(),
        }
    }
}
