//! The trainer: trains one child network on a [`TaskData`] with the task's recipe and
//! scores it on the validation split.
//!
//! Recipe (from the [`ProxyTask`]): SGD with momentum (Nesterov
//! optional, no dampening) or Adam; L2 weight decay; a per-step learning rate that rises
//! linearly over the warm-up and then follows a half-cosine to `min_lr` (or stays
//! constant); cross-entropy with optional label smoothing; the training images reshuffled
//! every epoch from the trainer's seed, whole batches only. Validation (and, on request,
//! test) accuracy is measured with the inference model ([`Module::valid`]: BatchNorm on
//! running statistics, no autodiff).
//!
//! Threads: each call builds its own rayon pool of `threads` threads and trains inside
//! it, so a search can train several children side by side, one thread each. burn's flex
//! backend parallelises only through rayon (`par_iter`, and `gemm` with
//! `Parallelism::Rayon(0)`, which sizes itself by `rayon::current_num_threads()`), so
//! everything runs on the installing pool; burn starts no threads of its own for CPU work.
//!
//! Reproducibility: flex draws every random number (parameter initialisation) from one
//! process-wide generator, and burn initialises parameters lazily on first use. The trainer
//! therefore seeds that generator and forces every parameter to initialise while holding a
//! process-wide lock, so the initial weights depend on the seed only, even with children
//! training concurrently. Shuffling uses the trainer's own ChaCha8 stream. With the same
//! seed, task and one thread a run is bit-for-bit repeatable on one machine (tested, alone
//! and concurrently with another child). With several threads most flex kernels still
//! give identical bits (each output element is computed by one thread in a fixed order;
//! 1 and 2 threads gave identical losses in our runs), but whole-tensor sums of 4M+
//! elements combine per-chunk partial sums in a tree that rayon shapes adaptively, so
//! bit-exactness is not guaranteed there; nor across machines with other SIMD widths.
//! Other code drawing burn random numbers concurrently (outside the trainer) during a
//! child's initialisation would also break repeatability.
//!
//! CPU time: the pool's threads read their own CPU time from
//! `/proc/thread-self/schedstat` (nanoseconds, Linux) before and after training; the
//! report holds the sum. Where that file is unavailable the report says so and gives
//! wall time x threads instead.

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::idx::DataError;
use crate::task::{shuffle, Optimizer, ProxyTask, Schedule, Split, TaskData};

/// A network the trainer can train: a burn module mapping a batch of images
/// `[batch, channels, height, width]` to class logits `[batch, classes]`.
///
/// `Module` gives the trainer parameters to optimise (`GradientsParams`, optimiser steps)
/// and the inference copy (`valid()`); in burn 0.22 those need no other bound (there is no
/// backend type parameter and no separate `AutodiffModule`).
pub trait Classifier: Module {
    /// Class logits for a batch of images (no softmax).
    fn forward(&self, x: Tensor<4>) -> Tensor<2>;
}

/// Why training a child failed. The search records the message and marks the trial failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainError {
    /// The training loss (or the trained network's output) became NaN or infinite.
    #[error("training diverged: non-finite loss at step {step} (epoch {epoch}; both 0-based)")]
    Diverged {
        /// Epoch (0-based) of the step.
        epoch: usize,
        /// Global step (0-based); the total step count when the trained network's
        /// validation output was non-finite.
        step: usize,
    },
    /// The trainer's options are unusable.
    #[error("invalid training options: {0}")]
    InvalidOptions(String),
    /// The network's output does not match the task.
    #[error("the network outputs {found} classes but task `{task}` has {expected}")]
    ClassMismatch {
        /// The task.
        task: String,
        /// Classes of the task.
        expected: usize,
        /// Width of the network's logits.
        found: usize,
    },
    /// The thread pool could not be built.
    #[error("cannot start {threads} training thread(s): {reason}")]
    ThreadPool {
        /// Threads asked for.
        threads: usize,
        /// The reason.
        reason: String,
    },
    /// The test set, asked for, could not be loaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Reading a tensor back from the backend failed.
    #[error("backend error: {0}")]
    Backend(String),
    /// The network (or burn) panicked; the message is the panic's.
    #[error("training panicked: {0}")]
    Panicked(String),
}

