//! FlexLM license files: the model ([`model`]), the parser (`parse.rs`:
//! [`parse_str`]) and what PACKAGE, UPGRADE and SUPERSEDE lines do to the
//! pools ([`expand`], which the parser applies); vendor-signed files
//! ([`signature`]: `TALLY_SIG=` and [`signature::parse_str_verified`]).

mod date;
mod expand;
pub(crate) mod lexer;
pub mod model;
mod parse;
pub mod signature;
mod vendor_string;

pub(crate) use date::parse_expiry;
pub use expand::{expand, DEFAULT_SUITE_DUP};
pub use model::*;
pub use parse::parse_str;
