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

#[derive(Debug, Clone)]
pub struct LinearModel {
    pub version: String,
    pub labels: Vec<String>,
    pub features: FeatureConfig,
    pub temperature: f32,
    pub(crate) idf: Vec<f32>,
    /// `weights[bucket * labels + label]`
    pub(crate) weights: Vec<f32>,
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
        for (bucket, value) in features {
            let row = &self.weights[*bucket as usize * n..(*bucket as usize + 1) * n];
            for (score, weight) in scores.iter_mut().zip(row) {
                *score += weight * value;
            }
        }
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
        let n = self.labels.len();
        let mut scored: Vec<(f32, &str)> = Vec::new();
        for word in words {
            if word.chars().count() < 2 || scored.iter().any(|(_, w)| w == word) {
                continue;
            }
            let bucket = featurizer.word_bucket(word) as usize;
            let weight = self.weights[bucket * n + label] * self.idf[bucket];
            if weight > 0.0 {
                scored.push((weight, word));
            }
        }
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored
            .into_iter()
            .take(limit)
            .map(|(_, w)| w.to_owned())
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
        let floats = self.idf.len() + self.weights.len() + self.bias.len();
        let mut out = Vec::with_capacity(8 + header.len() + floats * 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        for value in self.idf.iter().chain(&self.weights).chain(&self.bias) {
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
        let weights: Vec<f32> = floats.by_ref().take(buckets * labels).collect();
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
        (self.idf.len() + self.weights.len() + self.bias.len()) * 4
    }
}
