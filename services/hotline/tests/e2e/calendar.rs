//! Next year's holiday schedule is loaded without a redeploy, and new deadlines follow it at once.

use crate::support::*;
use hotline_store::tokens::Role;
use hotline_workers::clock::ShiftedClock;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn next_years_schedule_loads_at_run_time_and_deadlines_follow_it() {
    let mut env = TestEnv::new().await;
    env.config.calendar_reload_interval_ms = 200;
    let clock = ShiftedClock::default();
    // The machine's date is in late 2026; live in early January 2027, when 2027 must be known.
    let target = chrono::DateTime::parse_from_rfc3339("2027-01-02T09:00:00+08:00").unwrap();
    clock.advance(target.with_timezone(&chrono::Utc) - chrono::Utc::now());
    let stack = env.start_all(clock.clone()).await;
    let api = Api::new(&stack);
    let admin = token(&stack.pool, Role::Admin, None).await;
    let operator = token(&stack.pool, Role::Operator, None).await;

    let (_, shown) = api.get("/api/v1/calendar", &operator).await;
    assert_eq!(shown["missing_years"], json!([2027]), "{shown}");
    let new_year = json!({"days": [{"date": "2027-01-01", "kind": "off", "name": "元旦"}]});
    assert_eq!(
        api.post("/api/v1/calendar", &operator, &new_year).await.0,
        403
    );
    let (status, body) = api
        .post(
            "/api/v1/calendar",
            &admin,
            &json!({"days": [{"date": "2027-01-01", "kind": "holiday"}]}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("days[0].kind"))
    );
    let (status, body) = api.post("/api/v1/calendar", &admin, &new_year).await;
    assert_eq!(status, 200, "{body}");
    // One date is not a year's schedule: 2027 is still reported missing until its Spring Festival
    // and National Day are known.
    assert_eq!(body["missing_years"], json!([2027]), "{body}");

    // A citizen who called on 31 December: five working days skip the 1 January holiday.
    let (status, filed) = api
        .post(
            "/api/v1/appeals",
            &operator,
            &json!({"content": "李沧区一所小学强制学生购买教辅资料，每人收费两百元", "channel": "phone", "received_at": "2026-12-31T10:00:00+08:00"}),
        )
        .await;
    assert_eq!(status, 201, "{filed}");
    let id = filed["id"].as_str().unwrap();
    let appeal = eventually("the case's clocks run", Duration::from_secs(20), || async {
        let (_, a) = api.get(&format!("/api/v1/appeals/{id}"), &operator).await;
        a["deadlines"]["resolve"].is_string().then_some(a)
    })
    .await;
    assert_eq!(
        appeal["deadlines"]["resolve"], "2027-01-08T02:00:00+00:00",
        "{appeal}"
    );

    // The command line loads a file in the seeds' format.
    let file =
        std::env::temp_dir().join(format!("hotline-cal-{}.tsv", uuid::Uuid::new_v4().simple()));
    std::fs::write(
        &file,
        // Placeholder dates for the test, not the official 2027 schedule.
        "# 2027 (test)\ndate\tkind\tname\n2027-02-06\twork\t春节\n2027-02-08\toff\t春节\n\
         2027-10-01\toff\t国庆节\n",
    )
    .unwrap();
    let printed = hotline_json(&env, &["calendar", "load", file.to_str().unwrap()], &[])
        .await
        .remove(0);
    assert_eq!(printed["years"], json!([2025, 2026, 2027]));
    assert_eq!(printed["missing_years"], json!([]), "{printed}");
    let _ = std::fs::remove_file(&file);

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}
