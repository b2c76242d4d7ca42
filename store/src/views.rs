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
}

/// A change to one document.
#[derive(Clone, Debug, PartialEq)]
pub enum DocChange {
    Put(ViewDoc),
    Delete(String),
}

impl DocChange {
    pub fn key(&self) -> &str {
        match self {
            DocChange::Put(d) => &d.key,
            DocChange::Delete(k) => k,
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

#[async_trait]
pub trait ViewStore: Send + Sync + std::fmt::Debug {
    /// The log position `view` reflects (0 when it has never been built).
    async fn checkpoint(&self, view: &str) -> Result<u64, StoreError>;
    /// Applies `changes` and moves the checkpoint from `from` to `to`, in one transaction.
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
    /// Removes every document and the checkpoint of `view`.
    async fn drop_view(&self, view: &str) -> Result<(), StoreError>;
    /// Atomically replaces `live` by `building` (documents and checkpoint); `building` is
    /// gone afterwards. Readers see either the old or the new view, never a mix.
    async fn swap(&self, building: &str, live: &str) -> Result<(), StoreError>;
}

/// The last change of each key, in first-seen order: what a batch of changes amounts to.
pub fn last_change_per_key(changes: &[DocChange]) -> Vec<DocChange> {
    let mut order: Vec<&str> = Vec::new();
    let mut last: std::collections::HashMap<&str, &DocChange> = std::collections::HashMap::new();
    for c in changes {
        if last.insert(c.key(), c).is_none() {
            order.push(c.key());
        }
    }
    order.into_iter().map(|k| last[k].clone()).collect()
}
