//! The sweeper: reads the due items of the retention projection through its due-date index
//! and, for each, appends the purge events and shreds the data keys in one transaction.
//!
//! One unit of purge is one append:
//!
//! * an account's profile: `PersonalDataErased` (profile) + `AccountPurged`;
//! * a widget's content or statistics: `WidgetPurged` + `PersonalDataErased` for its content,
//!   its statistics and every access-log bucket of the widget (R18);
//! * anything else: `PersonalDataErased` for that subject and category.
//!
//! Every erasure is decided by the subject's `retention-<subject>` stream (which refuses a
//! second erasure of a category) and appended with the version read, as are the account's and
//! the widget's streams: two sweeps at once conflict on those streams, the loser reloads and
//! finds the work done. A crash leaves each unit either wholly done or not at all, and the
//! next sweep takes what is still due. Each purge names the event that started its clock as
//! its causation.

use crate::policy::RetentionPolicy;
use crate::projection::{self, ItemDoc, ItemFacts, Retention};
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use lightwidget_commands::unit::transact_with_attempts;
use lightwidget_commands::{CommandError, Unit, UseCase};
use lightwidget_domain::account::{Account, AccountCommand};
use lightwidget_domain::retention::{
    retention_stream, Archive, Erase, ErasureError, SubjectArchive, SubjectErasures,
};
use lightwidget_domain::widget::{Widget, WidgetCommand};
use lightwidget_domain::{AccountId, Category, HoldId, Subject, WidgetId};
use lightwidget_projections::{ProjectionError, Runner};
use lightwidget_store::{Clock, EventStore, KeyRef, Metadata, StoreError, ViewQuery, ViewStore};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;
use uuid::Uuid;

/// How many due items one query of the index reads.
pub const PAGE: usize = 256;
/// How many units one sweep purges at once.
pub const IN_FLIGHT: usize = 16;
/// How often a unit is retried when its streams keep changing.
const ATTEMPTS: u32 = 8;

/// One erasure a sweep appended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PurgedItem {
    pub subject_id: Subject,
    pub category: Category,
    pub account_id: Option<AccountId>,
    pub rule: String,
    pub due_at: DateTime<Utc>,
    pub position: u64,
}

/// An item a sweep archived under a legal hold (R21).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArchivedItem {
    pub subject_id: Subject,
    pub category: Category,
    pub account_id: Option<AccountId>,
    pub holds: Vec<HoldId>,
    pub due_at: DateTime<Utc>,
    pub position: u64,
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub purged: Vec<PurgedItem>,
    /// Items past their date that a legal hold keeps, archived by this sweep (R21).
    pub archived: Vec<ArchivedItem>,
    /// Due items read from the index (each at most once per sweep).
    pub examined: usize,
    /// Due items left alone: a domain rule refused the purge (logged, without data).
    pub refused: usize,
    /// The log position of the sweep's last append (or the head when nothing was due).
    pub position: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("a stored event could not be decoded: {0}")]
    Decode(String),
    #[error("the streams of {0} kept changing")]
    Contended(String),
}

impl From<CommandError> for SweepError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Store(s) => SweepError::Store(s),
            CommandError::Conflict { stream, .. } => SweepError::Contended(stream),
            other => SweepError::Decode(other.to_string()),
        }
    }
}

pub struct Sweeper {
    store: Arc<dyn EventStore>,
    views: Arc<dyn ViewStore>,
    clock: Arc<dyn Clock>,
    runner: Runner,
    /// One sweep at a time in this process; other processes are kept out by the streams'
    /// versions.
    running: tokio::sync::Mutex<()>,
    /// The read models that apply a sweep's purges before the store is scrubbed.
    scrub_after: Vec<String>,
}

/// How long a sweep waits for the read models to apply its purges before the scrub.
const READ_MODELS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What one unit of purge came to.
enum Decided {
    /// These erasures were appended (with their purge events and the keys shredded).
    Erased(Vec<KeyRef>),
    /// Nothing left to do (another sweep did it).
    Done,
    /// A domain rule refuses the purge now.
    Refused(String),
}

