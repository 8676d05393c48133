//! Poison messages go to the dead-letter topic with their error, the stream behind them keeps
//! flowing, and `hotline dlq redrive` re-processes one once its cause is fixed.

use crate::support::*;
use chrono::Utc;
use hotline_domain::appeal::{AppealInput, NewAppeal, Provenance};
use hotline_events::{v1, Actor, Event, Payload};
use hotline_store::appeals::{self, AppealMeta};
use hotline_store::tokens::Role;
use hotline_workers::SystemClock;
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_redriven_after_the_fix() {
    let env = TestEnv::new().await;
    let stack = env.start_all(SystemClock).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let appeals_topic = env.topic("appeals");

    // Not protobuf at all: can never be processed.
    produce(
        &appeals_topic,
        "garbage",
        b"\xff\x00 not an envelope",
        Some("AppealFiled"),
    )
    .await;
    // A well-formed AppealFiled for an appeal the database does not have (yet).
    let missing = uuid::Uuid::now_v7();
    let orphan = Event::new(
        missing.to_string(),
        Actor::system("test"),
        Utc::now(),
        Payload::AppealFiled(v1::AppealFiled {
            appeal_id: missing.to_string(),
            content: "食堂饭菜发霉".into(),
            ..Default::default()
        }),
    );
    produce(
        &appeals_topic,
        &missing.to_string(),
        &orphan.encode(),
        Some("AppealFiled"),
    )
    .await;

    // The stream behind them keeps flowing.
    let id = api
        .file(&operator, "市南区某中学食堂饭菜发霉，孩子吃了拉肚子")
        .await;
    assert_eq!(api.wait_settled(&operator, &id).await["status"], "routed");

    let letters = eventually("dead letters arrive", Duration::from_secs(60), || async {
        let letters = hotline_json(&env, &["dlq", "list"], &[]).await;
        (letters.len() >= 4).then_some(letters)
    })
    .await;
    let garbage: Vec<&Value> = letters.iter().filter(|l| l["key"] == "garbage").collect();
    let mut consumers: Vec<&str> = garbage
        .iter()
        .map(|l| l["consumer"].as_str().unwrap())
        .collect();
    consumers.sort_unstable();
    assert_eq!(
        consumers,
        [
            env.group(hotline_workers::classifier::NAME),
            env.group(hotline_workers::proactive::NAME),
            env.group(hotline_workers::router::NAME)
        ],
        "every consumer of the appeals topic dead-letters it: {letters:?}"
    );
    assert!(garbage.iter().all(|l| l["error"]
        .as_str()
        .unwrap()
        .contains("not a valid protobuf")));
    let orphan_letter = letters
        .iter()
        .find(|l| l["key"] == missing.to_string().as_str())
        .expect("orphan dead-lettered");
    assert_eq!(
        orphan_letter["consumer"],
        env.group(hotline_workers::classifier::NAME).as_str()
    );
    assert_eq!(orphan_letter["event_type"], "AppealFiled");
    assert!(
        orphan_letter["error"]
            .as_str()
            .unwrap()
            .contains("not in the database"),
        "{orphan_letter}"
    );
    assert_eq!(orphan_letter["attempts"], 3);

    // Fix the cause: the appeal arrives in the database. Then redrive that one letter.
    let appeal = NewAppeal::parse(
        AppealInput {
            content: Some("李沧区一所小学食堂饭菜发霉".into()),
            channel: Some("phone".into()),
            ..Default::default()
        },
        Utc::now(),
        Provenance::Live,
    )
    .unwrap();
    let mut conn = stack.pool.acquire().await.unwrap();
    let meta = AppealMeta {
        filed_by: "test",
        idempotency_key: None,
        request_hash: "x",
        traceparent: None,
        caller_key: None,
    };
    appeals::insert(&mut conn, missing, &appeal, &meta)
        .await
        .unwrap();
    drop(conn);
    let only = format!("{}:{}", orphan_letter["partition"], orphan_letter["offset"]);
    let result = hotline_json(&env, &["dlq", "redrive", "--only", &only], &[]).await;
    assert_eq!(result[0]["redriven"], 1);

    let body = api.wait_settled(&operator, &missing.to_string()).await;
    assert_eq!(body["status"], "routed", "{body}");
    assert_eq!(body["lead_unit"], "licang");
    // The redriven record was for the classifier only: the topic's other groups skipped it.
    for group in [
        env.group(hotline_workers::router::NAME),
        env.group(hotline_workers::proactive::NAME),
    ] {
        let line = format!("hotline_redriven_skipped_total{{consumer=\"{group}\"}} 1");
        eventually(
            "the other groups skip the redriven record",
            CONSUMER_WAIT,
            || async {
                let text = api.metrics().await;
                text.contains(&line).then_some(())
            },
        )
        .await;
    }

    // A letter is re-driven at most once.
    let again = hotline_json(&env, &["dlq", "redrive", "--only", &only], &[]).await;
    assert_eq!(again[0]["redriven"], 0);
    let letters = hotline_json(&env, &["dlq", "list"], &[]).await;
    let listed = letters
        .iter()
        .find(|l| l["key"] == missing.to_string().as_str())
        .unwrap();
    assert_eq!(listed["redriven"], true);

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}
