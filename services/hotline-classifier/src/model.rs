//! A trained linear model: IDF, one weight row per hash bucket (all labels side by side, so a
//! feature costs one cache line), biases, and the softmax temperature.

use crate::features::{weigh, FeatureConfig, Featurizer};
use crate::ModelError;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"HLM1";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    version: String,
    labels: Vec<String>,
    features: FeatureConfig,
    temperature: f32,
    /// Absent in models trained without stacking (and in those saved before it existed).
    #[serde(default)]
    stacker: Option<Stacker>,
}

/// A multinomial logistic regression over the per-label decision values:
/// `logit[j] = bias[j] + Σ_k weights[j * labels + k] · score[k]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stacker {
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
}

/// 64 bytes, aligned as a cache line.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
struct CacheLine([f32; 16]);

/// One row of label weights per hash bucket, laid out so that no row straddles two cache lines.
/// Scoring reads one row per feature at a random bucket, so a text costs about one cache miss per
/// feature; a plain `Vec<f32>` (16-byte aligned) split most 16-label rows over two lines.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WeightTable {
    lines: Vec<CacheLine>,
    buckets: usize,
    labels: usize,
    /// Floats from one row to the next: a power of two up to 16 (so rows pack whole lines),
    /// else whole lines.
    stride: usize,
}

impl WeightTable {
    const LINE: usize = 16;

    /// All weights zero.
    pub(crate) fn zeros(buckets: usize, labels: usize) -> Self {
        let labels = labels.max(1);
        let stride = if labels <= Self::LINE {
            labels.next_power_of_two()
        } else {
            labels.div_ceil(Self::LINE) * Self::LINE
        };
        Self {
            lines: vec![CacheLine([0.0; 16]); (buckets * stride).div_ceil(Self::LINE)],
            buckets,
            labels,
            stride,
        }
    }

    /// From bucket-major weights, `labels` per bucket.
    #[cfg(test)]
    fn from_flat(flat: &[f32], labels: usize) -> Self {
        let mut table = Self::zeros(flat.len() / labels.max(1), labels);
        for (bucket, row) in flat.chunks_exact(labels.max(1)).enumerate() {
            for (label, weight) in row.iter().enumerate() {
                table.set(bucket, label, *weight);
            }
        }
        table
    }

    pub(crate) fn set(&mut self, bucket: usize, label: usize, weight: f32) {
        let at = bucket * self.stride + label;
        self.lines[at / Self::LINE].0[at % Self::LINE] = weight;
    }

    pub(crate) fn get(&self, bucket: usize, label: usize) -> f32 {
        let at = bucket * self.stride + label;
        self.lines[at / Self::LINE].0[at % Self::LINE]
    }

    /// `scores[label] += value × weight[bucket][label]` for every label.
    pub(crate) fn add_row(&self, bucket: usize, value: f32, scores: &mut [f32]) {
        let at = bucket * self.stride;
        if self.stride <= Self::LINE {
            let offset = at % Self::LINE;
            let row = &self.lines[at / Self::LINE].0[offset..offset + self.labels];
            for (score, weight) in scores.iter_mut().zip(row) {
                *score += weight * value;
            }
        } else {
            let first = at / Self::LINE;
            let lines = &self.lines[first..first + self.stride / Self::LINE];
            for (score, weight) in scores.iter_mut().zip(lines.iter().flat_map(|l| &l.0)) {
                *score += weight * value;
            }
        }
    }

    /// `scores[label] += value × weight[bucket][label]` for every feature, in order, with the
    /// same additions as [`Self::add_row`] one feature at a time. Rows of 8 or 16 labels (the
    /// Teddy and topic models) go through fixed-size arrays, which the compiler keeps in vector
    /// registers: scoring was a tenth of classifying an appeal, mostly loop overhead.
    pub(crate) fn accumulate(&self, features: &[(u32, f32)], scores: &mut [f32]) {
        match self.stride {
            16 => self.accumulate_rows::<16>(features, scores),
            8 => self.accumulate_rows::<8>(features, scores),
            _ => {
                for (bucket, value) in features {
                    self.add_row(*bucket as usize, *value, scores);
                }
            }
        }
    }

