//! The license picture: the reply to `PICTURE` (docs/protocol.md), what the
//! offline cache ([`crate::cache`]) is built from.
//!
//! The reply is one line, `OK <JSON>`; [`Picture::parse_reply`] reads it and
//! refuses anything else (an `ERR`, a line cut off in the middle of the
//! JSON, garbage) with a [`PictureError`], never a panic. A parsed picture
//! is also checked ([`Picture::validate`]) for what the cache file cannot
//! carry: a line break or other control character in a string, an empty
//! feature name, a component (`CL`) that is empty or holds a comma, an
//! expiry past [`MAX_EXPIRY_MS`].
//!
//! Unknown JSON fields are ignored (the server may add fields, never rename
//! them).

use serde::{Deserialize, Serialize};

/// Latest expiry a picture may carry, Unix ms (year 60000 or so): the
/// largest whose Windows FILETIME (100 ns ticks since 1601) fits a `u64`
/// (see [`crate::cache::filetime_from_unix_ms`]).
pub const MAX_EXPIRY_MS: u64 = u64::MAX / 10_000 - crate::cache::FILETIME_UNIX_EPOCH_MS;

/// The whole PICTURE reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Picture {
    /// Version stamp of the license set: changes on every REREAD that
    /// changes it, stable otherwise (also across restarts).
    pub stamp: String,
    /// The server's host name (as in STATUS).
    pub server: String,
    /// The server's port.
    pub port: u16,
    /// The server's clock when it answered, Unix ms (`None`: an older
    /// server that does not send it). The contact is recorded at the
    /// earlier of this and the client's clock ([`crate::offline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now_ms: Option<u64>,
    /// One entry per pool, in license-file order.
    pub pools: Vec<Pool>,
}

/// One pool as PICTURE describes it: its terms and its usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// What the license file says (everything the cache keeps).
    #[serde(flatten)]
    pub terms: PoolTerms,
    /// Licenses out when the picture was taken (not cached: it is stale at
    /// once).
    pub in_use: u32,
}

/// The terms of one pool: the part of a [`Pool`] that the offline cache
/// keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolTerms {
    /// Feature name.
    pub feature: String,
    /// Vendor daemon.
    pub vendor: String,
    /// Version, as written in the file (for Citrix, the Subscription
    /// Advantage date `YYYY.MMDD`).
    pub version: String,
    /// Licenses; `None` when uncounted.
    pub total: Option<u32>,
    /// `permanent` or `YYYY-MM-DD`.
    pub expiry: String,
    /// Unix ms of the end of the expiry day; `None` when permanent.
    pub expiry_ms: Option<u64>,
    /// Start date `YYYY-MM-DD`, if any.
    pub start: Option<String>,
    /// `LT=` of the VENDOR_STRING (`SYS` for the startup license).
    pub lt: Option<String>,
    /// `GP=` of the VENDOR_STRING: offline grace in hours.
    pub gp_hours: Option<u32>,
    /// `CL=` of the VENDOR_STRING: the component list (empty if absent).
    #[serde(default)]
    pub cl: Vec<String>,
    /// `SA=` of the VENDOR_STRING.
    pub sa: Option<String>,
    /// `ODP=` of the VENDOR_STRING.
    pub odp: Option<u32>,
    /// `OVERDRAFT=` of the line (0 if absent).
    #[serde(default)]
    pub overdraft: u32,
    /// `DUP_GROUP`, if any.
    pub dup_group: Option<String>,
    /// The whole VENDOR_STRING, as written.
    pub vendor_string: String,
}

/// Why a PICTURE reply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PictureError {
    /// The reply is not `OK <json>` (e.g. `ERR UNKNOWN_REQUEST ...`).
    #[error("PICTURE reply is not `OK <json>`: {reply:?}")]
    NotOk {
        /// The reply line (at most 200 characters of it).
        reply: String,
    },
    /// The JSON ends early: the reply was cut off.
    #[error("PICTURE reply cut off at column {column}: {why}")]
    CutOff {
        /// Column (1-based, of the JSON) where it ends.
        column: usize,
        /// serde_json's message.
        why: String,
    },
    /// The JSON is not a picture.
    #[error("PICTURE reply is not a license picture (column {column}): {why}")]
    BadJson {
        /// Column (1-based, of the JSON) of the problem.
        column: usize,
        /// serde_json's message.
        why: String,
    },
    /// A value the cache file cannot carry.
    #[error("PICTURE {what}: {why}")]
    BadValue {
        /// Which value (`pools[2].feature`, ...).
        what: String,
        /// What is wrong with it.
        why: String,
    },
}

