//! Proxy tasks: the seeded, documented recipe a child network is trained and scored with.
//!
//! A search compares thousands of architectures, so each is trained briefly on a proxy of
//! the real problem: a seeded subset of the training images, a validation split carved from
//! the *training* set (disjoint from the training subset), optionally fewer classes and a
//! lower resolution, and a fixed optimisation recipe. Everything that influences the score
//! is in the task so that two runs of the same task are comparable and the task can be
//! stored with the results.
//!
//! The official test set (`t10k`) is never used for a search decision: [`TaskData`] holds
//! only the train and validation splits, and [`TaskData::test`] loads the test set when a
//! final report asks for it.
//!
//! Tasks are TOML. The shipped ones are in `tasks/fashion-mnist.toml` (compiled in, looked
//! up by name with [`ProxyTask::by_name_or_path`]); a user task is a TOML file with the
//! fields of [`ProxyTask`] at top level, or one or more `[[task]]` tables.
//!
//! A task reads IDX files (`data_dir`) or an image folder (`images`, see [`crate::folder`]
//! for the layout). With an image folder that has a `val/` folder, the validation split is
//! drawn from it: its images are permuted with a fresh `ChaCha8Rng::seed_from_u64(seed)`
//! and the first `val_images` taken, and the training subset is the first `train_images`
//! of the permuted `train/` images; asking for more than a folder holds is an error.
//! Without `val/`, both are drawn from `train/` exactly as below.
//!
//! How a split is drawn (stable across platforms and crate updates that keep ChaCha8):
//! the training-set indices whose label is in `classes` (all if absent) are permuted by a
//! Fisher–Yates shuffle driven by `ChaCha8Rng::seed_from_u64(seed)`; the first `val_images`
//! become the validation split, the next `train_images` the training subset. Two tasks with
//! the same seed, classes and `val_images` therefore share the validation split, and the
//! smaller training subset is contained in the larger (the proxy and its long variant
//! compare on the same images).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::folder::{self, FolderOptions};
use crate::idx::{self, DataError, ImageSet};

/// The shipped task file, compiled in so the binary works from any directory.
pub const SHIPPED_TASKS: &str = include_str!("../../../tasks/fashion-mnist.toml");

/// Name the shipped file is reported under in messages.
const SHIPPED_FILE: &str = "tasks/fashion-mnist.toml";

/// Mean pixel value of the Fashion-MNIST training set (pixels scaled to [0, 1]).
pub const FASHION_MNIST_MEAN: f64 = 0.2860;
/// Standard deviation of the Fashion-MNIST training-set pixels (scaled to [0, 1]).
pub const FASHION_MNIST_STD: f64 = 0.3530;

/// Why a task could not be found or is not valid. Every message is one line naming the
/// file, the task and, for a bad value, the field and what it must be.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TaskError {
    /// Neither a shipped task name nor an existing file.
    #[error("unknown task `{name}` (shipped: {known}); or give the path of a .toml task file")]
    Unknown {
        /// What was asked for.
        name: String,
        /// The shipped names.
        known: String,
    },
    /// The task file could not be read.
    #[error("{file}: cannot read ({reason})")]
    Unreadable {
        /// The file.
        file: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The TOML does not parse or does not have the fields of a task.
    #[error("{file}: {message}")]
    Parse {
        /// The file.
        file: String,
        /// Line and what the TOML reader found wrong (unknown field, wrong type, ...).
        message: String,
    },
    /// A field has a value outside its valid range.
    #[error("{file}: task `{task}`: `{field}` must be {expected} (found {found})")]
    Invalid {
        /// The file.
        file: String,
        /// The task name.
        task: String,
        /// The field at fault.
        field: String,
        /// What it must be.
        expected: String,
        /// What it is.
        found: String,
    },
    /// Two tasks of one file share a name.
    #[error("{file}: task `{task}` is defined twice")]
    Duplicate {
        /// The file.
        file: String,
        /// The name.
        task: String,
    },
    /// A file holds no task, several tasks when one was expected, or not the task asked for.
    #[error("{file}: {detail}")]
    Selection {
        /// The file.
        file: String,
        /// What is wrong.
        detail: String,
    },
}

/// How images are resized when a task's `resolution` differs from the data's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    /// Bilinear interpolation with half-pixel centres and edge clamping, no antialiasing:
    /// PyTorch's `interpolate(mode="bilinear", align_corners=False)`. Halving (28 -> 14) is
    /// then exactly the mean of each 2x2 block.
    #[default]
    Bilinear,
    /// Nearest neighbour with half-pixel centres (PyTorch's `nearest-exact`).
    Nearest,
}

