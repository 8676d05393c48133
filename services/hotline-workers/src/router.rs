//! Router worker: AppealClassified → a case with its assignments (or in triage, or transferred
//! out) → CaseRouted, which names the rule that fired. CaseReturned → the case re-routed by the
//! return's reason (CaseRerouted), or put before a manager (CaseRulingRequested).

use crate::{parse_uuid, sqlx_error, store_error, Clock};
use hotline_bus::{Handler, HandlerError};
use hotline_domain::case::{transition, CaseCommand, CaseState, ReturnReason};
use hotline_domain::district::DistrictMatcher;
use hotline_domain::returns::{AfterReturn, ReturnedCase};
use hotline_domain::routing::{
    Assignment, AssignmentRole, DispatchCatalogue, RoutingDecision, RoutingInput,
};
use hotline_domain::schools::SchoolDirectory;
use hotline_domain::units::UnitsDirectory;
use hotline_domain::{TopicCode, UnitCode};
use hotline_events::{convert, timestamp, v1, Actor, Event, Payload};
use hotline_store::{appeals, cases, processed, PgPool};
use std::sync::Arc;
use uuid::Uuid;

pub const NAME: &str = "hotline-router";

pub struct Directories {
    pub units: UnitsDirectory,
    pub schools: SchoolDirectory,
    pub catalogue: DispatchCatalogue,
    pub districts: DistrictMatcher,
}

