//! Managers' figures: the three rates per unit over a period.

use crate::auth::ApiQuery;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{NaiveDate, Utc};
use hotline_domain::calendar::china_instant;
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

/// The years a period may name: chrono reads dates up to year 262,143 and PostgreSQL's
/// timestamps end in 294,276, but no hotline figure is about another century.
const YEARS: std::ops::RangeInclusive<i32> = 2000..=2099;
/// The longest period one request may cover: every case of it is read into memory.
const MAX_PERIOD_DAYS: i64 = 3 * 366;

fn day(raw: &str, field: &'static str) -> Result<NaiveDate, ApiError> {
    let date = NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid_field(field, "must be a date YYYY-MM-DD"))?;
    if !YEARS.contains(&chrono::Datelike::year(&date)) {
        return Err(ApiError::invalid_field(
            field,
            format!("must be in the years {}–{}", YEARS.start(), YEARS.end()),
        ));
    }
    Ok(date)
}

/// The instants a period of China-time days covers: from the first day's midnight to the
/// midnight after the last.
fn period(first: NaiveDate, last: NaiveDate) -> (chrono::DateTime<Utc>, chrono::DateTime<Utc>) {
    let midnight = |date: NaiveDate| china_instant(date.and_time(chrono::NaiveTime::MIN));
    // `day` keeps both within 2000–2099, so the day after `last` exists.
    let after_last = last.succ_opt().unwrap_or(last);
    (midnight(first), midnight(after_last))
}

pub(crate) async fn rates(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<RatesQuery>,
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
    if (last - first).num_days() >= MAX_PERIOD_DAYS {
        return Err(ApiError::invalid_field(
            "to",
            format!("a period covers at most {MAX_PERIOD_DAYS} days"),
        ));
    }
    let (from, to) = period(first, last);
    let mut conn = state.pool.acquire().await?;
    let records = hotline_store::rates::case_records(&mut conn, from, to).await?;
    let mut per_unit = hotline_domain::rates::compute(&records, from, to, state.clock.now());
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
                        for (unit, rates) in hotline_domain::rates::compute(&records, from, to, to)
                        {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_china_days_within_the_century() {
        let cases = [
            ("2026-03-01", Ok("2026-03-01")),
            ("2000-01-01", Ok("2000-01-01")),
            ("2099-12-31", Ok("2099-12-31")),
            ("1999-12-31", Err("must be in the years 2000–2099")),
            // Read as dates by chrono or not, never a panic or a database error.
            ("+262142-12-31", Err("from: must be")),
            ("-5000-01-01", Err("from: must be")),
            ("2026-02-30", Err("must be a date YYYY-MM-DD")),
            ("20260301", Err("must be a date YYYY-MM-DD")),
        ];
        for (raw, expected) in cases {
            let got = day(raw, "from").map(|d| d.to_string());
            match (got, expected) {
                (Ok(date), Ok(want)) => assert_eq!(date, want, "{raw}"),
                (Err(error), Err(want)) => {
                    assert!(error.message.contains(want), "{raw}: {}", error.message);
                }
                (got, want) => panic!("{raw}: {got:?} instead of {want:?}"),
            }
        }
        let (from, to) = period(
            NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 3, 31).unwrap(),
        );
        assert_eq!(from.to_rfc3339(), "2026-02-28T16:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2026-03-31T16:00:00+00:00");
        let last = NaiveDate::from_ymd_opt(2099, 12, 31).unwrap();
        assert_eq!(
            period(last, last).1.to_rfc3339(),
            "2099-12-31T16:00:00+00:00"
        );
    }
}
