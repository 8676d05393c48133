//! Proactive work: hotspots, proactive tasks, special items and their events.

use crate::Result;
use chrono::{DateTime, Utc};
use hotline_events::Event;
use sqlx::PgConnection;
use uuid::Uuid;

/// Stores a proactive event (append-only) and queues it for Kafka, in the caller's transaction.
pub async fn record_event(
    conn: &mut PgConnection,
    aggregate_id: Uuid,
    event: &Event,
    detail: serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO proactive_events (event_id, event_type, aggregate_id, detail, occurred_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(event.event_id)
    .bind(event.event_type())
    .bind(aggregate_id)
    .bind(detail)
    .bind(event.occurred_at)
    .execute(&mut *conn)
    .await?;
    crate::outbox::enqueue(conn, event).await
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ProactiveEventRow {
    pub event_id: Uuid,
    pub event_type: String,
    pub aggregate_id: Uuid,
    pub detail: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
}

pub async fn events(conn: &mut PgConnection, limit: i64) -> Result<Vec<ProactiveEventRow>> {
    Ok(sqlx::query_as(
        "SELECT event_id, event_type, aggregate_id, detail, occurred_at FROM proactive_events
         ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// What a count counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// Every appeal: complaint volume.
    Appeals,
    /// Distinct callers (by phone hash; an appeal without a number counts alone): one persistent
    /// caller is not a surge.
    Callers,
}

/// Classified appeals (or their callers) on a topic at a school, in a district or city-wide,
/// received in (from, to].
pub async fn count_appeals(
    conn: &mut PgConnection,
    scope: &str,
    topic: &str,
    place: &str,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    counting: Counting,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT CASE WHEN $6 THEN count(DISTINCT coalesce(caller_key, id::text)) ELSE count(*) END
         FROM appeals
         WHERE topic = $2 AND received_at > $4 AND received_at <= $5
           AND CASE $1 WHEN 'school' THEN school = $3 WHEN 'district' THEN district = $3
                       ELSE true END",
    )
    .bind(scope)
    .bind(topic)
    .bind(place)
    .bind(from)
    .bind(to)
    .bind(counting == Counting::Callers)
    .fetch_one(conn)
    .await?)
}

/// When the last special item on this topic and place closed, if one did.
pub async fn last_closed(
    conn: &mut PgConnection,
    topic: &str,
    scope: &str,
    place: &str,
) -> Result<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar(
        "SELECT max(closed_at) FROM special_items WHERE topic = $1 AND scope = $2 AND place = $3",
    )
    .bind(topic)
    .bind(scope)
    .bind(place)
    .fetch_one(conn)
    .await?)
}

/// The latest appeals of a key in (from, to]: a hotspot's sample cases.
pub async fn sample_appeals(
    conn: &mut PgConnection,
    scope: &str,
    topic: &str,
    place: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM appeals
         WHERE topic = $2 AND received_at > $4 AND received_at <= $5
           AND CASE $1 WHEN 'school' THEN school = $3 ELSE district = $3 END
         ORDER BY received_at DESC LIMIT 5",
    )
    .bind(scope)
    .bind(topic)
    .bind(place)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct HotspotRow {
    pub id: Uuid,
    pub scope: String,
    pub topic: String,
    pub place: String,
    pub district: Option<String>,
    pub state: String,
    pub raised_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub quiet_until: Option<DateTime<Utc>>,
    pub evidence: serde_json::Value,
    pub sample_appeals: Vec<Uuid>,
}

/// Whether a new hotspot on the key may be raised at `at`: none open, none in its quiet time.
pub async fn key_is_free(
    conn: &mut PgConnection,
    scope: &str,
    topic: &str,
    place: &str,
    at: DateTime<Utc>,
) -> Result<bool> {
    let busy: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM hotspots WHERE scope = $1 AND topic = $2 AND place = $3
             AND (state = 'open' OR quiet_until > $4))",
    )
    .bind(scope)
    .bind(topic)
    .bind(place)
    .bind(at)
    .fetch_one(conn)
    .await?;
    Ok(!busy)
}

pub struct NewHotspot<'a> {
    pub id: Uuid,
    pub scope: &'a str,
    pub topic: &'a str,
    pub place: &'a str,
    pub district: Option<&'a str>,
    pub raised_at: DateTime<Utc>,
    pub evidence: serde_json::Value,
    pub sample_appeals: &'a [Uuid],
}

