//! tally-client does not link the server: it reads protocol v1 from its own
//! copy of the contract (docs/protocol.md). These tests check that the two
//! sides agree where each has its own code: the limits and the field rule,
//! the feature-name warnings (tallyd at start, `tallyctl check-license`),
//! the largest license file read, and the STATUS JSON of a real tallyd.

mod common;

use std::time::Duration;

use common::{eventually, Tallyd};

#[test]
fn the_limits_and_the_field_rule_agree() {
    use tally_client::proto;
    use tally_server::protocol;
    assert_eq!(proto::MAX_LINE_BYTES, protocol::MAX_LINE_BYTES);
    assert_eq!(proto::MAX_FIELD_BYTES, protocol::MAX_FIELD_BYTES);
    let long = "x".repeat(protocol::MAX_FIELD_BYTES + 1);
    let values = [
        "",
        "F",
        "a b",
        "tab\there",
        "nl\n",
        "del\u{7f}",
        "c1\u{85}",
        "bidi\u{202e}",
        "nbsp\u{a0}",
        "é",
        &long,
        &long[1..],
    ];
    for v in values {
        let (client, server) = (proto::field_fault(v), protocol::field_fault(v));
        // The same verdict (the variants share their names).
        assert_eq!(format!("{client:?}"), format!("{server:?}"), "{v:?}");
    }
    assert_eq!(
        tally_client::source::MAX_SOURCE_FILE_BYTES,
        tally_server::source::MAX_SOURCE_FILE_BYTES
    );
}

#[test]
fn feature_name_warnings_agree() {
    let long = "L".repeat(256);
    let text = format!(
        "FEATURE ok V 1.0 permanent 1\n\
         FEATURE {long} V 1.0 permanent 1\n\
         INCREMENT ab\u{202E}cd V 1.0 permanent 1\n\
         FEATURE \"sp ace\" V 1.0 permanent 1\n\
         FEATURE x\u{2066}y V 1.0 permanent 1\n"
    );
    let set = tally_core::license::parse_str("t.lic", &text);
    let client: Vec<(String, bool)> = tally_client::ctl::names::feature_name_warnings(&set)
        .iter()
        .map(|w| (w.to_string(), w.can_check_out))
        .collect();
    let server: Vec<(String, bool)> = tally_server::names::feature_name_warnings(&set)
        .iter()
        .map(|w| (w.to_string(), w.can_check_out))
        .collect();
    assert_eq!(client.len(), 4, "{client:?}");
    assert_eq!(client, server);
}

/// A STATUS with a holder, a lingering holder, a waiter and a package
/// suite's component and suite, read by the
/// client's types and written back, is the server's JSON: the client knows
/// every field the server sends (none dropped) and needs none it does not.
#[test]
fn a_real_status_reads_back_field_for_field() {
    let t = Tallyd::start(
        "VENDOR CITRIX\nFEATURE ONE CITRIX 1.0 permanent 1\nFEATURE TWO CITRIX 1.0 permanent 2\n\
         PACKAGE SUITE CITRIX COMPONENTS=PART OPTIONS=SUITE\nFEATURE SUITE CITRIX 1.0 permanent 1\n",
        &[],
    );
    let mut a = t.connect();
    assert!(a
        .req("CHECKOUT ONE ann h a display=term")
        .starts_with("OK "));
    assert!(a.req("CHECKOUT TWO ann h b linger=600").starts_with("OK "));
    // A suite component (`package`) and its suite (`suite_in_use`).
    assert!(a.req("CHECKOUT PART ann h p").starts_with("OK "));
    let mut b = t.connect();
    b.send(b"CHECKOUT ONE bob h c wait=60\n");
    assert!(eventually(Duration::from_secs(10), || {
        a.status()["queue"].as_array().is_some_and(|q| q.len() == 1)
    }));
    for request in [
        "STATUS",
        "STATUS TWO from=0 limit=1",
        "STATUS holders_limit=0",
        "STATUS ONE holders_limit=1",
        "STATUS holders_limit=1 holders_after=0.0",
    ] {
        let reply = a.req(request);
        let json = reply.strip_prefix("OK ").expect("OK <json>");
        let sent: serde_json::Value = serde_json::from_str(json).expect("JSON");
        if request == "STATUS" {
            assert!(
                json.contains("\"package\":\"SUITE\"") && json.contains("\"suite_in_use\":1"),
                "{json}"
            );
        }
        let read: tally_client::status::Status =
            serde_json::from_str(json).expect("the client reads the server's STATUS");
        let back = serde_json::to_value(&read).expect("serializes");
        assert_eq!(back, sent, "{request}");
    }
}
