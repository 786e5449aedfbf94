//! The command line (clap), and the lmutil-style multi-call entry.
//!
//! The binary answers to several names: as `tallyctl` (or any other name)
//! the first argument is the subcommand; as `lmutil` likewise (`lmutil
//! lmstat -a -c 27000@lic1`, what exporters run); as `lmstat`, `lmremove`,
//! `lmreread`, `lmdown` or `lmhostid` (a symlink) the name itself is the
//! subcommand. lmstat's options are FlexLM's single-dash letters, in any
//! order (`-a -c 27000@lic1` or `-c 27000@lic1 -a`).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// FlexLM tool names that, as the program name, stand for a subcommand.
const MULTI_CALL: [&str; 5] = ["lmstat", "lmremove", "lmreread", "lmdown", "lmhostid"];

/// `tallyctl`: status and administration of a tally license server.
#[derive(Debug, Parser)]
#[command(
    name = "tallyctl",
    version,
    about = "Status and administration of a tally license server (lmutil-compatible)",
    after_help = "Servers: -c PORT@HOST[:PORT@HOST...], else $TALLY_LICENSE_FILE, \
                  else $LM_LICENSE_FILE, else 27000@localhost. The first that answers is used. \
                  An IPv6 host is written PORT@[::1]; a license file in the list stands for \
                  its SERVER lines (lmutil's rule)."
)]
pub struct Cli {
    /// License server(s): PORT@HOST (or @HOST for port 27000; `PORT@[::1]`
    /// for IPv6) or a license file (its SERVER lines), several separated by
    /// ':' and tried in order.
    #[arg(short = 'c', long = "server", global = true, value_name = "PORT@HOST")]
    pub server: Option<String>,
    /// Connect / read timeout in seconds.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 5.0)]
    pub timeout: f64,
    /// Send `AUTH <token>` with the token in FILE before admin requests
    /// (needed for remove, reread and down from a non-loopback address).
    #[arg(long, global = true, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// FlexLM-compatible status report (`lmutil lmstat`).
    Lmstat(LmstatArgs),
    /// The server's status: a short table, or the STATUS JSON.
    Status {
        /// Print the STATUS JSON as the server sent it (one line).
        #[arg(long)]
        json: bool,
        /// With --json: indent the JSON.
        #[arg(long, requires = "json")]
        pretty: bool,
    },
    /// Check licenses in (lmremove): by user, host and display, or by ticket.
    #[command(alias = "lmremove")]
    Remove(RemoveArgs),
    /// Borrowed licenses (`tallyctl borrow return`: end a holder's borrows
    /// early).
    Borrow {
        /// What to do.
        #[command(subcommand)]
        action: BorrowAction,
    },
    /// Make the server reload its license file (lmreread).
    #[command(alias = "lmreread")]
    Reread,
    /// Make the server reopen its debug log file (after logrotate moved it).
    ReopenLog,
    /// Shut the server down (lmdown).
    #[command(alias = "lmdown")]
    Down {
        /// Accepted for lmdown compatibility (tallyctl never asks).
        #[arg(short = 'q', hide = true)]
        quiet: bool,
    },
    /// Check that the server answers (PING).
    Ping,
    /// Print this machine's host ID (lmhostid).
    #[command(alias = "lmhostid")]
    Hostid,
    /// Parse a license file and report every pool and every rejected line.
    CheckLicense {
        /// The license file.
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The vendor's public key file: check each line's `TALLY_SIG=` as
        /// `tallyd --vendor-key` does (lines that do not verify are
        /// rejected).
        #[arg(long, value_name = "PUB")]
        vendor_key: Option<PathBuf>,
    },
    /// Vendor-signed license files: make a key pair, sign a file.
    #[command(subcommand)]
    License(LicenseCommand),
    /// The offline cache file: check it, or show what it holds.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Take licenses as an agent does, through the library
    /// (tally_client::Client and Agent).
    #[command(subcommand)]
    Agent(AgentCommand),
    /// The compliance report of the server's usage history (REPORT;
    /// docs/usage.md): `tallyctl report [--from D] [--to D] [--format
    /// json|csv]` prints it; `report upload|status|export|verify`: its
    /// upload, the last upload's result, an export for a manual upload.
    Report(ReportArgs),
}

/// `report [print] [--from D] [--to D] [--format json|csv]`: without a
/// subcommand, `print`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReportArgs {
    /// What to do with the report (default: print it).
    #[command(subcommand)]
    pub command: Option<ReportCommand>,
    /// `print`'s options, for `tallyctl report --format csv`.
    #[command(flatten)]
    pub print: ReportPrintArgs,
}

