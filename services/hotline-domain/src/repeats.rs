//! Repeats and duplicates (重复件): is a new appeal the same matter as an earlier one?
//!
//! Two ways to be the same matter (thresholds in `seeds/proactive.toml`, measured by
//! `hotline bench repeats` on the labelled pairs in `seeds/repeats/pairs.jsonl`):
//! - the same caller (phones compared by keyed hash) within `same_caller_days`, about the same
//!   topic and place with some textual overlap, or about anything with strong overlap;
//! - different callers about the same school and topic within `other_caller_hours`, with texts
//!   that overlap strongly (parents forwarding one message, several witnesses of one incident).
//!
//! The text measure is character-bigram overlap on normalised text: robust to segmentation,
//! traditional characters and punctuation. Near-identical complaints about *different* schools
//! are never linked: the school must match.

use crate::text::normalise;
use crate::topic::TopicCode;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RepeatPolicy {
    pub same_caller_days: i64,
    /// Same caller, same topic and place: this much overlap suffices (people re-tell the story).
    pub same_caller_same_topic_similarity: f64,
    /// Same caller, anything else: the texts must overlap this much.
    pub same_caller_similarity: f64,
    pub other_caller_hours: i64,
    /// Different callers, same school and topic.
    pub other_caller_similarity: f64,
}

/// A text's character-bigram set, hashed and sorted, for overlap measures.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint(Vec<u32>);

impl Fingerprint {
    pub fn of(text: &str) -> Self {
        let chars: Vec<char> = normalise(text)
            .chars()
            .filter(|c| c.is_alphanumeric())
            .collect();
        let mut grams: Vec<u32> = chars
            .windows(2)
            .map(|w| (w[0] as u32).wrapping_mul(0x9E37_79B1) ^ (w[1] as u32))
            .collect();
        if grams.is_empty() {
            grams.extend(chars.first().map(|c| *c as u32));
        }
        grams.sort_unstable();
        grams.dedup();
        Self(grams)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn shared(&self, other: &Fingerprint) -> usize {
        let (mut i, mut j, mut shared) = (0, 0, 0);
        while i < self.0.len() && j < other.0.len() {
            match self.0[i].cmp(&other.0[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    shared += 1;
                    i += 1;
                    j += 1;
                }
            }
        }
        shared
    }

    /// Overlap in [0, 1]: the mean of Jaccard and containment in the shorter text, so a short
    /// follow-up call that repeats part of a long first one still scores, while two long texts
    /// must share much of their wording.
    pub fn similarity(&self, other: &Fingerprint) -> f64 {
        if self.is_empty() || other.is_empty() {
            return 0.0;
        }
        let shared = self.shared(other) as f64;
        let union = (self.len() + other.len()) as f64 - shared;
        let smaller = self.len().min(other.len()) as f64;
        0.5 * (shared / union) + 0.5 * (shared / smaller)
    }
}

/// What the judge needs to know of one appeal.
#[derive(Debug, Clone)]
pub struct AppealFacts<'a> {
    /// Keyed hash of the caller's phone, if known.
    pub caller: Option<&'a str>,
    pub topic: TopicCode,
    pub district: Option<&'a str>,
    pub school: Option<&'a str>,
    pub received_at: DateTime<Utc>,
    pub fingerprint: &'a Fingerprint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepeatKind {
    /// The same caller about the same matter.
    SameCaller,
    /// Another caller about the same matter at the same school.
    SameMatter,
}

impl RepeatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RepeatKind::SameCaller => "same_caller",
            RepeatKind::SameMatter => "same_matter",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RepeatMatch {
    pub kind: RepeatKind,
    pub similarity: f64,
}

fn same_place(a: &AppealFacts<'_>, b: &AppealFacts<'_>) -> bool {
    match (a.school, b.school) {
        (Some(x), Some(y)) => x == y,
        _ => match (a.district, b.district) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        },
    }
}

impl RepeatPolicy {
    pub fn builtin() -> Self {
        crate::seeds::proactive().repeats
    }

