//! Hotline's HTTP API (axum). Request and response types live here, apart from domain types.

pub mod auth;
mod calendar;
pub mod cases;
pub mod error;
mod extensions;
pub mod intake;
mod openapi;
mod proactive;
pub mod stats;
mod views;
mod webhooks;

use axum::routing::{get, post, put};
use axum::Router;
use hotline_store::PgPool;
use hotline_workers::Clock;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;

/// Largest request body accepted (an appeal is at most 20,000 characters, ~60 KB of UTF-8).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub clock: Arc<dyn Clock>,
    pub metrics: Option<PrometheusHandle>,
    pub calendar: Arc<hotline_workers::calendar::CalendarSlot>,
    pub policy: Arc<hotline_domain::deadlines::DeadlinePolicy>,
    /// Units, schools and the dispatch catalogue: the triage queue's candidate units.
    pub directories: Arc<hotline_workers::router::Directories>,
    /// Key of the callers' phone hashes.
    pub caller_key_secret: Arc<str>,
    pub repeat_policy: Arc<hotline_domain::repeats::RepeatPolicy>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/openapi.json", get(openapi::spec))
        .route("/api/v1/appeals", post(intake::file))
        .route("/api/v1/appeals/{id}", get(views::appeal))
        .route("/api/v1/appeals/{id}/unlink", post(cases::unlink_appeal))
        .route("/api/v1/cases", get(views::list_cases))
        .route("/api/v1/cases/{id}", get(views::case))
        .route("/api/v1/cases/{id}/accept", post(cases::accept))
        .route("/api/v1/cases/{id}/return", post(cases::return_case))
        .route("/api/v1/cases/{id}/contact", post(cases::contact))
        .route("/api/v1/cases/{id}/resolve", post(cases::resolve))
        .route("/api/v1/cases/{id}/assign", post(cases::assign))
        .route("/api/v1/cases/{id}/ruling", post(cases::ruling))
        .route("/api/v1/cases/{id}/contributions", post(cases::contribute))
        .route("/api/v1/cases/{id}/forward", post(cases::forward))
        .route("/api/v1/rulings", get(views::rulings))
        .route("/api/v1/cases/{id}/callback", post(cases::callback))
        .route("/api/v1/cases/{id}/close", post(cases::close))
        .route("/api/v1/cases/{id}/reopen", post(cases::reopen))
        .route("/api/v1/cases/{id}/transfer-out", post(cases::transfer_out))
        .route("/api/v1/cases/{id}/extension", post(extensions::request))
        .route(
            "/api/v1/cases/{id}/extension/approve",
            post(extensions::approve),
        )
        .route(
            "/api/v1/cases/{id}/extension/refuse",
            post(extensions::refuse),
        )
        .route("/api/v1/units", get(views::units))
        .route(
            "/api/v1/units/{code}/webhook",
            put(webhooks::set).delete(webhooks::remove),
        )
        .route("/api/v1/webhooks/deliveries", get(webhooks::list))
        .route(
            "/api/v1/webhooks/deliveries/{id}/retry",
            post(webhooks::retry),
        )
        .route(
            "/api/v1/webhooks/deliveries/{id}/skip",
            post(webhooks::skip),
        )
        .route("/api/v1/rates", get(stats::rates))
        .route("/api/v1/hotspots", get(proactive::hotspots))
        .route("/api/v1/proactive/tasks", get(proactive::tasks))
        .route(
            "/api/v1/proactive/tasks/{id}/done",
            post(proactive::complete_task),
        )
        .route("/api/v1/proactive/events", get(proactive::events))
        .route(
            "/api/v1/special-items",
            get(proactive::special_items).post(proactive::open_special_item),
        )
        .route("/api/v1/special-items/{id}", get(proactive::special_item))
        .route(
            "/api/v1/special-items/{id}/notes",
            post(proactive::add_note),
        )
        .route(
            "/api/v1/special-items/{id}/close",
            post(proactive::close_item),
        )
        .route("/api/v1/calendar", get(calendar::show).post(calendar::load))
        .route("/api/v1/cases/{id}/pause", post(extensions::pause))
        .route("/api/v1/cases/{id}/link", post(cases::link))
        .route("/api/v1/cases/{id}/resume", post(extensions::resume))
        .fallback(error::not_found)
        // Request spans at info (tower-http's default is debug), so that exported traces start at
        // the HTTP request that filed the appeal.
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::INFO),
            ),
        )
        .with_state(state)
}

/// The routes, for the OpenAPI completeness test.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("post", "/api/v1/appeals"),
    ("get", "/api/v1/appeals/{id}"),
    ("post", "/api/v1/appeals/{id}/unlink"),
    ("get", "/api/v1/cases"),
    ("get", "/api/v1/cases/{id}"),
    ("post", "/api/v1/cases/{id}/accept"),
    ("post", "/api/v1/cases/{id}/return"),
    ("post", "/api/v1/cases/{id}/contact"),
    ("post", "/api/v1/cases/{id}/resolve"),
    ("post", "/api/v1/cases/{id}/assign"),
    ("post", "/api/v1/cases/{id}/ruling"),
    ("post", "/api/v1/cases/{id}/contributions"),
    ("post", "/api/v1/cases/{id}/forward"),
    ("get", "/api/v1/rulings"),
    ("post", "/api/v1/cases/{id}/callback"),
    ("post", "/api/v1/cases/{id}/close"),
    ("post", "/api/v1/cases/{id}/reopen"),
    ("post", "/api/v1/cases/{id}/transfer-out"),
    ("post", "/api/v1/cases/{id}/extension"),
    ("post", "/api/v1/cases/{id}/extension/approve"),
    ("post", "/api/v1/cases/{id}/extension/refuse"),
    ("post", "/api/v1/cases/{id}/pause"),
    ("post", "/api/v1/cases/{id}/link"),
    ("post", "/api/v1/cases/{id}/resume"),
    ("get", "/api/v1/units"),
    ("put", "/api/v1/units/{code}/webhook"),
    ("delete", "/api/v1/units/{code}/webhook"),
    ("get", "/api/v1/webhooks/deliveries"),
    ("post", "/api/v1/webhooks/deliveries/{id}/retry"),
    ("post", "/api/v1/webhooks/deliveries/{id}/skip"),
    ("get", "/api/v1/rates"),
    ("get", "/api/v1/hotspots"),
    ("get", "/api/v1/proactive/tasks"),
    ("post", "/api/v1/proactive/tasks/{id}/done"),
    ("get", "/api/v1/proactive/events"),
    ("get", "/api/v1/special-items"),
    ("post", "/api/v1/special-items"),
    ("get", "/api/v1/special-items/{id}"),
    ("post", "/api/v1/special-items/{id}/notes"),
    ("post", "/api/v1/special-items/{id}/close"),
    ("get", "/api/v1/calendar"),
    ("post", "/api/v1/calendar"),
];

async fn health(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match sqlx::query_scalar::<_, i32>("SELECT 1")
        .fetch_one(&state.pool)
        .await
    {
        Ok(_) => axum::Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(error) => {
            tracing::error!(%error, "health check: database unreachable");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "unavailable", "database": "unreachable"})),
            )
                .into_response()
        }
    }
}

async fn metrics_text(axum::extract::State(state): axum::extract::State<AppState>) -> String {
    state
        .metrics
        .as_ref()
        .map(|m| m.render())
        .unwrap_or_default()
}
