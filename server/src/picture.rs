//! The PICTURE reply: one line of JSON with every pool's terms and usage,
//! what a client's offline cache is built from (docs/protocol.md,
//! "PICTURE"; tally-client reads it with `tally_client::picture`, and
//! `server/tests/client_contract.rs` checks that the two agree).
//!
//! The `stamp` is a version of the license set: 16 hex digits of FNV-1a
//! (64 bit) over the JSON of every pool's terms (each [`PoolTerms`], in
//! order, without `in_use`). It depends on nothing but the terms the
//! picture carries: the same license file gives the same stamp in every
//! run, and a REREAD changes it exactly when it changes a pool's terms
//! (comments, line order of other records, SIGN= or HOSTID= do not).
//!
//! Retired pools (kept after a REREAD only for the instances still out)
//! are left out: a client must not admit anything against them.

use serde::{Deserialize, Serialize};
use tally_core::engine::{Engine, PoolId};
use tally_core::license::{Expiry, PoolLine};

/// The whole PICTURE reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Picture {
    /// Version of the license set (see the module docs).
    pub stamp: String,
    /// The server's host name (as in STATUS).
    pub server: String,
    /// The server's port.
    pub port: u16,
    /// The server's clock when the picture was taken, Unix ms (a client
    /// records its contact as the earlier of this and its own clock, so a
    /// client clock set ahead at contact never stretches grace).
    pub now_ms: u64,
    /// One entry per pool, in license-file order.
    pub pools: Vec<Pool>,
}

/// One pool: its terms and its usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// What the license file says.
    #[serde(flatten)]
    pub terms: PoolTerms,
    /// Licenses out now (may exceed `total`: reconciled overdraft).
    pub in_use: u64,
}

/// The terms of one pool, as the license file gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolTerms {
    /// Feature name.
    pub feature: String,
    /// Vendor daemon.
    pub vendor: String,
    /// Version, as written.
    pub version: String,
    /// Licenses; `None` when uncounted.
    pub total: Option<u32>,
    /// `permanent` or `YYYY-MM-DD`.
    pub expiry: String,
    /// Unix ms of the end of the expiry day; `None` when permanent.
    pub expiry_ms: Option<u64>,
    /// `START=` as `YYYY-MM-DD`, if any.
    pub start: Option<String>,
    /// VENDOR_STRING's `LT=`.
    pub lt: Option<String>,
    /// VENDOR_STRING's `GP=` (offline grace, hours).
    pub gp_hours: Option<u32>,
    /// VENDOR_STRING's `CL=` (empty if absent).
    pub cl: Vec<String>,
    /// VENDOR_STRING's `SA=`.
    pub sa: Option<String>,
    /// VENDOR_STRING's `ODP=` (percent).
    pub odp: Option<u32>,
    /// Licenses the pool grants beyond `total`: `OVERDRAFT=`, else `ODP`
    /// percent of `total`, lowered by the options file's `MAX_OVERDRAFT`
    /// (0 if none): STATUS's `overdraft_limit`.
    pub overdraft: u32,
    /// `DUP_GROUP` (the line's, else its VENDOR_STRING's), or `None` when
    /// by handle.
    pub dup_group: Option<String>,
    /// The whole VENDOR_STRING, as written (`""` if none).
    pub vendor_string: String,
}

impl PoolTerms {
    /// The terms of license line `line`.
    pub fn of(line: &PoolLine) -> PoolTerms {
        let vs = line.vendor_string.as_ref();
        let ymd =
            |d: tally_core::license::Date| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day);
        let (expiry, expiry_ms) = match line.expiry {
            Expiry::Permanent => ("permanent".to_string(), None),
            Expiry::On(d) => (ymd(d), Some(d.end_ms())),
        };
        PoolTerms {
            feature: line.feature.clone(),
            vendor: line.vendor.clone(),
            version: line.version.to_string(),
            total: line.count,
            expiry,
            expiry_ms,
            start: line.start.map(ymd),
            lt: vs.and_then(|v| v.license_type.clone()),
            gp_hours: vs.and_then(|v| v.grace_hours),
            cl: vs.map(|v| v.components.clone()).unwrap_or_default(),
            sa: vs.and_then(|v| v.subscription.clone()),
            odp: vs.and_then(|v| v.overdraft_percent),
            overdraft: line.overdraft,
            dup_group: (!line.dup_group.is_by_handle()).then(|| line.dup_group.to_string()),
            vendor_string: vs.map(|v| v.raw.clone()).unwrap_or_default(),
        }
    }
}

