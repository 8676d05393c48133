//! 延期: asked once, before the resolve deadline, within the policy's limit; a manager approves
//! (the tracker moves the resolve clock by working days) or refuses.

use crate::support::*;
use chrono::{DateTime, Duration as Span, Utc};
use hotline_domain::calendar::WorkingCalendar;
use hotline_store::tokens::Role;
use hotline_workers::clock::ShiftedClock;
use serde_json::json;
use std::time::Duration;

async fn accepted_case(
    api: &Api,
    operator: &str,
    unit: &str,
    text: &str,
) -> (String, DateTime<Utc>) {
    let id = api.file(operator, text).await;
    let appeal = api.wait_settled(operator, &id).await;
    let case_id = appeal["case_id"].as_str().unwrap().to_owned();
    assert_eq!(
        api.post(&format!("/api/v1/cases/{case_id}/accept"), unit, &json!({}))
            .await
            .0,
        200
    );
    let due = eventually(
        "the resolve clock runs",
        Duration::from_secs(20),
        || async {
            let (_, case) = api.get(&format!("/api/v1/cases/{case_id}"), operator).await;
            case["deadlines"]["resolve"]
                .as_str()
                .map(|d| DateTime::parse_from_rfc3339(d).unwrap().with_timezone(&Utc))
        },
    )
    .await;
    (case_id, due)
}

