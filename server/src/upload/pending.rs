//! Reports waiting for an upload: `STATE_DIR/upload/pending/<id>.json`
//! (the report's bytes, exactly as sent) beside `<id>.manifest.json` (its
//! [`Manifest`]). Both are written to a temporary name, synced and renamed,
//! the report first, so a manifest always has its report; a report whose
//! manifest is missing or does not match it is deleted when listed. A
//! successful upload deletes both.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::wire::{sha256_hex, Manifest};

/// The most reports kept waiting; past it the oldest is dropped (and the
/// uploader log says so).
pub const MAX_PENDING: usize = 64;

const REPORT_EXT: &str = ".json";
const MANIFEST_EXT: &str = ".manifest.json";

/// A report to upload, with its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    /// Its manifest (id, period, size, SHA-256).
    pub(crate) manifest: Manifest,
    /// The report, as sent.
    pub(crate) report: Vec<u8>,
}

/// The pending directory.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    dir: PathBuf,
}

impl Pending {
    /// The directory `dir` (created when the first report is kept).
    pub(crate) fn new(dir: PathBuf) -> Pending {
        Pending { dir }
    }

    /// Where it is.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps `job` until [`Pending::remove`].
    pub(crate) fn keep(&self, job: &Job) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let id = &job.manifest.report_id;
        write_atomic(&self.dir, &format!("{id}{REPORT_EXT}"), &job.report)?;
        let manifest = serde_json::to_vec_pretty(&job.manifest).map_err(io::Error::other)?;
        write_atomic(&self.dir, &format!("{id}{MANIFEST_EXT}"), &manifest)
    }

    /// Deletes `id`'s files (after its upload succeeded).
    pub(crate) fn remove(&self, id: &str) -> io::Result<()> {
        for ext in [MANIFEST_EXT, REPORT_EXT] {
            match std::fs::remove_file(self.dir.join(format!("{id}{ext}"))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// The reports waiting, oldest first (ids begin with their UTC time),
    /// and a note for each file set aside as damaged (deleted).
    pub(crate) fn list(&self) -> (Vec<Job>, Vec<String>) {
        let mut notes = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return (Vec::new(), notes);
        };
        let names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        // A write cut short by a crash (only this thread writes here, so
        // none is under way now).
        for n in names
            .iter()
            .filter(|n| n.starts_with('.') && n.ends_with(".tmp"))
        {
            if std::fs::remove_file(self.dir.join(n)).is_ok() {
                notes.push(format!("Pending {n} deleted: a write cut short"));
            }
        }
        let mut ids: Vec<String> = names
            .into_iter()
            .filter(|n| n.ends_with(REPORT_EXT) && !n.ends_with(MANIFEST_EXT))
            .map(|n| n[..n.len() - REPORT_EXT.len()].to_string())
            .collect();
        ids.sort();
        let mut jobs = Vec::new();
        for id in ids {
            match self.load(&id) {
                Ok(job) => jobs.push(job),
                Err(why) => {
                    notes.push(format!("Pending report {id} deleted: {why}"));
                    let _ = self.remove(&id);
                }
            }
        }
        (jobs, notes)
    }

    fn load(&self, id: &str) -> Result<Job, String> {
        let report = std::fs::read(self.dir.join(format!("{id}{REPORT_EXT}")))
            .map_err(|e| format!("cannot read it: {e}"))?;
        let manifest = std::fs::read(self.dir.join(format!("{id}{MANIFEST_EXT}")))
            .map_err(|e| format!("cannot read its manifest: {e}"))?;
        let manifest: Manifest = serde_json::from_slice(&manifest)
            .map_err(|e| format!("its manifest is not valid: {e}"))?;
        if manifest.report_id != id
            || manifest.size != report.len() as u64
            || manifest.sha256 != sha256_hex(&report)
        {
            return Err("it does not match its manifest (id, size or SHA-256)".into());
        }
        Ok(Job { manifest, report })
    }
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    // The rename is durable once the directory is synced.
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upload::wire::Period;

    fn job(id: &str, body: &[u8]) -> Job {
        Job {
            manifest: Manifest::of(
                id.into(),
                Period {
                    from: "2026-01-01".into(),
                    to: "2026-01-30".into(),
                },
                "h".into(),
                body,
            ),
            report: body.to_vec(),
        }
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tally-pending-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn kept_reports_come_back_oldest_first_until_removed() {
        let p = Pending::new(dir("order"));
        assert!(p.list().0.is_empty());
        p.keep(&job("tally-20260202T000000Z-b", b"{\"b\":1}"))
            .unwrap();
        p.keep(&job("tally-20260101T000000Z-a", b"{\"a\":1}"))
            .unwrap();
        let (jobs, notes) = p.list();
        assert!(notes.is_empty());
        let ids: Vec<&str> = jobs.iter().map(|j| j.manifest.report_id.as_str()).collect();
        assert_eq!(
            ids,
            ["tally-20260101T000000Z-a", "tally-20260202T000000Z-b"]
        );
        assert_eq!(jobs[0].report, b"{\"a\":1}");
        p.remove("tally-20260101T000000Z-a").unwrap();
        assert_eq!(p.list().0.len(), 1);
        std::fs::remove_dir_all(p.dir()).unwrap();
    }

    #[test]
    fn a_report_that_does_not_match_its_manifest_is_dropped() {
        let p = Pending::new(dir("damaged"));
        p.keep(&job("r1", b"{\"a\":1}")).unwrap();
        std::fs::write(p.dir().join("r1.json"), b"{\"a\":2}").unwrap();
        p.keep(&job("r2", b"x")).unwrap();
        std::fs::remove_file(p.dir().join("r2.manifest.json")).unwrap();
        let (jobs, notes) = p.list();
        assert!(jobs.is_empty());
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].contains("r1") && notes[0].contains("SHA-256"),
            "{notes:?}"
        );
        assert!(!p.dir().join("r1.json").exists());
        std::fs::remove_dir_all(p.dir()).unwrap();
    }

    #[test]
    fn a_write_cut_short_is_deleted() {
        let p = Pending::new(dir("tmp"));
        p.keep(&job("r1", b"{\"a\":1}")).unwrap();
        std::fs::write(p.dir().join(".r2.json.tmp"), b"{\"a\"").unwrap();
        let (jobs, notes) = p.list();
        assert_eq!(jobs.len(), 1);
        assert!(notes[0].contains(".r2.json.tmp"), "{notes:?}");
        assert!(!p.dir().join(".r2.json.tmp").exists());
        std::fs::remove_dir_all(p.dir()).unwrap();
    }
}
