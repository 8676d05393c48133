//! A repeat (重复件) is linked to the case it repeats: one case with every caller's appeal, the
//! repeat's own clocks stopped, both histories saying so.

use crate::support::*;
use hotline_store::tokens::Role;
use hotline_workers::SystemClock;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn a_repeat_is_linked_to_the_case_it_repeats() {
    let env = TestEnv::new().await;
    let stack = env.start_all(SystemClock).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let manager = token(&stack.pool, Role::Manager, None).await;
    let licang = token(&stack.pool, Role::Unit, Some("licang")).await;

    let first = api
        .file(&operator, "李沧区某小学食堂饭菜发霉，孩子吃了肚子疼")
        .await;
    let second = api
        .file(
            &operator,
            "李沧区那所小学的食堂饭菜发霉了，我家孩子也吃坏了肚子",
        )
        .await;
    let first = api.wait_settled(&operator, &first).await;
    let second = api.wait_settled(&operator, &second).await;
    let primary = first["case_id"].as_str().unwrap().to_owned();
    let repeat = second["case_id"].as_str().unwrap().to_owned();
    assert_eq!(
        api.post(
            &format!("/api/v1/cases/{primary}/accept"),
            &licang,
            &json!({})
        )
        .await
        .0,
        200
    );
    // The repeat's clocks are running before the link.
    eventually(
        "the repeat's clocks run",
        Duration::from_secs(20),
        || async {
            let (_, case) = api.get(&format!("/api/v1/cases/{repeat}"), &operator).await;
            (case["clocks"].as_array().unwrap().len() == 3).then_some(())
        },
    )
    .await;

    let link = |case: &str| format!("/api/v1/cases/{case}/link");
    assert_eq!(
        api.post(&link(&repeat), &manager, &json!({"into": repeat}))
            .await
            .0,
        422
    );
    // Linking is an operator's or manager's decision, not the unit's.
    assert_eq!(
        api.post(&link(&repeat), &licang, &json!({"into": primary}))
            .await
            .0,
        403
    );
    let (status, body) = api
        .post(
            &link(&repeat),
            &manager,
            &json!({"into": primary, "note": "同一学校同一问题"}),
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("linked")),
        "{body}"
    );

    let (_, case) = api
        .get(&format!("/api/v1/cases/{primary}"), &operator)
        .await;
    assert_eq!(case["appeals"].as_array().unwrap().len(), 2, "{case}");
    assert_eq!(
        history_events(&case).last().map(String::as_str),
        Some("RepeatLinked")
    );
    assert_eq!(case["state"], "accepted");
    let (_, moved) = api
        .get(
            &format!("/api/v1/appeals/{}", second["id"].as_str().unwrap()),
            &operator,
        )
        .await;
    assert_eq!(moved["case_id"], primary.as_str());
    // The lead unit sees both callers on its one case.
    let (_, seen) = api.get(&format!("/api/v1/cases/{primary}"), &licang).await;
    assert_eq!(seen["appeals"].as_array().unwrap().len(), 2);

    let repeat_case = eventually(
        "the repeat's clocks stop",
        Duration::from_secs(20),
        || async {
            let (_, case) = api.get(&format!("/api/v1/cases/{repeat}"), &operator).await;
            case["clocks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["cancelled_at"].is_string())
                .then_some(case)
        },
    )
    .await;
    assert_eq!(repeat_case["state"], "linked");
    assert_eq!(repeat_case["lead_unit"], Value::Null);
    assert_eq!(
        history_events(&repeat_case).last().map(String::as_str),
        Some("RepeatLinked")
    );
    // A linked case cannot take repeats, nor be linked again.
    let (status, _) = api
        .post(&link(&primary), &manager, &json!({"into": repeat}))
        .await;
    assert_eq!(status, 409);

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}
