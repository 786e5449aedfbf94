//! The `tally-upload` thread: waits (first delay, then a day, or until an
//! `UPLOAD`), builds the report, keeps it in `upload/pending/`, and
//! uploads every pending report, oldest first, each with up to
//! `attempts` attempts and [`Backoff`] waits between them. A report that
//! still failed stays pending for the next upload (and the next start).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use tally_core::clock::Clock;
use ureq::tls::{PemItem, RootCerts};
use ureq::Agent;

use super::backoff::{Backoff, Jitter};
use super::pending::{Job, Pending, MAX_PENDING};
use super::result::{result_line, Code, Failure};
use super::transfer::{self, Session};
use super::ulog::{time_line, UploaderLog};
use super::wire::{Manifest, Period};
use super::{Attempt, ReportSource, UploadConfig, UploadError, UploadStatus};

/// Reads `--upload-ca`: every certificate in the PEM file.
pub(super) fn read_ca(path: &Path) -> Result<RootCerts, UploadError> {
    let bad = |why: String| UploadError::Ca {
        path: path.to_path_buf(),
        why,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item.map_err(|e| bad(e.to_string()))? {
            PemItem::Certificate(c) => certs.push(c),
            _ => continue,
        }
    }
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wake {
    /// Its time passed.
    Elapsed,
    /// An `UPLOAD` asked for an upload now.
    Asked,
    /// The server is stopping.
    Stop,
}

/// Where the thread waits: for the first upload, the next day and
/// between attempts. The real one ([`Inbox`]) waits on the `UPLOAD`
/// channel with a timeout; a test's records the waits and returns at once.
pub(super) trait Waiter: Send {
    /// Waits up to `d`.
    fn wait(&mut self, d: Duration) -> Wake;

    /// Whether the uploader is asked to stop (looked at between chunks).
    fn stopping(&self) -> bool {
        false
    }
}

/// The real [`Waiter`]: the channel `UPLOAD` and a stop write to.
pub(super) struct Inbox {
    pub(super) woken: Receiver<()>,
    pub(super) stop: Arc<AtomicBool>,
}

impl Waiter for Inbox {
    fn wait(&mut self, d: Duration) -> Wake {
        if self.stop.load(Ordering::Acquire) {
            return Wake::Stop;
        }
        let woke = self.woken.recv_timeout(d);
        if self.stop.load(Ordering::Acquire) {
            return Wake::Stop;
        }
        match woke {
            Ok(()) => Wake::Asked,
            Err(RecvTimeoutError::Timeout) => Wake::Elapsed,
            Err(RecvTimeoutError::Disconnected) => Wake::Stop,
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// An attempt's time limit, in requests' timeouts (`--upload-timeout`).
const ATTEMPT_REQUESTS: u64 = 30;

/// How one report's upload ended.
enum Outcome {
    Done,
    GaveUp,
    Stopped,
}

pub(super) struct Worker {
    config: UploadConfig,
    agent: Agent,
    source: ReportSource,
    clock: Arc<dyn Clock>,
    waiter: Box<dyn Waiter>,
    status: Arc<Mutex<UploadStatus>>,
    log: UploaderLog,
    /// Whether a log write failed already (said once on stderr).
    log_failed: bool,
    pending: Pending,
    jitter: Jitter,
}

impl Worker {
    pub(super) fn new(
        config: UploadConfig,
        roots: RootCerts,
        source: ReportSource,
        clock: Arc<dyn Clock>,
        waiter: Box<dyn Waiter>,
        status: Arc<Mutex<UploadStatus>>,
        jitter: Jitter,
    ) -> Worker {
        Worker {
            agent: transfer::agent(roots, config.timeouts),
            log: UploaderLog::new(config.log.clone()),
            pending: Pending::new(config.pending_dir.clone()),
            config,
            source,
            clock,
            waiter,
            status,
            log_failed: false,
            jitter,
        }
    }

    pub(super) fn run(mut self) {
        let mut wait = self.config.first_delay;
        let kept = self.pending.list().0.len();
        self.update(|s| s.pending = kept);
        loop {
            let due = self.clock.now_ms() / 1000 + wait.as_secs();
            self.update(|s| s.next = Some(due));
            if let Wake::Stop = self.wait(wait) {
                return;
            }
            if !self.cycle() {
                return;
            }
            wait = self.config.every;
        }
    }

    fn wait(&mut self, d: Duration) -> Wake {
        self.waiter.wait(d)
    }

    fn update(&self, f: impl FnOnce(&mut UploadStatus)) {
        f(&mut self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    fn write(&mut self, lines: &[String]) {
        if let Err(e) = self.log.write(lines) {
            if !self.log_failed {
                eprintln!(
                    "tallyd: cannot write the uploader log {}: {e}",
                    self.log.path().display()
                );
                self.log_failed = true;
            }
        }
    }

    /// One upload: the new report, then every pending one. False when the
    /// server is stopping.
    fn cycle(&mut self) -> bool {
        self.update(|s| {
            s.running = true;
            s.next = None;
        });
        let (mut jobs, notes) = self.pending.list();
        self.write(&notes);
        match self.build() {
            Ok(job) => {
                if let Err(e) = self.pending.keep(&job) {
                    self.write(&[format!(
                        "Cannot keep report {} in {}: {e} (uploading it from memory)",
                        job.manifest.report_id,
                        self.pending.dir().display()
                    )]);
                }
                jobs.push(job);
            }
            Err(f) => {
                let now = self.clock.now_ms();
                self.finish_attempt("(none)", now, &Err(f));
            }
        }
        while jobs.len() > MAX_PENDING {
            let old = jobs.remove(0);
            let _ = self.pending.remove(&old.manifest.report_id);
            self.write(&[format!(
                "Pending report {} dropped: more than {MAX_PENDING} reports wait",
                old.manifest.report_id
            )]);
        }
        let mut left = jobs.len();
        let mut go_on = true;
        for job in &jobs {
            match self.upload(job) {
                Outcome::Done => {
                    left -= 1;
                    if let Err(e) = self.pending.remove(&job.manifest.report_id) {
                        self.write(&[format!(
                            "Cannot delete uploaded report {}: {e}",
                            job.manifest.report_id
                        )]);
                    }
                }
                Outcome::GaveUp => break,
                Outcome::Stopped => {
                    go_on = false;
                    break;
                }
            }
        }
        self.update(|s| {
            s.running = false;
            s.pending = left;
        });
        go_on
    }

    fn build(&self) -> Result<Job, Failure> {
        let now = self.clock.now_ms();
        let t = chrono::DateTime::from_timestamp_millis(now as i64).unwrap_or_default();
        let to = t.date_naive();
        let from = to - chrono::Days::new(u64::from(self.config.period_days.max(1) - 1));
        let period = Period {
            from: from.format("%Y-%m-%d").to_string(),
            to: to.format("%Y-%m-%d").to_string(),
        };
        let report = self.source.build(&period).map_err(|e| {
            Failure::new(Code::ReportFailed, format!("cannot build the report: {e}"))
        })?;
        let sha = super::wire::sha256_hex(&report);
        let id = format!("tally-{}-{}", t.format("%Y%m%dT%H%M%S%.3fZ"), &sha[..12]);
        Ok(Job {
            manifest: Manifest::of(id, period, self.config.server.clone(), &report),
            report,
        })
    }

    fn upload(&mut self, job: &Job) -> Outcome {
        let mut session: Option<Session> = None;
        let attempts = self.config.attempts.max(1);
        for n in 0..attempts {
            let started = self.clock.now_ms();
            let m = &job.manifest;
            self.write(&[
                time_line("Start", started),
                format!(
                    "Report {} ({} bytes, SHA-256 {}, {} to {}) to {}: attempt {} of {attempts}",
                    m.report_id,
                    m.size,
                    m.sha256,
                    m.period.from,
                    m.period.to,
                    self.config.url,
                    n + 1
                ),
            ]);
            let mut lines = Vec::new();
            // An attempt ends at tallyd's stop, or after ATTEMPT_REQUESTS
            // requests' timeouts: an endpoint answering each chunk just
            // before its timeout cannot hold the thread for days.
            let limit = started
                .saturating_add(self.config.timeouts.request.as_millis() as u64 * ATTEMPT_REQUESTS);
            let (waiter, clock) = (&self.waiter, &self.clock);
            let go_on = || !waiter.stopping() && clock.now_ms() < limit;
            let result = transfer::attempt(
                &self.agent,
                &self.config.url,
                job,
                &mut session,
                &mut |l| lines.push(l),
                &go_on,
            );
            self.write(&lines);
            self.finish_attempt(&m.report_id, started, &result);
            if result.is_ok() {
                return Outcome::Done;
            }
            if n + 1 == attempts {
                break;
            }
            let d = Backoff::delay(&self.config.backoff, n, self.jitter.draw());
            self.write(&[format!("Next attempt in {:.3} s", d.as_secs_f64())]);
            let due = self.clock.now_ms() / 1000 + d.as_secs();
            self.update(|s| s.next = Some(due));
            match self.wait(d) {
                Wake::Stop => return Outcome::Stopped,
                Wake::Asked | Wake::Elapsed => self.update(|s| s.next = None),
            }
        }
        self.write(&[format!(
            "Giving up for now: report {} stays in {} for the next upload",
            job.manifest.report_id,
            self.pending.dir().display()
        )]);
        Outcome::GaveUp
    }

    /// The result line, the finish time and the status of one attempt.
    fn finish_attempt(&mut self, report_id: &str, started: u64, result: &Result<(), Failure>) {
        let finished = self.clock.now_ms();
        let (code, msg) = match result {
            Ok(()) => (Code::Success, String::new()),
            Err(f) => (f.code, f.msg.clone()),
        };
        let mut lines = Vec::new();
        if code == Code::Success {
            lines.push("Upload successful".to_string());
        }
        lines.push(result_line(code, &msg, finished / 1000));
        lines.push(time_line("Finish", finished));
        self.write(&lines);
        self.update(|s| {
            s.attempts += 1;
            if code == Code::Success {
                s.last_success = Some(finished / 1000);
            }
            s.last = Some(Attempt {
                report_id: report_id.to_string(),
                started: started / 1000,
                finished: finished / 1000,
                code,
                msg,
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_core::clock::ManualClock;

    /// Records every wait and returns at once: no test sleeps.
    struct Recorder(Arc<Mutex<Vec<Duration>>>);

    impl Waiter for Recorder {
        fn wait(&mut self, d: Duration) -> Wake {
            self.0.lock().unwrap().push(d);
            Wake::Elapsed
        }
    }

    /// The waits between the attempts of one upload follow the backoff
    /// schedule with the jitter drawn (explicit time: the waiter returns at
    /// once), and the report stays pending after the last attempt.
    #[test]
    fn retries_wait_the_backoff_schedule() {
        let dir = std::env::temp_dir().join(format!("tally-worker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Nothing listens on a port just released: every attempt is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = UploadConfig::new(
            &format!("https://127.0.0.1:{port}"),
            dir.join("log_uploader.log"),
            &dir,
            "h".into(),
        );
        config.attempts = 5;
        config.backoff = Backoff {
            base: Duration::from_secs(30),
            max: Duration::from_secs(100),
        };
        let waits = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(Mutex::new(UploadStatus::default()));
        let clock = Arc::new(ManualClock::new(1_796_306_706_000));
        let mut w = Worker::new(
            config.clone(),
            RootCerts::WebPki,
            ReportSource::fixed(b"{}".to_vec()),
            clock,
            Box::new(Recorder(waits.clone())),
            status.clone(),
            Jitter::seeded(7),
        );
        assert!(w.cycle());
        let mut j = Jitter::seeded(7);
        let want: Vec<Duration> = (0..4).map(|n| config.backoff.delay(n, j.draw())).collect();
        assert_eq!(*waits.lock().unwrap(), want);
        assert!(want[0] >= Duration::from_secs(15) && want[0] < Duration::from_secs(30));
        assert!(want[3] >= Duration::from_secs(50) && want[3] <= Duration::from_secs(100));
        let s = status.lock().unwrap().clone();
        assert_eq!(s.attempts, 5);
        assert_eq!(s.pending, 1);
        assert_eq!(s.last.unwrap().code, Code::ConnectFailed);
        let log = std::fs::read_to_string(dir.join("log_uploader.log")).unwrap();
        assert_eq!(
            log.matches("<Code>CTX_UPLOADER_CONNECT_FAILED</Code>")
                .count(),
            5
        );
        // The manual clock's time is the log's and the id's.
        assert!(log.contains("Start time UTC={2026-12-03T"), "{log}");
        assert!(s.last_success.is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