    fn accumulate_rows<const STRIDE: usize>(&self, features: &[(u32, f32)], scores: &mut [f32]) {
        // One score per label: every constructor of a model builds both from the same label count.
        debug_assert_eq!(scores.len(), self.labels);
        let mut sums = [0.0f32; STRIDE];
        sums[..self.labels].copy_from_slice(scores);
        for &(bucket, value) in features {
            let at = bucket as usize * STRIDE;
            let line = &self.lines[at / Self::LINE].0;
            let Some(row) = line[at % Self::LINE..].first_chunk::<STRIDE>() else {
                unreachable!("a row of {STRIDE} floats sits inside one line");
            };
            for (sum, weight) in sums.iter_mut().zip(row) {
                *sum += weight * value;
            }
        }
        scores.copy_from_slice(&sums[..self.labels]);
    }

    /// Bucket-major weights, `labels` per bucket (the saved form).
    fn flat(&self) -> impl Iterator<Item = f32> + '_ {
        (0..self.buckets).flat_map(move |b| (0..self.labels).map(move |l| self.get(b, l)))
    }

    fn memory_bytes(&self) -> usize {
        self.lines.len() * std::mem::size_of::<CacheLine>()
    }
}

#[derive(Debug, Clone)]
pub struct LinearModel {
    pub version: String,
    pub labels: Vec<String>,
    pub features: FeatureConfig,
    pub temperature: f32,
    pub(crate) idf: Vec<f32>,
    pub(crate) weights: WeightTable,
    pub(crate) bias: Vec<f32>,
    pub stacker: Option<Stacker>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Raw SVM decision values, one per label.
    pub scores: Vec<f32>,
    /// Calibrated probabilities, one per label, summing to 1.
    pub probabilities: Vec<f32>,
}

impl Prediction {
    pub fn best(&self) -> usize {
        argmax(&self.probabilities)
    }
}

pub(crate) fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

