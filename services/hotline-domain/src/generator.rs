//! Generated appeal streams in event time, for hotspot replays and benchmarks: a seeded Poisson
//! process with a daily and weekly rhythm, a topic mix, districts weighted by population and a
//! school named in part of the appeals; plus injected surges and spread-out bursts.
//!
//! The rhythm here is the generator's own (calls start at 8, a lunch dip, a Monday peak, quiet
//! Sundays), not the detector's profile, so a replay tests the detector against traffic it was not
//! tuned on.

use crate::calendar::china_offset;
use crate::schools::SchoolDirectory;
use crate::topic::TopicCode;
use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

/// One generated appeal.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedAppeal {
    pub at: DateTime<Utc>,
    pub topic: TopicCode,
    pub district: Option<String>,
    pub school: Option<String>,
}

/// SplitMix64: small, seeded, reproducible on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }

    /// Poisson-distributed count (Knuth; fine for the small means used here).
    pub fn poisson(&mut self, mean: f64) -> u32 {
        let limit = (-mean).exp();
        let mut product = self.unit();
        let mut count = 0;
        while product > limit && count < 10_000 {
            product *= self.unit();
            count += 1;
        }
        count
    }

    fn weighted<'a, T>(&mut self, items: &'a [(T, f64)]) -> &'a T {
        let total: f64 = items.iter().map(|(_, w)| w).sum();
        let mut pick = self.unit() * total;
        for (item, weight) in items {
            if pick < *weight {
                return item;
            }
            pick -= weight;
        }
        &items[items.len() - 1].0
    }
}

/// Relative call volume per hour of the day (China time).
const HOURLY: [f64; 24] = [
    0.05, 0.03, 0.02, 0.02, 0.03, 0.08, 0.25, 0.9, 1.8, 2.4, 2.2, 1.7, 0.9, 1.3, 2.1, 2.2, 1.9,
    1.4, 1.0, 0.9, 0.8, 0.6, 0.3, 0.12,
];
/// Relative volume per weekday, Monday first.
const WEEKLY: [f64; 7] = [1.3, 1.1, 1.05, 1.0, 1.0, 0.8, 0.75];

/// Share of appeals per topic (roughly what an education hotline sees outside peak seasons).
const TOPICS: [(TopicCode, f64); 16] = [
    (TopicCode::Enrolment, 0.16),
    (TopicCode::Kindergarten, 0.06),
    (TopicCode::OffCampusTutoring, 0.07),
    (TopicCode::PrivateSchool, 0.04),
    (TopicCode::Canteen, 0.07),
    (TopicCode::Bullying, 0.03),
    (TopicCode::SchoolSafety, 0.05),
    (TopicCode::Fees, 0.08),
    (TopicCode::TeacherConduct, 0.08),
    (TopicCode::TeacherAffairs, 0.07),
    (TopicCode::AcademicBurden, 0.08),
    (TopicCode::StudentHealth, 0.03),
    (TopicCode::StudentAid, 0.04),
    (TopicCode::VocationalHigher, 0.04),
    (TopicCode::Exams, 0.05),
    (TopicCode::Other, 0.05),
];

/// Districts weighted by resident population (millions, rounded).
const DISTRICTS: [(&str, f64); 10] = [
    ("市南区", 0.6),
    ("市北区", 1.1),
    ("李沧区", 0.8),
    ("崂山区", 0.6),
    ("城阳区", 1.1),
    ("黄岛区", 2.0),
    ("即墨区", 1.4),
    ("胶州市", 0.9),
    ("平度市", 1.2),
    ("莱西市", 0.7),
];

#[derive(Debug, Clone)]
pub struct Generator<'a> {
    pub rng: Rng,
    /// Mean appeals per day city-wide.
    pub per_day: f64,
    /// Share of appeals that name a school.
    pub school_share: f64,
    pub schools: &'a SchoolDirectory,
}

impl<'a> Generator<'a> {
    pub fn new(seed: u64, per_day: f64, schools: &'a SchoolDirectory) -> Self {
        Self {
            rng: Rng::new(seed),
            per_day,
            school_share: 0.45,
            schools,
        }
    }

    fn rhythm(at: DateTime<Utc>) -> f64 {
        let local = at.with_timezone(&china_offset());
        let hourly_mean = HOURLY.iter().sum::<f64>() / 24.0;
        let weekly_mean = WEEKLY.iter().sum::<f64>() / 7.0;
        HOURLY[local.hour() as usize] / hourly_mean
            * WEEKLY[local.weekday().num_days_from_monday() as usize]
            / weekly_mean
    }

