//! The real `lightwidget` binary for auditors working offline, on both backends:
//! `audit export` writes an encrypted archive (R13) that `audit verify --file` reads back and
//! `audit import` loads into an empty store,
//! and `replay` prints a read model as it stood at a position.

use lightwidget_domain::event::{Layout, WidgetCreated, WidgetSettings, WidgetUpdated};
use lightwidget_domain::{AccountId, Category, DomainEvent, Personal, Subject, WidgetId};
use lightwidget_store::{AppendRequest, ExpectedVersion, Metadata, StreamWrite, SystemClock};
use lightwidget_testkit::{Backend, TestStore};
use std::process::{Command, Output};
use std::sync::Arc;

const BIN: &str = env!("CARGO_BIN_EXE_lightwidget");
const PASSPHRASE: &str = "correct horse battery staple";

fn settings(w: WidgetId, title: &str) -> Personal<WidgetSettings> {
    Personal::new(
        Subject::widget(w),
        Category::WidgetContent,
        WidgetSettings {
            title: title.into(),
            layout: Layout::Grid,
            columns: 3,
        },
    )
}

/// 300 widgets created, then the first one renamed: (store, the widget, the position of its
/// creation).
async fn history(backend: Backend) -> (TestStore, WidgetId, u64) {
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let account = AccountId::new();
    let first = WidgetId::new();
    let mut created_at = 0;
    for n in 0..300 {
        let w = if n == 0 { first } else { WidgetId::new() };
        let e: DomainEvent = WidgetCreated {
            widget_id: w,
            account_id: account,
            settings: settings(w, &format!("MARKER-TITLE-{n}")),
            created_at: chrono::Utc::now(),
        }
        .into();
        let r = t
            .store
            .append(AppendRequest {
                writes: vec![StreamWrite::of(
                    w.stream(),
                    ExpectedVersion::NoStream,
                    &[e],
                    &Metadata::system(),
                )],
                shred: vec![],
            })
            .await
            .expect("append");
        if n == 0 {
            created_at = r.last_position;
        }
    }
    let e: DomainEvent = WidgetUpdated {
        widget_id: first,
        settings: settings(first, "Renamed"),
        updated_at: chrono::Utc::now(),
    }
    .into();
    t.store
        .append(AppendRequest {
            writes: vec![StreamWrite::of(
                first.stream(),
                ExpectedVersion::Exact(1),
                &[e],
                &Metadata::system(),
            )],
            shred: vec![],
        })
        .await
        .expect("append");
    (t, first, created_at)
}

