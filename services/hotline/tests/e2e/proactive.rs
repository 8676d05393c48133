//! 未诉先办 and 专项深办 end to end: generated streams replayed in event time through the API,
//! Kafka and the proactive worker; a special item opening from repeated cases and its KPI on a
//! generated history; a seasonal reminder created once.

use crate::support::*;
use chrono::{DateTime, Duration as Span, NaiveDate, Utc};
use hotline_domain::calendar::china_offset;
use hotline_domain::generator::Generator;
use hotline_domain::schools::SchoolDirectory;
use hotline_domain::TopicCode;
use hotline_store::tokens::Role;
use hotline_workers::clock::ShiftedClock;
use hotline_workers::{Clock, SystemClock};
use serde_json::{json, Value};
use std::time::Duration;

/// Canteen complaints in several wordings, so parents do not all write the same thing.
const CANTEEN: [&str; 8] = [
    "{school}食堂今天午饭的米饭是夹生的，孩子回家说没吃饱",
    "{school}食堂的菜有股馊味，好几个孩子吃完肚子不舒服",
    "我家孩子在{school}上学，说食堂饭菜里吃出了头发，太恶心了",
    "{school}的午餐越来越差，肉都是肥的，孩子一口都不吃",
    "反映一下{school}食堂卫生，餐盘洗不干净还有油污",
    "{school}学生食堂今天的汤是凉的，菜也少，家长很有意见",
    "孩子说{school}食堂中午的鸡蛋是臭的，请教育局查一查",
    "{school}食堂饭菜价格涨了分量却少了，孩子天天喊饿",
];

fn text(i: usize, school: &str) -> String {
    CANTEEN[i % CANTEEN.len()].replace("{school}", school)
}

