//! Case actions: what units, operators and managers do to a case. Each is checked against the
//! caller's access and the domain state machine, and stored as a state change, a history row and
//! an outbox event in one transaction.

use crate::auth::{Caller, JsonBody};
use crate::error::ApiError;
use crate::views::{access, parse_id, Access};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use hotline_domain::case::{transition, CaseCommand, CaseState, ReturnReason, Satisfaction};
use hotline_domain::routing::AssignmentRole;
use hotline_events::{timestamp, v1, Event, Payload};
use hotline_store::cases::{self, CaseRow};
use hotline_store::tokens::Role;
use hotline_store::{PgConnection, Postgres, Transaction};
use hotline_workers::router::{wire_role, wire_state};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

const MAX_NOTE_CHARS: usize = 5_000;

/// Who may issue a command.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Permission {
    /// The lead unit only (accept, return, resolve).
    Lead,
    /// The lead or an assisting unit (contact).
    LeadOrAssisting,
    /// The lead, an assisting unit or a school the case was forwarded to (adding their part).
    Contributor,
    /// Operators and managers (assign, callback, close, transfer out).
    Staff,
    /// Managers and admins (rulings: extensions).
    Manager,
}

fn check_permission(
    permission: Permission,
    access: &Access,
    caller: &Caller,
) -> Result<(), ApiError> {
    let allowed = match (permission, access) {
        (Permission::Staff, Access::Staff) => {
            matches!(caller.0.role, Role::Operator | Role::Manager | Role::Admin)
        }
        (Permission::Manager, Access::Staff) => {
            matches!(caller.0.role, Role::Manager | Role::Admin)
        }
        (Permission::Lead, Access::Unit { role, .. }) => role == "lead",
        (Permission::LeadOrAssisting | Permission::Contributor, Access::Unit { role, .. }) => {
            role == "lead" || role == "assisting"
        }
        (Permission::Contributor, Access::School { .. }) => true,
        _ => false,
    };
    if allowed {
        return Ok(());
    }
    Err(match access {
        Access::Unit { role, .. } if role == "assisting" => {
            ApiError::forbidden("an assisting unit adds its part; only the lead unit can do this")
        }
        Access::Unit { .. } | Access::FormerUnit { .. } => {
            ApiError::forbidden("this unit has read-only access to the case")
        }
        Access::School { .. } => ApiError::forbidden(
            "the district bureau handles this case; a school adds its part (contributions)",
        ),
        Access::Staff if matches!(permission, Permission::Manager) => {
            ApiError::forbidden("this ruling is for managers")
        }
        Access::Staff => ApiError::forbidden("this action is for the units handling the case"),
    })
}

pub(crate) struct Action {
    pub(crate) command: CaseCommand,
    pub(crate) permission: Permission,
    pub(crate) payload: Payload,
    pub(crate) detail: Value,
}

/// Locks the case, checks access and the transition, records it. Returns the new state.
pub(crate) async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    state: &AppState,
    caller: &Caller,
    case_id: Uuid,
    build: impl FnOnce(&CaseRow, &Access) -> Result<Action, ApiError>,
) -> Result<(CaseRow, CaseState), ApiError> {
    let case = cases::lock(tx, case_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let access = access(tx, caller, case_id).await?;
    let action = build(&case, &access)?;
    check_permission(action.permission, &access, caller)?;
    let from: CaseState = case
        .state
        .parse()
        .map_err(|e: hotline_domain::case::UnknownState| ApiError::internal(e))?;
    let to = transition(from, action.command)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "illegal_transition", e.to_string()))?;
    let event = Event::new(
        case_id.to_string(),
        caller.actor(),
        state.clock.now(),
        action.payload,
    );
    cases::record_transition(
        tx,
        case_id,
        Some(from.as_str()),
        to.as_str(),
        &event,
        action.detail,
    )
    .await?;
    // A pause lasts while a unit works on the case: resolving, returning, transferring or linking
    // it ends the pause (the tracker ends the clock's pause on the same event).
    if case.paused_at.is_some() && !to.is_open_with_unit() {
        cases::set_paused(tx, case_id, None).await?;
    }
    Ok((case, to))
}

