//! The real view store, with its document reads and the commits under way counted.

use lightwidget_store::{DocChange, StoreError, ViewDoc, ViewQuery, ViewStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct Counted {
    inner: Arc<dyn ViewStore>,
    /// `get_many` calls so far.
    pub reads: AtomicUsize,
    /// Commits begun and not yet ended.
    pub commits_now: AtomicUsize,
}

impl Counted {
    pub fn new(inner: Arc<dyn ViewStore>) -> Self {
        Counted {
            inner,
            reads: AtomicUsize::new(0),
            commits_now: AtomicUsize::new(0),
        }
    }
}

#[async_trait::async_trait]
impl ViewStore for Counted {
    async fn get_many(&self, view: &str, keys: &[String]) -> Result<Vec<ViewDoc>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_many(view, keys).await
    }
    async fn checkpoint(&self, view: &str) -> Result<u64, StoreError> {
        self.inner.checkpoint(view).await
    }
    async fn commit(
        &self,
        view: &str,
        from: u64,
        to: u64,
        changes: &[DocChange],
    ) -> Result<(), StoreError> {
        self.commits_now.fetch_add(1, Ordering::SeqCst);
        let done = self.inner.commit(view, from, to, changes).await;
        self.commits_now.fetch_sub(1, Ordering::SeqCst);
        done
    }
    async fn query(&self, view: &str, query: &ViewQuery) -> Result<Vec<ViewDoc>, StoreError> {
        self.inner.query(view, query).await
    }
    async fn drop_view(&self, view: &str) -> Result<(), StoreError> {
        self.inner.drop_view(view).await
    }
    async fn swap(&self, building: &str, live: &str) -> Result<(), StoreError> {
        self.inner.swap(building, live).await
    }
    fn live_batch_size(&self) -> usize {
        self.inner.live_batch_size()
    }
}
