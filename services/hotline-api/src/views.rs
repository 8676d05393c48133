//! Read endpoints: an appeal with its case, clocks and history; case lists; units.

use crate::auth::ApiQuery;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use hotline_domain::phone::mask_digits;
use hotline_store::appeals::AppealRow;
use hotline_store::cases::{AssignmentRow, CaseRow};
use hotline_store::tokens::Role;
use hotline_store::{appeals, cases, deadlines, PgConnection};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

/// What a caller may do with a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// Operators, managers, admins.
    Staff,
    /// A unit with its current role (`lead`, `assisting`, `informed`).
    Unit { unit: String, role: String },
    /// A unit that held the case before (it returned it): read only.
    FormerUnit { unit: String },
    /// A school its district bureau forwarded the case to (二级派单): reads it, adds its part.
    School { school: String },
}

/// A read-only transaction on one snapshot, so a case, its clocks and its history agree.
async fn snapshot(
    state: &AppState,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, ApiError> {
    let mut tx = state.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

pub(crate) fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    // A malformed id is simply not found: no hint about what exists.
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found())
}

/// The caller's access to a case; 404 for a unit with no part in it, so nothing leaks.
pub(crate) async fn access(
    conn: &mut PgConnection,
    caller: &Caller,
    case_id: Uuid,
) -> Result<Access, ApiError> {
    match (caller.0.role, caller.0.unit.as_deref()) {
        (Role::Unit, Some(unit)) => {
            if let Some(role) = cases::active_role(conn, case_id, unit).await? {
                return Ok(Access::Unit {
                    unit: unit.to_owned(),
                    role,
                });
            }
            let held: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM assignments WHERE case_id = $1 AND unit_code = $2
                 AND role IN ('lead', 'assisting'))",
            )
            .bind(case_id)
            .bind(unit)
            .fetch_one(&mut *conn)
            .await?;
            if held {
                Ok(Access::FormerUnit {
                    unit: unit.to_owned(),
                })
            } else {
                Err(ApiError::not_found())
            }
        }
        (Role::Unit, None) => Err(ApiError::not_found()),
        (Role::School, _) => {
            let school = caller.0.school.clone().ok_or_else(ApiError::not_found)?;
            if cases::forwarded_to(conn, case_id, &school).await? {
                Ok(Access::School { school })
            } else {
                Err(ApiError::not_found())
            }
        }
        (Role::Operator | Role::Manager | Role::Admin, _) => Ok(Access::Staff),
    }
}

fn caller_view(appeal: &AppealRow, caller: &Caller) -> Value {
    if caller.0.role == Role::Operator {
        return json!({
            "name": appeal.caller_name,
            "phone": appeal.caller_phone,
            "confidential": appeal.caller_confidential,
        });
    }
    // Schools never see who complained (the complaint is often about them).
    if appeal.caller_confidential || caller.0.role == Role::School {
        return json!({"confidential": true});
    }
    json!({
        "name": appeal.caller_name,
        "phone": appeal.caller_phone.as_deref().map(mask_digits),
        "confidential": false,
    })
}

fn units_by_role(assignments: &[AssignmentRow], role: &str) -> Vec<String> {
    assignments
        .iter()
        .filter(|a| a.ended_at.is_none() && a.role == role)
        .map(|a| a.unit_code.clone())
        .collect()
}

/// How long each lead unit held the case (a returning unit is charged its own time), and how long
/// the citizen has waited since calling.
fn holding(case: &CaseRow, assignments: &[AssignmentRow], now: DateTime<Utc>) -> (Vec<Value>, i64) {
    let finished = matches!(case.state.as_str(), "closed" | "transferred_out");
    let end = if finished { case.updated_at } else { now };
    let held = assignments
        .iter()
        .filter(|a| a.role == "lead")
        .map(|a| {
            let until = a.ended_at.unwrap_or(end);
            json!({
                "unit": a.unit_code,
                "from": a.assigned_at.to_rfc3339(),
                "until": a.ended_at.map(|t| t.to_rfc3339()),
                "end_reason": a.end_reason,
                "seconds": (until - a.assigned_at).num_seconds().max(0),
            })
        })
        .collect();
    (held, (end - case.received_at).num_seconds().max(0))
}

