//! 未诉先办 and 专项深办. The proactive worker:
//! - on each classified appeal, counts its (topic, school) and (topic, district) in the hotspot
//!   window of event time against the key's baseline, and raises a hotspot (HotspotDetected) with
//!   a proactive task for the unit the dispatch catalogue names;
//! - on each routed case, opens a special item when a school+topic keeps coming back, and links
//!   later cases to an open item; a district+topic hotspot raised again does the same;
//! - every scan, resolves hotspots back to baseline and creates the seasonal playbooks' reminders.
//!
//! Counts come from PostgreSQL, so the worker keeps no state of its own: a restart or a
//! redelivery gives the same answers, and the processed-event key makes each effect happen once.

use crate::router::Directories;
use crate::{sqlx_error, store_error, Clock};
use chrono::{DateTime, Duration, Utc};
use hotline_bus::{Handler, HandlerError};
use hotline_domain::hotspots::{Counts, HotspotKey, HotspotPolicy};
use hotline_domain::playbooks::Playbooks;
use hotline_domain::routing::{AssignmentRole, RoutingDecision, RoutingInput};
use hotline_domain::special::{SpecialItemPolicy, Trigger};
use hotline_domain::TopicCode;
use hotline_events::trace::traceparent_for_emitted;
use hotline_events::{convert, timestamp, v1, Actor, Event, Payload};
use hotline_store::proactive::Counting;
use hotline_store::{proactive, processed, PgConnection, PgPool};
use serde_json::json;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const NAME: &str = "hotline-proactive";

pub struct ProactiveRules {
    pub hotspots: HotspotPolicy,
    pub special: SpecialItemPolicy,
    pub playbooks: Playbooks,
    pub directories: Arc<Directories>,
}

impl ProactiveRules {
    pub fn builtin(directories: Arc<Directories>) -> Self {
        Self {
            hotspots: HotspotPolicy::builtin(),
            special: SpecialItemPolicy::builtin(),
            playbooks: Playbooks::builtin(&directories.units),
            directories,
        }
    }

    /// The unit that should act on a topic at a place: the catalogue's lead.
    fn responsible_unit(
        &self,
        topic: TopicCode,
        district: Option<&str>,
        school: Option<&str>,
    ) -> Option<String> {
        let dirs = &self.directories;
        let school = school.and_then(|s| dirs.schools.by_name(s));
        let decision = dirs.catalogue.route(
            &RoutingInput::settled(topic, false, district, school),
            &dirs.units,
        );
        match decision {
            RoutingDecision::Route { assignments, .. } => assignments
                .into_iter()
                .find(|a| a.role == AssignmentRole::Lead)
                .map(|a| a.unit.to_string()),
            _ => None,
        }
    }
}

pub struct ProactiveWorker<C> {
    pub pool: PgPool,
    pub rules: Arc<ProactiveRules>,
    pub clock: C,
}

impl<C: Clock> Handler for ProactiveWorker<C> {
    fn name(&self) -> &str {
        NAME
    }

    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let interesting = match &event.payload {
            Payload::AppealClassified(c) => !c.historical,
            Payload::CaseRouted(r) => !r.historical && !r.school.is_empty(),
            _ => false,
        };
        if !interesting {
            return Ok(());
        }
        // A classification this worker cannot read is a poison record: dead-lettered with its
        // error, never marked processed and skipped.
        let classified_input = match &event.payload {
            Payload::AppealClassified(classified) => {
                let classification = convert::classification(classified)
                    .map_err(|e| HandlerError::Rejected(e.to_string()))?;
                let appeal_id = crate::parse_uuid(&classified.appeal_id, "appeal_id")?;
                Some((classification, appeal_id))
            }
            _ => None,
        };
        let mut tx = self.pool.begin().await.map_err(sqlx_error)?;
        if !processed::claim(&mut tx, NAME, event.event_id)
            .await
            .map_err(store_error)?
        {
            return Ok(());
        }
        match &event.payload {
            Payload::AppealClassified(_) => match classified_input {
                Some((classification, appeal_id)) => {
                    self.on_classified(&mut tx, event, &classification, appeal_id)
                        .await
                }
                None => Ok(()),
            },
            Payload::CaseRouted(routed) => self.on_routed(&mut tx, routed).await,
            _ => Ok(()),
        }
        .map_err(store_error)?;
        tx.commit().await.map_err(sqlx_error)?;
        Ok(())
    }
}

