//! Hotline's domain model. Everything here is pure: no database, no broker, no clock reads.
//! Callers pass the time in, so tests can move it freely.

pub mod appeal;
pub mod calendar;
pub mod case;
pub mod classify;
pub mod deadlines;
pub mod district;
pub mod generator;
pub mod hotspots;
pub mod phone;
pub mod playbooks;
pub mod rates;
pub mod repeats;
pub mod returns;
pub mod routing;
pub mod schools;
pub mod seeds;
pub mod special;
pub mod text;
pub mod topic;
pub mod units;

pub use topic::TopicCode;
pub use units::UnitCode;

/// A seed file that does not parse. Seeds are compiled in, so this is a build-time defect that the
/// tests catch; at run time it can only come from a file an admin loads.
#[derive(Debug, thiserror::Error)]
#[error("{file}: line {line}: {message}")]
pub struct SeedError {
    pub file: &'static str,
    pub line: usize,
    pub message: String,
}

impl SeedError {
    pub(crate) fn new(file: &'static str, line: usize, message: impl Into<String>) -> Self {
        Self {
            file,
            line,
            message: message.into(),
        }
    }
}