impl Directories {
    pub fn builtin() -> Self {
        let units = UnitsDirectory::builtin();
        let catalogue = DispatchCatalogue::builtin(&units);
        Self {
            districts: DistrictMatcher::new(&units),
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
        match &event.payload {
            Payload::AppealClassified(classified) => self.route(event, classified).await,
            Payload::CaseReturned(returned) => self.after_return(event, returned).await,
            _ => Ok(()),
        }
    }
}

pub fn wire_assignments(assignments: &[Assignment]) -> Vec<v1::Assignment> {
    assignments
        .iter()
        .map(|a| v1::Assignment {
            unit: a.unit.to_string(),
            role: wire_role(a.role),
        })
        .collect()
}

impl<C: Clock> RouterWorker<C> {
    async fn route(
        &self,
        event: &Event,
        classified: &v1::AppealClassified,
    ) -> Result<(), HandlerError> {
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
                assignments: wire_assignments(&assignments),
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

    /// Re-routes a returned case by its reason, or stops for a manager's ruling. Acts only while
    /// the case is still in the state this return left it: a manager or operator may have moved it
    /// on already, and a late redelivery must not undo that.
    async fn after_return(
        &self,
        event: &Event,
        returned: &v1::CaseReturned,
    ) -> Result<(), HandlerError> {
        let case_id = parse_uuid(&returned.case_id, "case_id")?;
        let reason = parse_reason(&returned.reason)?;
        let mut tx = self.pool.begin().await.map_err(sqlx_error)?;
        if !processed::claim(&mut tx, NAME, event.event_id)
            .await
            .map_err(store_error)?
        {
            return Ok(());
        }
        let case = cases::lock(&mut tx, case_id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                HandlerError::Failed(format!("case {case_id} is not in the database"))
            })?;
        let latest_return = cases::latest_event_of_type(&mut tx, case_id, "CaseReturned")
            .await
            .map_err(store_error)?;
        if case.state != CaseState::Returned.as_str()
            || latest_return != Some(event.event_id)
            || case.ruling_requested.is_some()
        {
            tracing::info!(%case_id, state = %case.state, "return already dealt with; not re-routing");
            tx.commit().await.map_err(sqlx_error)?;
            return Ok(());
        }
        let returned_by: Vec<UnitCode> = cases::returned_by(&mut tx, case_id)
            .await
            .map_err(store_error)?
            .iter()
            .filter_map(|u| UnitCode::parse(u).ok())
            .collect();
        let alternatives = alternatives(
            &appeals::for_case(&mut tx, case_id)
                .await
                .map_err(store_error)?,
        );
        let topic: TopicCode =
            case.topic
                .parse()
                .map_err(|e: hotline_domain::topic::UnknownTopic| {
                    HandlerError::Failed(e.to_string())
                })?;
        let dirs = &self.directories;
        let decision = dirs.catalogue.after_return(
            &ReturnedCase {
                reason,
                note: &returned.note,
                returned_by: &returned_by,
                topic,
                alternatives: &alternatives,
                district: case.district.as_deref(),
                school: case.school.as_deref().and_then(|s| dirs.schools.by_name(s)),
                urgent: case.urgent,
            },
            &dirs.units,
            &dirs.districts,
        );
        let now = self.clock.now();
        let returned_by: Vec<String> = returned_by.iter().map(UnitCode::to_string).collect();
        match decision {
            AfterReturn::Reroute {
                topic,
                district,
                assignments,
                rule,
                explanation,
            } => {
                let to = transition(CaseState::Returned, CaseCommand::Assign)
                    .map_err(|e| HandlerError::Failed(e.to_string()))?;
                let rerouted = Event::new(
                    case_id.to_string(),
                    Actor::system(NAME),
                    now,
                    Payload::CaseRerouted(v1::CaseRerouted {
                        case_id: case_id.to_string(),
                        assignments: wire_assignments(&assignments),
                        rule: rule.clone(),
                        catalogue_version: dirs.catalogue.version().to_owned(),
                        explanation: explanation.clone(),
                        forced: false,
                        topic: topic.as_str().to_owned(),
                        district: district.clone().unwrap_or_default(),
                    }),
                )
                .with_traceparent(event.traceparent.clone());
                let detail = serde_json::json!({
                    "rule": rule,
                    "catalogue_version": dirs.catalogue.version(),
                    "explanation": explanation,
                    "assignments": assignments,
                    "topic": topic,
                    "district": district,
                    "after_return": {"reason": reason, "returned_by": returned_by},
                });
                cases::record_transition(
                    &mut tx,
                    case_id,
                    Some(CaseState::Returned.as_str()),
                    to.as_str(),
                    &rerouted,
                    detail,
                )
                .await
                .map_err(store_error)?;
                cases::set_placement(&mut tx, case_id, topic.as_str(), district.as_deref())
                    .await
                    .map_err(store_error)?;
                cases::update_routing(
                    &mut tx,
                    case_id,
                    &rule,
                    dirs.catalogue.version(),
                    &explanation,
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
                tracing::info!(%case_id, %rule, "returned case re-routed");
            }
            AfterReturn::Ruling {
                rule,
                explanation,
                proposed_link,
            } => {
                let requested = Event::new(
                    case_id.to_string(),
                    Actor::system(NAME),
                    now,
                    Payload::CaseRulingRequested(v1::CaseRulingRequested {
                        case_id: case_id.to_string(),
                        rule: rule.clone(),
                        explanation: explanation.clone(),
                        returned_by: returned_by.clone(),
                        proposed_link_case_id: proposed_link
                            .map(|id| id.to_string())
                            .unwrap_or_default(),
                    }),
                )
                .with_traceparent(event.traceparent.clone());
                let detail = serde_json::json!({
                    "rule": rule,
                    "explanation": explanation,
                    "returned_by": returned_by,
                    "proposed_link": proposed_link,
                    "reason": reason,
                    "note": returned.note,
                });
                cases::record_transition(
                    &mut tx,
                    case_id,
                    Some(CaseState::Returned.as_str()),
                    CaseState::Returned.as_str(),
                    &requested,
                    detail.clone(),
                )
                .await
                .map_err(store_error)?;
                cases::set_ruling_requested(&mut tx, case_id, Some(detail))
                    .await
                    .map_err(store_error)?;
                metrics::counter!("hotline_rulings_requested_total", "rule" => rule.clone())
                    .increment(1);
                tracing::info!(%case_id, %rule, "returned case put before a manager");
            }
        }
        tx.commit().await.map_err(sqlx_error)?;
        Ok(())
    }
}

fn parse_reason(raw: &str) -> Result<ReturnReason, HandlerError> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned()))
        .map_err(|_| HandlerError::Rejected(format!("unknown return reason `{raw}`")))
}

/// The classifier's candidate topics for the case's first appeal, best first.
fn alternatives(appeals: &[hotline_store::appeals::AppealRow]) -> Vec<TopicCode> {
    appeals
        .iter()
        .find_map(|a| a.alternatives.as_ref())
        .and_then(|v| v.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.get("topic")?.as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