/// Inserts an open hotspot; false if one is already open on the key (a concurrent raise).
pub async fn insert_hotspot(conn: &mut PgConnection, h: &NewHotspot<'_>) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO hotspots (id, scope, topic, place, district, state, raised_at, evidence,
             sample_appeals)
         VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(h.id)
    .bind(h.scope)
    .bind(h.topic)
    .bind(h.place)
    .bind(h.district)
    .bind(h.raised_at)
    .bind(&h.evidence)
    .bind(h.sample_appeals)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn open_hotspots(conn: &mut PgConnection) -> Result<Vec<HotspotRow>> {
    Ok(
        sqlx::query_as("SELECT * FROM hotspots WHERE state = 'open' ORDER BY raised_at")
            .fetch_all(conn)
            .await?,
    )
}

pub async fn hotspots(
    conn: &mut PgConnection,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<HotspotRow>> {
    Ok(sqlx::query_as(
        "SELECT * FROM hotspots WHERE ($1::text IS NULL OR state = $1)
         ORDER BY raised_at DESC LIMIT $2",
    )
    .bind(state)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

pub async fn resolve_hotspot(
    conn: &mut PgConnection,
    id: Uuid,
    at: DateTime<Utc>,
    quiet_until: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE hotspots SET state = 'resolved', resolved_at = $2, quiet_until = $3
         WHERE id = $1 AND state = 'open'",
    )
    .bind(id)
    .bind(at)
    .bind(quiet_until)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Hotspots raised on a key since `since`.
pub async fn hotspots_raised_since(
    conn: &mut PgConnection,
    scope: &str,
    topic: &str,
    place: &str,
    since: DateTime<Utc>,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM hotspots WHERE scope = $1 AND topic = $2 AND place = $3
             AND raised_at >= $4",
    )
    .bind(scope)
    .bind(topic)
    .bind(place)
    .bind(since)
    .fetch_one(conn)
    .await?)
}

pub struct NewTask<'a> {
    pub id: Uuid,
    pub kind: &'a str,
    pub source: &'a str,
    pub unit: &'a str,
    pub title: &'a str,
    pub detail: serde_json::Value,
    pub due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Creates the task unless the same source already gave this unit one. True when created.
pub async fn insert_task(conn: &mut PgConnection, t: &NewTask<'_>) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO proactive_tasks (id, kind, source, unit_code, title, detail, due_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(t.id)
    .bind(t.kind)
    .bind(t.source)
    .bind(t.unit)
    .bind(t.title)
    .bind(&t.detail)
    .bind(t.due_at)
    .bind(t.created_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct TaskRow {
    pub id: Uuid,
    pub kind: String,
    pub source: String,
    pub unit_code: String,
    pub title: String,
    pub detail: serde_json::Value,
    pub due_at: Option<DateTime<Utc>>,
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
    pub done_note: Option<String>,
}

pub async fn tasks(
    conn: &mut PgConnection,
    unit: Option<&str>,
    kind: Option<&str>,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<TaskRow>> {
    Ok(sqlx::query_as(
        "SELECT * FROM proactive_tasks
         WHERE ($1::text IS NULL OR unit_code = $1) AND ($2::text IS NULL OR kind = $2)
           AND ($3::text IS NULL OR state = $3)
         ORDER BY created_at DESC LIMIT $4",
    )
    .bind(unit)
    .bind(kind)
    .bind(state)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// Marks a unit's open task done. False when there is no such open task for the unit.
pub async fn complete_task(
    conn: &mut PgConnection,
    id: Uuid,
    unit: Option<&str>,
    note: &str,
    at: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE proactive_tasks SET state = 'done', done_at = $4, done_note = $3
         WHERE id = $1 AND state = 'open' AND ($2::text IS NULL OR unit_code = $2)",
    )
    .bind(id)
    .bind(unit)
    .bind(note)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct SpecialItemRow {
    pub id: Uuid,
    pub title: String,
    pub topic: String,
    pub scope: String,
    pub place: String,
    pub district: Option<String>,
    pub owner_unit: String,
    pub state: String,
    pub trigger: serde_json::Value,
    pub plan: String,
    pub deadline: DateTime<Utc>,
    pub opened_at: DateTime<Utc>,
    pub opened_by: String,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<String>,
    pub close_note: Option<String>,
}

pub struct NewSpecialItem<'a> {
    pub id: Uuid,
    pub title: &'a str,
    pub topic: &'a str,
    pub scope: &'a str,
    pub place: &'a str,
    pub district: Option<&'a str>,
    pub owner_unit: &'a str,
    pub trigger: serde_json::Value,
    pub plan: &'a str,
    pub deadline: DateTime<Utc>,
    pub opened_at: DateTime<Utc>,
    pub opened_by: &'a str,
}

/// Opens the item unless one is open on the same topic and place. True when opened.
pub async fn insert_special_item(conn: &mut PgConnection, i: &NewSpecialItem<'_>) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO special_items (id, title, topic, scope, place, district, owner_unit, state,
             trigger, plan, deadline, opened_at, opened_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9, $10, $11, $12)
         ON CONFLICT DO NOTHING",
    )
    .bind(i.id)
    .bind(i.title)
    .bind(i.topic)
    .bind(i.scope)
    .bind(i.place)
    .bind(i.district)
    .bind(i.owner_unit)
    .bind(&i.trigger)
    .bind(i.plan)
    .bind(i.deadline)
    .bind(i.opened_at)
    .bind(i.opened_by)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn open_special_item(
    conn: &mut PgConnection,
    topic: &str,
    scope: &str,
    place: &str,
) -> Result<Option<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM special_items WHERE topic = $1 AND scope = $2 AND place = $3
             AND state = 'open'",
    )
    .bind(topic)
    .bind(scope)
    .bind(place)
    .fetch_optional(conn)
    .await?)
}

pub async fn link_cases(conn: &mut PgConnection, item: Uuid, cases: &[Uuid]) -> Result<()> {
    sqlx::query(
        "INSERT INTO special_item_cases (item_id, case_id) SELECT $1, unnest($2::uuid[])
         ON CONFLICT DO NOTHING",
    )
    .bind(item)
    .bind(cases)
    .execute(conn)
    .await?;
    Ok(())
}

/// Live cases on a school and topic received since `since`.
pub async fn school_topic_cases(
    conn: &mut PgConnection,
    school: &str,
    topic: &str,
    since: DateTime<Utc>,
) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM cases WHERE school = $1 AND topic = $2 AND received_at >= $3
             AND state NOT IN ('transferred_out', 'linked')
         ORDER BY received_at",
    )
    .bind(school)
    .bind(topic)
    .bind(since)
    .fetch_all(conn)
    .await?)
}

