//! Where the license server is: tallyctl reads server lists with the
//! crate's [`crate::addr`] (`-c`, `TALLY_LICENSE_FILE`, `LM_LICENSE_FILE`,
//! `27000@localhost`; `PORT@HOST` entries and license files, lmutil's
//! rules), re-exported here. An [`AddrError`] becomes
//! [`CtlError::BadAddress`](super::CtlError::BadAddress), same message.

pub use crate::addr::{
    discover, parse_list, servers_in_license_file, split_entries, AddrError, ServerAddr,
    DEFAULT_PORT, ENV_LM, ENV_TALLY,
};

impl From<AddrError> for super::CtlError {
    fn from(e: AddrError) -> super::CtlError {
        super::CtlError::BadAddress {
            value: e.value,
            origin: e.origin,
            why: e.why,
        }
    }
}
