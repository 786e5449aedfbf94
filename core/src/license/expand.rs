//! What SUPERSEDE, UPGRADE and PACKAGE lines do to the pools: a pure
//! function from the parsed lines to the pools the engine serves.
//!
//! Applied in this order (see `docs/license-file.md`):
//!
//! 1. **SUPERSEDE** (with `ISSUED=`, else `START=`): a FEATURE / INCREMENT
//!    line with `SUPERSEDE` removes every other line of the same feature
//!    (or of the features listed, `SUPERSEDE="f1 f2"`) issued before it. A
//!    line without `ISSUED=` or `START=` counts as issued before any date;
//!    lines of the same date pool together. A SUPERSEDE line without a date
//!    supersedes nothing (a warning). A PACKAGE line with `SUPERSEDE` and
//!    `ISSUED=` replaces the earlier-issued PACKAGE lines of that package.
//! 2. **UPGRADE** `feature vendor from to expiry n`: takes up to `n`
//!    licenses from the closest preceding line of the feature whose version
//!    is `>= from` and `< to`, and makes a new line of version `to` with
//!    them, just after it (so a request for the old version takes the old
//!    licenses first). More than the line has: a warning, and only what it
//!    has moves. A line left with none is removed.
//! 3. **PACKAGE** `name vendor [version] COMPONENTS="f[:v[:n]] ..."`: each
//!    FEATURE / INCREMENT line named `name` (of that version, if given)
//!    enables it, and becomes one line per component: version `v` (else the
//!    enabling line's), `n × count` licenses (n defaults to 1), the enabling
//!    line's expiry, start, vendor string, DUP_GROUP and overdraft
//!    (× n). Without `OPTIONS=SUITE` the enabling line itself goes; with it
//!    (or `SUITE_RESERVED`) it stays, as the suite feature that each
//!    component checkout also takes (see `engine/suite.rs`, which also
//!    keeps `SUITE_RESERVED`'s licenses), and a component's `n` is ignored
//!    (the guide does not allow it there).
//!
//! Every rule that cannot apply is a warning ([`LicenseSet::warnings`], a
//! [`Diagnostic`] at the line's file:line: the line loaded, and did less
//! than it says); what each line did is an [`Applied`].

use std::collections::HashSet;

use super::date::{parse_date, parse_expiry};
use super::model::{
    Applied, ComponentOf, Date, Diagnostic, DupGroup, LicenseSet, PackageLine, PoolKind, PoolLine,
    Version,
};

/// The duplicate grouping of a suite's license when the enabling line has
/// no `SUITE_DUP_GROUP=`: one suite license per user, host and display,
/// whatever components they use.
pub const DEFAULT_SUITE_DUP: u8 = DupGroup::USER | DupGroup::HOST | DupGroup::DISPLAY;

/// Applies the SUPERSEDE, UPGRADE and PACKAGE lines of `set` to its pools
/// and returns the result, with [`LicenseSet::applied`] saying what each
/// did and a warning for each that could not. Runs once: a set already
/// expanded ([`LicenseSet::expanded`]) is returned as it is.
/// [`parse_str`](super::parse_str) calls it.
pub fn expand(set: &LicenseSet) -> LicenseSet {
    let mut out = set.clone();
    if set.expanded {
        return out;
    }
    out.expanded = true;
    let mut ex = Expander {
        file: set.source.clone(),
        applied: Vec::new(),
        diagnostics: Vec::new(),
    };
    ex.bad_borrows(&out.pools);
    let (pools, superseded) = ex.supersede(std::mem::take(&mut out.pools));
    let pools = ex.upgrade(pools, &set.upgrades);
    let packages = ex.live_packages(&set.packages);
    out.pools = ex.packages(pools, &packages);
    out.superseded = superseded;
    out.applied = ex.applied;
    out.warnings.extend(ex.diagnostics);
    out
}

struct Expander {
    file: String,
    applied: Vec<Applied>,
    diagnostics: Vec<Diagnostic>,
}

/// When a line counts as issued: `ISSUED=`, else `START=`.
fn issued(line: &PoolLine) -> Option<Date> {
    line.issued.or(line.start)
}

impl Expander {
    fn warn(&mut self, line: u32, message: String) {
        self.diagnostics.push(Diagnostic {
            file: self.file.clone(),
            line,
            column: 1,
            message,
            record_line: line,
        });
    }

    fn note(&mut self, keyword: &'static str, line: u32, summary: String) {
        self.applied.push(Applied {
            keyword,
            line,
            summary,
        });
    }

