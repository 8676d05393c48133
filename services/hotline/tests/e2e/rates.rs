//! The three rates over a generated history of 10,000 cases match an independent computation
//! (plain SQL over the generator's own table, not over the tracker's).

use crate::support::*;
use hotline::app::Component;
use hotline_store::tokens::Role;
use hotline_workers::clock::ShiftedClock;
use serde_json::Value;

const GENERATE: &[&str] = &[
    "SELECT setseed(0.17)",
    "CREATE TABLE gen AS
     SELECT gen_random_uuid() AS id,
            (ARRAY['shinan','shibei','licang','laoshan','xihaian'])[1 + floor(random() * 5)::int] AS unit,
            timestamptz '2026-03-01 00:00+08' + random() * interval '60 days' AS received_at,
            random() AS r_sign, random() AS r_contact, random() AS r_resolve, random() AS r_callback,
            random() AS r_grade, random() AS r_solved, random() AS r_noise
     FROM generate_series(1, 10000)",
    "ALTER TABLE gen ADD sign_met timestamptz, ADD contact_met timestamptz, ADD resolve_met timestamptz,
         ADD has_callback boolean, ADD solved boolean, ADD grade text, ADD transferred boolean",
    "UPDATE gen SET
         sign_met = CASE WHEN r_sign < 0.1 THEN NULL ELSE received_at + r_sign * interval '40 hours' END,
         contact_met = CASE WHEN r_contact < 0.15 THEN NULL ELSE received_at + r_contact * interval '70 hours' END,
         resolve_met = CASE WHEN r_resolve < 0.2 THEN NULL ELSE received_at + r_resolve * interval '200 hours' END,
         has_callback = r_callback < 0.7,
         solved = r_solved < 0.8,
         grade = (ARRAY['very_satisfied','satisfied','neutral','dissatisfied','very_dissatisfied'])[1 + floor(r_grade * 5)::int],
         transferred = r_noise < 0.02",
    // No deadline falls within an hour of the moment the rates are read (the test's clock, 21
    // April 12:00, moves on while it runs), so whether a case can be judged yet is never a race.
    "DELETE FROM gen WHERE
         received_at + interval '24 hours' BETWEEN timestamptz '2026-04-21 11:00+08' AND timestamptz '2026-04-21 13:00+08'
      OR received_at + interval '48 hours' BETWEEN timestamptz '2026-04-21 11:00+08' AND timestamptz '2026-04-21 13:00+08'",
    "INSERT INTO cases (id, state, topic, urgent, received_at)
     SELECT id, CASE WHEN transferred THEN 'transferred_out' ELSE 'resolved' END, 'canteen', false, received_at FROM gen",
    // Some cases were led by another unit first (returned): the last lead is charged.
    "INSERT INTO assignments (case_id, unit_code, role, assigned_at, ended_at, end_reason)
     SELECT id, 'laixi', 'lead', received_at - interval '1 hour', received_at, 'returned' FROM gen WHERE r_noise > 0.95",
    "INSERT INTO assignments (case_id, unit_code, role, assigned_at) SELECT id, unit, 'lead', received_at FROM gen",
    "INSERT INTO assignments (case_id, unit_code, role, assigned_at) SELECT id, 'qdedu-health', 'informed', received_at FROM gen",
    // A cancelled clock from the returning unit must not count.
    "INSERT INTO case_deadlines (case_id, kind, unit_code, starts_at, warn_at, due_at, policy_version, cancelled_at)
     SELECT id, 'sign', 'laixi', received_at - interval '1 hour', received_at, received_at + interval '1 hour', 'test', received_at
     FROM gen WHERE r_noise > 0.95",
    "INSERT INTO case_deadlines (case_id, kind, unit_code, starts_at, warn_at, due_at, policy_version, met_at)
     SELECT id, 'sign', unit, received_at, received_at + interval '18 hours', received_at + interval '24 hours', 'test', sign_met FROM gen",
    "INSERT INTO case_deadlines (case_id, kind, unit_code, starts_at, warn_at, due_at, policy_version, met_at)
     SELECT id, 'contact', unit, received_at, received_at + interval '36 hours', received_at + interval '48 hours', 'test', contact_met FROM gen",
    "INSERT INTO case_deadlines (case_id, kind, unit_code, starts_at, warn_at, due_at, policy_version, met_at)
     SELECT id, 'resolve', unit, received_at, received_at + interval '90 hours', received_at + interval '120 hours', 'test', resolve_met FROM gen",
    "INSERT INTO case_events (case_id, event_id, event_type, from_state, to_state, actor_kind, actor_id, actor_name, detail, occurred_at)
     SELECT id, gen_random_uuid(), 'CallbackRecorded', 'resolved', 'callback_done', 'operator', 'gen', 'gen',
            CASE WHEN r_noise BETWEEN 0.5 AND 0.6
                 THEN jsonb_build_object('reached', false, 'solved', null, 'satisfaction', null)
                 ELSE jsonb_build_object('reached', true, 'solved', solved, 'satisfaction', grade) END,
            received_at + interval '10 days'
     FROM gen WHERE has_callback",
];

