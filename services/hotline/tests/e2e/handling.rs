//! A case's whole life: returned by the first unit (its time charged to it), re-routed by the
//! return's reason with fresh clocks, resolved, reopened by an unsatisfied callback with the policy's reopen clock, resolved
//! again, called back and closed.

use crate::support::*;
use chrono::{DateTime, Duration as Span, Utc};
use hotline_store::tokens::Role;
use hotline_workers::clock::ShiftedClock;
use serde_json::{json, Value};
use std::time::Duration;

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test]
async fn a_case_is_returned_reassigned_reopened_and_closed() {
    let env = TestEnv::new().await;
    let clock = ShiftedClock::default();
    let stack = env.start_all(clock.clone()).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let licang = token(&stack.pool, Role::Unit, Some("licang")).await;
    let shibei = token(&stack.pool, Role::Unit, Some("shibei")).await;

    let id = api
        .file(&operator, "李沧区一所小学食堂饭菜质量差，价格还贵")
        .await;
    let appeal = api.wait_settled(&operator, &id).await;
    let case_id = appeal["case_id"].as_str().unwrap().to_owned();
    let path = |p: &str| format!("/api/v1/cases/{case_id}/{p}");
    let case_path = format!("/api/v1/cases/{case_id}");

    clock.advance(Span::hours(2));
    let (status, body) = api
        .post(
            &path("return"),
            &licang,
            &json!({"reason": "wrong_district", "note": "学校实际在市北区"}),
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("returned")),
        "{body}"
    );
    let (status, _) = api
        .post(
            &path("return"),
            &licang,
            &json!({"reason": "bad", "note": "x"}),
        )
        .await;
    assert_eq!(status, 422);
    // The note names the right district: the router re-routes there by itself.
    eventually(
        "the router re-routes to 市北区",
        Duration::from_secs(20),
        || async {
            let (_, case) = api.get(&case_path, &operator).await;
            (case["lead_unit"] == "shibei").then_some(())
        },
    )
    .await;
    let assigned_at = clock_now(&clock);
    clock.advance(Span::hours(1));

    // The returning unit keeps read-only access; its time is charged to it; the new unit's clocks
    // start at its assignment.
    let (status, seen) = api.get(&case_path, &licang).await;
    assert_eq!((status, seen["your_role"].as_str()), (200, Some("former")));
    assert_eq!(api.post(&path("accept"), &licang, &json!({})).await.0, 403);
    let case = eventually(
        "the new unit's clocks run",
        Duration::from_secs(20),
        || async {
            let (_, case) = api.get(&case_path, &operator).await;
            let fresh = case["clocks"].as_array().unwrap().iter().any(|c| {
                c["kind"] == "resolve" && c["cancelled_at"].is_null() && c["unit_code"] == "shibei"
            });
            fresh.then_some(case)
        },
    )
    .await;
    let held = case["time_with_units"].as_array().unwrap();
    assert_eq!(held[0]["unit"], "licang");
    assert_eq!(held[0]["end_reason"], "returned");
    assert!(
        (7190..7300).contains(&held[0]["seconds"].as_i64().unwrap()),
        "{held:?}"
    );
    assert_eq!(held[1]["unit"], "shibei");
    assert!(case["citizen_waiting_seconds"].as_i64().unwrap() >= 3 * 3600);
    let fresh = case["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "sign" && c["cancelled_at"].is_null())
        .unwrap();
    assert!(
        (time(&fresh["starts_at"]) - assigned_at)
            .num_seconds()
            .abs()
            < 5,
        "{fresh}"
    );

    for (action, body) in [
        ("accept", json!({})),
        ("contact", json!({"note": "已联系"})),
        ("resolve", json!({"result": "已整改"})),
    ] {
        assert_eq!(
            api.post(&path(action), &shibei, &body).await.0,
            200,
            "{action}"
        );
    }
    // An unsatisfied callback reopens it with the reopen clock (7 days).
    let (status, body) = api
        .post(
            &path("callback"),
            &operator,
            &json!({"reached": true, "solved": false, "satisfaction": "very_dissatisfied"}),
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("reopened")),
        "{body}"
    );
    let reopened_at = clock_now(&clock);
    resolve_due_near(
        &api,
        &case_path,
        &operator,
        reopened_at + Span::days(7),
        "the reopen clock runs",
    )
    .await;
    for (action, body) in [
        ("contact", json!({"note": "再次联系"})),
        ("resolve", json!({"result": "已退还多收餐费"})),
    ] {
        assert_eq!(
            api.post(&path(action), &shibei, &body).await.0,
            200,
            "{action}"
        );
    }
    let (status, _) = api
        .post(
            &path("callback"),
            &operator,
            &json!({"reached": true, "solved": true, "satisfaction": "satisfied"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = api.post(&path("close"), &operator, &json!({})).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("closed")));
    let (_, case) = api.get(&case_path, &operator).await;
    let events: Vec<&str> = case["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "CaseRouted",
            "CaseReturned",
            "CaseRerouted",
            "CaseAccepted",
            "CaseContacted",
            "CaseResolved",
            "CallbackRecorded",
            "CaseContacted",
            "CaseResolved",
            "CallbackRecorded",
            "CaseClosed"
        ]
    );

    // The problem comes back: a manager (not a unit) reopens the closed case, and the lead unit
    // gets the reopen clock again.
    let manager = token(&stack.pool, Role::Manager, None).await;
    // A day later, so the new clock cannot be mistaken for the first reopen's.
    clock.advance(Span::days(1));
    let reason = json!({"reason": "家长反映多收餐费仍未退还"});
    assert_eq!(api.post(&path("reopen"), &shibei, &reason).await.0, 403);
    let (status, body) = api.post(&path("reopen"), &manager, &json!({})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = api.post(&path("reopen"), &manager, &reason).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("reopened")),
        "{body}"
    );
    let reopened_at = clock_now(&clock);
    resolve_due_near(
        &api,
        &case_path,
        &operator,
        reopened_at + Span::days(7),
        "the reopen clock runs again",
    )
    .await;
    let (status, _) = api.post(&path("reopen"), &manager, &reason).await;
    assert_eq!(status, 409, "only a closed case is reopened");

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}

/// Waits until the case's resolve deadline is `expected` (within 5 seconds).
async fn resolve_due_near(
    api: &Api,
    case_path: &str,
    token: &str,
    expected: DateTime<Utc>,
    what: &str,
) {
    eventually(what, Duration::from_secs(20), || async {
        let (_, case) = api.get(case_path, token).await;
        let due = case["deadlines"]["resolve"]
            .as_str()
            .map(|d| DateTime::parse_from_rfc3339(d).unwrap());
        due.filter(|d| (d.with_timezone(&Utc) - expected).num_seconds().abs() < 5)
            .map(|_| ())
    })
    .await;
}

fn clock_now(clock: &ShiftedClock) -> DateTime<Utc> {
    use hotline_workers::Clock;
    clock.now()
}
