//! Router worker: AppealClassified → a case with its assignments (or in triage, or transferred
//! out) → CaseRouted, which names the rule that fired.

use crate::{parse_uuid, sqlx_error, store_error, Clock};
use hotline_bus::{Handler, HandlerError};
use hotline_domain::case::CaseState;
use hotline_domain::routing::{AssignmentRole, DispatchCatalogue, RoutingDecision, RoutingInput};
use hotline_domain::schools::SchoolDirectory;
use hotline_domain::units::UnitsDirectory;
use hotline_events::{convert, timestamp, v1, Actor, Event, Payload};
use hotline_store::{appeals, cases, processed, PgPool};
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "hotline-router";

pub struct Directories {
    pub units: UnitsDirectory,
    pub schools: SchoolDirectory,
    pub catalogue: DispatchCatalogue,
}

impl Directories {
    pub fn builtin() -> Self {
        let units = UnitsDirectory::builtin();
        let catalogue = DispatchCatalogue::builtin(&units);
        Self {
            units,
            schools: SchoolDirectory::builtin(),
            catalogue,
        }
    }
}

pub struct RouterWorker<C> {
    pub pool: PgPool,
    pub directories: Arc<Directories>,
    pub clock: C,
}

pub fn wire_role(role: AssignmentRole) -> i32 {
    match role {
        AssignmentRole::Lead => v1::AssignmentRole::Lead as i32,
        AssignmentRole::Assisting => v1::AssignmentRole::Assisting as i32,
        AssignmentRole::Informed => v1::AssignmentRole::Informed as i32,
    }
}

pub fn wire_state(state: CaseState) -> i32 {
    use v1::CaseState as W;
    (match state {
        CaseState::Triage => W::Triage,
        CaseState::Routed => W::Routed,
        CaseState::Accepted => W::Accepted,
        CaseState::Contacted => W::Contacted,
        CaseState::Resolved => W::Resolved,
        CaseState::CallbackDone => W::CallbackDone,
        CaseState::Closed => W::Closed,
        CaseState::Returned => W::Returned,
        CaseState::Reopened => W::Reopened,
        CaseState::TransferredOut => W::TransferredOut,
        CaseState::Linked => W::Linked,
    }) as i32
}

impl<C: Clock> Handler for RouterWorker<C> {
    fn name(&self) -> &str {
        NAME
    }

    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let Payload::AppealClassified(classified) = &event.payload else {
            return Ok(());
        };
        let appeal_id = parse_uuid(&classified.appeal_id, "appeal_id")?;
        let classification = convert::classification(classified)
            .map_err(|e| HandlerError::Rejected(e.to_string()))?;
        let mut tx = self.pool.begin().await.map_err(sqlx_error)?;
        if !processed::claim(&mut tx, NAME, event.event_id)
            .await
            .map_err(store_error)?
        {
            tracing::debug!("already routed; skipping redelivery");
            return Ok(());
        }
        let appeal = appeals::get(&mut tx, appeal_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                HandlerError::Failed(format!("appeal {appeal_id} is not in the database"))
            })?;

        let dirs = &self.directories;
        let school = classification
            .school
            .as_deref()
            .and_then(|s| dirs.schools.by_name(s));
        let decision = dirs.catalogue.route(
            &RoutingInput {
                topic: classification.topic,
                confidence: classification.confidence,
                education_related: classification.education_related,
                urgent: classification.urgent,
                district: classification.district.as_deref(),
                school,
            },
            &dirs.units,
        );
        let (state, assignments, rule, explanation) = match &decision {
            RoutingDecision::Route {
                assignments,
                rule,
                explanation,
            } => (CaseState::Routed, assignments.clone(), rule, explanation),
            RoutingDecision::Triage { rule, explanation } => {
                (CaseState::Triage, Vec::new(), rule, explanation)
            }
            RoutingDecision::TransferOut { rule, explanation } => {
                (CaseState::TransferredOut, Vec::new(), rule, explanation)
            }
        };

        let now = self.clock.now();
        let case_id = Uuid::now_v7();
        let topic = classification.topic.as_str();
        cases::insert(
            &mut tx,
            &cases::NewCase {
                id: case_id,
                state: state.as_str(),
                topic,
                district: classification.district.as_deref(),
                school: classification.school.as_deref(),
                urgent: classification.urgent,
                historical: appeal.historical,
                received_at: appeal.received_at,
                rule,
                catalogue_version: dirs.catalogue.version(),
                explanation,
            },
        )
        .await
        .map_err(store_error)?;
        for assignment in &assignments {
            cases::assign(
                &mut tx,
                case_id,
                assignment.unit.as_str(),
                assignment.role.as_str(),
                now,
            )
            .await
            .map_err(store_error)?;
        }
        let routed = Event::new(
            case_id.to_string(),
            Actor::system(NAME),
            now,
            Payload::CaseRouted(v1::CaseRouted {
                case_id: case_id.to_string(),
                appeal_id: appeal_id.to_string(),
                state: wire_state(state),
                topic: topic.to_owned(),
                district: classification.district.clone().unwrap_or_default(),
                school: classification.school.clone().unwrap_or_default(),
                urgent: classification.urgent,
                assignments: assignments
                    .iter()
                    .map(|a| v1::Assignment {
                        unit: a.unit.to_string(),
                        role: wire_role(a.role),
                    })
                    .collect(),
                rule: rule.clone(),
                catalogue_version: dirs.catalogue.version().to_owned(),
                explanation: explanation.clone(),
                received_at: Some(timestamp(appeal.received_at)),
                historical: appeal.historical,
            }),
        )
        .with_traceparent(event.traceparent.clone());
        let detail = serde_json::json!({
            "rule": rule,
            "catalogue_version": dirs.catalogue.version(),
            "explanation": explanation,
            "assignments": assignments,
            "appeal_id": appeal_id,
        });
        cases::record_transition(&mut tx, case_id, None, state.as_str(), &routed, detail)
            .await
            .map_err(store_error)?;
        appeals::attach_to_case(&mut tx, appeal_id, case_id, state.as_str())
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(sqlx_error)?;
        metrics::counter!("hotline_cases_created_total", "state" => state.as_str()).increment(1);
        tracing::info!(%case_id, %appeal_id, state = %state, %rule, "case created");
        Ok(())
    }
}
