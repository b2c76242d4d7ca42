//! The event store as the server uses it, with its appends measured for `/metrics`: how long
//! each takes, how many events it stored, and refusals by kind. Everything else is passed
//! through unchanged.

use crate::{
    AppendRequest, AppendResult, DataKey, EventStore, Head, KeyRef, KeyStore, StoreError,
    StoredEvent,
};
use async_trait::async_trait;
use lightwidget_domain::{Category, Subject};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug)]
pub struct MeteredStore(pub Arc<dyn EventStore>);

fn error_kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::Conflict { .. } => "conflict",
        StoreError::IdempotencyMismatch(_) => "idempotency",
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Corrupt(_) => "corrupt",
        StoreError::Internal(_) => "internal",
        _ => "invalid",
    }
}

#[async_trait]
impl KeyStore for MeteredStore {
    async fn data_keys(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, DataKey>, StoreError> {
        self.0.data_keys(ids).await
    }
    async fn shred(&self, refs: &[KeyRef]) -> Result<(), StoreError> {
        self.0.shred(refs).await
    }
    async fn has_key(&self, subject: &Subject, category: Category) -> Result<bool, StoreError> {
        self.0.has_key(subject, category).await
    }
    async fn archive(&self, refs: &[KeyRef]) -> Result<(), StoreError> {
        self.0.archive(refs).await
    }
    async fn archived_keys(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, DataKey>, StoreError> {
        self.0.archived_keys(ids).await
    }
}

#[async_trait]
impl EventStore for MeteredStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendResult, StoreError> {
        use tracing::Instrument;
        let events = request.event_count() as u64;
        let span = tracing::debug_span!("append", events, streams = request.writes.len());
        let start = std::time::Instant::now();
        let result = self.0.append(request).instrument(span).await;
        metrics::histogram!("lw_store_append_seconds").record(start.elapsed().as_secs_f64());
        match &result {
            Ok(r) if !r.duplicate => {
                metrics::counter!("lw_store_appended_events_total").increment(events)
            }
            Ok(_) => {}
            Err(e) => metrics::counter!("lw_store_append_errors_total", "kind" => error_kind(e))
                .increment(1),
        }
        result
    }
    async fn read_stream_raw(
        &self,
        stream: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.0.read_stream_raw(stream, after_version, limit).await
    }
    async fn read_all_raw(&self, after: u64, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
        self.0.read_all_raw(after, limit).await
    }
    async fn read_canonical(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<crate::chain::CanonicalPage, StoreError> {
        self.0.read_canonical(after, limit).await
    }
    async fn read_all_light(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.0.read_all_light(after, limit).await
    }
    async fn count_of(&self, after: u64, head: u64, types: &[&str]) -> Result<u64, StoreError> {
        self.0.count_of(after, head, types).await
    }
    async fn read_all_light_of(
        &self,
        after: u64,
        limit: usize,
        types: &[&str],
    ) -> Result<(Vec<StoredEvent>, u64), StoreError> {
        self.0.read_all_light_of(after, limit, types).await
    }
    async fn import(&self, events: &[StoredEvent]) -> Result<Head, StoreError> {
        self.0.import(events).await
    }
    async fn scrub(&self) -> Result<bool, StoreError> {
        self.0.scrub().await
    }
    async fn tree_hashes(&self, indexes: &[u64]) -> Result<Vec<[u8; 32]>, StoreError> {
        self.0.tree_hashes(indexes).await
    }
    async fn record_checkpoint(&self, c: &crate::SignedCheckpoint) -> Result<(), StoreError> {
        self.0.record_checkpoint(c).await
    }
    async fn checkpoints(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::SignedCheckpoint>, StoreError> {
        self.0.checkpoints(after, limit).await
    }
    async fn latest_checkpoint(&self) -> Result<Option<crate::SignedCheckpoint>, StoreError> {
        self.0.latest_checkpoint().await
    }
    async fn head(&self) -> Result<Head, StoreError> {
        self.0.head().await
    }
    async fn wait_for(&self, after: u64, timeout: Duration) {
        self.0.wait_for(after, timeout).await
    }
}