/// The unit of purge of one due item: see the module docs.
struct PurgeUnit<'a> {
    item: &'a ItemFacts,
    rule: &'a str,
    due_at: DateTime<Utc>,
}

impl Sweeper {
    pub fn new(
        store: Arc<dyn EventStore>,
        views: Arc<dyn ViewStore>,
        clock: Arc<dyn Clock>,
        policy: Arc<RetentionPolicy>,
    ) -> Self {
        let runner = Runner::new(
            store.clone(),
            views.clone(),
            Arc::new(Retention::new(policy)),
        );
        Sweeper {
            store,
            views,
            clock,
            runner,
            running: tokio::sync::Mutex::new(()),
            scrub_after: Vec::new(),
        }
    }

    /// After a sweep that purged anything, waits (bounded) until these read models have
    /// applied the purges, then scrubs what the store's engine may still hold of the erased
    /// data (R23). Without it, a sweep scrubs at once.
    pub fn scrubbing_after(mut self, read_models: impl IntoIterator<Item = String>) -> Self {
        self.scrub_after = read_models.into_iter().collect();
        self
    }

    /// One sweep: everything due now and not held is purged, exactly once; then, when
    /// anything was purged, the clean-up of R23 (see [`Sweeper::scrubbing_after`]).
    pub async fn sweep(&self) -> Result<SweepReport, SweepError> {
        use tracing::Instrument;
        let span = tracing::info_span!("sweep", purged = tracing::field::Empty);
        async {
            let mut report = self.purge_due().await?;
            self.archive_held(&mut report).await?;
            tracing::Span::current().record("purged", report.purged.len());
            if !report.purged.is_empty() {
                self.scrub(report.position).await;
            }
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Every read model applies the purges (waited on together, bounded), then the store
    /// scrubs: a scrub that finds the store busy is tried again, three times at most.
    async fn scrub(&self, position: u64) {
        let waits = self.scrub_after.iter().map(|view| {
            lightwidget_projections::wait_for_position(
                &*self.views,
                view,
                position,
                READ_MODELS_WAIT,
            )
        });
        for (view, r) in self
            .scrub_after
            .iter()
            .zip(futures::future::join_all(waits).await)
        {
            if let Err(e) = r {
                tracing::warn!(projection = %view, error = %e, "read model behind after a sweep");
            }
        }
        for _ in 0..3 {
            match self.store.scrub().await {
                Ok(true) => break,
                Ok(false) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                Err(e) => {
                    tracing::warn!(error = %e, "scrubbing the store after a sweep");
                    break;
                }
            }
        }
    }

    /// Everything due now and not held, purged exactly once.
    async fn purge_due(&self) -> Result<SweepReport, SweepError> {
        let _one = self.running.lock().await;
        let now = self.clock.now();
        let correlation = Uuid::new_v4();
        let mut report = SweepReport::default();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        loop {
            // The index must include every event so far: catch the view up first.
            report.position = report.position.max(self.runner.catch_up().await?);
            let page = self
                .views
                .query(
                    projection::VIEW,
                    &ViewQuery {
                        due_before: Some(now + Duration::microseconds(1)),
                        limit: PAGE,
                        ..ViewQuery::default()
                    },
                )
                .await?;
            let fresh: Vec<_> = page
                .into_iter()
                .filter(|d| seen.insert(d.key.clone()))
                .collect();
            if fresh.is_empty() {
                break;
            }
            report.examined += fresh.len();
            let units = fresh.into_iter().filter_map(|doc| {
                let item = match doc.read::<ItemDoc>() {
                    Ok(item) => item,
                    Err(e) => {
                        tracing::warn!(error = %e, "retention item that does not read");
                        return None;
                    }
                };
                Some((item.facts, item.rule, doc.due_at?, item.cause_position))
            });
            // Several units in flight, so that the store's writer commits them together;
            // two units that share a stream conflict and the second finds the work done.
            let outcomes: Vec<Result<Option<Vec<PurgedItem>>, SweepError>> =
                futures::stream::iter(units)
                    .map(|(facts, rule, due_at, cause)| async move {
                        let meta = self.metadata(correlation, cause).await?;
                        self.purge(&facts, &rule, due_at, &meta).await
                    })
                    .buffer_unordered(IN_FLIGHT)
                    .collect()
                    .await;
            for outcome in outcomes {
                match outcome? {
                    Some(done) => {
                        if let Some(p) = done.iter().map(|p| p.position).max() {
                            report.position = report.position.max(p);
                        }
                        report.purged.extend(done);
                    }
                    None => report.refused += 1,
                }
            }
        }
        Ok(report)
    }

    /// Archives every held item past its date that is not archived yet (R21): its key first,
    /// so that no ordinary reader opens it from then on, then the event that records it. A
    /// crash between the two leaves the key archived and the item unarchived in the view:
    /// the next sweep archives it again (archiving twice is archiving once) and records it.
    /// Held items are few (the accounts under a hold) and found through the state index.
    async fn archive_held(&self, report: &mut SweepReport) -> Result<(), SweepError> {
        let _one = self.running.lock().await;
        let now = self.clock.now();
        let correlation = Uuid::new_v4();
        report.position = report.position.max(self.runner.catch_up().await?);
        let mut after_key = None;
        loop {
            let page = self
                .views
                .query(
                    projection::VIEW,
                    &ViewQuery {
                        state: Some("held".into()),
                        after_key: after_key.clone(),
                        limit: PAGE,
                        ..ViewQuery::default()
                    },
                )
                .await?;
            let Some(last) = page.last() else { break };
            after_key = Some(last.key.clone());
            let full = page.len() == PAGE;
            for doc in page.iter().filter(|d| projection::is_item(d)) {
                let item = match doc.read::<ItemDoc>() {
                    Ok(item) => item,
                    Err(e) => {
                        tracing::warn!(error = %e, "retention item that does not read");
                        continue;
                    }
                };
                let facts = &item.facts;
                let due_at = item
                    .due_at
                    .as_deref()
                    .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
                    .map(|d| d.with_timezone(&Utc));
                let Some(due_at) = due_at.filter(|d| *d <= now) else {
                    continue;
                };
                if facts.archived.is_some() || facts.purged.is_some() {
                    continue;
                }
                let meta = self.metadata(correlation, item.cause_position).await?;
                let key = KeyRef::new(facts.subject_id.clone(), facts.category);
                self.store.archive(std::slice::from_ref(&key)).await?;
                let work = ArchiveUnit {
                    item: facts,
                    rule: &item.rule,
                    due_at,
                };
                let done = transact_with_attempts(
                    &*self.store,
                    &*self.clock,
                    &meta,
                    None,
                    ATTEMPTS,
                    &work,
                )
                .await?;
                if let Some(Some(holds)) = done.value {
                    report.position = report.position.max(done.position);
                    report.archived.push(ArchivedItem {
                        subject_id: facts.subject_id.clone(),
                        category: facts.category,
                        account_id: facts.account_id,
                        holds,
                        due_at,
                        position: done.position,
                    });
                }
            }
            if !full {
                break;
            }
        }
        Ok(())
    }

    async fn metadata(
        &self,
        correlation: Uuid,
        cause: Option<u64>,
    ) -> Result<Metadata, SweepError> {
        let causation_id = match cause {
            Some(p) if p > 0 => self
                .store
                .read_all_raw(p - 1, 1)
                .await?
                .first()
                .filter(|e| e.position == p)
                .map(|e| e.event_id),
            _ => None,
        };
        Ok(Metadata {
            actor: "system:retention".into(),
            correlation_id: correlation,
            causation_id,
        })
    }

    /// Purges the unit an item belongs to; `None` when a domain rule refused.
    async fn purge(
        &self,
        item: &ItemFacts,
        rule: &str,
        due_at: DateTime<Utc>,
        meta: &Metadata,
    ) -> Result<Option<Vec<PurgedItem>>, SweepError> {
        let work = PurgeUnit { item, rule, due_at };
        let done =
            transact_with_attempts(&*self.store, &*self.clock, meta, None, ATTEMPTS, &work).await?;
        match done.value {
            Some(Decided::Erased(erased)) => Ok(Some(
                erased
                    .into_iter()
                    .map(|KeyRef { subject, category }| PurgedItem {
                        subject_id: subject,
                        category,
                        account_id: item.account_id,
                        rule: rule.to_owned(),
                        due_at,
                        position: done.position,
                    })
                    .collect(),
            )),
            Some(Decided::Done) | None => Ok(Some(vec![])),
            Some(Decided::Refused(why)) => {
                tracing::info!(
                    subject = %item.subject_id,
                    category = %item.category,
                    reason = %why,
                    "purge refused"
                );
                Ok(None)
            }
        }
    }
}

#[async_trait::async_trait]
impl UseCase for PurgeUnit<'_> {
    type Output = Decided;

    async fn run(&self, u: &mut Unit<'_>) -> Result<Decided, CommandError> {
        let decided = self.decide(u).await?;
        if !matches!(decided, Decided::Erased(_)) {
            // Nothing of a refused or finished unit is appended.
            u.discard();
        }
        Ok(decided)
    }
}

impl PurgeUnit<'_> {
    async fn decide(&self, u: &mut Unit<'_>) -> Result<Decided, CommandError> {
        let Some(erased) = self.erase_unit(u).await? else {
            return Ok(Decided::Done);
        };
        let item = self.item;
        // Every purge of an account's data depends on the account's stream, where its legal
        // holds live: loaded, it is fenced, so a hold placed after this decision makes the
        // append conflict and the retry sees the hold (R21). The profile unit decided on that
        // stream already (an account under a legal hold refuses its purge).
        let profile =
            item.category == Category::Profile && item.subject_id.as_str().starts_with("account:");
        if let (Some(account), false) = (item.account_id, profile) {
            let loaded = u.load::<Account>(&account.stream()).await?;
            if !loaded.state.legal_holds.is_empty() {
                return Ok(Decided::Refused("the account is under a legal hold".into()));
            }
        }
        Ok(erased)
    }

