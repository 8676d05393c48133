//! Deadline policy (`seeds/deadline-policy.toml`): how long a unit has to sign, contact the citizen,
//! resolve, and how long the operator has to call back, by urgency.

use crate::calendar::{china_instant, china_offset, WorkingCalendar};
use crate::topic::TopicCode;
use crate::SeedError;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    Sign,
    Contact,
    Resolve,
    Callback,
}

impl DeadlineKind {
    pub const ALL: [DeadlineKind; 4] = [
        DeadlineKind::Sign,
        DeadlineKind::Contact,
        DeadlineKind::Resolve,
        DeadlineKind::Callback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadlineKind::Sign => "sign",
            DeadlineKind::Contact => "contact",
            DeadlineKind::Resolve => "resolve",
            DeadlineKind::Callback => "callback",
        }
    }
}

impl fmt::Display for DeadlineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeadlineKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeadlineKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown deadline kind `{s}`"))
    }
}

/// A time limit: natural time (`90s`, `30m`, `2h`, `3d`) or working days (`5wd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Natural(Duration),
    WorkingDays(u32),
}

impl FromStr for Limit {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        let split = raw
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("`{raw}` has no unit (s, m, h, d, wd)"))?;
        let (number, unit) = raw.split_at(split);
        let n: i64 = number
            .parse()
            .map_err(|_| format!("`{raw}` does not start with a whole number"))?;
        match unit {
            "s" => Ok(Limit::Natural(Duration::seconds(n))),
            "m" => Ok(Limit::Natural(Duration::minutes(n))),
            "h" => Ok(Limit::Natural(Duration::hours(n))),
            "d" => Ok(Limit::Natural(Duration::days(n))),
            "wd" => u32::try_from(n)
                .map(Limit::WorkingDays)
                .map_err(|_| format!("`{raw}` is out of range")),
            _ => Err(format!("`{raw}`: unknown unit `{unit}` (s, m, h, d, wd)")),
        }
    }
}

impl Limit {
    pub fn in_working_days(self) -> bool {
        matches!(self, Limit::WorkingDays(_))
    }

    pub fn after(self, start: DateTime<Utc>, calendar: &WorkingCalendar) -> DateTime<Utc> {
        match self {
            Limit::Natural(d) => start + d,
            Limit::WorkingDays(n) => calendar.add_working_days(start, n),
        }
    }
}