#[tokio::test]
async fn an_extension_is_asked_once_in_time_and_a_manager_rules_on_it() {
    let env = TestEnv::new().await;
    let clock = ShiftedClock::default();
    let stack = env.start_all(clock.clone()).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let manager = token(&stack.pool, Role::Manager, None).await;
    let unit = token(&stack.pool, Role::Unit, Some("licang")).await;

    let (case_id, due) = accepted_case(
        &api,
        &operator,
        &unit,
        "李沧区一所小学食堂饭菜质量差，价格还贵",
    )
    .await;
    let path = |p: &str| format!("/api/v1/cases/{case_id}/{p}");
    let (status, _) = api
        .post(
            &path("extension"),
            &unit,
            &json!({"reason": "需协调配餐公司", "working_days": 11}),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = api
        .post(&path("extension"), &unit, &json!({"working_days": 3}))
        .await;
    assert_eq!(status, 422);
    let (status, body) = api
        .post(
            &path("extension"),
            &unit,
            &json!({"reason": "需协调配餐公司", "working_days": 3}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .post(
            &path("extension"),
            &unit,
            &json!({"reason": "再延", "working_days": 2}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("already_requested"))
    );

    // Only managers rule.
    assert_eq!(
        api.post(&path("extension/approve"), &operator, &json!({}))
            .await
            .0,
        403
    );
    assert_eq!(
        api.post(&path("extension/approve"), &unit, &json!({}))
            .await
            .0,
        403
    );
    let (status, body) = api
        .post(
            &path("extension/approve"),
            &manager,
            &json!({"note": "同意"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let expected = WorkingCalendar::builtin().add_working_days(due, 3);
    assert_eq!(body["new_resolve_by"], expected.to_rfc3339());
    let case = eventually(
        "the tracker moves the resolve deadline",
        Duration::from_secs(20),
        || async {
            let (_, case) = api
                .get(&format!("/api/v1/cases/{case_id}"), &operator)
                .await;
            (case["deadlines"]["resolve"] == expected.to_rfc3339()).then_some(case)
        },
    )
    .await;
    assert!(history_events(&case).ends_with(&[
        "CaseExtensionRequested".to_owned(),
        "CaseExtended".to_owned()
    ]));
    let (status, body) = api
        .post(&path("extension/approve"), &manager, &json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("already_decided"))
    );

    // Refused, with a reason.
    let (other, _) = accepted_case(&api, &operator, &unit, "李沧区某初中食堂饭菜里有头发").await;
    let other_path = |p: &str| format!("/api/v1/cases/{other}/{p}");
    assert_eq!(
        api.post(
            &other_path("extension/refuse"),
            &manager,
            &json!({"note": "x"})
        )
        .await
        .0,
        409
    );
    assert_eq!(
        api.post(
            &other_path("extension"),
            &unit,
            &json!({"reason": "人手不足", "working_days": 5})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        api.post(&other_path("extension/refuse"), &manager, &json!({}))
            .await
            .0,
        422
    );
    assert_eq!(
        api.post(
            &other_path("extension/refuse"),
            &manager,
            &json!({"note": "事实清楚，应按期办结"})
        )
        .await
        .0,
        200
    );
    let (_, case) = api.get(&format!("/api/v1/cases/{other}"), &operator).await;
    assert_eq!(
        history_events(&case).last().map(String::as_str),
        Some("CaseExtensionRefused")
    );

    // Too late: after the resolve deadline no extension can be asked for.
    let (late, _) = accepted_case(&api, &operator, &unit, "李沧区一所小学食堂卫生条件差").await;
    clock.advance(Span::days(20));
    let (status, body) = api
        .post(
            &format!("/api/v1/cases/{late}/extension"),
            &unit,
            &json!({"reason": "来不及", "working_days": 2}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("too_late")),
        "{body}"
    );

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}

#[tokio::test]
async fn waiting_for_the_citizen_stops_the_resolve_clock() {
    let env = TestEnv::new().await;
    let clock = ShiftedClock::default();
    let stack = env.start_all(clock.clone()).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let unit = token(&stack.pool, Role::Unit, Some("licang")).await;
    let (case_id, due) = accepted_case(
        &api,
        &operator,
        &unit,
        "李沧区一所小学食堂收费不透明，要求公开账目",
    )
    .await;
    let path = |p: &str| format!("/api/v1/cases/{case_id}/{p}");
    // Contacted: only the resolve clock is left running.
    assert_eq!(
        api.post(&path("contact"), &unit, &json!({"note": "已联系家长"}))
            .await
            .0,
        200
    );
    api.wait_clock(
        &format!("/api/v1/cases/{case_id}"),
        &operator,
        "contact",
        "met_at",
    )
    .await;

    assert_eq!(api.post(&path("resume"), &unit, &json!({})).await.0, 409);
    assert_eq!(api.post(&path("pause"), &unit, &json!({})).await.0, 422);
    let (status, body) = api
        .post(
            &path("pause"),
            &unit,
            &json!({"reason": "等待家长提供缴费凭证"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        api.post(&path("pause"), &unit, &json!({"reason": "again"}))
            .await
            .0,
        409
    );
    api.wait_clock(
        &format!("/api/v1/cases/{case_id}"),
        &operator,
        "resolve",
        "paused_at",
    )
    .await;
    // Ten days pass while the clock stands still: no warning, no breach.
    clock.advance(Span::days(10));
    for alert in [
        hotline_store::deadlines::Alert::Breach,
        hotline_store::deadlines::Alert::Warning,
    ] {
        let emitted = hotline_workers::tracker::scan_once(&stack.pool, &clock, alert)
            .await
            .unwrap();
        assert_eq!(emitted, 0, "a paused clock raised an alert");
    }
    assert_eq!(api.post(&path("resume"), &unit, &json!({})).await.0, 200);
    let case = eventually(
        "the deadline moves by the pause",
        Duration::from_secs(20),
        || async {
            let (_, case) = api
                .get(&format!("/api/v1/cases/{case_id}"), &operator)
                .await;
            let moved = case["deadlines"]["resolve"]
                .as_str()
                .map(|d| DateTime::parse_from_rfc3339(d).unwrap().with_timezone(&Utc));
            moved.filter(|m| *m > due + Span::days(9)).map(|_| case)
        },
    )
    .await;
    let moved =
        DateTime::parse_from_rfc3339(case["deadlines"]["resolve"].as_str().unwrap()).unwrap();
    let shift = moved.with_timezone(&Utc) - due;
    assert!(
        (shift - Span::days(10)).num_seconds().abs() < 30,
        "moved by {shift}"
    );

    // Paused again, then resolved without a resume: resolving ends the pause, so the clock is met
    // on time (its deadline moved by the second pause too) and the case can pause again later.
    let (status, body) = api
        .post(
            &path("pause"),
            &unit,
            &json!({"reason": "等待学校提供账目"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    api.wait_clock(
        &format!("/api/v1/cases/{case_id}"),
        &operator,
        "resolve",
        "paused_at",
    )
    .await;
    clock.advance(Span::days(30));
    let (status, body) = api
        .post(
            &path("resolve"),
            &unit,
            &json!({"result": "已公开食堂账目"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let pool = stack.pool.clone();
    let resolve_clock = eventually(
        "the resolve clock is met",
        Duration::from_secs(20),
        || async {
            sqlx::query_as::<_, (DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>)>(
                "SELECT due_at, met_at, paused_at FROM case_deadlines
              WHERE kind = 'resolve' AND met_at IS NOT NULL",
            )
            .fetch_optional(&pool)
            .await
            .unwrap()
        },
    )
    .await;
    let (due_at, met_at, paused_at) = resolve_clock;
    assert!(
        met_at <= due_at,
        "met {met_at} after {due_at}: the pause was not counted"
    );
    assert_eq!(paused_at, None);
    let case_paused: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT paused_at FROM cases WHERE id = $1::uuid")
            .bind(&case_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(case_paused, None, "resolving ended the case's pause");

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}

#[tokio::test]
async fn a_case_can_be_returned_only_within_the_window() {
    let env = TestEnv::new().await;
    let clock = ShiftedClock::default();
    let stack = env.start_all(clock.clone()).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let unit = token(&stack.pool, Role::Unit, Some("licang")).await;
    let (case_id, _) = accepted_case(
        &api,
        &operator,
        &unit,
        "李沧区一所小学食堂饭菜太咸，孩子吃不下",
    )
    .await;
    // Two working days from assignment, at the latest a weekend and a holiday later: 10 days is past.
    clock.advance(Span::days(10));
    let (status, body) = api
        .post(
            &format!("/api/v1/cases/{case_id}/return"),
            &unit,
            &json!({"reason": "wrong_district", "note": "不是本区学校"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("return_window_passed")),
        "{body}"
    );
    let (_, case) = api
        .get(&format!("/api/v1/cases/{case_id}"), &operator)
        .await;
    assert_eq!(case["state"], "accepted");

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}
