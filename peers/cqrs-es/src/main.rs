//! The peer benchmark (issue 23): widget creation through cqrs-es + postgres-es and through
//! this project's store and runner, on the same PostgreSQL, in one run. See README.md.

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::GenericQuery;
use cqrs_es::{Aggregate, DomainEvent, EventEnvelope, Query, View};
use lightwidget_store::postgres::{PgEventStore, PgOptions};
use lightwidget_store::{EventStore, MasterKey, Metadata, SystemClock, ViewStore};
use postgres_es::{postgres_cqrs, PostgresViewRepository};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

// ---- the peer: a widget aggregate and its view in cqrs-es ----

#[derive(Debug, Default, Serialize, Deserialize)]
struct PeerWidget {
    created: bool,
}

#[derive(Debug)]
enum PeerCommand {
    Create {
        owner: String,
        title: String,
        layout: String,
        columns: u8,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum PeerEvent {
    WidgetCreated {
        owner: String,
        title: String,
        layout: String,
        columns: u8,
    },
}

impl DomainEvent for PeerEvent {
    fn event_type(&self) -> String {
        "WidgetCreated".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug)]
struct PeerError(String);

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PeerError {}

impl Aggregate for PeerWidget {
    const TYPE: &'static str = "widget";
    type Command = PeerCommand;
    type Event = PeerEvent;
    type Error = PeerError;
    type Services = ();

    async fn handle(
        &mut self,
        command: PeerCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), PeerError> {
        if self.created {
            return Err(PeerError("the widget exists".into()));
        }
        let PeerCommand::Create {
            owner,
            title,
            layout,
            columns,
        } = command;
        sink.write(
            PeerEvent::WidgetCreated {
                owner,
                title,
                layout,
                columns,
            },
            self,
        )
        .await;
        Ok(())
    }

    fn apply(&mut self, _event: PeerEvent) {
        self.created = true;
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct PeerWidgetView {
    owner: String,
    title: String,
    layout: String,
    columns: u8,
}

impl View<PeerWidget> for PeerWidgetView {
    fn update(&mut self, event: &EventEnvelope<PeerWidget>) {
        let PeerEvent::WidgetCreated {
            owner,
            title,
            layout,
            columns,
        } = &event.payload;
        self.owner = owner.clone();
        self.title = title.clone();
        self.layout = layout.clone();
        self.columns = *columns;
    }
}

const PEER_TABLES: &str = "
CREATE TABLE events (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL,
    sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL,
    event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence));
CREATE TABLE snapshots (
    aggregate_type text NOT NULL, aggregate_id text NOT NULL,
    last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL, payload json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence));
CREATE TABLE widget_view (
    view_id text NOT NULL, version bigint CHECK (version >= 0) NOT NULL, payload json NOT NULL,
    PRIMARY KEY (view_id));
";

// ---- measuring ----

struct Measured {
    case: String,
    commands: usize,
    /// Events appended (the peer: one per widget by construction; the project: counted by
    /// the log's head).
    events: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Measured {
    fn pct(&self, p: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        l.get(((l.len().max(1) - 1) as f64 * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

/// Runs `op` on `writers` tasks for `seconds`; each call is one widget created.
async fn run<F, Fut>(writers: usize, seconds: f64, op: F) -> (usize, Vec<Duration>)
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0;
                while Instant::now() < until {
                    let s = Instant::now();
                    op(w, i).await;
                    lat.push(s.elapsed());
                    i += 1;
                }
                lat
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("writer"));
    }
    (latencies.len(), latencies)
}

async fn peer(writers: usize, seconds: f64) -> Measured {
    let db = lightwidget_testkit::TestDatabase::create().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(16)
        .connect(&db.url)
        .await
        .expect("connect");
    sqlx::raw_sql(PEER_TABLES)
        .execute(&pool)
        .await
        .expect("tables");
    let repo = Arc::new(PostgresViewRepository::<PeerWidgetView, PeerWidget>::new(
        "widget_view",
        pool.clone(),
    ));
    let query: Box<dyn Query<PeerWidget>> = Box::new(GenericQuery::new(repo));
    let cqrs = Arc::new(postgres_cqrs(pool, vec![query], ()));
    let started = Instant::now();
    let (commands, latencies) = run(writers, seconds, move |w, i| {
        let cqrs = cqrs.clone();
        async move {
            cqrs.execute(
                &uuid::Uuid::new_v4().to_string(),
                PeerCommand::Create {
                    owner: "peer-owner".into(),
                    title: format!("w{w}-{i}"),
                    layout: "grid".into(),
                    columns: 3,
                },
            )
            .await
            .expect("execute");
        }
    })
    .await;
    Measured {
        case: format!("cqrs-es + postgres-es, {writers} writer(s)"),
        commands,
        events: commands as u64,
        elapsed: started.elapsed(),
        latencies,
    }
}

async fn project(writers: usize, seconds: f64) -> Measured {
    use lightwidget_commands::{Context, Invocation};
    let db = lightwidget_testkit::TestDatabase::create().await;
    let store = Arc::new(
        PgEventStore::connect(
            &db.url,
            MasterKey::generate(),
            Arc::new(SystemClock),
            PgOptions::default(),
        )
        .await
        .expect("connect"),
    );
    let events: Arc<dyn EventStore> = store.clone();
    let views: Arc<dyn ViewStore> = store.clone();
    let cx = Arc::new(Context::new(
        events.clone(),
        views.clone(),
        Arc::new(SystemClock),
        Arc::new(lightwidget_api::instagram::DemoInstagram::default()),
        [7u8; 32],
        Arc::new(lightwidget_commands::processors::Registry::checked_in().expect("registry")),
    ));
    let owner = lightwidget_commands::accounts::sign_in(&cx, "demo:peer_owner")
        .await
        .expect("sign in")
        .account_id;
    let runner = Arc::new(lightwidget_projections::Runner::new(
        events.clone(),
        views.clone(),
        Arc::new(lightwidget_projections::models::Widgets),
    ));
    runner.catch_up().await.expect("catch up");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let following = {
        let runner = runner.clone();
        tokio::spawn(async move {
            runner
                .run(async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    let before = events.head().await.expect("head").position;
    let started = Instant::now();
    let (commands, latencies) = run(writers, seconds, move |w, i| {
        let cx = cx.clone();
        async move {
            let meta = Metadata {
                actor: format!("owner:{owner}"),
                ..Metadata::system()
            };
            let settings =
                lightwidget_domain::event::WidgetSettings::parse(&format!("w{w}-{i}"), "grid", 3)
                    .expect("settings");
            lightwidget_commands::widgets::create_widget(
                &cx,
                Invocation {
                    meta: &meta,
                    key: None,
                    fingerprint: "",
                },
                owner,
                settings,
            )
            .await
            .expect("create");
        }
    })
    .await;
    // The view is caught up before the clock stops, as the peer's is when execute returns.
    let head = events.head().await.expect("head").position;
    lightwidget_projections::wait_for_position(&*views, "widgets", head, Duration::from_secs(60))
        .await
        .expect("the view caught up");
    let elapsed = started.elapsed();
    let _ = stop.send(());
    let _ = following.await;
    Measured {
        case: format!("this project (store + widgets runner), {writers} writer(s)"),
        commands,
        events: head - before,
        elapsed,
        latencies,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: f64 = std::env::var("LW_PEER_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let mut rows = Vec::new();
    for writers in [1, 16] {
        rows.push(peer(writers, seconds).await);
        rows.push(project(writers, seconds).await);
        rows.push(project(writers, seconds).await);
        rows.push(peer(writers, seconds).await);
    }
    println!("| case | widgets | events | events/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for m in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.2} |",
            m.case,
            m.commands,
            m.events,
            m.events as f64 / m.elapsed.as_secs_f64(),
            m.pct(0.5),
            m.pct(0.99)
        );
    }
}
