//! tallyd's options file: where it is, how it is loaded with the license
//! file, and the settings the loops apply outside the engine (NOLOG, LINGER
//! defaults, idle TIMEOUTs).
//!
//! The admission rules (INCLUDE, EXCLUDE, RESERVE, MAX, MAX_OVERDRAFT) are
//! compiled into the engine ([`Engine::with_options`]); this module keeps
//! what only the server can do. A REREAD builds a new engine and a new
//! [`ServerOptions`] together from the files as they are then.

use std::path::{Path, PathBuf};

use tally_core::engine::{Engine, EngineConfig, FeatureId};
use tally_core::license::LicenseSet;
use tally_core::options::{NoLog, OptionsFile};

use crate::source::SourceFileError;

/// How tallyd was told about options (a field of `server::Config`).
#[derive(Debug, Clone, Default)]
pub struct PolicyConfig {
    /// `--options FILE`: overrides the license's VENDOR line.
    pub explicit: Option<PathBuf>,
    /// The options file as loaded at start (from `explicit` or the VENDOR
    /// line), and where it was.
    pub loaded: Option<(PathBuf, OptionsFile)>,
    /// Smallest TIMEOUT honoured, seconds ([`tally_core::options::FLEXLM_MIN_TIMEOUT_SECS`]
    /// unless lowered with `--min-timeout` for tests).
    pub min_timeout_secs: u64,
}

/// Where the options file is: the explicit path (`--options`), else the
/// `OPTIONS=` path (or fourth field) of the license file's first VENDOR line
/// that has one. A relative VENDOR path is taken relative to the license
/// file's directory.
pub fn locate(
    explicit: Option<&Path>,
    licenses: &LicenseSet,
    license_path: Option<&Path>,
) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let named = licenses
        .vendors
        .iter()
        .find_map(|v| v.options_path.as_deref())?;
    let named = Path::new(named);
    Some(match license_path.and_then(Path::parent) {
        Some(dir) if named.is_relative() => dir.join(named),
        _ => named.to_path_buf(),
    })
}

/// Reads the options file at `path`, if any (at most
/// [`crate::source::MAX_SOURCE_FILE_BYTES`]).
pub fn load(path: Option<&Path>) -> Result<Option<OptionsFile>, SourceFileError> {
    path.map(crate::source::read_options).transpose()
}

/// Builds the engine for `licenses`, applying `options` if given.
pub fn build_engine(
    licenses: &LicenseSet,
    options: Option<&OptionsFile>,
    config: EngineConfig,
) -> Engine {
    match options {
        Some(o) => Engine::with_options(licenses, o, config),
        None => Engine::new(licenses, config),
    }
}

/// What the loops apply of an options file, indexed by the engine's
/// feature ids.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// NOLOG settings.
    pub nolog: NoLog,
    /// LINGER default per feature id, ms (0 = none).
    linger_ms: Vec<u64>,
    /// Idle timeout per feature id, ms (0 = none).
    timeout_ms: Vec<u64>,
    /// Some feature has a LINGER default.
    any_linger: bool,
    /// Some feature has an idle timeout.
    any_timeout: bool,
    /// The shortest idle timeout, ms.
    shortest_timeout: Option<u64>,
}

impl ServerOptions {
    /// Resolves `options` against `engine`'s features. `min_timeout_secs`
    /// is the smallest TIMEOUT honoured (FlexLM's 900 s unless lowered for
    /// tests); smaller values are raised to it.
    pub fn new(
        engine: &Engine,
        options: Option<&OptionsFile>,
        min_timeout_secs: u64,
    ) -> ServerOptions {
        let Some(o) = options else {
            return ServerOptions::default();
        };
        let n = engine.feature_count();
        let mut s = ServerOptions {
            nolog: o.nolog,
            linger_ms: vec![0; n],
            timeout_ms: vec![0; n],
            any_linger: false,
            any_timeout: false,
            shortest_timeout: None,
        };
        for i in 0..n {
            let Some(id) = engine.feature_id_at(i) else {
                continue;
            };
            let name = engine.feature_name(id);
            let package = engine.feature_package(id);
            if let Some(l) = o.component_linger_secs(name, package) {
                s.linger_ms[i] = l.saturating_mul(1000);
                s.any_linger |= l > 0;
            }
            if let Some(t) = o.component_timeout_secs(name, package) {
                s.timeout_ms[i] = t.max(min_timeout_secs).saturating_mul(1000);
                s.any_timeout = true;
            }
        }
        s.shortest_timeout = s.timeout_ms.iter().copied().filter(|&t| t > 0).min();
        s
    }

