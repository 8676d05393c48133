//! 未诉先办 and 专项深办 for managers and units: hotspots, proactive tasks, special items with
//! their KPI, and the proactive event log.

use crate::auth::ApiQuery;
use crate::auth::{Caller, JsonBody};
use crate::cases::note;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use hotline_domain::special::{Kpi, SpecialItemPolicy};
use hotline_domain::TopicCode;
use hotline_events::{v1, Event, Payload};
use hotline_store::proactive::{self, Counting, SpecialItemRow};
use hotline_store::tokens::Role;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

fn staff(caller: &Caller) -> Result<(), ApiError> {
    caller
        .require(&[Role::Operator, Role::Manager, Role::Admin])
        .map(|_| ())
}

fn id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found())
}

/// A query filter that, when given, must be one of `allowed` ("must be a, b or c").
fn one_of(field: &str, value: Option<&str>, allowed: &[&str]) -> Result<(), ApiError> {
    match value {
        Some(v) if !allowed.contains(&v) => {
            let (last, rest) = allowed.split_last().unwrap_or((&"", &[]));
            let choices = if rest.is_empty() {
                (*last).to_owned()
            } else {
                format!("{} or {last}", rest.join(", "))
            };
            Err(ApiError::invalid_field(field, format!("must be {choices}")))
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateQuery {
    state: Option<String>,
    kind: Option<String>,
    unit: Option<String>,
    limit: Option<i64>,
}

pub(crate) async fn hotspots(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<StateQuery>,
) -> Result<Json<Value>, ApiError> {
    staff(&caller)?;
    one_of("state", query.state.as_deref(), &["open", "resolved"])?;
    let mut conn = state.pool.acquire().await?;
    let rows = proactive::hotspots(
        &mut conn,
        query.state.as_deref(),
        query.limit.unwrap_or(200).clamp(1, 1000),
    )
    .await?;
    Ok(Json(json!({"hotspots": rows})))
}

pub(crate) async fn tasks(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<StateQuery>,
) -> Result<Json<Value>, ApiError> {
    let unit = match (caller.0.role, caller.0.unit.as_deref()) {
        (Role::Unit, Some(own)) => Some(own.to_owned()),
        (Role::Unit, None) | (Role::School, _) => {
            return Err(ApiError::forbidden("proactive tasks go to units"))
        }
        (Role::Operator | Role::Manager | Role::Admin, _) => query.unit.clone(),
    };
    one_of("state", query.state.as_deref(), &["open", "done"])?;
    one_of(
        "kind",
        query.kind.as_deref(),
        &["hotspot", "playbook", "special_item"],
    )?;
    let mut conn = state.pool.acquire().await?;
    let rows = proactive::tasks(
        &mut conn,
        unit.as_deref(),
        query.kind.as_deref(),
        query.state.as_deref(),
        query.limit.unwrap_or(200).clamp(1, 1000),
    )
    .await?;
    Ok(Json(json!({"tasks": rows})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoteBody {
    note: Option<String>,
    plan: Option<String>,
}

pub(crate) async fn complete_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(task): Path<String>,
    JsonBody(body, _): JsonBody<NoteBody>,
) -> Result<Json<Value>, ApiError> {
    let task = id(&task)?;
    let note = note(body.note, "note", true)?;
    let unit = match caller.0.role {
        Role::Unit => caller.0.unit.clone(),
        Role::School => return Err(ApiError::forbidden("proactive tasks go to units")),
        Role::Operator | Role::Manager | Role::Admin => None,
    };
    let mut conn = state.pool.acquire().await?;
    if !proactive::complete_task(&mut conn, task, unit.as_deref(), &note, state.clock.now()).await?
    {
        return Err(ApiError::not_found());
    }
    Ok(Json(json!({"id": task, "state": "done"})))
}

pub(crate) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<StateQuery>,
) -> Result<Json<Value>, ApiError> {
    staff(&caller)?;
    let mut conn = state.pool.acquire().await?;
    let rows = proactive::events(&mut conn, query.limit.unwrap_or(200).clamp(1, 1000)).await?;
    Ok(Json(json!({"events": rows})))
}

/// Managers see every item; a unit sees the items it owns.
fn may_read(caller: &Caller, item: &SpecialItemRow) -> bool {
    match caller.0.role {
        Role::Unit => caller.0.unit.as_deref() == Some(item.owner_unit.as_str()),
        Role::School => false,
        Role::Operator | Role::Manager | Role::Admin => true,
    }
}

pub(crate) async fn special_items(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<StateQuery>,
) -> Result<Json<Value>, ApiError> {
    let owner = match caller.0.role {
        Role::Unit => caller.0.unit.clone(),
        Role::School => return Err(ApiError::forbidden("special items are run by units")),
        Role::Operator | Role::Manager | Role::Admin => query.unit.clone(),
    };
    let mut conn = state.pool.acquire().await?;
    let rows =
        proactive::special_items(&mut conn, query.state.as_deref(), owner.as_deref()).await?;
    Ok(Json(json!({"special_items": rows})))
}

async fn item_body(
    state: &AppState,
    conn: &mut hotline_store::PgConnection,
    item: &SpecialItemRow,
) -> Result<Value, ApiError> {
    let policy = SpecialItemPolicy::builtin();
    let now = state.clock.now();
    let (kpi, periods) = match item.closed_at {
        Some(closed_at) => {
            let periods = policy.kpi_periods(closed_at);
            let count =
                |(from, to): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)| {
                    (
                        from - chrono::Duration::microseconds(1),
                        to - chrono::Duration::microseconds(1),
                    )
                };
            // [from, to) as the store's (from, to] with a microsecond shift.
            let (b0, b1) = count(periods.before);
            let (a0, a1) = count(periods.after);
            let before = proactive::count_appeals(
                conn,
                &item.scope,
                &item.topic,
                &item.place,
                (b0, b1),
                Counting::Appeals,
            )
            .await?;
            let after = proactive::count_appeals(
                conn,
                &item.scope,
                &item.topic,
                &item.place,
                (a0, a1),
                Counting::Appeals,
            )
            .await?;
            (
                Some(Kpi::new(
                    before as u32,
                    after as u32,
                    now >= periods.after.1,
                )),
                Some(json!({
                    "before": {"from": periods.before.0, "to": periods.before.1},
                    "after": {"from": periods.after.0, "to": periods.after.1},
                })),
            )
        }
        None => (None, None),
    };
    let cases = proactive::special_item_cases(conn, item.id).await?;
    let notes = proactive::special_item_notes(conn, item.id).await?;
    let mut body = json!(item);
    body["cases"] = json!(cases);
    body["notes"] = json!(notes);
    body["kpi"] = json!(kpi);
    body["kpi_periods"] = json!(periods);
    body["kpi_definition"] = json!(format!(
        "appeals on this topic at this {} in the {} days after the item closed, against the {} days before it closed",
        item.scope, policy.kpi_days, policy.kpi_days
    ));
    Ok(body)
}

pub(crate) async fn special_item(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let item_id = id(&raw)?;
    let mut conn = state.pool.acquire().await?;
    let item = proactive::special_item(&mut conn, item_id)
        .await?
        .filter(|i| may_read(&caller, i))
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(item_body(&state, &mut conn, &item).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenItem {
    topic: String,
    /// `school`, `district` or `city`.
    scope: String,
    /// The school's or district's name; ignored for `city`.
    place: Option<String>,
    owner_unit: Option<String>,
    title: Option<String>,
    plan: Option<String>,
    deadline_days: Option<i64>,
}

/// 每月一题: a manager opens a special item by hand.
pub(crate) async fn open_special_item(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body, _): JsonBody<OpenItem>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.require(&[Role::Manager, Role::Admin])?;
    let topic: TopicCode =
        body.topic
            .parse()
            .map_err(|e: hotline_domain::topic::UnknownTopic| {
                ApiError::invalid_field("topic", e.to_string())
            })?;
    let dirs = &state.directories;
    let (scope, place, district) = match body.scope.as_str() {
        "city" => ("city", "全市".to_owned(), None),
        "district" => {
            let raw = body.place.clone().unwrap_or_default();
            let district = dirs
                .districts
                .canonical(&raw)
                .ok_or_else(|| ApiError::invalid_field("place", "is not a district of Qingdao"))?
                .to_owned();
            ("district", district.clone(), Some(district))
        }
        "school" => {
            let raw = body.place.clone().unwrap_or_default();
            let school = dirs.schools.by_name(raw.trim()).ok_or_else(|| {
                ApiError::invalid_field("place", "is not a school in the directory")
            })?;
            ("school", school.name.clone(), Some(school.district.clone()))
        }
        _ => {
            return Err(ApiError::invalid_field(
                "scope",
                "must be school, district or city",
            ))
        }
    };
    let owner = match &body.owner_unit {
        Some(code) => dirs
            .units
            .get(code)
            .map(|u| u.code.to_string())
            .ok_or_else(|| {
                ApiError::invalid_field("owner_unit", format!("unknown unit `{code}`"))
            })?,
        None => dirs
            .catalogue
            .department_for(topic)
            .map(|u| u.to_string())
            .ok_or_else(|| ApiError::invalid_field("owner_unit", "is required for this topic"))?,
    };
    let days = body
        .deadline_days
        .unwrap_or(SpecialItemPolicy::builtin().deadline_days);
    if !(1..=366).contains(&days) {
        return Err(ApiError::invalid_field("deadline_days", "must be 1 to 366"));
    }
    let plan = note(body.plan, "plan", false)?;
    let title = match body
        .title
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
    {
        Some(title) => title,
        None => format!("每月一题：{place}「{}」", topic.as_str()),
    };
    let now = state.clock.now();
    let deadline = now + chrono::Duration::days(days);
    let item = Uuid::now_v7();
    let mut tx = state.pool.begin().await?;
    let opened = proactive::insert_special_item(
        &mut tx,
        &proactive::NewSpecialItem {
            id: item,
            title: &title,
            topic: topic.as_str(),
            scope,
            place: &place,
            district: district.as_deref(),
            owner_unit: &owner,
            trigger: json!({"trigger": "manager", "by": caller.0.name}),
            plan: &plan,
            deadline,
            opened_at: now,
            opened_by: "manager",
        },
    )
    .await?;
    if !opened {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "item_already_open",
            "a special item on this topic and place is already open",
        ));
    }
    hotline_workers::proactive::emit_item_opened(
        &mut tx,
        item,
        topic,
        scope,
        &place,
        &owner,
        "manager",
        &[],
        deadline,
        now,
    )
    .await?;
    hotline_workers::proactive::create_task(
        &mut tx,
        now,
        "special_item",
        &item.to_string(),
        &owner,
        &title,
        json!({"special_item_id": item, "trigger": "manager"}),
        Some(deadline),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": item, "owner_unit": owner, "deadline": deadline})),
    ))
}

async fn owned_item(
    state: &AppState,
    caller: &Caller,
    conn: &mut hotline_store::PgConnection,
    raw: &str,
) -> Result<SpecialItemRow, ApiError> {
    let item = proactive::special_item(conn, id(raw)?)
        .await?
        .filter(|i| may_read(caller, i))
        .ok_or_else(ApiError::not_found)?;
    if caller.0.role == Role::Operator {
        return Err(ApiError::forbidden(
            "special items are run by their owner unit and managers",
        ));
    }
    let _ = state;
    Ok(item)
}

/// Progress (and optionally a new plan) from the owner unit or a manager.
pub(crate) async fn add_note(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    JsonBody(body, _): JsonBody<NoteBody>,
) -> Result<Json<Value>, ApiError> {
    let text = note(body.note, "note", true)?;
    let plan = body.plan.map(|p| note(Some(p), "plan", true)).transpose()?;
    let mut conn = state.pool.acquire().await?;
    let item = owned_item(&state, &caller, &mut conn, &raw).await?;
    if item.state != "open" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "item_closed",
            "the special item is closed",
        ));
    }
    proactive::add_note(
        &mut conn,
        item.id,
        &caller.0.name,
        &text,
        plan.as_deref(),
        state.clock.now(),
    )
    .await?;
    let item = proactive::special_item(&mut conn, item.id)
        .await?
        .unwrap_or(item);
    Ok(Json(item_body(&state, &mut conn, &item).await?))
}

pub(crate) async fn close_item(
    State(state): State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    JsonBody(body, _): JsonBody<NoteBody>,
) -> Result<Json<Value>, ApiError> {
    let text = note(body.note, "note", true)?;
    let mut tx = state.pool.begin().await?;
    let item = owned_item(&state, &caller, &mut tx, &raw).await?;
    let now = state.clock.now();
    if !proactive::close_special_item(&mut tx, item.id, &caller.0.name, &text, now).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "item_closed",
            "the special item is already closed",
        ));
    }
    let event = Event::new(
        item.id.to_string(),
        caller.actor(),
        now,
        Payload::SpecialItemClosed(v1::SpecialItemClosed {
            item_id: item.id.to_string(),
            note: text.clone(),
        }),
    );
    proactive::record_event(&mut tx, item.id, &event, json!({"note": text})).await?;
    tx.commit().await?;
    let mut conn = state.pool.acquire().await?;
    let item = proactive::special_item(&mut conn, item.id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(item_body(&state, &mut conn, &item).await?))
}
