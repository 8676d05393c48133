//! 未诉先办: seasonal playbooks (`seeds/playbooks.toml`). Each known peak of the school year has
//! the topics it drives, the units that must prepare and a lead time; a reminder is due from
//! `lead_days` before the season starts until it ends, once per season.

use crate::calendar::china_offset;
use crate::topic::TopicCode;
use crate::units::{UnitCode, UnitKind, UnitsDirectory};
use crate::SeedError;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Playbook {
    pub code: String,
    pub name: String,
    /// Month-day, e.g. "06-15".
    pub starts: String,
    pub ends: String,
    pub lead_days: i64,
    pub topics: Vec<TopicCode>,
    /// Unit codes; "districts" stands for every district bureau.
    pub units: Vec<String>,
    pub advice: String,
}

#[derive(Debug, Deserialize)]
struct PlaybooksFile {
    version: String,
    playbook: Vec<Playbook>,
}

#[derive(Debug, Clone)]
pub struct Playbooks {
    pub version: String,
    pub playbooks: Vec<Playbook>,
}

/// A season whose reminder is due.
#[derive(Debug, Clone)]
pub struct DueSeason<'a> {
    pub playbook: &'a Playbook,
    pub season_starts: NaiveDate,
    pub season_ends: NaiveDate,
}

fn month_day(year: i32, raw: &str) -> Option<NaiveDate> {
    let (month, day) = raw.split_once('-')?;
    NaiveDate::from_ymd_opt(year, month.parse().ok()?, day.parse().ok()?)
}

impl Playbooks {
    pub fn parse(text: &str, units: &UnitsDirectory) -> Result<Self, SeedError> {
        const FILE: &str = "playbooks.toml";
        let file: PlaybooksFile =
            toml::from_str(text).map_err(|e| SeedError::new(FILE, 0, e.to_string()))?;
        for playbook in &file.playbook {
            for raw in [&playbook.starts, &playbook.ends] {
                if month_day(2028, raw).is_none() {
                    return Err(SeedError::new(
                        FILE,
                        0,
                        format!("{}: `{raw}` is not a month-day", playbook.code),
                    ));
                }
            }
            for unit in &playbook.units {
                if unit != "districts" && units.get(unit).is_none() {
                    return Err(SeedError::new(
                        FILE,
                        0,
                        format!("{}: unknown unit `{unit}`", playbook.code),
                    ));
                }
            }
        }
        Ok(Self {
            version: file.version,
            playbooks: file.playbook,
        })
    }

    pub fn builtin(units: &UnitsDirectory) -> Self {
        Self::parse(crate::seeds::PLAYBOOKS_TOML, units)
            .expect("seeds/playbooks.toml is checked by the tests")
    }

    /// Seasons whose reminder is due at `now` (China date): from `lead_days` before the start
    /// until the season ends. The caller keeps each (code, start) to one reminder.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<DueSeason<'_>> {
        let today = now.with_timezone(&china_offset()).date_naive();
        let mut due = Vec::new();
        for playbook in &self.playbooks {
            for year in [today.year() - 1, today.year(), today.year() + 1] {
                let (Some(starts), Some(mut ends)) = (
                    month_day(year, &playbook.starts),
                    month_day(year, &playbook.ends),
                ) else {
                    continue;
                };
                if ends < starts {
                    ends = month_day(year + 1, &playbook.ends).unwrap_or(ends);
                }
                if today >= starts - Duration::days(playbook.lead_days) && today <= ends {
                    due.push(DueSeason {
                        playbook,
                        season_starts: starts,
                        season_ends: ends,
                    });
                }
            }
        }
        due
    }
}

impl Playbook {
    /// The units that get the reminder.
    pub fn recipients(&self, units: &UnitsDirectory) -> Vec<UnitCode> {
        let mut out: Vec<UnitCode> = Vec::new();
        for entry in &self.units {
            if entry == "districts" {
                out.extend(
                    units
                        .all()
                        .iter()
                        .filter(|u| u.kind == UnitKind::District)
                        .map(|u| u.code.clone()),
                );
            } else if let Some(unit) = units.get(entry) {
                out.push(unit.code.clone());
            }
        }
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn china(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap()
            .and_local_timezone(china_offset())
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn reminders_fall_due_lead_days_before_the_season() {
        let units = UnitsDirectory::builtin();
        let playbooks = Playbooks::builtin(&units);
        let due_codes = |now| -> Vec<String> {
            playbooks
                .due(now)
                .iter()
                .map(|d| format!("{}@{}", d.playbook.code, d.season_starts))
                .collect()
        };
        // summer-drowning starts 06-15 with 14 days' lead: due from 06-01.
        let cases = [
            (china(2026, 5, 31), "summer-drowning@2026-06-15", false),
            (china(2026, 6, 1), "summer-drowning@2026-06-15", true),
            (china(2026, 8, 31), "summer-drowning@2026-06-15", true),
            (china(2026, 9, 1), "summer-drowning@2026-06-15", false),
            (china(2026, 11, 5), "winter-heating@2026-11-15", true),
            (china(2026, 11, 4), "winter-heating@2026-11-15", false),
            (china(2027, 2, 6), "term-start-spring@2027-02-20", true),
        ];
        for (now, code, expected) in cases {
            assert_eq!(
                due_codes(now).iter().any(|c| c == code),
                expected,
                "{now}: {code} in {:?}",
                due_codes(now)
            );
        }
    }

    #[test]
    fn recipients_expand_districts() {
        let units = UnitsDirectory::builtin();
        let playbooks = Playbooks::builtin(&units);
        let drowning = playbooks
            .playbooks
            .iter()
            .find(|p| p.code == "summer-drowning")
            .unwrap();
        let recipients = drowning.recipients(&units);
        assert_eq!(recipients.len(), 11, "{recipients:?}");
        assert!(recipients.iter().any(|u| u.as_str() == "qdedu-safety"));
    }
}
