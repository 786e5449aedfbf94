//! UPLOAD / UPLOAD_STATUS: an admin asks the uploader (`--upload-url`,
//! `upload/`) for an upload now, or reads what it did last.
//!
//! Neither waits on the uploader thread: UPLOAD is a `try_send` on a
//! one-slot channel, UPLOAD_STATUS copies the status under a lock the
//! uploader holds only to write a field or two (never across a request).

use bytes::BytesMut;

use super::{Ctx, Effects, Session};
use crate::protocol::Reply;
use crate::upload::Requested;

/// `UPLOAD`: start one now (`OK UPLOAD STARTED`), or say one is running.
pub(crate) fn upload(cx: &Ctx, s: &Session, now: u64, out: &mut BytesMut, fx: &mut Effects) {
    let Some(h) = cx.shared.upload.get() else {
        let _ = Reply::UploadOff.write_to(out);
        return;
    };
    let started = match h.request() {
        Requested::Started => true,
        Requested::AlreadyRunning => false,
        Requested::Stopped => {
            let _ = Reply::UploadOff.write_to(out);
            return;
        }
    };
    if started {
        fx.line(
            now,
            "lmgrd",
            format!("Report upload requested by {}", s.peer),
        );
    }
    let _ = Reply::Upload { started }.write_to(out);
}

/// `UPLOAD_STATUS`: the status as one line of JSON.
pub(crate) fn status(cx: &Ctx, out: &mut BytesMut) {
    let Some(h) = cx.shared.upload.get() else {
        let _ = Reply::UploadOff.write_to(out);
        return;
    };
    let json = serde_json::to_string(&h.status()).unwrap_or_else(|_| "{}".into());
    let _ = Reply::UploadStatus(&json).write_to(out);
}
