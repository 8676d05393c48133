//! Hotspot detection (控热点): a surge of appeals on one (topic, school) or (topic, district) in a
//! sliding window of event time, against that key's own baseline spread over the day and week.
//!
//! A surge needs both a minimum count (two appeals are never a surge) and a count that a Poisson
//! baseline makes unlikely (`p_value`). A raised hotspot resolves when the window is back to the
//! expected count, and the key is then quiet for `cooldown_hours`: it is not re-raised every
//! minute. The rules are pure; the hotspot worker feeds them counts from PostgreSQL, and
//! [`Replay`] feeds them a generated stream in memory (`hotline bench hotspots`).

use crate::calendar::china_offset;
use crate::topic::TopicCode;
use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HotspotPolicy {
    pub window_hours: i64,
    pub baseline_days: i64,
    pub baseline_floor_per_day_school: f64,
    pub baseline_floor_per_day_district: f64,
    pub min_count_school: u32,
    pub min_count_district: u32,
    pub p_value: f64,
    pub cooldown_hours: i64,
    pub hourly_profile: Vec<f64>,
    pub weekly_profile: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum HotspotKey {
    School { topic: TopicCode, school: String },
    District { topic: TopicCode, district: String },
}

impl HotspotKey {
    pub fn topic(&self) -> TopicCode {
        match self {
            HotspotKey::School { topic, .. } | HotspotKey::District { topic, .. } => *topic,
        }
    }

    pub fn scope(&self) -> &'static str {
        match self {
            HotspotKey::School { .. } => "school",
            HotspotKey::District { .. } => "district",
        }
    }

    /// The school or district name.
    pub fn place(&self) -> &str {
        match self {
            HotspotKey::School { school, .. } => school,
            HotspotKey::District { district, .. } => district,
        }
    }

    /// The keys one classified appeal counts towards. `other` counts at a named school only: many
    /// callers about one school is worth a look whatever they said, but `other` across a district
    /// is mostly what is not education at all (a water cut, a bus line), which the bureau's tasks
    /// cannot settle.
    pub fn of(topic: TopicCode, district: Option<&str>, school: Option<&str>) -> Vec<HotspotKey> {
        let mut keys = Vec::with_capacity(2);
        if let Some(school) = school {
            keys.push(HotspotKey::School {
                topic,
                school: school.to_owned(),
            });
        }
        if let Some(district) = district.filter(|_| topic != TopicCode::Other) {
            keys.push(HotspotKey::District {
                topic,
                district: district.to_owned(),
            });
        }
        keys
    }
}

/// Counts for one key at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counts {
    /// Appeals in (at - window, at].
    pub in_window: u32,
    /// Appeals in (at - window - baseline_days, at - window].
    pub in_baseline: u32,
}

/// Why a surge was raised: the numbers a manager sees.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    pub count: u32,
    pub expected: f64,
    pub baseline_per_day: f64,
    pub window_hours: i64,
    pub p_value: f64,
}

impl HotspotPolicy {
    pub fn builtin() -> Self {
        crate::seeds::proactive().hotspots
    }

    pub fn window(&self) -> Duration {
        Duration::hours(self.window_hours)
    }

    pub fn baseline(&self) -> Duration {
        Duration::days(self.baseline_days)
    }

    /// Share of a day's appeals expected in the window ending at `at` (China time), weighted by
    /// the hourly and weekly rhythm; 1.0 is one average day.
    fn window_share(&self, at: DateTime<Utc>) -> f64 {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let (hourly_mean, weekly_mean) = (mean(&self.hourly_profile), mean(&self.weekly_profile));
        let mut share = 0.0;
        for h in 0..self.window_hours {
            let local =
                (at - Duration::hours(h) - Duration::minutes(30)).with_timezone(&china_offset());
            let hour = self
                .hourly_profile
                .get(local.hour() as usize)
                .copied()
                .unwrap_or(1.0)
                / hourly_mean.max(f64::EPSILON);
            let day = self
                .weekly_profile
                .get(local.weekday().num_days_from_monday() as usize)
                .copied()
                .unwrap_or(1.0)
                / weekly_mean.max(f64::EPSILON);
            share += hour * day / 24.0;
        }
        share
    }

    /// Is this a surge? `None` when not; otherwise the evidence.
    pub fn assess(&self, key: &HotspotKey, counts: Counts, at: DateTime<Utc>) -> Option<Evidence> {
        let (floor, min_count) = match key {
            HotspotKey::School { .. } => {
                (self.baseline_floor_per_day_school, self.min_count_school)
            }
            HotspotKey::District { .. } => (
                self.baseline_floor_per_day_district,
                self.min_count_district,
            ),
        };
        if counts.in_window < min_count {
            return None;
        }
        let baseline_per_day =
            (f64::from(counts.in_baseline) / self.baseline_days as f64).max(floor);
        let expected = baseline_per_day * self.window_share(at);
        let p = poisson_at_least(counts.in_window, expected);
        (p < self.p_value).then_some(Evidence {
            count: counts.in_window,
            expected,
            baseline_per_day,
            window_hours: self.window_hours,
            p_value: p,
        })
    }

