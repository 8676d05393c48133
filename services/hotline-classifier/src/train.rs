//! Training: TF-IDF over hashed features, then one binary L2-regularised L2-loss SVM per label,
//! solved in the dual by coordinate descent (Hsieh et al. 2008, as in LIBLINEAR `-s 1`), with a
//! bias feature. Out-of-fold decision values then fit either a softmax temperature or, with
//! `stacking`, a small multinomial logistic regression over the per-label decision values (it
//! learns how the one-vs-rest SVMs' scores relate, which argmax alone cannot).

use crate::features::{weigh, Featurizer};
use crate::model::{softmax, LinearModel, Stacker, WeightTable};
use crate::ModelError;

#[derive(Debug, Clone, Copy)]
pub struct TrainConfig {
    /// SVM cost: larger fits the training data harder.
    pub c: f32,
    pub max_iterations: usize,
    /// Stopping tolerance on the projected gradient.
    pub tolerance: f32,
    /// Folds for fitting the temperature (0 or 1: fixed temperature 1).
    pub calibration_folds: usize,
    /// Scale each label's features by their naive-Bayes log-count ratio before fitting that
    /// label's SVM (NB-SVM, Wang & Manning 2012). The ratio is folded into the weights, so
    /// prediction costs the same.
    pub nb_scaling: bool,
    /// Fit a multinomial logistic regression on out-of-fold decision values (needs
    /// `calibration_folds` ≥ 2); predictions go through it instead of the temperature.
    pub stacking: bool,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            c: 0.5,
            max_iterations: 100,
            tolerance: 0.05,
            calibration_folds: 3,
            nb_scaling: false,
            stacking: false,
            seed: 0x5eed,
        }
    }
}

/// Weighted feature vectors of a corpus, with the IDF they were weighted by.
pub struct Corpus {
    pub docs: Vec<Vec<(u32, f32)>>,
    pub idf: Vec<f32>,
}

