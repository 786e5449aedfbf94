//! FlexLM license files: the model ([`model`]), the parser (`parse.rs`:
//! [`parse_str`]) and what PACKAGE, UPGRADE and SUPERSEDE lines do to the
//! pools ([`expand`], which the parser applies).

mod date;
mod expand;
pub(crate) mod lexer;
pub mod model;
mod parse;
mod vendor_string;

pub(crate) use date::parse_expiry;
pub use expand::{expand, DEFAULT_SUITE_DUP};
pub use model::*;
pub use parse::parse_str;
