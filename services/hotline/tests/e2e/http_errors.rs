//! Bad requests get a 4xx with a useful message naming the field; never a 5xx or a panic.

use crate::support::*;
use hotline::app::Component;
use hotline_store::tokens::Role;
use hotline_workers::SystemClock;
use serde_json::Value;

#[tokio::test]
async fn bad_requests_get_clear_4xx_errors() {
    let env = TestEnv::new().await;
    let stack = env.start(&[Component::Api], SystemClock).await;
    let api = Api::new(&stack);
    let operator = token(&stack.pool, Role::Operator, None).await;
    let url = format!("{}/api/v1/appeals", api.base);

    struct Case {
        name: &'static str,
        content_type: &'static str,
        body: Vec<u8>,
        status: u16,
        mentions: &'static str,
    }
    let json = |v: &str| v.as_bytes().to_vec();
    let long = format!(
        r#"{{"content": "{}", "channel": "web"}}"#,
        "字".repeat(20_001)
    );
    let huge = format!(
        r#"{{"content": "{}", "channel": "web"}}"#,
        "a".repeat(300 * 1024)
    );
    let cases = vec![
        Case {
            name: "missing content",
            content_type: "application/json",
            body: json(r#"{"channel": "web"}"#),
            status: 422,
            mentions: "content",
        },
        Case {
            name: "empty content",
            content_type: "application/json",
            body: json(r#"{"content": "  ", "channel": "web"}"#),
            status: 422,
            mentions: "content",
        },
        Case {
            name: "content of the wrong type",
            content_type: "application/json",
            body: json(r#"{"content": 42, "channel": "web"}"#),
            status: 422,
            mentions: "content",
        },
        Case {
            name: "content too long",
            content_type: "application/json",
            body: long.into_bytes(),
            status: 422,
            mentions: "content",
        },
        Case {
            name: "unknown channel",
            content_type: "application/json",
            body: json(r#"{"content": "x", "channel": "fax"}"#),
            status: 422,
            mentions: "channel",
        },
        Case {
            name: "missing channel",
            content_type: "application/json",
            body: json(r#"{"content": "x"}"#),
            status: 422,
            mentions: "channel",
        },
        Case {
            name: "unknown field",
            content_type: "application/json",
            body: json(r#"{"content": "x", "channel": "web", "priority": 1}"#),
            status: 422,
            mentions: "priority",
        },
        Case {
            name: "unknown caller field",
            content_type: "application/json",
            body: json(r#"{"content": "x", "channel": "web", "caller": {"nickname": "a"}}"#),
            status: 422,
            mentions: "nickname",
        },
        Case {
            name: "bad phone",
            content_type: "application/json",
            body: json(r#"{"content": "x", "channel": "web", "caller": {"phone": "call me"}}"#),
            status: 422,
            mentions: "caller.phone",
        },
        Case {
            name: "confidential not a bool",
            content_type: "application/json",
            body: json(r#"{"content": "x", "channel": "web", "caller": {"confidential": "yes"}}"#),
            status: 422,
            mentions: "confidential",
        },
        Case {
            name: "bad received_at",
            content_type: "application/json",
            body: json(r#"{"content": "x", "channel": "web", "received_at": "yesterday"}"#),
            status: 422,
            mentions: "received_at",
        },
        Case {
            name: "future received_at",
            content_type: "application/json",
            body: json(
                r#"{"content": "x", "channel": "web", "received_at": "2999-01-01T00:00:00Z"}"#,
            ),
            status: 422,
            mentions: "received_at",
        },
        Case {
            name: "received_at a year ago, filed live",
            content_type: "application/json",
            body: json(
                r#"{"content": "x", "channel": "web", "received_at": "2019-03-01T08:00:00Z"}"#,
            ),
            status: 422,
            mentions: "--historical",
        },
        Case {
            name: "NUL in content",
            content_type: "application/json",
            body: json(r#"{"content": "食堂\u0000有虫", "channel": "web"}"#),
            status: 422,
            mentions: "content",
        },
        Case {
            name: "NUL in a caller field",
            content_type: "application/json",
            body: json(r#"{"content": "x", "channel": "web", "caller": {"name": "\u0000"}}"#),
            status: 422,
            mentions: "caller.name",
        },
        Case {
            name: "a control character in content",
            content_type: "application/json",
            body: json(r#"{"content": "食堂\u0007有虫", "channel": "web"}"#),
            status: 422,
            mentions: "control",
        },
        Case {
            name: "array body",
            content_type: "application/json",
            body: json(r#"[1, 2]"#),
            status: 422,
            mentions: "body",
        },
        Case {
            name: "malformed JSON",
            content_type: "application/json",
            body: json(r#"{"content": "x", "#),
            status: 400,
            mentions: "malformed",
        },
        Case {
            name: "invalid UTF-8",
            content_type: "application/json",
            body: b"{\"content\": \"\xff\xfe\", \"channel\": \"web\"}".to_vec(),
            status: 400,
            mentions: "UTF-8",
        },
        Case {
            name: "oversize body",
            content_type: "application/json",
            body: huge.into_bytes(),
            status: 413,
            mentions: "larger",
        },
        Case {
            name: "not JSON",
            content_type: "text/plain",
            body: json("hello"),
            status: 415,
            mentions: "application/json",
        },
        Case {
            name: "empty body",
            content_type: "application/json",
            body: Vec::new(),
            status: 400,
            mentions: "malformed",
        },
    ];
    for case in cases {
        let response = api
            .http
            .post(&url)
            .bearer_auth(&operator)
            .header("content-type", case.content_type)
            .body(case.body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, case.status, "{}: {body}", case.name);
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(case.mentions),
            "{}: `{message}` should mention `{}`",
            case.name,
            case.mentions
        );
    }

    // Other edges: unknown ids and paths are JSON 404s; a bad Idempotency-Key is a 400.
    assert_eq!(
        api.get("/api/v1/appeals/not-a-uuid", &operator).await.0,
        404
    );
    assert_eq!(
        api.get(
            &format!("/api/v1/appeals/{}", uuid::Uuid::now_v7()),
            &operator
        )
        .await
        .0,
        404
    );
    let (status, body) = api.get("/api/v1/nothing-here", &operator).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = api.get("/api/v1/cases?state=lost", &operator).await;
    assert_eq!(status, 422);
    // Query strings: JSON errors naming what is wrong, and no date that crashes the rates.
    let manager = token(&stack.pool, Role::Manager, None).await;
    for (path, mentions) in [
        ("/api/v1/cases?limit=x", "limit"),
        ("/api/v1/cases?colour=red", "colour"),
        ("/api/v1/webhooks/deliveries?unit=%00", "NUL"),
        ("/api/v1/rates?to=2026-03-31", "from"),
        ("/api/v1/rates?from=2026-01-01&to=%2B262142-12-31", "to"),
        ("/api/v1/rates?from=-262143-01-01&to=2026-01-01", "from"),
        ("/api/v1/rates?from=1999-12-31&to=2026-01-01", "2000"),
        ("/api/v1/rates?from=2020-01-01&to=2026-01-01", "at most"),
    ] {
        let (status, body) = api.get(path, &manager).await;
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(status, 422, "{path}: {body}");
        assert!(message.contains(mentions), "{path}: {body}");
    }
    let (status, body) = api
        .get("/api/v1/rates?from=2026-01-01&to=2026-12-31", &manager)
        .await;
    assert_eq!(status, 200, "{body}");
    let response = api
        .http
        .post(&url)
        .bearer_auth(&operator)
        .header("Idempotency-Key", "")
        .json(&serde_json::json!({"content": "x", "channel": "web"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);

    // Nothing invalid was stored.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM appeals")
        .fetch_one(&stack.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    // The spec and the probes are public.
    let spec: Value = api
        .http
        .get(format!("{}/api/v1/openapi.json", api.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    let health = api
        .http
        .get(format!("{}/healthz", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}