const EXPECTED: &str = "
    SELECT unit,
      count(*) AS cases,
      count(*) FILTER (WHERE sign_met <= received_at + interval '24 hours'
                         AND contact_met <= received_at + interval '48 hours') AS responded,
      -- Judged: both on time, or one of them late (met late, or unmet past its deadline now).
      count(*) FILTER (WHERE (sign_met <= received_at + interval '24 hours'
                              AND contact_met <= received_at + interval '48 hours')
                          OR coalesce(sign_met > received_at + interval '24 hours',
                                      received_at + interval '24 hours' <= timestamptz '2026-04-21 12:00+08')
                          OR coalesce(contact_met > received_at + interval '48 hours',
                                      received_at + interval '48 hours' <= timestamptz '2026-04-21 12:00+08')) AS judged,
      -- Callers not reached are in neither rate.
      count(*) FILTER (WHERE has_callback AND r_noise NOT BETWEEN 0.5 AND 0.6) AS callbacks,
      count(*) FILTER (WHERE has_callback AND r_noise NOT BETWEEN 0.5 AND 0.6 AND solved) AS solved,
      count(*) FILTER (WHERE has_callback AND r_noise NOT BETWEEN 0.5 AND 0.6
                         AND grade IN ('very_satisfied', 'satisfied', 'neutral')) AS satisfied,
      count(*) FILTER (WHERE resolve_met IS NOT NULL) AS resolved,
      count(*) FILTER (WHERE resolve_met <= received_at + interval '120 hours') AS resolved_in_time,
      percentile_disc(0.5) WITHIN GROUP (ORDER BY floor(extract(epoch FROM sign_met - received_at))::bigint) AS sign_median,
      percentile_disc(0.9) WITHIN GROUP (ORDER BY floor(extract(epoch FROM resolve_met - received_at))::bigint) AS resolve_p90
    FROM gen
    WHERE NOT transferred
      AND received_at >= timestamptz '2026-03-10 00:00+08' AND received_at < timestamptz '2026-04-21 00:00+08'
    GROUP BY unit ORDER BY unit";