/// How to run one training (the recipe itself comes from the task).
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Seed of the initial weights and of the per-epoch shuffles.
    pub seed: u64,
    /// Threads of this child's rayon pool (1 to train many children side by side).
    pub threads: usize,
    /// Also measure test accuracy (final reports only; never for search decisions).
    pub evaluate_test: bool,
    /// Images per forward pass when evaluating (memory only; no effect on the result).
    pub eval_batch_size: usize,
    /// The (non-autodiff) device to train on; the trainer adds autodiff itself.
    pub device: Device,
    /// Train this many epochs instead of the task's (the warm-start proxy: a child
    /// initialised from the knowledge pool trains fewer epochs); the schedule follows. A
    /// fraction stops the last epoch early ([`training_steps`]), so a warm start can
    /// cost less than one epoch.
    pub epochs: Option<f64>,
    /// Multiplies the task's peak learning rate (and `min_lr`). A warm-started child is
    /// fine-tuned rather than trained: at the scratch rate its transferred weights are
    /// largely overwritten in the first steps.
    pub lr_scale: f64,
    /// Replaces the task's warm-up (a warm-started child needs none).
    pub warmup_epochs: Option<f64>,
}

impl TrainOptions {
    /// Flex CPU device, no test evaluation, evaluation batches of 500.
    pub fn new(seed: u64, threads: usize) -> Self {
        TrainOptions {
            seed,
            threads,
            evaluate_test: false,
            eval_batch_size: 500,
            device: Device::flex(),
            epochs: None,
            lr_scale: 1.0,
            warmup_epochs: None,
        }
    }
}

/// What the trainer tells its caller while it runs (for a progress bar). Indices are 0-based.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainProgress {
    /// An optimisation step finished.
    Step {
        /// Current epoch.
        epoch: usize,
        /// Epochs in all.
        epochs: usize,
        /// Global step just done.
        step: usize,
        /// Steps in all.
        total_steps: usize,
        /// This step's training loss.
        loss: f64,
        /// Learning rate used for this step.
        lr: f64,
    },
    /// An epoch finished.
    Epoch {
        /// The epoch.
        epoch: usize,
        /// Epochs in all.
        epochs: usize,
        /// Mean training loss over the epoch's steps.
        mean_loss: f64,
        /// Wall seconds of the epoch.
        seconds: f64,
    },
    /// Evaluation of a split ("val" or "test") starts.
    Evaluating {
        /// The split.
        split: &'static str,
    },
}

/// The outcome of training one child.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Accuracy on the validation split (from the train set): the search's score.
    pub val_accuracy: f64,
    /// Mean cross-entropy (no smoothing) on the validation split.
    pub val_loss: f64,
    /// Accuracy on the test set, when asked for.
    pub test_accuracy: Option<f64>,
    /// Mean training loss of the last epoch.
    pub final_loss: f64,
    /// Mean training loss of each epoch.
    pub epoch_losses: Vec<f64>,
    /// Epochs trained (the last one may be partial, see [`TrainOptions::epochs`]).
    pub epochs: usize,
    /// Optimisation steps taken.
    pub steps: usize,
    /// Training images passed forward and backward (evaluation not included).
    pub images_processed: usize,
    /// Wall seconds of the training loop.
    pub train_seconds: f64,
    /// Wall seconds of evaluation.
    pub eval_seconds: f64,
    /// Wall seconds in all (model construction, training, evaluation).
    pub wall_seconds: f64,
    /// CPU seconds of the pool's threads (see `cpu_time_measured`).
    pub cpu_seconds: f64,
    /// Whether `cpu_seconds` was measured (true) or approximated as wall x threads (false).
    pub cpu_time_measured: bool,
    /// Threads of the pool.
    pub threads: usize,
    /// The trainer's seed.
    pub seed: u64,
}