impl Picture {
    /// Parses a PICTURE reply line (`OK {...}`, with or without the line
    /// feed) and validates it.
    pub fn parse_reply(line: &str) -> Result<Picture, PictureError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some(json) = line.strip_prefix("OK ") else {
            return Err(PictureError::NotOk {
                reply: line.chars().take(200).collect(),
            });
        };
        let picture: Picture = serde_json::from_str(json).map_err(|e| {
            let (column, why) = (e.column(), e.to_string());
            if e.is_eof() {
                PictureError::CutOff { column, why }
            } else {
                PictureError::BadJson { column, why }
            }
        })?;
        picture.validate()?;
        Ok(picture)
    }

    /// The reply line the server sends for this picture (`OK <json>`,
    /// without the line feed).
    pub fn to_reply(&self) -> String {
        // A struct of strings and numbers always serializes.
        format!("OK {}", serde_json::to_string(self).unwrap_or_default())
    }

    /// Checks what the cache file needs of a picture: no control character
    /// in any string, a non-empty feature name, components that are
    /// non-empty and comma-free, an expiry no later than [`MAX_EXPIRY_MS`].
    pub fn validate(&self) -> Result<(), PictureError> {
        text("stamp", &self.stamp)?;
        text("server", &self.server)?;
        for (i, pool) in self.pools.iter().enumerate() {
            pool.terms.validate(i)?;
        }
        Ok(())
    }
}

impl PoolTerms {
    /// [`Picture::validate`] for the pool at index `i`.
    pub(crate) fn validate(&self, i: usize) -> Result<(), PictureError> {
        let name = |field: &str| format!("pools[{i}].{field}");
        let t = &self;
        if t.feature.is_empty() {
            return Err(bad(name("feature"), "is empty"));
        }
        for (field, value) in [
            ("feature", Some(&t.feature)),
            ("vendor", Some(&t.vendor)),
            ("version", Some(&t.version)),
            ("expiry", Some(&t.expiry)),
            ("start", t.start.as_ref()),
            ("lt", t.lt.as_ref()),
            ("sa", t.sa.as_ref()),
            ("dup_group", t.dup_group.as_ref()),
            ("vendor_string", Some(&t.vendor_string)),
        ] {
            if let Some(v) = value {
                text(&name(field), v)?;
            }
        }
        for (j, c) in t.cl.iter().enumerate() {
            let what = format!("pools[{i}].cl[{j}]");
            text(&what, c)?;
            if c.is_empty() || c.contains(',') {
                return Err(bad(
                    what,
                    "a component must be non-empty and without a comma",
                ));
            }
        }
        if t.expiry_ms.is_some_and(|ms| ms > MAX_EXPIRY_MS) {
            return Err(bad(
                name("expiry_ms"),
                "is past the latest time the cache holds",
            ));
        }
        Ok(())
    }
}

/// A string the cache can hold as an INI value: no control character.
fn text(what: &str, value: &str) -> Result<(), PictureError> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(bad(
            what.to_string(),
            &format!("contains the control character {c:?}"),
        )),
        None => Ok(()),
    }
}

fn bad(what: String, why: &str) -> PictureError {
    PictureError::BadValue {
        what,
        why: why.to_string(),
    }
}

