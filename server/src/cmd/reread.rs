//! REREAD: reload the license and options files and move every live
//! instance into a new engine (with its deadline, names and start time).
//! Nothing held is dropped or counted twice; features the new file lacks
//! keep their holders in retired pools (`crate::reread`).
//!
//! The command is in three steps around the loops' pause, which
//! `net/reread.rs` runs (reading the files with `crate::reread::read_files`,
//! the pause and the publication of the new generation): [`prepare`]
//! compiles the files read ([`Files`]; nothing changes if reading them
//! failed), [`migrate`] moves the instances while every other loop is
//! parked, [`report`] writes the log lines and the reply. No step reads a
//! file, so a whole REREAD is unit-tested on a manual clock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::BytesMut;
use tally_core::engine::{Engine, EngineConfig, FeatureId, InstanceId, Names, Restore, BORROWED};
use tally_core::license::LicenseSet;
use tally_core::options::OptionsFile;

use super::{Ctx, Effects, Held, Session};
use crate::options::ServerOptions;
use crate::protocol::Reply;

/// Old instance -> (new instance, its feature in the new engine).
pub(crate) type Remap = HashMap<InstanceId, (InstanceId, FeatureId)>;

/// The files read and compiled, not yet in use.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) licenses: LicenseSet,
    /// Retired pools added for dropped features still held.
    retired: usize,
    options_path: Option<PathBuf>,
    options: Option<OptionsFile>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) opts: Arc<ServerOptions>,
}

/// The files a REREAD reads, parsed: the license file (with at least one
/// pool) and the options file it or `--options` names, if any.
#[derive(Debug)]
pub(crate) struct Files {
    pub(crate) licenses: LicenseSet,
    pub(crate) options_path: Option<PathBuf>,
    pub(crate) options: Option<OptionsFile>,
}

/// Builds the new engine from the files read.
pub(crate) fn prepare(cx: &Ctx, files: Files, now: u64) -> Prepared {
    let shared = &cx.shared;
    let Files {
        mut licenses,
        options_path,
        options,
    } = files;
    // Features the new file drops keep their holders until they drain.
    let held = cx.engine.snapshot(now);
    let retired = crate::reread::keep_removed_features(&mut licenses, &held);
    // Sized for the instances `migrate` moves into it: its table takes them
    // in its first level instead of growing level by level.
    let holders = held
        .features
        .iter()
        .flat_map(|f| &f.pools)
        .map(|p| p.holders.len())
        .sum();
    drop(held);
    let engine = Arc::new(crate::options::build_engine(
        &licenses,
        options.as_ref(),
        EngineConfig {
            seed: shared.seed,
            ..EngineConfig::default()
        }
        .restoring(holders),
    ));
    let opts = Arc::new(ServerOptions::new(
        &engine,
        options.as_ref(),
        shared.policy.min_timeout_secs,
    ));
    Prepared {
        licenses,
        retired,
        options_path,
        options,
        engine,
        opts,
    }
}

/// Moves every live instance of the loop's engine into `p`'s (every other
/// loop is parked meanwhile), deadlines included. Ids of the old engine
/// must never reach the new one: the id map returned goes into the new
/// generation, and each loop moves its own connections' ids and linger
/// timers with it (a moved instance's linger timer is wherever it was).
/// Instances the new engine refuses are logged `REMOVING`. The journal and
/// the DUP_GROUP uses follow the new ids. Returns the id map and how many
/// were removed.
pub(crate) fn migrate(cx: &mut Ctx, p: &Prepared, now: u64, fx: &mut Effects) -> (Remap, usize) {
    let new_engine = &p.engine;
    let mut remap = HashMap::new();
    let mut removed = 0usize;
    for f in cx.engine.snapshot(now).features {
        for pool in f.pools {
            for h in pool.holders {
                let r = Restore {
                    names: Names {
                        feature: &f.name,
                        user: &h.user,
                        host: &h.host,
                        display: &h.display,
                        handle: &h.handle,
                    },
                    count: h.count,
                    version: pool.version.scaled(),
                    since_ms: h.since_ms,
                    // A borrow stays one (`HolderSnapshot::borrowed`).
                    linger_ms: h.linger_ms | if h.borrowed { BORROWED } else { 0 },
                    deadline_ms: h.deadline_ms,
                    identity: Some(h.identity),
                };
                // A DUP_GROUP instance's counted uses come along.
                match new_engine.restore_uses(&r, cx.engine.uses(h.id).as_ref()) {
                    Ok(id) => {
                        let fid = new_engine.feature_id(&f.name);
                        remap.insert(h.id, (id, fid.unwrap_or(FeatureId(0))));
                    }
                    Err(why) => {
                        removed += 1;
                        fx.line(
                            now,
                            &f.vendor,
                            format!(
                                "REMOVING {}@{}:{} from {} (after reread: {})",
                                h.user,
                                h.host,
                                h.display,
                                f.name,
                                why.text()
                            ),
                        );
                    }
                }
            }
        }
    }
    if let Some(j) = cx.journal.as_mut() {
        j.remap(
            remap
                .iter()
                .map(|(old, (new, _))| (old.to_bits(), new.to_bits()))
                .collect(),
            new_engine.clone(),
        );
    }
    (remap, removed)
}

/// The reread's log lines and its reply (`OK REREAD pools diagnostics`).
pub(crate) fn report(
    p: &Prepared,
    kept: usize,
    removed: usize,
    now: u64,
    out: &mut BytesMut,
    fx: &mut Effects,
) {
    let licenses = &p.licenses;
    let (pools, diags) = (licenses.pools.len() - p.retired, licenses.diagnostics.len());
    fx.line(
        now,
        "lmgrd",
        format!(
            "Reread license file {}: {}, {} rejected, {} kept, {removed} removed",
            licenses.source,
            crate::debuglog::counted(pools as u64, "pool", "pools"),
            crate::debuglog::counted(diags as u64, "line", "lines"),
            crate::debuglog::counted(kept as u64, "checkout", "checkouts"),
        ),
    );
    for d in &licenses.diagnostics {
        fx.line(
            now,
            "lmgrd",
            format!("License file error, line skipped: {d}"),
        );
    }
    for w in &licenses.warnings {
        fx.line(now, "lmgrd", format!("License file warning: {w}"));
    }
    if let (Some(path), Some(o)) = (&p.options_path, &p.options) {
        crate::server::options_lines(path, o, &p.engine, |text| fx.line(now, "lmgrd", text));
    }
    let _ = Reply::Reread {
        pools,
        diagnostics: diags,
    }
    .write_to(out);
}

impl Session {
    /// Moves the licenses this session holds to the new engine's ids with
    /// a generation's `remap`: those the new engine refused are dropped,
    /// and two instances a new DUP_GROUP merged into one become one
    /// [`Held`] with the handles of both.
    pub(crate) fn adopt(&mut self, remap: &Remap) {
        let mut moved: HashMap<InstanceId, Held> = HashMap::with_capacity(self.held.len());
        for (old, h) in self.held.drain() {
            let Some(&(id, feature)) = remap.get(&old) else {
                continue;
            };
            moved
                .entry(id)
                .and_modify(|m| m.handles.extend(h.handles.iter().cloned()))
                .or_insert(Held { id, feature, ..h });
        }
        self.held = moved;
    }
}