async fn case_detail(
    conn: &mut PgConnection,
    case: &CaseRow,
    now: DateTime<Utc>,
) -> Result<Value, ApiError> {
    let assignments = cases::assignments(conn, case.id).await?;
    let (time_with_units, citizen_waiting_seconds) = holding(case, &assignments, now);
    let clocks = deadlines::for_case(conn, case.id).await?;
    let history = cases::history(conn, case.id).await?;
    let forwarded: Vec<Value> = cases::forwards(conn, case.id)
        .await?
        .into_iter()
        .map(|(school, unit, at)| json!({"school": school, "by": unit, "at": at.to_rfc3339()}))
        .collect();
    let mut current = serde_json::Map::new();
    for clock in clocks.iter().filter(|c| c.cancelled_at.is_none()) {
        current.insert(clock.kind.clone(), json!(clock.due_at.to_rfc3339()));
    }
    Ok(json!({
        "id": case.id,
        "state": case.state,
        "topic": case.topic,
        "district": case.district,
        "school": case.school,
        "urgent": case.urgent,
        "received_at": case.received_at.to_rfc3339(),
        "lead_unit": units_by_role(&assignments, "lead").first(),
        "assisting_units": units_by_role(&assignments, "assisting"),
        "informed_units": units_by_role(&assignments, "informed"),
        "routing": {"rule": case.rule, "catalogue_version": case.catalogue_version, "explanation": case.explanation},
        "escalation_level": case.escalation_level,
        "forwarded_to": forwarded,
        "repeat_of": case.repeat_of,
        "time_with_units": time_with_units,
        "citizen_waiting_seconds": citizen_waiting_seconds,
        "deadlines": current,
        "clocks": clocks,
        "assignments": assignments,
        "history": history.iter().map(|h| json!({
            "event": h.event_type,
            "event_id": h.event_id,
            "from": h.from_state,
            "to": h.to_state,
            "actor": {"kind": h.actor_kind, "name": h.actor_name, "unit": h.actor_unit},
            "at": h.occurred_at.to_rfc3339(),
            "detail": h.detail,
        })).collect::<Vec<_>>(),
    }))
}

pub(crate) async fn appeal(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let mut conn = snapshot(&state).await?;
    let appeal = appeals::get(&mut conn, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let case = match appeal.case_id {
        Some(case_id) => {
            access(&mut conn, &caller, case_id).await?;
            cases::get(&mut conn, case_id).await?
        }
        None if matches!(caller.0.role, Role::Unit | Role::School) => {
            return Err(ApiError::not_found())
        }
        None => None,
    };
    let detail = match &case {
        Some(case) => Some(case_detail(&mut conn, case, state.clock.now()).await?),
        None => None,
    };
    let mut history = vec![
        json!({"event": "AppealFiled", "at": appeal.filed_at.to_rfc3339(), "actor": {"kind": "operator", "id": appeal.filed_by}}),
    ];
    if let Some(at) = appeal.classified_at {
        history.push(json!({"event": "AppealClassified", "at": at.to_rfc3339(), "topic": appeal.topic, "model_version": appeal.model_version}));
    }
    if let Some(d) = &detail {
        history.extend(d["history"].as_array().cloned().unwrap_or_default());
    }
    Ok(Json(json!({
        "id": appeal.id,
        "status": appeal.status,
        "content": appeal.content,
        "channel": appeal.channel,
        "external_id": appeal.external_id,
        "received_at": appeal.received_at.to_rfc3339(),
        "historical": appeal.historical,
        "caller": caller_view(&appeal, &caller),
        "topic": appeal.topic,
        "confidence": appeal.confidence,
        "alternatives": appeal.alternatives,
        "urgent": appeal.urgent,
        "urgent_cue": appeal.urgent_cue,
        "district": appeal.district,
        "school": appeal.school,
        "terms": appeal.terms,
        "model_version": appeal.model_version,
        "case_id": appeal.case_id,
        "repeat_match": appeal.repeat_match,
        "case_state": detail.as_ref().map(|d| d["state"].clone()),
        "lead_unit": detail.as_ref().map(|d| d["lead_unit"].clone()),
        "assisting_units": detail.as_ref().map(|d| d["assisting_units"].clone()).unwrap_or(json!([])),
        "informed_units": detail.as_ref().map(|d| d["informed_units"].clone()).unwrap_or(json!([])),
        "routing": detail.as_ref().map(|d| d["routing"].clone()),
        "deadlines": detail.as_ref().map(|d| d["deadlines"].clone()).unwrap_or(json!({})),
        "history": history,
    })))
}

pub(crate) async fn case(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let mut conn = snapshot(&state).await?;
    let case = cases::get(&mut conn, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let access = access(&mut conn, &caller, id).await?;
    let mut body = case_detail(&mut conn, &case, state.clock.now()).await?;
    let appeals = appeals::for_case(&mut conn, id).await?;
    body["appeals"] = appeals
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "content": a.content,
                "received_at": a.received_at.to_rfc3339(),
                "caller": caller_view(a, &caller),
                "repeat_match": a.repeat_match,
            })
        })
        .collect();
    body["your_role"] = match access {
        Access::Staff => json!(caller.0.role.as_str()),
        Access::Unit { role, .. } => json!(role),
        Access::FormerUnit { .. } => json!("former"),
        Access::School { .. } => json!("school"),
    };
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CaseListQuery {
    state: Option<String>,
    limit: Option<i64>,
    /// The `next` of the previous page.
    after: Option<String>,
}