    /// Decides the unit's erasures and purge events: `None` when everything was erased
    /// before, else what was erased (or the refusal).
    async fn erase_unit(&self, u: &mut Unit<'_>) -> Result<Option<Decided>, CommandError> {
        let item = self.item;
        let subject = item.subject_id.as_str();
        let mut erased = Vec::new();
        match item.category {
            Category::Profile if subject.starts_with("account:") => {
                let Some(account) = item.account_id else {
                    return Ok(Some(Decided::Refused("no account".into())));
                };
                if !self
                    .erase(u, &item.subject_id, Category::Profile, &mut erased)
                    .await?
                {
                    return Ok(None);
                }
                let stream = account.stream();
                let loaded = u.load::<Account>(&stream).await?;
                match u.try_decide(&stream, &loaded, AccountCommand::Purge) {
                    Ok(_) | Err(lightwidget_domain::account::AccountError::Purged) => {}
                    Err(e) => return Ok(Some(Decided::Refused(e.to_string()))),
                }
            }
            Category::WidgetContent | Category::Statistics => {
                let Some(widget) = item.widget_id.or_else(|| widget_of(&item.subject_id)) else {
                    return Ok(Some(Decided::Refused("no widget".into())));
                };
                let subject = Subject::widget(widget);
                for c in [Category::WidgetContent, Category::Statistics] {
                    self.erase(u, &subject, c, &mut erased).await?;
                }
                // The access-log buckets the projection saw when this item was read; a bucket
                // the item does not list yet is a view recorded after the widget went out of
                // service, and it goes under its own rule.
                for log in &item.access_logs {
                    self.erase(u, log, Category::AccessLog, &mut erased).await?;
                }
                if erased.is_empty() {
                    return Ok(None);
                }
                let command = if item.deletion.is_some() {
                    WidgetCommand::Purge
                } else {
                    WidgetCommand::PurgeWithAccount
                };
                let stream = widget.stream();
                let loaded = u.load::<Widget>(&stream).await?;
                match u.try_decide(&stream, &loaded, command) {
                    // A `pro` page leaves the CDN too (R14).
                    Ok(_) => {
                        lightwidget_commands::outbox::purge_from_cdn_if_pro(
                            u,
                            widget,
                            loaded.state.plan,
                        )
                        .await?;
                    }
                    Err(lightwidget_domain::widget::WidgetError::Purged) => {}
                    Err(e) => return Ok(Some(Decided::Refused(e.to_string()))),
                }
            }
            category => {
                if !self
                    .erase(u, &item.subject_id, category, &mut erased)
                    .await?
                {
                    return Ok(None);
                }
            }
        }
        Ok(Some(Decided::Erased(erased)))
    }

