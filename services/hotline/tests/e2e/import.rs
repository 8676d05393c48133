//! `hotline import`: a 12345 export goes through the intake path, idempotent by external_id; bad
//! rows are reported and skipped; history gets clocks but no alerts.

use crate::support::*;
use hotline_store::deadlines::Alert;
use hotline_store::tokens::Role;
use hotline_workers::SystemClock;

async fn import(env: &TestEnv, file: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["import", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    hotline_json(env, &args, &[]).await.remove(0)
}

#[tokio::test]
async fn a_platform_export_is_imported_once_and_history_raises_no_alerts() {
    let env = TestEnv::new().await;
    let stack = env.start_all(SystemClock).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;

    let dir =
        std::env::temp_dir().join(format!("hotline-import-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("export.csv");
    std::fs::write(
        &csv,
        "external_id,content,received_at,caller_phone,district\n\
         QD-2026-0001,城阳区某小学食堂饭菜发霉孩子吃了拉肚子,2026-01-05 09:30,13812341234,\n\
         QD-2026-0002,\"孩子在学校被同学欺负，家长很着急\",2026-01-06 10:00:00,,李沧区\n\
         QD-2026-0003,,2026-01-06 11:00,,\n\
         QD-2026-0004,校外培训机构跑路学费不退,not a date,,\n",
    )
    .unwrap();

    let first = import(&env, &csv, &["--historical"]).await;
    assert_eq!(
        first,
        serde_json::json!({"created": 2, "already_present": 0, "skipped": 2})
    );
    let again = import(&env, &csv, &["--historical"]).await;
    assert_eq!(
        again,
        serde_json::json!({"created": 0, "already_present": 2, "skipped": 2})
    );

    let jsonl = dir.join("more.jsonl");
    std::fs::write(
        &jsonl,
        "{\"external_id\": \"QD-2026-0005\", \"content\": \"即墨区幼儿园收费太高\", \"received_at\": \"2026-01-07T08:00:00+08:00\"}\n\
         {\"external_id\": \"QD-2026-0006\", \"content\": 42}\n\
         not json\n",
    )
    .unwrap();
    let jsonl_result = import(&env, &jsonl, &["--historical"]).await;
    assert_eq!(
        jsonl_result,
        serde_json::json!({"created": 1, "already_present": 0, "skipped": 2})
    );

    // All three are classified and routed; their clocks exist but are long past and stay silent.
    let pool = stack.pool.clone();
    eventually("imported appeals get clocks", CONSUMER_WAIT, || {
        let pool = pool.clone();
        async move {
            let clocks: i64 =
                sqlx::query_scalar("SELECT count(*) FROM case_deadlines WHERE historical")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            (clocks == 9).then_some(())
        }
    })
    .await;
    let received: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT received_at FROM appeals WHERE external_id = 'QD-2026-0001'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(received.to_rfc3339(), "2026-01-05T01:30:00+00:00");
    for alert in [Alert::Breach, Alert::Warning] {
        assert_eq!(
            hotline_workers::tracker::scan_once(&pool, &SystemClock, alert)
                .await
                .unwrap(),
            0
        );
    }
    let alerts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM case_events WHERE event_type IN ('DeadlineWarned', 'DeadlineBreached')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(alerts, 0);
    let id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM appeals WHERE external_id = 'QD-2026-0002'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let appeal = api.wait_settled(&operator, &id.to_string()).await;
    assert_eq!(appeal["lead_unit"], "licang");
    assert_eq!(appeal["historical"], true);

    // The metrics count what happened.
    let metrics = api.metrics().await;
    assert!(
        metrics.contains("hotline_appeals_classified_total"),
        "{metrics}"
    );

    let _ = std::fs::remove_dir_all(&dir);
    stack.stop().await;
    env.cleanup(pool).await;
}
