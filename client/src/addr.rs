//! Where the license server is: `PORT@HOST` lists and license files,
//! found like lmutil finds them.
//!
//! Order of precedence: the `-c` option, then the `TALLY_LICENSE_FILE`
//! environment variable, then `LM_LICENSE_FILE`, then `27000@localhost`.
//! A value is a list of entries separated by `:` (lmutil's separator on
//! Unix), `;` (Windows) or `,` (a FlexLM triad). An entry is
//!
//! - `PORT@HOST`, or `@HOST` for port 27000. HOST may be an IPv6 literal,
//!   in brackets (`27300@[::1]`, unambiguous) or bare (`27300@::1`: the
//!   longest run of `:`-separated pieces that reads as an IPv6 address);
//! - anything else is a license file path (or a directory, whose `*.lic`
//!   files are read in name order), as with lmutil: the file's `SERVER`
//!   lines name the servers (host and port; no port means 27000, and
//!   `this_host` means this machine). A path that cannot be read, or whose
//!   file has no `SERVER` line, is skipped with a note on stderr, as
//!   lmutil skips it.
//!
//! Entries are tried in order and the first server that answers is used.
//!
//! The library ([`crate::Client`]) and tallyctl ([`crate::ctl`]) both read
//! server lists here; tallyctl turns an [`AddrError`] into its
//! `CtlError::BadAddress` (same message).

use std::fmt;
use std::net::Ipv6Addr;
use std::path::Path;

/// A `PORT@HOST` list, or one entry of it, that gives no server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad license server address {value:?} (from {origin}): {why}")]
pub struct AddrError {
    /// The offending entry or value.
    pub value: String,
    /// `-c` or the environment variable's name.
    pub origin: String,
    /// What is wrong.
    pub why: String,
}

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
    /// Host name, IPv4 address or IPv6 address (without brackets).
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

    /// Parses one `PORT@HOST` or `@HOST` entry (HOST may be `[v6]` or a
    /// bare IPv6 address). `origin` names where the text came from (`-c`,
    /// an environment variable) for the error message.
    pub fn parse(entry: &str, origin: &str) -> Result<ServerAddr, AddrError> {
        let bad = |why: &str| AddrError {
            value: entry.to_string(),
            origin: origin.to_string(),
            why: why.to_string(),
        };
        let entry = entry.trim();
        let Some((port, host)) = entry.split_once('@') else {
            return Err(bad(
                "it must be PORT@HOST (for example 27000@lic1) or a license file",
            ));
        };
        if host.is_empty() {
            return Err(bad("the host after '@' is missing"));
        }
        let host = match host.strip_prefix('[') {
            Some(inner) => match inner.strip_suffix(']') {
                Some(v6) if v6.parse::<Ipv6Addr>().is_ok() => v6,
                _ => {
                    return Err(bad(
                        "the host in [...] must be an IPv6 address, such as [::1]",
                    ))
                }
            },
            None if host.contains(':') && host.parse::<Ipv6Addr>().is_err() => {
                return Err(bad("the host is not a host name or an IPv6 address"))
            }
            None => host,
        };
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
        if self.host.contains(':') {
            write!(f, "{}@[{}]", self.port, self.host)
        } else {
            write!(f, "{}@{}", self.port, self.host)
        }
    }
}

/// Splits a list into entries on `;`, `,` and `:`, keeping the colons of
/// an IPv6 host (`27300@[::1]`, `27300@::1`) inside its entry. Empty
/// entries are dropped.
pub fn split_entries(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in value.split([';', ',']) {
        let pieces: Vec<&str> = chunk.split(':').collect();
        let mut i = 0;
        while let Some(&piece) = pieces.get(i) {
            let mut entry = piece.to_string();
            let mut last = i;
            if let Some(at) = piece.find('@') {
                let mut joined = piece.to_string();
                for (j, next) in pieces.iter().enumerate().skip(i + 1) {
                    let bracketed = piece[at + 1..].starts_with('[');
                    if bracketed && joined.contains(']') {
                        break;
                    }
                    joined.push(':');
                    joined.push_str(next);
                    let host = &joined[at + 1..];
                    let done = if bracketed {
                        host.ends_with(']')
                    } else {
                        host.parse::<Ipv6Addr>().is_ok()
                    };
                    if done {
                        entry.clone_from(&joined);
                        last = j;
                    }
                }
            }
            if !entry.trim().is_empty() {
                out.push(entry);
            }
            i = last + 1;
        }
    }
    out
}

/// The servers a license file names (its SERVER lines), or why none.
/// A directory stands for its `*.lic` files, in name order.
pub fn servers_in_license_file(path: &Path) -> Result<Vec<ServerAddr>, String> {
    if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| format!("cannot read directory {}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "lic"))
            .collect();
        files.sort();
        let mut out = Vec::new();
        for f in &files {
            out.extend(servers_in_license_file(f).unwrap_or_default());
        }
        if out.is_empty() {
            return Err(format!(
                "no *.lic file in directory {} has a SERVER line",
                path.display()
            ));
        }
        return Ok(out);
    }
    let set = crate::source::read_license(path).map_err(|e| e.to_string())?;
    if set.servers.is_empty() {
        return Err(format!(
            "license file {} has no SERVER line (a node-locked file names no server)",
            path.display()
        ));
    }
    Ok(set
        .servers
        .iter()
        .map(|s| ServerAddr {
            port: s.port.unwrap_or(DEFAULT_PORT),
            host: if s.host.eq_ignore_ascii_case("this_host") {
                "localhost".to_string()
            } else {
                s.host.clone()
            },
        })
        .collect())
}

