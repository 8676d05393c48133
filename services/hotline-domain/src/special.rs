//! 专项深办: a problem that keeps coming back becomes a special item, owned by a bureau
//! department, with a plan, a deadline and a KPI: complaints on its place and topic after it
//! closes against before.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SpecialItemPolicy {
    pub window_days: i64,
    pub min_cases_school_topic: u32,
    pub min_hotspots_district_topic: u32,
    pub deadline_days: i64,
    pub kpi_days: i64,
}

/// Why an item opens on its own.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "trigger", rename_all = "snake_case")]
pub enum Trigger {
    /// `cases` cases on one school and topic within the window.
    RepeatedCases { cases: u32, window_days: i64 },
    /// The district+topic hotspot was raised `hotspots` times within the window.
    PersistentHotspot { hotspots: u32, window_days: i64 },
}

impl SpecialItemPolicy {
    pub fn builtin() -> Self {
        crate::seeds::proactive().special_items
    }

    pub fn from_cases(&self, cases_in_window: u32) -> Option<Trigger> {
        (cases_in_window >= self.min_cases_school_topic).then_some(Trigger::RepeatedCases {
            cases: cases_in_window,
            window_days: self.window_days,
        })
    }

    pub fn from_hotspots(&self, hotspots_in_window: u32) -> Option<Trigger> {
        (hotspots_in_window >= self.min_hotspots_district_topic).then_some(
            Trigger::PersistentHotspot {
                hotspots: hotspots_in_window,
                window_days: self.window_days,
            },
        )
    }

    pub fn deadline(&self, opened_at: DateTime<Utc>) -> DateTime<Utc> {
        opened_at + Duration::days(self.deadline_days)
    }

    /// The two periods the KPI compares: `kpi_days` before and after `closed_at`.
    pub fn kpi_periods(&self, closed_at: DateTime<Utc>) -> KpiPeriods {
        let span = Duration::days(self.kpi_days);
        KpiPeriods {
            before: (closed_at - span, closed_at),
            after: (closed_at, closed_at + span),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KpiPeriods {
    pub before: (DateTime<Utc>, DateTime<Utc>),
    pub after: (DateTime<Utc>, DateTime<Utc>),
}

/// The KPI of a closed item. `complete` is false while the after-period is still running.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kpi {
    pub before: u32,
    pub after: u32,
    /// (after − before) / before; `None` when there was nothing before.
    pub change: Option<f64>,
    pub complete: bool,
}

impl Kpi {
    pub fn new(before: u32, after: u32, complete: bool) -> Self {
        let change =
            (before > 0).then(|| (f64::from(after) - f64::from(before)) / f64::from(before));
        Self {
            before,
            after,
            change,
            complete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_and_kpi() {
        let policy = SpecialItemPolicy::builtin();
        let cases = [(4, false), (5, true), (12, true)];
        for (n, opens) in cases {
            assert_eq!(policy.from_cases(n).is_some(), opens, "{n} cases");
        }
        assert!(policy.from_hotspots(1).is_none());
        assert!(policy.from_hotspots(2).is_some());
        let kpis = [
            (10, 2, Some(-0.8)),
            (4, 4, Some(0.0)),
            (0, 3, None),
            (5, 10, Some(1.0)),
        ];
        for (before, after, change) in kpis {
            let kpi = Kpi::new(before, after, true);
            match (kpi.change, change) {
                (Some(got), Some(want)) => assert!((got - want).abs() < 1e-12),
                (got, want) => assert_eq!(got, want),
            }
        }
        let closed = DateTime::<Utc>::from_timestamp(1_790_000_000, 0).unwrap();
        let periods = policy.kpi_periods(closed);
        assert_eq!(periods.before.1, closed);
        assert_eq!(
            periods.after.1 - periods.after.0,
            Duration::days(policy.kpi_days)
        );
    }
}