    /// Is `new` a repeat of `earlier`?
    pub fn judge(&self, new: &AppealFacts<'_>, earlier: &AppealFacts<'_>) -> Option<RepeatMatch> {
        let gap = new.received_at - earlier.received_at;
        if gap < Duration::zero() {
            return None;
        }
        let similarity = new.fingerprint.similarity(earlier.fingerprint);
        let same_caller = matches!((new.caller, earlier.caller), (Some(a), Some(b)) if a == b);
        if same_caller && gap <= Duration::days(self.same_caller_days) {
            let threshold = if new.topic == earlier.topic && same_place(new, earlier) {
                self.same_caller_same_topic_similarity
            } else {
                self.same_caller_similarity
            };
            return (similarity >= threshold).then_some(RepeatMatch {
                kind: RepeatKind::SameCaller,
                similarity,
            });
        }
        let same_school = matches!((new.school, earlier.school), (Some(a), Some(b)) if a == b);
        (same_school
            && new.topic == earlier.topic
            && gap <= Duration::hours(self.other_caller_hours)
            && similarity >= self.other_caller_similarity)
            .then_some(RepeatMatch {
                kind: RepeatKind::SameMatter,
                similarity,
            })
    }
}

/// One labelled pair of `seeds/repeats/pairs.jsonl`.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelledPair {
    pub id: String,
    pub kind: String,
    pub repeat: bool,
    pub hours_apart: i64,
    pub a: PairSide,
    pub b: PairSide,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PairSide {
    pub text: String,
    pub caller: String,
    pub topic: TopicCode,
    pub district: Option<String>,
    pub school: Option<String>,
}

impl LabelledPair {
    /// The policy's verdict on this pair: is b a repeat of a?
    pub fn judged(&self, policy: &RepeatPolicy) -> Option<RepeatMatch> {
        let t0 = DateTime::<Utc>::from_timestamp(1_780_000_000, 0).unwrap_or_default();
        let (fa, fb) = (Fingerprint::of(&self.a.text), Fingerprint::of(&self.b.text));
        fn facts<'a>(
            side: &'a PairSide,
            fingerprint: &'a Fingerprint,
            at: DateTime<Utc>,
        ) -> AppealFacts<'a> {
            AppealFacts {
                caller: Some(side.caller.as_str()),
                topic: side.topic,
                district: side.district.as_deref(),
                school: side.school.as_deref(),
                received_at: at,
                fingerprint,
            }
        }
        policy.judge(
            &facts(&self.b, &fb, t0 + Duration::hours(self.hours_apart)),
            &facts(&self.a, &fa, t0),
        )
    }
}

/// Precision and recall of a policy over labelled pairs, overall and per kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PairScores {
    pub pairs: usize,
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    /// kind → (pairs, judged correctly)
    pub by_kind: std::collections::BTreeMap<String, (usize, usize)>,
}

impl PairScores {
    pub fn of(policy: &RepeatPolicy, pairs: &[LabelledPair]) -> Self {
        let mut scores = PairScores::default();
        for pair in pairs {
            let predicted = pair.judged(policy).is_some();
            scores.pairs += 1;
            match (predicted, pair.repeat) {
                (true, true) => scores.true_positives += 1,
                (true, false) => scores.false_positives += 1,
                (false, true) => scores.false_negatives += 1,
                (false, false) => {}
            }
            let entry = scores.by_kind.entry(pair.kind.clone()).or_default();
            entry.0 += 1;
            entry.1 += usize::from(predicted == pair.repeat);
        }
        scores
    }

    pub fn precision(&self) -> f64 {
        let predicted = self.true_positives + self.false_positives;
        if predicted == 0 {
            1.0
        } else {
            self.true_positives as f64 / predicted as f64
        }
    }