type StoreResult<T> = Result<T, hotline_store::StoreError>;

impl<C: Clock> ProactiveWorker<C> {
    async fn on_classified(
        &self,
        tx: &mut PgConnection,
        event: &Event,
        classification: &hotline_domain::classify::Classification,
        appeal_id: Uuid,
    ) -> StoreResult<()> {
        // Event time: when the citizen called, not when we got to it.
        let Some(at) = hotline_store::appeals::get(tx, appeal_id)
            .await?
            .map(|a| a.received_at)
        else {
            return Ok(());
        };
        let policy = &self.rules.hotspots;
        for key in HotspotKey::of(
            classification.topic,
            classification.district.as_deref(),
            classification.school.as_deref(),
        ) {
            let (scope, topic, place) = (key.scope(), key.topic().as_str(), key.place());
            if !proactive::key_is_free(tx, scope, topic, place, at).await? {
                continue;
            }
            let window_start = at - policy.window();
            let counts = key_counts(tx, policy, scope, topic, place, at).await?;
            let Some(evidence) = policy.assess(&key, counts, at) else {
                continue;
            };
            let samples =
                proactive::sample_appeals(tx, scope, topic, place, window_start, at).await?;
            let id = Uuid::now_v7();
            let district = classification.district.as_deref();
            let inserted = proactive::insert_hotspot(
                tx,
                &proactive::NewHotspot {
                    id,
                    scope,
                    topic,
                    place,
                    district,
                    raised_at: at,
                    evidence: json!(evidence),
                    sample_appeals: &samples,
                },
            )
            .await?;
            if !inserted {
                continue;
            }
            let detected = Event::new(
                id.to_string(),
                Actor::system(NAME),
                self.clock.now(),
                Payload::HotspotDetected(v1::HotspotDetected {
                    hotspot_id: id.to_string(),
                    scope: scope.to_owned(),
                    topic: topic.to_owned(),
                    place: place.to_owned(),
                    count: evidence.count,
                    expected: evidence.expected,
                    baseline_per_day: evidence.baseline_per_day,
                    window_hours: evidence.window_hours as u32,
                    p_value: evidence.p_value,
                    sample_appeal_ids: samples.iter().map(Uuid::to_string).collect(),
                    detected_at: Some(timestamp(at)),
                }),
            )
            .with_traceparent(traceparent_for_emitted(event.traceparent.as_deref()));
            proactive::record_event(
                tx,
                id,
                &detected,
                json!({"key": key, "evidence": evidence, "samples": samples}),
            )
            .await?;
            metrics::counter!("hotline_hotspots_detected_total", "scope" => scope, "topic" => topic.to_owned())
                .increment(1);
            tracing::warn!(hotspot = %id, scope, topic, place, count = evidence.count, expected = evidence.expected, "hotspot detected");
            let school = match &key {
                HotspotKey::School { school, .. } => Some(school.as_str()),
                HotspotKey::District { .. } => None,
            };
            if let Some(unit) = self.rules.responsible_unit(key.topic(), district, school) {
                let title = format!(
                    "热点预警：{place}「{}」{} 小时内 {} 件诉求（平常约 {:.1} 件）",
                    key.topic().as_str(),
                    evidence.window_hours,
                    evidence.count,
                    evidence.expected
                );
                create_task(
                    tx,
                    self.clock.now(),
                    "hotspot",
                    &id.to_string(),
                    &unit,
                    &title,
                    json!({"hotspot_id": id, "key": key, "evidence": evidence, "samples": samples}),
                    Some(at + Duration::days(2)),
                )
                .await?;
            }
            if let HotspotKey::District { topic, district } = &key {
                // A closed item's hotspots are spent: count from its close.
                let since = (at - Duration::days(self.rules.special.window_days)).max(
                    proactive::last_closed(tx, topic.as_str(), "district", district)
                        .await?
                        .unwrap_or(DateTime::<Utc>::MIN_UTC),
                );
                let raised = proactive::hotspots_raised_since(
                    tx,
                    "district",
                    topic.as_str(),
                    district,
                    since,
                )
                .await?;
                if let Some(trigger) = self.rules.special.from_hotspots(raised as u32) {
                    self.open_item(
                        tx,
                        *topic,
                        "district",
                        district,
                        Some(district),
                        trigger,
                        &[],
                        at,
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn on_routed(&self, tx: &mut PgConnection, routed: &v1::CaseRouted) -> StoreResult<()> {
        let Ok(topic) = routed.topic.parse::<TopicCode>() else {
            return Ok(());
        };
        let case_id = parse(&routed.case_id);
        let at = routed
            .received_at
            .as_ref()
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos as u32))
            .unwrap_or_else(|| self.clock.now());
        let school = routed.school.as_str();
        if let Some(item) =
            proactive::open_special_item(tx, topic.as_str(), "school", school).await?
        {
            proactive::link_cases(tx, item, &[case_id]).await?;
            return Ok(());
        }
        // Cases a closed item already covered do not open the next one.
        let since = (at - Duration::days(self.rules.special.window_days)).max(
            proactive::last_closed(tx, topic.as_str(), "school", school)
                .await?
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        );
        let cases = proactive::school_topic_cases(tx, school, topic.as_str(), since).await?;
        if let Some(trigger) = self.rules.special.from_cases(cases.len() as u32) {
            let district = (!routed.district.is_empty()).then_some(routed.district.as_str());
            self.open_item(tx, topic, "school", school, district, trigger, &cases, at)
                .await?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn open_item(
        &self,
        tx: &mut PgConnection,
        topic: TopicCode,
        scope: &str,
        place: &str,
        district: Option<&str>,
        trigger: Trigger,
        cases: &[Uuid],
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let Some(owner) = self
            .rules
            .directories
            .catalogue
            .department_for(topic)
            .map(|u| u.to_string())
        else {
            return Ok(());
        };
        let opened_by = match trigger {
            Trigger::RepeatedCases { .. } => "auto:repeated_cases",
            Trigger::PersistentHotspot { .. } => "auto:persistent_hotspot",
        };
        let id = Uuid::now_v7();
        let now = self.clock.now();
        let deadline = self.rules.special.deadline(now);
        let title = format!("专项深办：{place}「{}」反复诉求", topic.as_str());
        let opened = proactive::insert_special_item(
            tx,
            &proactive::NewSpecialItem {
                id,
                title: &title,
                topic: topic.as_str(),
                scope,
                place,
                district,
                owner_unit: &owner,
                trigger: json!(trigger),
                plan: "",
                deadline,
                opened_at: now,
                opened_by,
            },
        )
        .await?;
        if !opened {
            // Another event opened it first: these cases belong to that item.
            if let Some(existing) =
                proactive::open_special_item(tx, topic.as_str(), scope, place).await?
            {
                proactive::link_cases(tx, existing, cases).await?;
            }
            return Ok(());
        }
        proactive::link_cases(tx, id, cases).await?;
        emit_item_opened(
            tx, id, topic, scope, place, &owner, opened_by, cases, deadline, now,
        )
        .await?;
        create_task(
            tx,
            self.clock.now(),
            "special_item",
            &id.to_string(),
            &owner,
            &title,
            json!({"special_item_id": id, "trigger": trigger}),
            Some(deadline),
        )
        .await?;
        tracing::warn!(item = %id, topic = topic.as_str(), place, ?trigger, at = %at, "special item opened");
        Ok(())
    }
}

/// The SpecialItemOpened event, for automatic and manual openings alike.
#[allow(clippy::too_many_arguments)]
pub async fn emit_item_opened(
    tx: &mut PgConnection,
    id: Uuid,
    topic: TopicCode,
    scope: &str,
    place: &str,
    owner: &str,
    opened_by: &str,
    cases: &[Uuid],
    deadline: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let opened = Event::new(
        id.to_string(),
        Actor::system(NAME),
        now,
        Payload::SpecialItemOpened(v1::SpecialItemOpened {
            item_id: id.to_string(),
            topic: topic.as_str().to_owned(),
            scope: scope.to_owned(),
            place: place.to_owned(),
            owner_unit: owner.to_owned(),
            opened_by: opened_by.to_owned(),
            case_ids: cases.iter().map(Uuid::to_string).collect(),
            deadline: Some(timestamp(deadline)),
        }),
    );
    proactive::record_event(
        tx,
        id,
        &opened,
        json!({"topic": topic, "scope": scope, "place": place, "owner_unit": owner, "opened_by": opened_by, "cases": cases}),
    )
    .await?;
    metrics::counter!("hotline_special_items_opened_total", "opened_by" => opened_by.to_owned())
        .increment(1);
    Ok(())
}

/// Creates a proactive task (once per kind, source and unit) and its event.
#[allow(clippy::too_many_arguments)]
pub async fn create_task(
    tx: &mut PgConnection,
    now: DateTime<Utc>,
    kind: &str,
    source: &str,
    unit: &str,
    title: &str,
    detail: serde_json::Value,
    due_at: Option<DateTime<Utc>>,
) -> StoreResult<bool> {
    let id = Uuid::now_v7();
    let created = proactive::insert_task(
        tx,
        &proactive::NewTask {
            id,
            kind,
            source,
            unit,
            title,
            detail: detail.clone(),
            due_at,
            created_at: now,
        },
    )
    .await?;
    if !created {
        return Ok(false);
    }
    let event = Event::new(
        id.to_string(),
        Actor::system(NAME),
        now,
        Payload::ProactiveTaskCreated(v1::ProactiveTaskCreated {
            task_id: id.to_string(),
            kind: kind.to_owned(),
            source: source.to_owned(),
            unit: unit.to_owned(),
            title: title.to_owned(),
            due_at: due_at.map(timestamp),
        }),
    );
    proactive::record_event(
        tx,
        id,
        &event,
        json!({"kind": kind, "source": source, "unit": unit, "title": title, "detail": detail}),
    )
    .await?;
    metrics::counter!("hotline_proactive_tasks_total", "kind" => kind.to_owned()).increment(1);
    Ok(true)
}

/// A key's appeals in the window ending at `at` and in the baseline before it.
async fn key_counts(
    tx: &mut PgConnection,
    policy: &HotspotPolicy,
    scope: &str,
    topic: &str,
    place: &str,
    at: DateTime<Utc>,
) -> StoreResult<Counts> {
    let window_start = at - policy.window();
    let in_window = proactive::count_appeals(
        tx,
        scope,
        topic,
        place,
        (window_start, at),
        Counting::Callers,
    )
    .await?;
    let in_baseline = proactive::count_appeals(
        tx,
        scope,
        topic,
        place,
        (window_start - policy.baseline(), window_start),
        Counting::Callers,
    )
    .await?;
    Ok(Counts {
        in_window: u32::try_from(in_window).unwrap_or(u32::MAX),
        in_baseline: u32::try_from(in_baseline).unwrap_or(u32::MAX),
    })
}

fn parse(raw: &str) -> Uuid {
    Uuid::parse_str(raw).unwrap_or_default()
}

/// One scan: resolve hotspots back to baseline, create due playbook reminders. Returns how many
/// changes it made.
pub async fn scan_once<C: Clock>(
    pool: &PgPool,
    rules: &ProactiveRules,
    clock: &C,
) -> StoreResult<usize> {
    let now = clock.now();
    let mut changes = 0;
    let mut tx = pool.begin().await?;
    let policy = &rules.hotspots;
    let open = proactive::open_hotspots(&mut tx).await?;
    metrics::gauge!("hotline_hotspots_open").set(open.len() as f64);
    for hotspot in open {
        let Ok(topic) = hotspot.topic.parse::<TopicCode>() else {
            continue;
        };
        let key = match hotspot.scope.as_str() {
            "school" => HotspotKey::School {
                topic,
                school: hotspot.place.clone(),
            },
            _ => HotspotKey::District {
                topic,
                district: hotspot.place.clone(),
            },
        };
        let counts = key_counts(
            &mut tx,
            policy,
            &hotspot.scope,
            &hotspot.topic,
            &hotspot.place,
            now,
        )
        .await?;
        if !policy.resolved(counts, now, &key) {
            continue;
        }
        let quiet_until = now + Duration::hours(policy.cooldown_hours);
        if !proactive::resolve_hotspot(&mut tx, hotspot.id, now, quiet_until).await? {
            continue;
        }
        let event = Event::new(
            hotspot.id.to_string(),
            Actor::system(NAME),
            now,
            Payload::HotspotResolved(v1::HotspotResolved {
                hotspot_id: hotspot.id.to_string(),
                scope: hotspot.scope.clone(),
                topic: hotspot.topic.clone(),
                place: hotspot.place.clone(),
                resolved_at: Some(timestamp(now)),
            }),
        );
        proactive::record_event(
            &mut tx,
            hotspot.id,
            &event,
            json!({"quiet_until": quiet_until}),
        )
        .await?;
        changes += 1;
    }
    for due in rules.playbooks.due(now) {
        let playbook = due.playbook;
        let source = format!("{}@{}", playbook.code, due.season_starts);
        let starts = china_midnight(due.season_starts);
        let last_year = (
            china_midnight(due.season_starts - chrono::Months::new(12)),
            china_midnight(due.season_ends - chrono::Months::new(12)) + Duration::days(1),
        );
        for unit in playbook.recipients(&rules.directories.units) {
            let area = rules
                .directories
                .units
                .get(unit.as_str())
                .and_then(|u| u.district.clone());
            let mut volume = serde_json::Map::new();
            for topic in &playbook.topics {
                let n = match &area {
                    Some(district) => {
                        proactive::count_appeals(
                            &mut tx,
                            "district",
                            topic.as_str(),
                            district,
                            last_year,
                            Counting::Appeals,
                        )
                        .await?
                    }
                    None => {
                        proactive::count_appeals(
                            &mut tx,
                            "city",
                            topic.as_str(),
                            "",
                            last_year,
                            Counting::Appeals,
                        )
                        .await?
                    }
                };
                volume.insert(topic.as_str().to_owned(), json!(n));
            }
            let title = format!("未诉先办：{}（{} 起）", playbook.name, due.season_starts);
            let created = create_task(
                &mut tx,
                now,
                "playbook",
                &source,
                unit.as_str(),
                &title,
                json!({
                    "playbook": playbook.code,
                    "season_starts": due.season_starts,
                    "season_ends": due.season_ends,
                    "topics": playbook.topics,
                    "advice": playbook.advice,
                    "area": area.as_deref().unwrap_or("全市"),
                    "last_year_volume": volume,
                }),
                Some(starts),
            )
            .await?;
            changes += usize::from(created);
        }
    }
    tx.commit().await?;
    if changes > 0 {
        tracing::info!(changes, "proactive scan");
    }
    Ok(changes)
}

fn china_midnight(date: chrono::NaiveDate) -> DateTime<Utc> {
    hotline_domain::calendar::china_instant(date.and_time(chrono::NaiveTime::MIN))
}

/// Scans until shutdown.
pub async fn run_proactive_scanner<C: Clock>(
    pool: PgPool,
    rules: Arc<ProactiveRules>,
    clock: C,
    interval: std::time::Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(error) = scan_once(&pool, &rules, &clock).await {
            tracing::warn!(%error, "proactive scan failed; retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
