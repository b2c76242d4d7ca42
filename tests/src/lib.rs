//! Helpers for the end-to-end tests: `spawn_app` on either backend, for real.

use lightwidget_api::{Application, Settings, Storage};
use lightwidget_store::embedded::{SqliteEventStore, SqliteOptions};
use lightwidget_store::postgres::{PgEventStore, PgOptions};
use lightwidget_store::test_support::TestDatabase;
use lightwidget_store::{EventStore, MasterKey, SystemClock, ViewStore};
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
    pub views: Arc<dyn ViewStore>,
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
    let (storage, db, dir) = match backend {
        Backend::Postgres => {
            let db = TestDatabase::create().await;
            let store = Arc::new(
                PgEventStore::connect(&db.url, master, Arc::new(SystemClock), PgOptions::default())
                    .await
                    .expect("connect"),
            );
            let storage = Storage {
                events: store.clone(),
                views: store,
            };
            (storage, Some(db), None)
        }
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Arc::new(
                SqliteEventStore::open(
                    dir.path(),
                    master,
                    Arc::new(SystemClock),
                    SqliteOptions::default(),
                )
                .expect("open"),
            );
            let storage = Storage {
                events: store.clone(),
                views: store,
            };
            (storage, None, Some(dir))
        }
    };
    let settings = Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        database_url: None,
        data_dir: std::env::temp_dir(),
        master_key: None,
    };
    let (store, views) = (storage.events.clone(), storage.views.clone());
    let app = Application::with_storage(settings, storage)
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
        views,
        stop: Some(stop),
        _db: db,
        _dir: dir,
    }
}