impl TrainReport {
    /// Training throughput in images per wall second.
    pub fn images_per_second(&self) -> f64 {
        self.images_processed as f64 / self.train_seconds.max(1e-9)
    }
}

/// A trained network (inference copy, on the plain device) and its report.
#[derive(Debug)]
pub struct Trained<M> {
    /// The trained network after `valid()`.
    pub model: M,
    /// What training measured.
    pub report: TrainReport,
}

/// The per-step learning rate: linear warm-up to `base`, then cosine to `min` (or constant).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub base: f64,
    /// Final learning rate of the cosine.
    pub min: f64,
    /// Warm-up steps.
    pub warmup_steps: usize,
    /// Steps of the whole training.
    pub total_steps: usize,
    /// Shape after warm-up.
    pub kind: Schedule,
}

impl LrSchedule {
    /// The schedule of `task` with `steps_per_epoch` steps per epoch (warm-up rounded to
    /// whole steps).
    pub fn new(task: &ProxyTask, steps_per_epoch: usize) -> Self {
        Self::with_total(task, steps_per_epoch, steps_per_epoch * task.epochs)
    }

    /// The same over `total_steps` steps in all (a fractional epoch count).
    pub fn with_total(task: &ProxyTask, steps_per_epoch: usize, total_steps: usize) -> Self {
        let warmup_steps =
            ((task.warmup_epochs * steps_per_epoch as f64).round() as usize).min(total_steps);
        LrSchedule {
            base: task.lr,
            min: task.min_lr,
            warmup_steps,
            total_steps,
            kind: task.schedule,
        }
    }

    /// Learning rate of 0-based step `step`: `base * (step + 1) / warmup_steps` during the
    /// warm-up (so the first step is not wasted at 0), then `min + (base - min) * (1 +
    /// cos(pi * t)) / 2` with `t = (step - warmup_steps) / (total_steps - warmup_steps)`.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            Schedule::Constant => self.base,
            Schedule::Cosine => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                let t = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
                self.min + (self.base - self.min) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

/// Serialises "seed the global generator, build the network, initialise every parameter"
/// across concurrent trainings (see the module docs).
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// Touches every float parameter so burn's lazy initialisation happens now.
struct ForceInit;

impl ModuleVisitor for ForceInit {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        let _ = param.val();
    }
}

/// Builds a network with initial weights determined by `seed` alone.
fn build_seeded<M: Module, F: FnOnce(&Device) -> M>(build: F, device: &Device, seed: u64) -> M {
    let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    let model = build(device);
    model.visit(&mut ForceInit);
    model
}

/// CPU time of the calling thread in seconds, from `/proc/thread-self/schedstat`.
fn thread_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 * 1e-9)
}

/// CPU seconds of all threads of `pool`, if every thread could read its own.
fn pool_cpu_seconds(pool: &rayon::ThreadPool) -> Option<f64> {
    pool.broadcast(|_| thread_cpu_seconds())
        .into_iter()
        .sum::<Option<f64>>()
}

