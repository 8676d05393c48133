//! `hotline bench repeats` and `hotline bench hotspots`: the repeat linker on the labelled pairs,
//! and the hotspot rules replayed over generated streams in event time.
#![allow(clippy::print_stdout)] // the bench commands print their reports

use chrono::{DateTime, Duration, NaiveDate, Utc};
use hotline_domain::calendar::china_offset;
use hotline_domain::generator::{merge, GeneratedAppeal, Generator};
use hotline_domain::hotspots::{HotspotChange, HotspotKey, HotspotPolicy, Replay};
use hotline_domain::repeats::{PairScores, RepeatPolicy};
use hotline_domain::schools::SchoolDirectory;
use hotline_domain::TopicCode;
use serde_json::json;

pub fn bench_repeats_command() -> anyhow::Result<()> {
    let pairs = hotline_domain::seeds::repeat_pairs();
    let scores = PairScores::of(&RepeatPolicy::builtin(), &pairs);
    let by_kind: serde_json::Map<String, serde_json::Value> = scores
        .by_kind
        .iter()
        .map(|(kind, (n, right))| {
            (
                kind.clone(),
                json!({"pairs": n, "judged_right": right, "accuracy": *right as f64 / *n as f64}),
            )
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "pairs": scores.pairs,
            "precision": scores.precision(),
            "recall": scores.recall(),
            "true_positives": scores.true_positives,
            "false_positives": scores.false_positives,
            "false_negatives": scores.false_negatives,
            "by_kind": by_kind,
        }))?
    );
    Ok(())
}

fn china(date: NaiveDate, hour: u32) -> DateTime<Utc> {
    date.and_hms_opt(hour, 0, 0)
        .and_then(|t| t.and_local_timezone(china_offset()).single())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

fn replay(
    policy: &HotspotPolicy,
    stream: &[GeneratedAppeal],
    measured_from: DateTime<Utc>,
) -> Vec<HotspotChange> {
    let mut replay = Replay::new(policy.clone());
    let mut changes = Vec::new();
    for appeal in stream {
        let happened = replay.observe(
            appeal.topic,
            appeal.district.as_deref(),
            appeal.school.as_deref(),
            appeal.at,
        );
        if appeal.at >= measured_from {
            changes.extend(happened);
        }
    }
    changes
}

fn detections(changes: &[HotspotChange]) -> impl Iterator<Item = (&HotspotKey, DateTime<Utc>)> {
    changes.iter().filter_map(|c| match c {
        HotspotChange::Detected { key, at, .. } => Some((key, *at)),
        HotspotChange::Resolved { .. } => None,
    })
}

/// Each run: 28 days of normal traffic to build the baselines, then a measured week. The week is
/// replayed as is (every hotspot is a false alarm), with a canteen surge at one school, and with
/// the same number of canteen appeals spread over every district.
pub fn bench_hotspots_command(
    runs: u64,
    per_day: f64,
    surge_size: usize,
    surge_hours: f64,
) -> anyhow::Result<()> {
    let policy = HotspotPolicy::builtin();
    let schools = SchoolDirectory::builtin();
    let start = china(NaiveDate::from_ymd_opt(2026, 3, 2).unwrap_or_default(), 0);
    let week_start = start + Duration::days(28);
    let surge_start = china(NaiveDate::from_ymd_opt(2026, 4, 1).unwrap_or_default(), 9);
    let (mut false_school, mut false_district, mut max_false) = (0usize, 0usize, 0usize);
    let (mut detected, mut within_hour, mut delays) = (0usize, 0usize, Vec::new());
    let mut spread_extra = 0i64;
    let started = std::time::Instant::now();
    let mut replayed = 0usize;
    for seed in 0..runs {
        let mut generator = Generator::new(seed, per_day, &schools);
        let history = generator.normal(start, 35 * 24);
        let school = schools.all()[(seed as usize * 7) % schools.all().len()].clone();
        let surge = generator.surge(
            surge_start,
            surge_hours,
            surge_size,
            TopicCode::Canteen,
            &school.name,
            &school.district,
        );
        let spread = generator.spread(surge_start, surge_hours, surge_size, TopicCode::Canteen);

        let normal = replay(&policy, &history, week_start);
        let alarms: Vec<_> = detections(&normal).collect();
        false_school += alarms.iter().filter(|(k, _)| k.scope() == "school").count();
        false_district += alarms
            .iter()
            .filter(|(k, _)| k.scope() == "district")
            .count();
        max_false = max_false.max(alarms.len());

        let with_surge = merge(vec![history.clone(), surge.clone()]);
        let first = surge.iter().map(|a| a.at).min().unwrap_or(surge_start);
        let surged = replay(&policy, &with_surge, week_start);
        let hit = detections(&surged).find(|(key, at)| {
            *at >= first
                && matches!(key, HotspotKey::School { topic: TopicCode::Canteen, school: s } if *s == school.name)
        });
        if let Some((_, at)) = hit {
            detected += 1;
            let delay = at - first;
            within_hour += usize::from(delay <= Duration::hours(1));
            delays.push(delay.num_seconds() as f64 / 60.0);
        }

        let with_spread = merge(vec![history.clone(), spread]);
        let spread_alarms = detections(&replay(&policy, &with_spread, week_start)).count() as i64;
        spread_extra += spread_alarms - alarms.len() as i64;
        replayed += history.len() * 3 + surge_size * 2;
    }
    let elapsed = started.elapsed().as_secs_f64();
    delays.sort_by(f64::total_cmp);
    let mean = delays.iter().sum::<f64>() / delays.len().max(1) as f64;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "runs": runs,
            "appeals_per_day": per_day,
            "policy": {"window_hours": policy.window_hours, "min_count_school": policy.min_count_school, "min_count_district": policy.min_count_district, "p_value": policy.p_value},
            "normal_week": {
                "false_alarms_per_week": (false_school + false_district) as f64 / runs as f64,
                "school_false_alarms_per_week": false_school as f64 / runs as f64,
                "district_false_alarms_per_week": false_district as f64 / runs as f64,
                "max_false_alarms_in_a_week": max_false,
            },
            "surge": {
                "appeals": surge_size,
                "build_up_hours": surge_hours,
                "detected": detected as f64 / runs as f64,
                "detected_within_first_hour": within_hour as f64 / runs as f64,
                "delay_minutes_mean": mean,
                "delay_minutes_max": delays.last().copied(),
            },
            "spread_same_size": {
                "extra_alarms_per_run": spread_extra as f64 / runs as f64,
            },
            "replay_speed_appeals_per_second": replayed as f64 / elapsed,
        }))?
    );
    Ok(())
}
