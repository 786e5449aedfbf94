//! The embedded demo license `tallyd` serves when started with no `-c`, so
//! a new user sees it work at once (on 127.0.0.1:27000).
//!
//! - `CITRIX`: the Citrix startup license (`LT=SYS`), checked out and at
//!   once checked in by agents at start;
//! - `MPM_ADV_RC`: a Password-Manager-like counted feature (10 seats) that
//!   agents check out with a linger (21 days for a named user) and return
//!   with linger 1 s;
//! - `DEMO_SINGLE`: one seat, to see a denial with the second client.

/// Name shown as the license file of the demo.
pub const DEMO_SOURCE: &str = "<embedded demo>";

/// The demo license file.
pub const DEMO_LICENSE: &str = r#"# tally embedded demo license: served when tallyd starts without -c.
SERVER this_host ANY 27000
VENDOR CITRIX
USE_SERVER
INCREMENT CITRIX CITRIX 2038.0101 permanent 5000 \
    VENDOR_STRING=";LT=SYS;GP=96;SA=0;DUP_GROUP=HV" HOSTID=ANY \
    ISSUER=tally ISSUED=01-jan-2026 NOTICE="tally demo: startup license" SIGN=0
INCREMENT MPM_ADV_RC CITRIX 2038.0101 permanent 10 \
    VENDOR_STRING=";LT=Retail;GP=720;CL=ADV;SA=0;ODP=0" HOSTID=ANY \
    ISSUER=tally ISSUED=01-jan-2026 NOTICE="tally demo: Password Manager" SIGN=0
FEATURE DEMO_SINGLE CITRIX 1.0 permanent 1 HOSTID=ANY \
    NOTICE="tally demo: one seat" SIGN=0
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_license_parses_cleanly() {
        let set = tally_core::license::parse_str(DEMO_SOURCE, DEMO_LICENSE);
        assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
        assert_eq!(set.pools.len(), 3);
        assert!(set.pools[0].is_startup());
        assert_eq!(set.pools[1].count, Some(10));
        assert_eq!(set.servers[0].port, Some(27000));
    }
}
