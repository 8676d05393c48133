//! Deadline clocks with an injected clock (no long sleeps): an urgent case not contacted in time
//! is warned, then breached and escalated; a tracker that was down when the deadline passed emits
//! the breach once when it comes back.

use crate::support::*;
use chrono::{DateTime, Duration as Span, Utc};
use hotline::app::{Component, Stack};
use hotline_store::deadlines::Alert;
use hotline_store::tokens::Role;
use hotline_workers::clock::ShiftedClock;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn an_urgent_case_not_contacted_in_time_is_warned_breached_and_escalated_once() {
    let env = TestEnv::new().await;
    let clock = ShiftedClock::default();
    let stack = env.start_all(clock.clone()).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;

    let (case_id, _unit) = urgent_case_signed(&stack, &api, &operator).await;
    let case_path = format!("/api/v1/cases/{case_id}");

    // Urgent policy: contact within 2 h, warned at 75 % (90 min).
    clock.advance(Span::minutes(95));
    let case = eventually("the contact warning", Duration::from_secs(20), || async {
        let (_, case) = api.get(&case_path, &operator).await;
        history_events(&case)
            .contains(&"DeadlineWarned".to_owned())
            .then_some(case)
    })
    .await;
    assert!(!history_events(&case).contains(&"DeadlineBreached".to_owned()));

    // The tracker goes down before the deadline and comes back after it.
    stack.stop().await;
    clock.advance(Span::minutes(30));
    let stack = env.start_all(clock.clone()).await;
    let api = Api::new(&stack);
    let case = eventually(
        "the breach after the restart",
        Duration::from_secs(20),
        || async {
            let (_, case) = api.get(&case_path, &operator).await;
            history_events(&case)
                .contains(&"CaseEscalated".to_owned())
                .then_some(case)
        },
    )
    .await;
    let events = history_events(&case);
    assert_eq!(
        events,
        [
            "CaseRouted",
            "CaseAccepted",
            "DeadlineWarned",
            "DeadlineBreached",
            "CaseEscalated"
        ],
        "{case}"
    );
    let breach = case["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["event"] == "DeadlineBreached")
        .unwrap();
    assert_eq!(breach["detail"]["deadline"], "contact");
    assert_eq!(breach["detail"]["unit"], "licang");
    assert_eq!(case["escalation_level"], 1);

    // Once: another scan finds nothing more to emit.
    for alert in [Alert::Breach, Alert::Warning] {
        let emitted = hotline_workers::tracker::scan_once(&stack.pool, &clock, alert)
            .await
            .unwrap();
        assert_eq!(emitted, 0);
    }
    // And the alerts are on the case's topic, in order.
    let topic = env.topic("cases");
    eventually(
        "alert events published",
        Duration::from_secs(20),
        || async {
            let types = types_for_key(&read_topic(&topic), &case_id);
            (types
                == [
                    "CaseRouted",
                    "CaseAccepted",
                    "DeadlineWarned",
                    "DeadlineBreached",
                    "CaseEscalated",
                ])
            .then_some(())
        },
    )
    .await;

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}

/// Files an urgent bullying appeal in 李沧区, has the district bureau accept it and waits until
/// its sign clock is met; returns the case id and the unit's token.
async fn urgent_case_signed(stack: &Stack, api: &Api, operator: &str) -> (String, String) {
    let id = api
        .file(
            operator,
            "李沧区某小学校园欺凌，我家孩子现在被同学打伤了，头还在流血，学校不管",
        )
        .await;
    let appeal = api.wait_settled(operator, &id).await;
    assert_eq!(appeal["urgent"], true, "{appeal}");
    assert_eq!(appeal["lead_unit"], "licang");
    let case_id = appeal["case_id"].as_str().unwrap().to_owned();
    let unit = token(&stack.pool, Role::Unit, Some("licang")).await;
    let case_path = format!("/api/v1/cases/{case_id}");
    let (status, body) = api
        .post(&format!("{case_path}/accept"), &unit, &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_clock(&case_path, operator, "sign", "met_at").await;
    (case_id, unit)
}

/// A unit that contacts the citizen in time is not breached because the tracker is behind: the
/// scanner waits while the case has history the tracker has not processed.
#[tokio::test]
async fn a_clock_met_in_time_is_not_breached_while_the_tracker_lags() {
    let env = TestEnv::new().await;
    let clock = ShiftedClock::default();
    let stack = env.start_all(clock.clone()).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let (case_id, unit) = urgent_case_signed(&stack, &api, &operator).await;
    let case_path = format!("/api/v1/cases/{case_id}");

    // Only the API runs: the unit contacts the citizen 10 minutes before the 2-hour deadline,
    // and nothing consumes that event yet.
    stack.stop().await;
    let stack = env.start(&[Component::Api], clock.clone()).await;
    let api = Api::new(&stack);
    clock.advance(Span::minutes(110));
    let (status, body) = api
        .post(
            &format!("{case_path}/contact"),
            &unit,
            &json!({"note": "已电话联系家长，约定明天到校面谈"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Five minutes past the deadline, the scanner still waits for the tracker.
    clock.advance(Span::minutes(15));
    for alert in [Alert::Breach, Alert::Warning] {
        let emitted = hotline_workers::tracker::scan_once(&stack.pool, &clock, alert)
            .await
            .unwrap();
        assert_eq!(emitted, 0, "{alert:?}");
    }
    stack.stop().await;

    // The tracker comes back, meets the contact clock at the time of the contact, and no alert
    // is ever raised for it.
    let stack = env.start_all(clock.clone()).await;
    let api = Api::new(&stack);
    api.wait_clock(&case_path, &operator, "contact", "met_at")
        .await;
    for alert in [Alert::Breach, Alert::Warning] {
        let emitted = hotline_workers::tracker::scan_once(&stack.pool, &clock, alert)
            .await
            .unwrap();
        assert_eq!(emitted, 0, "{alert:?}");
    }
    let (_, case) = api.get(&case_path, &operator).await;
    let events = history_events(&case);
    assert!(
        !events.iter().any(|e| e.starts_with("Deadline")),
        "{events:?}"
    );

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}

/// A policy in seconds, so a real process can be killed before a deadline and restarted after it.
const SECONDS_POLICY: &str = r#"
version = "test-seconds"
warn_at_fraction = 0.75
[urgent]
sign = "600s"
contact = "20s"
resolve = "3600s"
callback = "3600s"
[normal]
sign = "600s"
contact = "600s"
resolve = "3600s"
callback = "3600s"
[reopen]
resolve = "3600s"
[returns]
window = "2wd"
[extension]
max = "10wd"
"#;

fn spawn_tracker(env: &TestEnv, policy: &std::path::Path) -> tokio::process::Child {
    let policy = policy.to_str().expect("a temporary path is UTF-8");
    spawn_hotline(
        env,
        &["run", "tracker"],
        &[
            ("HOTLINE_DEADLINE_POLICY_FILE", policy),
            ("HOTLINE_DEADLINE_SCAN_INTERVAL_MS", "200"),
        ],
    )
}

#[tokio::test]
async fn a_breach_that_falls_while_the_tracker_is_killed_is_emitted_once_after_restart() {
    use hotline::app::Component;
    use hotline_workers::SystemClock;
    let env = TestEnv::new().await;
    let policy = std::env::temp_dir().join(format!(
        "hotline-policy-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&policy, SECONDS_POLICY).unwrap();
    let stack = env
        .start(
            &[
                Component::Api,
                Component::Relay,
                Component::Classifier,
                Component::Router,
            ],
            SystemClock,
        )
        .await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let mut tracker = spawn_tracker(&env, &policy);

    let id = api
        .file(
            &operator,
            "李沧区某小学校园欺凌，孩子现在被同学打伤了，头还在流血",
        )
        .await;
    let appeal = api.wait_settled(&operator, &id).await;
    assert_eq!(appeal["urgent"], true, "{appeal}");
    let case_id = uuid::Uuid::parse_str(appeal["case_id"].as_str().unwrap()).unwrap();
    let pool = stack.pool.clone();
    eventually(
        "the tracker starts the contact clock",
        Duration::from_secs(20),
        || {
            let pool = pool.clone();
            async move {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM case_deadlines WHERE case_id = $1 AND kind = 'contact'",
                )
                .bind(case_id)
                .fetch_one(&pool)
                .await
                .unwrap();
                (n == 1).then_some(())
            }
        },
    )
    .await;

    // kill -9 before the deadline; wait (on the database's clock) until it has passed.
    tracker.start_kill().unwrap();
    tracker.wait().await.unwrap();
    let passed: bool = sqlx::query_scalar(
        "SELECT now() < due_at FROM case_deadlines WHERE case_id = $1 AND kind = 'contact'",
    )
    .bind(case_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        passed,
        "the deadline passed before the kill; nothing was tested"
    );
    eventually("the contact deadline passes", Duration::from_secs(40), || {
        let pool = pool.clone();
        async move {
            let over: bool = sqlx::query_scalar(
                "SELECT now() > due_at + interval '1 second' FROM case_deadlines WHERE case_id = $1 AND kind = 'contact'",
            )
            .bind(case_id)
            .fetch_one(&pool)
            .await
            .unwrap();
            over.then_some(())
        }
    })
    .await;
    let alerts = |kind: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM case_events WHERE case_id = $1 AND event_type = $2",
            )
            .bind(case_id)
            .bind(kind)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(alerts("DeadlineBreached").await, 0);

    let mut tracker = spawn_tracker(&env, &policy);
    eventually(
        "the breach is emitted after the restart",
        CONSUMER_WAIT,
        || async { (alerts("CaseEscalated").await == 1).then_some(()) },
    )
    .await;
    for alert in [Alert::Breach, Alert::Warning] {
        assert_eq!(
            hotline_workers::tracker::scan_once(&pool, &SystemClock, alert)
                .await
                .unwrap(),
            0
        );
    }
    assert_eq!(alerts("DeadlineBreached").await, 1);
    // Its warning point passed unseen too; a warning after the breach would be noise.
    assert_eq!(alerts("DeadlineWarned").await, 0);

    tracker.start_kill().unwrap();
    let _ = tracker.wait().await;
    let _ = std::fs::remove_file(&policy);
    stack.stop().await;
    env.cleanup(pool).await;
}

#[tokio::test]
async fn running_clocks_are_recomputed_when_the_policy_changes() {
    use hotline_workers::SystemClock;
    let env = TestEnv::new().await;
    let stack = env.start_all(SystemClock).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let id = api.file(&operator, "李沧区一所小学食堂饭菜质量差").await;
    let appeal = api.wait_settled(&operator, &id).await;
    let case_id = uuid::Uuid::parse_str(appeal["case_id"].as_str().unwrap()).unwrap();
    // A second case whose unit got 3 more working days: recomputing keeps them.
    let id = api
        .file(&operator, "李沧区一所小学食堂收费不透明，要求公开账目")
        .await;
    let extended = api.wait_settled(&operator, &id).await;
    let extended_id = uuid::Uuid::parse_str(extended["case_id"].as_str().unwrap()).unwrap();
    let pool = stack.pool.clone();
    let clocks_of = |case_id: uuid::Uuid| {
        let pool = pool.clone();
        async move {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM case_deadlines WHERE case_id = $1")
                    .bind(case_id)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            n
        }
    };
    eventually("clocks run", Duration::from_secs(20), || async {
        (clocks_of(case_id).await == 3 && clocks_of(extended_id).await == 3).then_some(())
    })
    .await;
    let unit = token(&stack.pool, Role::Unit, Some("licang")).await;
    let manager = token(&stack.pool, Role::Manager, None).await;
    let path = |p: &str| format!("/api/v1/cases/{extended_id}/{p}");
    for (action, token, body) in [
        ("accept", &unit, json!({})),
        (
            "extension",
            &unit,
            json!({"reason": "需协调配餐公司", "working_days": 3}),
        ),
        ("extension/approve", &manager, json!({"note": "同意"})),
    ] {
        let (status, body) = api.post(&path(action), token, &body).await;
        assert_eq!(status, 200, "{action}: {body}");
    }
    eventually(
        "the extension is on the clock",
        Duration::from_secs(20),
        || {
            let pool = pool.clone();
            async move {
                let days: Option<i32> = sqlx::query_scalar(
                    "SELECT extension_working_days FROM case_deadlines
                  WHERE case_id = $1 AND kind = 'resolve'",
                )
                .bind(extended_id)
                .fetch_optional(&pool)
                .await
                .unwrap();
                (days == Some(3)).then_some(())
            }
        },
    )
    .await;

    let policy = std::env::temp_dir().join(format!(
        "hotline-policy-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&policy, SECONDS_POLICY).unwrap();
    let printed = hotline_json(
        &env,
        &["deadlines", "recompute"],
        &[("HOTLINE_DEADLINE_POLICY_FILE", policy.to_str().unwrap())],
    )
    .await
    .remove(0);
    assert_eq!(printed["policy_version"], "test-seconds");
    assert!(printed["recomputed"].as_i64().unwrap() >= 3, "{printed}");
    let (version, span): (String, f64) = sqlx::query_as(
        "SELECT policy_version, extract(epoch FROM due_at - starts_at)::float8 FROM case_deadlines
         WHERE case_id = $1 AND kind = 'resolve'",
    )
    .bind(case_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((version.as_str(), span), ("test-seconds", 3600.0));
    let (starts_at, due_at): (DateTime<Utc>, DateTime<Utc>) = sqlx::query_as(
        "SELECT starts_at, due_at FROM case_deadlines WHERE case_id = $1 AND kind = 'resolve'",
    )
    .bind(extended_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    let calendar = hotline_domain::calendar::WorkingCalendar::builtin();
    assert_eq!(
        due_at,
        calendar.add_working_days(starts_at + Span::seconds(3600), 3),
        "the new policy's hour, then the approved 3 working days"
    );
    let _ = std::fs::remove_file(&policy);
    stack.stop().await;
    env.cleanup(pool).await;
}
