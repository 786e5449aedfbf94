//! Placeholder: the parser is being written.
use super::model::LicenseSet;
use std::path::Path;

/// Error reading a license file.
#[derive(Debug, thiserror::Error)]
pub enum LicenseFileError {
    /// The file could not be read.
    #[error("cannot read license file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Parses license text.
pub fn parse_str(source: &str, _text: &str) -> LicenseSet {
    LicenseSet {
        source: source.to_string(),
        ..Default::default()
    }
}

/// Reads and parses a license file.
pub fn parse_file(path: &Path) -> Result<LicenseSet, LicenseFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| LicenseFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(parse_str(&path.display().to_string(), &text))
}
