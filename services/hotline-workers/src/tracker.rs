//! Tracker worker: keeps each case's deadline clocks from its events, and a scanner that turns
//! passed warning points and deadlines into DeadlineWarned / DeadlineBreached (and a first-level
//! escalation) exactly once, also for those that passed while the tracker was down.

use crate::calendar::CalendarSlot;
use crate::{parse_uuid, sqlx_error, store_error, Clock};
use hotline_bus::{Handler, HandlerError};
use hotline_domain::calendar::WorkingCalendar;
use hotline_domain::deadlines::{DeadlineKind, DeadlinePolicy, Urgency};
use hotline_events::{timestamp, v1, Actor, Event, Payload};
use hotline_store::deadlines::{self, Alert, OpenClock};
use hotline_store::{cases, processed, PgConnection, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const NAME: &str = "hotline-tracker";

/// How long an alert waits, past its time, for the tracker to catch up with the case's history
/// (see [`deadlines::lock_due`]).
pub const ALERT_GRACE: chrono::Duration = chrono::Duration::minutes(15);
/// Unit told about every breach (督办).
pub const SUPERVISION_UNIT: &str = "qdedu-inspection";
/// From the second breach of a case on, the bureau's office (its leadership's desk) hears too.
pub const SECOND_LEVEL_UNIT: &str = "qdedu-office";

fn notified_units(level: i32) -> Vec<String> {
    let mut units = vec![SUPERVISION_UNIT.to_owned()];
    if level >= 2 {
        units.push(SECOND_LEVEL_UNIT.to_owned());
    }
    units
}

pub struct Rules {
    pub policy: DeadlinePolicy,
    pub calendar: Arc<CalendarSlot>,
}

impl Rules {
    pub fn builtin() -> Self {
        Self {
            policy: DeadlinePolicy::builtin(),
            calendar: Arc::new(CalendarSlot::new(WorkingCalendar::builtin())),
        }
    }
}

pub struct TrackerWorker<C> {
    pub pool: PgPool,
    pub rules: Arc<Rules>,
    pub clock: C,
}

impl<C: Clock> Handler for TrackerWorker<C> {
    fn name(&self) -> &str {
        NAME
    }

    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let case_id = match &event.payload {
            Payload::AppealFiled(_) | Payload::AppealClassified(_) => return Ok(()),
            Payload::DeadlineWarned(_)
            | Payload::DeadlineBreached(_)
            | Payload::CaseEscalated(_) => {
                return Ok(()); // our own output
            }
            _ => parse_uuid(&event.aggregate_id, "aggregate_id")?,
        };
        let mut tx = self.pool.begin().await.map_err(sqlx_error)?;
        if !processed::claim(&mut tx, NAME, event.event_id)
            .await
            .map_err(store_error)?
        {
            return Ok(());
        }
        let case = cases::get(&mut tx, case_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                HandlerError::Failed(format!("case {case_id} is not in the database"))
            })?;
        let urgency = Urgency::from_flag(case.urgent);
        let at = event.occurred_at;
        let topic = case.topic.parse().ok();
        let open = |kinds: &'static [DeadlineKind], from| ClockPlan {
            kinds,
            topic,
            from,
            urgency,
            historical: case.historical,
        };
        match &event.payload {
            Payload::CaseRouted(routed) if routed.state == v1::CaseState::Routed as i32 => {
                // The first unit's clocks run from when the citizen called.
                let lead = lead_unit(&routed.assignments);
                self.open(
                    &mut tx,
                    case_id,
                    lead.as_deref(),
                    open(&UNIT_CLOCKS, case.received_at),
                )
                .await?;
            }
            Payload::CaseRerouted(rerouted) => {
                // A new unit's clocks start at its assignment.
                deadlines::cancel_open(&mut tx, case_id, at)
                    .await
                    .map_err(store_error)?;
                let lead = lead_unit(&rerouted.assignments);
                self.open(&mut tx, case_id, lead.as_deref(), open(&UNIT_CLOCKS, at))
                    .await?;
            }
            Payload::CaseAccepted(_) => meet(&mut tx, case_id, &[DeadlineKind::Sign], at).await?,
            Payload::CaseContacted(_) => {
                meet(
                    &mut tx,
                    case_id,
                    &[DeadlineKind::Sign, DeadlineKind::Contact],
                    at,
                )
                .await?
            }
            Payload::CaseResolved(resolved) => {
                // Resolved while paused: the pause ends here, so the clock is judged with the
                // paused time added, as a resume would have.
                deadlines::resume(&mut tx, case_id, DeadlineKind::Resolve.as_str(), at)
                    .await
                    .map_err(store_error)?;
                meet(&mut tx, case_id, &UNIT_CLOCKS, at).await?;
                self.open(
                    &mut tx,
                    case_id,
                    Some(&resolved.unit),
                    open(&[DeadlineKind::Callback], at),
                )
                .await?;
            }
            Payload::CallbackRecorded(_) => {
                meet(&mut tx, case_id, &[DeadlineKind::Callback], at).await?;
                // Decided by this callback's own history row, not by the case's state now: the
                // unit may already have contacted the citizen again before this event arrived, and
                // a satisfied callback may be handled after another caller's reopened the case.
                let reopened_here = cases::event(&mut tx, event.event_id)
                    .await
                    .map_err(store_error)?
                    .is_some_and(|row| {
                        row.to_state == "reopened" && row.from_state.as_deref() != Some("reopened")
                    });
                if reopened_here {
                    self.open_reopen_clock(&mut tx, case_id, at, case.historical)
                        .await?;
                }
            }
            Payload::CaseReopened(_) => {
                // A manager reopened a closed case: it gets the same re-handling clock.
                self.open_reopen_clock(&mut tx, case_id, at, case.historical)
                    .await?;
            }
            Payload::CaseExtended(extended) => {
                let new_due =
                    hotline_events::from_timestamp(extended.new_resolve_by, "new_resolve_by")
                        .map_err(|e| HandlerError::Rejected(e.to_string()))?;
                let policy = &self.rules.policy;
                // The warning follows working days only where the clock counts them.
                let calendar = self.rules.calendar.current();
                let warn_calendar = policy
                    .limit(DeadlineKind::Resolve, urgency, topic)
                    .in_working_days()
                    .then_some(&*calendar);
                deadlines::extend(
                    &mut tx,
                    case_id,
                    DeadlineKind::Resolve.as_str(),
                    new_due,
                    i32::try_from(extended.working_days).unwrap_or(i32::MAX),
                    |s, d| policy.warn_at(s, d, warn_calendar),
                )
                .await
                .map_err(store_error)?;
            }
            Payload::CasePaused(_) => {
                deadlines::pause(&mut tx, case_id, DeadlineKind::Resolve.as_str(), at)
                    .await
                    .map_err(store_error)?;
            }
            Payload::CaseResumed(_) => {
                deadlines::resume(&mut tx, case_id, DeadlineKind::Resolve.as_str(), at)
                    .await
                    .map_err(store_error)?;
            }
            Payload::RepeatLinked(linked) if linked.repeat_case_id == case_id.to_string() => {
                deadlines::cancel_open(&mut tx, case_id, at)
                    .await
                    .map_err(store_error)?;
            }
            Payload::CaseReturned(_) | Payload::CaseTransferredOut(_) | Payload::CaseClosed(_) => {
                deadlines::cancel_open(&mut tx, case_id, at)
                    .await
                    .map_err(store_error)?;
            }
            _ => {}
        }
        tx.commit().await.map_err(sqlx_error)?;
        Ok(())
    }
}

