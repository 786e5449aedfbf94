//! Where the license server is: `PORT@HOST` lists, found like lmutil finds
//! them.
//!
//! Order of precedence: the `-c` option, then the `TALLY_LICENSE_FILE`
//! environment variable, then `LM_LICENSE_FILE`, then `27000@localhost`.
//! A value is a list of `PORT@HOST` entries separated by `:` (lmutil's
//! separator on Unix), `;` (Windows) or `,` (a FlexLM triad); `@HOST` means
//! port 27000. Entries are tried in order and the first server that answers
//! is used. License-file paths are not accepted (tally has no license file on
//! the client side): an entry without `@` is an error that says so. IPv6
//! literals are not supported (their colons are separators).

use std::fmt;

use super::CtlError;

/// The port FlexLM and tally use when none is given.
pub const DEFAULT_PORT: u16 = 27000;

/// Environment variable read first when `-c` is absent.
pub const ENV_TALLY: &str = "TALLY_LICENSE_FILE";

/// Environment variable read when neither `-c` nor [`ENV_TALLY`] is set.
pub const ENV_LM: &str = "LM_LICENSE_FILE";

/// One license server address, `PORT@HOST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// TCP port.
    pub port: u16,
    /// Host name or IPv4 address.
    pub host: String,
}

impl ServerAddr {
    /// `27000@localhost`.
    pub fn default_local() -> ServerAddr {
        ServerAddr {
            port: DEFAULT_PORT,
            host: "localhost".to_string(),
        }
    }

    /// Parses one `PORT@HOST` or `@HOST` entry. `origin` names where the
    /// text came from (`-c`, an environment variable) for the error message.
    pub fn parse(entry: &str, origin: &str) -> Result<ServerAddr, CtlError> {
        let bad = |why: &str| CtlError::BadAddress {
            value: entry.to_string(),
            origin: origin.to_string(),
            why: why.to_string(),
        };
        let entry = entry.trim();
        let Some((port, host)) = entry.split_once('@') else {
            return Err(bad(
                "it must be PORT@HOST (for example 27000@lic1), not a path",
            ));
        };
        if host.is_empty() {
            return Err(bad("the host after '@' is missing"));
        }
        if host.contains('@') || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the host is not a host name"));
        }
        let port = if port.is_empty() {
            DEFAULT_PORT
        } else {
            match port.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(bad("the port must be a number from 1 to 65535")),
            }
        };
        Ok(ServerAddr {
            port,
            host: host.to_string(),
        })
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.port, self.host)
    }
}

/// Parses a list of entries separated by `:`, `;` or `,`. Empty entries are
/// skipped; an empty list is an error.
pub fn parse_list(value: &str, origin: &str) -> Result<Vec<ServerAddr>, CtlError> {
    let list = value
        .split([':', ';', ','])
        .filter(|e| !e.trim().is_empty())
        .map(|e| ServerAddr::parse(e, origin))
        .collect::<Result<Vec<_>, _>>()?;
    if list.is_empty() {
        return Err(CtlError::BadAddress {
            value: value.to_string(),
            origin: origin.to_string(),
            why: "no PORT@HOST entry".to_string(),
        });
    }
    Ok(list)
}

/// The servers to try, in order: `flag` (the `-c` value) if given, else the
/// first of [`ENV_TALLY`] / [`ENV_LM`] that `env` returns non-empty, else
/// `27000@localhost`. `env` is a parameter so tests need not touch the
/// process environment.
pub fn discover(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<ServerAddr>, CtlError> {
    if let Some(value) = flag {
        return parse_list(value, "-c");
    }
    for name in [ENV_TALLY, ENV_LM] {
        if let Some(value) = env(name).filter(|v| !v.trim().is_empty()) {
            return parse_list(&value, name);
        }
    }
    Ok(vec![ServerAddr::default_local()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16, host: &str) -> ServerAddr {
        ServerAddr {
            port,
            host: host.to_string(),
        }
    }

    #[test]
    fn parses_port_at_host_and_bare_at_host() {
        assert_eq!(
            ServerAddr::parse("27001@lic1", "-c").ok(),
            Some(addr(27001, "lic1"))
        );
        assert_eq!(
            ServerAddr::parse("@lic1", "-c").ok(),
            Some(addr(27000, "lic1"))
        );
        assert_eq!(addr(27001, "lic1").to_string(), "27001@lic1");
    }

    #[test]
    fn rejects_paths_and_bad_ports() {
        for bad in [
            "/etc/license.lic",
            "lic1",
            "0@lic1",
            "70000@lic1",
            "x@lic1",
            "27000@",
        ] {
            assert!(ServerAddr::parse(bad, "-c").is_err(), "{bad}");
        }
        let err = ServerAddr::parse("/opt/lic.dat", "LM_LICENSE_FILE").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("PORT@HOST") && text.contains("LM_LICENSE_FILE"),
            "{text}"
        );
    }

    #[test]
    fn lists_split_on_colon_semicolon_comma() {
        let list = parse_list("1@a:2@b;3@c,@d", "-c").unwrap_or_default();
        assert_eq!(
            list,
            vec![addr(1, "a"), addr(2, "b"), addr(3, "c"), addr(27000, "d")]
        );
    }

    #[test]
    fn discovery_order() {
        let env = |n: &str| match n {
            ENV_TALLY => Some("1@tally".to_string()),
            ENV_LM => Some("2@lm".to_string()),
            _ => None,
        };
        assert_eq!(
            discover(Some("3@flag"), env).ok(),
            Some(vec![addr(3, "flag")])
        );
        assert_eq!(discover(None, env).ok(), Some(vec![addr(1, "tally")]));
        let lm_only = |n: &str| (n == ENV_LM).then(|| "2@lm".to_string());
        assert_eq!(discover(None, lm_only).ok(), Some(vec![addr(2, "lm")]));
        assert_eq!(
            discover(None, |_| None).ok(),
            Some(vec![ServerAddr::default_local()])
        );
    }
}