    /// The LINGER default of feature `id`, ms (0: none).
    pub fn default_linger_ms(&self, id: FeatureId) -> u64 {
        if !self.any_linger {
            return 0;
        }
        self.linger_ms.get(id.0 as usize).copied().unwrap_or(0)
    }

    /// The idle timeout of feature `id`, ms; `None` if it has none.
    pub fn timeout_ms(&self, id: FeatureId) -> Option<u64> {
        if !self.any_timeout {
            return None;
        }
        self.timeout_ms
            .get(id.0 as usize)
            .copied()
            .filter(|&t| t > 0)
    }

    /// The shortest idle timeout of any feature, ms.
    pub fn shortest_timeout_ms(&self) -> Option<u64> {
        self.shortest_timeout
    }

    /// Whether any feature has an idle timeout.
    pub fn has_timeouts(&self) -> bool {
        self.any_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::license::parse_str;
    use tally_core::options;

    #[test]
    fn vendor_line_options_path_is_relative_to_the_license() {
        let lic = parse_str(
            "x",
            "VENDOR CITRIX options=citrix.opt\nFEATURE f CITRIX 1.0 permanent 1\n",
        );
        let p = locate(None, &lic, Some(Path::new("/etc/lic/citrix.lic")));
        assert_eq!(p, Some(PathBuf::from("/etc/lic/citrix.opt")));
        let p = locate(Some(Path::new("/x.opt")), &lic, None);
        assert_eq!(p, Some(PathBuf::from("/x.opt")));
        let none = parse_str("x", "FEATURE f CITRIX 1.0 permanent 1\n");
        assert_eq!(locate(None, &none, None), None);
    }

    #[test]
    fn lingers_and_timeouts_by_feature() {
        let lic = parse_str(
            "x",
            "FEATURE f V 1.0 permanent 1\nFEATURE g V 1.0 permanent 1\n",
        );
        let o = options::parse_str("o", "LINGER f 30\nTIMEOUT f 60\nTIMEOUTALL 1000\n");
        let e = Engine::new(&lic, EngineConfig::default());
        let s = ServerOptions::new(&e, Some(&o), 900);
        let id = |name| e.feature_id(name).unwrap();
        assert_eq!(s.default_linger_ms(id("f")), 30_000);
        assert_eq!(s.default_linger_ms(id("g")), 0);
        let f = e.feature_id("f").unwrap();
        let g = e.feature_id("g").unwrap();
        assert_eq!(s.timeout_ms(f), Some(900_000), "raised to the minimum");
        assert_eq!(s.timeout_ms(g), Some(1_000_000));
        let s = ServerOptions::new(&e, Some(&o), 1);
        assert_eq!(s.timeout_ms(f), Some(60_000));
    }

    #[test]
    fn a_packages_linger_and_timeout_apply_to_its_components() {
        let lic = parse_str(
            "x",
            "PACKAGE P V 1.0 COMPONENTS=\"a b\"\nFEATURE P V 1.0 permanent 1\n",
        );
        // `b`'s own lines beat the package's.
        let o = options::parse_str("o", "LINGER P 30\nTIMEOUT P 60\nLINGER b 5\nTIMEOUT b 70\n");
        let e = Engine::new(&lic, EngineConfig::default());
        let s = ServerOptions::new(&e, Some(&o), 1);
        let id = |name| e.feature_id(name).unwrap();
        assert_eq!(s.default_linger_ms(id("a")), 30_000);
        assert_eq!(s.timeout_ms(id("a")), Some(60_000));
        assert_eq!(s.default_linger_ms(id("b")), 5_000);
        assert_eq!(s.timeout_ms(id("b")), Some(70_000));
    }
}
