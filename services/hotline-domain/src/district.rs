//! Finding Qingdao's districts in free text, with the names citizens actually use.

use crate::text::{normalise, PhraseSet};
use crate::units::UnitsDirectory;

/// Aliases beyond the canonical names, old names included (四方区 merged into 市北区 in 2012,
/// 胶南市 into 黄岛区 in 2012, 即墨 became a district in 2017).
const EXTRA_ALIASES: &[(&str, &str)] = &[
    ("西海岸新区", "黄岛区"),
    ("西海岸", "黄岛区"),
    ("青岛开发区", "黄岛区"),
    ("黄岛开发区", "黄岛区"),
    ("胶南", "黄岛区"),
    ("四方区", "市北区"),
    ("即墨市", "即墨区"),
];

#[derive(Debug, Clone)]
pub struct DistrictMatcher {
    needles: PhraseSet,
    canonical: Vec<String>,
}

impl DistrictMatcher {
    pub fn new(units: &UnitsDirectory) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for district in units.districts() {
            pairs.push((district.to_owned(), district.to_owned()));
            // 市南区 → 市南, 胶州市 → 胶州: citizens drop the suffix.
            let short: String = district
                .chars()
                .take(district.chars().count() - 1)
                .collect();
            if short.chars().count() >= 2 {
                pairs.push((short, district.to_owned()));
            }
        }
        for unit in units.all() {
            if let Some(district) = &unit.district {
                for alias in &unit.aliases {
                    pairs.push((alias.clone(), district.clone()));
                }
            }
        }
        for (alias, district) in EXTRA_ALIASES {
            pairs.push(((*alias).to_owned(), (*district).to_owned()));
        }
        pairs.sort();
        pairs.dedup();
        let (needles, canonical) = pairs
            .into_iter()
            .map(|(alias, district)| (normalise(&alias), district))
            .unzip();
        Self {
            needles: PhraseSet::new(needles),
            canonical,
        }
    }

    /// Canonical name for a district given by name or alias, e.g. `西海岸新区` → `黄岛区`.
    pub fn canonical(&self, name: &str) -> Option<&str> {
        let name = normalise(name.trim());
        self.needles
            .phrases()
            .iter()
            .position(|n| *n == name)
            .map(|i| self.canonical[i].as_str())
    }

    /// The names and aliases looked for in text.
    pub fn names(&self) -> &PhraseSet {
        &self.needles
    }

    /// The canonical district of the name at `index` in [`Self::names`].
    pub fn district_named_by(&self, index: usize) -> &str {
        &self.canonical[index]
    }

    /// True when the name found at `start` is part of another place's name: Qingdao names its
    /// streets after its towns (即墨路 and 胶州路 are in 市北区, 黄岛路 in 市南区) and 胶州湾 is the
    /// bay, so a two-character name followed by 路, 街 (not 街道, a subdistrict), 湾, 大桥, 大道,
    /// 隧道 or 高速 is not a district.
    pub fn names_another_place(&self, normalised_text: &str, start: usize, index: usize) -> bool {
        let Some(name) = self.needles.phrases().get(index) else {
            return false;
        };
        if name.chars().count() > 2 {
            return false;
        }
        let after = normalised_text
            .get(start + name.len()..)
            .unwrap_or_default();
        // 城阳街道 is a subdistrict of 城阳区, not a street.
        ["路", "街", "湾", "大桥", "大道", "隧道", "高速"]
            .iter()
            .any(|suffix| after.starts_with(suffix))
            && !after.starts_with("街道")
    }

    /// Every district the text mentions, in order of first mention, without repeats.
    pub fn find_all(&self, normalised_text: &str) -> Vec<&str> {
        let mut found: Vec<&str> = Vec::new();
        for (start, index) in self.needles.find(normalised_text) {
            if self.names_another_place(normalised_text, start, index) {
                continue;
            }
            let district = self.canonical[index].as_str();
            if !found.contains(&district) {
                found.push(district);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_districts_by_any_name() {
        let matcher = DistrictMatcher::new(&UnitsDirectory::builtin());
        let check = |text: &str, expected: &[&str]| {
            assert_eq!(matcher.find_all(&normalise(text)), expected, "{text}");
        };
        check("我家在西海岸新区，孩子上学远", &["黄岛区"]);
        check("市南区某小学", &["市南区"]);
        check("住在市北，孩子在李沧区上学", &["市北区", "李沧区"]);
        check("原胶南市的学校", &["黄岛区"]);
        check("即墨区教体局不回复", &["即墨区"]);
        check("胶州市和平度", &["胶州市", "平度市"]);
        check("孩子学校食堂很差", &[]);
        // Streets and the bay named after towns are not those districts.
        check("即墨路小学门口天天堵车", &[]);
        check("胶州湾隧道出口附近的学校", &[]);
        check("住在黄岛路，孩子在即墨区上学", &["即墨区"]);
        check("胶州路上的小学，胶州的亲戚", &["胶州市"]);
        check("即墨区即墨路", &["即墨区"]);
        check("城阳街道一所小学", &["城阳区"]);
        check("", &[]);
    }

    #[test]
    fn canonical_names() {
        let matcher = DistrictMatcher::new(&UnitsDirectory::builtin());
        assert_eq!(matcher.canonical("西海岸新区"), Some("黄岛区"));
        assert_eq!(matcher.canonical(" 市南区 "), Some("市南区"));
        assert_eq!(matcher.canonical("上海"), None);
    }
}