pub(crate) fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|z| (z - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

impl LinearModel {
    pub fn label_index(&self, label: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == label)
    }

    /// Decision values for already weighted features.
    pub fn scores(&self, features: &[(u32, f32)]) -> Vec<f32> {
        let n = self.labels.len();
        let mut scores = self.bias.clone();
        debug_assert_eq!(n, self.weights.labels);
        self.weights.accumulate(features, &mut scores);
        scores
    }

    /// Decision values → logits of the calibrated probabilities: through the stacker when the
    /// model has one, else scaled by the temperature.
    pub fn logits(&self, scores: &[f32]) -> Vec<f32> {
        match &self.stacker {
            Some(stacker) => {
                let n = scores.len();
                (0..n)
                    .map(|j| {
                        stacker.bias[j]
                            + stacker.weights[j * n..(j + 1) * n]
                                .iter()
                                .zip(scores)
                                .map(|(a, s)| a * s)
                                .sum::<f32>()
                    })
                    .collect()
            }
            None => scores.iter().map(|s| s * self.temperature).collect(),
        }
    }

    /// Features of a text, weighted with this model's IDF. `scratch` is reused between calls.
    pub fn features(&self, featurizer: &Featurizer, text: &str, scratch: &mut Vec<(u32, f32)>) {
        featurizer.counts(text, scratch);
        weigh(scratch, &self.idf);
    }

    /// [`Self::features`] for a text already normalised and cut.
    pub fn features_from(
        &self,
        featurizer: &Featurizer,
        normalised: &str,
        words: &[&str],
        scratch: &mut Vec<(u32, f32)>,
    ) {
        featurizer.counts_from(normalised, words, scratch);
        weigh(scratch, &self.idf);
    }

    pub fn predict(
        &self,
        featurizer: &Featurizer,
        text: &str,
        scratch: &mut Vec<(u32, f32)>,
    ) -> Prediction {
        self.features(featurizer, text, scratch);
        let scores = self.scores(scratch);
        let logits = self.logits(&scores);
        Prediction {
            probabilities: softmax(&logits),
            scores,
        }
    }

    /// The words of the text that pushed hardest towards `label`, strongest first.
    pub fn explain(
        &self,
        featurizer: &Featurizer,
        text: &str,
        label: usize,
        limit: usize,
    ) -> Vec<String> {
        let normalised = hotline_domain::text::normalise(text);
        self.explain_words(featurizer, &featurizer.words(&normalised), label, limit)
    }

    /// [`Self::explain`] for words already cut.
    pub fn explain_words(
        &self,
        featurizer: &Featurizer,
        words: &[&str],
        label: usize,
        limit: usize,
    ) -> Vec<String> {
        // The `limit` strongest distinct words, kept sorted as they stream by: a word's first
        // occurrence is its strongest (all occurrences weigh the same), and among equal weights
        // the earlier word stays ahead. No sort of all the words, no allocation per word.
        if limit == 0 {
            return Vec::new();
        }
        let mut strongest: Vec<(f32, &str)> = Vec::with_capacity(limit + 1);
        for word in words {
            if word.chars().nth(1).is_none() {
                continue; // a single character explains little
            }
            let bucket = featurizer.word_bucket(word) as usize;
            let weight = self.weights.get(bucket, label) * self.idf[bucket];
            let pushes_towards_label = weight > 0.0;
            let weaker_than_kept = strongest.len() == limit && weight <= strongest[limit - 1].0;
            if !pushes_towards_label || weaker_than_kept || strongest.iter().any(|(_, w)| w == word)
            {
                continue;
            }
            let at = strongest.partition_point(|(w, _)| *w >= weight);
            strongest.insert(at, (weight, word));
            strongest.truncate(limit);
        }
        strongest
            .into_iter()
            .map(|(_, word)| word.to_owned())
            .collect()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&Header {
            version: self.version.clone(),
            labels: self.labels.clone(),
            features: self.features,
            temperature: self.temperature,
            stacker: self.stacker.clone(),
        })
        .expect("a header always serialises");
        let floats = self.idf.len() * (1 + self.labels.len()) + self.bias.len();
        let mut out = Vec::with_capacity(8 + header.len() + floats * 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        for value in self
            .idf
            .iter()
            .copied()
            .chain(self.weights.flat())
            .chain(self.bias.iter().copied())
        {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let bad = |m: &str| ModelError::Format(m.to_owned());
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            return Err(bad("wrong magic bytes"));
        }
        let header_len = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
        let header_end = 8usize
            .checked_add(header_len)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| bad("truncated header"))?;
        let header: Header = serde_json::from_slice(&bytes[8..header_end])
            .map_err(|e| ModelError::Format(e.to_string()))?;
        let buckets = 1usize
            .checked_shl(header.features.bucket_bits)
            .filter(|_| header.features.bucket_bits <= 26)
            .ok_or_else(|| bad("bucket_bits out of range"))?;
        let labels = header.labels.len();
        if labels == 0 {
            return Err(bad("no labels"));
        }
        if let Some(stacker) = &header.stacker {
            if stacker.weights.len() != labels * labels || stacker.bias.len() != labels {
                return Err(bad("stacker has the wrong size"));
            }
        }
        let expected = buckets + buckets * labels + labels;
        let body = &bytes[header_end..];
        if body.len() != expected * 4 {
            return Err(bad("weights have the wrong size"));
        }
        let mut floats = body
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")));
        let idf: Vec<f32> = floats.by_ref().take(buckets).collect();
        let mut weights = WeightTable::zeros(buckets, labels);
        for (at, weight) in floats.by_ref().take(buckets * labels).enumerate() {
            weights.set(at / labels, at % labels, weight);
        }
        let bias: Vec<f32> = floats.collect();
        Ok(Self {
            version: header.version,
            labels: header.labels,
            features: header.features,
            temperature: header.temperature,
            idf,
            weights,
            bias,
            stacker: header.stacker,
        })
    }

    /// Bytes held by the weights, for the memory report.
    pub fn memory_bytes(&self) -> usize {
        (self.idf.len() + self.bias.len()) * 4 + self.weights.memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weights that differ at every position, so a misplaced row or label shows.
    fn flat(buckets: usize, labels: usize) -> Vec<f32> {
        (0..buckets * labels)
            .map(|i| i as f32 * 0.5 - 3.0)
            .collect()
    }

    #[test]
    fn weight_table_rows_are_the_flat_rows_whatever_the_label_count() {
        for labels in [1, 2, 3, 7, 8, 9, 16, 17, 33] {
            let buckets = 37;
            let mut weights = flat(buckets, labels);
            // Some rows all zero, as for buckets no training text had.
            for bucket in (0..buckets).step_by(5) {
                weights[bucket * labels..(bucket + 1) * labels].fill(0.0);
            }
            let table = WeightTable::from_flat(&weights, labels);
            for bucket in 0..buckets {
                let mut scores = vec![1.0f32; labels];
                table.add_row(bucket, 2.0, &mut scores);
                for label in 0..labels {
                    let expected = weights[bucket * labels + label];
                    assert_eq!(table.get(bucket, label), expected, "{labels} labels");
                    assert_eq!(scores[label], 1.0 + 2.0 * expected, "{labels} labels");
                }
            }
            assert_eq!(table.flat().collect::<Vec<_>>(), weights, "{labels} labels");
            let features: Vec<(u32, f32)> = (0..buckets as u32)
                .rev()
                .step_by(3)
                .map(|b| (b, 0.25 + b as f32 / 7.0))
                .collect();
            let mut one_at_a_time = vec![0.5f32; labels];
            for (bucket, value) in &features {
                table.add_row(*bucket as usize, *value, &mut one_at_a_time);
            }
            let mut together = vec![0.5f32; labels];
            table.accumulate(&features, &mut together);
            assert_eq!(together, one_at_a_time, "{labels} labels");
            // A row never straddles two cache lines.
            if labels <= WeightTable::LINE {
                assert_eq!(WeightTable::LINE % table.stride, 0, "{labels} labels");
            }
        }
    }

    /// The explanation as first written: score every word, sort (stably) by weight, keep the
    /// first `limit` distinct ones.
    fn explain_by_sorting(
        model: &LinearModel,
        featurizer: &Featurizer,
        words: &[&str],
        label: usize,
        limit: usize,
    ) -> Vec<String> {
        let mut scored: Vec<(f32, &str)> = words
            .iter()
            .filter(|word| word.chars().nth(1).is_some())
            .filter_map(|word| {
                let bucket = featurizer.word_bucket(word) as usize;
                let weight = model.weights.get(bucket, label) * model.idf[bucket];
                (weight > 0.0).then_some((weight, *word))
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut strongest: Vec<String> = Vec::new();
        for (_, word) in scored {
            if strongest.len() < limit && !strongest.iter().any(|w| w == word) {
                strongest.push(word.to_owned());
            }
        }
        strongest
    }

    #[test]
    fn explanations_are_the_strongest_distinct_words_earliest_first_on_ties() {
        // 16 buckets for 40 words: many share a bucket, so many weights tie.
        let features = FeatureConfig {
            bucket_bits: 4,
            ..FeatureConfig::default()
        };
        let featurizer = Featurizer::new(features);
        let model = LinearModel {
            version: "t".to_owned(),
            labels: vec!["a".to_owned(), "b".to_owned()],
            features,
            temperature: 1.0,
            idf: vec![1.5; 16],
            weights: WeightTable::from_flat(&flat(16, 2), 2),
            bias: vec![0.0, 0.0],
            stacker: None,
        };
        let vocabulary: Vec<String> = (0..40).map(|i| format!("词{i}")).collect();
        let mut state = 7u64;
        for length in [0, 1, 5, 30, 200] {
            let words: Vec<&str> = (0..length)
                .map(|_| {
                    state = state
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1);
                    vocabulary[(state >> 33) as usize % vocabulary.len()].as_str()
                })
                .chain(["字"])
                .collect();
            for label in 0..2 {
                for limit in [0, 1, 3, 8, 50] {
                    assert_eq!(
                        model.explain_words(&featurizer, &words, label, limit),
                        explain_by_sorting(&model, &featurizer, &words, label, limit),
                        "{length} words, label {label}, limit {limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_saved_model_loads_with_the_same_weights() {
        let labels = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let features = FeatureConfig {
            bucket_bits: 4,
            ..FeatureConfig::default()
        };
        let model = LinearModel {
            version: "t".to_owned(),
            labels,
            features,
            temperature: 2.0,
            idf: vec![1.5; 16],
            weights: WeightTable::from_flat(&flat(16, 3), 3),
            bias: vec![0.1, 0.2, 0.3],
            stacker: None,
        };
        let loaded = LinearModel::from_bytes(&model.to_bytes()).expect("loads");
        assert_eq!(loaded.weights, model.weights);
        assert_eq!(loaded.idf, model.idf);
        assert_eq!(loaded.bias, model.bias);
        assert_eq!(
            loaded.scores(&[(3, 1.0), (9, 0.5)]),
            model.scores(&[(3, 1.0), (9, 0.5)])
        );
    }
}