    /// Decides the erasure of (subject, category) and shreds its key in the same append;
    /// false when it was erased before.
    async fn erase(
        &self,
        u: &mut Unit<'_>,
        subject: &Subject,
        category: Category,
        erased: &mut Vec<KeyRef>,
    ) -> Result<bool, CommandError> {
        let stream = retention_stream(subject);
        let command = Erase {
            subject: subject.clone(),
            category,
            account_id: self.item.account_id,
            rule: self.rule.to_owned(),
            due_at: self.due_at,
        };
        // Several erasures of one subject in one unit share its stream, appended with the
        // version read first.
        let loaded = u.load::<SubjectErasures>(&stream).await?;
        match u.try_decide(&stream, &loaded, command) {
            Ok(_) => {
                u.shred([KeyRef::new(subject.clone(), category)]);
                erased.push(KeyRef::new(subject.clone(), category));
                Ok(true)
            }
            Err(ErasureError::AlreadyErased) => Ok(false),
            // The rule's date came from the projection; the sweeper's clock is the same.
            Err(ErasureError::NotDue(_)) => Ok(false),
        }
    }
}

/// The archiving of one held item past its date (R21): decided on the account's stream
/// (whose holds must still be in force; loaded, it is fenced, so a release at the same
/// moment makes the append conflict and the retry sees it) and on the subject's retention
/// stream (which archives a category once, and never after its erasure).
struct ArchiveUnit<'a> {
    item: &'a ItemFacts,
    rule: &'a str,
    due_at: DateTime<Utc>,
}

