//! Verify and export at volume, on both backends: `LW_BENCH_EVENTS` (default 1,000,000)
//! events of realistic size (widget views, each with a sealed access log) are appended, then
//! timed: the chain verified from the store, the encrypted archive written, the archive read
//! back and verified — each with the process's peak memory during that phase (VmHWM, reset
//! before it). The archive's scrypt key derivation (about a second by design) is inside the
//! export and archive-verify times.
//!
//! `cargo bench -p lightwidget-api --bench audit` — `LW_BENCH_EVENTS`, and
//! `LW_BENCH_BACKEND=postgres|sqlite` for one backend.

use lightwidget_api::archive;
use lightwidget_domain::WidgetId;
use lightwidget_store::SystemClock;
use lightwidget_testkit::bench::{peak_mib, peak_reset};
use lightwidget_testkit::{Backend, TestStore};
use std::sync::Arc;
use std::time::Instant;

async fn generate(t: &TestStore, total: usize) {
    let widgets: Vec<WidgetId> = (0..1000).map(|_| WidgetId::new()).collect();
    lightwidget_testkit::bench::append_views(&*t.store, &widgets, 0, total).await
}

async fn run(backend: Backend, total: usize) {
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let start = Instant::now();
    generate(&t, total).await;
    println!(
        "{backend:?}: {total} events appended in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let rate = |secs: f64| total as f64 / secs;

    peak_reset();
    let start = Instant::now();
    let report = archive::verify_store(&*t.store, true)
        .await
        .expect("verify");
    let secs = start.elapsed().as_secs_f64();
    assert!(report.ok && report.events_checked == total as u64);
    println!(
        "  verify (store): {secs:.1} s, {:.0} events/s, peak {:.0} MiB",
        rate(secs),
        peak_mib()
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.age");
    peak_reset();
    let start = Instant::now();
    let file = std::fs::File::create(&path).expect("create");
    let done = archive::export(&*t.store, file, "benchmark passphrase", true)
        .await
        .expect("export");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(done.events, total as u64);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
    println!(
        "  export (encrypted archive): {secs:.1} s, {:.0} events/s, {size:.0} MiB written, peak {:.0} MiB",
        rate(secs),
        peak_mib()
    );

    peak_reset();
    let start = Instant::now();
    let file = std::fs::File::open(&path).expect("open");
    let report = archive::verify_archive(file, "benchmark passphrase", true).expect("verify");
    let secs = start.elapsed().as_secs_f64();
    assert!(report.ok && report.events_checked == total as u64);
    println!(
        "  verify (archive): {secs:.1} s, {:.0} events/s, peak {:.0} MiB",
        rate(secs),
        peak_mib()
    );
}

#[tokio::main]
async fn main() {
    let total = lightwidget_testkit::bench::count("LW_BENCH_EVENTS", 1_000_000);
    for backend in lightwidget_testkit::bench::backends() {
        run(backend, total).await;
    }
}