    /// Is a raised hotspot over? Its window is back to the expected count.
    pub fn resolved(&self, counts: Counts, at: DateTime<Utc>, key: &HotspotKey) -> bool {
        let floor = match key {
            HotspotKey::School { .. } => self.baseline_floor_per_day_school,
            HotspotKey::District { .. } => self.baseline_floor_per_day_district,
        };
        let baseline_per_day =
            (f64::from(counts.in_baseline) / self.baseline_days as f64).max(floor);
        f64::from(counts.in_window) <= (baseline_per_day * self.window_share(at)).ceil()
    }
}

/// P(X ≥ k) for X ~ Poisson(λ).
pub fn poisson_at_least(k: u32, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if lambda <= 0.0 {
        return 0.0;
    }
    let mut term = (-lambda).exp();
    let mut below = term;
    for i in 1..k {
        term *= lambda / f64::from(i);
        below += term;
    }
    (1.0 - below).max(0.0)
}

/// A change the detector reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum HotspotChange {
    Detected {
        key: HotspotKey,
        at: DateTime<Utc>,
        evidence: Evidence,
    },
    Resolved {
        key: HotspotKey,
        at: DateTime<Utc>,
        raised_at: DateTime<Utc>,
    },
}

/// The detector in memory over a stream in event-time order: the same rules as the worker, for
/// replays and benchmarks.
#[derive(Debug, Clone)]
pub struct Replay {
    policy: HotspotPolicy,
    seen: HashMap<HotspotKey, VecDeque<DateTime<Utc>>>,
    open: HashMap<HotspotKey, DateTime<Utc>>,
    quiet_until: HashMap<HotspotKey, DateTime<Utc>>,
}

impl Replay {
    pub fn new(policy: HotspotPolicy) -> Self {
        Self {
            policy,
            seen: HashMap::new(),
            open: HashMap::new(),
            quiet_until: HashMap::new(),
        }
    }

    fn counts(&mut self, key: &HotspotKey, at: DateTime<Utc>) -> Counts {
        let window_start = at - self.policy.window();
        let horizon = window_start - self.policy.baseline();
        let times = self.seen.entry(key.clone()).or_default();
        while times.front().is_some_and(|t| *t <= horizon) {
            times.pop_front();
        }
        let in_window = times
            .iter()
            .filter(|t| **t > window_start && **t <= at)
            .count();
        Counts {
            in_window: in_window as u32,
            in_baseline: (times.iter().filter(|t| **t <= window_start).count()) as u32,
        }
    }

    /// One classified appeal at event time `at` (streams come in event-time order).
    pub fn observe(
        &mut self,
        topic: TopicCode,
        district: Option<&str>,
        school: Option<&str>,
        at: DateTime<Utc>,
    ) -> Vec<HotspotChange> {
        let mut changes = self.tick(at);
        for key in HotspotKey::of(topic, district, school) {
            self.seen.entry(key.clone()).or_default().push_back(at);
            if self.open.contains_key(&key)
                || self.quiet_until.get(&key).is_some_and(|until| at < *until)
            {
                continue;
            }
            let counts = self.counts(&key, at);
            if let Some(evidence) = self.policy.assess(&key, counts, at) {
                self.open.insert(key.clone(), at);
                changes.push(HotspotChange::Detected { key, at, evidence });
            }
        }
        changes
    }

