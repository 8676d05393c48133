//! The spine end to end: filed over HTTP → classified → routed → units act, with events in order
//! on their topics and nothing duplicated by retries or redeliveries.

use crate::support::*;
use hotline_store::tokens::Role;
use hotline_workers::SystemClock;
use serde_json::json;

#[tokio::test]
async fn an_appeal_is_classified_routed_and_handled_with_events_in_order() {
    let env = TestEnv::new().await;
    let stack = env.start_all(SystemClock).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;

    let id = api
        .file(&operator, "西海岸新区一所小学的食堂饭菜里吃出虫子，孩子回家说饭菜经常是凉的，请教育局查一查配餐公司")
        .await;
    let settled = api.wait_settled(&operator, &id).await;
    assert_eq!(settled["status"], "routed", "{settled}");
    // The tracker starts the clocks from CaseRouted, a moment after routing.
    let appeal = eventually(
        "the case's clocks start",
        std::time::Duration::from_secs(20),
        || async {
            let (_, a) = api.get(&format!("/api/v1/appeals/{id}"), &operator).await;
            a["deadlines"]["resolve"].is_string().then_some(a)
        },
    )
    .await;
    assert_eq!(appeal["topic"], "canteen");
    assert_eq!(appeal["district"], "黄岛区");
    assert_eq!(appeal["lead_unit"], "xihaian");
    assert_eq!(appeal["informed_units"], json!(["qdedu-health"]));
    assert!(appeal["confidence"].as_f64().unwrap() > 0.5);
    for kind in ["sign", "contact", "resolve"] {
        let due = appeal["deadlines"][kind]
            .as_str()
            .unwrap_or_else(|| panic!("{kind} deadline: {appeal}"));
        chrono::DateTime::parse_from_rfc3339(due).expect("RFC 3339");
    }
    let case_id = appeal["case_id"].as_str().unwrap().to_owned();

    let unit = token(&stack.pool, Role::Unit, Some("xihaian")).await;
    let path = |action: &str| format!("/api/v1/cases/{case_id}/{action}");
    assert_eq!(api.post(&path("accept"), &unit, &json!({})).await.0, 200);
    assert_eq!(
        api.post(&path("contact"), &unit, &json!({"note": "已电话联系家长"}))
            .await
            .0,
        200
    );
    let (status, body) = api
        .post(
            &path("resolve"),
            &unit,
            &json!({"result": "已约谈配餐公司并整改"}),
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("resolved")),
        "{body}"
    );

    // The case history carries every transition with its actor.
    let (_, case) = api
        .get(&format!("/api/v1/cases/{case_id}"), &operator)
        .await;
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
            "CaseAccepted",
            "CaseContacted",
            "CaseResolved"
        ]
    );
    assert_eq!(case["history"][1]["actor"]["unit"], "xihaian");

    // And the events are on their topics, in order per key.
    let appeals_topic = env.topic("appeals");
    eventually(
        "appeal events published",
        std::time::Duration::from_secs(20),
        || async {
            let records = read_topic(&appeals_topic);
            (types_for_key(&records, &id) == ["AppealFiled", "AppealClassified"]).then_some(())
        },
    )
    .await;
    let cases_topic = env.topic("cases");
    eventually(
        "case events published",
        std::time::Duration::from_secs(20),
        || async {
            let records = read_topic(&cases_topic);
            (types_for_key(&records, &case_id)
                == [
                    "CaseRouted",
                    "CaseAccepted",
                    "CaseContacted",
                    "CaseResolved",
                ])
            .then_some(())
        },
    )
    .await;

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}

#[tokio::test]
async fn unsure_appeals_wait_in_triage_and_non_education_ones_are_transferred_out() {
    let env = TestEnv::new().await;
    let stack = env.start_all(SystemClock).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;

    let vague = api
        .file(&operator, "我想反映一个情况，希望有关部门重视一下")
        .await;
    let noise = api
        .file(&operator, "小区物业乱收停车费，楼下饭店油烟扰民，没人管")
        .await;
    let vague = api.wait_settled(&operator, &vague).await;
    assert_eq!(vague["status"], "triage", "{vague}");
    assert_eq!(vague["lead_unit"], serde_json::Value::Null);
    let noise = api.wait_settled(&operator, &noise).await;
    assert_eq!(noise["status"], "transferred_out", "{noise}");

    // The triage queue shows it; an operator assigns it in one action and its clocks start.
    let (_, queue) = api.get("/api/v1/cases?state=triage", &operator).await;
    let case_id = vague["case_id"].as_str().unwrap();
    assert!(
        queue["cases"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == case_id),
        "{queue}"
    );
    let (status, body) = api
        .post(
            &format!("/api/v1/cases/{case_id}/assign"),
            &operator,
            &json!({"lead": "shinan", "informed": ["qdedu-basic"], "note": "家长来电补充：市南区"}),
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("routed")),
        "{body}"
    );
    let appeal = eventually(
        "clocks start for the assigned case",
        std::time::Duration::from_secs(20),
        || async {
            let (_, a) = api
                .get(
                    &format!("/api/v1/appeals/{}", vague["id"].as_str().unwrap()),
                    &operator,
                )
                .await;
            a["deadlines"]["resolve"].is_string().then_some(a)
        },
    )
    .await;
    assert_eq!(appeal["lead_unit"], "shinan");
    assert_eq!(appeal["status"], "routed");

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}

