//! Webhooks to units. Two halves:
//! - the notifier consumer turns each case event into one queued delivery per unit of the case
//!   that has a webhook (idempotent, in the same transaction as its processed-event claim);
//! - the sender posts queued deliveries, signed, in per-case order; it retries with exponential
//!   backoff and jitter and, after the retry budget, parks the delivery as failed and holds that
//!   case's later deliveries to the unit until an admin retries or skips it.
//!
//! Receivers verify `X-Hotline-Signature` (HMAC-SHA256 with the unit's secret over
//! `"{timestamp}.{body}"`), reject a `X-Hotline-Timestamp` more than five minutes from their clock
//! (replay window), and de-duplicate on `X-Hotline-Delivery`: delivery is at least once.

use crate::{parse_uuid, sqlx_error, store_error, Clock};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use hotline_bus::{Handler, HandlerError};
use hotline_events::{Event, Payload};
use hotline_store::{cases, processed, webhooks, PgPool};
use serde_json::json;
use sha2::Sha256;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const NAME: &str = "hotline-notifier";

/// Receivers should reject a signature whose timestamp is further than this from their clock.
pub const REPLAY_WINDOW_SECONDS: i64 = 300;

pub struct NotifierWorker {
    pub pool: PgPool,
}

impl Handler for NotifierWorker {
    fn name(&self) -> &str {
        NAME
    }

    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        if matches!(
            event.payload,
            Payload::AppealFiled(_) | Payload::AppealClassified(_)
        ) {
            return Ok(());
        }
        let case_id = parse_uuid(&event.aggregate_id, "aggregate_id")?;
        let mut tx = self.pool.begin().await.map_err(sqlx_error)?;
        if !processed::claim(&mut tx, NAME, event.event_id)
            .await
            .map_err(store_error)?
        {
            return Ok(());
        }
        let case = cases::get(&mut tx, case_id).await.map_err(store_error)?;
        if case.as_ref().is_some_and(|c| c.historical) {
            // An imported history raises nothing, webhooks included.
            tx.commit().await.map_err(sqlx_error)?;
            return Ok(());
        }
        // Units named by the event itself, besides those on the case when it happened.
        let named: Vec<String> = match &event.payload {
            Payload::CaseRouted(routed) => {
                routed.assignments.iter().map(|a| a.unit.clone()).collect()
            }
            Payload::CaseRerouted(rerouted) => rerouted
                .assignments
                .iter()
                .map(|a| a.unit.clone())
                .collect(),
            Payload::CaseReturned(returned) => vec![returned.unit.clone()],
            Payload::CaseEscalated(escalated) => escalated.notified_units.clone(),
            _ => Vec::new(),
        };
        let endpoints = webhooks::endpoints_for_case(&mut tx, case_id, event.occurred_at, &named)
            .await
            .map_err(store_error)?;
        if endpoints.is_empty() {
            tx.commit().await.map_err(sqlx_error)?;
            return Ok(());
        }
        let history = cases::event(&mut tx, event.event_id)
            .await
            .map_err(store_error)?;
        for endpoint in &endpoints {
            let delivery_id = Uuid::now_v7();
            let queued = webhooks::enqueue(
                &mut tx,
                &webhooks::NewDelivery {
                    id: delivery_id,
                    unit_code: &endpoint.unit_code,
                    case_id,
                    event_id: event.event_id,
                    event_type: event.event_type(),
                    at: event.occurred_at,
                },
                |sequence| {
                    json!({
                        "delivery_id": delivery_id,
                        "sequence": sequence,
                        "unit": endpoint.unit_code,
                        "case_id": case_id,
                        "event": {
                            "id": event.event_id,
                            "type": event.event_type(),
                            "occurred_at": event.occurred_at.to_rfc3339(),
                            "actor": {"kind": event.actor.kind, "name": event.actor.name, "unit": event.actor.unit},
                            "from_state": history.as_ref().and_then(|h| h.from_state.clone()),
                            "to_state": history.as_ref().map(|h| h.to_state.clone()),
                            "detail": history.as_ref().map(|h| h.detail.clone()),
                        },
                        "case": case.as_ref().map(|c| json!({
                            "topic": c.topic,
                            "district": c.district,
                            "school": c.school,
                            "urgent": c.urgent,
                            "received_at": c.received_at.to_rfc3339(),
                        })),
                        "links": {"case": format!("/api/v1/cases/{case_id}")},
                    })
                    .to_string()
                },
            )
            .await
            .map_err(store_error)?;
            if queued.is_some() {
                metrics::counter!("hotline_webhook_deliveries_queued_total").increment(1);
            }
        }
        tx.commit().await.map_err(sqlx_error)?;
        Ok(())
    }
}

