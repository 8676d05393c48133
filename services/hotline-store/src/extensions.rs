//! Extension requests (延期): one per case.

use crate::Result;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ExtensionRow {
    pub case_id: Uuid,
    pub unit_code: String,
    pub reason: String,
    pub working_days: i32,
    pub requested_at: DateTime<Utc>,
    pub decision: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decided_by: Option<String>,
    pub decision_note: Option<String>,
    pub new_due_at: Option<DateTime<Utc>>,
}

/// False when the case already has a request (a case is extended at most once).
pub async fn request(
    conn: &mut PgConnection,
    case_id: Uuid,
    unit: &str,
    reason: &str,
    working_days: i32,
    at: DateTime<Utc>,
) -> Result<bool> {
    let result = sqlx::query(
        "INSERT INTO extension_requests (case_id, unit_code, reason, working_days, requested_at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(case_id)
    .bind(unit)
    .bind(reason)
    .bind(working_days)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn get(conn: &mut PgConnection, case_id: Uuid) -> Result<Option<ExtensionRow>> {
    Ok(sqlx::query_as::<_, ExtensionRow>(
        "SELECT * FROM extension_requests WHERE case_id = $1 FOR UPDATE",
    )
    .bind(case_id)
    .fetch_optional(conn)
    .await?)
}

pub struct Decision<'a> {
    pub approved: bool,
    pub by: &'a str,
    pub note: &'a str,
    pub new_due_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

pub async fn decide(conn: &mut PgConnection, case_id: Uuid, d: &Decision<'_>) -> Result<()> {
    sqlx::query(
        "UPDATE extension_requests SET decision = $2, decided_by = $3, decision_note = $4,
             new_due_at = $5, decided_at = $6
         WHERE case_id = $1 AND decision IS NULL",
    )
    .bind(case_id)
    .bind(if d.approved { "approved" } else { "refused" })
    .bind(d.by)
    .bind(d.note)
    .bind(d.new_due_at)
    .bind(d.at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The running resolve clock of a case, if any.
pub async fn running_resolve_due(
    conn: &mut PgConnection,
    case_id: Uuid,
) -> Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar(
        "SELECT due_at FROM case_deadlines WHERE case_id = $1 AND kind = 'resolve'
           AND met_at IS NULL AND cancelled_at IS NULL ORDER BY id DESC LIMIT 1",
    )
    .bind(case_id)
    .fetch_optional(conn)
    .await?)
}
