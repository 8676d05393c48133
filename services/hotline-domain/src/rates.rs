//! The three rates (响应率, 解决率, 满意率), on-time resolution and handling times, per unit, from
//! each case's clocks and callbacks. The definitions, denominators included, are in README
//! ("The three rates"); this module is their one implementation.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

use crate::case::Satisfaction;

/// One clock of a case as the tracker kept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockRecord {
    pub starts_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub met_at: Option<DateTime<Utc>>,
}

impl ClockRecord {
    fn on_time(&self) -> bool {
        self.met_at.is_some_and(|m| m <= self.due_at)
    }

    fn seconds(&self) -> Option<i64> {
        self.met_at.map(|m| (m - self.starts_at).num_seconds())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackRecord {
    pub solved: bool,
    pub satisfaction: Satisfaction,
}

/// What the rates need of one case: the unit charged with it (the lead whose clocks ran last),
/// its latest sign, contact and resolve clocks, and each caller's latest callback (a case that
/// repeats joined has several callers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRecord {
    pub unit: String,
    pub received_at: DateTime<Utc>,
    pub sign: Option<ClockRecord>,
    pub contact: Option<ClockRecord>,
    pub resolve: Option<ClockRecord>,
    pub callbacks: Vec<CallbackRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Durations {
    pub count: usize,
    pub median_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UnitRates {
    pub cases: usize,
    /// Signed and contacted, both within their limits.
    pub responded_in_time: usize,
    /// Cases whose response can be told: both clocks met, or one past its deadline. The response
    /// rate's denominator.
    pub response_judged: usize,
    pub response_rate: Option<f64>,
    pub callbacks: usize,
    pub solved: usize,
    pub resolution_rate: Option<f64>,
    pub satisfied: usize,
    pub satisfaction_rate: Option<f64>,
    pub resolved: usize,
    pub resolved_in_time: usize,
    pub on_time_resolution_rate: Option<f64>,
    pub time_to_sign: Durations,
    pub time_to_contact: Durations,
    pub time_to_resolve: Durations,
}

/// 满意 counts 非常满意, 满意 and 基本满意, as 12345 platforms do.
pub fn is_satisfied(grade: Satisfaction) -> bool {
    matches!(
        grade,
        Satisfaction::VerySatisfied | Satisfaction::Satisfied | Satisfaction::Neutral
    )
}

fn ratio(numerator: usize, denominator: usize) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn durations(mut values: Vec<i64>) -> Durations {
    values.sort_unstable();
    Durations {
        count: values.len(),
        median_seconds: percentile(&values, 0.5),
        p90_seconds: percentile(&values, 0.9),
    }
}

/// Whether a case responded in time (签收 and contact both by their deadlines), as far as it can
/// be told at `now`: `None` while it is still inside its limits, or has no running clocks (sent
/// back, waiting to be routed again). Such cases are left out of the response rate rather than
/// counted as failures, so today's figures are not dragged down by cases that cannot have failed.
fn responded_in_time(case: &CaseRecord, now: DateTime<Utc>) -> Option<bool> {
    let (Some(sign), Some(contact)) = (case.sign, case.contact) else {
        return None;
    };
    let late = |clock: ClockRecord| match clock.met_at {
        Some(met) => met > clock.due_at,
        None => clock.due_at <= now,
    };
    if late(sign) || late(contact) {
        Some(false)
    } else if sign.on_time() && contact.on_time() {
        Some(true)
    } else {
        None
    }
}

/// Rates per unit for the cases received in `[from, to)`, as they stand at `now`.
pub fn compute(
    cases: &[CaseRecord],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> BTreeMap<String, UnitRates> {
    let mut by_unit: BTreeMap<String, Vec<&CaseRecord>> = BTreeMap::new();
    for case in cases
        .iter()
        .filter(|c| c.received_at >= from && c.received_at < to)
    {
        by_unit.entry(case.unit.clone()).or_default().push(case);
    }
    by_unit
        .into_iter()
        .map(|(unit, cases)| {
            let judged: Vec<bool> = cases
                .iter()
                .filter_map(|c| responded_in_time(c, now))
                .collect();
            let responded_in_time = judged.iter().filter(|&&on_time| on_time).count();
            let callbacks: Vec<CallbackRecord> = cases
                .iter()
                .flat_map(|c| c.callbacks.iter().copied())
                .collect();
            let solved = callbacks.iter().filter(|c| c.solved).count();
            let satisfied = callbacks
                .iter()
                .filter(|c| is_satisfied(c.satisfaction))
                .count();
            let resolved = cases
                .iter()
                .filter(|c| c.resolve.is_some_and(|r| r.met_at.is_some()))
                .count();
            let resolved_in_time = cases
                .iter()
                .filter(|c| c.resolve.is_some_and(|r| r.on_time()))
                .count();
            let times = |pick: fn(&CaseRecord) -> Option<ClockRecord>| {
                durations(
                    cases
                        .iter()
                        .filter_map(|c| pick(c).and_then(|k| k.seconds()))
                        .collect(),
                )
            };
            let rates = UnitRates {
                cases: cases.len(),
                responded_in_time,
                response_judged: judged.len(),
                response_rate: ratio(responded_in_time, judged.len()),
                callbacks: callbacks.len(),
                solved,
                resolution_rate: ratio(solved, callbacks.len()),
                satisfied,
                satisfaction_rate: ratio(satisfied, callbacks.len()),
                resolved,
                resolved_in_time,
                on_time_resolution_rate: ratio(resolved_in_time, resolved),
                time_to_sign: times(|c| c.sign),
                time_to_contact: times(|c| c.contact),
                time_to_resolve: times(|c| c.resolve),
            };
            (unit, rates)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
            + Duration::hours(hours)
    }

    fn clock(start: i64, due: i64, met: Option<i64>) -> Option<ClockRecord> {
        Some(ClockRecord {
            starts_at: at(start),
            due_at: at(due),
            met_at: met.map(at),
        })
    }

    #[test]
    fn rates_and_their_denominators() {
        let case = |unit: &str, received: i64, sign, contact, resolve, callback| CaseRecord {
            unit: unit.into(),
            received_at: at(received),
            sign,
            contact,
            resolve,
            callbacks: Vec::from_iter(callback),
        };
        let good = CallbackRecord {
            solved: true,
            satisfaction: Satisfaction::Satisfied,
        };
        let bad = CallbackRecord {
            solved: false,
            satisfaction: Satisfaction::Dissatisfied,
        };
        let cases = vec![
            // On time everywhere, satisfied.
            case(
                "shinan",
                0,
                clock(0, 24, Some(1)),
                clock(0, 48, Some(2)),
                clock(0, 120, Some(10)),
                Some(good),
            ),
            // Signed late: not responded in time; resolved late; unhappy.
            case(
                "shinan",
                1,
                clock(1, 25, Some(30)),
                clock(1, 49, Some(31)),
                clock(1, 121, Some(200)),
                Some(bad),
            ),
            // Not signed by its deadline: counts in the denominator only.
            case(
                "shinan",
                2,
                clock(2, 26, None),
                clock(2, 50, None),
                clock(2, 122, None),
                None,
            ),
            // Signed, not yet contacted, the contact deadline still ahead: cannot have failed
            // yet, so not in the response rate.
            case(
                "shinan",
                90,
                clock(90, 114, Some(91)),
                clock(90, 138, None),
                clock(90, 210, None),
                None,
            ),
            // Sent back, waiting to be routed again (its clocks were cancelled): not judged.
            case("shinan", 95, None, None, None, None),
            // Another unit, and one outside the period.
            case(
                "licang",
                3,
                clock(3, 27, Some(4)),
                clock(3, 51, Some(5)),
                None,
                None,
            ),
            case("licang", 500, clock(500, 524, Some(501)), None, None, None),
        ];
        let rates = compute(&cases, at(0), at(100), at(100));
        let shinan = &rates["shinan"];
        assert_eq!(
            (
                shinan.cases,
                shinan.response_judged,
                shinan.responded_in_time
            ),
            (5, 3, 1)
        );
        assert_eq!(shinan.response_rate, Some(1.0 / 3.0));
        // A day later the open case's contact deadline has passed unmet: now it counts, as a miss.
        let later = &compute(&cases, at(0), at(100), at(140))["shinan"];
        assert_eq!((later.response_judged, later.responded_in_time), (4, 1));
        assert_eq!(
            (shinan.callbacks, shinan.solved, shinan.satisfied),
            (2, 1, 1)
        );
        assert_eq!(shinan.resolution_rate, Some(0.5));
        assert_eq!((shinan.resolved, shinan.resolved_in_time), (2, 1));
        assert_eq!(
            shinan.time_to_sign,
            Durations {
                count: 3,
                median_seconds: Some(3600),
                p90_seconds: Some(29 * 3600)
            }
        );
        let licang = &rates["licang"];
        assert_eq!(licang.cases, 1);
        assert_eq!(licang.resolution_rate, None); // no callbacks: no rate, not zero
        assert_eq!(licang.on_time_resolution_rate, None);

        // A case several callers joined: each caller's callback counts.
        let mut joined = case("laoshan", 10, None, None, None, None);
        joined.callbacks = vec![
            CallbackRecord {
                solved: true,
                satisfaction: Satisfaction::Satisfied,
            },
            CallbackRecord {
                solved: false,
                satisfaction: Satisfaction::Dissatisfied,
            },
        ];
        let laoshan = &compute(&[joined], at(0), at(100), at(100))["laoshan"];
        assert_eq!(
            (
                laoshan.cases,
                laoshan.callbacks,
                laoshan.solved,
                laoshan.satisfied
            ),
            (1, 2, 1, 1)
        );
        assert_eq!(laoshan.satisfaction_rate, Some(0.5));
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let check = |values: &[i64], p: f64, expected: Option<i64>| {
            assert_eq!(percentile(values, p), expected)
        };
        check(&[], 0.5, None);
        check(&[7], 0.9, Some(7));
        check(&[1, 2, 3, 4], 0.5, Some(2));
        check(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9, Some(9));
        check(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.5, Some(5));
    }
}