fn mac(secret: &str, timestamp: i64, body: &str) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac
}

/// The signature header's value for a body sent at `timestamp` (unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("sha256={}", hex::encode(digest))
}

/// Checks a signature as a receiver would: right key, right body, timestamp inside the window.
pub fn verify(secret: &str, timestamp: i64, body: &str, header: &str, now: i64) -> bool {
    let Some(hex_part) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_part) else {
        return false;
    };
    if (now - timestamp).abs() > REPLAY_WINDOW_SECONDS {
        return false;
    }
    mac(secret, timestamp, body).verify_slice(&given).is_ok()
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts before a delivery is parked.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Delay before the next attempt after `attempts` failed ones, or `None` when the budget is
    /// spent. Exponential with "equal jitter": half the step is fixed, half random (`jitter` in
    /// [0, 1)), so receivers that failed together do not retry together.
    pub fn next_delay(&self, attempts: u32, jitter: f64) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let exponent = attempts.saturating_sub(1).min(30);
        let step = self
            .base_delay
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        let half = step / 2;
        Some(half + half.mul_f64(jitter.clamp(0.0, 1.0)))
    }
}

/// Sends due deliveries until shutdown; `senders` deliveries are in flight at most.
pub async fn run_sender<C: Clock + Clone>(
    pool: PgPool,
    clock: C,
    policy: RetryPolicy,
    senders: usize,
    poll: Duration,
    shutdown: CancellationToken,
) {
    let client = match reqwest::Client::builder()
        .timeout(policy.request_timeout)
        .user_agent(concat!("hotline-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot build the webhook HTTP client; webhooks are not sent");
            return;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    {
        // The alerting gauge: parked deliveries hold a case's later events until an admin acts.
        let (pool, shutdown) = (pool.clone(), shutdown.clone());
        tasks.spawn(async move {
            loop {
                match pool.acquire().await {
                    Ok(mut conn) => match webhooks::parked_count(&mut conn).await {
                        Ok(parked) => {
                            metrics::gauge!("hotline_webhook_deliveries_parked").set(parked as f64)
                        }
                        Err(error) => tracing::warn!(%error, "parked deliveries not counted"),
                    },
                    Err(error) => tracing::warn!(%error, "parked deliveries not counted"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(15)) => {}
                }
            }
        });
    }
    for _ in 0..senders.max(1) {
        let (pool, clock, policy, client, shutdown) = (
            pool.clone(),
            clock.clone(),
            policy.clone(),
            client.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            while !shutdown.is_cancelled() {
                match send_next(&pool, &clock, &policy, &client).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "webhook sender: database error"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(poll) => {}
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Sends one due delivery, if there is one. The row stays locked while it is in flight, so
/// several senders (and several processes) never send the same delivery at once.
pub async fn send_next<C: Clock>(
    pool: &PgPool,
    clock: &C,
    policy: &RetryPolicy,
    client: &reqwest::Client,
) -> Result<bool, hotline_store::StoreError> {
    let mut tx = pool.begin().await?;
    let Some(delivery) = webhooks::lock_next_due(&mut tx, clock.now()).await? else {
        return Ok(false);
    };
    let Some(endpoint) = webhooks::endpoint(&mut tx, &delivery.unit_code).await? else {
        // The unit removed its webhook: it reads its inbox instead; nothing is lost.
        webhooks::skip(&mut tx, delivery.id, "the unit removed its webhook").await?;
        tx.commit().await?;
        return Ok(true);
    };
    let outcome = post(client, &endpoint, &delivery, clock.now()).await;
    let now = clock.now();
    match outcome {
        Ok(status) => {
            webhooks::mark_delivered(&mut tx, delivery.id, status, now).await?;
            metrics::counter!("hotline_webhook_deliveries_total", "outcome" => "delivered")
                .increment(1);
            tracing::debug!(delivery = %delivery.id, unit = %delivery.unit_code, sequence = delivery.sequence, "webhook delivered");
        }
        Err((error, status)) => {
            let attempts = u32::try_from(delivery.attempts).unwrap_or(0) + 1;
            let retry_at = policy
                .next_delay(attempts, rand::random::<f64>())
                .map(|delay| now + chrono::Duration::from_std(delay).unwrap_or_default());
            webhooks::mark_attempt_failed(&mut tx, delivery.id, &error, status, retry_at).await?;
            if retry_at.is_none() {
                metrics::counter!("hotline_webhook_deliveries_total", "outcome" => "parked")
                    .increment(1);
                tracing::error!(
                    delivery = %delivery.id, unit = %delivery.unit_code, case_id = %delivery.case_id,
                    attempts, %error,
                    "webhook delivery parked after its retries; this case's later deliveries to the unit wait for an admin"
                );
            } else {
                metrics::counter!("hotline_webhook_deliveries_total", "outcome" => "retry")
                    .increment(1);
                tracing::warn!(delivery = %delivery.id, unit = %delivery.unit_code, attempts, %error, "webhook attempt failed");
            }
        }
    }
    tx.commit().await?;
    Ok(true)
}

async fn post(
    client: &reqwest::Client,
    endpoint: &webhooks::Endpoint,
    delivery: &webhooks::Delivery,
    now: DateTime<Utc>,
) -> Result<u16, (String, Option<u16>)> {
    let timestamp = now.timestamp();
    let response = client
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("x-hotline-delivery", delivery.id.to_string())
        .header("x-hotline-event", &delivery.event_type)
        .header("x-hotline-sequence", delivery.sequence.to_string())
        .header("x-hotline-timestamp", timestamp.to_string())
        .header(
            "x-hotline-signature",
            signature(&endpoint.secret, timestamp, &delivery.body),
        )
        .body(delivery.body.clone())
        .send()
        .await
        .map_err(|e| (format!("request failed: {e}"), None))?;
    let status = response.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err((format!("receiver answered {status}"), Some(status.as_u16())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_right_key_body_and_time() {
        let body = r#"{"sequence":1}"#;
        let sig = signature("s3cret", 1_800_000_000, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        let cases = [
            (
                "s3cret",
                1_800_000_000,
                body,
                sig.as_str(),
                1_800_000_010,
                true,
            ),
            (
                "other",
                1_800_000_000,
                body,
                sig.as_str(),
                1_800_000_010,
                false,
            ),
            (
                "s3cret",
                1_800_000_000,
                r#"{"sequence":2}"#,
                sig.as_str(),
                1_800_000_010,
                false,
            ),
            (
                "s3cret",
                1_800_000_001,
                body,
                sig.as_str(),
                1_800_000_010,
                false,
            ),
            (
                "s3cret",
                1_800_000_000,
                body,
                sig.as_str(),
                1_800_000_301,
                false,
            ),
            (
                "s3cret",
                1_800_000_000,
                body,
                "sha256=zz",
                1_800_000_010,
                false,
            ),
            (
                "s3cret",
                1_800_000_000,
                body,
                "md5=00",
                1_800_000_010,
                false,
            ),
        ];
        for (secret, ts, body, header, now, expected) in cases {
            assert_eq!(
                verify(secret, ts, body, header, now),
                expected,
                "{secret} {ts} {body} {header} {now}"
            );
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_stops_at_the_budget() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(10),
            request_timeout: Duration::from_secs(1),
        };
        let cases = [
            (1, 0.0, Some(1_000)),
            (1, 0.999_999, Some(2_000)),
            (2, 0.0, Some(2_000)),
            (3, 0.5, Some(6_000)),
            (4, 0.0, Some(5_000)),
            (4, 1.0, Some(10_000)),
            (5, 0.0, None),
            (9, 0.0, None),
        ];
        for (attempts, jitter, expected_ms) in cases {
            let got = policy
                .next_delay(attempts, jitter)
                .map(|d| d.as_millis() as u64);
            match (got, expected_ms) {
                (Some(got), Some(expected)) => {
                    assert!(got.abs_diff(expected) <= 1, "{attempts} {jitter}: {got}")
                }
                (got, expected) => assert_eq!(got, expected, "{attempts} {jitter}"),
            }
        }
    }
}
