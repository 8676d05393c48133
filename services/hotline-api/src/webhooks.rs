//! Webhook administration: a unit's endpoint and secret, the delivery log, and the admin's
//! decision on a parked delivery (retry or skip).

use crate::auth::ApiQuery;
use crate::auth::{Caller, JsonBody};
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::Json;
use hotline_store::tokens::Role;
use hotline_store::webhooks;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

/// Shortest secret accepted: 128 bits of hex or more.
const MIN_SECRET_CHARS: usize = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookRequest {
    url: String,
    secret: String,
}

pub(crate) async fn set(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    JsonBody(request, _): JsonBody<WebhookRequest>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    let url = request.url.trim();
    let uri: Uri = url
        .parse()
        .map_err(|_| ApiError::invalid_field("url", "is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(ApiError::invalid_field(
            "url",
            "must be an absolute http:// or https:// URL",
        ));
    }
    if request.secret.chars().count() < MIN_SECRET_CHARS {
        return Err(ApiError::invalid_field(
            "secret",
            format!("must be at least {MIN_SECRET_CHARS} characters"),
        ));
    }
    let mut conn = state.pool.acquire().await?;
    if !webhooks::set_endpoint(&mut conn, &code, Some((url, &request.secret))).await? {
        return Err(ApiError::not_found());
    }
    tracing::info!(unit = %code, by = %caller.0.name, "webhook set");
    Ok(Json(json!({"unit": code, "url": url})))
}

pub(crate) async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    let mut conn = state.pool.acquire().await?;
    if !webhooks::set_endpoint(&mut conn, &code, None).await? {
        return Err(ApiError::not_found());
    }
    Ok(Json(json!({"unit": code, "url": null})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryQuery {
    status: Option<String>,
    unit: Option<String>,
    case_id: Option<String>,
    limit: Option<i64>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Admin, Role::Manager])?;
    if let Some(status) = &query.status {
        if !matches!(
            status.as_str(),
            "pending" | "delivered" | "failed" | "skipped"
        ) {
            return Err(ApiError::invalid_field(
                "status",
                "must be pending, delivered, failed or skipped",
            ));
        }
    }
    let case_id = query
        .case_id
        .as_deref()
        .map(|id| {
            Uuid::parse_str(id).map_err(|_| ApiError::invalid_field("case_id", "must be a case id"))
        })
        .transpose()?;
    let mut conn = state.pool.acquire().await?;
    let deliveries = webhooks::list(
        &mut conn,
        query.status.as_deref(),
        query.unit.as_deref(),
        case_id,
        query.limit.unwrap_or(200).clamp(1, 1000),
    )
    .await?;
    Ok(Json(json!({"deliveries": deliveries})))
}

pub(crate) async fn retry(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
) -> Result<Json<Value>, ApiError> {
    decide(state, caller, id, true).await
}

pub(crate) async fn skip(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
) -> Result<Json<Value>, ApiError> {
    decide(state, caller, id, false).await
}

async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    retry: bool,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Admin])?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found())?;
    let mut conn = state.pool.acquire().await?;
    if !webhooks::resolve_parked(&mut conn, id, retry, &caller.0.name, state.clock.now()).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_parked",
            "only a parked (failed) delivery can be retried or skipped",
        ));
    }
    tracing::info!(delivery = %id, retry, by = %caller.0.name, "parked webhook delivery resolved");
    Ok(Json(
        json!({"id": id, "status": if retry { "pending" } else { "skipped" }}),
    ))
}
