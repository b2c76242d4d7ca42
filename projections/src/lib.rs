//! Read models as projections of the log. A projection has a name and turns each event into
//! changes of its documents ([`ViewChange`]); it may read the documents it changes.
//!
//! This crate holds the projection contract and its in-memory evaluation, which computes a
//! projection from position 1 up to a given position — what an auditor's "as of" replay is.
//! The runner that keeps projections in the database follows with the read models.

use lightwidget_domain::DomainEvent;
use lightwidget_store::{EventStore, RecordedEvent, StoreError};
use std::collections::BTreeMap;

/// One change to one document of a projection's view.
#[derive(Clone, Debug, PartialEq)]
pub enum ViewChange {
    Put { key: String, doc: serde_json::Value },
    Delete { key: String },
}

/// Read access to a projection's current documents while it handles an event.
pub trait ViewReader {
    fn get(&self, key: &str) -> Option<&serde_json::Value>;
}

impl ViewReader for BTreeMap<String, serde_json::Value> {
    fn get(&self, key: &str) -> Option<&serde_json::Value> {
        BTreeMap::get(self, key)
    }
}

/// A read model. `handle` must be deterministic: the same history yields the same documents,
/// which is what makes rebuilds and "as of" replays agree with the live view.
pub trait Projection: Send + Sync {
    fn name(&self) -> &'static str;
    fn handle(
        &self,
        event: &RecordedEvent,
        domain: &DomainEvent,
        view: &dyn ViewReader,
    ) -> Vec<ViewChange>;
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("event at position {position} could not be decoded: {message}")]
    Decode { position: u64, message: String },
}

/// Applies changes to an in-memory view.
pub fn apply(view: &mut BTreeMap<String, serde_json::Value>, changes: Vec<ViewChange>) {
    for c in changes {
        match c {
            ViewChange::Put { key, doc } => {
                view.insert(key, doc);
            }
            ViewChange::Delete { key } => {
                view.remove(&key);
            }
        }
    }
}

/// The projection's documents as they stood after position `at` (inclusive), computed by
/// streaming the log in batches — the log is never loaded whole.
pub async fn evaluate_as_of(
    store: &dyn EventStore,
    projection: &dyn Projection,
    at: u64,
) -> Result<BTreeMap<String, serde_json::Value>, ProjectionError> {
    let mut view = BTreeMap::new();
    let mut after = 0;
    while after < at {
        let limit = (at - after).min(1000) as usize;
        let batch = store.read_all(after, limit).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for e in &batch {
            let domain = e.to_domain().map_err(|err| ProjectionError::Decode {
                position: e.position,
                message: err.to_string(),
            })?;
            let changes = projection.handle(e, &domain, &view);
            apply(&mut view, changes);
        }
    }
    Ok(view)
}
