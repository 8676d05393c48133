//! Appeals: what one citizen said once.

use crate::Result;
use chrono::{DateTime, Utc};
use hotline_domain::appeal::{NewAppeal, Provenance};
use hotline_domain::classify::Classification;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AppealRow {
    pub id: Uuid,
    pub content: String,
    pub channel: String,
    pub caller_name: Option<String>,
    pub caller_phone: Option<String>,
    pub caller_phone_masked: Option<String>,
    pub caller_confidential: bool,
    pub district_hint: Option<String>,
    pub school_hint: Option<String>,
    pub received_at: DateTime<Utc>,
    pub filed_at: DateTime<Utc>,
    pub filed_by: String,
    pub external_id: Option<String>,
    pub request_hash: String,
    pub historical: bool,
    pub traceparent: Option<String>,
    pub status: String,
    pub topic: Option<String>,
    pub confidence: Option<f64>,
    pub alternatives: Option<serde_json::Value>,
    pub urgent: Option<bool>,
    pub urgent_cue: Option<String>,
    pub district: Option<String>,
    pub school: Option<String>,
    pub terms: Option<Vec<String>>,
    pub education_related: Option<bool>,
    pub model_version: Option<String>,
    pub classified_at: Option<DateTime<Utc>>,
    pub case_id: Option<Uuid>,
    pub caller_key: Option<String>,
    pub repeat_match: Option<serde_json::Value>,
    pub repeat_check: bool,
}

/// Where an idempotent insert ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filed {
    Created(Uuid),
    /// The same Idempotency-Key or external id was seen before.
    Existing {
        id: Uuid,
        same_request: bool,
    },
}

pub struct AppealMeta<'a> {
    pub filed_by: &'a str,
    pub idempotency_key: Option<&'a str>,
    /// Hash of the request body, to tell a retry from a different request reusing a key.
    pub request_hash: &'a str,
    pub traceparent: Option<&'a str>,
    /// Keyed hash of the caller's phone.
    pub caller_key: Option<&'a str>,
}

pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    appeal: &NewAppeal,
    meta: &AppealMeta<'_>,
) -> Result<Filed> {
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO appeals (id, content, channel, caller_name, caller_phone, caller_phone_masked,
             caller_confidential, district_hint, school_hint, received_at, filed_by, external_id,
             idempotency_key, request_hash, historical, traceparent, caller_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(id)
    .bind(&appeal.content)
    .bind(appeal.channel.as_str())
    .bind(&appeal.caller_name)
    .bind(appeal.caller_phone.as_ref().map(|p| p.expose()))
    .bind(appeal.caller_phone.as_ref().map(|p| p.masked()))
    .bind(appeal.caller_confidential)
    .bind(&appeal.district_hint)
    .bind(&appeal.school_hint)
    .bind(appeal.received_at)
    .bind(meta.filed_by)
    .bind(&appeal.external_id)
    .bind(meta.idempotency_key)
    .bind(meta.request_hash)
    .bind(appeal.provenance == Provenance::Historical)
    .bind(meta.traceparent)
    .bind(meta.caller_key)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = inserted {
        return Ok(Filed::Created(id));
    }
    let existing: Option<(Uuid, String)> = sqlx::query_as(
        "SELECT id, request_hash FROM appeals
         WHERE ($1::text IS NOT NULL AND idempotency_key = $1)
            OR ($2::text IS NOT NULL AND external_id = $2)
         ORDER BY filed_at LIMIT 1",
    )
    .bind(meta.idempotency_key)
    .bind(&appeal.external_id)
    .fetch_optional(&mut *conn)
    .await?;
    match existing {
        Some((id, hash)) => Ok(Filed::Existing {
            id,
            same_request: hash == meta.request_hash,
        }),
        None => Err(crate::StoreError::Corrupt(
            "appeal insert conflicted but no conflicting appeal was found".into(),
        )),
    }
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<AppealRow>> {
    Ok(
        sqlx::query_as::<_, AppealRow>("SELECT * FROM appeals WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

/// The appeal, locked until the transaction ends.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> Result<Option<AppealRow>> {
    Ok(
        sqlx::query_as::<_, AppealRow>("SELECT * FROM appeals WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn for_case(conn: &mut PgConnection, case_id: Uuid) -> Result<Vec<AppealRow>> {
    Ok(sqlx::query_as::<_, AppealRow>(
        "SELECT * FROM appeals WHERE case_id = $1 ORDER BY received_at",
    )
    .bind(case_id)
    .fetch_all(conn)
    .await?)
}

pub async fn record_classification(
    conn: &mut PgConnection,
    id: Uuid,
    c: &Classification,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE appeals SET status = 'classified', topic = $2, confidence = $3, alternatives = $4,
             urgent = $5, urgent_cue = $6, district = $7, school = $8, terms = $9,
             education_related = $10, model_version = $11, classified_at = $12
         WHERE id = $1",
    )
    .bind(id)
    .bind(c.topic.as_str())
    .bind(c.confidence)
    .bind(serde_json::to_value(&c.alternatives).unwrap_or_default())
    .bind(c.urgent)
    .bind(&c.urgent_cue)
    .bind(&c.district)
    .bind(&c.school)
    .bind(&c.terms)
    .bind(c.education_related)
    .bind(&c.model_version)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn attach_to_case(
    conn: &mut PgConnection,
    id: Uuid,
    case_id: Uuid,
    status: &str,
) -> Result<()> {
    sqlx::query("UPDATE appeals SET case_id = $2, status = $3 WHERE id = $1")
        .bind(id)
        .bind(case_id)
        .bind(status)
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves every appeal of one case to another (repeat linking); returns their ids.
pub async fn move_to_case(
    conn: &mut PgConnection,
    from_case: Uuid,
    to_case: Uuid,
) -> Result<Vec<Uuid>> {
    Ok(
        sqlx::query_scalar("UPDATE appeals SET case_id = $2 WHERE case_id = $1 RETURNING id")
            .bind(from_case)
            .bind(to_case)
            .fetch_all(conn)
            .await?,
    )
}

/// The classifier's view of each case's first appeal: topic, confidence, alternatives.
pub async fn first_classifications(
    conn: &mut PgConnection,
    case_ids: &[Uuid],
) -> Result<Vec<(Uuid, Option<String>, Option<f64>, Option<serde_json::Value>)>> {
    Ok(sqlx::query_as(
        "SELECT DISTINCT ON (case_id) case_id, topic, confidence, alternatives FROM appeals
         WHERE case_id = ANY($1) ORDER BY case_id, received_at",
    )
    .bind(case_ids)
    .fetch_all(conn)
    .await?)
}

/// An earlier appeal that a new one may repeat, with its case.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RepeatCandidate {
    pub id: Uuid,
    pub case_id: Uuid,
    pub content: String,
    pub caller_key: Option<String>,
    pub topic: Option<String>,
    pub district: Option<String>,
    pub school: Option<String>,
    pub received_at: DateTime<Utc>,
    pub case_state: String,
}

/// Serialises the repeat checks of appeals that could repeat each other, for the rest of the
/// transaction: two routers handling the same caller's, or the same school's, appeals at once
/// would otherwise each miss the other's uncommitted case and open two. `keys` name the caller
/// and the matter; they are locked in sorted order so two checks cannot deadlock.
pub async fn lock_repeat_keys(conn: &mut PgConnection, keys: &mut [String]) -> Result<()> {
    keys.sort_unstable();
    for key in keys.iter() {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Earlier appeals with a case that could be the same matter: from the same caller since
/// `caller_since`, or about the same school and topic since `school_since`. Newest first.
#[allow(clippy::too_many_arguments)]
pub async fn repeat_candidates(
    conn: &mut PgConnection,
    appeal_id: Uuid,
    received_at: DateTime<Utc>,
    caller_key: Option<&str>,
    caller_since: DateTime<Utc>,
    school: Option<&str>,
    topic: &str,
    school_since: DateTime<Utc>,
) -> Result<Vec<RepeatCandidate>> {
    Ok(sqlx::query_as::<_, RepeatCandidate>(
        "SELECT a.id, a.case_id, a.content, a.caller_key, a.topic, a.district, a.school,
                a.received_at, c.state AS case_state
         FROM appeals a JOIN cases c ON c.id = a.case_id
         WHERE a.id <> $1 AND a.received_at <= $2
           AND c.state NOT IN ('transferred_out', 'linked', 'triage')
           AND (($3::text IS NOT NULL AND a.caller_key = $3 AND a.received_at >= $4)
             OR ($5::text IS NOT NULL AND a.school = $5 AND a.topic = $6 AND a.received_at >= $7))
         ORDER BY a.received_at DESC LIMIT 50",
    )
    .bind(appeal_id)
    .bind(received_at)
    .bind(caller_key)
    .bind(caller_since)
    .bind(school)
    .bind(topic)
    .bind(school_since)
    .fetch_all(conn)
    .await?)
}

/// Cases the same caller opened since `since`, newest first: shown to the operator at filing.
pub async fn same_caller_cases(
    conn: &mut PgConnection,
    caller_key: &str,
    since: DateTime<Utc>,
    except: Uuid,
) -> Result<Vec<(Uuid, Uuid, DateTime<Utc>, Option<String>, String)>> {
    Ok(sqlx::query_as(
        "SELECT a.id, a.case_id, a.received_at, a.topic, c.state
         FROM appeals a JOIN cases c ON c.id = a.case_id
         WHERE a.caller_key = $1 AND a.received_at >= $2 AND a.id <> $3
         ORDER BY a.received_at DESC LIMIT 10",
    )
    .bind(caller_key)
    .bind(since)
    .bind(except)
    .fetch_all(conn)
    .await?)
}

/// The appeal joined an existing case as a repeat.
pub async fn join_case(
    conn: &mut PgConnection,
    id: Uuid,
    case_id: Uuid,
    repeat_match: serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "UPDATE appeals SET case_id = $2, status = 'routed', repeat_match = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(case_id)
    .bind(repeat_match)
    .execute(conn)
    .await?;
    Ok(())
}

/// An operator took the appeal out of the case it joined: it waits to be routed on its own.
pub async fn detach_for_routing(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE appeals SET case_id = NULL, status = 'classified', repeat_match = NULL,
             repeat_check = false
         WHERE id = $1",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}