pub fn vectorise(featurizer: &Featurizer, texts: &[&str]) -> Corpus {
    let buckets = featurizer.buckets();
    let mut docs: Vec<Vec<(u32, f32)>> = Vec::with_capacity(texts.len());
    let mut df = vec![0u32; buckets];
    for text in texts {
        let mut counts = Vec::new();
        featurizer.counts(text, &mut counts);
        for (bucket, _) in &counts {
            df[*bucket as usize] += 1;
        }
        docs.push(counts);
    }
    let n = texts.len() as f32;
    // sklearn's smoothed IDF: ln((1 + n) / (1 + df)) + 1.
    let idf: Vec<f32> = df
        .iter()
        .map(|d| ((1.0 + n) / (1.0 + *d as f32)).ln() + 1.0)
        .collect();
    for doc in &mut docs {
        weigh(doc, &idf);
    }
    Corpus { docs, idf }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// One binary problem: returns the weights (dense, one per bucket) and the bias.
fn solve_binary(
    docs: &[&[(u32, f32)]],
    positive: &[bool],
    buckets: usize,
    config: &TrainConfig,
    rng: &mut Rng,
) -> (Vec<f32>, f32) {
    let diag = 0.5 / config.c;
    // Buckets are a power of two and every feature index is below it, so masking the index
    // changes nothing but lets the compiler drop the bounds checks of the two hot loops.
    assert!(buckets.is_power_of_two(), "{buckets} buckets");
    let mask = buckets - 1;
    let mut w = vec![0.0f32; buckets];
    let mut bias = 0.0f32;
    let mut alpha = vec![0.0f32; docs.len()];
    let qd: Vec<f32> = docs
        .iter()
        .map(|d| d.iter().map(|(_, v)| v * v).sum::<f32>() + 1.0 + diag)
        .collect();
    let mut order: Vec<usize> = (0..docs.len()).collect();
    for _ in 0..config.max_iterations {
        rng.shuffle(&mut order);
        let (mut max_pg, mut min_pg) = (f32::NEG_INFINITY, f32::INFINITY);
        for &i in &order {
            let y = if positive[i] { 1.0 } else { -1.0 };
            let dot: f32 = docs[i]
                .iter()
                .map(|(b, v)| w[*b as usize & mask] * v)
                .sum::<f32>()
                + bias;
            let g = y * dot - 1.0 + diag * alpha[i];
            let pg = if alpha[i] == 0.0 { g.min(0.0) } else { g };
            max_pg = max_pg.max(pg);
            min_pg = min_pg.min(pg);
            if pg.abs() > 1e-12 {
                let old = alpha[i];
                alpha[i] = (alpha[i] - g / qd[i]).max(0.0);
                let step = (alpha[i] - old) * y;
                for (b, v) in docs[i].iter() {
                    w[*b as usize & mask] += step * v;
                }
                bias += step;
            }
        }
        if max_pg - min_pg <= config.tolerance {
            break;
        }
    }
    (w, bias)
}

/// One-vs-rest weights, bucket-major.
fn fit(
    docs: &[&[(u32, f32)]],
    labels: &[usize],
    label_count: usize,
    buckets: usize,
    config: &TrainConfig,
) -> (WeightTable, Vec<f32>) {
    let mut weights = WeightTable::zeros(buckets, label_count);
    let mut biases = Vec::with_capacity(label_count);
    let mut rng = Rng(config.seed | 1);
    for label in 0..label_count {
        let positive: Vec<bool> = labels.iter().map(|l| *l == label).collect();
        let (w, b) = if config.nb_scaling {
            let ratio = log_count_ratio(docs, &positive, buckets);
            let scaled: Vec<Vec<(u32, f32)>> = docs
                .iter()
                .map(|d| {
                    d.iter()
                        .map(|(j, v)| (*j, v * ratio[*j as usize]))
                        .collect()
                })
                .collect();
            let scaled: Vec<&[(u32, f32)]> = scaled.iter().map(Vec::as_slice).collect();
            let (mut w, b) = solve_binary(&scaled, &positive, buckets, config, &mut rng);
            for (weight, r) in w.iter_mut().zip(&ratio) {
                *weight *= r;
            }
            (w, b)
        } else {
            solve_binary(docs, &positive, buckets, config, &mut rng)
        };
        for (bucket, value) in w.into_iter().enumerate() {
            if value != 0.0 {
                weights.set(bucket, label, value);
            }
        }
        biases.push(b);
    }
    (weights, biases)
}

/// ln((p / |p|) / (q / |q|)) per bucket, with p and q the smoothed feature sums of the positive
/// and negative documents.
fn log_count_ratio(docs: &[&[(u32, f32)]], positive: &[bool], buckets: usize) -> Vec<f32> {
    const SMOOTHING: f32 = 1.0;
    let mut p = vec![SMOOTHING; buckets];
    let mut q = vec![SMOOTHING; buckets];
    for (doc, is_positive) in docs.iter().zip(positive) {
        let sums = if *is_positive { &mut p } else { &mut q };
        for (j, v) in doc.iter() {
            sums[*j as usize] += v;
        }
    }
    let p_total: f32 = p.iter().sum();
    let q_total: f32 = q.iter().sum();
    p.iter()
        .zip(&q)
        .map(|(a, b)| ((a / p_total) / (b / q_total)).ln())
        .collect()
}

fn decision(weights: &WeightTable, biases: &[f32], doc: &[(u32, f32)]) -> Vec<f32> {
    let mut scores = biases.to_vec();
    weights.accumulate(doc, &mut scores);
    scores
}

/// The temperature that maximises the likelihood of out-of-fold decision values (returned as the
/// factor the values are multiplied by before the softmax).
pub fn fit_temperature(out_of_fold: &[(Vec<f32>, usize)]) -> f32 {
    let mut best = (f32::NEG_INFINITY, 1.0f32);
    let mut t = 0.25f32;
    while t <= 40.0 {
        let log_likelihood: f32 = out_of_fold
            .iter()
            .map(|(scores, label)| {
                let logits: Vec<f32> = scores.iter().map(|s| s * t).collect();
                softmax(&logits)[*label].max(1e-9).ln()
            })
            .sum();
        if log_likelihood > best.0 {
            best = (log_likelihood, t);
        }
        t *= 1.1;
    }
    best.1
}

pub fn train(
    featurizer: &Featurizer,
    examples: &[(&str, &str)],
    version: &str,
    config: &TrainConfig,
) -> Result<LinearModel, ModelError> {
    let mut labels: Vec<String> = examples.iter().map(|(_, l)| (*l).to_owned()).collect();
    labels.sort();
    labels.dedup();
    if labels.len() < 2 {
        return Err(ModelError::TooFewLabels(labels.len()));
    }
    let texts: Vec<&str> = examples.iter().map(|(t, _)| *t).collect();
    let targets: Vec<usize> = examples
        .iter()
        .map(|(_, l)| {
            labels
                .iter()
                .position(|x| x == l)
                .expect("label collected above")
        })
        .collect();
    let corpus = vectorise(featurizer, &texts);
    let buckets = featurizer.buckets();
    let docs: Vec<&[(u32, f32)]> = corpus.docs.iter().map(Vec::as_slice).collect();

    let folds = if config.calibration_folds >= 2 && docs.len() >= config.calibration_folds * 2 {
        config.calibration_folds
    } else {
        0
    };
    // Jobs 0..folds fit one fold each and score its held-out part; job `folds` fits the final
    // model. Each fit seeds its own random stream, so running them side by side gives the very
    // model that running them one by one does, in about half the time on two cores (the built-in
    // model is trained when a worker starts).
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut jobs = in_parallel(folds + 1, cores, |job| {
        if job == folds {
            let (weights, bias) = fit(&docs, &targets, labels.len(), buckets, config);
            return FitJob::Final { weights, bias };
        }
        type Fold<'a> = (Vec<&'a [(u32, f32)]>, Vec<usize>);
        let (train_docs, train_labels): Fold<'_> = docs
            .iter()
            .zip(&targets)
            .enumerate()
            .filter(|(i, _)| i % folds != job)
            .map(|(_, (d, l))| (*d, *l))
            .unzip();
        let (w, b) = fit(&train_docs, &train_labels, labels.len(), buckets, config);
        FitJob::HeldOut(
            docs.iter()
                .enumerate()
                .filter(|(i, _)| i % folds == job)
                .map(|(i, doc)| (decision(&w, &b, doc), targets[i]))
                .collect(),
        )
    });
    let Some(FitJob::Final { weights, bias }) = jobs.pop() else {
        unreachable!("the last job is the final fit");
    };
    let out_of_fold: Vec<(Vec<f32>, usize)> = jobs
        .into_iter()
        .flat_map(|job| match job {
            FitJob::HeldOut(scored) => scored,
            FitJob::Final { .. } => unreachable!("only the last job is the final fit"),
        })
        .collect();
    let (temperature, stacker) = if folds == 0 {
        (1.0, None)
    } else {
        let stacker = config
            .stacking
            .then(|| fit_stacker(&out_of_fold, labels.len()));
        (fit_temperature(&out_of_fold), stacker)
    };

    Ok(LinearModel {
        version: version.to_owned(),
        labels,
        features: *featurizer.config(),
        temperature,
        idf: corpus.idf,
        weights,
        bias,
        stacker,
    })
}