pub(crate) fn note(
    raw: Option<String>,
    field: &'static str,
    required: bool,
) -> Result<String, ApiError> {
    let value = raw.map(|s| s.trim().to_owned()).unwrap_or_default();
    if required && value.is_empty() {
        return Err(ApiError::invalid_field(field, "is required"));
    }
    if value.chars().any(hotline_domain::appeal::is_stray_control) {
        return Err(ApiError::invalid_field(
            field,
            "must not contain control characters other than tab and line breaks",
        ));
    }
    if value.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::invalid_field(
            field,
            format!("is longer than {MAX_NOTE_CHARS} characters"),
        ));
    }
    Ok(value)
}

pub(crate) fn acting_unit(access: &Access) -> String {
    match access {
        Access::Unit { unit, .. } | Access::FormerUnit { unit } => unit.clone(),
        Access::Staff | Access::School { .. } => String::new(),
    }
}

pub(crate) fn done(case_id: Uuid, to: CaseState) -> Json<Value> {
    Json(json!({"id": case_id, "state": to}))
}

pub async fn accept(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let mut tx = state.pool.begin().await?;
    let (_, to) = apply(&mut tx, &state, &caller, id, |_, access| {
        Ok(Action {
            command: CaseCommand::Accept,
            permission: Permission::Lead,
            payload: Payload::CaseAccepted(v1::CaseAccepted {
                case_id: id.to_string(),
                unit: acting_unit(access),
            }),
            detail: json!({}),
        })
    })
    .await?;
    tx.commit().await?;
    Ok(done(id, to))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnRequest {
    pub reason: ReturnReason,
    pub note: Option<String>,
}

pub async fn return_case(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request, _): JsonBody<ReturnRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let note = note(request.note, "note", true)?;
    let mut tx = state.pool.begin().await?;
    let (_, to) = apply(&mut tx, &state, &caller, id, |_, access| {
        Ok(Action {
            command: CaseCommand::Return,
            permission: Permission::Lead,
            payload: Payload::CaseReturned(v1::CaseReturned {
                case_id: id.to_string(),
                unit: acting_unit(access),
                reason: request.reason.as_str().to_owned(),
                note: note.clone(),
            }),
            detail: json!({"reason": request.reason, "note": note}),
        })
    })
    .await?;
    // Within the policy's window from this unit's assignment only.
    let now = state.clock.now();
    let unit = caller.0.unit.clone().unwrap_or_default();
    let lead = cases::assignments(&mut tx, id)
        .await?
        .into_iter()
        .filter(|a| a.unit_code == unit && a.role == "lead" && a.ended_at.is_none())
        .max_by_key(|a| a.assigned_at)
        .ok_or_else(ApiError::not_found)?;
    if lead.forced {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "assignment_forced",
            "a manager ruled that this unit handles the case; it cannot be returned",
        ));
    }
    let assigned_at = lead.assigned_at;
    let window_ends = state
        .policy
        .return_window
        .after(assigned_at, &state.calendar.current());
    if now > window_ends {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "return_window_passed",
            format!(
                "a case can be returned until {} (the return window from assignment); handle it or ask a manager",
                window_ends.to_rfc3339()
            ),
        ));
    }
    // The returning unit keeps read-only access through its ended assignment.
    cases::end_assignments(&mut tx, id, "returned", now).await?;
    tx.commit().await?;
    Ok(done(id, to))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    pub note: Option<String>,
}

pub async fn contact(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request, _): JsonBody<NoteRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let note = note(request.note, "note", false)?;
    let mut tx = state.pool.begin().await?;
    let (_, to) = apply(&mut tx, &state, &caller, id, |_, access| {
        Ok(Action {
            command: CaseCommand::Contact,
            permission: Permission::LeadOrAssisting,
            payload: Payload::CaseContacted(v1::CaseContacted {
                case_id: id.to_string(),
                unit: acting_unit(access),
                note: note.clone(),
            }),
            detail: json!({"note": note}),
        })
    })
    .await?;
    tx.commit().await?;
    Ok(done(id, to))
}

