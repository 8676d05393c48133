//! Cases, their assignments and their append-only history.

use crate::Result;
use chrono::{DateTime, Utc};
use hotline_events::Event;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct CaseRow {
    pub id: Uuid,
    pub state: String,
    pub topic: String,
    pub district: Option<String>,
    pub school: Option<String>,
    pub urgent: bool,
    pub historical: bool,
    pub received_at: DateTime<Utc>,
    pub rule: Option<String>,
    pub catalogue_version: Option<String>,
    pub explanation: Option<String>,
    pub escalation_level: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub paused_at: Option<DateTime<Utc>>,
    pub pause_reason: Option<String>,
    pub ruling_requested: Option<serde_json::Value>,
    pub repeat_of: Option<Uuid>,
    pub repeat_of_unit: Option<String>,
}

pub struct NewCase<'a> {
    pub id: Uuid,
    pub state: &'a str,
    pub topic: &'a str,
    pub district: Option<&'a str>,
    pub school: Option<&'a str>,
    pub urgent: bool,
    pub historical: bool,
    pub received_at: DateTime<Utc>,
    pub rule: &'a str,
    pub catalogue_version: &'a str,
    pub explanation: &'a str,
}

pub async fn insert(conn: &mut PgConnection, case: &NewCase<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO cases (id, state, topic, district, school, urgent, historical, received_at,
             rule, catalogue_version, explanation)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(case.id)
    .bind(case.state)
    .bind(case.topic)
    .bind(case.district)
    .bind(case.school)
    .bind(case.urgent)
    .bind(case.historical)
    .bind(case.received_at)
    .bind(case.rule)
    .bind(case.catalogue_version)
    .bind(case.explanation)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<CaseRow>> {
    Ok(
        sqlx::query_as::<_, CaseRow>("SELECT * FROM cases WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

/// Reads the case and locks it until the transaction ends, so concurrent actions serialise.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<CaseRow>> {
    Ok(
        sqlx::query_as::<_, CaseRow>("SELECT * FROM cases WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn update_routing(
    conn: &mut PgConnection,
    id: Uuid,
    rule: &str,
    catalogue_version: &str,
    explanation: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE cases SET rule = $2, catalogue_version = $3, explanation = $4, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(rule)
    .bind(catalogue_version)
    .bind(explanation)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn raise_escalation(conn: &mut PgConnection, id: Uuid) -> Result<i32> {
    Ok(sqlx::query_scalar(
        "UPDATE cases SET escalation_level = escalation_level + 1, updated_at = now()
         WHERE id = $1 RETURNING escalation_level",
    )
    .bind(id)
    .fetch_one(conn)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct AssignmentRow {
    pub id: i64,
    pub case_id: Uuid,
    pub unit_code: String,
    pub role: String,
    pub assigned_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
    pub forced: bool,
}

pub async fn assign(
    conn: &mut PgConnection,
    case_id: Uuid,
    unit: &str,
    role: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    assign_with(conn, case_id, unit, role, at, false).await
}

/// `forced`: a manager's ruling; the unit may not return the case.
pub async fn assign_with(
    conn: &mut PgConnection,
    case_id: Uuid,
    unit: &str,
    role: &str,
    at: DateTime<Utc>,
    forced: bool,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO assignments (case_id, unit_code, role, assigned_at, forced)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(case_id)
    .bind(unit)
    .bind(role)
    .bind(at)
    .bind(forced)
    .execute(conn)
    .await?;
    Ok(())
}

/// Lead units that returned the case, oldest first.
pub async fn returned_by(conn: &mut PgConnection, case_id: Uuid) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT unit_code FROM assignments
         WHERE case_id = $1 AND role = 'lead' AND end_reason = 'returned' ORDER BY id",
    )
    .bind(case_id)
    .fetch_all(conn)
    .await?)
}

/// The id of the case's latest event of a type, if any.
pub async fn latest_event_of_type(
    conn: &mut PgConnection,
    case_id: Uuid,
    event_type: &str,
) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT event_id FROM case_events WHERE case_id = $1 AND event_type = $2
         ORDER BY id DESC LIMIT 1",
    )
    .bind(case_id)
    .bind(event_type)
    .fetch_optional(conn)
    .await?)
}

/// Puts the case before a manager (or takes it off, with `None`).
pub async fn set_ruling_requested(
    conn: &mut PgConnection,
    id: Uuid,
    request: Option<serde_json::Value>,
) -> Result<()> {
    sqlx::query("UPDATE cases SET ruling_requested = $2 WHERE id = $1")
        .bind(id)
        .bind(request)
        .execute(conn)
        .await?;
    Ok(())
}

/// Cases waiting for a manager's ruling, oldest first.
pub async fn awaiting_ruling(conn: &mut PgConnection, limit: i64) -> Result<Vec<CaseRow>> {
    Ok(sqlx::query_as::<_, CaseRow>(
        "SELECT * FROM cases WHERE ruling_requested IS NOT NULL ORDER BY updated_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// The topic and district a re-routing settled on.
pub async fn set_placement(
    conn: &mut PgConnection,
    id: Uuid,
    topic: &str,
    district: Option<&str>,
) -> Result<()> {
    sqlx::query("UPDATE cases SET topic = $2, district = $3 WHERE id = $1")
        .bind(id)
        .bind(topic)
        .bind(district)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ends every active assignment of the case.
pub async fn end_assignments(
    conn: &mut PgConnection,
    case_id: Uuid,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE assignments SET ended_at = $3, end_reason = $2
         WHERE case_id = $1 AND ended_at IS NULL",
    )
    .bind(case_id)
    .bind(reason)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn assignments(conn: &mut PgConnection, case_id: Uuid) -> Result<Vec<AssignmentRow>> {
    Ok(sqlx::query_as::<_, AssignmentRow>(
        "SELECT * FROM assignments WHERE case_id = $1 ORDER BY id",
    )
    .bind(case_id)
    .fetch_all(conn)
    .await?)
}

/// The unit's current role on the case, if it has one.
pub async fn active_role(
    conn: &mut PgConnection,
    case_id: Uuid,
    unit: &str,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT role FROM assignments WHERE case_id = $1 AND unit_code = $2 AND ended_at IS NULL
         ORDER BY CASE role WHEN 'lead' THEN 0 WHEN 'assisting' THEN 1 ELSE 2 END LIMIT 1",
    )
    .bind(case_id)
    .bind(unit)
    .fetch_optional(conn)
    .await?)
}

/// A page of a case list: newest first, `after` the last case of the previous page (its
/// `received_at` and id), at most `limit` cases.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

impl Page {
    fn received_before(&self) -> Option<DateTime<Utc>> {
        self.after.map(|(at, _)| at)
    }

    fn id_before(&self) -> Option<Uuid> {
        self.after.map(|(_, id)| id)
    }
}

/// Cases a unit is currently assigned to, newest first.
pub async fn for_unit(
    conn: &mut PgConnection,
    unit: &str,
    state: Option<&str>,
    page: Page,
) -> Result<Vec<(CaseRow, String)>> {
    let rows = sqlx::query_as::<_, CaseWithRole>(
        "SELECT c.*, a.role AS unit_role FROM cases c
         JOIN assignments a ON a.case_id = c.id AND a.unit_code = $1 AND a.ended_at IS NULL
         WHERE ($2::text IS NULL OR c.state = $2)
           AND ($4::timestamptz IS NULL OR (c.received_at, c.id) < ($4, $5))
         ORDER BY c.received_at DESC, c.id DESC LIMIT $3",
    )
    .bind(unit)
    .bind(state)
    .bind(page.limit)
    .bind(page.received_before())
    .bind(page.id_before())
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.case, r.unit_role)).collect())
}

#[derive(sqlx::FromRow)]
struct CaseWithRole {
    #[sqlx(flatten)]
    case: CaseRow,
    unit_role: String,
}

pub async fn by_state(
    conn: &mut PgConnection,
    state: Option<&str>,
    page: Page,
) -> Result<Vec<CaseRow>> {
    Ok(sqlx::query_as::<_, CaseRow>(
        "SELECT * FROM cases WHERE ($1::text IS NULL OR state = $1)
           AND ($3::timestamptz IS NULL OR (received_at, id) < ($3, $4))
         ORDER BY received_at DESC, id DESC LIMIT $2",
    )
    .bind(state)
    .bind(page.limit)
    .bind(page.received_before())
    .bind(page.id_before())
    .fetch_all(conn)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct CaseEventRow {
    pub id: i64,
    pub case_id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub from_state: Option<String>,
    pub to_state: String,
    pub actor_kind: String,
    pub actor_id: String,
    pub actor_name: String,
    pub actor_unit: Option<String>,
    pub detail: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
}

/// One transition: the new state, its history row and its outbox event, in the caller's
/// transaction. `from` is `None` when the case is created.
pub async fn record_transition(
    conn: &mut PgConnection,
    case_id: Uuid,
    from: Option<&str>,
    to: &str,
    event: &Event,
    detail: serde_json::Value,
) -> Result<()> {
    if from.is_some() {
        // Leaving `returned` settles any pending ruling.
        sqlx::query(
            "UPDATE cases SET state = $2, updated_at = $3,
                 ruling_requested = CASE WHEN $2 = 'returned' THEN ruling_requested END
             WHERE id = $1",
        )
        .bind(case_id)
        .bind(to)
        .bind(event.occurred_at)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "INSERT INTO case_events (case_id, event_id, event_type, from_state, to_state, actor_kind,
             actor_id, actor_name, actor_unit, detail, occurred_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(case_id)
    .bind(event.event_id)
    .bind(event.event_type())
    .bind(from)
    .bind(to)
    .bind(&event.actor.kind)
    .bind(&event.actor.id)
    .bind(&event.actor.name)
    .bind(&event.actor.unit)
    .bind(detail)
    .bind(event.occurred_at)
    .execute(&mut *conn)
    .await?;
    crate::outbox::enqueue(conn, event).await
}

/// One history row, by the id of the event that made it.
pub async fn event(conn: &mut PgConnection, event_id: Uuid) -> Result<Option<CaseEventRow>> {
    Ok(
        sqlx::query_as::<_, CaseEventRow>("SELECT * FROM case_events WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn history(conn: &mut PgConnection, case_id: Uuid) -> Result<Vec<CaseEventRow>> {
    Ok(sqlx::query_as::<_, CaseEventRow>(
        "SELECT * FROM case_events WHERE case_id = $1 ORDER BY id",
    )
    .bind(case_id)
    .fetch_all(conn)
    .await?)
}

/// Marks the case as waiting for the citizen (or not, with `None`).
pub async fn set_paused(
    conn: &mut PgConnection,
    id: Uuid,
    paused: Option<(DateTime<Utc>, &str)>,
) -> Result<()> {
    sqlx::query("UPDATE cases SET paused_at = $2, pause_reason = $3 WHERE id = $1")
        .bind(id)
        .bind(paused.map(|p| p.0))
        .bind(paused.map(|p| p.1))
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether the case was forwarded to the school (二级派单) by the unit that still leads it: a
/// school loses sight of a case its bureau no longer handles.
pub async fn forwarded_to(conn: &mut PgConnection, case_id: Uuid, school: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM case_forwards f
             JOIN assignments a ON a.case_id = f.case_id AND a.unit_code = f.unit_code
                 AND a.role = 'lead' AND a.ended_at IS NULL
             WHERE f.case_id = $1 AND f.school = $2)",
    )
    .bind(case_id)
    .bind(school)
    .fetch_one(conn)
    .await?)
}

/// Cases forwarded to a school, newest first.
pub async fn forwarded_to_school(
    conn: &mut PgConnection,
    school: &str,
    state: Option<&str>,
    page: Page,
) -> Result<Vec<CaseRow>> {
    Ok(sqlx::query_as::<_, CaseRow>(
        "SELECT c.* FROM cases c JOIN case_forwards f ON f.case_id = c.id AND f.school = $1
         WHERE ($2::text IS NULL OR c.state = $2)
           AND EXISTS (SELECT 1 FROM assignments a WHERE a.case_id = c.id
                       AND a.unit_code = f.unit_code AND a.role = 'lead' AND a.ended_at IS NULL)
           AND ($4::timestamptz IS NULL OR (c.received_at, c.id) < ($4, $5))
         ORDER BY c.received_at DESC, c.id DESC LIMIT $3",
    )
    .bind(school)
    .bind(state)
    .bind(page.limit)
    .bind(page.received_before())
    .bind(page.id_before())
    .fetch_all(conn)
    .await?)
}

/// Records a forward to a school; false if the case was already forwarded there.
pub async fn forward(
    conn: &mut PgConnection,
    case_id: Uuid,
    school: &str,
    unit: &str,
    note: &str,
    at: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO case_forwards (case_id, school, unit_code, note, forwarded_at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(case_id)
    .bind(school)
    .bind(unit)
    .bind(note)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Schools the case was forwarded to.
pub async fn forwards(
    conn: &mut PgConnection,
    case_id: Uuid,
) -> Result<Vec<(String, String, DateTime<Utc>)>> {
    Ok(sqlx::query_as(
        "SELECT school, unit_code, forwarded_at FROM case_forwards WHERE case_id = $1 ORDER BY id",
    )
    .bind(case_id)
    .fetch_all(conn)
    .await?)
}

/// The case's most recent lead unit, current or not.
pub async fn last_lead(conn: &mut PgConnection, case_id: Uuid) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT unit_code FROM assignments WHERE case_id = $1 AND role = 'lead'
         ORDER BY id DESC LIMIT 1",
    )
    .bind(case_id)
    .fetch_optional(conn)
    .await?)
}

/// Marks a new case as a repeat request of a closed one, charged to the unit that closed it.
pub async fn set_repeat_of(
    conn: &mut PgConnection,
    id: Uuid,
    repeat_of: Uuid,
    unit: Option<&str>,
) -> Result<()> {
    sqlx::query("UPDATE cases SET repeat_of = $2, repeat_of_unit = $3 WHERE id = $1")
        .bind(id)
        .bind(repeat_of)
        .bind(unit)
        .execute(conn)
        .await?;
    Ok(())
}
