//! FlexLM license files: the model ([`model`]) and the parser (`parse.rs`: [`parse_str`]).

mod date;
pub(crate) mod lexer;
pub mod model;
mod parse;
mod vendor_string;

pub(crate) use date::parse_expiry;
pub use model::*;
pub use parse::parse_str;
