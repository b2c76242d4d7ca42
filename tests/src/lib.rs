//! Helpers for the end-to-end tests: `spawn_app` on either backend, for real.

use lightwidget_api::{Application, Settings};
use lightwidget_store::embedded::{SqliteEventStore, SqliteOptions};
use lightwidget_store::postgres::{PgEventStore, PgOptions};
use lightwidget_store::test_support::TestDatabase;
use lightwidget_store::{EventStore, MasterKey, SystemClock};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A running server on port 0 with its own storage, stopped when dropped.
pub struct TestApp {
    pub address: String,
    pub store: Arc<dyn EventStore>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _db: Option<TestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    let master = MasterKey::generate();
    let (store, db, dir): (Arc<dyn EventStore>, _, _) = match backend {
        Backend::Postgres => {
            let db = TestDatabase::create().await;
            let store =
                PgEventStore::connect(&db.url, master, Arc::new(SystemClock), PgOptions::default())
                    .await
                    .expect("connect");
            (Arc::new(store), Some(db), None)
        }
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = SqliteEventStore::open(
                dir.path(),
                master,
                Arc::new(SystemClock),
                SqliteOptions::default(),
            )
            .expect("open");
            (Arc::new(store), None, Some(dir))
        }
    };
    let settings = Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        database_url: None,
        data_dir: std::env::temp_dir(),
        master_key: None,
    };
    let app = Application::with_store(settings, store.clone())
        .await
        .expect("build");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        store,
        stop: Some(stop),
        _db: db,
        _dir: dir,
    }
}
