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
    #[serde(default)]
    precedence: Vec<PrecedenceEntry>,
}

/// A precedence rule of `topics-rules.md` that no single phrase can carry: when the text holds a
/// phrase of every group in `when_all` and a topic in `over` has phrase evidence, `topic` takes
/// that evidence and gains `weight` besides.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrecedenceEntry {
    topic: String,
    #[serde(default)]
    over: Vec<String>,
    weight: f64,
    when_all: Vec<Vec<String>>,
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

/// A loaded [`PrecedenceEntry`]: its groups as bit positions over the cue phrases.
#[derive(Debug, Clone)]
struct Precedence {
    topic: TopicCode,
    over: Vec<TopicCode>,
    weight: f64,
    groups: usize,
}

const PRECEDENCE_CUES: usize = 4;
/// Each (rule, group) of the precedence rules is one bit, `GROUPS_PER_RULE × rule + group`.
type GroupBits = u64;
const GROUPS_PER_RULE: usize = 8;
const MAX_PRECEDENCE_RULES: usize = GroupBits::BITS as usize / GROUPS_PER_RULE;
/// How many characters before a precedence cue, within its clause, a denial cancels it
/// (不是哪个学校的在职老师).
const CUE_NEGATION_WINDOW_CHARS: usize = 10;
/// Denials only: 没有 and 无 would cancel 没有资质的培训机构 and 无证辅导班, which are no denial.
const CUE_NEGATIONS: &[&str] = &["不是", "并非"];

#[derive(Debug, Clone)]
pub struct KeywordClassifier {
    version: String,
    /// Topic phrases, urgency cues, district names, school names and precedence cues, found in
    /// one pass.
    scan: PhraseScan,
    needles: PhraseSet,
    /// For each needle: the topics it points to and with which weight.
    weights: Vec<Vec<(TopicCode, f64)>>,
    cues: PhraseSet,
    past_markers: Vec<String>,
    districts: DistrictMatcher,
    schools: SchoolDirectory,
    precedences: Vec<Precedence>,
    precedence_cues: PhraseSet,
    /// For each precedence cue: the (rule, group) bits it satisfies.
    cue_groups: Vec<GroupBits>,
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
        let (precedences, precedence_cues, cue_groups) = load_precedences(&file.precedence)?;
        let districts = DistrictMatcher::new(units);
        let mut sets = [&needles; 5];
        sets[URGENCY_CUES] = &cues;
        sets[DISTRICT_NAMES] = districts.names();
        sets[SCHOOL_NAMES] = schools.names();
        sets[PRECEDENCE_CUES] = &precedence_cues;
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
            precedences,
            precedence_cues,
            cue_groups,
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