impl Picture {
    /// The picture of `engine`'s pools at `now_ms`, for server
    /// `host:port`.
    pub fn of(engine: &Engine, host: &str, port: u16, now_ms: u64) -> Picture {
        let mut pools = Vec::new();
        let mut hash = Fnv::default();
        for p in 0..engine.pool_count() {
            let Some((line, in_use, retired)) = engine.pool_line(PoolId(p as u32)) else {
                continue;
            };
            if retired {
                continue;
            }
            let terms = PoolTerms::of(line);
            // A struct of strings and numbers always serializes.
            let _ = serde_json::to_writer(&mut hash, &terms);
            pools.push(Pool { terms, in_use });
        }
        Picture {
            stamp: format!("{:016x}", hash.0),
            server: host.to_string(),
            port,
            now_ms,
            pools,
        }
    }
}

/// FNV-1a, 64 bit: fixed (unkeyed), so stamps agree across runs.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::io::Write for Fnv {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::engine::EngineConfig;

    fn picture(text: &str) -> Picture {
        let lic = tally_core::license::parse_str("t.lic", text);
        Picture::of(
            &Engine::new(&lic, EngineConfig::default()),
            "lic1",
            27000,
            1_776_848_880_000,
        )
    }

    const SEED_001: &str = "\
INCREMENT CITRIX CITRIX 2038.0101 permanent 5000 VENDOR_STRING=\";LT=SYS;GP=96;SA=0;DUP_GROUP=HV\"
INCREMENT MPS_ENT_CCU CITRIX 2007.0726 26-jul-2026 1000 START=1-jan-2026 \\
  VENDOR_STRING=\";LT=Eval;GP=720;CL=ENT,ADV,STD,AST;SA=0;ODP=0\"
";

    #[test]
    fn seed_001_terms() {
        let p = picture(SEED_001);
        assert_eq!(p.pools.len(), 2);
        let json = serde_json::to_string(&p.pools[1]).unwrap();
        assert_eq!(
            json,
            r#"{"feature":"MPS_ENT_CCU","vendor":"CITRIX","version":"2007.0726","total":1000,"expiry":"2026-07-26","expiry_ms":1785110400000,"start":"2026-01-01","lt":"Eval","gp_hours":720,"cl":["ENT","ADV","STD","AST"],"sa":"0","odp":0,"overdraft":0,"dup_group":null,"vendor_string":";LT=Eval;GP=720;CL=ENT,ADV,STD,AST;SA=0;ODP=0","in_use":0}"#
        );
        let startup = &p.pools[0].terms;
        assert_eq!(startup.dup_group.as_deref(), Some("HV"));
        assert_eq!(startup.gp_hours, Some(96));
        assert_eq!(startup.expiry_ms, None);
        let whole = serde_json::to_string(&p).unwrap();
        assert!(
            whole.contains(r#""port":27000,"now_ms":1776848880000,"pools":["#),
            "{whole}"
        );
    }

    #[test]
    fn the_stamp_follows_the_terms_only() {
        let a = picture(SEED_001).stamp;
        assert_eq!(a.len(), 16);
        assert_eq!(picture(SEED_001).stamp, a, "stable");
        let commented = format!("# a comment\n{SEED_001}\n# another\n");
        assert_eq!(picture(&commented).stamp, a, "comments are not terms");
        let more = SEED_001.replace(" 1000 ", " 1001 ");
        assert_ne!(picture(&more).stamp, a);
        let gp = SEED_001.replace("GP=720", "GP=721");
        assert_ne!(picture(&gp).stamp, a);
    }
}
