//! The outbox at load, on both backends (issue 20):
//!
//! 1. **Delivery.** `LW_BENCH_MESSAGES` (default 5,000) tickets are opened through the use
//!    case, each queuing its message; then the dispatcher delivers them all to a local
//!    Zendesk stand-in that answers at once, through the real Zendesk client. Beside it, in
//!    the same run, the baseline: the same number of the same requests posted straight to
//!    the stand-in by the same client, 8 at a time (the dispatcher's concurrency): what the
//!    processor and the HTTP client allow without the outbox.
//! 2. **What queuing costs a ticket.** 64 tasks open tickets for `LW_BENCH_SECONDS`
//!    (default 5) through the use case (`open_ticket`: the ticket and its message in one
//!    append), and, as the baseline, the same ticket appended without its message (a use
//!    case deciding only the ticket). In process, not through HTTP: the ratio is of the
//!    work the outbox adds to the command, with no HTTP cost to dilute it.
//!
//! `cargo bench -p lightwidget-api --bench outbox` (`LW_BENCH_BACKEND=postgres|sqlite`).

use lightwidget_api::processors::Zendesk;
use lightwidget_api::settings::ZendeskSettings;
use lightwidget_commands::outbox::{DispatchConfig, Dispatcher, Sender};
use lightwidget_commands::processors::Registry;
use lightwidget_commands::unit::{transact, Unit, UseCase};
use lightwidget_commands::{CommandError, Context, Invocation};
use lightwidget_domain::event::{Outbound, SupportRequest};
use lightwidget_domain::support::{OpenTicket, Ticket};
use lightwidget_domain::{MessageId, TicketId};
use lightwidget_store::{Metadata, SystemClock};
use lightwidget_testkit::{Backend, TestStore};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Zendesk stand-in that answers 201 at once, counting what it received.
fn stand_in() -> (String, Arc<AtomicUsize>) {
    let received = Arc::new(AtomicUsize::new(0));
    let count = received.clone();
    let app = axum::Router::new().route(
        "/api/v2/tickets.json",
        axum::routing::post(move || {
            let count = count.clone();
            async move {
                count.fetch_add(1, Ordering::Relaxed);
                (axum::http::StatusCode::CREATED, "{}")
            }
        }),
    );
    let addr = lightwidget_testkit::serve_apart(app, 1);
    (format!("http://{addr}"), received)
}

fn context(t: &TestStore) -> Arc<Context> {
    Arc::new(Context::new(
        t.store.clone(),
        t.views.clone(),
        Arc::new(SystemClock),
        Arc::new(lightwidget_api::instagram::DemoInstagram::default()),
        [7; 32],
        Arc::new(Registry::checked_in().expect("registry")),
    ))
}

fn request(n: usize) -> SupportRequest {
    SupportRequest::parse(
        Some(&format!("bench{n}@example.com")),
        Some("Help"),
        Some("My widget shows nothing"),
    )
    .expect("valid")
}

/// The baseline of the ticket's cost: the ticket alone, as `open_ticket` decides it, with
/// no message.
struct TicketOnly(OpenTicket);

#[async_trait::async_trait]
impl UseCase for TicketOnly {
    type Output = ();

    async fn run(&self, u: &mut Unit<'_>) -> Result<(), CommandError> {
        let stream = self.0.ticket_id.stream();
        let ticket = u.assume_new::<Ticket>(&stream).await?;
        u.decide(&stream, &ticket, self.0.clone())?;
        Ok(())
    }
}

/// Tickets opened by 64 tasks for `seconds`: per second.
async fn tickets_per_second(cx: &Arc<Context>, seconds: f64, with_outbox: bool) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for task in 0..64 {
        let (cx, done) = (cx.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let meta = Metadata::anonymous();
            let mut n = task * 1_000_000;
            while Instant::now() < deadline {
                if with_outbox {
                    lightwidget_commands::visitors::open_ticket(
                        &cx,
                        Invocation::once(&meta),
                        request(n),
                    )
                    .await
                    .expect("ticket");
                } else {
                    let work = TicketOnly(OpenTicket {
                        ticket_id: TicketId::new(),
                        request: request(n),
                    });
                    transact(&*cx.store, &*cx.clock, &meta, None, &work)
                        .await
                        .expect("ticket");
                }
                done.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    done.load(Ordering::Relaxed) as f64 / seconds
}

async fn run(backend: Backend, messages: usize, seconds: f64) {
    let (url, received) = stand_in();
    let t = TestStore::new(backend, Arc::new(SystemClock)).await;
    let cx = context(&t);
    let zendesk = Arc::new(Zendesk::new(ZendeskSettings {
        url,
        email: "agent@example.com".into(),
        token: "t".into(),
    }));

    // The processor's own ceiling through the same client, 8 at a time.
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut posts = Vec::new();
    for _ in 0..8 {
        let (zendesk, next) = (zendesk.clone(), next.clone());
        posts.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= messages {
                    break;
                }
                let message = Outbound::Ticket {
                    ticket_id: TicketId::new(),
                    request: request(n),
                };
                zendesk
                    .send(MessageId::new(), &message)
                    .await
                    .expect("sent");
            }
        }));
    }
    for p in posts {
        p.await.expect("poster");
    }
    let direct = messages as f64 / start.elapsed().as_secs_f64();

    // The same messages through the outbox: queued by the use case, then delivered.
    let meta = Metadata::anonymous();
    let start = Instant::now();
    for n in 0..messages {
        lightwidget_commands::visitors::open_ticket(&cx, Invocation::once(&meta), request(n))
            .await
            .expect("ticket");
    }
    let queued_in = start.elapsed().as_secs_f64();
    let before = received.load(Ordering::Relaxed);
    let mut senders: BTreeMap<String, Arc<dyn Sender>> = BTreeMap::new();
    senders.insert("ticketing".into(), zendesk.clone());
    let dispatcher = Dispatcher::new(
        cx.clone(),
        senders,
        DispatchConfig {
            batch: 256,
            ..DispatchConfig::default()
        },
    );
    let start = Instant::now();
    let mut delivered = 0;
    while delivered < messages {
        let report = dispatcher.dispatch_due().await.expect("pass");
        assert!(report.failed.is_empty() && report.dead.is_empty());
        delivered += report.delivered.len();
        if report.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(received.load(Ordering::Relaxed) - before, messages);
    let through = messages as f64 / secs;
    println!("{backend:?}: {messages} messages");
    println!(
        "  queued with their tickets in {queued_in:.1} s; delivered in {secs:.1} s: \
         {through:.0} messages/s, {:.0}% of posting the same requests straight \
         ({direct:.0}/s, same client, 8 at a time)",
        100.0 * through / direct
    );

    let with = tickets_per_second(&cx, seconds, true).await;
    let without = tickets_per_second(&cx, seconds, false).await;
    let with_again = tickets_per_second(&cx, seconds, true).await;
    let with = (with + with_again) / 2.0;
    println!(
        "  tickets opened by 64 tasks: {with:.0}/s with the outbox message, {without:.0}/s \
         without: {:.2}x the ticket alone",
        with / without
    );
}

fn main() {
    let messages: usize = std::env::var("LW_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let seconds: f64 = std::env::var("LW_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let only = std::env::var("LW_BENCH_BACKEND").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let name = match backend {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        };
        if only.is_empty() || only == name {
            rt.block_on(run(backend, messages, seconds));
        }
    }
}