fn run(t: &TestStore, args: &[&str], passphrase: Option<&str>) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_clear()
        .env("LW_MASTER_KEY", t.master.to_base64());
    match (&t.db, &t.dir) {
        (Some(db), _) => c.env("LW_DATABASE_URL", &db.url),
        (None, Some(dir)) => c.env("LW_DATA_DIR", dir.path()),
        _ => panic!("a store"),
    };
    if let Some(p) = passphrase {
        c.env("LW_EXPORT_PASSPHRASE", p);
    }
    c.output().expect("run")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn export_verify_and_replay(backend: Backend) {
    let (t, first, created_at) = history(backend).await;
    let out_dir = tempfile::tempdir().expect("tempdir");
    let archive = out_dir.path().join("audit.age");
    let archive_arg = archive.to_str().expect("path");

    let refused = run(&t, &["audit", "export", "--out", archive_arg], None);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("LW_EXPORT_PASSPHRASE"),
        "{}",
        stderr(&refused)
    );

    let out = run(
        &t,
        &["audit", "export", "--out", archive_arg],
        Some(PASSPHRASE),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(done["events"], 301);
    // Not a terminal: plain progress lines with the rate.
    assert!(
        stderr(&out).contains("export: 301 events in"),
        "{}",
        stderr(&out)
    );
    let bytes = std::fs::read(&archive).expect("read archive");
    assert!(bytes.starts_with(b"age-encryption.org/v1"));
    let text = String::from_utf8_lossy(&bytes);
    for plain in ["WidgetCreated", "MARKER-TITLE", "widget-"] {
        assert!(!text.contains(plain), "{plain} readable in the archive");
    }

    let ok = run(
        &t,
        &["audit", "verify", "--file", archive_arg],
        Some(PASSPHRASE),
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("json");
    assert_eq!(
        (report["ok"].as_bool(), report["events_checked"].as_u64()),
        (Some(true), Some(301))
    );
    let wrong = run(
        &t,
        &["audit", "verify", "--file", archive_arg],
        Some("not the passphrase at all"),
    );
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("passphrase"), "{}", stderr(&wrong));
    // One byte changed in the middle of the ciphertext: the archive does not read back.
    let mut broken = bytes.clone();
    let middle = broken.len() / 2;
    broken[middle] ^= 1;
    let broken_path = out_dir.path().join("broken.age");
    std::fs::write(&broken_path, &broken).expect("write");
    let bad = run(
        &t,
        &[
            "audit",
            "verify",
            "--file",
            broken_path.to_str().expect("path"),
        ],
        Some(PASSPHRASE),
    );
    assert!(!bad.status.success());

    // The store itself verifies too, with the same report.
    let store = run(&t, &["audit", "verify"], None);
    assert!(store.status.success(), "{}", stderr(&store));
    let live: serde_json::Value = serde_json::from_slice(&store.stdout).expect("json");
    assert_eq!(live["head_hash"], report["head_hash"]);

    // Import into an empty store of the other kind's twin: same chain, same head hash; the
    // titles read as erased there (no data keys travel in an archive).
    let other = TestStore::new(backend, Arc::new(SystemClock)).await;
    let imported = run(
        &other,
        &["audit", "import", "--file", archive_arg],
        Some(PASSPHRASE),
    );
    assert!(imported.status.success(), "{}", stderr(&imported));
    let done: serde_json::Value = serde_json::from_slice(&imported.stdout).expect("json");
    assert_eq!(done["events"], 301);
    assert_eq!(done["head_hash"], report["head_hash"]);
    let verified = run(&other, &["audit", "verify"], None);
    assert!(verified.status.success(), "{}", stderr(&verified));
    let opened = other.store.read_all(0, 1).await.expect("read");
    assert_eq!(opened[0].data["settings"]["$personal"]["erased"], true);
    // A second import does not continue the log: refused, nothing written.
    let again = run(
        &other,
        &["audit", "import", "--file", archive_arg],
        Some(PASSPHRASE),
    );
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("do not continue"),
        "{}",
        stderr(&again)
    );
    assert_eq!(other.store.head().await.expect("head").position, 301);

    // Replay: the first widget as it was when created, and as it is now.
    let at = created_at.to_string();
    let key = first.to_string();
    let then = run(
        &t,
        &[
            "replay",
            "--projection",
            "widgets",
            "--at",
            &at,
            "--key",
            &key,
        ],
        None,
    );
    assert!(then.status.success(), "{}", stderr(&then));
    let doc: serde_json::Value = serde_json::from_slice(&then.stdout).expect("one document");
    assert_eq!(doc["doc"]["title"], "MARKER-TITLE-0");
    let now = run(
        &t,
        &[
            "replay",
            "--projection",
            "widgets",
            "--at",
            "301",
            "--key",
            &key,
        ],
        None,
    );
    let doc: serde_json::Value = serde_json::from_slice(&now.stdout).expect("one document");
    assert_eq!(doc["doc"]["title"], "Renamed");
    let all = run(
        &t,
        &["replay", "--projection", "widgets", "--at", "301"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), 300);
    let unknown = run(
        &t,
        &["replay", "--projection", "nothing", "--at", "1"],
        None,
    );
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("no projection"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    export_verify_and_replay(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite() {
    export_verify_and_replay(Backend::Sqlite).await
}