/// Trains the network `build` makes on `data` with the task's recipe, in a pool of
/// `opts.threads` threads, and evaluates it.
///
/// `build` receives the autodiff device and must create the network on it; it runs under
/// a process-wide lock with burn's generator seeded from `opts.seed`. `progress` is called
/// on the caller's thread (it need not be `Send`). A panic inside the network is returned
/// as [`TrainError::Panicked`] so that one bad child does not end a search.
pub fn train<M, F>(
    data: &TaskData,
    build: F,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(TrainProgress),
) -> Result<Trained<M>, TrainError>
where
    M: Classifier,
    F: FnOnce(&Device) -> M + Send,
{
    if opts.threads == 0 {
        return Err(TrainError::InvalidOptions(
            "threads must be at least 1".into(),
        ));
    }
    if opts.eval_batch_size == 0 {
        return Err(TrainError::InvalidOptions(
            "eval_batch_size must be at least 1".into(),
        ));
    }
    if data.train.is_empty() || data.val.is_empty() {
        return Err(TrainError::InvalidOptions(format!(
            "task `{}` has an empty train or validation split",
            data.task.name
        )));
    }
    // Loaded (and cached) outside the timed pool: reading t10k is not training.
    let test = if opts.evaluate_test {
        Some(data.test()?)
    } else {
        None
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .thread_name(|i| format!("fnas-child-{i}"))
        .stack_size(16 << 20)
        .build()
        .map_err(|e| TrainError::ThreadPool {
            threads: opts.threads,
            reason: e.to_string(),
        })?;
    let cpu_before = pool_cpu_seconds(&pool);
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    let pool_ref = &pool;
    let joined = std::thread::scope(|s| {
        let worker = s.spawn(move || {
            pool_ref.install(move || {
                let mut send = |p: TrainProgress| {
                    // The receiver lives until this thread ends; a send cannot fail earlier.
                    let _ = tx.send(p);
                };
                run(data, test, build, opts, &mut send)
            })
        });
        for p in rx {
            progress(p);
        }
        worker.join()
    });
    let wall = start.elapsed().as_secs_f64();
    let cpu_after = pool_cpu_seconds(&pool);
    let (model, mut report) = match joined {
        Ok(result) => result?,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_string());
            return Err(TrainError::Panicked(msg));
        }
    };
    report.wall_seconds = wall;
    match (cpu_before, cpu_after) {
        (Some(a), Some(b)) => {
            report.cpu_seconds = (b - a).max(0.0);
            report.cpu_time_measured = true;
        }
        _ => {
            report.cpu_seconds = wall * opts.threads as f64;
            report.cpu_time_measured = false;
        }
    }
    Ok(Trained { model, report })
}

/// Epochs a training with `opts` runs: the options' (a finite positive count) or the
/// task's.
fn train_epochs(task: &ProxyTask, opts: &TrainOptions) -> f64 {
    opts.epochs
        .filter(|e| e.is_finite() && *e > 0.0)
        .unwrap_or(task.epochs as f64)
}

/// Optimisation steps of `epochs` epochs of `steps_per_epoch` steps: a fraction of an
/// epoch is rounded to whole steps, and at least one step is taken.
pub fn training_steps(steps_per_epoch: usize, epochs: f64) -> usize {
    ((steps_per_epoch as f64 * epochs).round() as usize).max(1)
}

/// The task's recipe with the options' epochs (rounded up; [`training_steps`] stops the
/// last one early), learning-rate scale and warm-up applied; `None` when they change
/// nothing. A non-positive or non-finite scale counts as 1.
fn recipe_override(task: &ProxyTask, opts: &TrainOptions) -> Option<ProxyTask> {
    let exact = train_epochs(task, opts);
    let epochs = (exact.ceil() as usize).max(1);
    let warmup = opts
        .warmup_epochs
        .unwrap_or(task.warmup_epochs)
        .clamp(0.0, exact);
    let scale = if opts.lr_scale.is_finite() && opts.lr_scale > 0.0 {
        opts.lr_scale
    } else {
        1.0
    };
    (epochs != task.epochs || scale != 1.0 || warmup != task.warmup_epochs).then(|| ProxyTask {
        epochs,
        lr: task.lr * scale,
        min_lr: task.min_lr * scale,
        warmup_epochs: warmup,
        ..task.clone()
    })
}

/// Training images a child processes in `epochs` epochs of `data`'s recipe (full
/// batches only, as the trainer runs them; a fraction as [`training_steps`]): the budget
/// unit of a real-training search and the budget class of the knowledge pool.
pub fn training_images(data: &TaskData, epochs: f64) -> u64 {
    let n = data.train.n;
    if n == 0 {
        return 0;
    }
    let batch = data.task.batch_size.clamp(1, n);
    (training_steps((n / batch).max(1), epochs) * batch) as u64
}