/// The shape of the learning rate over training (after the linear warm-up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Half-cosine from `lr` down to `min_lr` over the steps after warm-up.
    #[default]
    Cosine,
    /// `lr` throughout (after warm-up).
    Constant,
}

/// The optimiser of a task. `kind = "sgd"` or `kind = "adam"` selects the variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Optimizer {
    /// SGD with (optionally Nesterov) momentum and no dampening, as PyTorch's `SGD`.
    Sgd {
        /// Momentum factor (0.9 unless given).
        #[serde(default = "default_momentum")]
        momentum: f64,
        /// Nesterov momentum.
        #[serde(default)]
        nesterov: bool,
    },
    /// Adam; `weight_decay` is added to the gradient (L2, as PyTorch's `Adam`).
    Adam {
        /// First-moment decay (0.9 unless given).
        #[serde(default = "default_beta1")]
        beta1: f64,
        /// Second-moment decay (0.999 unless given).
        #[serde(default = "default_beta2")]
        beta2: f64,
        /// Denominator epsilon (1e-8 unless given).
        #[serde(default = "default_epsilon")]
        epsilon: f64,
    },
}

fn default_momentum() -> f64 {
    0.9
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_epsilon() -> f64 {
    1e-8
}

/// Per-pixel normalisation applied after scaling pixels to [0, 1]: `(p - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// Subtracted from every pixel.
    pub mean: f64,
    /// Every pixel is divided by it.
    pub std: f64,
}

impl Default for Normalize {
    /// Fashion-MNIST's training-set statistics.
    fn default() -> Self {
        Normalize {
            mean: FASHION_MNIST_MEAN,
            std: FASHION_MNIST_STD,
        }
    }
}

/// A proxy task: which images, and how a child is trained on them. See the module docs
/// for how the splits are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyTask {
    /// Name the task is looked up and stored under.
    pub name: String,
    /// What the task is for, shown by the CLI.
    #[serde(default)]
    pub description: String,
    /// Directory of the IDX files; [`idx::DEFAULT_DATA_DIR`] when absent. A relative path in
    /// a task file is relative to that file's directory.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Root of an image folder (`ROOT/train/<class>/*.png`, see [`crate::folder`]) read
    /// instead of IDX files; not together with `data_dir`. A relative path in a task file
    /// is relative to that file's directory. Absent from stored settings when unset, so
    /// IDX tasks serialise as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<PathBuf>,
    /// Input channels, 1 (gray) or 3 (RGB). Absent: the data's (IDX: 1; an image folder:
    /// 3 if any training image is stored in a colour format, else 1). Converting RGB to
    /// gray uses PIL's `convert("L")` weights; gray to RGB replicates the plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    /// Training images drawn from the train set.
    pub train_images: usize,
    /// Validation images drawn from the train set, disjoint from the training images.
    pub val_images: usize,
    /// Keep only these original labels, remapped to 0..k in the order given.
    #[serde(default)]
    pub classes: Option<Vec<u8>>,
    /// Square input resolution; the data's own (28) when absent.
    #[serde(default)]
    pub resolution: Option<usize>,
    /// How images are resized when `resolution` is set.
    #[serde(default)]
    pub resize: Resize,
    /// Seed of the split (the trainer gets its own seed for initialisation and shuffling).
    pub seed: u64,
    /// Passes over the training subset.
    pub epochs: usize,
    /// Images per optimisation step.
    pub batch_size: usize,
    /// The optimiser.
    pub optimizer: Optimizer,
    /// Peak learning rate (reached at the end of the warm-up).
    pub lr: f64,
    /// Learning rate at the end of a cosine schedule.
    #[serde(default)]
    pub min_lr: f64,
    /// L2 penalty added to every parameter's gradient (BatchNorm's included, as PyTorch does).
    #[serde(default)]
    pub weight_decay: f64,
    /// Linear warm-up length in epochs (fractions allowed; rounded to whole steps).
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Shape of the learning rate after warm-up.
    #[serde(default)]
    pub schedule: Schedule,
    /// Label smoothing of the cross-entropy loss (none when absent).
    #[serde(default)]
    pub label_smoothing: Option<f64>,
    /// Pixel normalisation, one mean and std for every channel (Fashion-MNIST's
    /// statistics when absent: an image-folder task should set its own data's).
    #[serde(default)]
    pub normalize: Normalize,
}

