//! Text → sparse feature vector. Words from jieba (with the domain's user dictionary) and character
//! n-grams are hashed into a fixed number of buckets (the hashing trick: no vocabulary to store or
//! look up), weighted by sublinear term frequency and IDF, and L2-normalised.

use hotline_domain::text::normalise;
use jieba_rs::Jieba;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureConfig {
    /// log2 of the number of hash buckets.
    pub bucket_bits: u32,
    /// Character n-grams from 1 to this length (0 = none).
    pub char_ngram_max: usize,
    /// Add jieba word unigrams.
    pub words: bool,
    /// Add word bigrams.
    pub word_bigrams: bool,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            bucket_bits: 20,
            char_ngram_max: 3,
            words: true,
            word_bigrams: false,
        }
    }
}

/// Words the default jieba dictionary lacks, which citizens and the bureau use.
const DOMAIN_WORDS: &[&str] = &[
    "双减",
    "校外培训",
    "培训机构",
    "课后服务",
    "校园餐",
    "配餐公司",
    "控辍保学",
    "教辅",
    "代收费",
    "普惠园",
    "小学化",
    "划片",
    "学区房",
    "学籍",
    "中考",
    "高考",
    "教体局",
    "西海岸新区",
    "有偿补课",
    "校园欺凌",
    "课外班",
    "托管班",
    "延时服务",
    "职业学校",
    "职业院校",
    "12345",
    "退费",
    "跑路",
];

/// Segmentation and hashing. Holds the jieba dictionary (built in; no download).
pub struct Featurizer {
    config: FeatureConfig,
    jieba: Jieba,
}

impl std::fmt::Debug for Featurizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Featurizer")
            .field("config", &self.config)
            .finish()
    }
}

