//! First classifier: the taxonomy's weighted phrases (`seeds/taxonomy.toml`), urgency cues with
//! negation and past-event markers, district and school extraction. Every decision lists the terms
//! that drove it.

use crate::district::DistrictMatcher;
use crate::schools::SchoolDirectory;
use crate::text::{normalise, PhraseScan, PhraseSet, ScanMatches};
use crate::topic::TopicCode;
use crate::units::UnitsDirectory;
use crate::SeedError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Score of the implicit "none of them" class: a lone weak phrase should not win outright.
const NONE_SCORE: f64 = 1.5;
/// Softmax temperature over phrase scores.
const TEMPERATURE: f64 = 1.5;
const SUBTOPIC_WEIGHT: f64 = 2.0;
const MAX_ALTERNATIVES: usize = 3;
/// How many characters before an urgency cue a past-event marker cancels it.
const PAST_MARKER_WINDOW_CHARS: usize = 20;
const NEGATIONS: &[&str] = &["没有", "没", "未", "不是", "无"];

#[derive(Debug, Deserialize)]
struct TaxonomyFile {
    version: String,
    topic: Vec<TopicEntry>,
    #[serde(default)]
    urgency_cue: Vec<TextEntry>,
    #[serde(default)]
    past_marker: Vec<TextEntry>,
}

#[derive(Debug, Deserialize)]
struct TopicEntry {
    code: String,
    #[serde(default)]
    phrases: Vec<WeightedPhrase>,
    #[serde(default)]
    subtopics: Vec<Subtopic>,
}

#[derive(Debug, Deserialize)]
struct WeightedPhrase {
    text: String,
    weight: f64,
}

#[derive(Debug, Deserialize)]
struct Subtopic {
    #[allow(dead_code)] // documented in the seed, shown to operators later
    name: String,
    phrases: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct TextEntry {
    text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicScore {
    pub topic: TopicCode,
    pub confidence: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    pub topic: TopicCode,
    pub confidence: f64,
    pub alternatives: Vec<TopicScore>,
    pub urgent: bool,
    pub urgent_cue: Option<String>,
    pub district: Option<String>,
    pub school: Option<String>,
    pub terms: Vec<String>,
    /// False when nothing in the text points to education: such an `other` appeal goes back to
    /// the 12345 platform.
    pub education_related: bool,
    pub model_version: String,
}

/// What the text says besides its topic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extraction {
    pub urgent_cue: Option<String>,
    pub district: Option<String>,
    pub school: Option<String>,
}

/// Phrase evidence per topic.
#[derive(Debug, Clone, Default)]
pub struct PhraseScores {
    pub scores: BTreeMap<TopicCode, f64>,
    pub terms: BTreeMap<TopicCode, Vec<String>>,
}

impl PhraseScores {
    /// Whether any phrase of an education topic (anything but `other`) was found.
    pub fn mention_education(&self) -> bool {
        self.scores
            .iter()
            .any(|(topic, score)| *topic != TopicCode::Other && *score > 0.0)
    }
}

/// What the taxonomy's phrase sets found in one normalised text, in one pass over it.
#[derive(Debug, Clone)]
pub struct Findings<'t> {
    normalised_text: &'t str,
    matches: ScanMatches,
}

/// The phrase sets of a [`KeywordClassifier`], in the order its scan holds them.
const TOPIC_PHRASES: usize = 0;
const URGENCY_CUES: usize = 1;
const DISTRICT_NAMES: usize = 2;
const SCHOOL_NAMES: usize = 3;

#[derive(Debug, Clone)]
pub struct KeywordClassifier {
    version: String,
    /// Topic phrases, urgency cues, district names and school names, found in one pass.
    scan: PhraseScan,
    needles: PhraseSet,
    /// For each needle: the topics it points to and with which weight.
    weights: Vec<Vec<(TopicCode, f64)>>,
    cues: PhraseSet,
    past_markers: Vec<String>,
    districts: DistrictMatcher,
    schools: SchoolDirectory,
}

impl KeywordClassifier {
    pub fn from_seeds(
        taxonomy_toml: &str,
        units: &UnitsDirectory,
        schools: SchoolDirectory,
    ) -> Result<Self, SeedError> {
        const FILE: &str = "taxonomy.toml";
        let file: TaxonomyFile =
            toml::from_str(taxonomy_toml).map_err(|e| SeedError::new(FILE, 0, e.to_string()))?;
        let mut table: BTreeMap<String, Vec<(TopicCode, f64)>> = BTreeMap::new();
        for entry in &file.topic {
            let topic: TopicCode = entry
                .code
                .parse()
                .map_err(|e: crate::topic::UnknownTopic| SeedError::new(FILE, 0, e.to_string()))?;
            let phrases = entry
                .phrases
                .iter()
                .map(|p| (p.text.as_str(), p.weight))
                .chain(
                    entry
                        .subtopics
                        .iter()
                        .flat_map(|s| s.phrases.iter().map(|p| (p.as_str(), SUBTOPIC_WEIGHT))),
                );
            for (text, weight) in phrases {
                let slot = table.entry(normalise(text)).or_default();
                // A phrase listed twice for one topic keeps its highest weight.
                match slot.iter_mut().find(|(t, _)| *t == topic) {
                    Some(existing) => existing.1 = existing.1.max(weight),
                    None => slot.push((topic, weight)),
                }
            }
        }
        let (needles, weights): (Vec<String>, _) = table.into_iter().unzip();
        let needles = PhraseSet::new(needles);
        let cues = PhraseSet::new(
            file.urgency_cue
                .iter()
                .map(|c| normalise(&c.text))
                .collect(),
        );
        let districts = DistrictMatcher::new(units);
        let mut sets = [&needles; 4];
        sets[URGENCY_CUES] = &cues;
        sets[DISTRICT_NAMES] = districts.names();
        sets[SCHOOL_NAMES] = schools.names();
        let scan = PhraseScan::new(&sets);
        Ok(Self {
            version: format!("keywords-{}", file.version),
            scan,
            needles,
            weights,
            cues,
            past_markers: file
                .past_marker
                .iter()
                .map(|c| normalise(&c.text))
                .collect(),
            districts,
            schools,
        })
    }

