//! Deadline clocks of each case, kept so warnings and breaches survive restarts: a breach that
//! happened while the tracker was down is found on the next scan and emitted once.

use crate::Result;
use chrono::{DateTime, Utc};
use hotline_domain::deadlines::Clock;
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct DeadlineRow {
    pub id: i64,
    pub case_id: Uuid,
    pub kind: String,
    pub unit_code: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub warn_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub policy_version: String,
    pub historical: bool,
    pub met_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub warned_at: Option<DateTime<Utc>>,
    pub breached_at: Option<DateTime<Utc>>,
    pub paused_at: Option<DateTime<Utc>>,
}

pub struct OpenClock<'a> {
    pub case_id: Uuid,
    pub unit: Option<&'a str>,
    pub clock: Clock,
    pub policy_version: &'a str,
    pub historical: bool,
    /// Re-handling after a reopening: recomputed with the policy's reopen limit.
    pub reopen: bool,
}

/// Starts a clock unless one of that kind is already running for the case.
pub async fn open(conn: &mut PgConnection, c: &OpenClock<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO case_deadlines (case_id, kind, unit_code, starts_at, warn_at, due_at,
             policy_version, historical, reopen)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(c.case_id)
    .bind(c.clock.kind.as_str())
    .bind(c.unit)
    .bind(c.clock.starts_at)
    .bind(c.clock.warn_at)
    .bind(c.clock.due_at)
    .bind(c.policy_version)
    .bind(c.historical)
    .bind(c.reopen)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn meet(
    conn: &mut PgConnection,
    case_id: Uuid,
    kind: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE case_deadlines SET met_at = $3
         WHERE case_id = $1 AND kind = $2 AND met_at IS NULL AND cancelled_at IS NULL",
    )
    .bind(case_id)
    .bind(kind)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Stops every running clock of the case (return, transfer out).
pub async fn cancel_open(conn: &mut PgConnection, case_id: Uuid, at: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "UPDATE case_deadlines SET cancelled_at = $2
         WHERE case_id = $1 AND met_at IS NULL AND cancelled_at IS NULL",
    )
    .bind(case_id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn for_case(conn: &mut PgConnection, case_id: Uuid) -> Result<Vec<DeadlineRow>> {
    Ok(sqlx::query_as::<_, DeadlineRow>(
        "SELECT * FROM case_deadlines WHERE case_id = $1 ORDER BY id",
    )
    .bind(case_id)
    .fetch_all(conn)
    .await?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alert {
    Warning,
    Breach,
}

/// Running clocks whose warning or due time has passed and that have not alerted yet, locked so
/// two trackers never emit the same alert.
///
/// A clock is met when the tracker (`tracker_consumer`) consumes the event that meets it, so a
/// unit that accepted a second before the deadline would look late while that event is still on
/// its way. A clock is therefore held back while its case has history in the clock's time that
/// the tracker has not processed yet. A breach waits no longer than `grace` after it fell due: a
/// record stuck in the dead-letter topic must not silence it for good. A warning waits as long as
/// it takes, since the breach is what bounds the wait.
pub async fn lock_due(
    conn: &mut PgConnection,
    alert: Alert,
    now: DateTime<Utc>,
    limit: i64,
    tracker_consumer: &str,
    grace: chrono::Duration,
) -> Result<Vec<DeadlineRow>> {
    let held = held(alert);
    let sql = match alert {
        Alert::Warning => format!(
            "SELECT d.* FROM case_deadlines d WHERE d.met_at IS NULL AND d.cancelled_at IS NULL
               AND NOT d.historical AND d.warned_at IS NULL AND d.breached_at IS NULL
               AND d.paused_at IS NULL AND d.warn_at <= $1 AND NOT {held}
             ORDER BY d.warn_at LIMIT $2 FOR UPDATE OF d SKIP LOCKED"
        ),
        Alert::Breach => format!(
            "SELECT d.* FROM case_deadlines d WHERE d.met_at IS NULL AND d.cancelled_at IS NULL
               AND NOT d.historical AND d.breached_at IS NULL AND d.paused_at IS NULL
               AND d.due_at <= $1 AND NOT {held}
             ORDER BY d.due_at LIMIT $2 FOR UPDATE OF d SKIP LOCKED"
        ),
    };
    let query = sqlx::query_as::<_, DeadlineRow>(&sql)
        .bind(now)
        .bind(limit)
        .bind(tracker_consumer);
    let query = match alert {
        Alert::Warning => query,
        Alert::Breach => query.bind(grace),
    };
    Ok(query.fetch_all(conn).await?)
}

/// Whether a clock's alert is still held for the tracker (see [`lock_due`]). Asked again once
/// the scanner holds the case's lock: a unit's action committed while the scanner waited for it
/// is history the tracker has not seen yet.
pub async fn still_held(
    conn: &mut PgConnection,
    id: i64,
    alert: Alert,
    now: DateTime<Utc>,
    tracker_consumer: &str,
    grace: chrono::Duration,
) -> Result<bool> {
    let sql = format!(
        "SELECT {} FROM case_deadlines d WHERE d.id = $2",
        held(alert)
    );
    let query = sqlx::query_scalar::<_, bool>(&sql)
        .bind(now)
        .bind(id)
        .bind(tracker_consumer);
    let query = match alert {
        Alert::Warning => query,
        Alert::Breach => query.bind(grace),
    };
    Ok(query.fetch_optional(conn).await?.unwrap_or(false))
}

/// History of the clock's case, since the clock started and within the last 12 hours (older
/// processed-event keys may have been pruned, and a tracker that far behind holds nothing), up
/// to `until`, that the tracker (`$3`) has not processed. `$1` is now.
fn unprocessed_history(until: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM case_events e
                  WHERE e.case_id = d.case_id AND e.occurred_at >= d.starts_at
                    AND e.occurred_at > $1 - interval '12 hours' AND e.occurred_at <= {until}
                    AND e.event_type NOT IN ('DeadlineWarned', 'DeadlineBreached', 'CaseEscalated')
                    AND NOT EXISTS (SELECT 1 FROM processed_events p
                                     WHERE p.consumer = $3 AND p.event_id = e.event_id))"
    )
}

/// Whether an alert is held (see [`lock_due`]): a warning as long as the tracker is behind on the
/// case, a breach at most the grace (`$4`) past its deadline.
fn held(alert: Alert) -> String {
    match alert {
        Alert::Warning => unprocessed_history("$1"),
        Alert::Breach => format!(
            "(d.due_at > $1 - $4 AND {})",
            unprocessed_history("d.due_at")
        ),
    }
}

pub async fn mark_alerted(
    conn: &mut PgConnection,
    id: i64,
    alert: Alert,
    at: DateTime<Utc>,
) -> Result<()> {
    let sql = match alert {
        Alert::Warning => "UPDATE case_deadlines SET warned_at = $2 WHERE id = $1",
        // A breach implies the warning: never warn after the fact.
        Alert::Breach => {
            "UPDATE case_deadlines SET breached_at = $2, warned_at = coalesce(warned_at, $2) WHERE id = $1"
        }
    };
    sqlx::query(sql).bind(id).bind(at).execute(conn).await?;
    Ok(())
}

/// Moves the running clock of `kind` to a new deadline (an approved extension). Its warning is
/// re-armed for the new deadline. A case is extended once, so the clock records that extension's
/// working days (set, not added: the migration that introduced the column may already have
/// filled them in).
pub async fn extend(
    conn: &mut PgConnection,
    case_id: Uuid,
    kind: &str,
    new_due_at: DateTime<Utc>,
    working_days: i32,
    warn_at: impl Fn(DateTime<Utc>, DateTime<Utc>) -> DateTime<Utc>,
) -> Result<()> {
    let running: Option<(i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, starts_at FROM case_deadlines WHERE case_id = $1 AND kind = $2
           AND met_at IS NULL AND cancelled_at IS NULL ORDER BY id DESC LIMIT 1 FOR UPDATE",
    )
    .bind(case_id)
    .bind(kind)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((id, starts_at)) = running {
        sqlx::query(
            "UPDATE case_deadlines SET due_at = $2, warn_at = $3, warned_at = NULL,
                 extension_working_days = $4
             WHERE id = $1 AND breached_at IS NULL",
        )
        .bind(id)
        .bind(new_due_at)
        .bind(warn_at(starts_at, new_due_at))
        .bind(working_days)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Stops the running clock of `kind` (waiting for the citizen).
pub async fn pause(
    conn: &mut PgConnection,
    case_id: Uuid,
    kind: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE case_deadlines SET paused_at = $3 WHERE case_id = $1 AND kind = $2
           AND met_at IS NULL AND cancelled_at IS NULL AND breached_at IS NULL AND paused_at IS NULL",
    )
    .bind(case_id)
    .bind(kind)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Restarts a paused clock: its warning and deadline move by the time it stood still.
pub async fn resume(
    conn: &mut PgConnection,
    case_id: Uuid,
    kind: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE case_deadlines SET due_at = due_at + ($3 - paused_at), warn_at = warn_at + ($3 - paused_at),
             paused_seconds = paused_seconds + floor(extract(epoch FROM $3 - paused_at))::bigint,
             paused_at = NULL
         WHERE case_id = $1 AND kind = $2 AND paused_at IS NOT NULL",
    )
    .bind(case_id)
    .bind(kind)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// A running clock with what recomputing it needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunningClock {
    pub id: i64,
    pub kind: String,
    pub starts_at: DateTime<Utc>,
    pub urgent: bool,
    pub topic: String,
    pub reopen: bool,
    pub extension_working_days: i32,
    pub paused_seconds: i64,
}

/// Every clock still running (not met, cancelled, breached or paused).
pub async fn running(conn: &mut PgConnection) -> Result<Vec<RunningClock>> {
    Ok(sqlx::query_as::<_, RunningClock>(
        "SELECT d.id, d.kind, d.starts_at, c.urgent, c.topic, d.reopen, d.extension_working_days,
                d.paused_seconds
         FROM case_deadlines d JOIN cases c ON c.id = d.case_id
         WHERE d.met_at IS NULL AND d.cancelled_at IS NULL AND d.breached_at IS NULL AND d.paused_at IS NULL
           AND NOT d.historical",
    )
    .fetch_all(conn)
    .await?)
}

/// Sets a recomputed deadline; the warning is re-armed if its new point is still ahead.
pub async fn recompute(
    conn: &mut PgConnection,
    id: i64,
    warn_at: DateTime<Utc>,
    due_at: DateTime<Utc>,
    policy_version: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE case_deadlines SET warn_at = $2, due_at = $3, policy_version = $4,
             warned_at = CASE WHEN $2 > $5 THEN NULL ELSE warned_at END
         WHERE id = $1",
    )
    .bind(id)
    .bind(warn_at)
    .bind(due_at)
    .bind(policy_version)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
