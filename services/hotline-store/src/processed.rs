//! Processed-event keys: the idempotency of every consumer.

use crate::Result;
use sqlx::PgConnection;
use uuid::Uuid;

/// Records that `consumer` handled `event_id`. False when it already had: the caller must then
/// skip the effects. Call it first inside the transaction that carries the effects.
pub async fn claim(conn: &mut PgConnection, consumer: &str, event_id: Uuid) -> Result<bool> {
    let result = sqlx::query(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .execute(conn)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Deletes up to `limit` keys recorded before `before`; returns how many. Keys must outlive every
/// chance of a redelivery: Kafka's retention and the dead-letter redrive window.
pub async fn prune(
    conn: &mut PgConnection,
    before: chrono::DateTime<chrono::Utc>,
    limit: i64,
) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM processed_events WHERE ctid IN (
             SELECT ctid FROM processed_events WHERE processed_at < $1 LIMIT $2)",
    )
    .bind(before)
    .bind(limit)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