#[async_trait::async_trait]
impl UseCase for ArchiveUnit<'_> {
    /// The holds that keep the item, or `None` when there was nothing to archive.
    type Output = Option<Vec<HoldId>>;

    async fn run(&self, u: &mut Unit<'_>) -> Result<Option<Vec<HoldId>>, CommandError> {
        let item = self.item;
        let Some(account) = item.account_id else {
            return Ok(None);
        };
        let holds: Vec<HoldId> = u
            .load::<Account>(&account.stream())
            .await?
            .state
            .legal_holds
            .into_iter()
            .collect();
        let stream = retention_stream(&item.subject_id);
        let loaded = u.load::<SubjectArchive>(&stream).await?;
        let command = Archive {
            subject: item.subject_id.clone(),
            category: item.category,
            account_id: Some(account),
            rule: self.rule.to_owned(),
            due_at: self.due_at,
            holds: holds.clone(),
        };
        match u.try_decide(&stream, &loaded, command) {
            Ok(_) => Ok(Some(holds)),
            // Released meanwhile (the purge takes it), archived or erased by another sweep.
            Err(_) => {
                u.discard();
                Ok(None)
            }
        }
    }
}

fn widget_of(subject: &Subject) -> Option<WidgetId> {
    subject.as_str().strip_prefix("widget:")?.parse().ok()
}
