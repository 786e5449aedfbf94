//! FlexLM license files: the model ([`model`]) and the parser ([`parse`]).

pub mod model;
mod parse;

pub use model::*;
pub use parse::{parse_file, parse_str, LicenseFileError};