/// Parses a list of entries ([`split_entries`]): `PORT@HOST` entries are
/// addresses, others license files whose SERVER lines are read; a file
/// that gives no server is skipped and `note` told why. A list that gives
/// no server at all is an error.
pub fn parse_list(
    value: &str,
    origin: &str,
    note: &mut dyn FnMut(String),
) -> Result<Vec<ServerAddr>, AddrError> {
    let mut list = Vec::new();
    let mut skipped = Vec::new();
    for entry in split_entries(value) {
        if entry.contains('@') {
            list.push(ServerAddr::parse(&entry, origin)?);
            continue;
        }
        match servers_in_license_file(Path::new(entry.trim())) {
            Ok(servers) => list.extend(servers),
            Err(why) => {
                note(format!("{origin} entry {entry:?} skipped: {why}"));
                skipped.push(entry);
            }
        }
    }
    if list.is_empty() {
        return Err(AddrError {
            value: value.to_string(),
            origin: origin.to_string(),
            why: if skipped.is_empty() {
                "no PORT@HOST entry".to_string()
            } else {
                "no PORT@HOST entry, and no license file in it names a server".to_string()
            },
        });
    }
    Ok(list)
}

/// The servers to try, in order: `flag` (the `-c` value) if given, else the
/// first of [`ENV_TALLY`] / [`ENV_LM`] that `env` returns non-empty, else
/// `27000@localhost`. `env` is a parameter so tests need not touch the
/// process environment; `note` hears about skipped license files.
pub fn discover(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    note: &mut dyn FnMut(String),
) -> Result<Vec<ServerAddr>, AddrError> {
    if let Some(value) = flag {
        return parse_list(value, "-c", note);
    }
    for name in [ENV_TALLY, ENV_LM] {
        if let Some(value) = env(name).filter(|v| !v.trim().is_empty()) {
            return parse_list(&value, name, note);
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

    fn list(value: &str) -> Result<Vec<ServerAddr>, AddrError> {
        parse_list(value, "-c", &mut |_| {})
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
    fn rejects_bad_entries_and_bad_ports() {
        for bad in [
            "0@lic1",
            "70000@lic1",
            "x@lic1",
            "27000@",
            "1@[lic1]",
            "1@a:b",
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
        let list = list("1@a:2@b;3@c,@d").unwrap_or_default();
        assert_eq!(
            list,
            vec![addr(1, "a"), addr(2, "b"), addr(3, "c"), addr(27000, "d")]
        );
    }

    /// Issue 12 item 18: `-c 27300@[::1]` and `-c 27300@::1` were refused.
    #[test]
    fn ipv6_hosts_bracketed_or_bare() {
        for value in ["27300@[::1]", "27300@::1"] {
            assert_eq!(list(value).ok(), Some(vec![addr(27300, "::1")]), "{value}");
        }
        assert_eq!(
            list("27300@[fe80::1:2]:27000@lic2;@::1").ok(),
            Some(vec![
                addr(27300, "fe80::1:2"),
                addr(27000, "lic2"),
                addr(27000, "::1")
            ])
        );
        assert_eq!(
            list("27300@::1:27000@lic2").ok(),
            Some(vec![addr(27300, "::1"), addr(27000, "lic2")])
        );
        assert_eq!(addr(27300, "::1").to_string(), "27300@[::1]");
        assert!(list("27300@[::1").is_err());
    }

    /// Issue 12 item 17: a license-file path in the list aborted with "not
    /// a path"; lmutil reads its SERVER lines, and skips what it cannot read.
    #[test]
    fn license_file_entries_give_their_server_lines() {
        let dir = std::env::temp_dir().join(format!("tally-addr-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let lic = dir.join("a.lic");
        let _ = std::fs::write(
            &lic,
            "SERVER lic1 ANY 27001\nSERVER this_host ANY\nFEATURE f V 1 permanent 1\n",
        );
        let nodelocked = dir.join("b.dat");
        let _ = std::fs::write(&nodelocked, "FEATURE f V 1 permanent uncounted\n");
        let value = format!(
            "/nonexistent/foo.lic:{}:{}:27100@localhost",
            nodelocked.display(),
            lic.display()
        );
        let mut notes = Vec::new();
        let got = parse_list(&value, ENV_LM, &mut |n| notes.push(n));
        assert_eq!(
            got.ok(),
            Some(vec![
                addr(27001, "lic1"),
                addr(27000, "localhost"),
                addr(27100, "localhost")
            ])
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("/nonexistent/foo.lic") && notes[0].contains("skipped"));
        assert!(notes[1].contains("no SERVER line"), "{notes:?}");
        // A directory stands for its *.lic files.
        let from_dir = list(&dir.display().to_string());
        assert_eq!(from_dir.ok().map(|l| l.len()), Some(2));
        // Nothing usable at all is still an error.
        assert!(list("/nonexistent/foo.lic").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn discovery_order() {
        let env = |n: &str| match n {
            ENV_TALLY => Some("1@tally".to_string()),
            ENV_LM => Some("2@lm".to_string()),
            _ => None,
        };
        let mut quiet = |_| {};
        assert_eq!(
            discover(Some("3@flag"), env, &mut quiet).ok(),
            Some(vec![addr(3, "flag")])
        );
        assert_eq!(
            discover(None, env, &mut quiet).ok(),
            Some(vec![addr(1, "tally")])
        );
        let lm_only = |n: &str| (n == ENV_LM).then(|| "2@lm".to_string());
        assert_eq!(
            discover(None, lm_only, &mut quiet).ok(),
            Some(vec![addr(2, "lm")])
        );
        assert_eq!(
            discover(None, |_| None, &mut quiet).ok(),
            Some(vec![ServerAddr::default_local()])
        );
    }
}
