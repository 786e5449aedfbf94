use super::*;
use crate::queue::QueuedStatus;
use crate::status::{HolderStatus, ServerInfo};
use tally_core::engine::Names;

const NOW: u64 = 1_796_000_000_000; // 2026-11-30

fn pool(name: &str, total: Option<u32>, in_use: u32, overdraft: u32) -> FeatureStatus {
    FeatureStatus {
        name: name.into(),
        vendor: "V".into(),
        version: "1.0".into(),
        kind: "FEATURE".into(),
        line: 2,
        expiry: "31-dec-2026".into(),
        expired: false,
        startup: false,
        total,
        in_use,
        overdraft,
        overdraft_limit: 2,
        over_limit: 0,
        dup_group: "NONE".into(),
        package: None,
        suite_in_use: 0,
        holders: Vec::new(),
        holders_next: None,
    }
}

fn holder(user: &str) -> HolderStatus {
    HolderStatus {
        user: user.into(),
        host: "ws1".into(),
        display: "/dev/tty".into(),
        handle: String::new(),
        ticket: 0,
        count: 1,
        since_ms: NOW - 90_000,
        linger_ms: 60_000,
        deadline_ms: Some(NOW + 30_000),
        borrowed_until_ms: None,
    }
}

fn status(features: Vec<FeatureStatus>) -> Status {
    Status {
        server: ServerInfo {
            name: "tallyd".into(),
            version: "0.1.0".into(),
            host: "lic<1>".into(),
            port: 27000,
            license_file: "/etc/a&b.lic".into(),
            vendors: vec!["V".into()],
            started_ms: NOW - 3_600_000,
            now_ms: NOW,
            connections: 3,
            log_dropped: 0,
        },
        features,
        queue: Vec::new(),
        handles_hidden: true,
        from: 0,
        next: None,
        holders_limit: None,
    }
}

fn data(status: Status, history: Option<&UsageHistory>) -> PageData<'_> {
    let ends_ms = status
        .features
        .iter()
        .map(|_| Some(NOW + 31 * DAY_MS + 5))
        .collect();
    PageData {
        total: status.features.len(),
        limit: PAGE_POOLS,
        status,
        ends_ms,
        denials: Recent { hour: 4, day: 9 },
        journal: "sync, in /var/lib/tally".into(),
        history,
    }
}

#[test]
fn names_from_files_and_clients_render_as_text() {
    let mut f = pool("<script>alert(1)</script>", Some(5), 1, 0);
    f.holders.push(holder("<script>x</script>"));
    f.holders[0].host = "\"><img src=x>".into();
    let mut s = status(vec![f]);
    s.queue.push(QueuedStatus {
        names: Names {
            feature: "<script>alert(1)</script>".into(),
            user: "<b>q</b>".into(),
            host: "h".into(),
            display: "d".into(),
            handle: String::new(),
        },
        count: 1,
        since_ms: NOW - 1000,
        deadline_ms: NOW + 9000,
    });
    let page = render(&data(s, None));
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<img"), "{page}");
    assert!(!page.contains("<b>q"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        page.contains("<td class=\"user\">&lt;script&gt;x&lt;/script&gt;</td>"),
        "{page}"
    );
    assert!(page.contains("&quot;&gt;&lt;img src=x&gt;"), "{page}");
    assert!(page.contains("tallyd on lic&lt;1&gt;:27000"), "{page}");
    assert!(page.contains("/etc/a&amp;b.lic"), "{page}");
}

#[test]
fn the_page_shows_figures_holders_denials_and_says_it_is_read_only() {
    let mut a = pool("CAD", Some(10), 11, 1);
    a.holders = vec![holder("alice"), holder("bob")];
    let b = pool("SIM", None, 2, 0);
    let page = render(&data(status(vec![a, b]), None));
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("name=\"viewport\""), "{page}");
    assert!(
        page.contains("http-equiv=\"refresh\" content=\"10\""),
        "{page}"
    );
    assert!(page.contains("read-only: admin is tallyctl"), "{page}");
    assert!(
        page.contains("<b class=\"in-use\">11</b> of <b class=\"total\">10</b> in use, <span class=\"over\">1 overdraft</span>"),
        "{page}"
    );
    // The bar's scale is 10 + 2 overdraft: 10 in use within (83.33 %), one
    // beyond (8.33 %), the count marked at 83.33 %.
    assert!(
        page.contains("<rect class=\"use\" x=\"0\" y=\"0\" width=\"83.33\""),
        "{page}"
    );
    assert!(
        page.contains("<rect class=\"od\" x=\"83.33\" y=\"0\" width=\"8.33\""),
        "{page}"
    );
    assert!(
        page.contains("<b class=\"in-use\">2</b> in use (uncounted)"),
        "{page}"
    );
    assert_eq!(page.matches("<tr class=\"holder\">").count(), 2, "{page}");
    assert!(page.contains("<td class=\"user\">bob</td>"), "{page}");
    assert!(page.contains("<td class=\"linger\">2026-"), "{page}");
    assert!(page.contains("(in 30s)"), "{page}");
    assert!(page.contains("<td class=\"days-left\">32</td>"), "{page}");
    assert!(
        page.contains("<span id=\"denials-hour\">4</span>"),
        "{page}"
    );
    assert!(page.contains("<span id=\"denials-day\">9</span>"), "{page}");
    assert!(page.contains("1h 0m (since"), "{page}");
    assert!(page.contains("no usage history"), "{page}");
    assert!(!page.contains("<script"), "no script at all");
    assert!(
        !page.contains("src=") && !page.contains("href="),
        "nothing loaded"
    );
    assert!(!page.contains("class=\"pages\""), "one page");
}

