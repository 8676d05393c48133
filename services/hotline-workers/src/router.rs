//! Router worker: AppealClassified → a case with its assignments (or in triage, or transferred
//! out) → CaseRouted, which names the rule that fired. CaseReturned → the case re-routed by the
//! return's reason (CaseRerouted), or put before a manager (CaseRulingRequested).

use crate::{parse_uuid, sqlx_error, store_error, Clock};
use hotline_bus::{Handler, HandlerError};
use hotline_domain::case::{transition, CaseCommand, CaseState, ReturnReason};
use hotline_domain::district::DistrictMatcher;
use hotline_domain::repeats::{AppealFacts, Fingerprint, RepeatMatch, RepeatPolicy};
use hotline_domain::returns::{AfterReturn, ReturnedCase};
use hotline_domain::routing::{
    Assignment, AssignmentRole, DispatchCatalogue, RoutingDecision, RoutingInput,
};
use hotline_domain::schools::SchoolDirectory;
use hotline_domain::units::UnitsDirectory;
use hotline_domain::{TopicCode, UnitCode};
use hotline_events::trace::traceparent_for_emitted;
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
    pub repeats: RepeatPolicy,
}

impl Directories {
    pub fn builtin() -> Self {
        let units = UnitsDirectory::builtin();
        let catalogue = DispatchCatalogue::builtin(&units);
        Self {
            districts: DistrictMatcher::new(&units),
            repeats: RepeatPolicy::builtin(),
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
        if let Some(case_id) = appeal.case_id {
            // Already on a case (a second classification event for it): one appeal, one case.
            tracing::info!(%appeal_id, %case_id, "appeal already has a case; not routing it again");
            tx.commit().await.map_err(sqlx_error)?;
            return Ok(());
        }

        let mut repeat_of: Option<(Uuid, Option<String>, RepeatMatch)> = None;
        if !appeal.historical && appeal.repeat_check {
            if let Some(found) = self.find_repeat(&mut tx, &appeal, &classification).await? {
                // Decide on the case as it is under its lock, not as the search saw it.
                let locked = cases::lock(&mut tx, found.case_id)
                    .await
                    .map_err(store_error)?;
                match locked.as_ref().map(|c| c.state.as_str()) {
                    Some("closed" | "callback_done") => {
                        let unit = cases::last_lead(&mut tx, found.case_id)
                            .await
                            .map_err(store_error)?;
                        repeat_of = Some((found.case_id, unit, found.matched));
                    }
                    // An urgent call about a matter already open without urgency (the canteen's
                    // food was cold; now children are in hospital) is not folded in: it gets a
                    // case of its own with urgent clocks and the safety office told.
                    Some(_)
                        if classification.urgent && locked.as_ref().is_some_and(|c| !c.urgent) =>
                    {
                        tracing::info!(
                            appeal_id = %appeal.id,
                            case_id = %found.case_id,
                            "urgent appeal repeats a case that is not urgent; routing it on its own"
                        );
                    }
                    Some(state)
                        if state.parse::<CaseState>().is_ok_and(|s| {
                            s.is_open_with_unit()
                                || matches!(s, CaseState::Resolved | CaseState::Returned)
                        }) =>
                    {
                        let state = state.to_owned();
                        self.join(&mut tx, event, &appeal, found, &state).await?;
                        tx.commit().await.map_err(sqlx_error)?;
                        return Ok(());
                    }
                    // Linked or transferred out meanwhile: a case of its own.
                    _ => {}
                }
            }
        }

        let dirs = &self.directories;
        let school = classification
            .school
            .as_deref()
            .and_then(|s| dirs.schools.by_name(s));
        let normalised = hotline_domain::text::normalise(&appeal.content);
        let decision = dirs.catalogue.route(
            &RoutingInput::classified(&classification, school, &normalised),
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
        assign_all(&mut tx, case_id, &assignments, now).await?;
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
        .with_traceparent(traceparent_for_emitted(event.traceparent.as_deref()));
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
        if let Some((first, unit, matched)) = &repeat_of {
            // 重复诉求: the first case was closed, yet the matter is back.
            cases::set_repeat_of(&mut tx, case_id, *first, unit.as_deref())
                .await
                .map_err(store_error)?;
            metrics::counter!("hotline_repeat_requests_total", "topic" => topic.to_owned())
                .increment(1);
            tracing::info!(%case_id, repeat_of = %first, kind = matched.kind.as_str(), "repeat of a closed case");
        }
        appeals::attach_to_case(&mut tx, appeal_id, case_id, state.as_str())
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(sqlx_error)?;
        metrics::counter!("hotline_cases_created_total", "state" => state.as_str()).increment(1);
        tracing::info!(%case_id, %appeal_id, state = %state, %rule, "case created");
        Ok(())
    }

    /// The best earlier appeal this one repeats, if any.
    async fn find_repeat(
        &self,
        tx: &mut hotline_store::PgConnection,
        appeal: &appeals::AppealRow,
        classification: &hotline_domain::classify::Classification,
    ) -> Result<Option<FoundRepeat>, HandlerError> {
        let policy = &self.directories.repeats;
        let at = appeal.received_at;
        let mut keys: Vec<String> =
            appeal
                .caller_key
                .iter()
                .map(|caller| format!("repeat-caller:{caller}"))
                .chain(classification.school.iter().map(|school| {
                    format!("repeat-matter:{school}:{}", classification.topic.as_str())
                }))
                .collect();
        appeals::lock_repeat_keys(tx, &mut keys)
            .await
            .map_err(store_error)?;
        let candidates = appeals::repeat_candidates(
            tx,
            appeal.id,
            at,
            appeal.caller_key.as_deref(),
            at - chrono::Duration::days(policy.same_caller_days),
            classification.school.as_deref(),
            classification.topic.as_str(),
            at - chrono::Duration::hours(policy.other_caller_hours),
        )
        .await
        .map_err(store_error)?;
        if candidates.is_empty() {
            return Ok(None);
        }
        let fingerprint = Fingerprint::of(&appeal.content);
        let new = AppealFacts {
            caller: appeal.caller_key.as_deref(),
            topic: classification.topic,
            district: classification.district.as_deref(),
            school: classification.school.as_deref(),
            received_at: at,
            fingerprint: &fingerprint,
        };
        let mut best: Option<FoundRepeat> = None;
        for candidate in &candidates {
            let Some(topic) = candidate.topic.as_deref().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let earlier_fingerprint = Fingerprint::of(&candidate.content);
            let earlier = AppealFacts {
                caller: candidate.caller_key.as_deref(),
                topic,
                district: candidate.district.as_deref(),
                school: candidate.school.as_deref(),
                received_at: candidate.received_at,
                fingerprint: &earlier_fingerprint,
            };
            let Some(matched) = policy.judge(&new, &earlier) else {
                continue;
            };
            let case_open = !matches!(candidate.case_state.as_str(), "closed" | "callback_done");
            let found = FoundRepeat {
                appeal_id: candidate.id,
                case_id: candidate.case_id,
                case_open,
                matched,
            };
            // An open case beats a closed one; then the closer text.
            let better = best.as_ref().is_none_or(|b| {
                (found.case_open, found.matched.similarity) > (b.case_open, b.matched.similarity)
            });
            if better {
                best = Some(found);
            }
        }
        Ok(best)
    }

    /// Joins the appeal to the open case it repeats: the unit sees one case with every caller.
    async fn join(
        &self,
        tx: &mut hotline_store::PgConnection,
        event: &Event,
        appeal: &appeals::AppealRow,
        found: FoundRepeat,
        state: &str,
    ) -> Result<(), HandlerError> {
        let reason = format!(
            "{} (text overlap {:.2}) with appeal {}",
            match found.matched.kind {
                hotline_domain::repeats::RepeatKind::SameCaller => "same caller, same matter",
                hotline_domain::repeats::RepeatKind::SameMatter =>
                    "another caller, same matter at the same school",
            },
            found.matched.similarity,
            found.appeal_id
        );
        let linked = Event::new(
            found.case_id.to_string(),
            Actor::system(NAME),
            self.clock.now(),
            Payload::RepeatLinked(v1::RepeatLinked {
                primary_case_id: found.case_id.to_string(),
                repeat_case_id: String::new(),
                appeal_ids: vec![appeal.id.to_string()],
                reason: reason.clone(),
                match_kind: found.matched.kind.as_str().to_owned(),
                similarity: found.matched.similarity,
            }),
        )
        .with_traceparent(traceparent_for_emitted(event.traceparent.as_deref()));
        let detail = serde_json::json!({
            "appeal_ids": [appeal.id],
            "matched_appeal": found.appeal_id,
            "kind": found.matched.kind,
            "similarity": found.matched.similarity,
            "reason": reason,
        });
        cases::record_transition(
            tx,
            found.case_id,
            Some(state),
            state,
            &linked,
            detail.clone(),
        )
        .await
        .map_err(store_error)?;
        appeals::join_case(tx, appeal.id, found.case_id, detail)
            .await
            .map_err(store_error)?;
        metrics::counter!("hotline_repeats_linked_total", "kind" => found.matched.kind.as_str())
            .increment(1);
        tracing::info!(appeal_id = %appeal.id, case_id = %found.case_id, kind = found.matched.kind.as_str(), "appeal joined the case it repeats");
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
                .with_traceparent(traceparent_for_emitted(event.traceparent.as_deref()));
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
                assign_all(&mut tx, case_id, &assignments, now).await?;
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
                .with_traceparent(traceparent_for_emitted(event.traceparent.as_deref()));
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

async fn assign_all(
    tx: &mut hotline_store::PgConnection,
    case_id: Uuid,
    assignments: &[Assignment],
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), HandlerError> {
    for assignment in assignments {
        cases::assign(
            tx,
            case_id,
            assignment.unit.as_str(),
            assignment.role.as_str(),
            at,
        )
        .await
        .map_err(store_error)?;
    }
    Ok(())
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

struct FoundRepeat {
    appeal_id: Uuid,
    case_id: Uuid,
    /// As the search saw it; preferred over a closed case. Re-checked under the case's lock.
    case_open: bool,
    matched: RepeatMatch,
}