    /// Topic phrases, urgency cues, districts, schools and precedence cues in a normalised text.
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
        // A known school's district wins over a district in the text: "我家住市北区，孩子在李沧区
        // 某小学…" is the school's bureau's case, wherever the family lives.
        let district = district_hint
            .and_then(|d| self.districts.canonical(d))
            .or_else(|| school.map(|s| s.district.as_str()))
            .or_else(|| self.district_in_text(found))
            .map(str::to_owned);
        Extraction {
            urgent_cue: self.urgent_cue(found),
            district,
            school: school
                .map(|s| s.name.clone())
                .or_else(|| school_hint.map(str::to_owned)),
        }
    }

    /// The district the text's matter is in: the first one named, except that where the family
    /// lives (我家住市北区，孩子在西海岸新区一所小学…) gives way to another district named.
    fn district_in_text<'a>(&'a self, found: &Findings<'_>) -> Option<&'a str> {
        let text = found.normalised_text;
        let mut named = found
            .matches
            .of(DISTRICT_NAMES)
            .iter()
            .filter(|(start, index)| !self.districts.names_another_place(text, *start, *index))
            .map(|(start, index)| {
                let before = last_chars(text.get(..*start).unwrap_or_default(), 4);
                let home = RESIDENCE_MARKERS.iter().any(|m| before.contains(m));
                (self.districts.district_named_by(*index), home)
            });
        let (first, first_is_home) = named.next()?;
        if !first_is_home {
            return Some(first);
        }
        named
            .find(|(district, home)| !home && *district != first)
            .map_or(Some(first), |(district, _)| Some(district))
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
        self.apply_precedences(found, &mut scores, &mut terms);
        PhraseScores { scores, terms }
    }

    /// Each precedence rule whose every group has a phrase in the text, not denied in its clause,
    /// settles a conflict: when a topic it overrides has evidence, its own topic takes that
    /// evidence and those phrases, and adds its weight. Its first term is the phrase found first in
    /// each group, joined by `+` (班主任+培训机构), so the operator sees why.
    fn apply_precedences(
        &self,
        found: &Findings<'_>,
        scores: &mut BTreeMap<TopicCode, f64>,
        terms: &mut BTreeMap<TopicCode, Vec<String>>,
    ) {
        let text = found.normalised_text;
        let cues: Vec<usize> = found
            .matches
            .of(PRECEDENCE_CUES)
            .iter()
            .filter(|&&(pos, _)| !denied_in_clause(&text[..pos]))
            .map(|&(_, index)| index)
            .collect();
        if cues.is_empty() {
            return;
        }
        let satisfied = cues
            .iter()
            .fold(0, |bits, &index| bits | self.cue_groups[index]);
        for (rule, precedence) in self.precedences.iter().enumerate() {
            let all_groups = ((1 << precedence.groups) - 1) << (GROUPS_PER_RULE * rule);
            if satisfied & all_groups != all_groups
                || !precedence.over.iter().any(|o| scores.contains_key(o))
            {
                continue;
            }
            let mut evidence = precedence.weight;
            let mut moved = Vec::new();
            for over in &precedence.over {
                evidence += scores.remove(over).unwrap_or(0.0);
                moved.extend(terms.remove(over).unwrap_or_default());
            }
            *scores.entry(precedence.topic).or_default() += evidence;
            let because: Vec<&str> = (0..precedence.groups)
                .filter_map(|group| {
                    let bit = 1 << (GROUPS_PER_RULE * rule + group);
                    cues.iter()
                        .find(|&&index| self.cue_groups[index] & bit != 0)
                        .map(|&index| self.precedence_cues.phrases()[index].as_str())
                })
                .collect();
            let winner = terms.entry(precedence.topic).or_default();
            winner.insert(0, because.join("+"));
            for term in moved {
                if !winner.contains(&term) {
                    winner.push(term);
                }
            }
        }
    }

    /// The first urgency cue that is neither negated (没有受伤) nor about a past event (去年…溺水).
    fn urgent_cue(&self, found: &Findings<'_>) -> Option<String> {
        let text = found.normalised_text;
        for &(pos, index) in found.matches.of(URGENCY_CUES) {
            let before = &text[..pos];
            if NEGATIONS.iter().any(|n| before.ends_with(n)) {
                continue;
            }
            let window = last_chars(before, PAST_MARKER_WINDOW_CHARS);
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

/// The rules, their cue phrases as one set, and each cue's (rule, group) bits.
fn load_precedences(
    entries: &[PrecedenceEntry],
) -> Result<(Vec<Precedence>, PhraseSet, Vec<GroupBits>), SeedError> {
    let refuse = |message: String| SeedError::new("taxonomy.toml", 0, message);
    if entries.len() > MAX_PRECEDENCE_RULES {
        return Err(refuse(format!(
            "more than {MAX_PRECEDENCE_RULES} precedence rules"
        )));
    }
    let mut cue_groups: BTreeMap<String, GroupBits> = BTreeMap::new();
    let mut rules = Vec::with_capacity(entries.len());
    for (rule, entry) in entries.iter().enumerate() {
        let name = &entry.topic;
        let topic = |code: &str| {
            code.parse::<TopicCode>()
                .map_err(|e| refuse(format!("precedence for {name}: {e}")))
        };
        let own = topic(&entry.topic)?;
        let over = entry
            .over
            .iter()
            .map(|o| topic(o))
            .collect::<Result<Vec<_>, _>>()?;
        if over.contains(&own) {
            return Err(refuse(format!("precedence for {name}: over names itself")));
        }
        if !entry.weight.is_finite() || entry.weight < 0.0 {
            return Err(refuse(format!(
                "precedence for {name}: weight must be a number ≥ 0"
            )));
        }
        if entry.when_all.is_empty() || entry.when_all.len() > GROUPS_PER_RULE {
            return Err(refuse(format!(
                "precedence for {name}: 1 to {GROUPS_PER_RULE} groups in when_all"
            )));
        }
        let mut in_this_rule: BTreeMap<String, usize> = BTreeMap::new();
        for (group, phrases) in entry.when_all.iter().enumerate() {
            let phrases: Vec<String> = phrases
                .iter()
                .map(|p| normalise(p))
                .filter(|p| !p.is_empty())
                .collect();
            if phrases.is_empty() {
                return Err(refuse(format!("precedence for {name}: an empty group")));
            }
            for phrase in phrases {
                // One phrase in two groups would satisfy both alone.
                if let Some(other) = in_this_rule.insert(phrase.clone(), group) {
                    if other != group {
                        return Err(refuse(format!(
                            "precedence for {name}: {phrase} is in two groups"
                        )));
                    }
                }
                *cue_groups.entry(phrase).or_default() |= 1 << (GROUPS_PER_RULE * rule + group);
            }
        }
        rules.push(Precedence {
            topic: own,
            over,
            weight: entry.weight,
            groups: entry.when_all.len(),
        });
    }
    let (phrases, bits): (Vec<String>, Vec<GroupBits>) = cue_groups.into_iter().unzip();
    Ok((rules, PhraseSet::new(phrases), bits))
}

/// Whether a denial (不是, 并非) stands in the last clause of `before`, within a few characters
/// of its end.
fn denied_in_clause(before: &str) -> bool {
    let clause = last_chars(before, CUE_NEGATION_WINDOW_CHARS)
        .rsplit([',', '。', '!', '?', ';', '、', '\n'])
        .next()
        .unwrap_or_default();
    CUE_NEGATIONS.iter().any(|n| clause.contains(n))
}

/// The last `n` characters of `text` (all of it when shorter), without copying.
/// Words just before a district that say the family lives there, not that the matter is there.
const RESIDENCE_MARKERS: [&str; 6] = ["家住", "住在", "我家在", "家在", "户籍", "户口"];

fn last_chars(text: &str, n: usize) -> &str {
    match n.checked_sub(1) {
        None => "",
        Some(skip) => text
            .char_indices()
            .rev()
            .nth(skip)
            .map_or(text, |(at, _)| &text[at..]),
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
            (PRECEDENCE_CUES, &c.precedence_cues),
        ];
        let texts = crate::seeds::TRAINING_EXAMPLES
            .iter()
            .chain([&crate::seeds::REPEAT_PAIRS_JSONL])
            .flat_map(|file| file.lines())
            .filter(|line| !line.trim().is_empty())
            .map(|line| line.to_owned());
        let mut matched = [0; 5];
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
    fn precedence_rules_need_every_group_and_take_the_overridden_evidence() {
        use TopicCode::*;
        let c = classifier();
        /// The rule's term and the topic it overrode, when a rule fires.
        type Fired<'a> = Option<(&'a str, TopicCode)>;
        let cases: &[(&str, TopicCode, Fired<'_>)] = &[
            (
                "班主任周末在培训机构给本班学生上课，一次收两百",
                TeacherConduct,
                Some(("班主任+培训机构", OffCampusTutoring)),
            ),
            (
                "举报二中在职老师私下开补习班",
                TeacherConduct,
                Some(("在职老师+补习班", OffCampusTutoring)),
            ),
            ("培训机构跑路了，交的学费不退", OffCampusTutoring, None),
            // Denied in its clause: the institution's own teachers.
            (
                "这家培训机构的老师不是哪个学校的在职老师，交了一年学费现在不退",
                OffCampusTutoring,
                None,
            ),
            (
                "民办学校乱收费，一学期学费涨了三千",
                PrivateSchool,
                Some(("民办学校+收费", Fees)),
            ),
            ("公办小学乱收费，要求家长交资料费", Fees, None),
        ];
        for (text, topic, fired) in cases {
            let normalised = normalise(text);
            let scores = c.phrase_scores(&c.find(&normalised));
            let got = c.classify(text, None, None);
            assert_eq!(got.topic, *topic, "{text}: {got:?}");
            match fired {
                Some((term, overridden)) => {
                    assert_eq!(got.terms.first().map(String::as_str), Some(*term), "{text}");
                    assert!(!scores.scores.contains_key(overridden), "{text}");
                    assert!(!scores.terms.contains_key(overridden), "{text}");
                }
                None => assert!(got.terms.iter().all(|t| !t.contains('+')), "{text}"),
            }
        }
    }

    #[test]
    fn windows_before_a_cue_count_characters_and_stop_at_the_clause() {
        let cases = [
            ("", 3, ""),
            ("abc", 0, ""),
            ("abc", 5, "abc"),
            ("学校的老师", 2, "老师"),
        ];
        for (text, n, expected) in cases {
            assert_eq!(last_chars(text, n), expected, "{text} {n}");
        }
        let denied = [
            ("不是哪个学校的", true),
            ("并非本校", true),
            ("不是学校的错,本班", false),
            ("我们说了很多很多话不是说一二三四五六七八九十", false),
            ("", false),
        ];
        for (before, expected) in denied {
            assert_eq!(denied_in_clause(before), expected, "{before}");
        }
    }

    /// A small taxonomy: fees and private_school phrases, and the given precedence rules.
    fn with_precedences(precedence: &str) -> Result<KeywordClassifier, SeedError> {
        let taxonomy = format!(
            "version = \"t\"\n\
             [[topic]]\ncode = \"fees\"\nphrases = [{{ text = \"收费\", weight = 1.0 }}]\n\
             [[topic]]\ncode = \"private_school\"\nphrases = [{{ text = \"私立\", weight = 1.0 }}]\n\
             {precedence}"
        );
        KeywordClassifier::from_seeds(
            &taxonomy,
            &UnitsDirectory::builtin(),
            SchoolDirectory::builtin(),
        )
    }

    fn rule(groups: &str) -> String {
        format!(
            "[[precedence]]\ntopic = \"private_school\"\nover = [\"fees\"]\nweight = 1.0\n\
             when_all = {groups}\n"
        )
    }

    #[test]
    fn a_rule_settles_a_conflict_and_keeps_the_phrases_behind_it() {
        let c = with_precedences(&rule("[[\"民办\"], [\"学费\", \"收费\"]]")).unwrap();
        let scores = |text: &str| c.phrase_scores(&c.find(&normalise(text)));
        // Fires: fees' evidence and phrase move to private_school, with the rule's weight.
        let fired = scores("民办学校乱收费");
        assert_eq!(fired.scores.get(&TopicCode::PrivateSchool), Some(&2.0));
        assert_eq!(
            fired.terms[&TopicCode::PrivateSchool],
            ["民办+收费", "收费"]
        );
        assert!(!fired.scores.contains_key(&TopicCode::Fees));
        // Nothing to settle: fees has no evidence (学费 is no fees phrase here), so no bonus.
        let quiet = scores("民办学校学费贵");
        assert!(quiet.scores.is_empty(), "{:?}", quiet.scores);
        // One group alone is not enough.
        assert_eq!(
            scores("公办学校乱收费").scores.get(&TopicCode::Fees),
            Some(&1.0)
        );
    }

    #[test]
    fn bad_precedence_rules_are_refused_at_load() {
        let eight_groups = format!(
            "[{}]",
            (0..8)
                .map(|g| format!("[\"词{g}\"]"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let eight_rules = rule("[[\"民办\"]]").repeat(7) + &rule(&eight_groups);
        let nine_rules = rule("[[\"民办\"]]").repeat(9);
        let cases: &[(String, Option<&str>)] = &[
            (rule("[[\"公办\"], [\"收费\"]]"), None),
            (eight_rules, None),
            (nine_rules, Some("more than 8 precedence rules")),
            (
                rule("[[\"公办\"]]").replace("topic = \"private_school\"", "topic = \"feez\""),
                Some("feez"),
            ),
            (
                rule("[[\"公办\"]]").replace("over = [\"fees\"]", "over = [\"feez\"]"),
                Some("feez"),
            ),
            (
                rule("[[\"公办\"]]").replace("over = [\"fees\"]", "over = [\"private_school\"]"),
                Some("over names itself"),
            ),
            (
                rule("[[\"公办\"]]").replace("weight = 1.0", "weight = -1.0"),
                Some("weight must be"),
            ),
            (
                rule("[[\"公办\"]]").replace("over =", "overs ="),
                Some("unknown field"),
            ),
            (rule("[]"), Some("1 to 8 groups")),
            (
                rule(&format!(
                    "[{}, [\"词8\"]]",
                    &eight_groups[1..eight_groups.len() - 1]
                )),
                Some("1 to 8 groups"),
            ),
            (rule("[[\"公办\"], []]"), Some("an empty group")),
            (
                rule("[[\"公办\"], [\"公办\"]]"),
                Some("公办 is in two groups"),
            ),
        ];
        for (precedence, error) in cases {
            match (with_precedences(precedence), error) {
                (Ok(_), None) => {}
                (Err(e), Some(message)) => {
                    assert!(e.to_string().contains(message), "{precedence}: {e}")
                }
                (got, _) => panic!("{precedence}: {:?}", got.err()),
            }
        }
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
        assert_eq!(
            c.classify("即墨路小学门口的黑车天天接送学生", None, None)
                .district
                .as_deref(),
            None
        );
        assert_eq!(
            c.classify("我家住在胶州湾隧道口，孩子在即墨上学", None, None)
                .district
                .as_deref(),
            Some("即墨区")
        );
        for (text, district) in [
            (
                "我家住市北区，孩子在西海岸新区一所小学上学，食堂饭菜有虫",
                Some("黄岛区"),
            ),
            (
                "家住李沧区，户籍在崂山区，孩子想在市南区上学",
                Some("市南区"),
            ),
            ("我家住在城阳区，附近的小学食堂很差", Some("城阳区")),
            ("市北区一所小学，我家住李沧区", Some("市北区")),
        ] {
            assert_eq!(
                c.classify(text, None, None).district.as_deref(),
                district,
                "{text}"
            );
        }
        let got = c.classify(
            "我家住市北区，孩子在山东省青岛第二中学，食堂很差",
            None,
            None,
        );
        assert_eq!(got.district.as_deref(), Some("崂山区"));
        let got = c.classify("山东省青岛第二中学食堂很差", None, None);
        assert_eq!(got.district.as_deref(), Some("崂山区"));
        assert_eq!(got.school.as_deref(), Some("山东省青岛第二中学"));
    }
}