const UNIT_CLOCKS: [DeadlineKind; 3] = [
    DeadlineKind::Sign,
    DeadlineKind::Contact,
    DeadlineKind::Resolve,
];

struct ClockPlan {
    kinds: &'static [DeadlineKind],
    topic: Option<hotline_domain::TopicCode>,
    from: chrono::DateTime<chrono::Utc>,
    urgency: Urgency,
    historical: bool,
}

impl<C: Clock> TrackerWorker<C> {
    /// Re-handling after an unsatisfied callback or a manager's reopening: the policy's reopen
    /// clock, counted against the lead unit.
    async fn open_reopen_clock(
        &self,
        tx: &mut PgConnection,
        case_id: Uuid,
        at: chrono::DateTime<chrono::Utc>,
        historical: bool,
    ) -> Result<(), HandlerError> {
        let lead = current_lead(tx, case_id).await?;
        let clock = self
            .rules
            .policy
            .reopen_clock(at, &self.rules.calendar.current());
        deadlines::open(
            tx,
            &OpenClock {
                case_id,
                unit: lead.as_deref(),
                clock,
                policy_version: &self.rules.policy.version,
                historical,
                reopen: true,
            },
        )
        .await
        .map_err(store_error)
    }

    async fn open(
        &self,
        conn: &mut PgConnection,
        case_id: Uuid,
        unit: Option<&str>,
        plan: ClockPlan,
    ) -> Result<(), HandlerError> {
        let calendar = self.rules.calendar.current();
        for kind in plan.kinds {
            let clock =
                self.rules
                    .policy
                    .clock(*kind, plan.urgency, plan.topic, plan.from, &calendar);
            deadlines::open(
                conn,
                &OpenClock {
                    case_id,
                    unit,
                    clock,
                    policy_version: &self.rules.policy.version,
                    historical: plan.historical,
                    reopen: false,
                },
            )
            .await
            .map_err(store_error)?;
        }
        Ok(())
    }
}

