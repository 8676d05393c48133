//! Reading what the rates need: each case's charged unit, clocks and callback.

use crate::Result;
use chrono::{DateTime, Utc};
use hotline_domain::case::Satisfaction;
use hotline_domain::rates::{CallbackRecord, CaseRecord, ClockRecord};
use sqlx::PgConnection;
use std::collections::HashMap;
use uuid::Uuid;

fn satisfaction(raw: &str) -> Option<Satisfaction> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned())).ok()
}

/// case id, kind, starts_at, due_at, met_at
type ClockRow = (
    Uuid,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

/// Cases received in `[from, to)` that reached a unit (not triage-only, not transferred out), with
/// the unit that last led them, their latest clocks and each caller's latest callback.
pub async fn case_records(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<CaseRecord>> {
    let cases: Vec<(Uuid, DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT c.id, c.received_at, lead.unit_code
         FROM cases c
         JOIN LATERAL (SELECT a.unit_code FROM assignments a
                       WHERE a.case_id = c.id AND a.role = 'lead'
                       ORDER BY a.assigned_at DESC, a.id DESC LIMIT 1) lead ON true
         WHERE c.received_at >= $1 AND c.received_at < $2 AND c.state NOT IN ('transferred_out', 'linked')",
    )
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = cases.iter().map(|c| c.0).collect();
    let clocks: Vec<ClockRow> = sqlx::query_as(
        "SELECT DISTINCT ON (case_id, kind) case_id, kind, starts_at, due_at, met_at
         FROM case_deadlines WHERE case_id = ANY($1) AND cancelled_at IS NULL
         ORDER BY case_id, kind, id DESC",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let callbacks: Vec<(Uuid, serde_json::Value)> = sqlx::query_as(
        "SELECT DISTINCT ON (case_id, coalesce(detail->>'appeal_id', '')) case_id, detail
         FROM case_events
         WHERE case_id = ANY($1) AND event_type = 'CallbackRecorded'
         ORDER BY case_id, coalesce(detail->>'appeal_id', ''), id DESC",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut clock_map: HashMap<(Uuid, String), ClockRecord> = HashMap::new();
    for (case_id, kind, starts_at, due_at, met_at) in clocks {
        clock_map.insert(
            (case_id, kind),
            ClockRecord {
                starts_at,
                due_at,
                met_at,
            },
        );
    }
    let mut callback_map: HashMap<Uuid, Vec<CallbackRecord>> = HashMap::new();
    for (case_id, detail) in callbacks {
        // A caller who was not reached gave no answer to count.
        let record = (|| {
            if detail.get("reached").and_then(serde_json::Value::as_bool) == Some(false) {
                return None;
            }
            Some(CallbackRecord {
                solved: detail.get("solved")?.as_bool()?,
                satisfaction: satisfaction(detail.get("satisfaction")?.as_str()?)?,
            })
        })();
        if let Some(record) = record {
            callback_map.entry(case_id).or_default().push(record);
        }
    }
    Ok(cases
        .into_iter()
        .map(|(id, received_at, unit)| {
            let clock = |kind: &str| clock_map.get(&(id, kind.to_owned())).copied();
            CaseRecord {
                unit,
                received_at,
                sign: clock("sign"),
                contact: clock("contact"),
                resolve: clock("resolve"),
                callbacks: callback_map.remove(&id).unwrap_or_default(),
            }
        })
        .collect())
}

/// Repeat requests (重复诉求) per (unit, topic) in [from, to): cases the unit closed in the period,
/// and new cases in the period about a matter it had closed (charged to it).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct RepeatRequests {
    pub unit: String,
    pub topic: String,
    pub closed: i64,
    pub repeats: i64,
}

pub async fn repeat_requests(
    conn: &mut PgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<RepeatRequests>> {
    Ok(sqlx::query_as::<_, RepeatRequests>(
        "WITH closed AS (
             SELECT a.unit_code AS unit, c.topic, count(DISTINCT c.id) AS n
             FROM cases c
             JOIN assignments a ON a.case_id = c.id AND a.role = 'lead' AND a.ended_at IS NULL
             WHERE c.state IN ('closed', 'callback_done') AND c.updated_at >= $1 AND c.updated_at < $2
             GROUP BY 1, 2),
         repeats AS (
             SELECT repeat_of_unit AS unit, topic, count(*) AS n FROM cases
             WHERE repeat_of IS NOT NULL AND repeat_of_unit IS NOT NULL
               AND received_at >= $1 AND received_at < $2
             GROUP BY 1, 2)
         SELECT coalesce(c.unit, r.unit) AS unit, coalesce(c.topic, r.topic) AS topic,
                coalesce(c.n, 0) AS closed, coalesce(r.n, 0) AS repeats
         FROM closed c FULL JOIN repeats r ON c.unit = r.unit AND c.topic = r.topic
         ORDER BY 1, 2",
    )
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await?)
}
