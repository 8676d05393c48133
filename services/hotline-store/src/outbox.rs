//! The transactional outbox. Business code calls [`enqueue`] inside its transaction; the relay
//! publishes rows in id order and marks them.

use crate::Result;
use hotline_events::{Event, Stream};
use sqlx::{PgConnection, Postgres, Transaction};

pub async fn enqueue(conn: &mut PgConnection, event: &Event) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (stream, aggregate_id, event_id, event_type, payload, traceparent)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(Stream::of(&event.payload).as_str())
    .bind(&event.aggregate_id)
    .bind(event.event_id)
    .bind(event.event_type())
    .bind(event.encode())
    .bind(&event.traceparent)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub stream: String,
    pub aggregate_id: String,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub payload: Vec<u8>,
    pub traceparent: Option<String>,
}

/// The oldest unpublished rows. Only one relay publishes at a time (a transaction-scoped advisory
/// lock), so rows of one aggregate are published in the order they were written. None when another
/// relay holds the lock.
pub async fn lock_batch(
    tx: &mut Transaction<'_, Postgres>,
    limit: i64,
) -> Result<Option<Vec<OutboxRow>>> {
    const RELAY_LOCK: i64 = 0x0068_6f74_6c69_6e65; // "hotline" in ASCII
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(RELAY_LOCK)
        .fetch_one(&mut **tx)
        .await?;
    if !locked {
        return Ok(None);
    }
    let rows = sqlx::query_as::<_, OutboxRow>(
        "SELECT id, stream, aggregate_id, event_id, event_type, payload, traceparent FROM outbox
         WHERE published_at IS NULL ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?;
    Ok(Some(rows))
}

pub async fn mark_published(conn: &mut PgConnection, ids: &[i64]) -> Result<()> {
    sqlx::query("UPDATE outbox SET published_at = now() WHERE id = ANY($1)")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn unpublished_count(conn: &mut PgConnection) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(conn)
            .await?,
    )
}

/// Deletes up to `limit` rows published before `before`; returns how many. Published rows are
/// only history: Kafka has them, and the business tables keep the truth.
pub async fn prune_published(
    conn: &mut PgConnection,
    before: chrono::DateTime<chrono::Utc>,
    limit: i64,
) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM outbox WHERE id IN (
             SELECT id FROM outbox WHERE published_at IS NOT NULL AND published_at < $1
             ORDER BY id LIMIT $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