/// Co-handling (协办): an assisting unit adds its part to the case; the lead sees it in the
/// history and resolves.
pub async fn contribute(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request, _): JsonBody<NoteRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let note = note(request.note, "note", true)?;
    let mut tx = state.pool.begin().await?;
    let (_, to) = apply(&mut tx, &state, &caller, id, |_, access| {
        let school = match access {
            Access::School { school } => school.clone(),
            _ => String::new(),
        };
        Ok(Action {
            command: CaseCommand::Contribute,
            permission: Permission::Contributor,
            payload: Payload::CaseContributed(v1::CaseContributed {
                case_id: id.to_string(),
                unit: acting_unit(access),
                note: note.clone(),
                school: school.clone(),
            }),
            detail: json!({"note": note, "school": (!school.is_empty()).then_some(school)}),
        })
    })
    .await?;
    tx.commit().await?;
    Ok(done(id, to))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardRequest {
    pub school: String,
    pub note: Option<String>,
}

/// 二级派单: the lead district bureau forwards the case to one of the schools it administers. It
/// stays the lead (its clocks keep running); the school sees the case and adds its part.
pub async fn forward(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request, _): JsonBody<ForwardRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let note = note(request.note, "note", false)?;
    let school = state
        .directories
        .schools
        .by_name(request.school.trim())
        .ok_or_else(|| ApiError::invalid_field("school", "is not a school in the directory"))?
        .clone();
    let mut tx = state.pool.begin().await?;
    let (_, to) = apply(&mut tx, &state, &caller, id, |_, access| {
        let unit = acting_unit(access);
        if !unit.is_empty() && school.administering_unit.as_str() != unit {
            return Err(ApiError::invalid_field(
                "school",
                format!(
                    "{} is administered by {}, not by {unit}",
                    school.name, school.administering_unit
                ),
            ));
        }
        Ok(Action {
            command: CaseCommand::Forward,
            permission: Permission::Lead,
            payload: Payload::CaseForwarded(v1::CaseForwarded {
                case_id: id.to_string(),
                unit,
                school: school.name.clone(),
                note: note.clone(),
            }),
            detail: json!({"school": school.name, "note": note}),
        })
    })
    .await?;
    let unit = caller.0.unit.clone().unwrap_or_default();
    if !cases::forward(&mut tx, id, &school.name, &unit, &note, state.clock.now()).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_forwarded",
            format!("the case was already forwarded to {}", school.name),
        ));
    }
    tx.commit().await?;
    Ok(done(id, to))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub result: Option<String>,
}

pub async fn resolve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request, _): JsonBody<ResolveRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let result = note(request.result, "result", true)?;
    let mut tx = state.pool.begin().await?;
    let (_, to) = apply(&mut tx, &state, &caller, id, |_, access| {
        Ok(Action {
            command: CaseCommand::Resolve,
            permission: Permission::Lead,
            payload: Payload::CaseResolved(v1::CaseResolved {
                case_id: id.to_string(),
                unit: acting_unit(access),
                result: result.clone(),
            }),
            detail: json!({"result": result}),
        })
    })
    .await?;
    tx.commit().await?;
    Ok(done(id, to))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    pub lead: String,
    /// The right topic, when the classifier's was wrong: stored as a correction for the next
    /// training, and the case and its appeals move to it.
    pub topic: Option<String>,
    #[serde(default)]
    pub assisting: Vec<String>,
    #[serde(default)]
    pub informed: Vec<String>,
    pub note: Option<String>,
}

async fn known_unit(
    conn: &mut PgConnection,
    code: &str,
    field: &'static str,
) -> Result<(), ApiError> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM units WHERE code = $1)")
        .bind(code)
        .fetch_one(conn)
        .await?;
    if exists {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            field,
            format!("unknown unit `{code}`"),
        ))
    }
}

/// One action for operators and managers: assign a triaged or returned case to its units.
pub async fn assign(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request, _): JsonBody<AssignRequest>,
) -> Result<Json<Value>, ApiError> {
    place(state, caller, id, request, Placement::Assign).await
}

/// A manager's ruling on a returned case: the named lead is forced (it may not return the case
/// again). Giving another topic upholds a "wrong topic" return and is stored as a correction for
/// the classifier's next training.
pub async fn ruling(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request, _): JsonBody<AssignRequest>,
) -> Result<Json<Value>, ApiError> {
    place(state, caller, id, request, Placement::Ruling).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    Assign,
    Ruling,
}