    pub fn builtin() -> Self {
        let units = UnitsDirectory::builtin();
        Self::from_seeds(
            crate::seeds::TAXONOMY_TOML,
            &units,
            SchoolDirectory::builtin(),
        )
        .expect("seeds/taxonomy.toml is checked by the tests")
    }

    pub fn model_version(&self) -> &str {
        &self.version
    }

    pub fn districts(&self) -> &DistrictMatcher {
        &self.districts
    }

    pub fn schools(&self) -> &SchoolDirectory {
        &self.schools
    }

    /// Classify one appeal. `district_hint` and `school_hint` are what the operator typed, which
    /// wins over what the text says.
    pub fn classify(
        &self,
        text: &str,
        district_hint: Option<&str>,
        school_hint: Option<&str>,
    ) -> Classification {
        let text = normalise(text);
        let found = self.find(&text);
        let phrases = self.phrase_scores(&found);
        let education_related = phrases.mention_education();
        let PhraseScores { scores, mut terms } = phrases;

        let denominator: f64 = scores
            .values()
            .map(|s| (s / TEMPERATURE).exp())
            .sum::<f64>()
            + (NONE_SCORE / TEMPERATURE).exp();
        let mut ranked: Vec<TopicScore> = scores
            .iter()
            .map(|(topic, score)| TopicScore {
                topic: *topic,
                confidence: (score / TEMPERATURE).exp() / denominator,
            })
            .collect();
        ranked.sort_by(|a, b| {
            b.confidence
                .total_cmp(&a.confidence)
                .then(a.topic.cmp(&b.topic))
        });
        let (topic, confidence) = match ranked.first() {
            Some(best) => (best.topic, best.confidence),
            None => (TopicCode::Other, 0.0),
        };
        let alternatives: Vec<TopicScore> = ranked
            .iter()
            .skip(1)
            .take(MAX_ALTERNATIVES)
            .cloned()
            .collect();

        let Extraction {
            urgent_cue,
            district,
            school,
        } = self.extract(&found, district_hint, school_hint);

        Classification {
            topic,
            confidence: round4(confidence),
            alternatives: alternatives
                .into_iter()
                .map(|a: TopicScore| TopicScore {
                    confidence: round4(a.confidence),
                    ..a
                })
                .collect(),
            urgent: urgent_cue.is_some(),
            urgent_cue,
            district,
            school,
            terms: terms.remove(&topic).unwrap_or_default(),
            education_related,
            model_version: self.version.clone(),
        }
    }