/// FNV-1a over the feature's kind and characters: stable across runs and platforms.
fn hash_chars(kind: u8, chars: &[char]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(kind);
    h = h.wrapping_mul(0x0100_0000_01b3);
    for c in chars {
        h ^= u64::from(*c as u32);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn hash_str(kind: u8, s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(kind);
    h = h.wrapping_mul(0x0100_0000_01b3);
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn is_content(c: char) -> bool {
    // Most characters of an appeal are common CJK ideographs, ASCII or Chinese punctuation;
    // deciding those here spares the Unicode table lookup behind `is_alphanumeric` (a few
    // hundred instructions for each 、。“”《》).
    match c {
        '\u{4E00}'..='\u{9FFF}' => true,
        _ if c.is_ascii() => c.is_ascii_alphanumeric(),
        '\u{2000}'..='\u{206F}' | '\u{3000}'..='\u{3004}' | '\u{3008}'..='\u{3020}' => false,
        _ => c.is_alphanumeric(),
    }
}

impl Featurizer {
    pub fn new(config: FeatureConfig) -> Self {
        let mut jieba = Jieba::new();
        for word in DOMAIN_WORDS {
            jieba.add_word(word, Some(10_000), None);
        }
        Self { config, jieba }
    }

    pub fn config(&self) -> &FeatureConfig {
        &self.config
    }

    pub fn buckets(&self) -> usize {
        1 << self.config.bucket_bits
    }

    /// Words of the text as jieba cuts it (normalised, punctuation dropped).
    pub fn words<'a>(&self, normalised: &'a str) -> Vec<&'a str> {
        self.jieba
            .cut(normalised, false)
            .into_iter()
            .map(|token| token.word)
            .filter(|w| w.chars().any(is_content))
            .collect()
    }

    /// Raw counts per bucket, sorted by bucket, duplicates merged.
    pub fn counts(&self, text: &str, out: &mut Vec<(u32, f32)>) {
        let normalised = normalise(text);
        let words = if self.config.words {
            self.words(&normalised)
        } else {
            Vec::new()
        };
        self.counts_from(&normalised, &words, out);
    }

    /// The bucket of a word feature.
    pub fn word_bucket(&self, word: &str) -> u32 {
        (hash_str(100, word) & ((1u64 << self.config.bucket_bits) - 1)) as u32
    }

    /// [`Self::counts`] for a text already normalised and cut into words (callers that need the
    /// words too cut only once).
    pub fn counts_from(&self, normalised: &str, words: &[&str], out: &mut Vec<(u32, f32)>) {
        out.clear();
        let mask = (1u64 << self.config.bucket_bits) - 1;
        let mut push = |h: u64| out.push(((h & mask) as u32, 1.0));
        if self.config.char_ngram_max > 0 {
            // n-grams never span punctuation or spaces: they are runs of content characters.
            let chars: Vec<char> = normalised.chars().collect();
            let mut start = 0;
            while start < chars.len() {
                if !is_content(chars[start]) {
                    start += 1;
                    continue;
                }
                let mut end = start;
                while end < chars.len() && is_content(chars[end]) {
                    end += 1;
                }
                let run = &chars[start..end];
                for n in 1..=self.config.char_ngram_max {
                    for window in run.windows(n) {
                        push(hash_chars(n as u8, window));
                    }
                }
                start = end;
            }
        }
        if self.config.words {
            for word in words {
                push(hash_str(100, word));
            }
            if self.config.word_bigrams {
                for pair in words.windows(2) {
                    push(hash_str(101, pair[0]) ^ hash_str(102, pair[1]));
                }
            }
        }
        sort_by_bucket(out, self.config.bucket_bits);
        out.dedup_by(|next, kept| {
            if next.0 == kept.0 {
                kept.1 += next.1;
                true
            } else {
                false
            }
        });
    }
}

/// Widest radix digit: 2^11 counters (8 KiB) still sit in the L1 cache.
const MAX_DIGIT_BITS: u32 = 11;
/// Scratch buffers larger than this (features of a very long text) are not kept between calls.
const MAX_KEPT_SCRATCH: usize = 1 << 16;

thread_local! {
    /// The radix sort's second buffer, kept between calls: allocating and zeroing one for every
    /// text cost about 3 % of classifying it.
    static SORT_SCRATCH: std::cell::RefCell<Vec<(u32, f32)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Sorts features by bucket, stably: an LSD radix sort in as few passes of at most 11-bit digits
/// as the bucket number needs (two for the models here: 9 bits each for 2^18 buckets, 10 for
/// 2^20). A text has about a thousand features, and a comparison sort of them was the largest
/// single cost of classifying it.
fn sort_by_bucket(features: &mut [(u32, f32)], bucket_bits: u32) {
    if features.len() < 64 {
        features.sort_by_key(|(b, _)| *b);
        return;
    }
    let passes = bucket_bits.div_ceil(MAX_DIGIT_BITS).max(1);
    // The digit width is a constant of each instance, so the counters are an array on the stack
    // indexed without bounds checks.
    match bucket_bits.div_ceil(passes) {
        0..=8 => radix_sort::<256>(features, passes),
        9 => radix_sort::<512>(features, passes),
        10 => radix_sort::<1024>(features, passes),
        _ => radix_sort::<2048>(features, passes),
    }
}

/// A bucket and its value.
type Feature = (u32, f32);

fn radix_sort<const DIGITS: usize>(features: &mut [(u32, f32)], passes: u32) {
    let digit_bits = DIGITS.trailing_zeros();
    SORT_SCRATCH.with_borrow_mut(|kept| {
        if kept.len() < features.len() {
            kept.resize(features.len(), (0, 0.0));
        }
        let scratch = &mut kept[..features.len()];
        for pass in 0..passes {
            let shift = pass * digit_bits;
            let digit = |bucket: u32| (bucket >> shift) as usize & (DIGITS - 1);
            let (from, to): (&[Feature], &mut [Feature]) = if pass % 2 == 0 {
                (&*features, &mut *scratch)
            } else {
                (&*scratch, &mut *features)
            };
            let mut starts = [0usize; DIGITS];
            for (bucket, _) in from {
                starts[digit(*bucket)] += 1;
            }
            let mut start = 0;
            for slot in starts.iter_mut() {
                let count = *slot;
                *slot = start;
                start += count;
            }
            for feature in from {
                let slot = &mut starts[digit(feature.0)];
                to[*slot] = *feature;
                *slot += 1;
            }
        }
        if passes % 2 == 1 {
            features.copy_from_slice(scratch);
        }
        if kept.len() > MAX_KEPT_SCRATCH {
            *kept = Vec::new();
        }
    });
}

/// Sublinear TF × IDF, then L2 normalisation, in place.
pub fn weigh(features: &mut [(u32, f32)], idf: &[f32]) {
    let mut norm = 0.0f32;
    for (bucket, value) in features.iter_mut() {
        // Most features occur once, and 1 + ln 1 = 1: skip the logarithm for them.
        let tf = if *value == 1.0 { 1.0 } else { 1.0 + value.ln() };
        *value = tf * idf[*bucket as usize];
        norm += *value * *value;
    }
    if norm > 0.0 {
        let inv = norm.sqrt().recip();
        for (_, value) in features.iter_mut() {
            *value *= inv;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segmentation_keeps_domain_words_whole() {
        let f = Featurizer::new(FeatureConfig::default());
        let check = |text: &str, expected: &[&str]| {
            let normalised = normalise(text);
            let words = f.words(&normalised);
            for word in expected {
                assert!(words.contains(word), "{text}: {words:?} lacks {word}");
            }
        };
        check("落实双减政策，规范校外培训", &["双减", "校外培训"]);
        check("西海岸新区的学区房划片问题", &["西海岸新区", "划片"]);
        check("孩子在学校被同学打了", &["孩子", "学校", "同学"]);
        check("ＡＢＣ培训机构跑路了！", &["abc", "培训机构", "跑路"]);
    }

    #[test]
    fn the_radix_sort_orders_like_a_stable_comparison_sort() {
        let mut state = 0x2545_f491_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (len, bits) in [
            (0, 8),
            (5, 20),
            (63, 18),
            (64, 18),
            (1_000, 18),
            (3_000, 20),
            (500, 26),
            (200, 1),
            (300, 11),
            (70_000, 20),
        ] {
            let mut features: Vec<(u32, f32)> = (0..len)
                .map(|i| ((next() & ((1 << bits) - 1)) as u32, i as f32))
                .collect();
            let mut expected = features.clone();
            expected.sort_by_key(|(b, _)| *b);
            sort_by_bucket(&mut features, bits);
            assert_eq!(features, expected, "{len} features, {bits} bits");
        }
    }

    #[test]
    fn content_characters_are_the_alphanumeric_ones() {
        let samples = ('\u{0}'..='\u{30FF}')
            .chain('\u{4DF0}'..='\u{A0FF}')
            .chain('\u{FF00}'..='\u{FFEF}')
            .chain(['𠀀', '😀']);
        for c in samples {
            assert_eq!(is_content(c), c.is_alphanumeric(), "{c:?}");
        }
    }

    #[test]
    fn features_are_deterministic_sorted_and_normalised() {
        let f = Featurizer::new(FeatureConfig {
            bucket_bits: 16,
            ..FeatureConfig::default()
        });
        let mut a = Vec::new();
        let mut b = Vec::new();
        f.counts("食堂饭菜有虫子。食堂！", &mut a);
        f.counts("食堂饭菜有虫子。食堂！", &mut b);
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0].0 < w[1].0));
        let idf = vec![1.0; f.buckets()];
        weigh(&mut a, &idf);
        let norm: f32 = a.iter().map(|(_, v)| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        let mut empty = Vec::new();
        f.counts("，。！", &mut empty);
        assert!(empty.is_empty());
    }
}