async fn place(
    state: AppState,
    caller: Caller,
    id: String,
    request: AssignRequest,
    placement: Placement,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let forced = placement == Placement::Ruling;
    let note = note(request.note, "note", forced)?;
    let topic = request
        .topic
        .as_deref()
        .map(|t| {
            t.parse::<hotline_domain::TopicCode>()
                .map_err(|e| ApiError::invalid_field("topic", e.to_string()))
        })
        .transpose()?;
    let mut tx = state.pool.begin().await?;
    known_unit(&mut tx, &request.lead, "lead").await?;
    let mut plan: Vec<(String, AssignmentRole)> =
        vec![(request.lead.clone(), AssignmentRole::Lead)];
    for (units, role, field) in [
        (&request.assisting, AssignmentRole::Assisting, "assisting"),
        (&request.informed, AssignmentRole::Informed, "informed"),
    ] {
        for unit in units {
            known_unit(&mut tx, unit, field).await?;
            if !plan.iter().any(|(u, _)| u == unit) {
                plan.push((unit.clone(), role));
            }
        }
    }
    let wire: Vec<v1::Assignment> = plan
        .iter()
        .map(|(unit, role)| v1::Assignment {
            unit: unit.clone(),
            role: wire_role(*role),
        })
        .collect();
    let rule = match placement {
        Placement::Assign => format!("manual/{}", caller.0.role.as_str()),
        Placement::Ruling => "ruling/manager".to_owned(),
    };
    let explanation = if note.is_empty() {
        format!("assigned by {}", caller.0.name)
    } else {
        format!("assigned by {}: {note}", caller.0.name)
    };
    let (case, to) = apply(&mut tx, &state, &caller, id, |case, _| {
        // Units have returned this case back and forth: only a manager's ruling places it now,
        // or an operator could send it straight back to a unit that already refused it.
        if !forced && case.ruling_requested.is_some() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "ruling_requested",
                "this case waits for a manager's ruling: POST /api/v1/cases/{id}/ruling",
            ));
        }
        if forced && case.state != CaseState::Returned.as_str() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "nothing_to_rule",
                format!("a ruling is for a returned case; this one is {}", case.state),
            ));
        }
        let topic_now = topic.map_or_else(|| case.topic.clone(), |t| t.as_str().to_owned());
        // A triaged case has had no unit yet: its clocks run from the citizen's call, carried by
        // CaseRouted. A returned case goes to a new unit whose clocks start now: CaseRerouted.
        let payload = if case.state == CaseState::Triage.as_str() {
            Payload::CaseRouted(v1::CaseRouted {
                case_id: id.to_string(),
                appeal_id: String::new(),
                state: wire_state(CaseState::Routed),
                topic: topic_now.clone(),
                district: case.district.clone().unwrap_or_default(),
                school: case.school.clone().unwrap_or_default(),
                urgent: case.urgent,
                assignments: wire.clone(),
                rule: rule.clone(),
                catalogue_version: String::new(),
                explanation: explanation.clone(),
                received_at: Some(timestamp(case.received_at)),
                historical: case.historical,
            })
        } else {
            Payload::CaseRerouted(v1::CaseRerouted {
                case_id: id.to_string(),
                assignments: wire.clone(),
                rule: rule.clone(),
                catalogue_version: String::new(),
                explanation: explanation.clone(),
                forced,
                topic: topic_now,
                district: case.district.clone().unwrap_or_default(),
            })
        };
        Ok(Action {
            command: CaseCommand::Assign,
            permission: if forced {
                Permission::Manager
            } else {
                Permission::Staff
            },
            payload,
            detail: json!({"assignments": plan.iter().map(|(u, r)| json!({"unit": u, "role": r})).collect::<Vec<_>>(), "note": note, "topic": topic, "forced": forced}),
        })
    })
    .await?;
    if let Some(topic) = topic.filter(|t| t.as_str() != case.topic) {
        hotline_store::corrections::record_for_case(
            &mut tx,
            &hotline_store::corrections::NewCorrection {
                case_id: id,
                to_topic: topic.as_str(),
                source: match placement {
                    Placement::Assign => "triage",
                    Placement::Ruling => "return_ruling",
                },
                actor_id: &caller.0.token_id.to_string(),
                actor_name: &caller.0.name,
            },
        )
        .await?;
    }
    let now = state.clock.now();
    cases::end_assignments(&mut tx, id, "reassigned", now).await?;
    for (unit, role) in &plan {
        let forced = forced && *role == AssignmentRole::Lead;
        cases::assign_with(&mut tx, id, unit, role.as_str(), now, forced).await?;
    }
    cases::update_routing(&mut tx, case.id, &rule, "", &explanation).await?;
    sqlx::query("UPDATE appeals SET status = 'routed' WHERE case_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done(id, to))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackRequest {
    /// Which caller was called back, for a case with several callers; the first by default.
    pub appeal_id: Option<String>,
    pub reached: bool,
    /// Asked only of a caller who was reached.
    pub solved: Option<bool>,
    pub satisfaction: Option<Satisfaction>,
    pub note: Option<String>,
}

