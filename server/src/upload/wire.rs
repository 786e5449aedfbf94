//! The upload protocol's messages: the start manifest (JSON), the
//! endpoint's `<UploadResponse>` (seed 000's XML) and the chunk plan.
//!
//! The reply is read with quick-xml and then held to exactly seed 000's
//! shape: a root `<UploadResponse>` whose children are `<uuid>`,
//! `<ChunkMax>` and `<ChunkOptimal>`, each text only, each at most once;
//! other elements are ignored (an endpoint may add fields), anything
//! malformed is a [`Code::BadReply`](super::Code::BadReply).

use quick_xml::events::Event;
use quick_xml::Reader;
use serde::{Deserialize, Serialize};

use super::result::UPLOAD_TYPE;

/// The longest uuid accepted from an endpoint, in bytes.
pub(crate) const MAX_UUID_BYTES: usize = 128;

/// What `POST <url>/upload/start` sends: the report's identity and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The report's id (also its file name in `upload/pending/`).
    pub report_id: String,
    /// The UTC days the report covers.
    pub period: Period,
    /// The report's length in bytes.
    pub size: u64,
    /// The report's SHA-256, lower-case hex.
    pub sha256: String,
    /// Always `CTX_UPLOAD_TYPE_COMPLIANCE`.
    #[serde(rename = "UploadType")]
    pub upload_type: String,
    /// The server's host name (`--host-name`).
    pub server: String,
}

/// The UTC days a report covers, both included (`YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// The first day.
    pub from: String,
    /// The last day.
    pub to: String,
}

impl Manifest {
    /// The manifest of `report`.
    pub fn of(report_id: String, period: Period, server: String, report: &[u8]) -> Manifest {
        Manifest {
            report_id,
            period,
            size: report.len() as u64,
            sha256: sha256_hex(report),
            upload_type: UPLOAD_TYPE.to_string(),
            server,
        }
    }
}

/// The SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write as _;
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The endpoint's answer to a start, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadResponse {
    /// The upload's id, used in every later URL.
    pub uuid: String,
    /// The largest chunk the endpoint takes, in bytes (never 0).
    pub chunk_max: u64,
    /// The size it would like, in bytes, if it said.
    pub chunk_optimal: Option<u64>,
}

impl UploadResponse {
    /// The chunk size to send: `ChunkOptimal`, but never above
    /// `ChunkMax`; `ChunkMax` when `ChunkOptimal` is missing or 0.
    pub fn chunk_size(&self) -> u64 {
        match self.chunk_optimal {
            Some(o) if o > 0 => o.min(self.chunk_max),
            _ => self.chunk_max,
        }
    }
}

/// The three elements read, in [`parse_upload_response`]'s slot order.
const FIELDS: [&str; 3] = ["uuid", "ChunkMax", "ChunkOptimal"];

fn field(name: &str) -> Option<usize> {
    FIELDS.iter().position(|f| *f == name)
}