/// `report ...`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Print the report (what `tallyctl report` alone does).
    Print(ReportPrintArgs),
    /// Ask the server to upload the report now (UPLOAD; tallyd
    /// --upload-url).
    Upload,
    /// The last upload attempt: its times, its result code
    /// (CTX_UPLOADER_...) and message, the next attempt, reports waiting.
    Status {
        /// Print the UPLOAD_STATUS JSON as the server sent it.
        #[arg(long)]
        json: bool,
    },
    /// Write the report and a manifest of each part's SHA-256 into one
    /// file, to upload by hand from a site without internet access.
    Export {
        /// The export file to write (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Export this report JSON (a saved `tallyctl report` output)
        /// instead of asking the server for it.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["from", "to"])]
        report: Option<PathBuf>,
        /// First day asked of the server (as `report --from`).
        #[arg(long, value_name = "YYYY-MM-DD")]
        from: Option<String>,
        /// Last day asked of the server (as `report --to`).
        #[arg(long, value_name = "YYYY-MM-DD")]
        to: Option<String>,
    },
    /// Check an export file: exit 0 if it is intact, 1 naming what is wrong
    /// (a part whose SHA-256 does not match, ...), 2 if it cannot be read.
    Verify {
        /// The export file.
        file: PathBuf,
    },
}

/// The period and format of a printed report.
#[derive(Debug, Clone, Args)]
pub struct ReportPrintArgs {
    /// First day (UTC, YYYY-MM-DD; default: 29 days before --to).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub from: Option<String>,
    /// Last day, included (UTC, YYYY-MM-DD; default: today).
    #[arg(long, value_name = "YYYY-MM-DD")]
    pub to: Option<String>,
    /// `json`: the report as the server sent it (one line); `csv`: one row
    /// per feature per day.
    #[arg(long, value_enum, default_value_t = ReportFormat::Json)]
    pub format: ReportFormat,
}

/// How `report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// The JSON of REPORT, one line.
    Json,
    /// A header and one row per feature per day.
    Csv,
}

/// `license ...`.
#[derive(Debug, Subcommand)]
pub enum LicenseCommand {
    /// Make a vendor key pair: PREFIX.key (private, mode 0600) and
    /// PREFIX.pub (for `tallyd --vendor-key`). Never overwrites.
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Print FILE with a `TALLY_SIG=` signature on every FEATURE, INCREMENT,
    /// PACKAGE and UPGRADE line (`tallyctl license sign --key K in.lic >
    /// out.lic`).
    Sign {
        /// The private key file (PREFIX.key).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The license file to sign.
        file: PathBuf,
    },
}

/// `agent ...`.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Check a license out: prints one line, `OK ...` (with the deadline),
    /// `DENIED ...` (reason and FlexLM code), `OFFLINE ...` (no server
    /// answered: admitted under grace from the cache) or `REFUSED ...`.
    /// Without --linger the license is held by tallyctl's connection and
    /// checked in when tallyctl exits.
    Checkout(AgentCheckoutArgs),
    /// Report the sessions admitted offline to the server (RECONCILE): one
    /// line per admission (`RECONCILED`, `OVERDRAFT ... excess N`,
    /// `DUPLICATE`, `FAILED`) and a summary.
    Reconcile(AgentReconcileArgs),
    /// Run seed 002's agent: startup license, the product license with a
    /// linger, renewals, and the return (linger 1 s) at the end; one line
    /// per action.
    Run(AgentRunArgs),
}

/// `agent checkout`.
#[derive(Debug, Args)]
pub struct AgentCheckoutArgs {
    /// The feature.
    pub feature: String,
    /// The user.
    #[arg(long)]
    pub user: String,
    /// The user's host.
    #[arg(long)]
    pub host: String,
    /// The client's handle (one instance per handle).
    #[arg(long)]
    pub handle: String,
    /// Seconds the server keeps the license after this checkout.
    #[arg(long, value_name = "SECS")]
    pub linger: Option<f64>,
    /// Lowest version accepted.
    #[arg(long, value_name = "V")]
    pub version: Option<String>,
    /// The offline cache file (used when no server answers).
    #[arg(long, value_name = "FILE")]
    pub cache: PathBuf,
}

/// `agent reconcile`.
#[derive(Debug, Args)]
pub struct AgentReconcileArgs {
    /// The offline cache file (its side file holds the admissions).
    #[arg(long, value_name = "FILE")]
    pub cache: PathBuf,
}

