//! Managers' figures: the three rates per unit over a period.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Query, State};
use axum::Json;
use chrono::{NaiveDate, TimeZone, Utc};
use hotline_domain::calendar::china_offset;
use hotline_store::tokens::Role;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RatesQuery {
    /// First day (China time), inclusive.
    from: String,
    /// Last day (China time), inclusive.
    to: String,
    unit: Option<String>,
}

fn day(raw: &str, field: &'static str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid_field(field, "must be a date YYYY-MM-DD"))
}

pub(crate) async fn rates(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<RatesQuery>,
) -> Result<Json<Value>, ApiError> {
    let unit_filter = match (caller.0.role, &caller.0.unit) {
        (Role::Manager | Role::Admin | Role::Operator, _) => query.unit.clone(),
        // A unit sees its own figures only.
        (Role::Unit, Some(own)) => {
            if query.unit.as_ref().is_some_and(|u| u != own) {
                return Err(ApiError::forbidden("a unit sees its own rates only"));
            }
            Some(own.clone())
        }
        (Role::Unit, None) => return Err(ApiError::forbidden("this token has no unit")),
        (Role::School, _) => return Err(ApiError::forbidden("rates are per unit")),
    };
    let first = day(&query.from, "from")?;
    let last = day(&query.to, "to")?;
    if last < first {
        return Err(ApiError::invalid_field("to", "is before `from`"));
    }
    let china = china_offset();
    let from = china
        .from_local_datetime(&first.and_time(chrono::NaiveTime::MIN))
        .single()
        .expect("fixed offsets have no gaps")
        .with_timezone(&Utc);
    let to = china
        .from_local_datetime(&(last + chrono::Days::new(1)).and_time(chrono::NaiveTime::MIN))
        .single()
        .expect("fixed offsets have no gaps")
        .with_timezone(&Utc);
    let mut conn = state.pool.acquire().await?;
    let records = hotline_store::rates::case_records(&mut conn, from, to).await?;
    let mut per_unit = hotline_domain::rates::compute(&records, from, to);
    let mut repeats = hotline_store::rates::repeat_requests(&mut conn, from, to).await?;
    if let Some(unit) = &unit_filter {
        per_unit.retain(|code, _| code == unit);
        repeats.retain(|r| &r.unit == unit);
    }
    let repeat_requests: Vec<Value> = repeats
        .iter()
        .map(|r| {
            json!({
                "unit": r.unit,
                "topic": r.topic,
                "closed": r.closed,
                "repeat_requests": r.repeats,
                "repeat_request_rate": (r.closed > 0).then(|| r.repeats as f64 / r.closed as f64),
            })
        })
        .collect();
    Ok(Json(json!({
        "from": query.from,
        "to": query.to,
        "units": per_unit,
        "repeat_requests": repeat_requests,
    })))
}

/// Keeps the rates of the last 30 days as Prometheus gauges per unit, for dashboards and alerts.
pub async fn run_rate_gauges(
    state: AppState,
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let to = state.clock.now();
        let from = to - chrono::Duration::days(30);
        match state.pool.acquire().await {
            Ok(mut conn) => {
                match hotline_store::rates::case_records(&mut conn, from, to).await {
                    Ok(records) => {
                        for (unit, rates) in hotline_domain::rates::compute(&records, from, to) {
                            let set = |name: &'static str, value: Option<f64>| {
                                if let Some(v) = value {
                                    metrics::gauge!(name, "unit" => unit.clone(), "window" => "30d").set(v);
                                }
                            };
                            set("hotline_response_rate", rates.response_rate);
                            set("hotline_resolution_rate", rates.resolution_rate);
                            set("hotline_satisfaction_rate", rates.satisfaction_rate);
                            set(
                                "hotline_on_time_resolution_rate",
                                rates.on_time_resolution_rate,
                            );
                            metrics::gauge!("hotline_cases", "unit" => unit.clone(), "window" => "30d").set(rates.cases as f64);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "rate gauges not updated"),
                }
                match hotline_store::rates::repeat_requests(&mut conn, from, to).await {
                    Ok(rows) => {
                        for row in rows.iter().filter(|r| r.closed > 0) {
                            metrics::gauge!(
                                "hotline_repeat_request_rate",
                                "unit" => row.unit.clone(),
                                "topic" => row.topic.clone(),
                                "window" => "30d"
                            )
                            .set(row.repeats as f64 / row.closed as f64);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "repeat-request gauges not updated"),
                }
            }
            Err(error) => tracing::warn!(%error, "rate gauges not updated"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
