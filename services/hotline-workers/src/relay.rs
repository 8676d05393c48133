//! The outbox relay: publishes outbox rows to Kafka in id order with the idempotent producer and
//! marks them published in the same transaction that locked them. A crash between publishing and
//! marking republishes the batch; consumers de-duplicate by event id.

use hotline_bus::Publisher;
use hotline_events::Stream;
use hotline_store::{outbox, PgPool};
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const BATCH: i64 = 500;
/// Poll even without a notification, in case one was missed while reconnecting.
const IDLE_POLL: Duration = Duration::from_millis(500);

pub async fn run_relay(pool: PgPool, publisher: Publisher, shutdown: CancellationToken) {
    let mut listener = match PgListener::connect_with(&pool).await {
        Ok(mut l) => match l.listen("hotline_outbox").await {
            Ok(()) => Some(l),
            Err(error) => {
                tracing::warn!(%error, "LISTEN failed; the relay will poll");
                None
            }
        },
        Err(error) => {
            tracing::warn!(%error, "no listener connection; the relay will poll");
            None
        }
    };
    tracing::info!("outbox relay started");
    while !shutdown.is_cancelled() {
        match publish_batch(&pool, &publisher).await {
            Ok(n) if n as i64 == BATCH => continue, // more waiting
            Ok(_) => {}
            Err(error) => {
                tracing::error!(error = %error, "outbox relay failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = wait_for_notification(listener.as_mut()) => {}
        }
    }
    tracing::info!("outbox relay stopped");
}

async fn wait_for_notification(listener: Option<&mut PgListener>) {
    match listener {
        Some(l) => {
            let _ = tokio::time::timeout(IDLE_POLL, l.recv()).await;
        }
        None => tokio::time::sleep(IDLE_POLL).await,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] hotline_store::StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("publishing outbox row {id}: {source}")]
    Publish {
        id: i64,
        source: hotline_bus::BusError,
    },
    #[error("outbox row {0} has an unknown stream")]
    Stream(i64),
}

/// Publishes one batch; returns how many rows it published.
pub async fn publish_batch(pool: &PgPool, publisher: &Publisher) -> Result<usize, RelayError> {
    let mut tx = pool.begin().await?;
    let Some(rows) = outbox::lock_batch(&mut tx, BATCH).await? else {
        return Ok(0); // another relay is publishing
    };
    if rows.is_empty() {
        return Ok(0);
    }
    // Send the whole batch, then wait: the idempotent producer keeps per-partition order.
    let sends = rows.iter().map(|row| async move {
        let stream = Stream::parse(&row.stream).ok_or(RelayError::Stream(row.id))?;
        publisher
            .send_event(
                stream,
                &row.aggregate_id,
                &row.event_type,
                &row.event_id.to_string(),
                row.traceparent.as_deref(),
                &row.payload,
            )
            .await
            .map_err(|source| RelayError::Publish { id: row.id, source })
    });
    for result in futures::future::join_all(sends).await {
        result?;
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    outbox::mark_published(&mut tx, &ids).await?;
    tx.commit().await?;
    metrics::counter!("hotline_outbox_published_total").increment(ids.len() as u64);
    Ok(ids.len())
}

/// How long published outbox rows and processed-event keys are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub outbox: chrono::Duration,
    pub processed_keys: chrono::Duration,
}

/// Deletes what retention allows, in batches; returns (outbox rows, processed keys) deleted.
pub async fn prune_once<C: crate::Clock>(
    pool: &PgPool,
    clock: &C,
    retention: Retention,
) -> Result<(u64, u64), hotline_store::StoreError> {
    const PRUNE_BATCH: i64 = 5_000;
    let now = clock.now();
    let mut conn = pool.acquire().await?;
    let (mut outbox_rows, mut keys) = (0, 0);
    loop {
        let n = outbox::prune_published(&mut conn, now - retention.outbox, PRUNE_BATCH).await?;
        outbox_rows += n;
        if n < PRUNE_BATCH as u64 {
            break;
        }
    }
    loop {
        let n =
            hotline_store::processed::prune(&mut conn, now - retention.processed_keys, PRUNE_BATCH)
                .await?;
        keys += n;
        if n < PRUNE_BATCH as u64 {
            break;
        }
    }
    Ok((outbox_rows, keys))
}

/// Prunes every `interval` until shutdown (runs with the relay).
pub async fn run_housekeeping<C: crate::Clock>(
    pool: PgPool,
    clock: C,
    retention: Retention,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match prune_once(&pool, &clock, retention).await {
            Ok((0, 0)) => {}
            Ok((outbox_rows, keys)) => {
                tracing::info!(outbox_rows, processed_keys = keys, "housekeeping pruned")
            }
            Err(error) => tracing::warn!(%error, "housekeeping failed; retrying later"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
