//! The units directory (`seeds/units.tsv`): the bureau's departments and the district bureaus.

use crate::SeedError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A unit code as in `seeds/units.tsv`: lower-case ASCII letters, digits and dashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UnitCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a unit code (2 to 40 characters of a-z, 0-9 and -)")]
pub struct BadUnitCode(pub String);

impl UnitCode {
    pub fn parse(raw: &str) -> Result<Self, BadUnitCode> {
        let ok = (2..=40).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(BadUnitCode(raw.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UnitCode {
    type Error = BadUnitCode;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<UnitCode> for String {
    fn from(value: UnitCode) -> Self {
        value.0
    }
}

impl fmt::Display for UnitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    Department,
    District,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unit {
    pub code: UnitCode,
    pub name: String,
    pub kind: UnitKind,
    /// Canonical district name for district bureaus.
    pub district: Option<String>,
    pub aliases: Vec<String>,
    pub remit: String,
    /// `unverified`, `weak`, … as in the seed: the names have not all been checked.
    pub name_confidence: String,
}

#[derive(Debug, Clone)]
pub struct UnitsDirectory {
    units: Vec<Unit>,
}

impl UnitsDirectory {
    pub fn parse(tsv: &str) -> Result<Self, SeedError> {
        const FILE: &str = "units.tsv";
        let mut units = Vec::new();
        for (index, line) in tsv.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() != 7 {
                return Err(SeedError::new(FILE, index + 1, "expected 7 columns"));
            }
            let code = UnitCode::parse(cols[0])
                .map_err(|e| SeedError::new(FILE, index + 1, e.to_string()))?;
            let kind = match cols[2] {
                "department" => UnitKind::Department,
                "district" => UnitKind::District,
                other => {
                    return Err(SeedError::new(
                        FILE,
                        index + 1,
                        format!("unknown kind `{other}`"),
                    ))
                }
            };
            let district = Some(cols[3].trim())
                .filter(|d| !d.is_empty())
                .map(str::to_owned);
            if kind == UnitKind::District && district.is_none() {
                return Err(SeedError::new(
                    FILE,
                    index + 1,
                    "a district unit needs a district",
                ));
            }
            units.push(Unit {
                code,
                name: cols[1].to_owned(),
                kind,
                district,
                aliases: split_list(cols[4]),
                remit: cols[5].to_owned(),
                name_confidence: cols[6].to_owned(),
            });
        }
        Ok(Self { units })
    }

    pub fn builtin() -> Self {
        Self::parse(crate::seeds::UNITS_TSV).expect("seeds/units.tsv is checked by the tests")
    }

    pub fn all(&self) -> &[Unit] {
        &self.units
    }

    pub fn get(&self, code: &str) -> Option<&Unit> {
        self.units.iter().find(|u| u.code.as_str() == code)
    }

    /// The district bureau responsible for a canonical district name.
    pub fn district_bureau(&self, district: &str) -> Option<&Unit> {
        self.units
            .iter()
            .find(|u| u.kind == UnitKind::District && u.district.as_deref() == Some(district))
    }

    pub fn districts(&self) -> impl Iterator<Item = &str> {
        self.units.iter().filter_map(|u| u.district.as_deref())
    }
}

pub(crate) fn split_list(raw: &str) -> Vec<String> {
    raw.split([',', '，'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_directory_has_departments_and_ten_districts() {
        let dir = UnitsDirectory::builtin();
        assert_eq!(dir.districts().count(), 10);
        assert_eq!(
            dir.district_bureau("黄岛区").unwrap().code.as_str(),
            "xihaian"
        );
        assert_eq!(dir.get("qdedu-office").unwrap().kind, UnitKind::Department);
        assert!(dir.get("nope").is_none());
    }

    #[test]
    fn unit_codes_are_checked() {
        for ok in ["shinan", "qdedu-office", "a1"] {
            assert!(UnitCode::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "x", "Shinan", "市南", "a b", &"a".repeat(41)] {
            assert!(UnitCode::parse(bad).is_err(), "{bad}");
        }
    }
}