/// A page cursor: the last case's `received_at` (RFC 3339) and id, joined by `~`.
fn cursor_of(case: &cases::CaseRow) -> String {
    format!(
        "{}~{}",
        case.received_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        case.id
    )
}

fn parse_cursor(raw: &str) -> Result<(chrono::DateTime<chrono::Utc>, Uuid), ApiError> {
    let bad = || ApiError::invalid_field("after", "must be the `next` of a previous page");
    let (at, id) = raw.split_once('~').ok_or_else(bad)?;
    let at = chrono::DateTime::parse_from_rfc3339(at).map_err(|_| bad())?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok((at.with_timezone(&chrono::Utc), id))
}

pub(crate) async fn list_cases(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<CaseListQuery>,
) -> Result<Json<Value>, ApiError> {
    if let Some(s) = &query.state {
        s.parse::<hotline_domain::case::CaseState>()
            .map_err(|e| ApiError::invalid_field("state", e.to_string()))?;
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let page = cases::Page {
        after: query.after.as_deref().map(parse_cursor).transpose()?,
        limit,
    };
    let mut conn = state.pool.acquire().await?;
    let mut last: Option<String> = None;
    let mut count = 0;
    let rows: Vec<Value> = match (caller.0.role, caller.0.unit.as_deref()) {
        (Role::Unit, Some(unit)) => {
            let rows = cases::for_unit(&mut conn, unit, query.state.as_deref(), page).await?;
            count = rows.len();
            last = rows.last().map(|(c, _)| cursor_of(c));
            rows.into_iter()
                .map(|(c, role)| summary(&c, Some(&role)))
                .collect()
        }
        (Role::Unit, None) => Vec::new(),
        (Role::School, _) => match caller.0.school.as_deref() {
            Some(school) => {
                let rows =
                    cases::forwarded_to_school(&mut conn, school, query.state.as_deref(), page)
                        .await?;
                count = rows.len();
                last = rows.last().map(cursor_of);
                rows.iter().map(|c| summary(c, Some("school"))).collect()
            }
            None => Vec::new(),
        },
        (Role::Operator | Role::Manager | Role::Admin, _) => {
            let rows = cases::by_state(&mut conn, query.state.as_deref(), page).await?;
            count = rows.len();
            last = rows.last().map(cursor_of);
            with_suggestions(&mut conn, &state, &rows).await?
        }
    };
    // A full page may have more behind it: `next` asks for them (`?after=<next>`).
    let next = if count as i64 == limit { last } else { None };
    Ok(Json(json!({"cases": rows, "next": next})))
}

/// Staff lists: a case waiting for a person (triage, returned) carries the classifier's
/// suggestion and, for it and its alternatives, the units the catalogue would assign, so the
/// operator assigns in one action.
async fn with_suggestions(
    conn: &mut PgConnection,
    state: &AppState,
    rows: &[CaseRow],
) -> Result<Vec<Value>, ApiError> {
    let waiting: Vec<Uuid> = rows
        .iter()
        .filter(|c| matches!(c.state.as_str(), "triage" | "returned"))
        .map(|c| c.id)
        .collect();
    let classifications = appeals::first_classifications(conn, &waiting).await?;
    Ok(rows
        .iter()
        .map(|case| {
            let mut value = summary(case, None);
            if let Some((_, topic, confidence, alternatives)) =
                classifications.iter().find(|(id, ..)| *id == case.id)
            {
                value["suggestion"] = json!({
                    "topic": topic,
                    "confidence": confidence,
                    "alternatives": alternatives,
                });
                value["candidates"] = candidates(state, case, alternatives.as_ref());
            }
            value
        })
        .collect())
}

fn candidates(state: &AppState, case: &CaseRow, alternatives: Option<&Value>) -> Value {
    use hotline_domain::routing::{RoutingDecision, RoutingInput};
    use hotline_domain::TopicCode;
    let dirs = &state.directories;
    let mut topics: Vec<TopicCode> = case.topic.parse().into_iter().collect();
    for alt in alternatives.and_then(Value::as_array).into_iter().flatten() {
        if let Some(topic) = alt
            .get("topic")
            .and_then(Value::as_str)
            .and_then(|t| t.parse().ok())
        {
            if !topics.contains(&topic) && topics.len() < 3 {
                topics.push(topic);
            }
        }
    }
    let school = case.school.as_deref().and_then(|s| dirs.schools.by_name(s));
    topics
        .into_iter()
        .filter_map(|topic| {
            let decision = dirs.catalogue.route(
                &RoutingInput::settled(topic, case.urgent, case.district.as_deref(), school),
                &dirs.units,
            );
            let RoutingDecision::Route {
                assignments, rule, ..
            } = decision
            else {
                return None;
            };
            let of = |role: &str| -> Vec<String> {
                assignments
                    .iter()
                    .filter(|a| a.role.as_str() == role)
                    .map(|a| a.unit.to_string())
                    .collect()
            };
            Some(json!({
                "topic": topic,
                "lead": of("lead").first(),
                "assisting": of("assisting"),
                "informed": of("informed"),
                "rule": rule,
            }))
        })
        .collect()
}

/// The managers' queue: returned cases the router stopped on (ping-pong, duplicates, returns
/// it cannot act on), oldest first, with who returned them and why.
pub(crate) async fn rulings(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    caller
        .require(&[Role::Operator, Role::Manager, Role::Admin])
        .map_err(|_| ApiError::forbidden("the rulings queue is for managers"))?;
    let mut conn = state.pool.acquire().await?;
    let rows = cases::awaiting_ruling(&mut conn, 500).await?;
    let mut values = with_suggestions(&mut conn, &state, &rows).await?;
    for (value, case) in values.iter_mut().zip(&rows) {
        value["ruling_requested"] = case.ruling_requested.clone().unwrap_or(Value::Null);
    }
    Ok(Json(json!({"cases": values})))
}

fn summary(case: &CaseRow, role: Option<&str>) -> Value {
    json!({
        "id": case.id,
        "state": case.state,
        "topic": case.topic,
        "district": case.district,
        "school": case.school,
        "urgent": case.urgent,
        "received_at": case.received_at.to_rfc3339(),
        "rule": case.rule,
        "explanation": case.explanation,
        "your_role": role,
    })
}

pub(crate) async fn units(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Value>, ApiError> {
    #[derive(sqlx::FromRow, serde::Serialize)]
    struct Unit {
        code: String,
        name: String,
        kind: String,
        district: Option<String>,
        aliases: Vec<String>,
    }
    let units = sqlx::query_as::<_, Unit>(
        "SELECT code, name, kind, district, aliases FROM units ORDER BY code",
    )
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(json!({"units": units})))
}