async fn meet(
    conn: &mut PgConnection,
    case_id: Uuid,
    kinds: &[DeadlineKind],
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), HandlerError> {
    for kind in kinds {
        deadlines::meet(conn, case_id, kind.as_str(), at)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

fn lead_unit(assignments: &[v1::Assignment]) -> Option<String> {
    assignments
        .iter()
        .find(|a| a.role == v1::AssignmentRole::Lead as i32)
        .map(|a| a.unit.clone())
}

async fn current_lead(
    conn: &mut PgConnection,
    case_id: Uuid,
) -> Result<Option<String>, HandlerError> {
    let rows = cases::assignments(conn, case_id)
        .await
        .map_err(store_error)?;
    Ok(rows
        .into_iter()
        .find(|a| a.role == "lead" && a.ended_at.is_none())
        .map(|a| a.unit_code))
}

fn wire_kind(kind: &str) -> i32 {
    use v1::DeadlineKind as W;
    (match kind.parse::<DeadlineKind>() {
        Ok(DeadlineKind::Sign) => W::Sign,
        Ok(DeadlineKind::Contact) => W::Contact,
        Ok(DeadlineKind::Resolve) => W::Resolve,
        Ok(DeadlineKind::Callback) => W::Callback,
        Err(_) => W::Unspecified,
    }) as i32
}

/// Scans for passed warning points and deadlines every `interval` until shutdown.
pub async fn run_deadline_scanner<C: Clock>(
    pool: PgPool,
    clock: C,
    interval: Duration,
    shutdown: CancellationToken,
) {
    tracing::info!(?interval, "deadline scanner started");
    loop {
        for alert in [Alert::Breach, Alert::Warning] {
            match scan_once(&pool, &clock, alert).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(n, ?alert, "deadline alerts emitted"),
                Err(error) => tracing::error!(%error, "deadline scan failed"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    tracing::info!("deadline scanner stopped");
}

/// One pass: every due alert of one kind, each with its event in the same transaction as the mark,
/// so an alert is emitted exactly once even across crashes.
pub async fn scan_once<C: Clock>(
    pool: &PgPool,
    clock: &C,
    alert: Alert,
) -> Result<usize, hotline_store::StoreError> {
    let now = clock.now();
    let mut tx = pool.begin().await?;
    let due = deadlines::lock_due(&mut tx, alert, now, 200, NAME, ALERT_GRACE).await?;
    // The alert's history row keeps the case's state, so the case is locked first: an unlocked
    // read could write back a state the API changed meanwhile. Locking in id order keeps two
    // scanners from deadlocking on each other's cases.
    let mut case_ids: Vec<Uuid> = due.iter().map(|row| row.case_id).collect();
    case_ids.sort_unstable();
    case_ids.dedup();
    let mut states = std::collections::HashMap::with_capacity(case_ids.len());
    for case_id in case_ids {
        if let Some(case) = cases::lock(&mut tx, case_id).await? {
            states.insert(case_id, case.state);
        }
    }
    let mut emitted = 0;
    for row in &due {
        let Some(state) = states.get(&row.case_id) else {
            continue;
        };
        if deadlines::still_held(&mut tx, row.id, alert, now, NAME, ALERT_GRACE).await? {
            continue;
        }
        emitted += 1;
        let unit = row.unit_code.clone().unwrap_or_default();
        let (payload, counter) = match alert {
            Alert::Warning => (
                Payload::DeadlineWarned(v1::DeadlineWarned {
                    case_id: row.case_id.to_string(),
                    deadline: wire_kind(&row.kind),
                    unit: unit.clone(),
                    due_at: Some(timestamp(row.due_at)),
                }),
                "hotline_deadline_warnings_total",
            ),
            Alert::Breach => (
                Payload::DeadlineBreached(v1::DeadlineBreached {
                    case_id: row.case_id.to_string(),
                    deadline: wire_kind(&row.kind),
                    unit: unit.clone(),
                    due_at: Some(timestamp(row.due_at)),
                }),
                "hotline_deadline_breaches_total",
            ),
        };
        let event = Event::new(row.case_id.to_string(), Actor::system(NAME), now, payload);
        let detail = serde_json::json!({"deadline": row.kind, "unit": unit, "due_at": row.due_at});
        cases::record_transition(&mut tx, row.case_id, Some(state), state, &event, detail).await?;
        if alert == Alert::Breach {
            // 督办: the supervision office and managers hear of every breach.
            let level = cases::raise_escalation(&mut tx, row.case_id).await?;
            let escalated = Event::new(
                row.case_id.to_string(),
                Actor::system(NAME),
                now,
                Payload::CaseEscalated(v1::CaseEscalated {
                    case_id: row.case_id.to_string(),
                    deadline: wire_kind(&row.kind),
                    level: level as u32,
                    notified_units: notified_units(level),
                }),
            );
            let detail = serde_json::json!({"level": level, "deadline": row.kind, "notified_units": notified_units(level)});
            cases::record_transition(&mut tx, row.case_id, Some(state), state, &escalated, detail)
                .await?;
        }
        deadlines::mark_alerted(&mut tx, row.id, alert, now).await?;
        metrics::counter!(counter, "deadline" => row.kind.clone()).increment(1);
    }
    tx.commit().await?;
    Ok(emitted)
}