async fn file_at(api: &Api, token: &str, content: &str, at: DateTime<Utc>) -> Value {
    let (status, body) = api
        .post(
            "/api/v1/appeals",
            token,
            &json!({"content": content, "channel": "web", "received_at": at}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    api.wait_settled(token, body["id"].as_str().unwrap()).await
}

async fn processed_by_proactive(pool: &hotline_store::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE consumer = 'hotline-proactive'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_surge_at_one_school_is_detected_within_its_first_hour_in_event_time() {
    let mut env = TestEnv::new().await;
    env.config.proactive_scan_interval_ms = 200;
    let stack = env.start_all(SystemClock).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let manager = token(&stack.pool, Role::Manager, None).await;
    let shinan = token(&stack.pool, Role::Unit, Some("shinan")).await;

    // A surge that built up over three hours this morning, replayed in order.
    let schools = SchoolDirectory::builtin();
    let mut generator = Generator::new(11, 200.0, &schools);
    let school = "青岛第七中学";
    let surge = generator.surge(
        SystemClock.now() - Span::hours(8),
        3.0,
        8,
        TopicCode::Canteen,
        school,
        "市南区",
    );
    let mut filed = Vec::new();
    for (i, appeal) in surge.iter().enumerate() {
        let settled = file_at(&api, &operator, &text(i, school), appeal.at).await;
        assert_eq!(settled["topic"], "canteen", "{settled}");
        assert_eq!(settled["school"], school, "{settled}");
        filed.push(settled);
    }
    let hotspot = eventually("the school hotspot is raised", CONSUMER_WAIT, || async {
        let (_, body) = api.get("/api/v1/hotspots", &manager).await;
        body["hotspots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["scope"] == "school" && h["place"] == school)
            .cloned()
    })
    .await;
    // Raised by the third appeal, well within the first hour of the build-up.
    let raised: DateTime<Utc> = serde_json::from_value(hotspot["raised_at"].clone()).unwrap();
    // (PostgreSQL keeps microseconds.)
    assert!(
        (raised - surge[2].at).num_milliseconds().abs() < 1,
        "raised at {raised}, third appeal at {}: {hotspot}",
        surge[2].at
    );
    assert!(raised - surge[0].at <= Span::hours(1));
    assert_eq!(hotspot["evidence"]["count"], 3);
    assert!(hotspot["evidence"]["p_value"].as_f64().unwrap() < 0.001);

    // The responsible unit (the school's district bureau) has a proactive task, and the event
    // went through Kafka.
    let tasks = eventually(
        "the district bureau has a task",
        Duration::from_secs(20),
        || async {
            let (_, body) = api
                .get("/api/v1/proactive/tasks?kind=hotspot", &shinan)
                .await;
            let tasks = body["tasks"].as_array().cloned().unwrap_or_default();
            (!tasks.is_empty()).then_some(tasks)
        },
    )
    .await;
    let task = tasks
        .iter()
        .find(|t| t["detail"]["hotspot_id"] == hotspot["id"])
        .expect("a task for the school hotspot");
    let task_id = task["id"].as_str().unwrap();
    let (status, _) = api
        .post(
            &format!("/api/v1/proactive/tasks/{task_id}/done"),
            &shinan,
            &json!({"note": "已约谈配餐公司并抽检"}),
        )
        .await;
    assert_eq!(status, 200);
    let records = eventually(
        "HotspotDetected is published",
        Duration::from_secs(20),
        || async {
            let records = read_topic(&env.topic("proactive"));
            records
                .iter()
                .any(|r| r.event_type == "HotspotDetected")
                .then_some(records)
        },
    )
    .await;
    assert_eq!(
        records
            .iter()
            .filter(
                |r| r.event_type == "HotspotDetected" && r.key == hotspot["id"].as_str().unwrap()
            )
            .count(),
        1
    );
    // Not raised again by the rest of the surge; resolved once the window (now, in wall-clock
    // time: the surge ended hours ago) is back to the baseline.
    let resolved = eventually("the hotspot resolves", CONSUMER_WAIT, || async {
        let (_, body) = api.get("/api/v1/hotspots?state=resolved", &manager).await;
        body["hotspots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == hotspot["id"])
            .cloned()
    })
    .await;
    assert!(resolved["quiet_until"].is_string());
    let (_, all) = api.get("/api/v1/hotspots", &manager).await;
    assert_eq!(
        all["hotspots"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["scope"] == "school")
            .count(),
        1
    );
    let (status, _) = api.get("/api/v1/hotspots", &shinan).await;
    assert_eq!(status, 403);

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}

#[tokio::test]
async fn the_same_volume_spread_over_every_district_raises_no_hotspot() {
    let env = TestEnv::new().await;
    let stack = env.start_all(SystemClock).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let manager = token(&stack.pool, Role::Manager, None).await;

    let schools = SchoolDirectory::builtin();
    let mut generator = Generator::new(12, 200.0, &schools);
    let spread = generator.spread(
        SystemClock.now() - Span::hours(4),
        3.0,
        8,
        TopicCode::Canteen,
    );
    let mut spread = spread;
    spread.sort_by_key(|a| a.at);
    let mut routed_with_school = 0;
    for (i, appeal) in spread.iter().enumerate() {
        let school = appeal.school.clone().expect("every district has schools");
        let settled = file_at(&api, &operator, &text(i, &school), appeal.at).await;
        if settled["school"].is_string() && settled["case_id"].is_string() {
            routed_with_school += 1;
        }
    }
    // Every classified appeal and every routed case with a school went past the worker.
    eventually(
        "the proactive worker has seen the stream",
        CONSUMER_WAIT,
        || async {
            (processed_by_proactive(&stack.pool).await >= 8 + routed_with_school).then_some(())
        },
    )
    .await;
    let (_, body) = api.get("/api/v1/hotspots", &manager).await;
    assert_eq!(body["hotspots"], json!([]), "{body}");

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}

#[tokio::test]
async fn repeated_cases_open_a_special_item_whose_kpi_compares_before_and_after() {
    let env = TestEnv::new().await;
    let clock = ShiftedClock::default();
    let stack = env.start_all(clock.clone()).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let manager = token(&stack.pool, Role::Manager, None).await;
    let health = token(&stack.pool, Role::Unit, Some("qdedu-health")).await;
    let school = "青岛江苏路小学";

    // A generated history: five different canteen complaints at one school over three weeks, five
    // days apart (further apart than other callers' repeats are linked).
    let t0 = clock.now();
    let history: Vec<DateTime<Utc>> = [21, 16, 11, 6, 1]
        .iter()
        .map(|d| t0 - Span::days(*d))
        .collect();
    let mut case_ids = Vec::new();
    for (i, at) in history.iter().enumerate() {
        let settled = file_at(&api, &operator, &text(i, school), *at).await;
        assert_eq!(settled["school"], school);
        case_ids.push(settled["case_id"].as_str().unwrap().to_owned());
    }
    case_ids.dedup();
    assert_eq!(case_ids.len(), 5, "five separate cases");
    let item = eventually("a special item opens", CONSUMER_WAIT, || async {
        let (_, body) = api.get("/api/v1/special-items", &manager).await;
        body["special_items"]
            .as_array()
            .and_then(|items| items.first().cloned())
    })
    .await;
    assert_eq!(item["opened_by"], "auto:repeated_cases");
    assert_eq!(item["owner_unit"], "qdedu-health");
    assert_eq!(item["place"], school);
    let item_id = item["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/special-items/{item_id}");
    let (_, detail) = api.get(&path, &health).await;
    let mut linked: Vec<String> = detail["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    linked.sort();
    let mut expected = case_ids.clone();
    expected.sort();
    assert_eq!(linked, expected);
    // The owner has a task, writes a plan and reports progress; a manager closes the item.
    let (_, tasks) = api
        .get("/api/v1/proactive/tasks?kind=special_item", &health)
        .await;
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 1);
    let (status, body) = api
        .post(
            &format!("{path}/notes"),
            &health,
            &json!({"note": "已约谈学校和配餐公司", "plan": "一周内更换配餐公司，每周抽检"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["plan"], "一周内更换配餐公司，每周抽检");
    assert_eq!(
        api.post(&format!("{path}/notes"), &operator, &json!({"note": "x"}))
            .await
            .0,
        403
    );
    let closed_at = clock.now();
    let (status, body) = api
        .post(
            &format!("{path}/close"),
            &manager,
            &json!({"note": "整改完成"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kpi"]["before"], 5, "{body}");
    assert_eq!(body["kpi"]["complete"], false);

    // A month later: two complaints came after the close.
    clock.advance(Span::days(31));
    for (i, days) in [5, 12].iter().enumerate() {
        file_at(
            &api,
            &operator,
            &text(i + 5, school),
            closed_at + Span::days(*days),
        )
        .await;
    }
    let (_, body) = api.get(&path, &manager).await;
    assert_eq!(body["kpi"]["before"], 5, "{body}");
    assert_eq!(body["kpi"]["after"], 2);
    assert_eq!(body["kpi"]["complete"], true);
    assert!((body["kpi"]["change"].as_f64().unwrap() + 0.6).abs() < 1e-9);
    let (_, events) = api.get("/api/v1/proactive/events", &manager).await;
    let types: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["aggregate_id"] == item_id.as_str())
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"SpecialItemOpened") && types.contains(&"SpecialItemClosed"),
        "{types:?}"
    );

    // 每月一题: a manager opens one by hand; a second on the same topic and place is refused.
    let open = json!({"topic": "bullying", "scope": "district", "place": "西海岸新区", "plan": "开展防欺凌专项排查"});
    let (status, body) = api.post("/api/v1/special-items", &manager, &open).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["owner_unit"], "qdedu-safety");
    assert_eq!(
        api.post("/api/v1/special-items", &manager, &open).await.0,
        409
    );
    assert_eq!(
        api.post("/api/v1/special-items", &operator, &open).await.0,
        403
    );

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}

#[tokio::test]
async fn a_playbook_reminder_is_created_lead_days_before_its_season_once() {
    let mut env = TestEnv::new().await;
    env.config.proactive_scan_interval_ms = 100;
    // 2027-05-31, the day before summer-drowning's reminder falls due (06-15 minus 14 days).
    let clock = ShiftedClock::default();
    let target = NaiveDate::from_ymd_opt(2027, 5, 31)
        .unwrap()
        .and_hms_opt(9, 0, 0)
        .unwrap()
        .and_local_timezone(china_offset())
        .unwrap()
        .with_timezone(&Utc);
    clock.advance(target - SystemClock.now());
    let stack = env
        .start(
            &[
                hotline::app::Component::Proactive,
                hotline::app::Component::Api,
            ],
            clock.clone(),
        )
        .await;
    let api = Api::new(&stack);
    let manager = token(&stack.pool, Role::Manager, None).await;
    let drowning = |tasks: &Value| -> Vec<Value> {
        tasks["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["source"] == "summer-drowning@2027-06-15")
            .cloned()
            .collect()
    };
    // Let several scans pass on the day before: nothing yet.
    eventually("scans run", Duration::from_secs(10), || async {
        let (_, tasks) = api
            .get("/api/v1/proactive/tasks?kind=playbook&limit=1000", &manager)
            .await;
        (!tasks["tasks"].as_array().unwrap().is_empty()).then_some(())
    })
    .await;
    let (_, tasks) = api
        .get("/api/v1/proactive/tasks?kind=playbook&limit=1000", &manager)
        .await;
    assert!(drowning(&tasks).is_empty());

    clock.advance(Span::days(1));
    let reminders = eventually(
        "the reminders are created",
        Duration::from_secs(10),
        || async {
            let (_, tasks) = api
                .get("/api/v1/proactive/tasks?kind=playbook&limit=1000", &manager)
                .await;
            let found = drowning(&tasks);
            (found.len() == 11).then_some(found)
        },
    )
    .await;
    assert!(reminders.iter().any(|t| t["unit_code"] == "qdedu-safety"));
    let huangdao = reminders
        .iter()
        .find(|t| t["unit_code"] == "xihaian")
        .unwrap();
    assert_eq!(huangdao["detail"]["area"], "黄岛区");
    assert!(huangdao["detail"]["last_year_volume"]["school_safety"].is_number());
    // Later scans create nothing more.
    clock.advance(Span::days(3));
    let rules = hotline_workers::proactive::ProactiveRules::builtin(std::sync::Arc::new(
        hotline_workers::router::Directories::builtin(),
    ));
    let changes = hotline_workers::proactive::scan_once(&stack.pool, &rules, &clock)
        .await
        .unwrap();
    assert_eq!(changes, 0);
    let (_, tasks) = api
        .get("/api/v1/proactive/tasks?kind=playbook&limit=1000", &manager)
        .await;
    assert_eq!(drowning(&tasks).len(), 11);

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}

#[tokio::test]
async fn a_district_hotspot_raised_again_becomes_a_special_item() {
    let mut env = TestEnv::new().await;
    env.config.proactive_scan_interval_ms = 200;
    let clock = ShiftedClock::default();
    let stack = env.start_all(clock.clone()).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let manager = token(&stack.pool, Role::Manager, None).await;
    const ENROLMENT: [&str; 6] = [
        "西海岸新区今年小学划片范围怎么还没公布，孩子马上要报名了",
        "黄岛区的学区划分到底按房产还是户口，问了好几个地方都说不清",
        "西海岸新区一年级网上报名系统登录不上去，明天就截止了",
        "我们小区在黄岛区，今年被划到很远的学校，家长都很有意见",
        "西海岸新区随迁子女入学需要哪些材料，社保要交满几年",
        "黄岛区今年小学招生入学要求提供居住证，我们刚办下来还能报名吗",
    ];
    let burst = |round: i64| {
        let api = &api;
        let operator = &operator;
        let clock = clock.clone();
        async move {
            for (i, text) in ENROLMENT.iter().enumerate() {
                let at = clock.now() - Span::minutes(90) + Span::minutes(10 * i as i64);
                let (status, body) = api
                    .post(
                        "/api/v1/appeals",
                        operator,
                        &json!({"content": text, "channel": "phone", "received_at": at,
                                "caller": {"phone": format!("1390000{round}{i:03}")}}),
                    )
                    .await;
                assert_eq!(status, 201, "{body}");
                let settled = api
                    .wait_settled(operator, body["id"].as_str().unwrap())
                    .await;
                assert_eq!(settled["district"], "黄岛区", "{settled}");
            }
        }
    };
    let district_hotspots = || async {
        let (_, body) = api.get("/api/v1/hotspots", &manager).await;
        body["hotspots"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["scope"] == "district" && h["place"] == "黄岛区")
            .cloned()
            .collect::<Vec<Value>>()
    };
    burst(1).await;
    eventually("the first district hotspot", CONSUMER_WAIT, || async {
        (district_hotspots().await.len() == 1).then_some(())
    })
    .await;
    // Two days later the first has resolved...
    clock.advance(Span::days(2));
    eventually("the first hotspot resolves", CONSUMER_WAIT, || async {
        district_hotspots()
            .await
            .iter()
            .all(|h| h["state"] == "resolved")
            .then_some(())
    })
    .await;
    // The key stays quiet for a day after it resolved; past that, a new surge counts.
    clock.advance(Span::hours(26));
    burst(2).await;
    let item = eventually("a special item opens", CONSUMER_WAIT, || async {
        let (_, body) = api.get("/api/v1/special-items", &manager).await;
        body["special_items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["opened_by"] == "auto:persistent_hotspot")
            .cloned()
    })
    .await;
    assert_eq!(district_hotspots().await.len(), 2);
    assert_eq!(item["scope"], "district");
    assert_eq!(item["place"], "黄岛区");
    assert_eq!(item["owner_unit"], "qdedu-basic", "{item}");
    assert_eq!(item["trigger"]["hotspots"], 2);

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}
