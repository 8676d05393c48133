//! Webhooks against a real local HTTP receiver: signatures verify, a receiver that fails three
//! times then succeeds ends with each event acknowledged once and in order, a receiver that is
//! down gets its delivery parked (visible) and the case's later events held until an admin
//! retries.

use crate::support::*;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use hotline_store::tokens::Role;
use hotline_workers::clock::ShiftedClock;
use hotline_workers::notifier::{send_next, verify};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

#[derive(Debug, Clone)]
struct Received {
    unit: String,
    delivery: String,
    sequence: i64,
    event_type: String,
    case_id: String,
    signature_ok: bool,
    answered: u16,
}

#[derive(Clone, Default)]
struct Receiver {
    log: Arc<Mutex<Vec<Received>>>,
    failures_left: Arc<AtomicUsize>,
}

impl Receiver {
    fn acknowledged(&self, unit: &str) -> Vec<Received> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.unit == unit && r.answered == 200)
            .cloned()
            .collect()
    }

    fn all(&self, unit: &str) -> Vec<Received> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.unit == unit)
            .cloned()
            .collect()
    }
}

async fn hook(
    State(receiver): State<Receiver>,
    Path(unit): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let timestamp: i64 = header("x-hotline-timestamp").parse().unwrap_or(0);
    let signature_ok = verify(
        SECRET,
        timestamp,
        &body,
        &header("x-hotline-signature"),
        chrono::Utc::now().timestamp(),
    );
    let parsed: Value = serde_json::from_str(&body).unwrap_or_default();
    let failing = receiver
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let answered = if failing || !signature_ok {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    receiver.log.lock().unwrap().push(Received {
        unit,
        delivery: header("x-hotline-delivery"),
        sequence: header("x-hotline-sequence").parse().unwrap_or(-1),
        event_type: header("x-hotline-event"),
        case_id: parsed["case_id"].as_str().unwrap_or_default().to_owned(),
        signature_ok,
        answered: answered.as_u16(),
    });
    assert_eq!(
        parsed["delivery_id"].as_str(),
        Some(header("x-hotline-delivery").as_str())
    );
    answered
}

async fn start_receiver(receiver: Receiver) -> String {
    serve_locally(
        axum::Router::new()
            .route("/hook/{unit}", axum::routing::post(hook))
            .with_state(receiver),
    )
    .await
}

/// A port nothing listens on: a receiver that is down.
async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/hook/shibei")
}