/// Parses the start reply; the error says what is wrong with it.
pub fn parse_upload_response(text: &str) -> Result<UploadResponse, String> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut depth = 0usize;
    let mut seen_root = false;
    // The field being read (depth 2), and each field's text once opened.
    let mut current: Option<usize> = None;
    let mut values: [Option<String>; 3] = [None, None, None];
    loop {
        match reader.read_event().map_err(|e| format!("not XML: {e}"))? {
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::DocType(_) => return Err("a DOCTYPE is not accepted".into()),
            Event::Start(e) => {
                depth += 1;
                let name = e.name();
                if depth == 1 {
                    if name.as_ref() != "UploadResponse" || seen_root {
                        return Err(format!(
                            "root element is <{}>, not <UploadResponse>",
                            name.as_ref()
                        ));
                    }
                    seen_root = true;
                } else if let Some(f) = current {
                    return Err(format!("<{}> holds an element", FIELDS[f]));
                } else if depth == 2 {
                    current = field(name.as_ref());
                    if let Some(f) = current {
                        if values[f].replace(String::new()).is_some() {
                            return Err(format!("<{}> given twice", FIELDS[f]));
                        }
                    }
                }
            }
            Event::Empty(e) => {
                if depth == 0 {
                    return Err(format!("root element <{}/> is empty", e.name().as_ref()));
                }
                if let (1, Some(f)) = (depth, field(e.name().as_ref())) {
                    return Err(format!("<{}/> is empty", FIELDS[f]));
                }
            }
            Event::Text(t) => {
                let s = t.xml10_content();
                if let Some(f) = current {
                    if let Some(v) = &mut values[f] {
                        v.push_str(&s);
                    }
                } else if depth == 0 && !s.trim().is_empty() {
                    return Err("text outside <UploadResponse>".into());
                }
            }
            Event::CData(_) | Event::GeneralRef(_) => {
                if let Some(f) = current {
                    return Err(format!("<{}> must be plain text", FIELDS[f]));
                }
            }
            Event::End(_) => {
                if depth == 2 {
                    current = None;
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
        }
    }
    if !seen_root {
        return Err("no <UploadResponse>".into());
    }
    let [uuid, max, optimal] = values;
    let uuid = uuid.ok_or("no <uuid>")?.trim().to_string();
    check_uuid(&uuid)?;
    let chunk_max = number("ChunkMax", max.as_deref().ok_or("no <ChunkMax>")?)?;
    if chunk_max == 0 {
        return Err("<ChunkMax> is 0".into());
    }
    let chunk_optimal = optimal
        .as_deref()
        .map(|o| number("ChunkOptimal", o))
        .transpose()?;
    Ok(UploadResponse {
        uuid,
        chunk_max,
        chunk_optimal,
    })
}

fn number(name: &str, text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("<{name}> is not a number: {t:?}"));
    }
    t.parse()
        .map_err(|_| format!("<{name}> is out of range: {t:?}"))
}

/// A uuid goes into URL paths: 1 to [`MAX_UUID_BYTES`] of `A-Z a-z 0-9 -
/// _ .`, and not `.` or `..`.
fn check_uuid(uuid: &str) -> Result<(), String> {
    let ok = !uuid.is_empty()
        && uuid.len() <= MAX_UUID_BYTES
        && uuid != "."
        && uuid != ".."
        && uuid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "<uuid> {:?} is not 1-{MAX_UUID_BYTES} of A-Z a-z 0-9 - _ .",
            uuid.chars().take(MAX_UUID_BYTES + 8).collect::<String>()
        ))
    }
}

/// The most chunks one upload may take: an endpoint naming a `ChunkMax`
/// that would make more (`<ChunkMax>1</ChunkMax>`) is a bad reply, not a
/// day of PUTs.
pub(crate) const MAX_CHUNKS: u64 = 10_000;