#[test]
fn a_page_of_a_large_server_links_to_the_others() {
    let mut s = status(vec![pool("B", Some(1), 0, 0), pool("C", Some(1), 0, 0)]);
    s.from = 10;
    s.next = Some(12);
    let mut d = data(s, None);
    d.total = 30;
    d.limit = 2;
    let page = render(&d);
    assert!(
        page.contains(
            "<p class=\"pages\">license-file lines 11 to 12 of 30 · \
             <a href=\"?from=8&amp;limit=2\">previous</a> · \
             <a href=\"?from=12&amp;limit=2\">next</a></p>"
        ),
        "{page}"
    );
}

#[test]
fn charts_come_from_the_history_for_30_and_90_days() {
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = asked.clone();
    let history = UsageHistory::new(move |feature, days| {
        log.lock().unwrap().push((feature.to_string(), days));
        vec![DailyPeak {
            day: "2026-11-29".parse().unwrap(),
            peak: 7,
            licensed: 10,
        }]
    });
    let page = render(&data(
        status(vec![pool("CAD", Some(10), 0, 0)]),
        Some(&history),
    ));
    assert_eq!(
        *asked.lock().unwrap(),
        vec![("CAD".to_string(), 30), ("CAD".to_string(), 90)]
    );
    assert_eq!(page.matches("<svg class=\"chart\"").count(), 2, "{page}");
    assert_eq!(
        page.matches("2026-11-29: peak 7 of 10").count(),
        2,
        "{page}"
    );
    assert!(!page.contains("no usage history"), "{page}");
}

#[test]
fn spans_and_days_read_plainly() {
    assert_eq!(span(0), "0s");
    assert_eq!(span(61_000), "1m 1s");
    assert_eq!(span(3_600_000 * 26), "1d 2h");
    assert_eq!(escape("a<'&\">"), "a&lt;&#39;&amp;&quot;&gt;");
}

#[test]
fn a_feature_of_several_pools_is_one_group() {
    let mut inc = pool("CAD", Some(5), 2, 0);
    inc.line = 3;
    inc.kind = "INCREMENT".into();
    let page = render(&data(
        status(vec![
            pool("CAD", Some(10), 1, 0),
            inc,
            pool("SIM", Some(1), 0, 0),
        ]),
        None,
    ));
    assert_eq!(page.matches("data-feature=\"CAD\"").count(), 1, "{page}");
    assert_eq!(page.matches("data-feature=\"SIM\"").count(), 1, "{page}");
    assert!(
        page.contains("<b class=\"in-use\">3</b> of <b class=\"total\">15</b> in use"),
        "{page}"
    );
    assert!(page.find("INCREMENT").unwrap() < page.find("data-feature=\"SIM\"").unwrap());
}

#[test]
fn a_borrowed_license_says_borrowed_until_its_end() {
    let mut f = pool("CAD", Some(5), 2, 0);
    let mut lent = holder("away");
    lent.deadline_ms = Some(NOW + 3 * 3_600_000);
    lent.borrowed_until_ms = lent.deadline_ms;
    f.holders = vec![holder("here"), lent];
    let page = render(&data(status(vec![f]), None));
    assert!(page.contains("borrowed until"), "{page}");
    assert_eq!(page.matches("borrowed until").count(), 1, "{page}");
    assert!(page.contains("(in 3h"), "{page}");
}
