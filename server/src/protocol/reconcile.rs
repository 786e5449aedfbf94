//! RECONCILE's fields and their parsing (docs/protocol.md, "RECONCILE"):
//! a session a client admitted offline, reported to be recorded.

use super::*;

/// The fields of a RECONCILE (docs/protocol.md, "RECONCILE").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconcile<'a> {
    /// Feature name.
    pub feature: &'a str,
    /// User name.
    pub user: &'a str,
    /// Host name.
    pub host: &'a str,
    /// Client handle.
    pub handle: &'a str,
    /// `start=`: when the client admitted the session, Unix ms.
    pub start_ms: u64,
    /// `id=`: the client's admission id (the idempotency key).
    pub id: &'a str,
    /// `count=` (default 1).
    pub count: u32,
    /// `version=`, scaled as [`Version::scaled`].
    pub version: Option<u64>,
    /// `linger=` in ms (`None`: the default, see
    /// [`RECONCILE_DEFAULT_LINGER_MS`]); never 0.
    pub linger_ms: Option<u64>,
    /// `display=`, or `""`.
    pub display: &'a str,
}

/// Linger of a reconciled session whose RECONCILE has no `linger=` (and
/// whose feature has no options-file LINGER): one hour, for the client to
/// renew it with a CHECKOUT of the same handle.
pub const RECONCILE_DEFAULT_LINGER_MS: u64 = 3600 * 1000;

pub(super) fn parse_reconcile<'a>(fields: &mut Fields<'a>) -> Result<Reconcile<'a>, ProtoError> {
    let feature = fields.next_required("feature")?;
    let user = fields.next_required("user")?;
    let host = fields.next_required("host")?;
    let handle = fields.next_required("handle")?;
    let [start, id, count, version, linger, display] = options(
        fields,
        ["start", "id", "count", "version", "linger", "display"],
        |extra| {
            Err(ProtoError::new(
                ErrCode::BadField,
                format!(
                    "unexpected field \"{}\" (options are key=value: start=, id=, count=, version=, linger=, display=)",
                    printable(extra)
                ),
            ))
        },
    )?;
    let missing = |key: &str, what: &str| {
        ProtoError::new(
            ErrCode::MissingField,
            format!("RECONCILE needs {key}= ({what})"),
        )
    };
    let start = start.ok_or_else(|| missing("start", "when the session was admitted, Unix ms"))?;
    let id = id.ok_or_else(|| missing("id", "the client's admission id"))?;
    let start_ms = if start.bytes().all(|b| b.is_ascii_digit()) {
        start.parse::<u64>().ok()
    } else {
        None
    }
    .ok_or_else(|| {
        ProtoError::new(
            ErrCode::BadField,
            format!(
                "start=\"{}\" is not a time in Unix milliseconds",
                printable(start)
            ),
        )
    })?;
    let linger_ms = match linger {
        None => None,
        Some(v) => {
            let ms = seconds_to_ms(v).ok_or_else(|| bad_number("linger", v))?;
            if ms == 0 {
                return Err(ProtoError::new(
                    ErrCode::BadField,
                    "linger=0: a reconciled session lingers (at least 0.001 s)",
                ));
            }
            if ms > MAX_LINGER_MS {
                return Err(ProtoError::new(
                    ErrCode::BadField,
                    format!("linger={v} is longer than 100 years"),
                ));
            }
            Some(ms)
        }
    };
    let version = version
        .map(|v| {
            Version::scaled_of(v).ok_or_else(|| {
                ProtoError::new(
                    ErrCode::BadField,
                    format!(
                        "version=\"{}\" is not a version number (like 1.0)",
                        printable(v)
                    ),
                )
            })
        })
        .transpose()?;
    Ok(Reconcile {
        feature,
        user,
        host,
        handle,
        start_ms,
        id,
        count: count.map(parse_count).transpose()?.unwrap_or(1),
        version,
        linger_ms,
        display: display.unwrap_or(""),
    })
}