/// A file of several tasks: `[[task]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    task: Vec<ProxyTask>,
}

/// One line, whatever a path contains.
fn show(path: &Path) -> String {
    path.display()
        .to_string()
        .split(['\n', '\r'])
        .collect::<Vec<_>>()
        .join(" ")
}

/// Turns a TOML error into "line L: message".
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let msg = e
        .message()
        .split(['\n', '\r'])
        .collect::<Vec<_>>()
        .join(" ");
    match e.span() {
        Some(span) => {
            let end = span.start.min(text.len());
            let line = text.as_bytes()[..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

/// Parses a task file: `[[task]]` tables, or one task at top level.
fn parse_tasks(text: &str, file: &str) -> Result<Vec<ProxyTask>, TaskError> {
    let parse_err = |e: toml::de::Error| TaskError::Parse {
        file: file.to_string(),
        message: toml_message(text, &e),
    };
    let value: toml::Table = toml::from_str(text).map_err(parse_err)?;
    let tasks = if value.contains_key("task") {
        toml::from_str::<TaskFile>(text).map_err(parse_err)?.task
    } else {
        vec![toml::from_str::<ProxyTask>(text).map_err(parse_err)?]
    };
    if tasks.is_empty() {
        return Err(TaskError::Selection {
            file: file.to_string(),
            detail: "no task in the file".to_string(),
        });
    }
    for (i, t) in tasks.iter().enumerate() {
        t.validate(file)?;
        if tasks[..i].iter().any(|o| o.name == t.name) {
            return Err(TaskError::Duplicate {
                file: file.to_string(),
                task: t.name.clone(),
            });
        }
    }
    Ok(tasks)
}

impl ProxyTask {
    /// All shipped tasks, in file order.
    pub fn shipped() -> Vec<ProxyTask> {
        // The shipped file is checked by a test; failing here is a build defect, not input.
        parse_tasks(SHIPPED_TASKS, SHIPPED_FILE).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Names of the shipped tasks.
    pub fn shipped_names() -> Vec<String> {
        Self::shipped().into_iter().map(|t| t.name).collect()
    }

    /// A shipped task by name (`fashion-mnist`, ...), or a task file: `PATH` for a file
    /// with one task, `PATH#NAME` to pick one of several. A relative `data_dir` in a file
    /// becomes relative to the file's directory.
    pub fn by_name_or_path(spec: &str) -> Result<ProxyTask, TaskError> {
        if let Some(t) = Self::shipped().into_iter().find(|t| t.name == spec) {
            return Ok(t);
        }
        let (path, pick) = match spec.rsplit_once('#') {
            Some((p, n)) if !p.is_empty() => (p, Some(n)),
            _ => (spec, None),
        };
        let path = Path::new(path);
        let looks_like_path = path.extension().is_some_and(|e| e == "toml")
            || spec.contains(std::path::MAIN_SEPARATOR)
            || spec.contains('/');
        if !path.is_file() && !looks_like_path {
            return Err(TaskError::Unknown {
                name: spec.to_string(),
                known: Self::shipped_names().join(", "),
            });
        }
        Self::from_file(path, pick)
    }

    /// Reads a task file; `pick` names the task when the file holds several.
    pub fn from_file(path: &Path, pick: Option<&str>) -> Result<ProxyTask, TaskError> {
        let file = show(path);
        let text = std::fs::read_to_string(path).map_err(|e| TaskError::Unreadable {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        let tasks = parse_tasks(&text, &file)?;
        let names = tasks
            .iter()
            .map(|t| t.name.clone())
            .collect::<Vec<_>>()
            .join(", ");
        let mut task =
            match pick {
                Some(name) => tasks.into_iter().find(|t| t.name == name).ok_or_else(|| {
                    TaskError::Selection {
                        file: file.clone(),
                        detail: format!("no task `{name}` (tasks: {names})"),
                    }
                })?,
                None if tasks.len() == 1 => {
                    tasks
                        .into_iter()
                        .next()
                        .ok_or_else(|| TaskError::Selection {
                            file: file.clone(),
                            detail: "no task in the file".to_string(),
                        })?
                }
                None => {
                    return Err(TaskError::Selection {
                        file: file.clone(),
                        detail: format!(
                            "holds {} tasks ({names}); pick one with {file}#NAME",
                            names.split(", ").count()
                        ),
                    })
                }
            };
        let base = path.parent().unwrap_or(Path::new("."));
        for dir in [&mut task.data_dir, &mut task.images].into_iter().flatten() {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        Ok(task)
    }

    /// Parses tasks from TOML text (`[[task]]` tables or one top-level task); `file` names
    /// the source in messages.
    pub fn parse(text: &str, file: &str) -> Result<Vec<ProxyTask>, TaskError> {
        parse_tasks(text, file)
    }

    /// Checks every field's range, naming `file`, the task and the field on failure.
    pub fn validate(&self, file: &str) -> Result<(), TaskError> {
        let bad = |field: &str, expected: &str, found: String| TaskError::Invalid {
            file: file.to_string(),
            task: self.name.clone(),
            field: field.to_string(),
            expected: expected.to_string(),
            found,
        };
        let finite_in = |v: f64, lo: f64, hi: f64, hi_open: bool| {
            v.is_finite() && v >= lo && (if hi_open { v < hi } else { v <= hi })
        };
        // a task's name is part of the default experiment name, a folder name
        if fnas_core::names::check_new("task", &self.name).is_err() {
            return Err(bad(
                "name",
                fnas_core::names::NAME_CHARSET,
                format!("{:?}", self.name),
            ));
        }
        if self.train_images == 0 {
            return Err(bad("train_images", "at least 1", "0".into()));
        }
        if self.val_images == 0 {
            return Err(bad("val_images", "at least 1", "0".into()));
        }
        if self.epochs == 0 || self.epochs > 10_000 {
            return Err(bad(
                "epochs",
                "between 1 and 10000",
                self.epochs.to_string(),
            ));
        }
        if self.batch_size == 0 || self.batch_size > self.train_images {
            return Err(bad(
                "batch_size",
                "between 1 and train_images",
                self.batch_size.to_string(),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(bad("lr", "a finite number > 0", self.lr.to_string()));
        }
        if !finite_in(self.min_lr, 0.0, self.lr, false) {
            return Err(bad("min_lr", "between 0 and lr", self.min_lr.to_string()));
        }
        if !finite_in(self.weight_decay, 0.0, 1.0, true) {
            return Err(bad(
                "weight_decay",
                "in [0, 1)",
                self.weight_decay.to_string(),
            ));
        }
        if !finite_in(self.warmup_epochs, 0.0, self.epochs as f64, false) {
            return Err(bad(
                "warmup_epochs",
                "between 0 and epochs",
                self.warmup_epochs.to_string(),
            ));
        }
        if let Some(s) = self.label_smoothing {
            if !finite_in(s, 0.0, 1.0, true) {
                return Err(bad("label_smoothing", "in [0, 1)", s.to_string()));
            }
        }
        match self.optimizer {
            Optimizer::Sgd { momentum, .. } => {
                if !finite_in(momentum, 0.0, 1.0, true) {
                    return Err(bad("optimizer.momentum", "in [0, 1)", momentum.to_string()));
                }
            }
            Optimizer::Adam {
                beta1,
                beta2,
                epsilon,
            } => {
                if !finite_in(beta1, 0.0, 1.0, true) {
                    return Err(bad("optimizer.beta1", "in [0, 1)", beta1.to_string()));
                }
                if !finite_in(beta2, 0.0, 1.0, true) {
                    return Err(bad("optimizer.beta2", "in [0, 1)", beta2.to_string()));
                }
                if !(epsilon.is_finite() && epsilon > 0.0) {
                    return Err(bad("optimizer.epsilon", "> 0", epsilon.to_string()));
                }
            }
        }
        if let Some(classes) = &self.classes {
            if classes.len() < 2 {
                return Err(bad(
                    "classes",
                    "at least 2 distinct labels",
                    format!("{classes:?}"),
                ));
            }
            if classes
                .iter()
                .enumerate()
                .any(|(i, c)| classes[..i].contains(c))
            {
                return Err(bad("classes", "distinct labels", format!("{classes:?}")));
            }
        }
        if self.images.is_some() && self.data_dir.is_some() {
            return Err(bad(
                "images",
                "absent when data_dir is set (one source of images per task)",
                "both".into(),
            ));
        }
        if let Some(c) = self.channels {
            if c != 1 && c != 3 {
                return Err(bad("channels", "1 or 3", c.to_string()));
            }
        }
        if let Some(r) = self.resolution {
            if !(4..=256).contains(&r) {
                return Err(bad("resolution", "between 4 and 256", r.to_string()));
            }
        }
        if !self.normalize.mean.is_finite() {
            return Err(bad(
                "normalize.mean",
                "a finite number",
                self.normalize.mean.to_string(),
            ));
        }
        if !(self.normalize.std.is_finite() && self.normalize.std > 0.0) {
            return Err(bad(
                "normalize.std",
                "a finite number > 0",
                self.normalize.std.to_string(),
            ));
        }
        Ok(())
    }

    /// The data directory this task reads.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(idx::DEFAULT_DATA_DIR))
    }

    /// Optimisation steps per epoch: whole batches only (the shuffled remainder is dropped,
    /// so BatchNorm never sees a batch of one), at least one.
    pub fn steps_per_epoch(&self) -> usize {
        (self.train_images / self.batch_size.max(1)).max(1)
    }

    /// Loads the train set and draws the task's splits: deterministic for `seed`. An
    /// image-folder task uses the cache of [`folder::default_cache_dir`].
    pub fn materialise(&self) -> Result<TaskData, DataError> {
        self.materialise_cached(folder::default_cache_dir().as_deref())
    }

    /// [`Self::materialise`] with the image-folder cache in `cache_dir` (`None`: no
    /// cache); IDX tasks ignore it.
    pub fn materialise_cached(&self, cache_dir: Option<&Path>) -> Result<TaskData, DataError> {
        let Some(root) = &self.images else {
            let dir = self.data_dir();
            let set = idx::load_split(&dir, "train")?;
            return self.materialise_from(&set, &dir);
        };
        let opts = self.folder_options();
        let train = folder::load(root, "train", &opts, cache_dir)?;
        let val = if root.join("val").is_dir() {
            let val = folder::load(root, "val", &opts, cache_dir)?;
            check_classes(&root.join("val"), &val.class_names, &train.class_names)?;
            if (val.set.channels, val.set.rows) != (train.set.channels, train.set.rows) {
                return Err(DataError::MixedSizes {
                    file: show(&root.join("val")),
                    detail: format!(
                        "{}x{} pixels in {} channel(s) but train/ has {}x{} in {}",
                        val.set.rows,
                        val.set.cols,
                        val.set.channels,
                        train.set.rows,
                        train.set.cols,
                        train.set.channels
                    ),
                });
            }
            Some(val.set)
        } else {
            None
        };
        let mut data = self.draw(&train.set, val.as_ref(), root, Some(&train.class_names))?;
        data.source_size = train.source_size;
        data.cache_dir = cache_dir.map(Path::to_path_buf);
        Ok(data)
    }

    /// How this task's image folder is decoded.
    fn folder_options(&self) -> FolderOptions {
        FolderOptions {
            channels: self.channels,
            resolution: self.resolution,
            resize: self.resize,
        }
    }

    /// Draws the task's splits from an already loaded train set (`dir` is where it came
    /// from; test-set loading reads it again from there). Lets a caller load the 60,000
    /// images once for several tasks.
    pub fn materialise_from(&self, set: &ImageSet, dir: &Path) -> Result<TaskData, DataError> {
        self.draw(set, None, dir, None)
    }

    /// Draws the splits: from `set` alone, or the training subset from `set` and the
    /// validation split from `val` (see the module docs). `names`: the class names of an
    /// image folder (label = position).
    fn draw(
        &self,
        set: &ImageSet,
        val: Option<&ImageSet>,
        dir: &Path,
        names: Option<&[String]>,
    ) -> Result<TaskData, DataError> {
        let class_map = self.class_map(set, dir)?;
        let candidates = |s: &ImageSet| -> Vec<usize> {
            (0..s.n)
                .filter(|&i| class_map.contains(&s.labels[i]))
                .collect()
        };
        let not_enough =
            |dir: &Path, requested: usize, available: usize| DataError::NotEnoughImages {
                task: self.name.clone(),
                dir: show(dir),
                requested,
                available,
            };
        let (train_indices, val_indices) = match val {
            None => {
                let mut perm = candidates(set);
                let requested = self.train_images + self.val_images;
                if requested > perm.len() {
                    return Err(not_enough(dir, requested, perm.len()));
                }
                shuffle(&mut perm, &mut ChaCha8Rng::seed_from_u64(self.seed));
                (
                    perm[self.val_images..requested].to_vec(),
                    perm[..self.val_images].to_vec(),
                )
            }
            Some(v) => {
                let mut perm = candidates(set);
                if self.train_images > perm.len() {
                    return Err(not_enough(
                        &dir.join("train"),
                        self.train_images,
                        perm.len(),
                    ));
                }
                shuffle(&mut perm, &mut ChaCha8Rng::seed_from_u64(self.seed));
                let mut vperm = candidates(v);
                if self.val_images > vperm.len() {
                    return Err(not_enough(&dir.join("val"), self.val_images, vperm.len()));
                }
                shuffle(&mut vperm, &mut ChaCha8Rng::seed_from_u64(self.seed));
                (
                    perm[..self.train_images].to_vec(),
                    vperm[..self.val_images].to_vec(),
                )
            }
        };
        let prep = Prep::new(self, set, &class_map);
        let class_names = match names {
            Some(n) => class_map.iter().map(|&l| n[l as usize].clone()).collect(),
            None => class_map.iter().map(|l| l.to_string()).collect(),
        };
        Ok(TaskData {
            train: prep.split(set, &train_indices),
            val: prep.split(val.unwrap_or(set), &val_indices),
            task: self.clone(),
            data_dir: dir.to_path_buf(),
            classes: class_map.len(),
            class_map,
            class_names,
            folder_classes: names.map(<[String]>::to_vec),
            cache_dir: None,
            source_size: [set.rows, set.cols],
            train_indices,
            val_indices,
            test: OnceLock::new(),
        })
    }

    /// Original label of each class of the task (index = the task's label).
    fn class_map(&self, set: &ImageSet, dir: &Path) -> Result<Vec<u8>, DataError> {
        let mut present = [false; 256];
        for &l in &set.labels {
            present[l as usize] = true;
        }
        match &self.classes {
            Some(classes) => {
                for &c in classes {
                    if !present[c as usize] {
                        let labels: Vec<String> = (0..256)
                            .filter(|&l| present[l])
                            .map(|l| l.to_string())
                            .collect();
                        return Err(DataError::MissingClass {
                            task: self.name.clone(),
                            dir: show(dir),
                            class: c,
                            present: labels.join(", "),
                        });
                    }
                }
                Ok(classes.clone())
            }
            // All labels 0..=max: a class absent from the data keeps its output unit, so
            // label numbers keep their meaning.
            None => {
                let max = (0..256).rev().find(|&l| present[l]).unwrap_or(0);
                Ok((0..=max as u8).collect())
            }
        }
    }
}

/// Checks that a `val/` or `test/` folder has train's classes.
fn check_classes(folder: &Path, found: &[String], expected: &[String]) -> Result<(), DataError> {
    if found == expected {
        return Ok(());
    }
    Err(DataError::ClassMismatch {
        folder: show(folder),
        found: found.join(", "),
        expected: expected.join(", "),
    })
}

/// Fisher–Yates shuffle from raw 64-bit draws (multiply-shift range reduction), so the
/// permutation depends only on the generator's output stream, not on how a `rand` version
/// samples ranges.
pub fn shuffle<T>(v: &mut [T], rng: &mut impl RngCore) {
    for i in (1..v.len()).rev() {
        let j = ((rng.next_u64() as u128 * (i as u128 + 1)) >> 64) as usize;
        v.swap(i, j);
    }
}

/// Images and labels ready for tensors: normalised `f32` pixels, `[n, channels, height,
/// width]` row-major, and labels in 0..classes.
#[derive(Clone, PartialEq)]
pub struct Split {
    /// `n * channels * height * width` normalised pixels.
    pub x: Vec<f32>,
    /// One label per image, in 0..classes.
    pub y: Vec<u8>,
    /// Number of images.
    pub n: usize,
    /// Channels per image (1 for the IDX data sets).
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
}

impl std::fmt::Debug for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Split {{ n: {}, shape: [{}, {}, {}] }}",
            self.n, self.channels, self.height, self.width
        )
    }
}

impl Split {
    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i`. Panics if `i >= n`, like slice indexing.
    pub fn image(&self, i: usize) -> &[f32] {
        let len = self.image_len();
        &self.x[i * len..(i + 1) * len]
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// A task's data, drawn and preprocessed: what the trainer consumes. Shared read-only by
/// children trained in parallel.
#[derive(Debug)]
pub struct TaskData {
    /// The task it was drawn for (the trainer reads the recipe from it).
    pub task: ProxyTask,
    /// Where the IDX files are, or the root of the image folder.
    pub data_dir: PathBuf,
    /// The training subset.
    pub train: Split,
    /// The validation split (from the train set, disjoint from `train`).
    pub val: Split,
    /// Number of classes (outputs of the classifier).
    pub classes: usize,
    /// Original label of each task label (an image folder's: the class folder's position
    /// in the sorted names).
    pub class_map: Vec<u8>,
    /// Name of each task label, for reports and exports: the class folder's name, or
    /// for IDX data the original label number.
    pub class_names: Vec<String>,
    /// Height and width of the original images, before any resizing (an export's
    /// preprocessing must repeat the resize); for an image folder, its first image's.
    pub source_size: [usize; 2],
    /// Indices into the original train set (or `train/` of an image folder) of the
    /// training images, in split order.
    pub train_indices: Vec<usize>,
    /// Indices into the original train set (or `val/` when an image folder has one) of
    /// the validation images, in split order.
    pub val_indices: Vec<usize>,
    /// An image folder's class names, all of them (test/ must match them).
    folder_classes: Option<Vec<String>>,
    /// The image-folder cache the test split is read through.
    cache_dir: Option<PathBuf>,
    test: OnceLock<Split>,
}

impl TaskData {
    /// Input resolution (square) of the splits.
    pub fn resolution(&self) -> usize {
        self.train.height
    }

    /// Input channels of the splits (1 gray, 3 RGB).
    pub fn channels(&self) -> usize {
        self.train.channels
    }

    /// The test set (`t10k`, or an image folder's `test/`), class-filtered, remapped, resized and normalised like the
    /// other splits; loaded on the first call and kept. Only for final reports: a search
    /// must never decide anything on it.
    pub fn test(&self) -> Result<&Split, DataError> {
        if let Some(t) = self.test.get() {
            return Ok(t);
        }
        let set = match &self.folder_classes {
            None => idx::load_split(&self.data_dir, "t10k")?,
            Some(names) => {
                let test = folder::load(
                    &self.data_dir,
                    "test",
                    &self.task.folder_options(),
                    self.cache_dir.as_deref(),
                )?;
                check_classes(&self.data_dir.join("test"), &test.class_names, names)?;
                if (test.set.channels, test.set.rows) != (self.channels(), self.resolution()) {
                    return Err(DataError::MixedSizes {
                        file: show(&self.data_dir.join("test")),
                        detail: format!(
                            "{}x{} pixels in {} channel(s) but the task's splits have {}x{} in {}",
                            test.set.rows,
                            test.set.cols,
                            test.set.channels,
                            self.resolution(),
                            self.resolution(),
                            self.channels()
                        ),
                    });
                }
                test.set
            }
        };
        let indices: Vec<usize> = (0..set.n)
            .filter(|&i| self.class_map.contains(&set.labels[i]))
            .collect();
        let prep = Prep::new(&self.task, &set, &self.class_map);
        let split = prep.split(&set, &indices);
        // Another thread may have loaded it meanwhile; both loads are identical.
        Ok(self.test.get_or_init(move || split))
    }
}

/// The per-image preprocessing of a task: label remap, channel conversion, resize,
/// normalisation.
struct Prep {
    remap: [u8; 256],
    rows: usize,
    cols: usize,
    from_channels: usize,
    channels: usize,
    out: usize,
    resize: Resize,
    mean: f32,
    std: f32,
}

impl Prep {
    fn new(task: &ProxyTask, set: &ImageSet, class_map: &[u8]) -> Prep {
        let mut remap = [u8::MAX; 256];
        for (new, &old) in class_map.iter().enumerate() {
            remap[old as usize] = new as u8;
        }
        let (rows, cols) = (set.rows, set.cols);
        Prep {
            remap,
            rows,
            cols,
            from_channels: set.channels,
            channels: task.channels.unwrap_or(set.channels),
            out: task.resolution.unwrap_or(rows),
            resize: task.resize,
            mean: task.normalize.mean as f32,
            std: task.normalize.std as f32,
        }
    }

    fn split(&self, set: &ImageSet, indices: &[usize]) -> Split {
        let (oh, ow) = if self.out == self.rows && self.out == self.cols {
            (self.rows, self.cols)
        } else {
            (self.out, self.out)
        };
        let plane = self.rows * self.cols;
        let mut x = Vec::with_capacity(indices.len() * self.channels * oh * ow);
        let mut y = Vec::with_capacity(indices.len());
        let mut unit = vec![0f32; plane];
        for &i in indices {
            let pixels = convert_channels(set.image(i), self.from_channels, self.channels);
            for c in 0..self.channels {
                for (u, &p) in unit.iter_mut().zip(&pixels[c * plane..(c + 1) * plane]) {
                    *u = p as f32 / 255.0;
                }
                let img = if (oh, ow) == (self.rows, self.cols) {
                    unit.clone()
                } else {
                    match self.resize {
                        Resize::Bilinear => resize_bilinear(&unit, self.rows, self.cols, oh, ow),
                        Resize::Nearest => resize_nearest(&unit, self.rows, self.cols, oh, ow),
                    }
                };
                x.extend(img.iter().map(|&v| (v - self.mean) / self.std));
            }
            y.push(self.remap[set.labels[i] as usize]);
        }
        Split {
            x,
            y,
            n: indices.len(),
            channels: self.channels,
            height: oh,
            width: ow,
        }
    }
}

/// One image's planes converted from `from` to `to` channels: gray to RGB replicates the
/// plane, RGB to gray uses PIL's `convert("L")` weights (0.299, 0.587, 0.114).
fn convert_channels(pixels: &[u8], from: usize, to: usize) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    match (from, to) {
        (f, t) if f == t => Cow::Borrowed(pixels),
        (1, t) => Cow::Owned(pixels.repeat(t)),
        (3, 1) => {
            let n = pixels.len() / 3;
            let (r, rest) = pixels.split_at(n);
            let (g, b) = rest.split_at(n);
            Cow::Owned(
                (0..n)
                    .map(|i| {
                        ((r[i] as u32 * 19595 + g[i] as u32 * 38470 + b[i] as u32 * 7471 + 0x8000)
                            >> 16) as u8
                    })
                    .collect(),
            )
        }
        // validation allows 1 and 3 only; anything else keeps the first plane
        (f, _) => Cow::Borrowed(&pixels[..pixels.len() / f.max(1)]),
    }
}

/// Source coordinate and weights of bilinear sampling along one axis (half-pixel centres,
/// clamped at the edges like PyTorch with `align_corners=False`).
fn bilinear_taps(src: usize, dst: usize) -> Vec<(usize, usize, f32)> {
    let scale = src as f64 / dst as f64;
    (0..dst)
        .map(|o| {
            let s = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(src - 1);
            let i1 = (i0 + 1).min(src - 1);
            (i0, i1, (s - i0 as f64) as f32)
        })
        .collect()
}

/// Bilinear resize of one `h x w` image to `oh x ow` (see [`Resize::Bilinear`]).
pub fn resize_bilinear(img: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let ty = bilinear_taps(h, oh);
    let tx = bilinear_taps(w, ow);
    let mut out = Vec::with_capacity(oh * ow);
    for &(y0, y1, fy) in &ty {
        for &(x0, x1, fx) in &tx {
            let top = img[y0 * w + x0] * (1.0 - fx) + img[y0 * w + x1] * fx;
            let bot = img[y1 * w + x0] * (1.0 - fx) + img[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bot * fy);
        }
    }
    out
}

/// Nearest-neighbour resize with half-pixel centres (see [`Resize::Nearest`]).
pub fn resize_nearest(img: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let pick = |src: usize, dst: usize, o: usize| {
        (((o as f64 + 0.5) * src as f64 / dst as f64).floor() as usize).min(src - 1)
    };
    let mut out = Vec::with_capacity(oh * ow);
    for oy in 0..oh {
        let sy = pick(h, oh, oy);
        for ox in 0..ow {
            out.push(img[sy * w + pick(w, ow, ox)]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_tasks_parse_and_validate() {
        let tasks = ProxyTask::shipped();
        let names: Vec<_> = tasks.iter().map(|t| t.name.as_str()).collect();
        for want in [
            "fashion-mnist",
            "fashion-mnist-long",
            "fashion-mnist-full",
            "fashion-mnist-tiny",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
    }

    #[test]
    fn halving_bilinear_is_the_2x2_mean() {
        let img: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let out = resize_bilinear(&img, 4, 4, 2, 2);
        assert_eq!(out, vec![2.5, 4.5, 10.5, 12.5]);
        let same = resize_bilinear(&img, 4, 4, 4, 4);
        assert_eq!(same, img);
        let near = resize_nearest(&img, 4, 4, 2, 2);
        assert_eq!(near, vec![5.0, 7.0, 13.0, 15.0]);
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut a: Vec<usize> = (0..100).collect();
        let mut b = a.clone();
        shuffle(&mut a, &mut ChaCha8Rng::seed_from_u64(7));
        shuffle(&mut b, &mut ChaCha8Rng::seed_from_u64(7));
        assert_eq!(a, b);
        assert_ne!(a, (0..100).collect::<Vec<_>>());
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..100).collect::<Vec<_>>());
    }
}
