//! Following the log: read `position > checkpoint` in batches, and when caught up wait for
//! the store's notification (or the poll interval, whichever comes first). Because positions
//! are assigned in commit order and without gaps, this never skips an event.

use crate::{EventStore, RecordedEvent, StoreError};
use std::sync::Arc;
use std::time::Duration;

pub struct Subscription {
    store: Arc<dyn EventStore>,
    checkpoint: u64,
    batch_size: usize,
    poll: Duration,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("checkpoint", &self.checkpoint)
            .finish()
    }
}

impl Subscription {
    /// Follows the log from just after `checkpoint`.
    pub fn new(store: Arc<dyn EventStore>, checkpoint: u64) -> Self {
        Subscription {
            store,
            checkpoint,
            batch_size: 500,
            poll: Duration::from_millis(500),
        }
    }

    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The poll interval: the longest a subscriber sleeps when no notification comes.
    pub fn with_poll_interval(mut self, d: Duration) -> Self {
        self.poll = d;
        self
    }

    /// The position of the last event handed out.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// The next non-empty batch in position order; waits while the log has nothing new.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>, StoreError> {
        loop {
            let batch = self
                .store
                .read_all(self.checkpoint, self.batch_size)
                .await?;
            if let Some(last) = batch.last() {
                self.checkpoint = last.position;
                return Ok(batch);
            }
            self.store.wait_for(self.checkpoint, self.poll).await;
        }
    }
}