/// How many chunks of `chunk` bytes a report of `size` bytes takes.
pub(crate) fn chunk_count(size: u64, chunk: u64) -> u64 {
    size.div_ceil(chunk.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "<?xml version='1.0' encoding='utf8'?>\n<UploadResponse><uuid>6ef3d554-be75-11ed-a859-000d3a021e8d</uuid><ChunkMax>10485760</ChunkMax><ChunkOptimal>262144</ChunkOptimal></UploadResponse>";

    #[test]
    fn seed_000s_reply_parses() {
        let r = parse_upload_response(SEED).unwrap();
        assert_eq!(r.uuid, "6ef3d554-be75-11ed-a859-000d3a021e8d");
        assert_eq!(r.chunk_max, 10_485_760);
        assert_eq!(r.chunk_optimal, Some(262_144));
        assert_eq!(r.chunk_size(), 262_144);
    }

    #[test]
    fn chunk_size_never_exceeds_chunk_max() {
        let r = |max, opt| UploadResponse {
            uuid: "u".into(),
            chunk_max: max,
            chunk_optimal: opt,
        };
        assert_eq!(r(100, Some(1000)).chunk_size(), 100);
        assert_eq!(r(100, Some(10)).chunk_size(), 10);
        assert_eq!(r(100, None).chunk_size(), 100);
        assert_eq!(r(100, Some(0)).chunk_size(), 100);
        assert_eq!(chunk_count(0, 10), 0);
        assert_eq!(chunk_count(10, 10), 1);
        assert_eq!(chunk_count(11, 10), 2);
    }

    #[test]
    fn whitespace_order_and_extra_elements_are_fine() {
        let r = parse_upload_response(
            "<UploadResponse>\n  <ChunkOptimal> 5 </ChunkOptimal>\n  <Note>hi</Note><Empty/>\n  <uuid>abc</uuid>\n  <ChunkMax>9</ChunkMax>\n</UploadResponse>\n",
        )
        .unwrap();
        assert_eq!(
            (r.uuid.as_str(), r.chunk_max, r.chunk_size()),
            ("abc", 9, 5)
        );
    }

    #[test]
    fn bad_replies_say_what_is_wrong() {
        let cases = [
            ("<UploadResponse><uuid>u</uuid><ChunkOptimal>5</ChunkOptimal></UploadResponse>", "no <ChunkMax>"),
            ("<UploadResponse><uuid>u</uuid><ChunkMax>0</ChunkMax></UploadResponse>", "is 0"),
            ("<UploadResponse><uuid>u</uuid><ChunkMax>-5</ChunkMax></UploadResponse>", "not a number"),
            ("<UploadResponse><uuid>u</uuid><ChunkMax>99999999999999999999999</ChunkMax></UploadResponse>", "out of range"),
            ("<UploadResponse><ChunkMax>5</ChunkMax></UploadResponse>", "no <uuid>"),
            ("<UploadResponse><uuid>../x</uuid><ChunkMax>5</ChunkMax></UploadResponse>", "is not 1-"),
            ("<UploadResponse><uuid>a b</uuid><ChunkMax>5</ChunkMax></UploadResponse>", "is not 1-"),
            ("<UploadResponse><uuid></uuid><ChunkMax>5</ChunkMax></UploadResponse>", "is not 1-"),
            ("<UploadResponse><uuid>a</uuid><uuid>b</uuid><ChunkMax>5</ChunkMax></UploadResponse>", "twice"),
            ("<UploadResponse><uuid><b>a</b></uuid><ChunkMax>5</ChunkMax></UploadResponse>", "holds an element"),
            ("<UploadResponse><uuid>a&amp;b</uuid><ChunkMax>5</ChunkMax></UploadResponse>", "plain text"),
            ("<Other><uuid>a</uuid><ChunkMax>5</ChunkMax></Other>", "not <UploadResponse>"),
            ("", "no <UploadResponse>"),
            ("Internal error", "outside"),
            ("<UploadResponse><uuid>a</uuid>", "no <ChunkMax>"),
            ("<!DOCTYPE x><UploadResponse/>", "DOCTYPE"),
        ];
        for (text, want) in cases {
            let e = parse_upload_response(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    proptest::proptest! {
        /// A hostile endpoint's reply never panics the parser, and what it
        /// accepts is always usable: a URL-safe uuid, chunks in 1..=ChunkMax.
        #[test]
        fn any_reply_parses_or_is_refused(text in "(<[/]?(UploadResponse|uuid|ChunkMax|ChunkOptimal|x)>|[a-z0-9 &;.-]{0,6}|<!--|-->|<!\\[CDATA\\[|\\]\\]>|<\\?xml\\?>){0,24}") {
            if let Ok(r) = parse_upload_response(&text) {
                proptest::prop_assert!(check_uuid(&r.uuid).is_ok());
                proptest::prop_assert!(r.chunk_size() >= 1 && r.chunk_size() <= r.chunk_max);
            }
        }

        /// So does any string at all.
        #[test]
        fn any_text_at_all_is_safe(text in ".{0,200}") {
            let _ = parse_upload_response(&text);
        }
    }

    #[test]
    fn manifest_json_names_the_fields_the_protocol_fixes() {
        let m = Manifest::of(
            "r1".into(),
            Period {
                from: "2026-11-04".into(),
                to: "2026-12-03".into(),
            },
            "srv".into(),
            b"abc",
        );
        let v: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(v["UploadType"], "CTX_UPLOAD_TYPE_COMPLIANCE");
        assert_eq!(v["size"], 3);
        assert_eq!(
            v["sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(v["period"]["from"], "2026-11-04");
        assert_eq!(v["report_id"], "r1");
    }
}
