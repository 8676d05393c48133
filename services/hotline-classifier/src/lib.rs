//! The statistical half of Hotline's classifier. Text becomes hashed TF-IDF features (jieba words
//! plus character n-grams, so unseen words and typos still share evidence), a one-vs-rest linear SVM
//! trained by dual coordinate descent (the LIBLINEAR algorithm) scores each label, and a softmax
//! with a temperature fitted on out-of-fold scores turns scores into calibrated confidences.
//!
//! Any label set works (`hotline train --input` measures the engine on other data); the topic
//! model adds the taxonomy's phrase scores as a prior (see `hybrid`).

pub mod features;
pub mod hybrid;
pub mod model;
pub mod train;

pub use features::{FeatureConfig, Featurizer};
pub use model::{LinearModel, Prediction};
pub use train::{train, TrainConfig};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the model file is not a Hotline model: {0}")]
    Format(String),
    #[error("training needs at least two labels and one example each; got {0}")]
    TooFewLabels(usize),
}
