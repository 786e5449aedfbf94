//! STATUS (and PICTURE) replies are built off the event loops.
//!
//! A STATUS of a large server (100,000 features, a million holders) is tens
//! of megabytes of JSON: built on a loop, it would stall every other
//! connection of that loop for as long. So a loop hands the request to this
//! thread (an engine `Arc`, the query, the facts of the moment) and parks
//! the connection: it answers none of its further lines until the reply
//! comes back, so replies stay in request order. The thread runs at a lower
//! CPU priority than the loops (nice +10), builds the line and sends it to
//! the loop's channel with a wake-up; the loop appends it to the
//! connection's write buffer and goes on with what the client pipelined.
//!
//! One connection has at most one STATUS outstanding, so the job queue
//! never holds more jobs than there are connections.

use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver, Sender};
use mio::Waker;
use tally_core::engine::Engine;

use crate::protocol::{Reply, StatusQuery};
use crate::queue::QueuedStatus;
use crate::status::{ServerInfo, Status};

/// A STATUS to build.
#[derive(Debug)]
pub(crate) struct Job {
    /// The loop that parked the connection.
    pub(crate) loop_index: usize,
    /// The connection's slab key and serial (keys are reused).
    pub(crate) conn: usize,
    pub(crate) serial: u64,
    pub(crate) engine: Arc<Engine>,
    pub(crate) info: ServerInfo,
    pub(crate) queue: Vec<QueuedStatus>,
    pub(crate) query: OwnedQuery,
    /// Hide handles and tickets (a remote peer without AUTH).
    pub(crate) hide_handles: bool,
    /// Build the PICTURE reply instead (`picture.rs`; `query`, `queue`
    /// and `hide_handles` are unused).
    pub(crate) picture: bool,
    /// Build the REPORT reply instead (`cmd/report.rs`; `engine`, `query`,
    /// `queue` and `hide_handles` are unused).
    pub(crate) report: Option<ReportJob>,
}

/// A REPORT to build: the usage history's period, and how to make it
/// current first.
#[derive(Debug)]
pub(crate) struct ReportJob {
    /// First and last day (`YYYY-MM-DD`, checked).
    pub(crate) from: String,
    pub(crate) to: String,
    /// The history (`None`: tallyd keeps none).
    pub(crate) db: Option<std::path::PathBuf>,
    /// The debug log's handle: a flush of it commits the usage batch due.
    pub(crate) log: crate::debuglog::LogHandle,
}

/// [`StatusQuery`] without the borrow of the request line.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedQuery {
    pub(crate) feature: Option<String>,
    pub(crate) from: usize,
    pub(crate) limit: Option<usize>,
    pub(crate) holders: crate::status::HolderPaging,
}

impl From<&StatusQuery<'_>> for OwnedQuery {
    fn from(q: &StatusQuery<'_>) -> OwnedQuery {
        OwnedQuery {
            feature: q.feature.map(str::to_string),
            from: q.from,
            limit: q.limit,
            holders: q.holders,
        }
    }
}

/// A built reply for a parked connection.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) conn: usize,
    pub(crate) serial: u64,
    /// The whole reply line, LF included.
    pub(crate) line: Vec<u8>,
}

/// The loops' end: where jobs go, and each loop's inbox of replies.
#[derive(Debug)]
pub(crate) struct StatusThread {
    jobs: Sender<Job>,
}

impl StatusThread {
    /// Starts the thread; `wakers[i]` wakes loop `i`. Returns the job
    /// sender and every loop's reply receiver.
    pub(crate) fn start(
        wakers: Vec<Arc<Waker>>,
    ) -> std::io::Result<(StatusThread, Vec<Receiver<Done>>)> {
        let (jobs, rx) = unbounded::<Job>();
        let (outs, ins): (Vec<Sender<Done>>, Vec<Receiver<Done>>) =
            wakers.iter().map(|_| unbounded()).unzip();
        std::thread::Builder::new()
            .name("tally-status".into())
            .spawn(move || {
                lower_priority();
                // Ends when every loop has dropped its sender (shutdown).
                for job in rx {
                    let (i, conn, serial) = (job.loop_index, job.conn, job.serial);
                    // A panic here must not leave the connection parked.
                    let line =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build(job)))
                            .unwrap_or_else(|_| {
                                let mut line = Vec::new();
                                Reply::StatusFailed("building the status failed (see stderr)")
                                    .write_bytes(&mut line);
                                line
                            });
                    if outs[i].send(Done { conn, serial, line }).is_ok() {
                        let _ = wakers[i].wake();
                    }
                }
            })?;
        Ok((StatusThread { jobs }, ins))
    }

    /// A sender for one loop.
    pub(crate) fn sender(&self) -> Sender<Job> {
        self.jobs.clone()
    }
}

/// The reply line for a job.
pub(crate) fn build(job: Job) -> Vec<u8> {
    let mut line = Vec::new();
    if let Some(r) = &job.report {
        build_report(r, &job.info, &mut line);
        return line;
    }
    if job.picture {
        let picture = crate::picture::Picture::of(
            &job.engine,
            &job.info.host,
            job.info.port,
            job.info.now_ms,
        );
        Reply::Picture(&picture).write_bytes(&mut line);
        return line;
    }
    let mut status = Status::for_request(
        &job.engine,
        job.info,
        job.queue,
        job.query.feature.as_deref(),
        job.query.from,
        job.query.limit,
        job.query.holders,
    );
    if job.hide_handles {
        status.hide_handles();
    }
    Reply::Status(&status).write_bytes(&mut line);
    line
}

/// The REPORT reply: the events so far made durable in the history, then
/// the report read from it (a failure is `OK {"error":...}`, as STATUS's).
fn build_report(r: &ReportJob, info: &ServerInfo, line: &mut Vec<u8>) {
    let Some(path) = &r.db else {
        Reply::StatusFailed(
            "no usage history: tallyd keeps one in its state dir, not with --durability off",
        )
        .write_bytes(line);
        return;
    };
    r.log.flush_usage();
    let server = crate::usage::report::ReportServer {
        name: info.name.clone(),
        version: info.version.clone(),
        host: info.host.clone(),
        license_file: info.license_file.clone(),
        hostid: None,
    };
    let built = crate::usage::db::open_for_reading(path)
        .and_then(|c| crate::usage::report::build_report(&c, &r.from, &r.to, server, info.now_ms));
    match built {
        Ok(report) => Reply::Report(&report).write_bytes(line),
        Err(e) => {
            Reply::StatusFailed(&format!("usage history {}: {e}", path.display())).write_bytes(line)
        }
    }
}

/// Nice +10 for this thread (Linux: per thread), so the loops win the CPU.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // Safety: gettid and setpriority have no memory preconditions; a
    // failure only leaves the priority as it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}