pub async fn special_items(
    conn: &mut PgConnection,
    state: Option<&str>,
    owner: Option<&str>,
) -> Result<Vec<SpecialItemRow>> {
    Ok(sqlx::query_as(
        "SELECT * FROM special_items WHERE ($1::text IS NULL OR state = $1)
             AND ($2::text IS NULL OR owner_unit = $2)
         ORDER BY opened_at DESC LIMIT 500",
    )
    .bind(state)
    .bind(owner)
    .fetch_all(conn)
    .await?)
}

pub async fn special_item(conn: &mut PgConnection, id: Uuid) -> Result<Option<SpecialItemRow>> {
    Ok(sqlx::query_as("SELECT * FROM special_items WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

pub async fn special_item_cases(conn: &mut PgConnection, id: Uuid) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT case_id FROM special_item_cases WHERE item_id = $1 ORDER BY case_id",
    )
    .bind(id)
    .fetch_all(conn)
    .await?)
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct NoteRow {
    pub author: String,
    pub note: String,
    pub at: DateTime<Utc>,
}

pub async fn special_item_notes(conn: &mut PgConnection, id: Uuid) -> Result<Vec<NoteRow>> {
    Ok(sqlx::query_as(
        "SELECT author, note, at FROM special_item_notes WHERE item_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(conn)
    .await?)
}

pub async fn add_note(
    conn: &mut PgConnection,
    id: Uuid,
    author: &str,
    note: &str,
    plan: Option<&str>,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO special_item_notes (item_id, author, note, at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(author)
    .bind(note)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    if let Some(plan) = plan {
        sqlx::query("UPDATE special_items SET plan = $2 WHERE id = $1")
            .bind(id)
            .bind(plan)
            .execute(conn)
            .await?;
    }
    Ok(())
}

pub async fn close_special_item(
    conn: &mut PgConnection,
    id: Uuid,
    by: &str,
    note: &str,
    at: DateTime<Utc>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE special_items SET state = 'closed', closed_at = $4, closed_by = $2, close_note = $3
         WHERE id = $1 AND state = 'open'",
    )
    .bind(id)
    .bind(by)
    .bind(note)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
