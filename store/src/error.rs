//! The store's one error type. Adapters map their drivers' errors into it; the API maps it to
//! HTTP in one place. Messages carry ids and counts, never payloads.

use crate::ExpectedVersion;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stream `{stream}` is at version {actual}, expected {expected}")]
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        actual: u64,
    },
    #[error("event id {0} was already stored with other content or in another stream")]
    IdempotencyMismatch(uuid::Uuid),
    #[error("an append needs at least one event")]
    EmptyBatch,
    #[error("an append holds {events} events; at most {max} are allowed")]
    BatchTooLarge { events: usize, max: usize },
    #[error("an event's data is {bytes} bytes; at most {max} are allowed")]
    EventTooLarge { bytes: usize, max: usize },
    #[error("invalid stream name: {0}")]
    InvalidStream(String),
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("internal store error: {0}")]
    Internal(String),
}

impl StoreError {
    /// True for errors a caller may retry as they are (a lost connection, a busy database).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // Constraint violations carry the offending key in `detail`; the top-level message
        // names only the constraint.
        match e.as_db_error() {
            // The server is going away or not yet back (shutdown, restart, recovery), or
            // the connection broke: unavailable, to be tried again, never an internal error.
            Some(db)
                if db.code().code().starts_with("57P") || db.code().code().starts_with("08") =>
            {
                StoreError::Unavailable(format!("postgres {}", db.code().code()))
            }
            Some(db) => {
                // The message may quote an input value: quoted parts are blanked.
                StoreError::Internal(format!(
                    "postgres {}: {}",
                    db.code().code(),
                    lightwidget_domain::event::redact_values(db.message())
                ))
            }
            None if e.is_closed() => StoreError::Unavailable("postgres connection closed".into()),
            None => StoreError::Unavailable(format!("postgres: {e}")),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Unavailable(format!("postgres pool: {e}"))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Unavailable(format!("sqlite: {e}"))
            }
            // Out of space: nothing was written (the transaction rolled back), and a retry
            // succeeds once there is room again.
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::Unavailable(
                "sqlite: the database or its disk is full; nothing was written".into(),
            ),
            _ => StoreError::Internal(format!("sqlite: {e}")),
        }
    }
}