#[derive(Debug, Deserialize)]
struct PolicyFile {
    version: String,
    warn_at_fraction: f64,
    urgent: LimitsFile,
    normal: LimitsFile,
    reopen: ReopenFile,
    returns: ReturnsFile,
    extension: ExtensionFile,
    #[serde(default)]
    topic: std::collections::BTreeMap<String, OverrideFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideFile {
    sign: Option<String>,
    contact: Option<String>,
    resolve: Option<String>,
    callback: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReturnsFile {
    window: String,
}

#[derive(Debug, Deserialize)]
struct ReopenFile {
    resolve: String,
}

#[derive(Debug, Deserialize)]
struct ExtensionFile {
    max: String,
}

#[derive(Debug, Deserialize)]
struct LimitsFile {
    sign: String,
    contact: String,
    resolve: String,
    callback: String,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub sign: Limit,
    pub contact: Limit,
    pub resolve: Limit,
    pub callback: Limit,
}

impl Limits {
    fn get(&self, kind: DeadlineKind) -> Limit {
        match kind {
            DeadlineKind::Sign => self.sign,
            DeadlineKind::Contact => self.contact,
            DeadlineKind::Resolve => self.resolve,
            DeadlineKind::Callback => self.callback,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Urgent,
    Normal,
}

impl Urgency {
    pub fn from_flag(urgent: bool) -> Self {
        if urgent {
            Urgency::Urgent
        } else {
            Urgency::Normal
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeadlinePolicy {
    pub version: String,
    pub warn_at_fraction: f64,
    pub urgent: Limits,
    pub normal: Limits,
    /// The longest extension a manager may grant, in working days.
    pub extension_max_working_days: u32,
    /// Time to resolve a case again after an unsatisfied callback.
    pub reopen_resolve: Limit,
    /// How long after its assignment a unit may return a case.
    pub return_window: Limit,
    /// Normal limits that differ by topic.
    pub topic_limits: std::collections::BTreeMap<TopicCode, Limits>,
}

/// One clock: when it started, when to warn, when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub kind: DeadlineKind,
    pub starts_at: DateTime<Utc>,
    pub warn_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
}

impl Clock {
    /// The clock's warning and deadline after an extension of `extension_working_days` (counted
    /// from its deadline, as a manager's approval counts them) and `paused` time (which moves the
    /// deadline by as much): what recomputing a running clock must keep.
    pub fn adjusted(
        &self,
        extension_working_days: u32,
        paused: Duration,
        policy: &DeadlinePolicy,
        calendar: &WorkingCalendar,
        counted_in_working_days: bool,
    ) -> (DateTime<Utc>, DateTime<Utc>) {
        if extension_working_days == 0 && paused.is_zero() {
            return (self.warn_at, self.due_at);
        }
        let extended = if extension_working_days > 0 {
            calendar.add_working_days(self.due_at, extension_working_days)
        } else {
            self.due_at
        };
        let due_at = extended + paused;
        (
            policy.warn_at(
                self.starts_at,
                due_at,
                counted_in_working_days.then_some(calendar),
            ),
            due_at,
        )
    }
}

impl DeadlinePolicy {
    pub fn parse(toml_text: &str) -> Result<Self, SeedError> {
        const FILE: &str = "deadline-policy.toml";
        let file: PolicyFile =
            toml::from_str(toml_text).map_err(|e| SeedError::new(FILE, 0, e.to_string()))?;
        if !(0.0..1.0).contains(&file.warn_at_fraction) {
            return Err(SeedError::new(
                FILE,
                0,
                "warn_at_fraction must be in [0, 1)",
            ));
        }
        let limits = |l: &LimitsFile| -> Result<Limits, SeedError> {
            let p = |s: &str| s.parse::<Limit>().map_err(|e| SeedError::new(FILE, 0, e));
            Ok(Limits {
                sign: p(&l.sign)?,
                contact: p(&l.contact)?,
                resolve: p(&l.resolve)?,
                callback: p(&l.callback)?,
            })
        };
        let normal = limits(&file.normal)?;
        let mut topic_limits = std::collections::BTreeMap::new();
        for (code, o) in &file.topic {
            let topic: TopicCode = code
                .parse()
                .map_err(|e: crate::topic::UnknownTopic| SeedError::new(FILE, 0, e.to_string()))?;
            let pick = |raw: &Option<String>, default: Limit| -> Result<Limit, SeedError> {
                raw.as_deref().map_or(Ok(default), |r| {
                    r.parse::<Limit>().map_err(|e| SeedError::new(FILE, 0, e))
                })
            };
            topic_limits.insert(
                topic,
                Limits {
                    sign: pick(&o.sign, normal.sign)?,
                    contact: pick(&o.contact, normal.contact)?,
                    resolve: pick(&o.resolve, normal.resolve)?,
                    callback: pick(&o.callback, normal.callback)?,
                },
            );
        }
        let extension_max_working_days = match file.extension.max.parse::<Limit>() {
            Ok(Limit::WorkingDays(n)) => n,
            Ok(Limit::Natural(_)) => {
                return Err(SeedError::new(
                    FILE,
                    0,
                    "extension.max is in working days (e.g. \"10wd\")",
                ))
            }
            Err(e) => return Err(SeedError::new(FILE, 0, e)),
        };
        Ok(Self {
            version: file.version,
            warn_at_fraction: file.warn_at_fraction,
            urgent: limits(&file.urgent)?,
            normal,
            extension_max_working_days,
            reopen_resolve: file
                .reopen
                .resolve
                .parse::<Limit>()
                .map_err(|e| SeedError::new(FILE, 0, e))?,
            topic_limits,
            return_window: file
                .returns
                .window
                .parse::<Limit>()
                .map_err(|e| SeedError::new(FILE, 0, e))?,
        })
    }

    pub fn builtin() -> Self {
        Self::parse(crate::seeds::DEADLINE_POLICY_TOML)
            .expect("seeds/deadline-policy.toml is checked by the tests")
    }

    /// The warning point of a clock running from `starts_at` to `due_at`: at `warn_at_fraction` of
    /// its span. For a clock counted in working days (`calendar` given), a point that falls on a
    /// day off moves back to the same time on the last working day before it: 28 September plus
    /// five working days is 10 October, and 75 % of that span is 7 October, in the middle of the
    /// National Day holiday, when nobody reads a warning. Never before the start.
    pub fn warn_at(
        &self,
        starts_at: DateTime<Utc>,
        due_at: DateTime<Utc>,
        calendar: Option<&WorkingCalendar>,
    ) -> DateTime<Utc> {
        let span = due_at - starts_at;
        let natural = starts_at
            + Duration::milliseconds(
                (span.num_milliseconds() as f64 * self.warn_at_fraction).round() as i64,
            );
        let Some(calendar) = calendar else {
            return natural;
        };
        let local = natural.with_timezone(&china_offset());
        let mut date = local.date_naive();
        // The longest run of days off is a holiday with its weekend, well under a month.
        for _ in 0..31 {
            if calendar.is_working_day(date) {
                break;
            }
            match date.pred_opt() {
                Some(previous) => date = previous,
                None => return natural,
            }
        }
        let moved = china_instant(date.and_time(local.time())).min(natural);
        moved.max(starts_at)
    }

    /// The resolve clock of a reopened case.
    pub fn reopen_clock(&self, starts_at: DateTime<Utc>, calendar: &WorkingCalendar) -> Clock {
        let due_at = self.reopen_resolve.after(starts_at, calendar);
        Clock {
            kind: DeadlineKind::Resolve,
            starts_at,
            warn_at: self.warn_at(
                starts_at,
                due_at,
                self.reopen_resolve.in_working_days().then_some(calendar),
            ),
            due_at,
        }
    }

    /// The limit of a clock of `kind` for a case of this urgency and topic.
    pub fn limit(&self, kind: DeadlineKind, urgency: Urgency, topic: Option<TopicCode>) -> Limit {
        let limits = match urgency {
            Urgency::Urgent => &self.urgent,
            Urgency::Normal => topic
                .and_then(|t| self.topic_limits.get(&t))
                .unwrap_or(&self.normal),
        };
        limits.get(kind)
    }

    /// A clock of `kind` for a case of this urgency and topic, starting at `starts_at`.
    pub fn clock(
        &self,
        kind: DeadlineKind,
        urgency: Urgency,
        topic: Option<TopicCode>,
        starts_at: DateTime<Utc>,
        calendar: &WorkingCalendar,
    ) -> Clock {
        let limit = self.limit(kind, urgency, topic);
        let due_at = limit.after(starts_at, calendar);
        Clock {
            kind,
            starts_at,
            warn_at: self.warn_at(
                starts_at,
                due_at,
                limit.in_working_days().then_some(calendar),
            ),
            due_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instant given in China time, `YYYY-MM-DDTHH:MM:SS`.
    fn china(local: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("{local}+08:00"))
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn warnings_of_working_day_clocks_fall_on_working_days() {
        let policy = DeadlinePolicy::builtin();
        let calendar = WorkingCalendar::builtin();
        let cases = [
            // 5 working days over National Day end on the make-up Saturday; 75 % of the span
            // is 7 October, a holiday: the warning moves back to the last working day before.
            (
                "2026-09-28T10:00:00",
                Limit::WorkingDays(5),
                "2026-10-10T10:00:00",
                "2026-09-30T10:00:00",
            ),
            // An ordinary week: 75 % is Saturday afternoon, moved back to Friday.
            (
                "2026-03-02T10:00:00",
                Limit::WorkingDays(5),
                "2026-03-09T10:00:00",
                "2026-03-06T16:00:00",
            ),
            // 75 % on a working day: unchanged.
            (
                "2026-03-02T10:00:00",
                Limit::WorkingDays(3),
                "2026-03-05T10:00:00",
                "2026-03-04T16:00:00",
            ),
            // Natural hours (urgent cases) keep 75 % whatever the day.
            (
                "2026-03-07T10:00:00",
                Limit::Natural(Duration::hours(2)),
                "2026-03-07T12:00:00",
                "2026-03-07T11:30:00",
            ),
            // Filed on a Saturday: one working day ends as Monday ends; 75 % of the span is Monday
            // morning, a working day.
            (
                "2026-03-07T10:00:00",
                Limit::WorkingDays(1),
                "2026-03-10T00:00:00",
                "2026-03-09T08:30:00",
            ),
        ];
        for (start, limit, due, warn) in cases {
            let clock_start = china(start);
            let due_at = limit.after(clock_start, &calendar);
            assert_eq!(due_at, china(due), "{start} {limit:?}");
            let warn_at = policy.warn_at(
                clock_start,
                due_at,
                limit.in_working_days().then_some(&calendar),
            );
            assert_eq!(warn_at, china(warn), "{start} {limit:?}");
            assert!(warn_at >= clock_start && warn_at <= due_at);
        }
    }

    #[test]
    fn a_recomputed_clock_keeps_its_extension_and_pauses() {
        let policy = DeadlinePolicy::builtin();
        let calendar = WorkingCalendar::builtin();
        // Monday 2 March 2026, 10:00, resolve in 5 working days: Monday 9 March.
        let clock = Clock {
            kind: DeadlineKind::Resolve,
            starts_at: china("2026-03-02T10:00:00"),
            warn_at: china("2026-03-06T16:00:00"),
            due_at: china("2026-03-09T10:00:00"),
        };
        let cases = [
            (0, 0, "2026-03-06T16:00:00", "2026-03-09T10:00:00"),
            // Three working days from the deadline: Thursday 12 March.
            (3, 0, "2026-03-09T22:00:00", "2026-03-12T10:00:00"),
            // Paused for a day and a half: the deadline moves by as much; 75 % of the longer span
            // is Sunday evening, so the warning comes on Friday.
            (0, 36, "2026-03-06T19:00:00", "2026-03-10T22:00:00"),
            (3, 36, "2026-03-11T01:00:00", "2026-03-13T22:00:00"),
        ];
        for (days, paused_hours, warn, due) in cases {
            let (warn_at, due_at) = clock.adjusted(
                days,
                Duration::hours(paused_hours),
                &policy,
                &calendar,
                true,
            );
            assert_eq!(
                (warn_at, due_at),
                (china(warn), china(due)),
                "{days} working days, {paused_hours} h paused"
            );
        }
    }

    #[test]
    fn limits_parse() {
        let check = |raw: &str, expected: Result<Limit, ()>| {
            assert_eq!(raw.parse::<Limit>().map_err(|_| ()), expected, "{raw}");
        };
        check("90s", Ok(Limit::Natural(Duration::seconds(90))));
        check("2h", Ok(Limit::Natural(Duration::hours(2))));
        check("5wd", Ok(Limit::WorkingDays(5)));
        check("3d", Ok(Limit::Natural(Duration::days(3))));
        check("5", Err(()));
        check("wd", Err(()));
        check("5y", Err(()));
    }

    #[test]
    fn builtin_policy_clocks() {
        let policy = DeadlinePolicy::builtin();
        let calendar = WorkingCalendar::builtin();
        let start = DateTime::parse_from_rfc3339("2026-11-30T10:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc);
        let urgent = policy.clock(
            DeadlineKind::Contact,
            Urgency::Urgent,
            None,
            start,
            &calendar,
        );
        assert_eq!(urgent.due_at - start, Duration::hours(2));
        assert!(urgent.warn_at > start && urgent.warn_at < urgent.due_at);
        let normal = policy.clock(
            DeadlineKind::Resolve,
            Urgency::Normal,
            None,
            start,
            &calendar,
        );
        assert_eq!(normal.due_at, calendar.add_working_days(start, 5));
        let check = |topic: TopicCode, urgency: Urgency, expected: DateTime<Utc>| {
            let clock = policy.clock(
                DeadlineKind::Resolve,
                urgency,
                Some(topic),
                start,
                &calendar,
            );
            assert_eq!(clock.due_at, expected, "{topic} {urgency:?}");
        };
        check(
            TopicCode::Bullying,
            Urgency::Normal,
            calendar.add_working_days(start, 3),
        );
        check(
            TopicCode::TeacherAffairs,
            Urgency::Normal,
            calendar.add_working_days(start, 10),
        );
        check(
            TopicCode::Fees,
            Urgency::Normal,
            calendar.add_working_days(start, 5),
        );
        check(
            TopicCode::Bullying,
            Urgency::Urgent,
            start + Duration::days(1),
        );
        let sign = policy.clock(
            DeadlineKind::Sign,
            Urgency::Normal,
            Some(TopicCode::Bullying),
            start,
            &calendar,
        );
        assert_eq!(
            sign.due_at,
            calendar.add_working_days(start, 1),
            "overrides leave other limits alone"
        );
        assert_eq!(policy.extension_max_working_days, 10);
        assert_eq!(policy.return_window, Limit::WorkingDays(2));
        assert_eq!(
            policy.reopen_clock(start, &calendar).due_at - start,
            Duration::days(7)
        );
    }
}
