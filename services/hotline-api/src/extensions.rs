//! 延期: the lead unit asks once, before the resolve deadline, with a reason and a number of
//! working days; a manager approves (the resolve deadline moves) or refuses.

use crate::auth::{Caller, JsonBody};
use crate::cases::{acting_unit, apply, done, note, Action, Permission};
use crate::error::ApiError;
use crate::views::parse_id;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use hotline_domain::case::CaseCommand;
use hotline_events::{timestamp, v1, Payload};
use hotline_store::{cases, extensions};
use serde::Deserialize;
use serde_json::{json, Value};

fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExtensionRequest {
    reason: Option<String>,
    working_days: u32,
}

pub(crate) async fn request(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body, _): JsonBody<ExtensionRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let reason = note(body.reason, "reason", true)?;
    let max = state.policy.extension_max_working_days;
    if body.working_days == 0 || body.working_days > max {
        return Err(ApiError::invalid_field(
            "working_days",
            format!("must be 1 to {max} (the policy's longest extension)"),
        ));
    }
    let now = state.clock.now();
    let mut tx = state.pool.begin().await?;
    cases::lock(&mut tx, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let (_, to) = apply(&mut tx, &state, &caller, id, |_, access| {
        Ok(Action {
            command: CaseCommand::Extend,
            permission: Permission::Lead,
            payload: Payload::CaseExtensionRequested(v1::CaseExtensionRequested {
                case_id: id.to_string(),
                unit: acting_unit(access),
                reason: reason.clone(),
                working_days: body.working_days,
            }),
            detail: json!({"reason": reason, "working_days": body.working_days}),
        })
    })
    .await?;
    let due = extensions::running_resolve_due(&mut tx, id)
        .await?
        .ok_or_else(|| conflict("no_deadline", "the case has no running resolve deadline"))?;
    if now >= due {
        return Err(conflict(
            "too_late",
            format!(
                "the resolve deadline ({}) has passed; an extension must be asked for before it",
                due.to_rfc3339()
            ),
        ));
    }
    let unit = caller.0.unit.clone().unwrap_or_default();
    if !extensions::request(&mut tx, id, &unit, &reason, body.working_days as i32, now).await? {
        return Err(conflict(
            "already_requested",
            "this case already had its one extension request",
        ));
    }
    tx.commit().await?;
    Ok(done(id, to))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RulingRequest {
    note: Option<String>,
}

pub(crate) async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body, _): JsonBody<RulingRequest>,
) -> Result<Json<Value>, ApiError> {
    rule(state, caller, id, body, true).await
}

pub(crate) async fn refuse(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body, _): JsonBody<RulingRequest>,
) -> Result<Json<Value>, ApiError> {
    rule(state, caller, id, body, false).await
}

async fn rule(
    state: AppState,
    caller: Caller,
    id: String,
    body: RulingRequest,
    approved: bool,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let note = note(body.note, "note", !approved)?;
    let now = state.clock.now();
    let mut tx = state.pool.begin().await?;
    cases::lock(&mut tx, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let pending = extensions::get(&mut tx, id).await?;
    let new_due = match &pending {
        Some(request) if request.decision.is_none() => {
            let due = extensions::running_resolve_due(&mut tx, id)
                .await?
                .ok_or_else(|| {
                    conflict("no_deadline", "the case has no running resolve deadline")
                })?;
            state
                .calendar
                .current()
                .add_working_days(due, request.working_days as u32)
        }
        Some(_) => {
            return Err(conflict(
                "already_decided",
                "this extension request was already decided",
            ))
        }
        None => {
            return Err(conflict(
                "no_request",
                "no extension was requested for this case",
            ))
        }
    };
    let request = pending.expect("matched above");
    let (_, to) = apply(&mut tx, &state, &caller, id, |_, _| {
        let payload = if approved {
            Payload::CaseExtended(v1::CaseExtended {
                case_id: id.to_string(),
                unit: request.unit_code.clone(),
                reason: request.reason.clone(),
                new_resolve_by: Some(timestamp(new_due)),
                working_days: request.working_days as u32,
                note: note.clone(),
            })
        } else {
            Payload::CaseExtensionRefused(v1::CaseExtensionRefused {
                case_id: id.to_string(),
                note: note.clone(),
            })
        };
        Ok(Action {
            command: CaseCommand::Extend,
            permission: Permission::Manager,
            payload,
            detail: json!({"approved": approved, "note": note, "new_resolve_by": approved.then(|| new_due.to_rfc3339())}),
        })
    })
    .await?;
    extensions::decide(
        &mut tx,
        id,
        &extensions::Decision {
            approved,
            by: &caller.0.name,
            note: &note,
            new_due_at: approved.then_some(new_due),
            at: now,
        },
    )
    .await?;
    tx.commit().await?;
    let mut body = done(id, to).0;
    if approved {
        body["new_resolve_by"] = json!(new_due.to_rfc3339());
    }
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PauseRequest {
    reason: Option<String>,
}

/// The lead unit waits for the citizen (materials, an appointment): the resolve clock stops.
pub(crate) async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body, _): JsonBody<PauseRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let reason = note(body.reason, "reason", true)?;
    let now = state.clock.now();
    let mut tx = state.pool.begin().await?;
    let case = cases::lock(&mut tx, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let (_, to) = apply(&mut tx, &state, &caller, id, |_, access| {
        Ok(Action {
            command: CaseCommand::Extend,
            permission: Permission::Lead,
            payload: Payload::CasePaused(v1::CasePaused {
                case_id: id.to_string(),
                unit: acting_unit(access),
                reason: reason.clone(),
            }),
            detail: json!({"reason": reason}),
        })
    })
    .await?;
    if case.paused_at.is_some() {
        return Err(conflict(
            "already_paused",
            "the case is already waiting for the citizen",
        ));
    }
    // Waiting for the citizen presumes the citizen has been contacted.
    if !matches!(case.state.as_str(), "contacted" | "reopened") {
        return Err(conflict(
            "not_contacted",
            "a case waits for the citizen only after the unit contacted them",
        ));
    }
    cases::set_paused(&mut tx, id, Some((now, &reason))).await?;
    tx.commit().await?;
    Ok(done(id, to))
}

/// The citizen answered: the resolve clock runs again, its deadline later by the pause.
pub(crate) async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let now = state.clock.now();
    let mut tx = state.pool.begin().await?;
    let case = cases::lock(&mut tx, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let Some(paused_at) = case.paused_at else {
        return Err(conflict("not_paused", "the case is not paused"));
    };
    let (_, to) = apply(&mut tx, &state, &caller, id, |_, access| {
        Ok(Action {
            command: CaseCommand::Extend,
            permission: Permission::Lead,
            payload: Payload::CaseResumed(v1::CaseResumed {
                case_id: id.to_string(),
                unit: acting_unit(access),
                paused_seconds: (now - paused_at).num_seconds(),
            }),
            detail: json!({"paused_seconds": (now - paused_at).num_seconds()}),
        })
    })
    .await?;
    cases::set_paused(&mut tx, id, None).await?;
    tx.commit().await?;
    Ok(done(id, to))
}