    /// Resolves open hotspots whose window is back to normal at `now`.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<HotspotChange> {
        let mut open: Vec<(HotspotKey, DateTime<Utc>)> =
            self.open.iter().map(|(k, t)| (k.clone(), *t)).collect();
        open.sort();
        let mut changes = Vec::new();
        for (key, raised_at) in open {
            let counts = self.counts(&key, now);
            if self.policy.resolved(counts, now, &key) {
                self.open.remove(&key);
                self.quiet_until.insert(
                    key.clone(),
                    now + Duration::hours(self.policy.cooldown_hours),
                );
                changes.push(HotspotChange::Resolved {
                    key,
                    at: now,
                    raised_at,
                });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        // 2026-03-02 is a Monday; hours are China time.
        chrono::NaiveDate::from_ymd_opt(2026, 3, 2 + day)
            .unwrap()
            .and_hms_opt(hour, minute, 0)
            .unwrap()
            .and_local_timezone(china_offset())
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn poisson_tail() {
        let cases = [
            (0, 1.0, 1.0),
            (1, 1.0, 1.0 - (-1.0f64).exp()),
            (3, 0.0, 0.0),
            (2, 0.5, 1.0 - 1.5 * (-0.5f64).exp()),
        ];
        for (k, lambda, expected) in cases {
            assert!(
                (poisson_at_least(k, lambda) - expected).abs() < 1e-12,
                "{k} {lambda}"
            );
        }
        assert!(poisson_at_least(10, 1.0) < 1e-6);
    }

    #[test]
    fn an_appeal_counts_towards_its_school_and_district_but_other_only_at_a_school() {
        let school = |topic| HotspotKey::School {
            topic,
            school: "青岛第七中学".into(),
        };
        let district = |topic| HotspotKey::District {
            topic,
            district: "市北区".into(),
        };
        let cases = [
            (
                TopicCode::Canteen,
                Some("市北区"),
                Some("青岛第七中学"),
                vec![school(TopicCode::Canteen), district(TopicCode::Canteen)],
            ),
            (
                TopicCode::Canteen,
                Some("市北区"),
                None,
                vec![district(TopicCode::Canteen)],
            ),
            (TopicCode::Canteen, None, None, vec![]),
            (
                TopicCode::Other,
                Some("市北区"),
                Some("青岛第七中学"),
                vec![school(TopicCode::Other)],
            ),
            (TopicCode::Other, Some("市北区"), None, vec![]),
        ];
        for (topic, district_name, school_name, expected) in cases {
            assert_eq!(
                HotspotKey::of(topic, district_name, school_name),
                expected,
                "{topic:?} {district_name:?} {school_name:?}"
            );
        }
    }

    #[test]
    fn surges_need_a_minimum_and_an_unlikely_count() {
        let policy = HotspotPolicy::builtin();
        let school = HotspotKey::School {
            topic: TopicCode::Canteen,
            school: "青岛第七中学".into(),
        };
        let district = HotspotKey::District {
            topic: TopicCode::Enrolment,
            district: "黄岛区".into(),
        };
        let morning = at(1, 10, 0);
        let cases = [
            ("two appeals are never a surge", &school, 2, 0, false),
            ("three at a quiet school is", &school, 3, 0, true),
            (
                "three where that is normal is not",
                &school,
                3,
                28 * 12,
                false,
            ),
            (
                "district: five is below the minimum",
                &district,
                5,
                0,
                false,
            ),
            (
                "district: seven against a quiet baseline",
                &district,
                7,
                28,
                true,
            ),
            (
                "district: seven in the enrolment season is normal",
                &district,
                7,
                28 * 30,
                false,
            ),
        ];
        for (name, key, in_window, in_baseline, expected) in cases {
            let got = policy
                .assess(
                    key,
                    Counts {
                        in_window,
                        in_baseline,
                    },
                    morning,
                )
                .is_some();
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn the_daily_rhythm_raises_the_daytime_expectation() {
        let policy = HotspotPolicy::builtin();
        let day = policy.window_share(at(1, 11, 0));
        let night = policy.window_share(at(1, 4, 0));
        assert!(day > 4.0 * night, "{day} vs {night}");
        let total: f64 = (0..8)
            .map(|i| policy.window_share(at(1, 3 * i + 2, 0)))
            .sum();
        assert!(
            (total - 1.0).abs() < 0.25,
            "a day's windows add up to about one day: {total}"
        );
    }

    #[test]
    fn replay_raises_once_then_resolves_and_stays_quiet() {
        let mut replay = Replay::new(HotspotPolicy::builtin());
        let mut changes = Vec::new();
        for i in 0..8 {
            changes.extend(replay.observe(
                TopicCode::Canteen,
                Some("市南区"),
                Some("青岛第七中学"),
                at(1, 11, 0) + Duration::minutes(12 * i),
            ));
        }
        let detected: Vec<_> = changes
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    HotspotChange::Detected {
                        key: HotspotKey::School { .. },
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(detected.len(), 1, "{changes:?}");
        let HotspotChange::Detected {
            at: raised,
            evidence,
            ..
        } = detected[0]
        else {
            unreachable!()
        };
        assert_eq!(*raised, at(1, 11, 24), "raised on the third appeal");
        assert_eq!(evidence.count, 3);
        let resolved = replay.tick(at(1, 18, 0));
        assert!(
            resolved.iter().any(|c| matches!(
                c,
                HotspotChange::Resolved {
                    key: HotspotKey::School { .. },
                    ..
                }
            )),
            "{resolved:?}"
        );
        // A new burst in the cooldown is not raised again.
        let again: Vec<_> = (0..4)
            .flat_map(|i| {
                replay.observe(
                    TopicCode::Canteen,
                    Some("市南区"),
                    Some("青岛第七中学"),
                    at(1, 19, 0) + Duration::minutes(5 * i),
                )
            })
            .collect();
        assert!(
            !again.iter().any(|c| matches!(
                c,
                HotspotChange::Detected {
                    key: HotspotKey::School { .. },
                    ..
                }
            )),
            "{again:?}"
        );
    }
}