/// `agent run`.
#[derive(Debug, Args)]
pub struct AgentRunArgs {
    /// The product feature.
    pub feature: String,
    /// The user.
    #[arg(long)]
    pub user: String,
    /// The user's host.
    #[arg(long)]
    pub host: String,
    /// The agent's handle.
    #[arg(long)]
    pub handle: String,
    /// The product license's linger, seconds.
    #[arg(long, value_name = "SECS")]
    pub linger: f64,
    /// Lowest version accepted.
    #[arg(long, value_name = "V")]
    pub version: Option<String>,
    /// Renewal interval, seconds (default: linger / 84).
    #[arg(long, value_name = "SECS")]
    pub renew_every: Option<f64>,
    /// Stop (and return the license) after this many seconds; without it
    /// the agent runs until killed (and returns nothing).
    #[arg(long = "for", value_name = "SECS")]
    pub run_for: Option<f64>,
    /// The startup license's feature.
    #[arg(long, value_name = "FEATURE", default_value = "CITRIX")]
    pub startup_feature: String,
    /// Take no startup license.
    #[arg(long)]
    pub no_startup: bool,
    /// An offline cache file: refreshed on every grant, used when no
    /// server answers, reconciled when one answers again.
    #[arg(long, value_name = "FILE")]
    pub cache: Option<PathBuf>,
}

/// `cache verify` / `cache show`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Check a cache file and its side file: exit 0 when valid, 1 naming
    /// the section and line of the first problem.
    Verify {
        /// The cache file.
        file: PathBuf,
    },
    /// Print the cached pools, what is held offline, the grace left of each
    /// pool now, and the offline admissions.
    Show {
        /// The cache file.
        file: PathBuf,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Repair a damaged side file: keep every intact record in a new side
    /// file and set the damaged one aside as
    /// FILE.admissions.damaged-TIME (nothing is deleted).
    Salvage {
        /// The cache file (its side file is FILE.admissions).
        file: PathBuf,
    },
}

/// `lmstat`'s options, FlexLM's letters.
#[derive(Debug, Args, Default)]
pub struct LmstatArgs {
    /// Everything: servers, vendors and the usage of every feature.
    #[arg(short = 'a')]
    pub all: bool,
    /// Only features with licenses in use.
    #[arg(short = 'A')]
    pub active: bool,
    /// Usage of FEATURE (of every feature without a name).
    #[arg(short = 'f', value_name = "FEATURE")]
    pub feature: Option<Option<String>>,
    /// The feature table (every pool, or FEATURE's).
    #[arg(short = 'i', value_name = "FEATURE")]
    pub info: Option<Option<String>>,
    /// Print lmstat's version line and exit.
    #[arg(short = 'v')]
    pub version: bool,
    /// Only the features of VENDOR.
    #[arg(short = 'S', value_name = "VENDOR")]
    pub vendor: Option<Option<String>>,
    /// Accepted for lmstat compatibility, ignored.
    #[arg(short = 's', value_name = "SERVER", hide = true)]
    pub server_status: Option<Option<String>>,
    /// Timeout in seconds (overrides --timeout).
    #[arg(short = 't', id = "lmstat_timeout", value_name = "SECS")]
    pub timeout: Option<f64>,
}

/// `borrow ...`.
#[derive(Debug, Subcommand)]
pub enum BorrowAction {
    /// End the holder's borrows of the feature now (an admin request:
    /// BORROW_RETURN); the licenses go back to the pool.
    Return {
        /// The feature.
        feature: String,
        /// The user who borrowed.
        user: String,
        /// The user's host.
        host: String,
        /// The display, as lmstat -a shows it (any display when omitted).
        display: Option<String>,
    },
}

/// `remove` / `lmremove`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Remove the one instance with this ticket (the number after
    /// `server/port` in lmstat -a).
    #[arg(long, value_name = "TICKET")]
    pub handle: Option<u64>,
    /// The feature.
    pub feature: String,
    /// The user (not with --handle).
    #[arg(required_unless_present = "handle", conflicts_with = "handle")]
    pub user: Option<String>,
    /// The user's host (not with --handle).
    #[arg(required_unless_present = "handle", conflicts_with = "handle")]
    pub host: Option<String>,
    /// The display, as lmstat -a shows it (not with --handle).
    #[arg(required_unless_present = "handle", conflicts_with = "handle")]
    pub display: Option<String>,
}