    fn school_in(&mut self, district: &str) -> Option<String> {
        let candidates: Vec<&str> = self
            .schools
            .all()
            .iter()
            .filter(|s| s.district == district)
            .map(|s| s.name.as_str())
            .collect();
        (!candidates.is_empty()).then(|| candidates[self.rng.below(candidates.len())].to_owned())
    }

    /// Normal traffic from `start` for `hours`, in event-time order.
    pub fn normal(&mut self, start: DateTime<Utc>, hours: i64) -> Vec<GeneratedAppeal> {
        let mut out = Vec::new();
        for h in 0..hours {
            let hour_start = start + Duration::hours(h);
            let mean = self.per_day / 24.0 * Self::rhythm(hour_start);
            let n = self.rng.poisson(mean);
            let mut times: Vec<DateTime<Utc>> = (0..n)
                .map(|_| hour_start + Duration::seconds((self.rng.unit() * 3600.0) as i64))
                .collect();
            times.sort();
            for at in times {
                let topic = *self.rng.weighted(&TOPICS);
                let district = (*self.rng.weighted(&DISTRICTS)).to_owned();
                let school = if self.rng.unit() < self.school_share {
                    self.school_in(&district)
                } else {
                    None
                };
                out.push(GeneratedAppeal {
                    at,
                    topic,
                    district: Some(district),
                    school,
                });
            }
        }
        out
    }

    /// A surge building up at one school: `count` appeals over `hours`, arriving faster as it
    /// grows (the k-th at `hours · sqrt(k / count)`).
    pub fn surge(
        &mut self,
        start: DateTime<Utc>,
        hours: f64,
        count: usize,
        topic: TopicCode,
        school: &str,
        district: &str,
    ) -> Vec<GeneratedAppeal> {
        (1..=count)
            .map(|k| {
                let fraction = (k as f64 / count as f64).sqrt();
                let jitter = (self.rng.unit() - 0.5) * 0.1 / count as f64;
                let at = start
                    + Duration::seconds(
                        (hours * 3600.0 * (fraction + jitter).clamp(0.0, 1.0)) as i64,
                    );
                GeneratedAppeal {
                    at,
                    topic,
                    district: Some(district.to_owned()),
                    school: Some(school.to_owned()),
                }
            })
            .collect()
    }

    /// The same number of appeals on one topic over the same time, spread over every district
    /// (round robin) and their schools.
    pub fn spread(
        &mut self,
        start: DateTime<Utc>,
        hours: f64,
        count: usize,
        topic: TopicCode,
    ) -> Vec<GeneratedAppeal> {
        (0..count)
            .map(|k| {
                let district = DISTRICTS[k % DISTRICTS.len()].0;
                let at = start + Duration::seconds((hours * 3600.0 * self.rng.unit()) as i64);
                GeneratedAppeal {
                    at,
                    topic,
                    district: Some(district.to_owned()),
                    school: self.school_in(district),
                }
            })
            .collect()
    }
}

/// Merges streams into event-time order.
pub fn merge(mut streams: Vec<Vec<GeneratedAppeal>>) -> Vec<GeneratedAppeal> {
    let mut all: Vec<GeneratedAppeal> = streams.drain(..).flatten().collect();
    all.sort_by_key(|a| a.at);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_seeded_and_follow_the_rhythm() {
        let schools = SchoolDirectory::builtin();
        let start = DateTime::<Utc>::from_timestamp(1_772_380_800, 0).unwrap(); // 2026-03-01 16:00 UTC
        let a = Generator::new(7, 200.0, &schools).normal(start, 24 * 7);
        let b = Generator::new(7, 200.0, &schools).normal(start, 24 * 7);
        assert_eq!(a, b, "same seed, same stream");
        let per_day = a.len() as f64 / 7.0;
        assert!((170.0..230.0).contains(&per_day), "{per_day}");
        let by_hour = |h: u32| {
            a.iter()
                .filter(|x| x.at.with_timezone(&china_offset()).hour() == h)
                .count()
        };
        assert!(
            by_hour(10) > 10 * by_hour(3).max(1),
            "{} vs {}",
            by_hour(10),
            by_hour(3)
        );
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
        let named = a.iter().filter(|x| x.school.is_some()).count() as f64 / a.len() as f64;
        assert!((0.3..0.6).contains(&named), "{named}");
    }
}
