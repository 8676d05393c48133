//! Learning from corrections: an operator re-topics a triaged appeal while assigning it; the next
//! `hotline train --with-corrections` includes it; the running classifier picks up the new model
//! without a restart, and every classification names its model version.

use crate::support::*;
use hotline_store::tokens::Role;
use hotline_workers::SystemClock;
use serde_json::json;

#[tokio::test]
async fn a_triage_correction_reaches_the_next_model_and_the_worker_reloads_it() {
    let mut env = TestEnv::new().await;
    let model_dir =
        std::env::temp_dir().join(format!("hotline-model-{}", uuid::Uuid::new_v4().simple()));
    env.config.model_dir = Some(model_dir.clone());
    env.config.model_reload_interval_ms = 200;
    let stack = env.start_all(SystemClock).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;

    let id = api
        .file(&operator, "我想反映一个情况，希望有关部门重视一下")
        .await;
    let appeal = api.wait_settled(&operator, &id).await;
    assert_eq!(appeal["status"], "triage", "{appeal}");
    let builtin_version = appeal["model_version"].as_str().unwrap().to_owned();
    assert!(builtin_version.starts_with("seeds-"), "{appeal}");
    let case_id = appeal["case_id"].as_str().unwrap();
    let topic_before = appeal["topic"].as_str().unwrap().to_owned();
    let right = if topic_before == "canteen" {
        "student_health"
    } else {
        "canteen"
    };

    // One action: the right topic and the unit.
    let (status, body) = api
        .post(
            &format!("/api/v1/cases/{case_id}/assign"),
            &operator,
            &json!({"lead": "shinan", "topic": right, "note": "学校午餐问题"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, after) = api.get(&format!("/api/v1/appeals/{id}"), &operator).await;
    assert_eq!(after["topic"], right);
    let stored: (String, Option<String>, String) = sqlx::query_as(
        "SELECT to_topic, from_topic, source FROM classification_corrections WHERE appeal_id = $1",
    )
    .bind(uuid::Uuid::parse_str(&id).unwrap())
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(
        stored,
        (right.to_owned(), Some(topic_before), "triage".to_owned())
    );
    // An unknown topic is refused.
    let (status, _) = api
        .post(
            &format!("/api/v1/cases/{case_id}/assign"),
            &operator,
            &json!({"lead": "shinan", "topic": "food"}),
        )
        .await;
    assert_eq!(status, 422);

    // The next training includes the correction.
    let trained = hotline_json(
        &env,
        &[
            "train",
            "--with-corrections",
            "--out",
            model_dir.to_str().unwrap(),
        ],
        &[],
    )
    .await
    .remove(0);
    assert_eq!(trained["corrections"], 1, "{trained}");
    let new_version = trained["model_version"].as_str().unwrap().to_owned();
    assert!(new_version.starts_with("seeds+corrections-"));
    assert_ne!(new_version, builtin_version);

    // The running classifier picks the new model up without a restart.
    eventually(
        "appeals are classified by the new model",
        CONSUMER_WAIT,
        || async {
            let id = api.file(&operator, "学校食堂饭菜太差，孩子吃不饱").await;
            let appeal = api.wait_settled(&operator, &id).await;
            (appeal["model_version"] == new_version.as_str()).then_some(())
        },
    )
    .await;

    let _ = std::fs::remove_dir_all(&model_dir);
    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}
