//! The `ViewStore` port: read-model documents per view and key, with a checkpoint per view
//! that moves in the same transaction as the documents. That is what gives a projection an
//! exactly-once effect: a crash between "apply" and "remember where I am" cannot happen,
//! because they are one commit.

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One document of a view, with the fields queries filter on.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ViewDoc {
    pub key: String,
    pub doc: serde_json::Value,
    pub owner: Option<String>,
    pub state: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
}

impl ViewDoc {
    pub fn new(key: impl Into<String>, doc: serde_json::Value) -> Self {
        ViewDoc {
            key: key.into(),
            doc,
            owner: None,
            state: None,
            due_at: None,
        }
    }
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }
    pub fn state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }
    pub fn due_at(mut self, due_at: DateTime<Utc>) -> Self {
        self.due_at = Some(due_at);
        self
    }

    /// A document written from its typed form (a read model's document struct).
    pub fn typed<T: serde::Serialize>(key: impl Into<String>, doc: &T) -> Result<Self, StoreError> {
        let doc = serde_json::to_value(doc)
            .map_err(|e| StoreError::InvalidPayload(format!("a document: {e}")))?;
        Ok(ViewDoc::new(key, doc))
    }

    /// The document read as its typed form; `T` may borrow strings from it. A document that
    /// does not fit is `Corrupt`: the message names the key and the field, never a value.
    pub fn read<'a, T: serde::Deserialize<'a>>(&'a self) -> Result<T, StoreError> {
        // The plain decoder first (the hot path: every page and query reads a document);
        // only a document that does not fit is read again, tracking the path, to name the
        // field.
        if let Ok(t) = T::deserialize(&self.doc) {
            return Ok(t);
        }
        serde_path_to_error::deserialize(&self.doc).map_err(|e| {
            StoreError::Corrupt(format!(
                "document `{}`: the field `{}` does not fit its type",
                self.key,
                e.path()
            ))
        })
    }
}

/// A change to a view's documents.
#[derive(Clone, Debug, PartialEq)]
pub enum DocChange {
    Put(ViewDoc),
    Delete(String),
    /// Deletes every document whose `owner` is this (a purged widget's statistics).
    DeleteOwner(String),
}

impl DocChange {
    /// The key a keyed change concerns (`None` for `DeleteOwner`).
    pub fn key(&self) -> Option<&str> {
        match self {
            DocChange::Put(d) => Some(&d.key),
            DocChange::Delete(k) => Some(k),
            DocChange::DeleteOwner(_) => None,
        }
    }
}

/// A filter on a view's indexed fields. Results come ordered by `due_at` then key when
/// `due_before` is given, else by key; `after_key` pages through them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ViewQuery {
    pub owner: Option<String>,
    pub state: Option<String>,
    pub due_before: Option<DateTime<Utc>>,
    pub after_key: Option<String>,
    pub limit: usize,
}

/// How many documents a whole-view query reads at a time.
pub const QUERY_PAGE: usize = 500;

/// The right to be the one process that writes a view, among the processes sharing a store.
/// Dropping it gives it up. [`Lease::lost`] resolves if it is lost while held (on PostgreSQL:
/// the connection that holds the advisory lock ended, as when the database restarts).
pub struct Lease {
    lost: Option<tokio::sync::watch::Receiver<bool>>,
    _hold: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Lease {
    /// The lease of a store no other process shares: never lost.
    pub fn unshared() -> Self {
        Lease {
            lost: None,
            _hold: None,
        }
    }

    /// A lease kept while `hold` lives; `lost` turns true if it ends.
    pub fn held(
        lost: tokio::sync::watch::Receiver<bool>,
        hold: Box<dyn std::any::Any + Send + Sync>,
    ) -> Self {
        Lease {
            lost: Some(lost),
            _hold: Some(hold),
        }
    }

    /// Resolves when the lease is lost; never, for an unshared one.
    pub async fn lost(&self) {
        match &self.lost {
            Some(rx) => {
                let mut rx = rx.clone();
                let _ = rx.wait_for(|lost| *lost).await;
            }
            None => std::future::pending().await,
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

#[async_trait]
pub trait ViewStore: Send + Sync + std::fmt::Debug {
    /// Takes the lease of `name`'s writer: `None` while another process holds it. A store
    /// only one process opens (the embedded one) always grants it.
    async fn try_lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let _ = name;
        Ok(Some(Lease::unshared()))
    }
    /// The log position `view` reflects (0 when it has never been built).
    async fn checkpoint(&self, view: &str) -> Result<u64, StoreError>;
    /// Applies `changes` and moves the checkpoint from `from` to `to`, in one transaction.
    /// Every `DeleteOwner` applies first, then the keyed changes, the last per key winning:
    /// callers send the final state of what they touched (the runner does).
    /// When the stored checkpoint is not `from` (another runner got there first), nothing
    /// is applied and the answer is `Conflict`.
    async fn commit(
        &self,
        view: &str,
        from: u64,
        to: u64,
        changes: &[DocChange],
    ) -> Result<(), StoreError>;
    /// The documents among `keys` that exist.
    async fn get_many(&self, view: &str, keys: &[String]) -> Result<Vec<ViewDoc>, StoreError>;
    async fn query(&self, view: &str, query: &ViewQuery) -> Result<Vec<ViewDoc>, StoreError>;
    /// Every document of `view` the query's owner and state select, in key order, read
    /// [`QUERY_PAGE`] at a time (`due_before`, `after_key` and `limit` are set here).
    async fn query_all(&self, view: &str, query: ViewQuery) -> Result<Vec<ViewDoc>, StoreError> {
        let mut out: Vec<ViewDoc> = Vec::new();
        loop {
            let page = ViewQuery {
                after_key: out.last().map(|d| d.key.clone()),
                limit: QUERY_PAGE,
                due_before: None,
                ..query.clone()
            };
            let docs = self.query(view, &page).await?;
            let done = docs.len() < QUERY_PAGE;
            out.extend(docs);
            if done {
                return Ok(out);
            }
        }
    }
    /// Removes every document and the checkpoint of `view`.
    async fn drop_view(&self, view: &str) -> Result<(), StoreError>;
    /// Atomically replaces `live` by `building` (documents and checkpoint); `building` is
    /// gone afterwards. Readers see either the old or the new view, never a mix.
    async fn swap(&self, building: &str, live: &str) -> Result<(), StoreError>;
    /// How many events a projection runner takes per batch on this storage unless told
    /// otherwise (`Runner::new`; rebuilds take much larger ones): fewer documents written per
    /// commit against fewer commits.
    fn live_batch_size(&self) -> usize {
        1000
    }
}

/// The owners to delete, then the last change of each key in first-seen order: the order
/// in which an adapter applies a commit.
pub fn commit_order(changes: &[DocChange]) -> (Vec<&str>, Vec<&DocChange>) {
    let mut owners = Vec::new();
    let mut order: Vec<&str> = Vec::new();
    let mut last: std::collections::HashMap<&str, &DocChange> = std::collections::HashMap::new();
    for c in changes {
        match c {
            DocChange::DeleteOwner(o) => owners.push(o.as_str()),
            keyed => {
                let k = keyed.key().unwrap_or_default();
                if last.insert(k, keyed).is_none() {
                    order.push(k);
                }
            }
        }
    }
    (owners, order.into_iter().map(|k| last[k]).collect())
}
