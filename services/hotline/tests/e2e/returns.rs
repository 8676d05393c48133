//! Returns through Kafka: the router re-routes by the reason, a second return stops for a
//! manager's ruling, the ruling forces the lead (and, upholding a wrong topic, stores a
//! correction); a duplicate return proposes a link; co-handling units add their part.

use crate::support::*;
use chrono::Duration as Span;
use hotline_store::tokens::Role;
use hotline_workers::clock::ShiftedClock;
use serde_json::{json, Value};
use std::time::Duration;

async fn wait_for_lead(api: &Api, token: &str, case_id: &str, lead: &str) -> Value {
    eventually(
        &format!("{case_id} is led by {lead}"),
        Duration::from_secs(20),
        || async {
            let (_, case) = api.get(&format!("/api/v1/cases/{case_id}"), token).await;
            (case["lead_unit"] == lead && case["state"] == "routed").then_some(case)
        },
    )
    .await
}

async fn wait_for_ruling(api: &Api, token: &str, case_id: &str) -> Value {
    eventually(
        "the case is in the rulings queue",
        Duration::from_secs(20),
        || async {
            let (_, queue) = api.get("/api/v1/rulings", token).await;
            queue["cases"]
                .as_array()
                .and_then(|cases| cases.iter().find(|c| c["id"] == case_id).cloned())
        },
    )
    .await
}

