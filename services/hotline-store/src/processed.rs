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
