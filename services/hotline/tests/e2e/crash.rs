//! kill -9 of the classifier and router processes mid-stream: every acknowledged appeal still ends
//! classified and routed (or in triage) exactly once.

use crate::support::*;
use hotline::app::Component;
use hotline_store::tokens::Role;
use hotline_workers::SystemClock;
use std::time::Duration;
use tokio::process::Child;

const APPEALS: usize = 60;

fn spawn_worker(env: &TestEnv, component: &str) -> Child {
    spawn_hotline(env, &["run", component], &[])
}

const TEXTS: &[&str] = &[
    "学校食堂饭菜质量太差，孩子经常吃不饱",
    "校外培训机构突然关门，预交的学费不退",
    "孩子在学校被高年级同学欺负，要钱",
    "学校强制购买教辅资料，每人收两百元",
    "老师在家里办补习班收费，不去上课就针对孩子",
    "户口在片区内却说学位不够，孩子上不了对口小学",
    "幼儿园收费太高，普惠园名额抽不上",
    "作业太多，孩子每天写到十一点",
    "小区物业乱收停车费",
    "我想反映个情况",
];

#[tokio::test]
async fn killing_classifier_and_router_mid_stream_loses_and_duplicates_nothing() {
    let env = TestEnv::new().await;
    let stack = env
        .start(
            &[Component::Api, Component::Relay, Component::Tracker],
            SystemClock,
        )
        .await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let mut classifier = spawn_worker(&env, "classifier");
    let mut router = spawn_worker(&env, "router");

    let mut ids = Vec::new();
    for i in 0..APPEALS {
        let content = format!("{}（第{}次反映）", TEXTS[i % TEXTS.len()], i + 1);
        ids.push(api.file(&operator, &content).await);
    }
    let pool = stack.pool.clone();
    let classified = || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM appeals WHERE classified_at IS NOT NULL",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    eventually(
        "some appeals are classified",
        Duration::from_secs(60),
        || async { (classified().await >= 3).then_some(()) },
    )
    .await;

    // kill -9, mid-stream.
    classifier.start_kill().unwrap();
    router.start_kill().unwrap();
    classifier.wait().await.unwrap();
    router.wait().await.unwrap();
    let at_kill = classified().await;
    assert!(
        at_kill < APPEALS as i64,
        "the stream was over before the kill; nothing was tested"
    );

    let mut classifier = spawn_worker(&env, "classifier");
    let mut router = spawn_worker(&env, "router");
    eventually("every appeal settles after the restart", Duration::from_secs(120), || {
        let pool = pool.clone();
        async move {
            let settled: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM appeals WHERE status IN ('routed', 'triage', 'transferred_out')",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            (settled == APPEALS as i64).then_some(())
        }
    })
    .await;

    let count = |sql: &'static str| count_rows(&pool, sql);
    let n = APPEALS as i64;
    assert_eq!(count("SELECT count(*) FROM cases").await, n);
    assert_eq!(
        count("SELECT count(DISTINCT case_id) FROM appeals").await,
        n
    );
    assert_eq!(
        count("SELECT count(*) FROM outbox WHERE event_type = 'AppealClassified'").await,
        n
    );
    assert_eq!(
        count("SELECT count(*) FROM outbox WHERE event_type = 'CaseRouted'").await,
        n
    );
    assert_eq!(
        count("SELECT count(*) FROM processed_events WHERE consumer = 'hotline-classifier'").await,
        n
    );
    assert_eq!(
        count("SELECT count(*) FROM processed_events WHERE consumer = 'hotline-router'").await,
        n
    );
    for id in &ids {
        let body = api.wait_settled(&operator, id).await;
        assert!(body["case_id"].is_string(), "{body}");
    }

    classifier.start_kill().unwrap();
    router.start_kill().unwrap();
    let _ = classifier.wait().await;
    let _ = router.wait().await;
    stack.stop().await;
    env.cleanup(pool).await;
}