#[tokio::test]
async fn rates_over_ten_thousand_cases_match_an_independent_computation() {
    let mut env = TestEnv::new().await;
    env.config.rates_interval_ms = 200;
    // Live on 21 April 2026, so the 30-day gauges cover the end of the generated history.
    let clock = ShiftedClock::default();
    let target = chrono::DateTime::parse_from_rfc3339("2026-04-21T12:00:00+08:00").unwrap();
    clock.advance(target.with_timezone(&chrono::Utc) - chrono::Utc::now());
    let stack = env.start(&[Component::Api], clock).await;
    let api = Api::new(&stack);
    for statement in GENERATE {
        sqlx::query(statement).execute(&stack.pool).await.unwrap();
    }
    let manager = token(&stack.pool, Role::Manager, None).await;
    let (status, body) = api
        .get("/api/v1/rates?from=2026-03-10&to=2026-04-20", &manager)
        .await;
    assert_eq!(status, 200, "{body}");

    type Row = (
        String,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        Option<i64>,
        Option<i64>,
    );
    let expected: Vec<Row> = sqlx::query_as(EXPECTED)
        .fetch_all(&stack.pool)
        .await
        .unwrap();
    assert_eq!(expected.len(), 5);
    let units = body["units"].as_object().unwrap();
    assert_eq!(units.len(), 5, "{body}");
    let mut total = 0;
    for (
        unit,
        cases,
        responded,
        judged,
        callbacks,
        solved,
        satisfied,
        resolved,
        in_time,
        sign_median,
        resolve_p90,
    ) in expected
    {
        let got = &units[&unit];
        let n = |k: &str| got[k].as_i64().unwrap();
        assert_eq!(
            [
                n("cases"),
                n("responded_in_time"),
                n("response_judged"),
                n("callbacks"),
                n("solved"),
                n("satisfied"),
                n("resolved"),
                n("resolved_in_time")
            ],
            [cases, responded, judged, callbacks, solved, satisfied, resolved, in_time],
            "{unit}"
        );
        let rate = |k: &str| got[k].as_f64().unwrap();
        assert!(judged < cases, "some cases are still inside their limits");
        assert!((rate("response_rate") - responded as f64 / judged as f64).abs() < 1e-12);
        assert!((rate("resolution_rate") - solved as f64 / callbacks as f64).abs() < 1e-12);
        assert!((rate("satisfaction_rate") - satisfied as f64 / callbacks as f64).abs() < 1e-12);
        assert!((rate("on_time_resolution_rate") - in_time as f64 / resolved as f64).abs() < 1e-12);
        assert_eq!(
            got["time_to_sign"]["median_seconds"].as_i64(),
            sign_median,
            "{unit}"
        );
        assert_eq!(
            got["time_to_resolve"]["p90_seconds"].as_i64(),
            resolve_p90,
            "{unit}"
        );
        total += cases;
    }
    assert!(
        total > 6000,
        "the period should hold most of the history: {total}"
    );

    // Units see only their own figures; bad dates are refused.
    let unit = token(&stack.pool, Role::Unit, Some("licang")).await;
    let (_, own) = api
        .get("/api/v1/rates?from=2026-03-10&to=2026-04-20", &unit)
        .await;
    assert_eq!(
        own["units"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["licang"]
    );
    let (status, _) = api
        .get(
            "/api/v1/rates?from=2026-03-10&to=2026-04-20&unit=shinan",
            &unit,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = api
        .get("/api/v1/rates?from=2026-13-01&to=2026-04-20", &manager)
        .await;
    assert_eq!(status, 422);
    let _: Value = own;

    // Case lists page through everything, newest first, each case once: the whole history for
    // staff, the cases a unit leads for the unit.
    for (who, token, expected) in [
        ("staff", &manager, "SELECT count(*) FROM gen"),
        (
            "licang",
            &unit,
            "SELECT count(*) FROM gen WHERE unit = 'licang'",
        ),
    ] {
        let expected: i64 = sqlx::query_scalar(expected)
            .fetch_one(&stack.pool)
            .await
            .unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut previous: Option<String> = None;
        let mut path = "/api/v1/cases?limit=1000".to_owned();
        loop {
            let (status, page) = api.get(&path, token).await;
            assert_eq!(status, 200, "{who}: {page}");
            for case in page["cases"].as_array().unwrap() {
                let received = case["received_at"].as_str().unwrap().to_owned();
                if let Some(previous) = &previous {
                    assert!(received <= *previous, "{who}: not newest first");
                }
                previous = Some(received);
                assert!(
                    seen.insert(case["id"].as_str().unwrap().to_owned()),
                    "{who}: twice"
                );
            }
            match page["next"].as_str() {
                Some(next) => path = format!("/api/v1/cases?limit=1000&after={next}"),
                None => break,
            }
        }
        assert_eq!(seen.len() as i64, expected, "{who}");
    }
    let (status, body) = api.get("/api/v1/cases?after=yesterday", &manager).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (422, Some("after"))
    );

    // The last 30 days' figures are also gauges on /metrics, labelled by unit.
    eventually(
        "rate gauges are exported",
        std::time::Duration::from_secs(20),
        || async {
            let text = api.metrics().await;
            text.lines()
                .any(|l| {
                    l.starts_with("hotline_satisfaction_rate{") && l.contains("unit=\"xihaian\"")
                })
                .then_some(())
        },
    )
    .await;

    let pool = stack.pool.clone();
    stack.stop().await;
    env.cleanup(pool).await;
}