/// What one training job produced: a fold's held-out decision values, or the final model.
enum FitJob {
    HeldOut(Vec<(Vec<f32>, usize)>),
    Final {
        weights: WeightTable,
        bias: Vec<f32>,
    },
}

/// `job(0) .. job(jobs - 1)` on up to `threads` threads (at most one per job), results in job
/// order. A panic in a job is resumed in the caller.
fn in_parallel<T: Send>(jobs: usize, threads: usize, job: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = threads.min(jobs);
    if threads <= 1 {
        return (0..jobs).map(job).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, T)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if index >= jobs {
                            return mine;
                        }
                        mine.push((index, job(index)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    done.sort_unstable_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, result)| result).collect()
}

/// Multinomial logistic regression from decision values to labels, by full-batch gradient
/// descent with Nesterov momentum on the mean cross-entropy plus a small L2 penalty on the
/// weights (λ = 1 / n, as scikit-learn's C = 1). Convex, 56 parameters for 7 labels: a few
/// hundred milliseconds.
fn fit_stacker(out_of_fold: &[(Vec<f32>, usize)], labels: usize) -> Stacker {
    const ITERATIONS: usize = 1500;
    const STEP: f64 = 0.5;
    const MOMENTUM: f64 = 0.9;
    let n = out_of_fold.len().max(1) as f64;
    let lambda = 1.0 / n;
    let size = labels * labels + labels;
    // Start from the identity: argmax of the raw scores.
    let mut theta = vec![0.0f64; size];
    for j in 0..labels {
        theta[j * labels + j] = 1.0;
    }
    let mut velocity = vec![0.0f64; size];
    let mut gradient = vec![0.0f64; size];
    let mut logits = vec![0.0f64; labels];
    for _ in 0..ITERATIONS {
        let look: Vec<f64> = theta
            .iter()
            .zip(&velocity)
            .map(|(t, v)| t + MOMENTUM * v)
            .collect();
        gradient.iter_mut().for_each(|g| *g = 0.0);
        for (scores, target) in out_of_fold {
            for (j, logit) in logits.iter_mut().enumerate() {
                let row = &look[j * labels..(j + 1) * labels];
                *logit = look[labels * labels + j]
                    + row
                        .iter()
                        .zip(scores)
                        .map(|(a, s)| a * f64::from(*s))
                        .sum::<f64>();
            }
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = logits.iter().map(|z| (z - max).exp()).sum();
            for j in 0..labels {
                let p = (logits[j] - max).exp() / total;
                let error = p - if j == *target { 1.0 } else { 0.0 };
                for (k, s) in scores.iter().enumerate() {
                    gradient[j * labels + k] += error * f64::from(*s) / n;
                }
                gradient[labels * labels + j] += error / n;
            }
        }
        for (i, g) in gradient.iter_mut().enumerate().take(labels * labels) {
            *g += lambda * look[i];
        }
        for i in 0..size {
            velocity[i] = MOMENTUM * velocity[i] - STEP * gradient[i];
            theta[i] += velocity[i];
        }
    }
    Stacker {
        weights: theta[..labels * labels].iter().map(|v| *v as f32).collect(),
        bias: theta[labels * labels..].iter().map(|v| *v as f32).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FeatureConfig;

    #[test]
    fn learns_a_small_problem_and_round_trips() {
        let featurizer = Featurizer::new(FeatureConfig {
            bucket_bits: 14,
            ..FeatureConfig::default()
        });
        let examples = [
            ("食堂饭菜里有虫子", "canteen"),
            ("学校食堂饭菜太贵还难吃", "canteen"),
            ("午餐配餐公司饭菜变质", "canteen"),
            ("孩子在学校被同学打", "bullying"),
            ("高年级学生欺负我家孩子", "bullying"),
            ("同学天天打骂孩子还勒索钱", "bullying"),
        ];
        let model = train(&featurizer, &examples, "test", &TrainConfig::default()).unwrap();
        // The folds and the final fit run side by side, yet every run gives the same model.
        let again = train(&featurizer, &examples, "test", &TrainConfig::default()).unwrap();
        assert_eq!(again.to_bytes(), model.to_bytes());
        let mut scratch = Vec::new();
        let check = |text: &str, label: &str| {
            let mut scratch = Vec::new();
            let p = model.predict(&featurizer, text, &mut scratch);
            assert_eq!(model.labels[p.best()], label, "{text}: {p:?}");
            let sum: f32 = p.probabilities.iter().sum();
            assert!((sum - 1.0).abs() < 1e-4);
        };
        check("食堂的饭菜有问题", "canteen");
        check("被同学欺负了", "bullying");

        let restored = LinearModel::from_bytes(&model.to_bytes()).unwrap();
        assert_eq!(
            restored.predict(&featurizer, "食堂饭菜", &mut scratch),
            model.predict(&featurizer, "食堂饭菜", &mut scratch)
        );
        assert!(LinearModel::from_bytes(b"nope").is_err());

        let stacked_config = TrainConfig {
            stacking: true,
            ..TrainConfig::default()
        };
        let stacked = train(&featurizer, &examples, "stacked", &stacked_config).unwrap();
        assert!(stacked.stacker.is_some());
        let p = stacked.predict(&featurizer, "食堂的饭菜有问题", &mut scratch);
        assert_eq!(stacked.labels[p.best()], "canteen", "{p:?}");
        let restored = LinearModel::from_bytes(&stacked.to_bytes()).unwrap();
        assert_eq!(restored.stacker, stacked.stacker);
        assert_eq!(
            restored.predict(&featurizer, "被同学欺负了", &mut scratch),
            stacked.predict(&featurizer, "被同学欺负了", &mut scratch)
        );
        assert!(LinearModel::from_bytes(&model.to_bytes()[..100]).is_err());
        assert!(matches!(
            train(&featurizer, &[("a", "x")], "v", &TrainConfig::default()),
            Err(ModelError::TooFewLabels(1))
        ));
    }

    #[test]
    fn parallel_jobs_come_back_as_one_by_one() {
        // Jobs of uneven length, so that threads finish out of order.
        let job =
            |i: usize| (0..(7 - i % 7) * 20_000).fold(i as u64, |h, x| h ^ (h << 5) ^ x as u64);
        for jobs in [0, 1, 2, 7, 16] {
            let one_by_one: Vec<u64> = (0..jobs).map(job).collect();
            for threads in [1, 2, 3, 8] {
                assert_eq!(
                    in_parallel(jobs, threads, job),
                    one_by_one,
                    "{jobs} on {threads}"
                );
            }
        }
    }
}