    /// A `BORROW=` that is not a number of hours makes the line not
    /// borrowable ([`PoolLine::borrow_hours`]): a warning says so.
    fn bad_borrows(&mut self, pools: &[PoolLine]) {
        for p in pools {
            let Some((_, v)) = p
                .other
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("BORROW"))
            else {
                continue;
            };
            if p.borrow_hours().is_none() {
                self.warn(
                    p.line,
                    format!(
                        "{} {}: BORROW={v} is not a whole number of hours (1 or more); the line is not borrowable",
                        p.kind.keyword(),
                        p.feature
                    ),
                );
            }
        }
    }

    /// Step 1: (kept, removed).
    fn supersede(&mut self, pools: Vec<PoolLine>) -> (Vec<PoolLine>, Vec<PoolLine>) {
        let mut gone = vec![false; pools.len()];
        for (i, by) in pools.iter().enumerate() {
            let Some(list) = &by.supersede else {
                continue;
            };
            let Some(date) = issued(by) else {
                self.warn(
                    by.line,
                    format!(
                        "{} {}: SUPERSEDE without ISSUED= (or START=) supersedes nothing",
                        by.kind.keyword(),
                        by.feature
                    ),
                );
                continue;
            };
            let names: Vec<&str> = if list.trim().is_empty() {
                vec![by.feature.as_str()]
            } else {
                list.split_whitespace().collect()
            };
            let mut removed = Vec::new();
            for (j, old) in pools.iter().enumerate() {
                let earlier = issued(old).map_or(true, |d| d < date);
                if j != i && names.contains(&old.feature.as_str()) && earlier {
                    if !gone[j] {
                        removed.push(format!(
                            "line {} ({} {} {}, {})",
                            old.line,
                            old.kind.keyword(),
                            old.feature,
                            old.version,
                            count_text(old.count)
                        ));
                    }
                    gone[j] = true;
                }
            }
            let summary = if removed.is_empty() {
                format!(
                    "{} {} supersedes {}: no earlier line",
                    by.kind.keyword(),
                    by.feature,
                    names.join(" ")
                )
            } else {
                format!(
                    "{} {} supersedes {}",
                    by.kind.keyword(),
                    by.feature,
                    removed.join(", ")
                )
            };
            self.note("SUPERSEDE", by.line, summary);
        }
        let mut kept = Vec::with_capacity(pools.len());
        let mut removed = Vec::new();
        for (line, gone) in pools.into_iter().zip(gone) {
            if gone {
                removed.push(line);
            } else {
                kept.push(line);
            }
        }
        (kept, removed)
    }

    /// Step 2.
    fn upgrade(
        &mut self,
        mut pools: Vec<PoolLine>,
        upgrades: &[super::UpgradeLine],
    ) -> Vec<PoolLine> {
        for up in upgrades {
            let what = format!("UPGRADE {}", up.feature);
            let (Some(from), Some(to)) = (
                Version::parse(&up.from_version),
                Version::parse(&up.to_version),
            ) else {
                continue; // the parser checked them
            };
            let expiry = up.rest.first().and_then(|e| parse_expiry(e).ok());
            let count = up.rest.get(1).and_then(|c| c.parse::<u32>().ok());
            let (Some(expiry), Some(want)) = (expiry, count.filter(|&c| c > 0)) else {
                self.warn(
                    up.line,
                    format!("{what}: an UPGRADE of uncounted licenses does nothing"),
                );
                continue;
            };
            if to <= from {
                self.warn(
                    up.line,
                    format!(
                        "{what}: to_version {} is not above from_version {}; ignored",
                        up.to_version, up.from_version
                    ),
                );
                continue;
            }
            let source = pools.iter().rposition(|p| {
                p.feature == up.feature
                    && p.vendor.eq_ignore_ascii_case(&up.vendor)
                    && p.line < up.line
                    && p.version >= from
                    && p.version < to
                    && p.count.is_some()
                    && p.package.is_none()
            });
            let Some(s) = source else {
                self.warn(
                    up.line,
                    format!(
                        "{what}: no counted FEATURE or INCREMENT line of {} before it has a \
                         version >= {} and < {}; nothing upgraded",
                        up.feature, up.from_version, up.to_version
                    ),
                );
                continue;
            };
            let has = pools[s].count.unwrap_or(0);
            let moved = want.min(has);
            if want > has {
                self.warn(
                    up.line,
                    format!(
                        "{what}: upgrades {want} licenses but line {} has {has}; {has} upgraded",
                        pools[s].line
                    ),
                );
            }
            let mut new = pools[s].clone();
            new.kind = PoolKind::Increment;
            new.version = to.clone();
            new.expiry = expiry;
            new.count = Some(moved);
            new.overdraft = 0;
            new.supersede = None;
            new.line = up.line;
            // The upgraded licenses stay as borrowable as the line they
            // come from; nothing else of its keywords carries over.
            new.other.retain(|(k, _)| k.eq_ignore_ascii_case("BORROW"));
            for word in up.rest.iter().skip(2) {
                let Some((k, v)) = word.split_once('=') else {
                    continue;
                };
                let v = v.trim_matches('"');
                match k.to_ascii_uppercase().as_str() {
                    "ISSUED" => new.issued = parse_date(v).ok(),
                    "START" => new.start = parse_date(v).ok(),
                    "SIGN" => new.sign = Some(v.to_string()),
                    _ => {}
                }
            }
            let left = has - moved;
            let from_line = pools[s].line;
            self.note(
                "UPGRADE",
                up.line,
                format!(
                    "{} {} x{moved} (from line {from_line}, {} {}, which keeps {left})",
                    up.feature, up.to_version, up.feature, pools[s].version
                ),
            );
            if left == 0 {
                pools[s] = new;
            } else {
                pools[s].count = Some(left);
                pools.insert(s + 1, new);
            }
        }
        pools
    }

    /// The PACKAGE lines in force: a later line of the same package with
    /// SUPERSEDE and a later ISSUED= replaces an earlier one; otherwise the
    /// first stays and the repeat is a warning.
    fn live_packages<'p>(&mut self, packages: &'p [PackageLine]) -> Vec<&'p PackageLine> {
        let mut live: Vec<&PackageLine> = Vec::new();
        for p in packages {
            let Some(at) = live.iter().position(|q| q.name == p.name) else {
                live.push(p);
                continue;
            };
            let old = live[at];
            match (package_supersedes(p), package_issued(old)) {
                (Some(new), old_date) if old_date.map_or(true, |d| d < new) => {
                    self.note(
                        "SUPERSEDE",
                        p.line,
                        format!("PACKAGE {} supersedes line {}", p.name, old.line),
                    );
                    live[at] = p;
                }
                _ => self.warn(
                    p.line,
                    format!(
                        "PACKAGE {}: already defined at line {}; this line is ignored \
                         (a replacement needs SUPERSEDE and a later ISSUED=)",
                        p.name, old.line
                    ),
                ),
            }
        }
        live
    }

    /// Step 3.
    fn packages(&mut self, pools: Vec<PoolLine>, packages: &[&PackageLine]) -> Vec<PoolLine> {
        // For each pool: the package it enables, if any.
        let mut enabling: Vec<Option<usize>> = vec![None; pools.len()];
        let mut plans = Vec::new();
        for (k, pkg) in packages.iter().enumerate() {
            let plan = self.plan(pkg);
            let want = pkg.version.as_deref().and_then(Version::parse);
            let mut found = 0;
            for (i, pool) in pools.iter().enumerate() {
                let enables = pool.feature == pkg.name
                    && pool.vendor.eq_ignore_ascii_case(&pkg.vendor)
                    && pool.package.is_none()
                    && want
                        .as_ref()
                        .map_or(true, |v| v.scaled() == pool.version.scaled());
                if enables && enabling[i].is_none() {
                    enabling[i] = Some(k);
                    found += 1;
                }
            }
            if found == 0 {
                self.warn(
                    pkg.line,
                    format!(
                        "PACKAGE {}: no FEATURE or INCREMENT line {} {}{} enables it; \
                         its components are not served",
                        pkg.name,
                        pkg.name,
                        pkg.vendor,
                        pkg.version
                            .as_deref()
                            .map(|v| format!(" {v}"))
                            .unwrap_or_default()
                    ),
                );
            }
            plans.push(plan);
        }
        let mut out = Vec::with_capacity(pools.len());
        let mut made: Vec<Vec<String>> = vec![Vec::new(); packages.len()];
        for (pool, enables) in pools.into_iter().zip(enabling) {
            let Some(k) = enables else {
                out.push(pool);
                continue;
            };
            let Some(plan) = &plans[k] else {
                out.push(pool); // no usable component: the line stays as it is
                continue;
            };
            let pkg = packages[k];
            let suite_dup = pool
                .other
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case("SUITE_DUP_GROUP"))
                .and_then(|(_, v)| DupGroup::parse(v))
                .unwrap_or(DupGroup::from_mask(DEFAULT_SUITE_DUP));
            for c in &plan.components {
                let n = if plan.suite { 1 } else { c.num };
                let mut line = pool.clone();
                line.feature = c.feature.clone();
                if let Some(v) = &c.version {
                    line.version = v.clone();
                }
                line.count = pool.count.map(|count| count.saturating_mul(n));
                line.overdraft = pool.overdraft.saturating_mul(n);
                line.supersede = None;
                line.package = Some(ComponentOf {
                    package: pkg.name.clone(),
                    package_line: pkg.line,
                    package_version: pool.version.clone(),
                    suite: plan.suite,
                    suite_reserved: plan.reserved,
                    suite_dup,
                });
                made[k].push(format!(
                    "{} {} x{} (from line {})",
                    line.feature,
                    line.version,
                    count_text(line.count),
                    pool.line
                ));
                out.push(line);
            }
            if plan.suite {
                out.push(pool);
            }
        }
        for (k, pkg) in packages.iter().enumerate() {
            if made[k].is_empty() {
                continue;
            }
            let kind = match &plans[k] {
                Some(p) if p.reserved => "reserved suite",
                Some(p) if p.suite => "suite",
                _ => "package",
            };
            self.note(
                "PACKAGE",
                pkg.line,
                format!("{kind} {}: {}", pkg.name, made[k].join(", ")),
            );
        }
        out
    }

    /// Reads a PACKAGE line's components and options; `None` (with a
    /// warning) if it has no usable component.
    fn plan(&mut self, pkg: &PackageLine) -> Option<Plan> {
        let what = format!("PACKAGE {}", pkg.name);
        let mut suite = false;
        let mut reserved = false;
        for (k, v) in &pkg.other {
            if k.eq_ignore_ascii_case("OPTIONS") {
                if v.eq_ignore_ascii_case("SUITE") {
                    suite = true;
                } else if v.eq_ignore_ascii_case("SUITE_RESERVED") {
                    suite = true;
                    reserved = true;
                } else {
                    self.warn(
                        pkg.line,
                        format!("{what}: unknown OPTIONS={v} (expected SUITE or SUITE_RESERVED); not a suite"),
                    );
                }
            }
        }
        let mut components = Vec::new();
        let mut seen = HashSet::new();
        for item in pkg.components.as_deref().unwrap_or("").split_whitespace() {
            let mut parts = item.split(':');
            let feature = parts.next().unwrap_or("").to_string();
            let version = parts.next().filter(|v| !v.is_empty());
            let num = parts.next();
            let bad = |e: &mut Expander, why: String| {
                e.warn(
                    pkg.line,
                    format!("{what}: component \"{item}\" {why}; skipped"),
                );
            };
            if feature.is_empty() || parts.next().is_some() {
                bad(self, "is not feature[:version[:num_lic]]".to_string());
                continue;
            }
            let version = match version.map(Version::parse) {
                None => None,
                Some(Some(v)) => Some(v),
                Some(None) => {
                    bad(self, "has a bad version".to_string());
                    continue;
                }
            };
            let num = match num.map(str::parse::<u32>) {
                None => 1,
                Some(Ok(n)) if n > 0 => n,
                Some(_) => {
                    bad(self, "has a bad license count".to_string());
                    continue;
                }
            };
            if suite && num != 1 {
                self.warn(
                    pkg.line,
                    format!(
                        "{what}: component \"{item}\": num_lic is not allowed with OPTIONS=SUITE; \
                         the enabling line's count is used"
                    ),
                );
            }
            if !seen.insert(feature.clone()) {
                bad(self, "is named twice".to_string());
                continue;
            }
            if suite && feature == pkg.name {
                bad(self, "is the suite itself".to_string());
                continue;
            }
            components.push(Component {
                feature,
                version,
                num,
            });
        }
        if components.is_empty() {
            self.warn(
                pkg.line,
                format!("{what}: no usable COMPONENTS; the package does nothing"),
            );
            return None;
        }
        Some(Plan {
            components,
            suite,
            reserved,
        })
    }
}

struct Plan {
    components: Vec<Component>,
    suite: bool,
    /// `OPTIONS=SUITE_RESERVED`.
    reserved: bool,
}

struct Component {
    feature: String,
    version: Option<Version>,
    num: u32,
}

fn count_text(count: Option<u32>) -> String {
    count.map_or_else(|| "uncounted".to_string(), |c| c.to_string())
}

/// A PACKAGE line's `SUPERSEDE ISSUED=` date, if it has both.
fn package_supersedes(p: &PackageLine) -> Option<Date> {
    p.other
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("SUPERSEDE"))
        .then(|| package_issued(p))
        .flatten()
}

fn package_issued(p: &PackageLine) -> Option<Date> {
    p.other
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("ISSUED"))
        .and_then(|(_, v)| parse_date(v).ok())
}

#[cfg(test)]
mod tests;
