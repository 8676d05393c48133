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
    /// True when retrying later can succeed: the database could not be reached, or it refused
    /// for a passing reason (restarting, failing over, a deadlock or serialization conflict, no
    /// connection slots). A consumer retries these without limit instead of dead-lettering the
    /// record, which would let the case's later events overtake it.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            StoreError::Database(sqlx::Error::Database(error)) => error
                .code()
                .is_some_and(|code| is_transient_sqlstate(&code)),
            _ => false,
        }
    }
}

/// PostgreSQL's error codes (SQLSTATE) for conditions that pass: connection exceptions (08),
/// transaction rollbacks such as deadlocks and serialization failures (40), insufficient
/// resources such as too many connections (53), operator intervention such as a shutdown or a
/// restart (57, but not a statement timeout), a lock not available (55P03) and a read-only
/// transaction, which is what a former primary answers during a failover (25006).
pub fn is_transient_sqlstate(code: &str) -> bool {
    // A statement timeout (57014) is left out: a query that always times out would stall its
    // partition for good.
    code != "57014"
        && (matches!(code.get(..2), Some("08" | "40" | "53" | "57"))
            || matches!(code, "55P03" | "25006"))
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::is_transient_sqlstate;

    #[test]
    fn passing_conditions_are_told_from_errors_a_retry_cannot_fix() {
        let cases = [
            ("40P01", true),  // deadlock detected
            ("40001", true),  // serialization failure
            ("57P01", true),  // admin shutdown
            ("57P03", true),  // cannot connect now (starting up)
            ("57014", false), // statement timeout: it may never pass
            ("53300", true),  // too many connections
            ("08006", true),  // connection failure
            ("25006", true),  // read-only transaction (failover)
            ("55P03", true),  // lock not available
            ("23505", false), // unique violation
            ("23503", false), // foreign key violation
            ("22P02", false), // invalid text representation
            ("42P01", false), // undefined table
            ("55000", false), // object not in prerequisite state
            ("", false),
            ("4", false),
        ];
        for (code, transient) in cases {
            assert_eq!(is_transient_sqlstate(code), transient, "{code}");
        }
    }
}
