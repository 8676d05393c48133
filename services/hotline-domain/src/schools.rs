//! The school directory (`seeds/schools.tsv`). Schools are not units: a case about a school goes to
//! the unit that administers it, which may forward it to the school.

use crate::text::{normalise, PhraseSet};
use crate::units::{split_list, UnitCode};
use crate::SeedError;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct School {
    pub name: String,
    pub aliases: Vec<String>,
    pub district: String,
    pub level: String,
    /// `public` or `private`.
    pub ownership: String,
    pub administering_unit: UnitCode,
    /// `confirmed`, `sourced-weak`, `unverified` or `placeholder`: most names are not yet checked.
    pub confidence: String,
}

impl School {
    pub fn is_private(&self) -> bool {
        self.ownership == "private"
    }
}

#[derive(Debug, Clone)]
pub struct SchoolDirectory {
    schools: Vec<School>,
    needles: PhraseSet,
    owners: Vec<usize>,
}

impl SchoolDirectory {
    pub fn parse(tsv: &str) -> Result<Self, SeedError> {
        const FILE: &str = "schools.tsv";
        let mut schools = Vec::new();
        for (index, line) in tsv.lines().enumerate().skip(1) {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() != 7 {
                return Err(SeedError::new(FILE, index + 1, "expected 7 columns"));
            }
            let administering_unit = UnitCode::parse(cols[5])
                .map_err(|e| SeedError::new(FILE, index + 1, e.to_string()))?;
            schools.push(School {
                name: cols[0].to_owned(),
                aliases: split_list(cols[1]),
                district: cols[2].to_owned(),
                level: cols[3].to_owned(),
                ownership: cols[4].to_owned(),
                administering_unit,
                confidence: cols[6].to_owned(),
            });
        }
        let mut needles = Vec::new();
        let mut owners = Vec::new();
        for (i, school) in schools.iter().enumerate() {
            for name in std::iter::once(&school.name).chain(&school.aliases) {
                needles.push(normalise(name));
                owners.push(i);
            }
        }
        Ok(Self {
            schools,
            needles: PhraseSet::new(needles),
            owners,
        })
    }

    pub fn builtin() -> Self {
        Self::parse(crate::seeds::SCHOOLS_TSV).expect("seeds/schools.tsv is checked by the tests")
    }

    pub fn all(&self) -> &[School] {
        &self.schools
    }

    pub fn by_name(&self, name: &str) -> Option<&School> {
        let name = normalise(name.trim());
        self.needles
            .phrases()
            .iter()
            .position(|n| *n == name)
            .map(|i| &self.schools[self.owners[i]])
    }

    /// The official names and aliases looked for in text.
    pub fn names(&self) -> &PhraseSet {
        &self.needles
    }

    /// The school of the name at `index` in [`Self::names`].
    pub fn school_named_by(&self, index: usize) -> &School {
        &self.schools[self.owners[index]]
    }

    /// The first school the text names (by official name or alias).
    pub fn find(&self, normalised_text: &str) -> Option<&School> {
        self.needles
            .find(normalised_text)
            .first()
            .map(|(_, index)| self.school_named_by(*index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::UnitsDirectory;

    #[test]
    fn every_school_is_administered_by_a_known_unit_in_a_known_district() {
        let units = UnitsDirectory::builtin();
        let schools = SchoolDirectory::builtin();
        assert!(schools.all().len() >= 30);
        let districts: Vec<&str> = units.districts().collect();
        for school in schools.all() {
            assert!(
                units.get(school.administering_unit.as_str()).is_some(),
                "{}: unknown unit {}",
                school.name,
                school.administering_unit
            );
            assert!(
                districts.contains(&school.district.as_str()),
                "{}",
                school.name
            );
        }
    }

    #[test]
    fn finds_schools_by_name_and_alias() {
        let schools = SchoolDirectory::builtin();
        let found = schools.find(&normalise("我孩子在山东省青岛第二中学读高一"));
        assert_eq!(found.map(|s| s.district.as_str()), Some("崂山区"));
        assert!(schools.find(&normalise("孩子学校食堂很差")).is_none());
    }
}