/// One batch of `split` as tensors on `device`.
fn batch(split: &Split, idx: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let len = split.image_len();
    let mut xs = Vec::with_capacity(idx.len() * len);
    for &i in idx {
        xs.extend_from_slice(split.image(i));
    }
    let ys: Vec<i64> = idx.iter().map(|&i| split.y[i] as i64).collect();
    let shape = [idx.len(), split.channels, split.height, split.width];
    (
        Tensor::<4>::from_data(TensorData::new(xs, shape), device),
        Tensor::<1, Int>::from_data(TensorData::new(ys, [idx.len()]), device),
    )
}

/// Accuracy and mean cross-entropy of an inference model on a split; `None` if an
/// output is not finite.
fn evaluate<M: Classifier>(
    model: &M,
    split: &Split,
    device: &Device,
    batch_size: usize,
) -> Result<Option<(f64, f64)>, TrainError> {
    let mut correct = 0usize;
    let mut loss = 0f64;
    let all: Vec<usize> = (0..split.n).collect();
    for idx in all.chunks(batch_size) {
        let (x, _) = batch(split, idx, device);
        let logits = model.forward(x);
        let [b, k] = logits.dims();
        let v = logits
            .try_into_vec_as::<f32>()
            .map_err(|e| TrainError::Backend(format!("{e:?}")))?;
        for (row, &i) in v.chunks(k).zip(idx).take(b) {
            if row.iter().any(|z| !z.is_finite()) {
                return Ok(None);
            }
            let (arg, max) =
                row.iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |(a, m), (j, &z)| {
                            if z > m {
                                (j, z)
                            } else {
                                (a, m)
                            }
                        },
                    );
            let label = split.y[i] as usize;
            if arg == label {
                correct += 1;
            }
            let lse = max as f64
                + row
                    .iter()
                    .map(|&z| ((z - max) as f64).exp())
                    .sum::<f64>()
                    .ln();
            loss += lse - row.get(label).copied().unwrap_or(f32::NAN) as f64;
        }
    }
    let n = split.n.max(1) as f64;
    Ok(Some((correct as f64 / n, loss / n)))
}

/// Accuracy of a trained inference model on the task's t10k test split: for the final
/// report of a search's best child (never for search decisions).
pub fn test_accuracy<M: Classifier>(
    model: &M,
    data: &TaskData,
    device: &Device,
) -> Result<f64, TrainError> {
    let test = data.test()?;
    match evaluate(model, test, device, 500)? {
        Some((acc, _)) => Ok(acc),
        None => Err(TrainError::Backend(
            "the network's output on the test set is not finite".into(),
        )),
    }
}

/// The optimiser of a task.
fn optimizer(task: &ProxyTask) -> ModuleOptimizer {
    let decay = (task.weight_decay > 0.0).then(|| WeightDecayConfig::new(task.weight_decay as f32));
    match task.optimizer {
        Optimizer::Sgd { momentum, nesterov } => SgdConfig::new()
            .with_momentum((momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(momentum)
                    .with_dampening(0.0)
                    .with_nesterov(nesterov)
            }))
            .with_weight_decay(decay)
            .init(),
        Optimizer::Adam {
            beta1,
            beta2,
            epsilon,
        } => AdamConfig::new()
            .with_beta_1(beta1 as f32)
            .with_beta_2(beta2 as f32)
            .with_epsilon(epsilon as f32)
            .with_weight_decay(decay)
            .init(),
    }
}