#[tokio::test]
async fn webhooks_are_signed_retried_ordered_and_parked() {
    let mut env = TestEnv::new().await;
    env.config.webhook_max_attempts = 4;
    env.config.webhook_retry_base_ms = 100;
    env.config.webhook_retry_max_ms = 400;
    let clock = ShiftedClock::default();
    let stack = env.start_all(clock.clone()).await;
    let api = Api::new(&stack);
    let admin = token(&stack.pool, Role::Admin, None).await;
    let operator = token(&stack.pool, Role::Operator, None).await;
    let licang = token(&stack.pool, Role::Unit, Some("licang")).await;
    let shibei = token(&stack.pool, Role::Unit, Some("shibei")).await;

    let receiver = Receiver::default();
    receiver.failures_left.store(3, Ordering::SeqCst);
    let base = start_receiver(receiver.clone()).await;

    // Only admins set webhooks, with a real URL and a long enough secret.
    let set = |url: String, secret: &str| json!({"url": url, "secret": secret});
    for (token, unit, body, expected) in [
        (
            &licang,
            "licang",
            set(format!("{base}/hook/licang"), SECRET),
            403,
        ),
        (
            &admin,
            "nowhere",
            set(format!("{base}/hook/x"), SECRET),
            404,
        ),
        (
            &admin,
            "licang",
            set("ftp://example.org/x".into(), SECRET),
            422,
        ),
        (
            &admin,
            "licang",
            set(format!("{base}/hook/licang"), "short"),
            422,
        ),
        (
            &admin,
            "licang",
            set(format!("{base}/hook/licang"), SECRET),
            200,
        ),
        (&admin, "shibei", set(closed_port_url().await, SECRET), 200),
    ] {
        let (status, reply) = api
            .put(&format!("/api/v1/units/{unit}/webhook"), token, &body)
            .await;
        assert_eq!(status, expected, "{unit} {body}: {reply}");
    }

    // A receiver that fails three times, then works.
    let flaky_case = {
        let id = api
            .file(
                &operator,
                "李沧区一所小学食堂饭菜经常是凉的，孩子吃了肚子疼",
            )
            .await;
        let appeal = api.wait_settled(&operator, &id).await;
        assert_eq!(appeal["lead_unit"], "licang");
        appeal["case_id"].as_str().unwrap().to_owned()
    };
    for (action, body) in [
        ("accept", json!({})),
        ("contact", json!({"note": "已电话联系家长"})),
    ] {
        let (status, _) = api
            .post(
                &format!("/api/v1/cases/{flaky_case}/{action}"),
                &licang,
                &body,
            )
            .await;
        assert_eq!(status, 200, "{action}");
    }
    let acknowledged = eventually(
        "three events acknowledged by the flaky receiver",
        CONSUMER_WAIT,
        || async {
            let acked = receiver.acknowledged("licang");
            (acked.len() >= 3).then_some(acked)
        },
    )
    .await;
    let all = receiver.all("licang");
    assert!(all.iter().all(|r| r.signature_ok), "{all:?}");
    assert!(all.iter().all(|r| r.case_id == flaky_case));
    assert_eq!(
        acknowledged
            .iter()
            .map(|r| (r.sequence, r.event_type.as_str()))
            .collect::<Vec<_>>(),
        [(1, "CaseRouted"), (2, "CaseAccepted"), (3, "CaseContacted")]
    );
    // The three failures were the first delivery, retried under the same id; each delivery id is
    // acknowledged exactly once.
    let first = &acknowledged[0].delivery;
    assert_eq!(all.iter().filter(|r| &r.delivery == first).count(), 4);
    assert!(all[..3]
        .iter()
        .all(|r| &r.delivery == first && r.answered == 500));
    for ack in &acknowledged {
        assert_eq!(
            acknowledged
                .iter()
                .filter(|r| r.delivery == ack.delivery)
                .count(),
            1
        );
    }
    let (_, log) = api
        .get(
            &format!("/api/v1/webhooks/deliveries?case_id={flaky_case}&unit=licang"),
            &admin,
        )
        .await;
    let attempts: Vec<(i64, &str)> = log["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["attempts"].as_i64().unwrap(),
                d["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [(4, "delivered"), (1, "delivered"), (1, "delivered")]
    );

    // A receiver that is down: the first delivery is parked, the case's later events are held.
    let down_case = {
        let id = api
            .file(&operator, "市北区某中学食堂卫生差，餐具上有油污")
            .await;
        let appeal = api.wait_settled(&operator, &id).await;
        assert_eq!(appeal["lead_unit"], "shibei");
        appeal["case_id"].as_str().unwrap().to_owned()
    };
    for (action, body) in [
        ("accept", json!({})),
        ("contact", json!({"note": "已联系"})),
    ] {
        let (status, _) = api
            .post(
                &format!("/api/v1/cases/{down_case}/{action}"),
                &shibei,
                &body,
            )
            .await;
        assert_eq!(status, 200, "{action}");
    }
    let deliveries_of = |status: &'static str| {
        let api = &api;
        let admin = &admin;
        let down_case = &down_case;
        async move {
            let (_, log) = api
                .get(
                    &format!("/api/v1/webhooks/deliveries?case_id={down_case}&unit=shibei"),
                    admin,
                )
                .await;
            log["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| status == "any" || d["status"] == status)
                .cloned()
                .collect::<Vec<Value>>()
        }
    };
    let parked = eventually("the first delivery is parked", CONSUMER_WAIT, || async {
        let failed = deliveries_of("failed").await;
        let all = deliveries_of("any").await;
        (failed.len() == 1 && all.len() == 3).then(|| failed[0].clone())
    })
    .await;
    assert_eq!(parked["sequence"], 1);
    assert_eq!(parked["attempts"], 4);
    assert!(
        parked["last_error"]
            .as_str()
            .unwrap()
            .contains("request failed"),
        "{parked}"
    );
    let (_, failed_list) = api
        .get("/api/v1/webhooks/deliveries?status=failed", &admin)
        .await;
    assert_eq!(failed_list["deliveries"].as_array().unwrap().len(), 1);
    // Nothing else is sendable: the later two wait behind the parked one, never attempted.
    let client = reqwest::Client::new();
    let policy = env.config.webhook_policy();
    assert!(!send_next(&stack.pool, &clock, &policy, &client)
        .await
        .unwrap());
    let held = deliveries_of("pending").await;
    assert_eq!(
        held.iter()
            .map(|d| (
                d["sequence"].as_i64().unwrap(),
                d["attempts"].as_i64().unwrap()
            ))
            .collect::<Vec<_>>(),
        [(2, 0), (3, 0)]
    );

    // Only a parked delivery can be retried or skipped.
    let (status, _) = api
        .post(
            &format!(
                "/api/v1/webhooks/deliveries/{}/retry",
                held[0]["id"].as_str().unwrap()
            ),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(status, 409);
    let parked_id = parked["id"].as_str().unwrap();
    assert_eq!(
        api.post(
            &format!("/api/v1/webhooks/deliveries/{parked_id}/retry"),
            &operator,
            &json!({})
        )
        .await
        .0,
        403
    );
    // The unit's receiver is back (at a new address); the admin retries; all three arrive in order.
    let (status, _) = api
        .put(
            "/api/v1/units/shibei/webhook",
            &admin,
            &set(format!("{base}/hook/shibei"), SECRET),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .post(
            &format!("/api/v1/webhooks/deliveries/{parked_id}/retry"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let arrived = eventually("the held deliveries arrive", CONSUMER_WAIT, || async {
        let acked = receiver.acknowledged("shibei");
        (acked.len() >= 3).then_some(acked)
    })
    .await;
    assert_eq!(
        arrived
            .iter()
            .map(|r| (r.sequence, r.event_type.as_str(), r.delivery.as_str()))
            .collect::<Vec<_>>(),
        [
            (1, "CaseRouted", parked_id),
            (2, "CaseAccepted", held[0]["id"].as_str().unwrap()),
            (3, "CaseContacted", held[1]["id"].as_str().unwrap()),
        ]
    );
    assert!(deliveries_of("failed").await.is_empty());

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}
