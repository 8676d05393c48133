//! China's working-day calendar: weekends, official holidays and make-up working days (调休),
//! from `seeds/calendar/holidays.tsv`. Times are China Standard Time (UTC+8, no daylight saving).

use crate::SeedError;
use chrono::{DateTime, Datelike, Days, FixedOffset, NaiveDate, NaiveDateTime, Utc, Weekday};
use std::collections::BTreeSet;

pub fn china_offset() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// The instant of a China-time date and time (a fixed offset: every local time exists once).
pub fn china_instant(local: NaiveDateTime) -> DateTime<Utc> {
    local.and_utc() - chrono::Duration::seconds(china_offset().local_minus_utc().into())
}

/// What an official schedule says of a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind {
    /// A holiday (or a weekend day inside a holiday block).
    Off,
    /// A make-up working day (调休) on a weekend.
    Work,
}

impl DayKind {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "off" => Some(DayKind::Off),
            "work" => Some(DayKind::Work),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct WorkingCalendar {
    off: BTreeSet<NaiveDate>,
    work: BTreeSet<NaiveDate>,
    years: BTreeSet<i32>,
}

impl WorkingCalendar {
    pub fn parse(tsv: &str) -> Result<Self, SeedError> {
        const FILE: &str = "holidays.tsv";
        let mut calendar = Self::default();
        for (index, line) in tsv.lines().enumerate() {
            if line.starts_with('#') || line.trim().is_empty() || line.starts_with("date\t") {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 2 {
                return Err(SeedError::new(FILE, index + 1, "expected date, kind, name"));
            }
            let date = NaiveDate::parse_from_str(cols[0], "%Y-%m-%d")
                .map_err(|e| SeedError::new(FILE, index + 1, format!("bad date: {e}")))?;
            match cols[1] {
                "off" => calendar.off.insert(date),
                "work" => calendar.work.insert(date),
                other => {
                    return Err(SeedError::new(
                        FILE,
                        index + 1,
                        format!("unknown kind `{other}`"),
                    ))
                }
            };
            calendar.years.insert(date.year());
        }
        Ok(calendar)
    }

    pub fn builtin() -> Self {
        Self::parse(crate::seeds::HOLIDAYS_TSV)
            .expect("seeds/calendar/holidays.tsv is checked by the tests")
    }

    /// Records one date of an official schedule; a later statement about a date replaces an
    /// earlier one.
    pub fn set(&mut self, date: NaiveDate, kind: DayKind) {
        self.off.remove(&date);
        self.work.remove(&date);
        match kind {
            DayKind::Off => self.off.insert(date),
            DayKind::Work => self.work.insert(date),
        };
        self.years.insert(date.year());
    }

    /// Years whose schedule should be loaded by `today` and is not: this year, and from
    /// 1 November next year (the State Council publishes it in November). Until they are loaded,
    /// deadlines in them count weekends only.
    pub fn missing_years(&self, today: NaiveDate) -> Vec<i32> {
        let mut missing = Vec::new();
        if !self.has_schedule_for(today.year()) {
            missing.push(today.year());
        }
        if today.month() >= 11 && !self.has_schedule_for(today.year() + 1) {
            missing.push(today.year() + 1);
        }
        missing
    }

    /// Whether a year's schedule looks whole: every official schedule has days off at the Spring
    /// Festival (January or February) and at National Day (October). One date loaded alone, say
    /// 1 January, does not make the year known.
    pub fn has_schedule_for(&self, year: i32) -> bool {
        let off_in = |months: std::ops::RangeInclusive<u32>| {
            self.off
                .iter()
                .any(|d| d.year() == year && months.contains(&d.month()))
        };
        off_in(1..=2) && off_in(10..=10)
    }

    /// Years whose official schedule is loaded. Past them, only weekends are days off.
    pub fn years(&self) -> &BTreeSet<i32> {
        &self.years
    }

    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        if self.off.contains(&date) {
            return false;
        }
        if self.work.contains(&date) {
            return true;
        }
        !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
    }

    /// `n` working days after `start`, at the same time of day. A start on a day off counts from
    /// the beginning (00:00) of the next working day, so "1 working day" from a Saturday ends at
    /// the end of Monday.
    pub fn add_working_days(&self, start: DateTime<Utc>, n: u32) -> DateTime<Utc> {
        let tz = china_offset();
        let local = start.with_timezone(&tz);
        let mut date = local.date_naive();
        let mut time = local.time();
        if !self.is_working_day(date) {
            date = self.next_working_day(date);
            time = chrono::NaiveTime::MIN;
        }
        for _ in 0..n {
            date = self.next_working_day(date);
        }
        china_instant(date.and_time(time))
    }

