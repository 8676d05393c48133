//! Spans go to an OpenTelemetry collector (OTLP over HTTP) when one is configured, and one
//! appeal's spans form one trace across processes: intake names the HTTP request's span in the
//! first event, each worker's span continues the trace of the event it handles, and the event it
//! emits names that span as its parent.

use crate::support::*;
use axum::body::Bytes;
use axum::extract::State;
use hotline::app::Component;
use hotline_store::tokens::Role;
use hotline_workers::SystemClock;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Child;

/// Every export request the collector received, as raw protobuf.
type Exports = Arc<Mutex<Vec<Vec<u8>>>>;

async fn collect(State(exports): State<Exports>, body: Bytes) -> &'static str {
    exports.lock().unwrap().push(body.to_vec());
    ""
}

async fn start_collector(exports: Exports) -> String {
    serve_locally(
        axum::Router::new()
            .route("/v1/traces", axum::routing::post(collect))
            .with_state(exports),
    )
    .await
}

fn spawn_traced(env: &TestEnv, component: &str, collector: &str, http_addr: &str) -> Child {
    let service = format!("test-{component}");
    spawn_hotline(
        env,
        &["run", component],
        &[
            ("HOTLINE_HTTP_ADDR", http_addr),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector),
            ("OTEL_SERVICE_NAME", &service),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
}

/// The trace id and span id of a traceparent, as the bytes OTLP carries them in.
fn ids(traceparent: &str) -> (Vec<u8>, Vec<u8>) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (
        hex::decode(parts[1]).unwrap(),
        hex::decode(parts[2]).unwrap(),
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn one_appeal_is_one_trace_across_the_worker_processes() {
    let env = TestEnv::new().await;
    let exports = Exports::default();
    let collector = start_collector(exports.clone()).await;
    let stack = env.start(&[Component::Relay], SystemClock).await;
    let operator = token(&stack.pool, Role::Operator, None).await;
    let api_addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let mut children = vec![
        spawn_traced(&env, "api", &collector, &api_addr),
        spawn_traced(&env, "classifier", &collector, "127.0.0.1:0"),
        spawn_traced(&env, "router", &collector, "127.0.0.1:0"),
    ];
    let api = Api {
        base: format!("http://{api_addr}"),
        http: reqwest::Client::new(),
    };
    eventually("the API answers", Duration::from_secs(30), || async {
        let response = api.http.get(format!("{}/healthz", api.base)).send().await;
        response.ok().filter(|r| r.status().is_success())
    })
    .await;

    let appeal = api
        .file(&operator, "学校食堂饭菜里吃出虫子，孩子拉肚子了")
        .await;
    api.wait_settled(&operator, &appeal).await;
    let pool = stack.pool.clone();
    let traceparent_of = |event_type: &'static str| {
        let pool = pool.clone();
        let appeal = appeal.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT traceparent FROM outbox WHERE event_type = $1 AND aggregate_id = $2",
            )
            .bind(event_type)
            .bind(&appeal)
            .fetch_one(&pool)
            .await
            .unwrap()
            .expect("events carry a traceparent")
        }
    };
    let filed = traceparent_of("AppealFiled").await;
    let classified = traceparent_of("AppealClassified").await;
    let (trace, intake_span) = ids(&filed);
    let (classified_trace, classifier_span) = ids(&classified);
    assert_eq!(
        classified_trace, trace,
        "the classification continues the trace"
    );
    assert_ne!(
        classifier_span, intake_span,
        "the classified event names the classifier's span as its parent"
    );

    // Each event names a span that its process exported in the appeal's trace: the API's request
    // span, then the classifier's; the router's span is in the same trace.
    let exported = |service: &'static [u8], span: Option<&[u8]>| {
        let exports = exports.lock().unwrap();
        exports.iter().any(|body| {
            contains(body, service)
                && contains(body, &trace)
                && span.is_none_or(|span| contains(body, span))
        })
    };
    eventually(
        "the spans of all three processes reach the collector",
        CONSUMER_WAIT,
        || async {
            (exported(b"test-api", Some(&intake_span))
                && exported(b"test-classifier", Some(&classifier_span))
                && exported(b"test-router", None))
            .then_some(())
        },
    )
    .await;

    for child in &mut children {
        child.start_kill().unwrap();
        let _ = child.wait().await;
    }
    stack.stop().await;
    env.cleanup(pool).await;
}