#[tokio::test]
async fn retries_and_redeliveries_create_nothing_new() {
    let env = TestEnv::new().await;
    let stack = env.start_all(SystemClock).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;

    // The same Idempotency-Key gives the same appeal; reused for another appeal it is refused.
    let body = json!({"content": "孩子在学校被同学欺负，希望学校处理", "channel": "web"});
    let send = |body: serde_json::Value, key: &'static str| {
        let api = &api;
        let operator = operator.clone();
        async move {
            let response = api
                .http
                .post(format!("{}/api/v1/appeals", api.base))
                .bearer_auth(&operator)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (first_status, first) = send(body.clone(), "key-1").await;
    let (second_status, second) = send(body.clone(), "key-1").await;
    assert_eq!((first_status, second_status), (201, 200));
    assert_eq!(first["id"], second["id"]);
    let (status, _) = send(
        json!({"content": "另一件事：食堂太贵", "channel": "web"}),
        "key-1",
    )
    .await;
    assert_eq!(status, 409);

    // The same external_id is the same appeal.
    let export = json!({"content": "校外培训机构跑路，预付费退不了", "channel": "platform_12345", "external_id": "12345-2026-000001"});
    let (s1, a) = api.post("/api/v1/appeals", &operator, &export).await;
    let (s2, b) = api.post("/api/v1/appeals", &operator, &export).await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(a["id"], b["id"]);

    let id = first["id"].as_str().unwrap().to_owned();
    let appeal = api.wait_settled(&operator, &id).await;
    let case_id = appeal["case_id"].as_str().unwrap().to_owned();
    api.wait_settled(&operator, a["id"].as_str().unwrap()).await;

    // Redeliver every event of the first appeal and its case, as a broker would after a crash.
    let appeals_topic = env.topic("appeals");
    let cases_topic = env.topic("cases");
    let records = eventually(
        "events published",
        std::time::Duration::from_secs(20),
        || async {
            let r = read_topic(&appeals_topic);
            (types_for_key(&r, &id).len() == 2).then_some(r)
        },
    )
    .await;
    let case_records = read_topic(&cases_topic);
    let mut last = Vec::new();
    for record in records.iter().filter(|r| r.key == id) {
        last.push((
            appeals_topic.clone(),
            produce(
                &appeals_topic,
                &record.key,
                &record.payload,
                Some(&record.event_type),
            )
            .await,
        ));
    }
    for record in case_records.iter().filter(|r| r.key == case_id) {
        last.push((
            cases_topic.clone(),
            produce(
                &cases_topic,
                &record.key,
                &record.payload,
                Some(&record.event_type),
            )
            .await,
        ));
    }
    for (topic, (partition, offset)) in &last {
        let workers: &[&str] = if *topic == appeals_topic {
            &[
                hotline_workers::classifier::NAME,
                hotline_workers::router::NAME,
            ]
        } else {
            &[hotline_workers::tracker::NAME]
        };
        for worker in workers {
            wait_consumed(&env.group(worker), topic, *partition, *offset).await;
        }
    }

    let count = |sql: &'static str| count_rows(&stack.pool, sql);
    assert_eq!(count("SELECT count(*) FROM appeals").await, 2);
    assert_eq!(count("SELECT count(*) FROM cases").await, 2);
    assert_eq!(
        count("SELECT count(*) FROM outbox WHERE event_type = 'AppealClassified'").await,
        2
    );
    assert_eq!(
        count("SELECT count(*) FROM outbox WHERE event_type = 'CaseRouted'").await,
        2
    );
    assert_eq!(count("SELECT count(*) FROM case_deadlines").await, 6);

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}

#[tokio::test]
async fn housekeeping_prunes_published_outbox_rows_and_old_processed_keys_only() {
    use chrono::Duration as Span;
    use hotline_workers::clock::ShiftedClock;
    use hotline_workers::relay::{prune_once, Retention};
    let env = TestEnv::new().await;
    let stack = env.start_all(SystemClock).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let id = api.file(&operator, "崂山区一所小学校服收费太贵").await;
    api.wait_settled(&operator, &id).await;
    let pool = stack.pool.clone();
    let count = |sql: &'static str| count_rows(&pool, sql);
    let published = "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL";
    let keys = "SELECT count(*) FROM processed_events";
    crate::support::eventually(
        "events are published",
        std::time::Duration::from_secs(20),
        || async { (count(published).await > 0).then_some(()) },
    )
    .await;
    // Stopped, so nothing moves while we count (and the relay does not publish the row below).
    stack.stop().await;
    // A row written now but not yet published must survive any pruning.
    sqlx::query(
        "INSERT INTO outbox (stream, aggregate_id, event_id, event_type, payload)
         VALUES ('cases', 'x', gen_random_uuid(), 'Test', '\\x00')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let retention = Retention {
        outbox: Span::days(7),
        processed_keys: Span::days(45),
    };
    let keys_before = count(keys).await;
    assert!(keys_before > 0);

    // Today nothing is old enough.
    assert_eq!(
        prune_once(&pool, &SystemClock, retention).await.unwrap(),
        (0, 0)
    );
    // Eight days on: published rows go, keys stay.
    let later = ShiftedClock::default();
    later.advance(Span::days(8));
    let (rows, pruned_keys) = prune_once(&pool, &later, retention).await.unwrap();
    assert!(rows > 0);
    assert_eq!(pruned_keys, 0);
    assert_eq!(count(published).await, 0);
    assert_eq!(
        count("SELECT count(*) FROM outbox WHERE published_at IS NULL AND event_type = 'Test'")
            .await,
        1
    );
    // Forty-six days on: the keys go too.
    later.advance(Span::days(38));
    let (_, pruned_keys) = prune_once(&pool, &later, retention).await.unwrap();
    assert!(pruned_keys >= keys_before as u64);
    assert_eq!(count(keys).await, 0);

    env.cleanup(pool).await;
}