/// Rewrites the arguments of a multi-call invocation so clap sees
/// `tallyctl <subcommand> ...`: the program name becomes `lmutil` or
/// `tallyctl`, and a FlexLM tool name (`lmstat`, ...) is inserted as the
/// subcommand.
pub fn normalize(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let Some(first) = args.first() else {
        return vec![OsString::from("tallyctl")];
    };
    let base = std::path::Path::new(first)
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let base = base.strip_suffix(".exe").unwrap_or(&base).to_string();
    if base == "lmutil" {
        args[0] = OsString::from("lmutil");
    } else if MULTI_CALL.contains(&base.as_str()) {
        args[0] = OsString::from(&base);
        args.insert(1, OsString::from(&base));
    } else {
        args[0] = OsString::from("tallyctl");
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(normalize(words.iter().map(OsString::from)))
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn lmstat_flags_in_any_order_and_as_lmutil() {
        for words in [
            &["/usr/bin/lmutil", "lmstat", "-c", "27000@h", "-a"][..],
            &["tallyctl", "lmstat", "-a", "-c", "27000@h"][..],
            &["lmstat", "-a", "-c27000@h"][..],
        ] {
            let cli = parse(words).unwrap_or_else(|e| panic!("{words:?}: {e}"));
            assert_eq!(cli.server.as_deref(), Some("27000@h"), "{words:?}");
            match cli.command {
                Command::Lmstat(a) => assert!(a.all, "{words:?}"),
                other => panic!("{words:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn global_timeout_and_lmstat_t() {
        let cli = parse(&["tallyctl", "lmstat", "-a", "--timeout", "3", "-t", "2"]);
        let Ok(Cli {
            timeout,
            command: Command::Lmstat(a),
            ..
        }) = cli
        else {
            panic!("no parse: {cli:?}");
        };
        assert_eq!((timeout, a.timeout), (3.0, Some(2.0)));
    }

    #[test]
    fn optional_values() {
        let cli = parse(&["lmutil", "lmstat", "-f", "-c", "1@h"]).ok();
        let Some(Cli {
            command: Command::Lmstat(a),
            ..
        }) = cli
        else {
            panic!("no parse");
        };
        assert_eq!(a.feature, Some(None));
        let cli = parse(&["lmutil", "lmstat", "-i", "F1"]).ok();
        let Some(Cli {
            command: Command::Lmstat(a),
            ..
        }) = cli
        else {
            panic!("no parse");
        };
        assert_eq!(a.info, Some(Some("F1".to_string())));
    }

    #[test]
    fn remove_forms() {
        assert!(parse(&["tallyctl", "remove", "F", "u", "h", "d"]).is_ok());
        assert!(parse(&["tallyctl", "remove", "--handle", "17", "F"]).is_ok());
        assert!(parse(&["tallyctl", "remove", "F", "u"]).is_err());
        assert!(parse(&["tallyctl", "remove", "--handle", "17", "F", "u", "h", "d"]).is_err());
        assert!(parse(&["lmremove", "F", "u", "h", "d"]).is_ok());
        assert!(parse(&["tallyctl", "borrow", "return", "F", "u", "h"]).is_ok());
        assert!(parse(&["tallyctl", "borrow", "return", "F", "u", "h", "d"]).is_ok());
        assert!(parse(&["tallyctl", "borrow", "return", "F", "u"]).is_err());
    }

    #[test]
    fn agent_forms() {
        let words = [
            "tallyctl",
            "agent",
            "checkout",
            "MPM_ADV_RC",
            "--user",
            "U",
            "--host",
            "H",
            "--handle",
            "X",
            "--linger",
            "1814400",
            "--version",
            "1.0",
            "--cache",
            "c.ini",
            "-c",
            "1@h",
        ];
        let cli = parse(&words).unwrap_or_else(|e| panic!("{e}"));
        let Command::Agent(AgentCommand::Checkout(a)) = cli.command else {
            panic!("{:?}", cli.command);
        };
        assert_eq!(
            (a.linger, a.version.as_deref(), cli.server.as_deref()),
            (Some(1814400.0), Some("1.0"), Some("1@h"))
        );
        // --cache is required.
        assert!(parse(&words[..words.len() - 4]).is_err());
        let run = parse(&[
            "tallyctl",
            "agent",
            "run",
            "F",
            "--user",
            "U",
            "--host",
            "H",
            "--handle",
            "X",
            "--linger",
            "84",
            "--renew-every",
            "2",
            "--for",
            "5",
        ]);
        assert!(
            matches!(run, Ok(Cli { command: Command::Agent(AgentCommand::Run(ref r)), .. })
                if r.run_for == Some(5.0) && r.renew_every == Some(2.0) && r.cache.is_none()),
            "{run:?}"
        );
        let rec = parse(&[
            "tallyctl",
            "agent",
            "reconcile",
            "--cache",
            "c.ini",
            "-c",
            "1@h",
        ]);
        assert!(
            matches!(rec, Ok(Cli { command: Command::Agent(AgentCommand::Reconcile(ref r)), .. })
                if r.cache == std::path::Path::new("c.ini")),
            "{rec:?}"
        );
        assert!(parse(&["tallyctl", "agent", "reconcile"]).is_err());
    }

    #[test]
    fn cache_forms() {
        assert!(parse(&["tallyctl", "cache", "verify", "c.ini"]).is_ok());
        assert!(parse(&["tallyctl", "cache", "show", "c.ini", "--json"]).is_ok());
        assert!(parse(&["tallyctl", "cache", "salvage", "c.ini"]).is_ok());
        assert!(parse(&["tallyctl", "cache", "verify"]).is_err());
        assert!(parse(&["tallyctl", "cache"]).is_err());
    }
}