    /// Topic phrases, urgency cues, districts and schools in a normalised text.
    pub fn find<'t>(&self, normalised_text: &'t str) -> Findings<'t> {
        Findings {
            normalised_text,
            matches: self.scan.find(normalised_text),
        }
    }

    /// Urgency cue, district and school of a text; the operator's hints win.
    pub fn extract(
        &self,
        found: &Findings<'_>,
        district_hint: Option<&str>,
        school_hint: Option<&str>,
    ) -> Extraction {
        let school = school_hint
            .and_then(|s| self.schools.by_name(s))
            .or_else(|| {
                let (_, index) = found.matches.of(SCHOOL_NAMES).first()?;
                Some(self.schools.school_named_by(*index))
            });
        let district = district_hint
            .and_then(|d| self.districts.canonical(d))
            .or_else(|| {
                let (_, index) = found.matches.of(DISTRICT_NAMES).first()?;
                Some(self.districts.district_named_by(*index))
            })
            .map(str::to_owned)
            .or_else(|| school.map(|s| s.district.clone()));
        Extraction {
            urgent_cue: self.urgent_cue(found),
            district,
            school: school
                .map(|s| s.name.clone())
                .or_else(|| school_hint.map(str::to_owned)),
        }
    }

    /// The taxonomy's evidence per topic: summed weights of the phrases found (each phrase
    /// counted once) and the phrases themselves.
    pub fn phrase_scores(&self, found: &Findings<'_>) -> PhraseScores {
        let mut scores: BTreeMap<TopicCode, f64> = BTreeMap::new();
        let mut terms: BTreeMap<TopicCode, Vec<String>> = BTreeMap::new();
        let mut seen = vec![false; self.needles.len()];
        for &(_, index) in found.matches.of(TOPIC_PHRASES) {
            if std::mem::replace(&mut seen[index], true) {
                continue; // a phrase counts once, however often it is repeated
            }
            for (topic, weight) in &self.weights[index] {
                *scores.entry(*topic).or_default() += weight;
                terms
                    .entry(*topic)
                    .or_default()
                    .push(self.needles.phrases()[index].clone());
            }
        }
        PhraseScores { scores, terms }
    }

    /// The first urgency cue that is neither negated (没有受伤) nor about a past event (去年…溺水).
    fn urgent_cue(&self, found: &Findings<'_>) -> Option<String> {
        let text = found.normalised_text;
        for &(pos, index) in found.matches.of(URGENCY_CUES) {
            let before = &text[..pos];
            if NEGATIONS.iter().any(|n| before.ends_with(n)) {
                continue;
            }
            let window: String = before
                .chars()
                .rev()
                .take(PAST_MARKER_WINDOW_CHARS)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if self
                .past_markers
                .iter()
                .any(|m| window.contains(m.as_str()))
            {
                continue;
            }
            return Some(self.cues.phrases()[index].clone());
        }
        None
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier() -> KeywordClassifier {
        KeywordClassifier::builtin()
    }

    #[test]
    fn one_scan_finds_what_each_phrase_set_finds_alone() {
        let c = classifier();
        let sets = [
            (TOPIC_PHRASES, &c.needles),
            (URGENCY_CUES, &c.cues),
            (DISTRICT_NAMES, c.districts.names()),
            (SCHOOL_NAMES, c.schools.names()),
        ];
        let texts = crate::seeds::TRAINING_EXAMPLES
            .iter()
            .chain([&crate::seeds::REPEAT_PAIRS_JSONL])
            .flat_map(|file| file.lines())
            .filter(|line| !line.trim().is_empty())
            .map(|line| line.to_owned());
        let mut matched = [0; 4];
        for line in texts {
            let text = normalise(&line);
            let found = c.find(&text);
            for (set, alone) in sets {
                assert_eq!(found.matches.of(set), alone.find(&text), "{text}");
                matched[set] += usize::from(!alone.find(&text).is_empty());
            }
        }
        // Every set was put to the test.
        assert!(matched.iter().all(|m| *m > 5), "{matched:?}");
    }

    #[test]
    fn taxonomy_covers_every_topic() {
        let file: TaxonomyFile = toml::from_str(crate::seeds::TAXONOMY_TOML).unwrap();
        let codes: Vec<&str> = file.topic.iter().map(|t| t.code.as_str()).collect();
        let expected: Vec<&str> = TopicCode::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(codes, expected);
        assert!(!file.urgency_cue.is_empty());
    }

    #[test]
    fn classifies_clear_appeals() {
        let c = classifier();
        let check = |text: &str, topic: TopicCode| {
            let got = c.classify(text, None, None);
            assert_eq!(got.topic, topic, "{text}: {got:?}");
        };
        check("学校食堂饭菜里吃出虫子，孩子回家拉肚子", TopicCode::Canteen);
        check(
            "校外培训机构收了一年学费跑路了，要求退费",
            TopicCode::OffCampusTutoring,
        );
        check("孩子在学校被几个同学欺负，天天被打", TopicCode::Bullying);
        check("小区物业乱收停车费，没人管", TopicCode::Other);
    }

    #[test]
    fn nothing_recognisable_is_other_with_zero_confidence() {
        let got = classifier().classify("hello world", None, None);
        assert_eq!(got.topic, TopicCode::Other);
        assert_eq!(got.confidence, 0.0);
        assert!(!got.education_related);
        assert!(got.alternatives.is_empty());
    }

    #[test]
    fn urgency_respects_negation_and_past_events() {
        let c = classifier();
        let check = |text: &str, urgent: bool| {
            let got = c.classify(text, None, None);
            assert_eq!(got.urgent, urgent, "{text}: {:?}", got.urgent_cue);
        };
        check("孩子现在食物中毒住院了，很多同学都在吐", true);
        check("学校旁边河边没有护栏，孩子们天天去玩水，随时可能溺水", true);
        check("去年暑假有学生溺水，希望今年加强宣传", false);
        check("孩子没有受伤，但学校处理不公", false);
    }

    #[test]
    fn district_comes_from_hint_then_text_then_school() {
        let c = classifier();
        assert_eq!(
            c.classify("食堂很差", Some("西海岸新区"), None)
                .district
                .as_deref(),
            Some("黄岛区")
        );
        assert_eq!(
            c.classify("市北区某小学食堂很差", None, None)
                .district
                .as_deref(),
            Some("市北区")
        );
        let got = c.classify("山东省青岛第二中学食堂很差", None, None);
        assert_eq!(got.district.as_deref(), Some("崂山区"));
        assert_eq!(got.school.as_deref(), Some("山东省青岛第二中学"));
    }
}