pub async fn callback(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request, _): JsonBody<CallbackRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let note = note(request.note, "note", false)?;
    // A caller who was not reached (no phone, no answer) gave no answer: the attempt is recorded,
    // lets the case close, and counts in neither the resolution nor the satisfaction rate.
    let (solved, satisfaction) = match (request.reached, request.solved, request.satisfaction) {
        (true, Some(solved), Some(grade)) => (Some(solved), Some(grade)),
        (true, None, _) => {
            return Err(ApiError::invalid_field(
                "solved",
                "is required when the caller was reached",
            ))
        }
        (true, _, None) => {
            return Err(ApiError::invalid_field(
                "satisfaction",
                "is required when the caller was reached",
            ))
        }
        (false, None, None) => (None, None),
        (false, Some(_), _) => {
            return Err(ApiError::invalid_field(
                "solved",
                "is not asked of a caller who was not reached",
            ))
        }
        (false, None, Some(_)) => {
            return Err(ApiError::invalid_field(
                "satisfaction",
                "is not asked of a caller who was not reached",
            ))
        }
    };
    let mut tx = state.pool.begin().await?;
    // Each caller of the case is called back once per resolution; an attempt that did not reach
    // them does not count, so they can be tried again.
    cases::lock(&mut tx, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let appeals = hotline_store::appeals::for_case(&mut tx, id).await?;
    let appeal_id = match request.appeal_id.as_deref() {
        Some(raw) => Uuid::parse_str(raw.trim())
            .ok()
            .filter(|a| appeals.iter().any(|x| x.id == *a))
            .ok_or_else(|| ApiError::invalid_field("appeal_id", "is not an appeal of this case"))?,
        None => appeals
            .first()
            .map(|a| a.id)
            .ok_or_else(ApiError::not_found)?,
    };
    let already: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM case_events e WHERE e.case_id = $1
             AND e.event_type = 'CallbackRecorded' AND e.detail->>'appeal_id' = $2
             AND (e.detail->>'reached')::boolean IS DISTINCT FROM false
             AND e.id > coalesce((SELECT max(id) FROM case_events r
                                  WHERE r.case_id = $1 AND r.event_type = 'CaseResolved'), 0))",
    )
    .bind(id)
    .bind(appeal_id.to_string())
    .fetch_one(&mut *tx)
    .await?;
    if already {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_called_back",
            "this caller was already called back about this resolution",
        ));
    }
    let (_, to) = apply(&mut tx, &state, &caller, id, |_, _| {
        Ok(Action {
            command: CaseCommand::RecordCallback(satisfaction),
            permission: Permission::Staff,
            payload: Payload::CallbackRecorded(v1::CallbackRecorded {
                case_id: id.to_string(),
                reached: request.reached,
                solved: solved.unwrap_or(false),
                satisfaction: satisfaction.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                note: note.clone(),
                appeal_id: appeal_id.to_string(),
            }),
            detail: json!({"appeal_id": appeal_id, "reached": request.reached, "solved": solved, "satisfaction": satisfaction, "note": note}),
        })
    })
    .await?;
    tx.commit().await?;
    Ok(done(id, to))
}

