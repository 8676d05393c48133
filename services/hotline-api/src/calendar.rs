//! The working-day calendar: what is loaded, and loading next year's schedule (admins).

use crate::auth::{Caller, JsonBody};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use chrono::NaiveDate;
use hotline_domain::calendar::{china_offset, DayKind};
use hotline_store::tokens::Role;
use serde::Deserialize;
use serde_json::{json, Value};

fn summary(state: &AppState) -> Value {
    let calendar = state.calendar.current();
    let today = state
        .clock
        .now()
        .with_timezone(&china_offset())
        .date_naive();
    json!({
        "years": calendar.years(),
        "missing_years": calendar.missing_years(today),
    })
}

pub(crate) async fn show(State(state): State<AppState>, _caller: Caller) -> Json<Value> {
    Json(summary(&state))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoadRequest {
    days: Vec<Day>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Day {
    date: String,
    /// `off` (holiday) or `work` (make-up working day).
    kind: String,
    #[serde(default)]
    name: String,
}

/// Loads official schedule days (next year's, each November). Takes effect at once in this
/// process and within the reload interval in the others.
pub(crate) async fn load(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(request, _): JsonBody<LoadRequest>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    if request.days.is_empty() {
        return Err(ApiError::invalid_field("days", "must not be empty"));
    }
    let mut rows = Vec::with_capacity(request.days.len());
    for (i, day) in request.days.iter().enumerate() {
        let date = NaiveDate::parse_from_str(&day.date, "%Y-%m-%d").map_err(|_| {
            ApiError::invalid_field(format!("days[{i}].date"), "must be YYYY-MM-DD")
        })?;
        if DayKind::parse(&day.kind).is_none() {
            return Err(ApiError::invalid_field(
                format!("days[{i}].kind"),
                "must be `off` or `work`",
            ));
        }
        rows.push((date, day.kind.clone(), day.name.clone()));
    }
    let mut conn = state.pool.acquire().await?;
    hotline_store::calendar::upsert(&mut conn, &rows).await?;
    drop(conn);
    hotline_workers::calendar::reload(&state.pool, &state.calendar, &*state.clock).await?;
    tracing::info!(days = rows.len(), by = %caller.0.name, "calendar days loaded");
    Ok(Json(summary(&state)))
}
