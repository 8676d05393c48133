//! The workers of the pipeline. Each is a [`hotline_bus::Handler`] run by the one consumer loop,
//! except the relay (outbox → Kafka) and the deadline scanner (clocks → alerts), which poll
//! PostgreSQL.

pub mod calendar;
pub mod classifier;
pub mod clock;
pub mod notifier;
pub mod proactive;
pub mod relay;
pub mod router;
pub mod tracker;

use hotline_bus::HandlerError;
use hotline_store::StoreError;

pub use clock::{Clock, SystemClock};

pub(crate) fn store_error(error: StoreError) -> HandlerError {
    if error.is_unavailable() {
        HandlerError::Unavailable(error.to_string())
    } else {
        HandlerError::Failed(error.to_string())
    }
}

pub(crate) fn sqlx_error(error: sqlx::Error) -> HandlerError {
    store_error(StoreError::from(error))
}

pub(crate) fn parse_uuid(raw: &str, field: &str) -> Result<uuid::Uuid, HandlerError> {
    uuid::Uuid::parse_str(raw).map_err(|e| HandlerError::Rejected(format!("{field} `{raw}`: {e}")))
}
