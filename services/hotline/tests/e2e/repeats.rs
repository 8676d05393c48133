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

async fn file_from(api: &Api, token: &str, phone: &str, content: &str) -> Value {
    let (status, body) = api
        .post(
            "/api/v1/appeals",
            token,
            &json!({"content": content, "channel": "phone", "caller": {"phone": phone}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// Files an appeal from a caller and waits until it is routed (or joined to a case).
async fn settled_from(api: &Api, token: &str, phone: &str, content: &str) -> Value {
    let filed = file_from(api, token, phone, content).await;
    api.wait_settled(token, filed["id"].as_str().unwrap()).await
}

#[tokio::test]
async fn repeats_join_the_open_case_can_be_unlinked_and_count_against_the_closing_unit() {
    let env = TestEnv::new().await;
    let stack = env.start_all(SystemClock).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let manager = token(&stack.pool, Role::Manager, None).await;
    let licang = token(&stack.pool, Role::Unit, Some("licang")).await;

    // The same caller calls again about the same matter, in other words.
    let first = settled_from(
        &api,
        &operator,
        "13800001111",
        "青岛第五十中学食堂周三午饭的鸡腿有股馊味，孩子吃了拉肚子，学校也没个说法",
    )
    .await;
    let case_id = first["case_id"].as_str().unwrap().to_owned();
    assert_eq!(first["lead_unit"], "licang", "{first}");
    let again = file_from(
        &api,
        &operator,
        "138-0000-1111",
        "第二次打电话了，五十中食堂鸡腿变质的事到现在没人管，孩子还在拉肚子",
    )
    .await;
    // The operator sees the caller's open case as soon as the appeal is filed.
    assert_eq!(
        again["same_caller_cases"][0]["case_id"],
        case_id.as_str(),
        "{again}"
    );
    let again = api
        .wait_settled(&operator, again["id"].as_str().unwrap())
        .await;
    assert_eq!(again["case_id"], case_id.as_str(), "joined the open case");
    assert_eq!(again["repeat_match"]["kind"], "same_caller");

    // Another parent about the same incident at the same school joins too; the same complaint
    // about another school does not.
    let other_parent = settled_from(
        &api,
        &operator,
        "13900002222",
        "青岛第五十中学周三中午的鸡腿是坏的，我们班好几个孩子吃完肚子疼",
    )
    .await;
    assert_eq!(other_parent["case_id"], case_id.as_str(), "{other_parent}");
    assert_eq!(other_parent["repeat_match"]["kind"], "same_matter");
    let other_school = settled_from(
        &api,
        &operator,
        "13700003333",
        "青岛第十九中学周三中午的鸡腿是坏的，我们班好几个孩子吃完肚子疼",
    )
    .await;
    assert_ne!(other_school["case_id"], case_id.as_str());
    // The same matter turning urgent is not folded into the case that is not: it is routed on
    // its own, urgent.
    let urgent = settled_from(
        &api,
        &operator,
        "13600004444",
        "青岛第五十中学食堂今天中午的鸡腿又是坏的，十几个孩子食物中毒送医院了",
    )
    .await;
    assert_ne!(urgent["case_id"], case_id.as_str(), "{urgent}");
    assert_eq!(urgent["urgent"], true, "{urgent}");
    // It is the same matter by the repeat rules (same school and topic, text overlap above the
    // other-caller threshold): only its urgency kept it out.
    let policy = hotline_domain::repeats::RepeatPolicy::builtin();
    let overlap = hotline_domain::repeats::Fingerprint::of(
        "青岛第五十中学食堂今天中午的鸡腿又是坏的，十几个孩子食物中毒送医院了",
    )
    .similarity(&hotline_domain::repeats::Fingerprint::of(
        "青岛第五十中学周三中午的鸡腿是坏的，我们班好几个孩子吃完肚子疼",
    ));
    assert!(overlap >= policy.other_caller_similarity, "{overlap}");
    assert_eq!(urgent["topic"], other_parent["topic"], "{urgent}");
    assert_eq!(urgent["school"], other_parent["school"], "{urgent}");

    let (_, case) = api.get(&format!("/api/v1/cases/{case_id}"), &licang).await;
    assert_eq!(case["appeals"].as_array().unwrap().len(), 3, "{case}");
    assert_eq!(
        history_events(&case)
            .iter()
            .filter(|e| *e == "RepeatLinked")
            .count(),
        2
    );

    // The operator disagrees with the second link: that appeal gets its own case.
    let parent_id = other_parent["id"].as_str().unwrap();
    let (status, body) = api
        .post(
            &format!("/api/v1/appeals/{parent_id}/unlink"),
            &operator,
            &json!({"note": "不同年级，另案处理"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let own = eventually(
        "the unlinked appeal is routed on its own",
        Duration::from_secs(20),
        || async {
            let (_, appeal) = api
                .get(&format!("/api/v1/appeals/{parent_id}"), &operator)
                .await;
            (appeal["status"] == "routed"
                && appeal["case_id"].is_string()
                && appeal["case_id"] != case_id.as_str())
            .then_some(appeal)
        },
    )
    .await;
    assert!(own["repeat_match"].is_null());
    let (status, _) = api
        .post(
            &format!("/api/v1/appeals/{parent_id}/unlink"),
            &operator,
            &json!({}),
        )
        .await;
    assert_eq!(status, 409);

    // The case is handled and closed; the caller comes back: a new case, a repeat request
    // charged to the unit that closed the first.
    for (action, token, body) in [
        ("accept", &licang, json!({})),
        ("contact", &licang, json!({"note": "已联系家长"})),
        ("resolve", &licang, json!({"result": "已约谈配餐公司"})),
        (
            "callback",
            &operator,
            json!({"reached": true, "solved": true, "satisfaction": "satisfied"}),
        ),
    ] {
        let (status, body) = api
            .post(&format!("/api/v1/cases/{case_id}/{action}"), token, &body)
            .await;
        assert_eq!(status, 200, "{action}: {body}");
    }
    // Every appeal joined to the case gets its own callback (the first by default) before the
    // case closes.
    let close = format!("/api/v1/cases/{case_id}/close");
    let (status, body) = api.post(&close, &operator, &json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("callbacks_pending")),
        "{body}"
    );
    // The second caller cannot be reached: the attempt is recorded without a grade (a grade for
    // someone not reached, or none for someone reached, is refused).
    let callback = format!("/api/v1/cases/{case_id}/callback");
    for (body, field) in [
        (
            json!({"appeal_id": again["id"], "reached": false, "satisfaction": "satisfied"}),
            "satisfaction",
        ),
        (
            json!({"appeal_id": again["id"], "reached": true, "satisfaction": "satisfied"}),
            "solved",
        ),
    ] {
        let (status, body) = api.post(&callback, &operator, &body).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some(field)),
            "{body}"
        );
    }
    let second_callback =
        json!({"appeal_id": again["id"], "reached": false, "note": "两次拨打均无人接听"});
    let (status, body) = api.post(&callback, &operator, &second_callback).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("callback_done")),
        "{body}"
    );
    // Tried again in the afternoon and reached: recorded; a third callback for this caller is
    // one too many.
    let reached = json!({"appeal_id": again["id"], "reached": true, "solved": true, "satisfaction": "satisfied"});
    let (status, body) = api.post(&callback, &operator, &reached).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("callback_done")),
        "{body}"
    );
    let (status, body) = api.post(&callback, &operator, &reached).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("already_called_back"))
    );
    let (status, _) = api
        .post(
            &format!("/api/v1/cases/{case_id}/close"),
            &operator,
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let back = settled_from(
        &api,
        &operator,
        "13800001111",
        "五十中食堂的鸡腿又是馊的，上次说整改了，根本没改",
    )
    .await;
    assert_ne!(back["case_id"], case_id.as_str());
    let today = chrono::Utc::now()
        .with_timezone(&hotline_domain::calendar::china_offset())
        .date_naive();
    let (_, rates) = api
        .get(
            &format!(
                "/api/v1/rates?from={}&to={}",
                today - chrono::Days::new(1),
                today
            ),
            &manager,
        )
        .await;
    let canteen = rates["repeat_requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["unit"] == "licang" && r["topic"] == "canteen")
        .cloned()
        .expect("licang's canteen repeat requests");
    assert_eq!(canteen["repeat_requests"], 1, "{rates}");
    assert_eq!(canteen["closed"], 1);
    assert_eq!(canteen["repeat_request_rate"], 1.0);

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}
