//! PostgreSQL, Hotline's system of record. Functions take a connection (or a transaction) so the
//! caller decides what commits together: business rows, outbox rows and processed-event keys
//! always go in one transaction.

pub mod appeals;
pub mod calendar;
pub mod cases;
pub mod corrections;
pub mod db;
pub mod deadlines;
pub mod extensions;
pub mod outbox;
pub mod proactive;
pub mod processed;
pub mod rates;
pub mod tokens;
pub mod webhooks;

pub use sqlx::{PgConnection, PgPool, Postgres, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored row is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// True when the database could not be reached at all; retrying later can succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Tls(_)
            )
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