pub async fn close(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let mut tx = state.pool.begin().await?;
    let (_, to) = apply(&mut tx, &state, &caller, id, |_, _| {
        Ok(Action {
            command: CaseCommand::Close,
            permission: Permission::Staff,
            payload: Payload::CaseClosed(v1::CaseClosed {
                case_id: id.to_string(),
            }),
            detail: json!({}),
        })
    })
    .await?;
    // Every caller of the case (repeats joined it) is called back before it closes.
    let waiting: Vec<Uuid> = sqlx::query_scalar(
        "SELECT a.id FROM appeals a WHERE a.case_id = $1 AND NOT EXISTS (
             SELECT 1 FROM case_events e WHERE e.case_id = $1
                 AND e.event_type = 'CallbackRecorded' AND e.detail->>'appeal_id' = a.id::text
                 AND e.id > coalesce((SELECT max(id) FROM case_events r
                                      WHERE r.case_id = $1 AND r.event_type = 'CaseResolved'), 0))
         ORDER BY a.received_at",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    if !waiting.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "callbacks_pending",
            format!(
                "call back every caller first; no callback yet for appeal(s) {}",
                waiting
                    .iter()
                    .map(Uuid::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    tx.commit().await?;
    Ok(done(id, to))
}

/// A manager reopens a closed case (the problem came back, or it was closed wrongly): the lead
/// unit handles it again, and the tracker gives it the policy's reopen clock.
pub async fn reopen(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request, _): JsonBody<ReasonRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let reason = note(request.reason, "reason", true)?;
    let mut tx = state.pool.begin().await?;
    let (_, to) = apply(&mut tx, &state, &caller, id, |_, _| {
        Ok(Action {
            command: CaseCommand::Reopen,
            permission: Permission::Manager,
            payload: Payload::CaseReopened(v1::CaseReopened {
                case_id: id.to_string(),
                reason: reason.clone(),
            }),
            detail: json!({"reason": reason}),
        })
    })
    .await?;
    tx.commit().await?;
    Ok(done(id, to))
}

/// A body of one required `reason` (transfer out, reopen).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    pub reason: Option<String>,
}

pub async fn transfer_out(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request, _): JsonBody<ReasonRequest>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let reason = note(request.reason, "reason", true)?;
    let mut tx = state.pool.begin().await?;
    let (_, to) = apply(&mut tx, &state, &caller, id, |_, _| {
        Ok(Action {
            command: CaseCommand::TransferOut,
            permission: Permission::Staff,
            payload: Payload::CaseTransferredOut(v1::CaseTransferredOut {
                case_id: id.to_string(),
                reason: reason.clone(),
            }),
            detail: json!({"reason": reason}),
        })
    })
    .await?;
    cases::end_assignments(&mut tx, id, "transferred_out", state.clock.now()).await?;
    tx.commit().await?;
    Ok(done(id, to))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// The case this one repeats.
    pub into: String,
    pub note: Option<String>,
}

/// A case that repeats another (重复件) is folded into it: its appeals join the primary case,
/// its own clocks stop, and both histories say so.
pub async fn link(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request, _): JsonBody<LinkRequest>,
) -> Result<Json<Value>, ApiError> {
    let repeat = parse_id(&id)?;
    let primary = Uuid::parse_str(request.into.trim())
        .map_err(|_| ApiError::invalid_field("into", "must be a case id"))?;
    if primary == repeat {
        return Err(ApiError::invalid_field(
            "into",
            "a case cannot repeat itself",
        ));
    }
    let reason = note(request.note, "note", false)?;
    let mut tx = state.pool.begin().await?;
    // Lock both in one order so two opposite links cannot deadlock.
    for case_id in if repeat < primary {
        [repeat, primary]
    } else {
        [primary, repeat]
    } {
        cases::lock(&mut tx, case_id)
            .await?
            .ok_or_else(ApiError::not_found)?;
    }
    let appeal_ids: Vec<String> = hotline_store::appeals::for_case(&mut tx, repeat)
        .await?
        .iter()
        .map(|a| a.id.to_string())
        .collect();
    let payload = Payload::RepeatLinked(v1::RepeatLinked {
        primary_case_id: primary.to_string(),
        repeat_case_id: repeat.to_string(),
        appeal_ids: appeal_ids.clone(),
        reason: reason.clone(),
        match_kind: "manual".into(),
        similarity: 0.0,
    });
    let detail = json!({"primary_case_id": primary, "repeat_case_id": repeat, "appeal_ids": appeal_ids, "note": reason});
    let (_, to) = apply(&mut tx, &state, &caller, repeat, |_, _| {
        Ok(Action {
            command: CaseCommand::LinkAsRepeat,
            permission: Permission::Staff,
            payload: payload.clone(),
            detail: detail.clone(),
        })
    })
    .await?;
    apply(&mut tx, &state, &caller, primary, |_, _| {
        Ok(Action {
            command: CaseCommand::AcceptRepeat,
            permission: Permission::Staff,
            payload: payload.clone(),
            detail: detail.clone(),
        })
    })
    .await?;
    hotline_store::appeals::move_to_case(&mut tx, repeat, primary).await?;
    cases::end_assignments(&mut tx, repeat, "linked", state.clock.now()).await?;
    tx.commit().await?;
    Ok(done(repeat, to))
}

