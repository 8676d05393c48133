//! Tokens and visibility: a unit sees and acts on its own cases only; expired and revoked tokens
//! are refused; caller identity is masked or hidden by role.

use crate::support::*;
use chrono::Utc;
use hotline_store::tokens::{self, NewToken, Role};
use hotline_workers::SystemClock;
use serde_json::json;

#[tokio::test]
async fn units_see_and_act_on_their_own_cases_only() {
    let env = TestEnv::new().await;
    let stack = env.start_all(SystemClock).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let manager = token(&stack.pool, Role::Manager, None).await;

    let (status, filed) = api
        .post(
            "/api/v1/appeals",
            &operator,
            &json!({"content": "即墨区一家校外培训机构突然关门，预交的一万多学费不退", "channel": "phone",
                    "caller": {"name": "王女士", "phone": "13812341234"}}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, secret) = api
        .post(
            "/api/v1/appeals",
            &operator,
            &json!({"content": "即墨区某培训机构退费难", "channel": "phone",
                    "caller": {"name": "李先生", "phone": "13900001111", "confidential": true}}),
        )
        .await;
    let appeal_id = filed["id"].as_str().unwrap();
    let appeal = api.wait_settled(&operator, appeal_id).await;
    assert_eq!(appeal["lead_unit"], "jimo", "{appeal}");
    assert_eq!(appeal["assisting_units"], json!(["qdedu-private"]));
    let case_id = appeal["case_id"].as_str().unwrap().to_owned();
    let case_path = format!("/api/v1/cases/{case_id}");

    let lead = token(&stack.pool, Role::Unit, Some("jimo")).await;
    let assisting = token(&stack.pool, Role::Unit, Some("qdedu-private")).await;
    let stranger = token(&stack.pool, Role::Unit, Some("laixi")).await;

    // Another unit: 404 for reading and acting, and its list is empty.
    assert_eq!(api.get(&case_path, &stranger).await.0, 404);
    assert_eq!(
        api.get(&format!("/api/v1/appeals/{appeal_id}"), &stranger)
            .await
            .0,
        404
    );
    assert_eq!(
        api.post(&format!("{case_path}/accept"), &stranger, &json!({}))
            .await
            .0,
        404
    );
    let (_, list) = api.get("/api/v1/cases", &stranger).await;
    assert_eq!(list["cases"], json!([]));

    // The lead sees it with the number masked; the assisting unit sees it but cannot resolve.
    let (status, seen) = api.get(&case_path, &lead).await;
    assert_eq!(status, 200);
    assert_eq!(seen["your_role"], "lead");
    let callers: Vec<_> = seen["appeals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["caller"].clone())
        .collect();
    assert_eq!(callers[0]["phone"], "138****1234");
    let (_, list) = api.get("/api/v1/cases", &lead).await;
    assert!(list["cases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == case_id.as_str()));
    assert_eq!(
        api.post(&format!("{case_path}/accept"), &assisting, &json!({}))
            .await
            .0,
        403
    );
    assert_eq!(
        api.post(&format!("{case_path}/accept"), &lead, &json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        api.post(
            &format!("{case_path}/contact"),
            &assisting,
            &json!({"note": "协办已联系"})
        )
        .await
        .0,
        200
    );
    let (status, body) = api
        .post(
            &format!("{case_path}/resolve"),
            &assisting,
            &json!({"result": "x"}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    // Illegal transitions are refused with a clear conflict.
    let (status, body) = api
        .post(&format!("{case_path}/accept"), &lead, &json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("cannot accept"));
    assert_eq!(
        api.post(
            &format!("{case_path}/resolve"),
            &lead,
            &json!({"result": "已督促机构退费"})
        )
        .await
        .0,
        200
    );

    // Identity: operators see the number, others see it masked; confidential callers are hidden.
    let secret_id = secret["id"].as_str().unwrap();
    api.wait_settled(&operator, secret_id).await;
    let (_, for_operator) = api
        .get(&format!("/api/v1/appeals/{secret_id}"), &operator)
        .await;
    assert_eq!(for_operator["caller"]["phone"], "13900001111");
    let (_, for_manager) = api
        .get(&format!("/api/v1/appeals/{secret_id}"), &manager)
        .await;
    assert_eq!(for_manager["caller"], json!({"confidential": true}));
    let (_, plain) = api
        .get(&format!("/api/v1/appeals/{appeal_id}"), &manager)
        .await;
    assert_eq!(plain["caller"]["phone"], "138****1234");
    // Clear numbers never travel in events.
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar("SELECT payload FROM outbox")
        .fetch_all(&stack.pool)
        .await
        .unwrap();
    for payload in payloads {
        let text = String::from_utf8_lossy(&payload);
        assert!(!text.contains("13812341234") && !text.contains("13900001111"));
    }

    // Expired, revoked and unknown tokens get 401.
    let mut conn = stack.pool.acquire().await.unwrap();
    let (_, expired) = tokens::issue(
        &mut conn,
        &NewToken {
            role: Role::Operator,
            unit: None,
            school: None,
            name: "old",
            expires_at: Some(Utc::now() - chrono::Duration::minutes(1)),
        },
    )
    .await
    .unwrap();
    let (revoked_id, revoked) = tokens::issue(
        &mut conn,
        &NewToken {
            role: Role::Operator,
            unit: None,
            school: None,
            name: "gone",
            expires_at: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(api.get(&case_path, &revoked).await.0, 200);
    tokens::revoke(&mut conn, revoked_id, Utc::now())
        .await
        .unwrap();
    drop(conn);
    for (name, bad) in [
        ("expired", expired.as_str()),
        ("revoked", revoked.as_str()),
        ("unknown", "hl_nope"),
    ] {
        let (status, body) = api.get(&case_path, bad).await;
        assert_eq!(status, 401, "{name}: {body}");
    }
    let response = api
        .http
        .get(format!("{}{case_path}", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    // A unit token cannot file appeals.
    let (status, _) = api
        .post(
            "/api/v1/appeals",
            &lead,
            &json!({"content": "x", "channel": "web"}),
        )
        .await;
    assert_eq!(status, 403);

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}