/// The training proper; runs inside the child's pool.
fn run<M, F>(
    data: &TaskData,
    test: Option<&Split>,
    build: F,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(TrainProgress),
) -> Result<(M, TrainReport), TrainError>
where
    M: Classifier,
    F: FnOnce(&Device) -> M,
{
    let overridden = recipe_override(&data.task, opts);
    let task = overridden.as_ref().unwrap_or(&data.task);
    let plain = opts.device.clone();
    let ad = plain.clone().autodiff();
    let mut model = build_seeded(build, &ad, opts.seed);

    let n = data.train.n;
    let batch_size = task.batch_size.clamp(1, n);
    let steps_per_epoch = (n / batch_size).max(1);
    let total_steps = training_steps(steps_per_epoch, train_epochs(&data.task, opts));
    let schedule = LrSchedule::with_total(task, steps_per_epoch, total_steps);
    let mut optim = optimizer(task);
    let loss_fn = CrossEntropyLossConfig::new()
        .with_smoothing(task.label_smoothing.map(|s| s as f32))
        .init(&ad);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    rng.set_stream(1);

    let train_start = Instant::now();
    let mut order: Vec<usize> = (0..n).collect();
    let mut epoch_losses = Vec::with_capacity(task.epochs);
    let mut images = 0usize;
    let mut step = 0usize;
    for epoch in 0..task.epochs {
        // the last epoch of a fractional count stops early
        let steps_here = steps_per_epoch.min(total_steps - step);
        if steps_here == 0 {
            break;
        }
        let epoch_start = Instant::now();
        shuffle(&mut order, &mut rng);
        let mut sum = 0f64;
        for s in 0..steps_here {
            let idx = &order[s * batch_size..(s + 1) * batch_size];
            let (x, y) = batch(&data.train, idx, &ad);
            let logits = model.forward(x);
            let [_, k] = logits.dims();
            if k != data.classes {
                return Err(TrainError::ClassMismatch {
                    task: task.name.clone(),
                    expected: data.classes,
                    found: k,
                });
            }
            let loss = loss_fn.forward(logits, y);
            let value = loss.clone().into_scalar::<f32>() as f64;
            if !value.is_finite() {
                return Err(TrainError::Diverged { epoch, step });
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = schedule.lr(step);
            model = optim.step(lr, model, grads);
            sum += value;
            images += idx.len();
            progress(TrainProgress::Step {
                epoch,
                epochs: task.epochs,
                step,
                total_steps,
                loss: value,
                lr,
            });
            step += 1;
        }
        let mean_loss = sum / steps_here as f64;
        epoch_losses.push(mean_loss);
        progress(TrainProgress::Epoch {
            epoch,
            epochs: task.epochs,
            mean_loss,
            seconds: epoch_start.elapsed().as_secs_f64(),
        });
    }
    let train_seconds = train_start.elapsed().as_secs_f64();

    let eval_start = Instant::now();
    let inference = model.valid();
    progress(TrainProgress::Evaluating { split: "val" });
    let diverged = TrainError::Diverged {
        epoch: task.epochs.saturating_sub(1),
        step: total_steps,
    };
    let (val_accuracy, val_loss) =
        evaluate(&inference, &data.val, &plain, opts.eval_batch_size)?.ok_or(diverged.clone())?;
    let test_accuracy = match test {
        Some(split) => {
            progress(TrainProgress::Evaluating { split: "test" });
            let (acc, _) =
                evaluate(&inference, split, &plain, opts.eval_batch_size)?.ok_or(diverged)?;
            Some(acc)
        }
        None => None,
    };
    let report = TrainReport {
        val_accuracy,
        val_loss,
        test_accuracy,
        final_loss: epoch_losses.last().copied().unwrap_or(f64::NAN),
        epochs: epoch_losses.len(),
        epoch_losses,
        steps: step,
        images_processed: images,
        train_seconds,
        eval_seconds: eval_start.elapsed().as_secs_f64(),
        wall_seconds: 0.0,
        cpu_seconds: 0.0,
        cpu_time_measured: false,
        threads: opts.threads,
        seed: opts.seed,
    };
    Ok((inference, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(warmup: f64, epochs: usize, kind: Schedule) -> ProxyTask {
        let mut t = ProxyTask::by_name_or_path("fashion-mnist-tiny").unwrap();
        t.lr = 0.1;
        t.min_lr = 0.0;
        t.warmup_epochs = warmup;
        t.epochs = epochs;
        t.schedule = kind;
        t
    }

    #[test]
    fn warmup_then_cosine_values() {
        // 10 steps per epoch, 2 epochs, warm-up 0.5 epoch = 5 steps.
        let s = LrSchedule::new(&task(0.5, 2, Schedule::Cosine), 10);
        assert_eq!((s.warmup_steps, s.total_steps), (5, 20));
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(s.lr(0), 0.02));
        assert!(close(s.lr(4), 0.1));
        assert!(close(s.lr(5), 0.1)); // cosine starts at the peak
        assert!(close(
            s.lr(5 + 15 / 2),
            0.05 * (1.0 + (std::f64::consts::PI * 7.0 / 15.0).cos())
        ));
        assert!(close(
            s.lr(19),
            0.05 * (1.0 + (std::f64::consts::PI * 14.0 / 15.0).cos())
        ));
        assert!(s.lr(19) < 0.002);
        // monotone decreasing after warm-up
        assert!((5..19).all(|i| s.lr(i + 1) < s.lr(i)));
    }

    #[test]
    fn warm_start_recipe_scales_the_rate_and_drops_the_warmup() {
        let base = task(0.2, 2, Schedule::Cosine);
        let mut opts = TrainOptions::new(0, 1);
        assert!(recipe_override(&base, &opts).is_none());
        opts.epochs = Some(1.0);
        opts.lr_scale = 0.3;
        opts.warmup_epochs = Some(0.0);
        let t = recipe_override(&base, &opts).unwrap();
        assert_eq!(t.epochs, 1);
        assert!((t.lr - 0.03).abs() < 1e-12);
        assert_eq!(t.warmup_epochs, 0.0);
        assert_eq!(t.batch_size, base.batch_size);
        let s = LrSchedule::new(&t, 10);
        assert!((s.lr(0) - 0.03).abs() < 1e-12); // no warm-up: the first step is the peak
                                                 // nonsense scales leave the rate alone
        opts.lr_scale = f64::NAN;
        assert!((recipe_override(&base, &opts).unwrap().lr - 0.1).abs() < 1e-12);
    }

    #[test]
    fn fractional_epochs_round_to_whole_steps() {
        assert_eq!(training_steps(12, 2.0), 24);
        assert_eq!(training_steps(12, 0.5), 6);
        assert_eq!(training_steps(12, 0.3), 4); // 3.6 rounds up
        assert_eq!(training_steps(12, 0.01), 1); // at least one step
        let base = task(0.2, 2, Schedule::Cosine);
        let mut opts = TrainOptions::new(0, 1);
        opts.epochs = Some(0.5);
        opts.warmup_epochs = Some(1.0);
        let t = recipe_override(&base, &opts).unwrap();
        assert_eq!(t.epochs, 1, "the partial epoch is started");
        assert_eq!(t.warmup_epochs, 0.5, "the warm-up fits in the training");
        // the cosine ends at the last step actually taken
        let s = LrSchedule::with_total(&t, 12, 6);
        assert_eq!((s.warmup_steps, s.total_steps), (6, 6));
        let s = LrSchedule::with_total(&task(0.0, 1, Schedule::Cosine), 12, 6);
        assert!(s.lr(5) < s.lr(0) * 0.1, "{} {}", s.lr(5), s.lr(0));
        // a nonsense count falls back to the task's epochs
        opts.epochs = Some(f64::NAN);
        assert_eq!(train_epochs(&base, &opts), 2.0);
    }

    #[test]
    fn no_warmup_and_constant() {
        let s = LrSchedule::new(&task(0.0, 1, Schedule::Cosine), 4);
        assert_eq!(s.lr(0), 0.1);
        assert!((s.lr(2) - 0.05).abs() < 1e-12);
        let c = LrSchedule::new(&task(0.25, 1, Schedule::Constant), 8);
        assert_eq!((c.lr(0), c.lr(1), c.lr(2), c.lr(7)), (0.05, 0.1, 0.1, 0.1));
    }
}