/// A picture for tests: seed 001's two pools (the startup license and
/// MPS_ENT_CCU), a second MPS_ENT_CCU pool after another feature, and an
/// uncounted one.
#[cfg(test)]
pub(crate) fn sample() -> Picture {
    let pool = |feature: &str, version: &str, total: Option<u32>, vs: &str| PoolTerms {
        feature: feature.to_string(),
        vendor: "CITRIX".to_string(),
        version: version.to_string(),
        total,
        expiry: "permanent".to_string(),
        expiry_ms: None,
        start: None,
        lt: None,
        gp_hours: None,
        cl: Vec::new(),
        sa: None,
        odp: None,
        overdraft: 0,
        dup_group: None,
        vendor_string: vs.to_string(),
    };
    let mut startup = pool(
        "CITRIX",
        "2038.0101",
        Some(5000),
        ";LT=SYS;GP=96;SA=0;DUP_GROUP=HV",
    );
    startup.lt = Some("SYS".to_string());
    startup.gp_hours = Some(96);
    startup.sa = Some("0".to_string());
    startup.dup_group = Some("HV".to_string());
    let vs = ";LT=Eval;GP=720;CL=ENT,ADV,STD,AST;SA=0;ODP=0";
    let mut ent = pool("MPS_ENT_CCU", "2007.0726", Some(1000), vs);
    ent.expiry = "2026-07-26".to_string();
    ent.expiry_ms = Some(1_785_024_000_000);
    ent.start = Some("2026-01-01".to_string());
    ent.lt = Some("Eval".to_string());
    ent.gp_hours = Some(720);
    ent.cl = ["ENT", "ADV", "STD", "AST"].map(String::from).to_vec();
    ent.sa = Some("0".to_string());
    ent.odp = Some(0);
    let other = pool("MPM_ADV_RC", "1.0", Some(2), ";LT=Retail");
    let mut ent2 = pool("MPS_ENT_CCU", "2008.0101", Some(50), ";GP=720");
    ent2.gp_hours = Some(720);
    ent2.overdraft = 5;
    let free = pool("FREEBIE", "1.0", None, "");
    Picture {
        stamp: "3f9c0d2a".to_string(),
        server: "lic1".to_string(),
        port: 27000,
        now_ms: None,
        pools: [startup, ent, other, ent2, free]
            .into_iter()
            .map(|terms| Pool { terms, in_use: 7 })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs' example reply (notes/picture.md).
    const EXAMPLE: &str = r#"OK {"stamp":"s1","server":"lic1","port":27000,"pools":[{"feature":"MPS_ENT_CCU","vendor":"CITRIX","version":"1.0","total":1000,"expiry":"2026-07-26","expiry_ms":1785024000000,"start":"2026-01-01","lt":"Eval","gp_hours":720,"cl":["ENT","ADV","STD","AST"],"sa":"0","odp":0,"overdraft":0,"dup_group":"HV","vendor_string":";LT=Eval;GP=720;CL=ENT,ADV,STD,AST;SA=0;ODP=0","in_use":45}]}"#;

    #[test]
    fn parses_the_contract_example_and_writes_it_back() {
        let p = Picture::parse_reply(EXAMPLE).expect("parse");
        assert_eq!(p.pools.len(), 1);
        let pool = &p.pools[0];
        assert_eq!(pool.terms.total, Some(1000));
        assert_eq!(pool.terms.cl, ["ENT", "ADV", "STD", "AST"]);
        assert_eq!(pool.in_use, 45);
        assert_eq!(Picture::parse_reply(&p.to_reply()), Ok(p));
    }

    #[test]
    fn every_cut_is_an_error_not_a_panic() {
        for end in 0..EXAMPLE.len() {
            let Some(cut) = EXAMPLE.get(..end) else {
                continue;
            };
            assert!(Picture::parse_reply(cut).is_err(), "accepted {cut:?}");
        }
        let cut = &EXAMPLE[..EXAMPLE.len() / 2];
        assert!(
            matches!(Picture::parse_reply(cut), Err(PictureError::CutOff { .. })),
            "{:?}",
            Picture::parse_reply(cut)
        );
    }

    #[test]
    fn garbage_and_errors_are_refused() {
        for line in [
            "",
            "OK",
            "OK ",
            "ERR UNKNOWN_REQUEST PICTURE",
            "OK [1,2]",
            "\u{0}\u{ff}",
        ] {
            assert!(Picture::parse_reply(line).is_err(), "{line:?}");
        }
        let err = Picture::parse_reply("ERR UNKNOWN_REQUEST no").unwrap_err();
        assert!(matches!(err, PictureError::NotOk { .. }), "{err}");
        let bad_type = EXAMPLE.replace("\"total\":1000", "\"total\":\"x\"");
        assert!(matches!(
            Picture::parse_reply(&bad_type),
            Err(PictureError::BadJson { .. })
        ));
    }

    #[test]
    fn values_the_cache_cannot_hold_are_refused() {
        let newline = EXAMPLE.replace("\"lt\":\"Eval\"", "\"lt\":\"a\\nb\"");
        let err = Picture::parse_reply(&newline).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PICTURE pools[0].lt: contains the control character '\\n'"
        );
        let comma = EXAMPLE.replace("\"ENT\",", "\"E,NT\",");
        assert!(Picture::parse_reply(&comma).is_err());
        let nameless = EXAMPLE.replace("\"MPS_ENT_CCU\"", "\"\"");
        assert!(Picture::parse_reply(&nameless).is_err());
    }
}