#[tokio::test]
async fn return_reroute_second_return_ruling_and_forced_assignment() {
    let env = TestEnv::new().await;
    let clock = ShiftedClock::default();
    let stack = env.start_all(clock.clone()).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let manager = token(&stack.pool, Role::Manager, None).await;
    let licang = token(&stack.pool, Role::Unit, Some("licang")).await;
    let shibei = token(&stack.pool, Role::Unit, Some("shibei")).await;
    let laoshan = token(&stack.pool, Role::Unit, Some("laoshan")).await;

    let id = api
        .file(&operator, "李沧区一所小学食堂饭菜质量差，孩子经常吃不饱")
        .await;
    let appeal = api.wait_settled(&operator, &id).await;
    let case_id = appeal["case_id"].as_str().unwrap().to_owned();
    assert_eq!(appeal["lead_unit"], "licang", "{appeal}");
    let path = |p: &str| format!("/api/v1/cases/{case_id}/{p}");
    let case_path = format!("/api/v1/cases/{case_id}");

    // First return, naming the right district: the router sends it there, without licang.
    clock.advance(Span::hours(1));
    let (status, body) = api
        .post(
            &path("return"),
            &licang,
            &json!({"reason": "wrong_district", "note": "该校位于市北区，不属我区管辖"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let case = wait_for_lead(&api, &operator, &case_id, "shibei").await;
    assert!(
        case["routing"]["rule"]
            .as_str()
            .unwrap()
            .starts_with("return/wrong-district:"),
        "{}",
        case["routing"]
    );
    assert_eq!(case["district"], "市北区");
    assert!(!case["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["unit_code"] == "licang" && a["ended_at"].is_null()));

    // Second return: no more bouncing; a manager rules.
    clock.advance(Span::hours(2));
    let (status, body) = api
        .post(
            &path("return"),
            &shibei,
            &json!({"reason": "not_our_jurisdiction", "note": "学校在李沧区，请核实"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let queued = wait_for_ruling(&api, &manager, &case_id).await;
    assert_eq!(queued["ruling_requested"]["rule"], "return/ping-pong");
    assert_eq!(
        queued["ruling_requested"]["returned_by"],
        json!(["licang", "shibei"])
    );
    assert!(
        queued["candidates"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{queued}"
    );
    assert_eq!(api.get("/api/v1/rulings", &licang).await.0, 403);

    // Only a manager rules; a note is required.
    let ruling = json!({"lead": "shibei", "topic": "fees", "note": "经核实学校属市北区，由市北区承办；实为收费问题"});
    assert_eq!(api.post(&path("ruling"), &operator, &ruling).await.0, 403);
    assert_eq!(
        api.post(&path("ruling"), &manager, &json!({"lead": "shibei"}))
            .await
            .0,
        422
    );
    let (status, body) = api.post(&path("ruling"), &manager, &ruling).await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("routed")),
        "{body}"
    );
    let (_, queue) = api.get("/api/v1/rulings", &manager).await;
    assert!(!queue["cases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == case_id.as_str()));
    // A second ruling on a case that is no longer returned is refused.
    let (status, body) = api.post(&path("ruling"), &manager, &ruling).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("nothing_to_rule"))
    );

    // The forced lead cannot return it again.
    clock.advance(Span::hours(1));
    let (status, body) = api
        .post(
            &path("return"),
            &shibei,
            &json!({"reason": "other", "note": "仍有异议"}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("assignment_forced")),
        "{body}"
    );

    // Upholding the wrong topic stored a correction for the next training.
    let corrections: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM classification_corrections WHERE source = 'return_ruling' AND to_topic = 'fees'",
    )
    .fetch_one(&stack.pool)
    .await
    .unwrap();
    assert_eq!(corrections, 1);

    // Every step is in the history, with the time each unit held the case.
    let (_, case) = api.get(&case_path, &operator).await;
    assert_eq!(case["topic"], "fees");
    assert_eq!(
        history_events(&case),
        [
            "CaseRouted",
            "CaseReturned",
            "CaseRerouted",
            "CaseReturned",
            "CaseRulingRequested",
            "CaseRerouted"
        ]
    );
    let held: Vec<(String, Option<String>, i64)> = case["time_with_units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["unit"].as_str().unwrap().to_owned(),
                h["end_reason"].as_str().map(str::to_owned),
                h["seconds"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(held.len(), 3, "{held:?}");
    assert_eq!(
        (held[0].0.as_str(), held[0].1.as_deref()),
        ("licang", Some("returned"))
    );
    assert!((3590..3700).contains(&held[0].2), "{held:?}");
    assert_eq!(
        (held[1].0.as_str(), held[1].1.as_deref()),
        ("shibei", Some("returned"))
    );
    assert!((7190..7300).contains(&held[1].2), "{held:?}");
    assert_eq!((held[2].0.as_str(), held[2].1.as_deref()), ("shibei", None));

    // Units that returned it read it; a unit with no part gets 404.
    let (status, seen) = api.get(&case_path, &licang).await;
    assert_eq!((status, seen["your_role"].as_str()), (200, Some("former")));
    assert_eq!(api.get(&case_path, &laoshan).await.0, 404);
    assert_eq!(api.post(&path("accept"), &licang, &json!({})).await.0, 403);

    // The same steps went through Kafka, in order.
    let records = eventually(
        "the ruling is published",
        Duration::from_secs(20),
        || async {
            let records = read_topic(&env.topic("cases"));
            let types = types_for_key(&records, &case_id);
            (types.len() >= 6).then_some(types)
        },
    )
    .await;
    let steps: Vec<&str> = records
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with("Case"))
        .collect();
    assert_eq!(
        steps,
        [
            "CaseRouted",
            "CaseReturned",
            "CaseRerouted",
            "CaseReturned",
            "CaseRulingRequested",
            "CaseRerouted"
        ]
    );

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}

#[tokio::test]
async fn a_duplicate_return_proposes_the_link_and_assisting_units_add_their_part() {
    let env = TestEnv::new().await;
    let stack = env.start_all(ShiftedClock::default()).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let manager = token(&stack.pool, Role::Manager, None).await;
    let jimo = token(&stack.pool, Role::Unit, Some("jimo")).await;
    let private = token(&stack.pool, Role::Unit, Some("qdedu-private")).await;
    let licang = token(&stack.pool, Role::Unit, Some("licang")).await;

    let text = "即墨区一家校外培训机构周末违规给初中生上数学学科课，收费还很高";
    let first = api
        .wait_settled(&operator, &api.file(&operator, text).await)
        .await;
    let second = api
        .wait_settled(
            &operator,
            &api.file(&operator, &format!("{text}，请尽快查处")).await,
        )
        .await;
    let first_case = first["case_id"].as_str().unwrap().to_owned();
    let second_case = second["case_id"].as_str().unwrap().to_owned();
    assert_eq!(second["lead_unit"], "jimo", "{second}");
    assert_eq!(second["assisting_units"], json!(["qdedu-private"]));

    // Co-handling: the assisting department adds its part; only the lead resolves.
    let path = |case: &str, p: &str| format!("/api/v1/cases/{case}/{p}");
    assert_eq!(
        api.post(&path(&first_case, "accept"), &jimo, &json!({}))
            .await
            .0,
        200
    );
    let (status, body) = api
        .post(
            &path(&first_case, "contributions"),
            &private,
            &json!({"note": "该机构无办学许可，已列入查处名单"}),
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("accepted")),
        "{body}"
    );
    assert_eq!(
        api.post(
            &path(&first_case, "contributions"),
            &licang,
            &json!({"note": "x"})
        )
        .await
        .0,
        404
    );
    assert_eq!(
        api.post(&path(&first_case, "contributions"), &private, &json!({}))
            .await
            .0,
        422
    );
    assert_eq!(
        api.post(
            &path(&first_case, "resolve"),
            &private,
            &json!({"result": "x"})
        )
        .await
        .0,
        403
    );
    let (_, case) = api.get(&format!("/api/v1/cases/{first_case}"), &jimo).await;
    let contribution = case["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["event"] == "CaseContributed")
        .cloned()
        .expect("contribution in history");
    assert_eq!(contribution["actor"]["unit"], "qdedu-private");

    // The lead returns the second case as a duplicate of the first: a manager confirms the link.
    let (status, body) = api
        .post(
            &path(&second_case, "return"),
            &jimo,
            &json!({"reason": "duplicate", "note": format!("与 {first_case} 为同一机构同一问题")}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let queued = wait_for_ruling(&api, &manager, &second_case).await;
    assert_eq!(queued["ruling_requested"]["rule"], "return/duplicate");
    assert_eq!(
        queued["ruling_requested"]["proposed_link"],
        first_case.as_str()
    );
    let (_, returned) = api.get("/api/v1/cases?state=returned", &operator).await;
    let listed = returned["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == second_case.as_str())
        .cloned()
        .expect("in the returned list");
    assert_eq!(listed["suggestion"]["topic"], "off_campus_tutoring");
    assert_eq!(listed["candidates"][0]["lead"], "jimo");

    let (status, body) = api
        .post(
            &path(&second_case, "link"),
            &manager,
            &json!({"into": first_case, "note": "确认重复"}),
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("linked")),
        "{body}"
    );
    let (_, queue) = api.get("/api/v1/rulings", &manager).await;
    assert!(queue["cases"].as_array().unwrap().is_empty(), "{queue}");
    let (_, primary) = api.get(&format!("/api/v1/cases/{first_case}"), &jimo).await;
    assert_eq!(primary["appeals"].as_array().unwrap().len(), 2);

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}

async fn school_token(pool: &hotline_store::PgPool, school: &str) -> String {
    let mut conn = pool.acquire().await.unwrap();
    hotline_store::tokens::issue(
        &mut conn,
        &hotline_store::tokens::NewToken {
            role: Role::School,
            unit: None,
            school: Some(school),
            name: school,
            expires_at: None,
        },
    )
    .await
    .unwrap()
    .1
}

#[tokio::test]
async fn a_district_bureau_forwards_a_case_to_its_school_and_stays_accountable() {
    let env = TestEnv::new().await;
    let stack = env.start_all(ShiftedClock::default()).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let shinan = token(&stack.pool, Role::Unit, Some("shinan")).await;
    let seventh = school_token(&stack.pool, "青岛第七中学").await;
    let ninth = school_token(&stack.pool, "青岛第九中学").await;

    let appeal = api
        .wait_settled(
            &operator,
            &api.file(&operator, "青岛第七中学食堂的菜太咸，孩子天天喝很多水")
                .await,
        )
        .await;
    assert_eq!(appeal["lead_unit"], "shinan", "{appeal}");
    let case_id = appeal["case_id"].as_str().unwrap().to_owned();
    let path = |p: &str| format!("/api/v1/cases/{case_id}/{p}");

    // Before the forward the school sees nothing.
    assert_eq!(
        api.get(&format!("/api/v1/cases/{case_id}"), &seventh)
            .await
            .0,
        404
    );
    assert_eq!(api.post(&path("accept"), &shinan, &json!({})).await.0, 200);
    // Only to a school the bureau administers.
    let (status, body) = api
        .post(
            &path("forward"),
            &shinan,
            &json!({"school": "青岛第九中学"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = api
        .post(
            &path("forward"),
            &shinan,
            &json!({"school": "青岛第七中学", "note": "请学校核实食堂菜品口味并回复"}),
        )
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (200, Some("accepted")),
        "{body}"
    );
    assert_eq!(
        api.post(
            &path("forward"),
            &shinan,
            &json!({"school": "青岛第七中学"})
        )
        .await
        .0,
        409
    );

    // The school sees the case in its list and adds its part; it cannot act for the bureau.
    let (status, seen) = api.get(&format!("/api/v1/cases/{case_id}"), &seventh).await;
    assert_eq!((status, seen["your_role"].as_str()), (200, Some("school")));
    let (_, list) = api.get("/api/v1/cases", &seventh).await;
    assert_eq!(list["cases"].as_array().unwrap().len(), 1);
    let (status, _) = api
        .post(
            &path("contributions"),
            &seventh,
            &json!({"note": "已调整食堂菜谱，减少用盐"}),
        )
        .await;
    assert_eq!(status, 200);
    for action in ["contact", "resolve", "return"] {
        let (status, _) = api
            .post(
                &path(action),
                &seventh,
                &json!({"note": "x", "result": "x", "reason": "other"}),
            )
            .await;
        assert!(status == 403 || status == 422, "{action}: {status}");
    }
    assert_eq!(
        api.get(&format!("/api/v1/cases/{case_id}"), &ninth).await.0,
        404
    );
    assert_eq!(api.get("/api/v1/rulings", &seventh).await.0, 403);
    assert_eq!(api.get("/api/v1/proactive/tasks", &seventh).await.0, 403);
    let (_, list) = api.get("/api/v1/cases", &ninth).await;
    assert!(list["cases"].as_array().unwrap().is_empty());

    // The bureau stays the lead and resolves.
    let (_, case) = api.get(&format!("/api/v1/cases/{case_id}"), &shinan).await;
    assert_eq!(case["lead_unit"], "shinan");
    assert_eq!(case["forwarded_to"][0]["school"], "青岛第七中学");
    let contribution = case["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["event"] == "CaseContributed")
        .cloned()
        .unwrap();
    assert_eq!(contribution["detail"]["school"], "青岛第七中学");
    for (action, body) in [
        ("contact", json!({"note": "已联系家长"})),
        ("resolve", json!({"result": "学校已调整菜谱"})),
    ] {
        assert_eq!(
            api.post(&path(action), &shinan, &body).await.0,
            200,
            "{action}"
        );
    }
    assert_eq!(
        history_events(&case)[..3],
        ["CaseRouted", "CaseAccepted", "CaseForwarded"]
    );
    // The school sees no caller; the callers' identities stay with the bureau.
    assert_eq!(seen["appeals"][0]["caller"], json!({"confidential": true}));

    // A case the bureau forwarded and then returned leaves the school's sight.
    let other = api
        .wait_settled(
            &operator,
            &api.file(
                &operator,
                "青岛第七中学门口早上接送车辆乱停，孩子过马路很危险",
            )
            .await,
        )
        .await;
    assert_eq!(other["lead_unit"], "shinan", "{other}");
    let other_id = other["case_id"].as_str().unwrap().to_owned();
    let other_path = |p: &str| format!("/api/v1/cases/{other_id}/{p}");
    let (status, _) = api
        .post(
            &other_path("forward"),
            &shinan,
            &json!({"school": "青岛第七中学"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        api.get(&format!("/api/v1/cases/{other_id}"), &seventh)
            .await
            .0,
        200
    );
    let (status, _) = api
        .post(
            &other_path("return"),
            &shinan,
            &json!({"reason": "not_our_jurisdiction", "note": "交通秩序由交警负责"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        api.get(&format!("/api/v1/cases/{other_id}"), &seventh)
            .await
            .0,
        404
    );
    let (_, list) = api.get("/api/v1/cases", &seventh).await;
    assert_eq!(list["cases"].as_array().unwrap().len(), 1, "{list}");

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}
