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
use crate::projection::{self, ItemFacts, Retention};
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use lightwidget_commands::{load, CommandError};
use lightwidget_domain::account::{Account, AccountCommand};
use lightwidget_domain::retention::{retention_stream, Erase, ErasureError, SubjectErasures};
use lightwidget_domain::widget::{Widget, WidgetCommand};
use lightwidget_domain::{AccountId, Aggregate, Category, Subject, WidgetId};
use lightwidget_projections::{ProjectionError, Runner};
use lightwidget_store::{
    AppendRequest, Clock, EventStore, ExpectedVersion, Metadata, StoreError, StreamWrite,
    ViewQuery, ViewStore,
};
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

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub purged: Vec<PurgedItem>,
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

fn decode_err<E: std::fmt::Debug + std::fmt::Display>(e: CommandError<E>) -> SweepError {
    match e {
        CommandError::Store(s) => SweepError::Store(s),
        other => SweepError::Decode(other.to_string()),
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
}

/// A unit's writes, decided against the streams as read.
struct Unit {
    writes: Vec<StreamWrite>,
    shred: Vec<(Subject, Category)>,
    erased: Vec<(Subject, Category)>,
}

enum Decided {
    Append(Unit),
    /// Nothing left to do (another sweep did it).
    Done,
    /// A domain rule refuses the purge now.
    Refused(String),
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
        }
    }

    /// One sweep: everything due now and not held is purged, exactly once.
    pub async fn sweep(&self) -> Result<SweepReport, SweepError> {
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
                let Ok(facts) = serde_json::from_value::<ItemFacts>(doc.doc["facts"].clone())
                else {
                    tracing::warn!(key = %doc.key, "retention item without readable facts");
                    return None;
                };
                let rule = doc.doc["rule"].as_str().unwrap_or_default().to_owned();
                let cause = doc.doc["cause_position"].as_u64();
                Some((facts, rule, doc.due_at?, cause))
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
        for _ in 0..ATTEMPTS {
            let decided = self.decide(item, rule, due_at, meta).await?;
            let unit = match decided {
                Decided::Append(u) => u,
                Decided::Done => return Ok(Some(vec![])),
                Decided::Refused(why) => {
                    tracing::info!(
                        subject = %item.subject_id,
                        category = %item.category,
                        reason = %why,
                        "purge refused"
                    );
                    return Ok(None);
                }
            };
            let request = AppendRequest {
                writes: unit.writes,
                shred: unit.shred,
            };
            match self.store.append(request).await {
                Ok(r) => {
                    return Ok(Some(
                        unit.erased
                            .into_iter()
                            .map(|(subject_id, category)| PurgedItem {
                                subject_id,
                                category,
                                account_id: item.account_id,
                                rule: rule.to_owned(),
                                due_at,
                                position: r.last_position,
                            })
                            .collect(),
                    ))
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(SweepError::Contended(format!(
            "{} ({})",
            item.subject_id, item.category
        )))
    }

    async fn decide(
        &self,
        item: &ItemFacts,
        rule: &str,
        due_at: DateTime<Utc>,
        meta: &Metadata,
    ) -> Result<Decided, SweepError> {
        let now = self.clock.now();
        let mut unit = Unit {
            writes: vec![],
            shred: vec![],
            erased: vec![],
        };
        let subject = item.subject_id.as_str();
        match item.category {
            Category::Profile if subject.starts_with("account:") => {
                let Some(account) = item.account_id else {
                    return Ok(Decided::Refused("no account".into()));
                };
                if !self
                    .erase(
                        &mut unit,
                        &item.subject_id,
                        Category::Profile,
                        item.account_id,
                        rule,
                        due_at,
                        meta,
                    )
                    .await?
                {
                    return Ok(Decided::Done);
                }
                match self
                    .decide_on::<Account>(&account.stream(), AccountCommand::Purge, now, meta)
                    .await?
                {
                    Ok(w) => unit.writes.push(w),
                    Err(lightwidget_domain::account::AccountError::Purged) => {}
                    Err(e) => return Ok(Decided::Refused(e.to_string())),
                }
            }
            Category::WidgetContent | Category::Statistics => {
                let Some(widget) = item.widget_id.or_else(|| widget_of(&item.subject_id)) else {
                    return Ok(Decided::Refused("no widget".into()));
                };
                let subject = Subject::widget(widget);
                let mut any = false;
                for c in [Category::WidgetContent, Category::Statistics] {
                    any |= self
                        .erase(&mut unit, &subject, c, item.account_id, rule, due_at, meta)
                        .await?;
                }
                for log in &item.access_logs {
                    any |= self
                        .erase(
                            &mut unit,
                            log,
                            Category::AccessLog,
                            item.account_id,
                            rule,
                            due_at,
                            meta,
                        )
                        .await?;
                }
                // The access-log buckets the projection saw when this item was read; a bucket
                // the item does not list yet is a view recorded after the widget went out of
                // service, and it goes under its own rule.
                if !any {
                    return Ok(Decided::Done);
                }
                let command = if item.deletion.is_some() {
                    WidgetCommand::Purge
                } else {
                    WidgetCommand::PurgeWithAccount
                };
                match self
                    .decide_on::<Widget>(&widget.stream(), command, now, meta)
                    .await?
                {
                    Ok(w) => unit.writes.push(w),
                    Err(lightwidget_domain::widget::WidgetError::Purged) => {}
                    Err(e) => return Ok(Decided::Refused(e.to_string())),
                }
            }
            category => {
                if !self
                    .erase(
                        &mut unit,
                        &item.subject_id,
                        category,
                        item.account_id,
                        rule,
                        due_at,
                        meta,
                    )
                    .await?
                {
                    return Ok(Decided::Done);
                }
            }
        }
        // Every purge of an account's data fences on the account's stream, where its legal
        // holds live: a hold placed after this decision makes the append conflict, and the
        // retry sees the hold (R21). The profile unit writes that stream already.
        if let Some(account) = item.account_id {
            let stream = account.stream();
            if !unit.writes.iter().any(|w| w.stream == stream) {
                let loaded = load::<Account>(&*self.store, &stream)
                    .await
                    .map_err(decode_err)?;
                if !loaded.state.legal_holds.is_empty() {
                    return Ok(Decided::Refused("the account is under a legal hold".into()));
                }
                unit.writes.push(StreamWrite::fence(stream, loaded.version));
            }
        }
        Ok(Decided::Append(unit))
    }

    /// Adds the erasure of (subject, category) to the unit; false when it was erased before.
    #[allow(clippy::too_many_arguments)]
    async fn erase(
        &self,
        unit: &mut Unit,
        subject: &Subject,
        category: Category,
        account_id: Option<AccountId>,
        rule: &str,
        due_at: DateTime<Utc>,
        meta: &Metadata,
    ) -> Result<bool, SweepError> {
        let stream = retention_stream(subject);
        let command = Erase {
            subject: subject.clone(),
            category,
            account_id,
            rule: rule.to_owned(),
            due_at,
        };
        match self
            .decide_on::<SubjectErasures>(&stream, command, self.clock.now(), meta)
            .await?
        {
            Ok(w) => {
                // Several erasures of one subject in one unit share its stream, appended
                // with the version read first.
                match unit.writes.iter_mut().find(|x| x.stream == stream) {
                    Some(x) => x.events.extend(w.events),
                    None => unit.writes.push(w),
                }
                unit.shred.push((subject.clone(), category));
                unit.erased.push((subject.clone(), category));
                Ok(true)
            }
            Err(ErasureError::AlreadyErased) => Ok(false),
            // The rule's date came from the projection; the sweeper's clock is the same.
            Err(ErasureError::NotDue(_)) => Ok(false),
        }
    }

    /// Loads an aggregate and decides a command: the write to append (with the version read),
    /// or the aggregate's refusal.
    async fn decide_on<A>(
        &self,
        stream: &str,
        command: A::Command,
        now: DateTime<Utc>,
        meta: &Metadata,
    ) -> Result<Result<StreamWrite, A::Error>, SweepError>
    where
        A: Aggregate,
        A::Error: std::fmt::Display,
    {
        let loaded = load::<A>(&*self.store, stream).await.map_err(decode_err)?;
        Ok(loaded.state.decide(command, now).map(|events| {
            StreamWrite::of(
                stream,
                ExpectedVersion::Exact(loaded.version),
                &events,
                meta,
            )
        }))
    }
}

fn widget_of(subject: &Subject) -> Option<WidgetId> {
    subject.as_str().strip_prefix("widget:")?.parse().ok()
}