    fn next_working_day(&self, mut date: NaiveDate) -> NaiveDate {
        loop {
            date = date + Days::new(1);
            if self.is_working_day(date) {
                return date;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn working_days_in_2026() {
        let cal = WorkingCalendar::builtin();
        let check = |date: &str, working: bool| {
            let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
            assert_eq!(cal.is_working_day(d), working, "{date}");
        };
        check("2026-01-01", false);
        check("2026-01-04", true); // Sunday make-up day
        check("2026-02-14", true); // Saturday make-up day
        check("2026-02-15", false);
        check("2026-02-23", false); // Monday inside Spring Festival
        check("2026-02-24", true);
        check("2026-02-28", true);
        check("2026-09-20", true);
        check("2026-10-01", false);
        check("2026-10-07", false);
        check("2026-10-08", true);
        check("2026-10-10", true);
        check("2026-11-28", false); // ordinary Saturday
        check("2026-11-30", true);
        check("2027-01-02", false); // past the known years: weekends only
    }

    #[test]
    fn loading_next_year_without_a_redeploy() {
        let mut cal = WorkingCalendar::builtin();
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(cal.missing_years(day("2026-10-31")), Vec::<i32>::new());
        assert_eq!(cal.missing_years(day("2026-11-01")), [2027]);
        assert_eq!(cal.missing_years(day("2027-01-05")), [2027]);
        // Past the known years: weekends only, so 1 January 2027 (a Friday) counts as working.
        let before = cal.add_working_days(at("2026-12-31T10:00:00+08:00"), 1);
        assert_eq!(before, at("2027-01-01T10:00:00+08:00"));
        cal.set(day("2027-01-01"), DayKind::Off);
        // One date is not a schedule; the two holidays every schedule has make it one
        // (placeholder dates, not the official 2027 schedule).
        assert_eq!(cal.missing_years(day("2026-11-01")), [2027]);
        cal.set(day("2027-02-08"), DayKind::Off);
        assert_eq!(cal.missing_years(day("2026-11-01")), [2027]);
        cal.set(day("2027-10-01"), DayKind::Off);
        assert_eq!(cal.missing_years(day("2026-11-01")), Vec::<i32>::new());
        assert!(cal.has_schedule_for(2025) && cal.has_schedule_for(2026));
        assert_eq!(
            cal.add_working_days(at("2026-12-31T10:00:00+08:00"), 1),
            at("2027-01-04T10:00:00+08:00")
        );
        // A correction replaces an earlier statement about the same date.
        cal.set(day("2027-01-01"), DayKind::Work);
        assert!(cal.is_working_day(day("2027-01-01")));
    }

    #[test]
    fn adding_working_days() {
        let cal = WorkingCalendar::builtin();
        let check = |start: &str, n: u32, expected: &str| {
            assert_eq!(
                cal.add_working_days(at(start), n),
                at(expected),
                "{start} + {n}"
            );
        };
        // Friday 13 Feb 2026 10:00 + 1 → Saturday 14 Feb (make-up day), + 2 → Tuesday 24 Feb.
        check("2026-02-13T10:00:00+08:00", 1, "2026-02-14T10:00:00+08:00");
        check("2026-02-13T10:00:00+08:00", 2, "2026-02-24T10:00:00+08:00");
        // Received on a holiday: counting starts at the first working day's midnight.
        check("2026-02-17T15:00:00+08:00", 1, "2026-02-25T00:00:00+08:00");
        // National Day: 30 Sep + 1 → 8 Oct; 9 Oct + 1 → Saturday 10 Oct (make-up day).
        check("2026-09-30T09:00:00+08:00", 1, "2026-10-08T09:00:00+08:00");
        check("2026-10-09T09:00:00+08:00", 1, "2026-10-10T09:00:00+08:00");
        // Sunday 20 Sep is a working day itself.
        check("2026-09-19T12:00:00+08:00", 1, "2026-09-21T00:00:00+08:00");
        check("2026-09-18T12:00:00+08:00", 1, "2026-09-20T12:00:00+08:00");
        // New Year: Wednesday 31 Dec 2025 + 1 → Sunday 4 Jan 2026.
        check("2025-12-31T18:00:00+08:00", 1, "2026-01-04T18:00:00+08:00");
        // An ordinary week: Monday + 5 → next Monday.
        check("2026-11-30T10:00:00+08:00", 5, "2026-12-07T10:00:00+08:00");
        check("2026-11-30T10:00:00+08:00", 0, "2026-11-30T10:00:00+08:00");
    }
}
