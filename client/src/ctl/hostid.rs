//! `tallyctl hostid`: this machine's host ID in FlexLM's style.
//!
//! FlexLM's default host ID on Unix is the Ethernet address, printed as 12
//! lower-case hex digits without separators. tally takes the first
//! interface, in name order, under `/sys/class/net/` that is not the loopback
//! and has a non-zero address (`eth0` before `wlan0`; virtual interfaces
//! such as `docker0` count too, as they do for FlexLM). Without such an
//! interface (no `/sys`, a container with only `lo`) it prints `ANY`, the
//! host ID that matches every machine. The line has lmhostid's shape:
//! `The host ID of this machine is "0050569a1b2c"`.

use std::path::Path;

/// Where Linux lists network interfaces.
pub const SYS_CLASS_NET: &str = "/sys/class/net";

/// The host ID read from an interface directory laid out like
/// `/sys/class/net` (`<dir>/<iface>/address`), or `ANY`.
pub fn hostid_from(dir: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return "ANY".to_string();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    for n in names {
        let Ok(addr) = std::fs::read_to_string(dir.join(&n).join("address")) else {
            continue;
        };
        let hex: String = addr
            .trim()
            .chars()
            .filter(|c| *c != ':')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if hex.len() == 12
            && hex.chars().all(|c| c.is_ascii_hexdigit())
            && hex.chars().any(|c| c != '0')
        {
            return hex;
        }
    }
    "ANY".to_string()
}

/// The line `tallyctl hostid` prints.
pub fn hostid_line(id: &str) -> String {
    format!("The host ID of this machine is \"{id}\"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_non_loopback_non_zero_mac() {
        let dir = std::env::temp_dir().join(format!("tally-hostid-{}", std::process::id()));
        for (iface, addr) in [
            ("lo", "00:00:00:00:00:00"),
            ("dummy0", "00:00:00:00:00:00"),
            ("eth1", "AA:BB:CC:DD:EE:02"),
            ("eth0", "aa:bb:cc:dd:ee:01"),
        ] {
            let d = dir.join(iface);
            assert!(std::fs::create_dir_all(&d).is_ok());
            assert!(std::fs::write(d.join("address"), format!("{addr}\n")).is_ok());
        }
        assert_eq!(hostid_from(&dir), "aabbccddee01");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(hostid_from(&dir), "ANY");
    }
}