/// An operator disagrees with an automatic repeat link: the appeal leaves the case it joined and
/// is routed on its own (its stored classification goes through the router again, without the
/// repeat check).
pub async fn unlink_appeal(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(request, _): JsonBody<NoteRequest>,
) -> Result<Json<Value>, ApiError> {
    caller.require(&[Role::Operator, Role::Manager, Role::Admin])?;
    let appeal_id = parse_id(&id)?;
    let note = note(request.note, "note", false)?;
    let mut tx = state.pool.begin().await?;
    // Locked, so two unlinks at once cannot both send it to be routed.
    let appeal = hotline_store::appeals::lock(&mut tx, appeal_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let (Some(case_id), Some(_)) = (appeal.case_id, appeal.repeat_match.as_ref()) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_linked_as_repeat",
            "this appeal did not join another case as a repeat",
        ));
    };
    let case = cases::lock(&mut tx, case_id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let now = state.clock.now();
    let unlinked = Event::new(
        case_id.to_string(),
        caller.actor(),
        now,
        Payload::RepeatUnlinked(v1::RepeatUnlinked {
            case_id: case_id.to_string(),
            appeal_id: appeal_id.to_string(),
            note: note.clone(),
        }),
    );
    cases::record_transition(
        &mut tx,
        case_id,
        Some(&case.state),
        &case.state,
        &unlinked,
        json!({"appeal_id": appeal_id, "note": note}),
    )
    .await?;
    hotline_store::appeals::detach_for_routing(&mut tx, appeal_id).await?;
    let topic = |raw: &str| raw.parse::<hotline_domain::TopicCode>().ok();
    let classification = hotline_domain::classify::Classification {
        topic: appeal
            .topic
            .as_deref()
            .and_then(topic)
            .ok_or_else(|| ApiError::internal("a linked appeal without a topic"))?,
        confidence: appeal.confidence.unwrap_or(1.0).clamp(0.0, 1.0),
        alternatives: appeal
            .alternatives
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| {
                Some(hotline_domain::classify::TopicScore {
                    topic: topic(a.get("topic")?.as_str()?)?,
                    confidence: a.get("confidence")?.as_f64()?,
                })
            })
            .collect(),
        urgent: appeal.urgent.unwrap_or(false),
        urgent_cue: appeal.urgent_cue.clone(),
        district: appeal.district.clone(),
        school: appeal.school.clone(),
        terms: appeal.terms.clone().unwrap_or_default(),
        education_related: appeal.education_related.unwrap_or(true),
        model_version: appeal.model_version.clone().unwrap_or_default(),
    };
    let again = Event::new(
        appeal_id.to_string(),
        caller.actor(),
        now,
        Payload::AppealClassified(hotline_events::convert::appeal_classified(
            &appeal_id.to_string(),
            &classification,
            appeal.historical,
        )),
    )
    .with_traceparent(appeal.traceparent.clone());
    hotline_store::outbox::enqueue(&mut tx, &again).await?;
    tx.commit().await?;
    Ok(Json(
        json!({"id": appeal_id, "status": "classified", "unlinked_from": case_id}),
    ))
}
