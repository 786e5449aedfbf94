//! Offline admission cost: one `Offline::admit` (grace decision, side-file
//! append) with an fdatasync per admission on a real file (ext4 under the
//! target dir, not a tmpfs), and without the fsync.
//!
//! `cargo bench -p tally-bench --bench offline`
//!
//! Each measured run admits into a fresh cache and side file, at most
//! [`OUTAGE`] admissions per file (counting is linear in the admissions
//! of the outage, so this is the cost during an outage of that size).

#![forbid(unsafe_code)]
// criterion_group! defines an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tally_client::cache::Identity;
use tally_client::offline::{Durability, Offline, Session, Verdict};
use tally_client::picture::Picture;

/// Admissions per fresh side file.
const OUTAGE: u64 = 1_000;

/// The last contact, Unix ms.
const CONTACT: u64 = 1_776_848_880_000;

/// One uncounted pool (so no admission is refused) and seed 001's two.
const REPLY: &str = r#"OK {"stamp":"b","server":"lic1","port":27000,"pools":[{"feature":"CITRIX","vendor":"CITRIX","version":"2038.0101","total":5000,"expiry":"permanent","expiry_ms":null,"start":null,"lt":"SYS","gp_hours":96,"cl":[],"sa":"0","odp":null,"overdraft":0,"dup_group":"HV","vendor_string":";LT=SYS;GP=96;SA=0;DUP_GROUP=HV","in_use":0},{"feature":"MPS_ENT_CCU","vendor":"CITRIX","version":"2007.0726","total":1000,"expiry":"permanent","expiry_ms":null,"start":null,"lt":"Eval","gp_hours":720,"cl":["ENT"],"sa":"0","odp":0,"overdraft":0,"dup_group":null,"vendor_string":";LT=Eval;GP=720","in_use":0},{"feature":"FREE","vendor":"CITRIX","version":"1.0","total":null,"expiry":"permanent","expiry_ms":null,"start":null,"lt":null,"gp_hours":null,"cl":[],"sa":null,"odp":null,"overdraft":0,"dup_group":null,"vendor_string":"","in_use":0}]}"#;

/// A fresh cache in `dir` and its `Offline`.
fn fresh(dir: &Path, durability: Durability) -> Offline {
    let file = dir.join("tally.ini");
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(tally_client::offline::side_file_path(&file));
    let picture = Picture::parse_reply(REPLY).expect("picture");
    Offline::contact(&file, &picture, &Identity::default(), CONTACT, durability)
        .expect("contact")
        .0
}

fn admit(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("dir");
    let mut g = c.benchmark_group("offline");
    g.throughput(Throughput::Elements(1));
    for (name, durability) in [
        ("admit_fsync", Durability::Fsync),
        ("admit_nosync", Durability::NoSync),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let mut off = fresh(dir.path(), durability);
                    let n = OUTAGE.min(iters - done);
                    let started = Instant::now();
                    for i in 0..n {
                        let session = Session {
                            feature: "FREE",
                            version: None,
                            user: "user",
                            host: "ts01",
                            handle: "h",
                            count: 1,
                        };
                        let v = off.admit(&session, CONTACT + 1 + i).expect("admit");
                        assert!(matches!(v, Verdict::Admitted { .. }));
                        black_box(v);
                    }
                    total += started.elapsed();
                    done += n;
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = admit
}
criterion_main!(benches);
