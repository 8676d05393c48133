//! Webhook deliveries to units: queued by the notifier in the same transaction as its
//! processed-event claim, sent in per-case order, parked after the retry budget.

use crate::Result;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Delivery {
    pub id: Uuid,
    pub unit_code: String,
    pub case_id: Uuid,
    pub sequence: i64,
    pub event_id: Uuid,
    pub event_type: String,
    #[serde(skip)]
    pub body: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub last_http_status: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Endpoint {
    pub unit_code: String,
    pub url: String,
    pub secret: String,
}

/// Units with an active or just-ended part in the case at `at` that have a webhook.
pub async fn endpoints_for_case(
    conn: &mut PgConnection,
    case_id: Uuid,
    at: DateTime<Utc>,
    also: &[String],
) -> Result<Vec<Endpoint>> {
    Ok(sqlx::query_as::<_, Endpoint>(
        "SELECT u.code AS unit_code, u.webhook_url AS url, u.webhook_secret AS secret
         FROM units u
         WHERE u.webhook_url IS NOT NULL AND u.webhook_secret IS NOT NULL
           AND (u.code = ANY($3) OR EXISTS (
                SELECT 1 FROM assignments a
                WHERE a.case_id = $1 AND a.unit_code = u.code
                  AND a.assigned_at <= $2 AND (a.ended_at IS NULL OR a.ended_at >= $2)))
         ORDER BY u.code",
    )
    .bind(case_id)
    .bind(at)
    .bind(also)
    .fetch_all(conn)
    .await?)
}

pub async fn endpoint(conn: &mut PgConnection, unit: &str) -> Result<Option<Endpoint>> {
    Ok(sqlx::query_as::<_, Endpoint>(
        "SELECT code AS unit_code, webhook_url AS url, webhook_secret AS secret FROM units
         WHERE code = $1 AND webhook_url IS NOT NULL AND webhook_secret IS NOT NULL",
    )
    .bind(unit)
    .fetch_optional(conn)
    .await?)
}

/// Sets (or, with `None`, removes) a unit's webhook. Returns false for an unknown unit.
pub async fn set_endpoint(
    conn: &mut PgConnection,
    unit: &str,
    endpoint: Option<(&str, &str)>,
) -> Result<bool> {
    let done =
        sqlx::query("UPDATE units SET webhook_url = $2, webhook_secret = $3 WHERE code = $1")
            .bind(unit)
            .bind(endpoint.map(|e| e.0))
            .bind(endpoint.map(|e| e.1))
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

pub struct NewDelivery<'a> {
    pub id: Uuid,
    pub unit_code: &'a str,
    pub case_id: Uuid,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub at: DateTime<Utc>,
}

/// Queues a delivery with the next sequence number of (unit, case). The body is built by the
/// caller from that number; returns `None` if this event was already queued for the unit.
pub async fn enqueue(
    conn: &mut PgConnection,
    delivery: &NewDelivery<'_>,
    body: impl FnOnce(i64) -> String,
) -> Result<Option<i64>> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE unit_code = $1 AND event_id = $2)",
    )
    .bind(delivery.unit_code)
    .bind(delivery.event_id)
    .fetch_one(&mut *conn)
    .await?;
    if exists {
        return Ok(None);
    }
    let sequence: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(sequence), 0) + 1 FROM webhook_deliveries
         WHERE unit_code = $1 AND case_id = $2",
    )
    .bind(delivery.unit_code)
    .bind(delivery.case_id)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO webhook_deliveries
             (id, unit_code, case_id, sequence, event_id, event_type, body, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(delivery.id)
    .bind(delivery.unit_code)
    .bind(delivery.case_id)
    .bind(sequence)
    .bind(delivery.event_id)
    .bind(delivery.event_type)
    .bind(body(sequence))
    .bind(delivery.at)
    .execute(conn)
    .await?;
    Ok(Some(sequence))
}

/// Locks the next delivery that is due and first in line for its (unit, case): nothing earlier
/// for the same unit and case is still pending or parked. Skips rows another sender holds.
pub async fn lock_next_due(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
) -> Result<Option<Delivery>> {
    Ok(sqlx::query_as::<_, Delivery>(
        "SELECT d.* FROM webhook_deliveries d
         WHERE d.status = 'pending' AND d.next_attempt_at <= $1
           AND NOT EXISTS (
               SELECT 1 FROM webhook_deliveries e
               WHERE e.unit_code = d.unit_code AND e.case_id = d.case_id
                 AND e.sequence < d.sequence AND e.status IN ('pending', 'failed'))
         ORDER BY d.next_attempt_at, d.sequence
         LIMIT 1
         FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .fetch_optional(conn)
    .await?)
}

pub async fn mark_delivered(
    conn: &mut PgConnection,
    id: Uuid,
    http_status: u16,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1,
             delivered_at = $3, last_http_status = $2, last_error = NULL
         WHERE id = $1",
    )
    .bind(id)
    .bind(i32::from(http_status))
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// One failed attempt: retry at `retry_at`, or park it (`None`: the budget is spent).
pub async fn mark_attempt_failed(
    conn: &mut PgConnection,
    id: Uuid,
    error: &str,
    http_status: Option<u16>,
    retry_at: Option<DateTime<Utc>>,
) -> Result<()> {
    sqlx::query(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = $2,
             last_http_status = $3,
             status = CASE WHEN $4::timestamptz IS NULL THEN 'failed' ELSE 'pending' END,
             next_attempt_at = coalesce($4, next_attempt_at)
         WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(http_status.map(i32::from))
    .bind(retry_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// An admin's decision on a parked delivery: send it again from a fresh budget, or skip it so the
/// case's later deliveries go. Returns false when the delivery is not parked.
pub async fn resolve_parked(
    conn: &mut PgConnection,
    id: Uuid,
    retry: bool,
    by: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries
         SET status = CASE WHEN $2 THEN 'pending' ELSE 'skipped' END,
             attempts = CASE WHEN $2 THEN 0 ELSE attempts END,
             next_attempt_at = $4, resolved_by = $3
         WHERE id = $1 AND status = 'failed'",
    )
    .bind(id)
    .bind(retry)
    .bind(by)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Skips a delivery that can no longer be sent (its unit removed the webhook).
pub async fn skip(conn: &mut PgConnection, id: Uuid, why: &str) -> Result<()> {
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'skipped', last_error = $2, resolved_by = 'system'
         WHERE id = $1",
    )
    .bind(id)
    .bind(why)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn list(
    conn: &mut PgConnection,
    status: Option<&str>,
    unit: Option<&str>,
    case_id: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Delivery>> {
    Ok(sqlx::query_as::<_, Delivery>(
        "SELECT * FROM webhook_deliveries
         WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR unit_code = $2)
           AND ($3::uuid IS NULL OR case_id = $3)
         ORDER BY created_at, sequence LIMIT $4",
    )
    .bind(status)
    .bind(unit)
    .bind(case_id)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Parked deliveries, for the alerting gauge.
pub async fn parked_count(conn: &mut PgConnection) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'failed'")
            .fetch_one(conn)
            .await?,
    )
}