    pub fn recall(&self) -> f64 {
        let actual = self.true_positives + self.false_negatives;
        if actual == 0 {
            1.0
        } else {
            self.true_positives as f64 / actual as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_of_texts() {
        let cases: &[(&str, &str, f64, f64)] = &[
            (
                "孩子学校食堂的饭菜是凉的",
                "孩子学校食堂的饭菜是凉的",
                1.0,
                1.0,
            ),
            (
                "孩子学校食堂的饭菜是凉的",
                "孩子學校食堂的飯菜是涼的！！",
                0.6,
                1.0,
            ),
            (
                "食堂饭菜是凉的",
                "上次反映食堂饭菜是凉的，到现在还没解决，孩子天天吃凉饭",
                0.55,
                0.9,
            ),
            ("食堂饭菜是凉的", "校外培训机构违规补课收费高", 0.0, 0.1),
            ("", "食堂", 0.0, 0.0),
            ("hello", "no chinese at all", 0.0, 0.3),
        ];
        for (a, b, low, high) in cases {
            let s = Fingerprint::of(a).similarity(&Fingerprint::of(b));
            assert!((*low..=*high).contains(&s), "{a} / {b}: {s}");
            let r = Fingerprint::of(b).similarity(&Fingerprint::of(a));
            assert!((s - r).abs() < 1e-12, "symmetric");
        }
    }

    #[test]
    fn the_rules() {
        let policy = RepeatPolicy::builtin();
        let t0 = DateTime::<Utc>::from_timestamp(1_780_000_000, 0).unwrap();
        let canteen = Fingerprint::of("青岛第七中学食堂周三午餐的鸡腿变质了，好几个孩子吃完拉肚子");
        let canteen_again =
            Fingerprint::of("七中食堂周三的鸡腿是坏的，我家孩子吃了也拉肚子，请查一查");
        let other_school =
            Fingerprint::of("青岛第九中学食堂周三午餐的鸡腿变质了，好几个孩子吃完拉肚子");
        let fees = Fingerprint::of("学校要求每人交两百元资料费，没有收据");
        let facts = |caller, school, topic, hours, fingerprint| AppealFacts {
            caller: Some(caller),
            topic,
            district: Some("市南区"),
            school: Some(school),
            received_at: t0 + Duration::hours(hours),
            fingerprint,
        };
        let first = facts("c1", "青岛第七中学", TopicCode::Canteen, 0, &canteen);
        let cases = [
            (
                "same caller, same matter, days later",
                facts("c1", "青岛第七中学", TopicCode::Canteen, 72, &canteen_again),
                Some(RepeatKind::SameCaller),
            ),
            (
                "same caller after the window",
                facts("c1", "青岛第七中学", TopicCode::Canteen, 24 * 31, &canteen),
                None,
            ),
            (
                "same caller, another matter",
                facts("c1", "青岛第七中学", TopicCode::Fees, 5, &fees),
                None,
            ),
            (
                "another parent, same incident",
                facts("c2", "青岛第七中学", TopicCode::Canteen, 3, &canteen_again),
                Some(RepeatKind::SameMatter),
            ),
            (
                "another parent, same words, another school",
                facts("c2", "青岛第九中学", TopicCode::Canteen, 3, &other_school),
                None,
            ),
            (
                "another parent, same incident, weeks later",
                facts(
                    "c2",
                    "青岛第七中学",
                    TopicCode::Canteen,
                    24 * 20,
                    &canteen_again,
                ),
                None,
            ),
            (
                "earlier than the first",
                facts("c1", "青岛第七中学", TopicCode::Canteen, -1, &canteen),
                None,
            ),
        ];
        for (name, new, expected) in cases {
            let got = policy.judge(&new, &first).map(|m| m.kind);
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn labelled_pairs_precision_and_recall() {
        let pairs = crate::seeds::repeat_pairs();
        assert!(pairs.len() >= 200, "{} pairs", pairs.len());
        let scores = PairScores::of(&RepeatPolicy::builtin(), &pairs);
        // The floors under the numbers README reports; a change that loses accuracy fails here.
        assert!(scores.precision() >= 0.95, "{scores:?}");
        assert!(scores.recall() >= 0.80, "{scores:?}");
    }
}
