//! Verify and export at volume, on both backends: `LW_BENCH_EVENTS` (default 1,000,000)
//! events of realistic size (widget views, each with a sealed access log) are appended, then
//! timed: the chain verified from the store, the encrypted archive written, the archive read
//! back and verified — each with the process's peak memory during that phase (VmHWM, reset
//! before it). The archive's scrypt key derivation (about a second by design) is inside the
//! export and archive-verify times.
//!
//! `cargo bench -p lightwidget-api --bench audit` — `LW_BENCH_EVENTS`, and
//! `LW_BENCH_BACKEND=postgres|sqlite` for one backend.

use chrono::{Duration, TimeZone, Utc};
use lightwidget_api::archive;
use lightwidget_domain::event::{AccessLog, WidgetViewed};
use lightwidget_domain::{Category, DomainEvent, Personal, Subject, WidgetId};
use lightwidget_store::test_support::bench::{peak_mib, peak_reset};
use lightwidget_store::test_support::{Backend, TestStore};
use lightwidget_store::{
    AppendRequest, ExpectedVersion, Metadata, NewEvent, StreamWrite, SystemClock,
};
use std::sync::Arc;
use std::time::Instant;

async fn generate(t: &TestStore, total: usize) {
    let widgets: Vec<WidgetId> = (0..1000).map(|_| WidgetId::new()).collect();
    let meta = Metadata::system();
    let start = Utc
        .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let mut n = 0;
    while n < total {
        let end = (n + 1000).min(total);
        let mut by_stream: std::collections::BTreeMap<String, Vec<NewEvent>> = Default::default();
        for i in n..end {
            let w = widgets[(i * 7919) % widgets.len()];
            let at = start + Duration::seconds(i as i64);
            let e: DomainEvent = WidgetViewed {
                widget_id: w,
                access: Personal::new(
                    Subject::access_log(w, at),
                    Category::AccessLog,
                    AccessLog {
                        ip: format!("198.51.100.{}", i % 250),
                        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0".into()),
                        browser: Some("Firefox".into()),
                        os: Some("Linux".into()),
                        device_id: Some(format!("dev-{}", i % 10_000)),
                        referrer: Some("https://example.com/blog".into()),
                    },
                ),
                viewed_at: at,
            }
            .into();
            by_stream
                .entry(format!("views-{w}"))
                .or_default()
                .push(NewEvent::from_domain(&e, &meta));
        }
        let writes = by_stream
            .into_iter()
            .map(|(stream, events)| StreamWrite {
                stream,
                expected: ExpectedVersion::Any,
                events,
            })
            .collect();
        t.store
            .append(AppendRequest {
                writes,
                shred: vec![],
            })
            .await
            .expect("append");
        n = end;
    }
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
    let total = lightwidget_store::test_support::bench::count("LW_BENCH_EVENTS", 1_000_000);
    for backend in lightwidget_store::test_support::bench::backends() {
        run(backend, total).await;
    }
}
