//! Command-line arguments (clap derive): every command and option has help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Fast neural architecture search: RL-based NAS (MnasNet-style PPO) accelerated by
/// FNAS, on tabular NAS benchmarks and on real child training.
#[derive(Parser, Debug)]
#[command(
    name = "fnas",
    version,
    about,
    long_about = None,
    propagate_version = true,
    after_help = "Examples:\n  fnas search --task fashion-mnist --strategy fnas-select --resume\n  fnas show fnas-select-train-fashion-mnist-s0\n  fnas search --task nas-bench-graph/cora --strategy evolution --budget 300 --store runs.db"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
// parsed once per process: the size of the largest variant does not matter
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run (or resume) one architecture search and record it in the store.
    #[command(
        after_help = "Examples:\n  fnas search --task fashion-mnist --strategy fnas-select --resume\n  fnas search --task nas-bench-graph/arxiv --strategy fnas-select --budget 300 --store runs.db --name arxiv\n  fnas search --store runs.db --name arxiv --resume --budget 600      # extend a finished search\n  fnas search --task fashion-mnist-tiny --trial-command 'python3 train.py' --trial-code-dir examples/pytorch-trainer"
    )]
    Search(SearchArgs),
    /// List the experiments of a store.
    #[command(after_help = "Examples:\n  fnas ls\n  fnas ls --store runs.db --json")]
    Ls(LsArgs),
    /// Show one experiment: its best architectures and metrics (all trials with --json).
    #[command(
        after_help = "Examples:\n  fnas show arxiv --store runs.db\n  fnas show arxiv --store runs.db --top 20\n  fnas show arxiv --store postgresql://fnas@dbhost/fnas --json"
    )]
    Show(ShowArgs),
    /// Inspect search spaces.
    #[command(
        after_help = "Examples:\n  fnas space show mnas-28\n  fnas space sample nas-bench-graph --seed 3 --count 5\n  fnas space show spaces/mnas-28.toml --json"
    )]
    Space {
        #[command(subcommand)]
        command: SpaceCommand,
    },
    /// Compare strategies on a tabular benchmark over seeds and datasets.
    ///
    /// The critic and fnas-select flags apply to every strategy among --strategies that
    /// has the part they set (and are refused when none has it).
    #[command(
        after_help = "Examples:\n  fnas bench --benchmark nas-bench-graph --datasets cora,pubmed --strategies evolution,fnas-select --seeds 20\n  fnas bench --benchmark analog-nasbench --datasets analog --strategies ppo,fnas --seeds 10 --json bench.json"
    )]
    Bench(BenchArgs),
    /// Train one child network of an MNAS space on a proxy task and print its metrics.
    #[command(
        after_help = "Examples:\n  fnas train --arch median --task fashion-mnist-full --test\n  fnas train --arch random:7 --task fashion-mnist --weights-dir weights --json"
    )]
    Train(TrainArgs),
    /// Evaluate the queued trials of an experiment that a `fnas search` drives (on this
    /// or another machine sharing the store), until the search ends.
    #[command(
        after_help = "Examples:\n  fnas worker --store runs.db --experiment fm\n  fnas worker --store postgresql://fnas@dbhost/fnas --experiment fm --lease-seconds 120"
    )]
    Worker(WorkerArgs),
    /// Write (and with --submit, submit) a Slurm job array whose tasks run `fnas worker`
    /// on an experiment.
    #[command(
        after_help = "Examples:\n  fnas slurm --store postgresql://fnas@dbhost/fnas --experiment fm --workers 16 --gpus-per-worker 1 --time 4:00:00 --submit\n  fnas slurm --store /shared/runs.db --experiment fm --workers 2 --out fm.sbatch     # write only"
    )]
    Slurm(SlurmArgs),
    /// Export a trial for use outside fnas: for real training the architecture, layer
    /// plan, trained weights (safetensors, PyTorch names), a standalone PyTorch model.py
    /// and the preprocessing; for a tabular benchmark the architecture and its record.
    ///
    /// Files of a real-training trial: arch.txt, plan.json, weights.safetensors,
    /// model.py, preprocess.json, record.json. In Python: `import model; net =
    /// model.load(); logits = net(model.preprocess(uint8_images))`.
    #[command(
        after_help = "Examples:\n  fnas export fm --best --store runs.db --out fm-best\n  fnas export fm --trial 17 --store runs.db --out fm-17 --force"
    )]
    Export(ExportArgs),
    /// Write one self-contained HTML report (charts inline, nothing fetched) about the
    /// experiments of a store: how each search went, the accuracy/latency trade-off, the
    /// critic, the knowledge pool and the top architectures.
    #[command(
        after_help = "Examples:\n  fnas report --store runs.db --out report.html\n  fnas report arxiv arxiv-evo --store runs.db --out arxiv.html --top 20\n  fnas report --bench bench.json --out bench.html"
    )]
    Report(ReportArgs),
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Experiments to report (default: every experiment of the store).
    pub experiments: Vec<String>,
    #[command(flatten)]
    pub store: StoreArg,
    /// The HTML file to write.
    #[arg(long, default_value = "report.html")]
    pub out: PathBuf,
    /// How many of the best architectures to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Report these `fnas bench --json` files instead of a store's experiments.
    #[arg(long, value_name = "FILE")]
    pub bench: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SlurmArgs {
    /// The experiment the workers evaluate (started by `fnas search`, e.g. with
    /// `--workers 0` on a login node).
    #[arg(long)]
    pub experiment: String,
    #[command(flatten)]
    pub store: StoreArg,
    /// Worker processes: the tasks of the job array.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub workers: u32,
    /// CPU cores per worker (`--cpus-per-task`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub cpus_per_worker: u32,
    /// GPUs per worker (`--gres=gpu:G`; 0: none).
    #[arg(long, default_value_t = 0)]
    pub gpus_per_worker: u32,
    /// Time limit of each worker (`--time`, Slurm's format: MINUTES, HH:MM:SS, D-HH...).
    #[arg(long)]
    pub time: Option<String>,
    /// Partition (default: the cluster's default partition).
    #[arg(long)]
    pub partition: Option<String>,
    /// The job script to write (default: fnas-worker-EXPERIMENT.sbatch here).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Folder of the workers' log files (default: slurm-logs/ beside the script).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    /// Directory of the benchmark data on the compute nodes (default: the worker's).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The workers' lease (see `fnas worker --lease-seconds`).
    #[arg(long, default_value_t = 60.0)]
    pub lease_seconds: f64,
    /// Submit the script with `sbatch` and print the job id.
    #[arg(long)]
    pub submit: bool,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// The experiment to work on.
    #[arg(long)]
    pub experiment: String,
    #[command(flatten)]
    pub store: StoreArg,
    /// Directory of the benchmark data (default: the data/ folder of the set-up).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// A claimed trial is taken back from this worker if it has not reported for this
    /// many seconds (it reports every third of it while it evaluates).
    #[arg(long, default_value_t = 60.0)]
    pub lease_seconds: f64,
    /// Stop after this many evaluations (default: when the search ends).
    #[arg(long)]
    pub max_trials: Option<u64>,
    /// Stop after waiting this long with nothing to claim (default: wait while the search runs).
    #[arg(long)]
    pub idle_exit_seconds: Option<f64>,
    /// Print one JSON line per finished trial.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The architecture in the space's text form (`b1.op=mbconv6 b1.kernel=3 ...`, see
    /// `fnas space sample mnas-28`), or `median` (the middle choice of every decision),
    /// or `random:SEED`.
    #[arg(long)]
    pub arch: String,
    /// Proxy task: a shipped name (fashion-mnist, fashion-mnist-long, fashion-mnist-full,
    /// fashion-mnist-small, fashion-mnist-small-tops, fashion-mnist-tops, fashion-mnist-3k,
    /// fashion-mnist-3k-long, fashion-mnist-tiny; tasks/fashion-mnist.toml) or a task TOML
    /// file (`FILE` or `FILE#NAME`).
    #[arg(long, default_value = "fashion-mnist")]
    pub task: String,
    /// MNAS search space: mnas-28 or a space TOML file.
    #[arg(long, default_value = "mnas-28")]
    pub space: String,
    /// Epochs (default: the task's).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Seed of the initial weights and of the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also evaluate the t10k test set (reported; never used by a search).
    #[arg(long)]
    pub test: bool,
    /// Directory of the IDX files (default: the task's, /usr/share/datasets/fashion-mnist).
    #[arg(long, conflicts_with = "images")]
    pub data_dir: Option<PathBuf>,
    /// Train on an image folder (DIR/train/<class>/*.png|jpg, optional val/ and test/)
    /// with the --task recipe; see docs/image-folders.md.
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Save the trained weights (safetensors) and the architecture (.arch) in this folder.
    #[arg(long)]
    pub weights_dir: Option<PathBuf>,
    /// Timed batch-1 forward passes for the latency.
    #[arg(long, default_value_t = 20)]
    pub latency_runs: usize,
    /// Training device: cpu (burn flex), or cuda / cuda:N in a build with `--features cuda`.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Who computes convolutions and BatchNorms: `fast` (fnas's CPU kernels, the default
    /// on the CPU) or `burn` (burn's own operations, the default on a GPU).
    #[arg(long, value_name = "burn|fast")]
    pub kernels: Option<String>,
    /// Store whose knowledge pool receives the trained child's blocks (and, with
    /// --warm-start, initialises it).
    #[arg(long)]
    pub pool: Option<PathBuf>,
    /// Initialise the child from the pool of --pool (blocks of the one-proxy-training
    /// budget class) and train half the task's epochs (or --warm-epochs / --epochs).
    #[arg(long, requires = "pool")]
    pub warm_start: bool,
    /// With --warm-start: epochs to train; a fraction such as 0.5 stops the last epoch
    /// early.
    #[arg(long, requires = "warm_start", conflicts_with = "epochs", value_parser = epochs)]
    pub warm_epochs: Option<f64>,
    /// With --warm-start: peak learning rate relative to the task's (no warm-up).
    #[arg(long, default_value_t = fnas_child::evaluator::DEFAULT_WARM_LR_SCALE, value_parser = lr_scale)]
    pub warm_lr_scale: f64,
    /// With --warm-start: train from scratch instead when the sources are farther than
    /// this (mean block distance, other-task term left out; default: no limit).
    #[arg(long, value_parser = distance)]
    pub warm_max_distance: Option<f64>,
    /// Experiment name recorded with the pool entries of this child.
    #[arg(long, default_value = "train")]
    pub pool_experiment: String,
    /// With --warm-start: network = every block from the most similar stored network,
    /// adapted block by block (consecutive blocks keep the channel meanings they were
    /// trained with; measured better); block = each block from the most similar stored
    /// block of any network.
    #[arg(long, value_enum, default_value_t = PoolMatch::Network)]
    pub pool_match: PoolMatch,
    /// Print one JSON object as the last line instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Where the store lives.
#[derive(Args, Debug, Clone)]
pub struct StoreArg {
    /// The store: a SQLite file (created by `search` if absent) or a PostgreSQL URL
    /// (`postgresql://user@host[:port]/db`; password from PGPASSWORD or ~/.pgpass).
    #[arg(long, default_value = "fnas.db", env = "FNAS_STORE")]
    pub store: PathBuf,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Search strategy: random, evolution, evolution-gate (evolution with the FNAS
    /// critic's train-or-trust gate), ppo (vanilla MnasNet-style RL), fnas (PPO +
    /// critic gate and value + experience replay with off-policy correction, as in the
    /// paper), fnas-select (the critic chooses what is evaluated from mutants of the best,
    /// controller and uniform draws), or one ablation: fnas-value, fnas-gate,
    /// fnas-replay, fnas-replay-nocorr, fnas-pooled (transfer sources not weighed),
    /// fnas-select-{onehot,ucb,ei,noneighbours,
    /// nomutants,nocontroller,nouniform,ppo-own}.
    #[arg(long, default_value = "ppo")]
    pub strategy: String,
    /// Random seed (same seed, same sequence of architectures).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Architectures per strategy batch (one PPO update per batch).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    #[command(flatten)]
    pub store: StoreArg,
    /// Experiment name (default: STRATEGY-DATASET-sSEED).
    #[arg(long)]
    pub name: Option<String>,
    /// Continue the experiment named by --name (or the default name) where it stopped;
    /// settings then come from the store. Starts it if it does not exist yet. A --budget
    /// (or --budget-images) given with it replaces the stored one, so a finished search
    /// can be extended: it continues as a search started with that budget would have.
    #[arg(long)]
    pub resume: bool,
    /// Print a JSON summary instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub task: TaskArgs,
    #[command(flatten)]
    pub reward: RewardArgs,
    #[command(flatten)]
    pub reward_seeds: RewardSeedsArgs,
    #[command(flatten)]
    pub critic: CriticArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[command(flatten)]
    pub budget: BudgetArgs,
    #[command(flatten)]
    pub workers: WorkersArgs,
    #[command(flatten)]
    pub trial: TrialArgs,
}

/// The user's own training script (real-training tasks).
#[derive(Args, Debug)]
#[command(next_help_heading = "Trial command")]
pub struct TrialArgs {
    /// Train each child with this shell command instead of fnas's own trainer: it runs in
    /// --trial-code-dir with FNAS_TRIAL_DIR set to the child's trial folder, reads
    /// trial.json there and writes result.json (val_accuracy required); see
    /// examples/pytorch-trainer/.
    #[arg(long, alias = "task-command", value_name = "CMD")]
    pub trial_command: Option<String>,
    /// Folder the trial command runs in (default: the current folder; recorded, so
    /// workers on other machines need it at the same path).
    #[arg(long, value_name = "DIR")]
    pub trial_code_dir: Option<PathBuf>,
    /// Seconds after which a trial command is killed and its trial failed (default: no limit).
    #[arg(long, value_name = "SECONDS")]
    pub trial_timeout: Option<f64>,
}

/// What `search` runs on.
#[derive(Args, Debug)]
#[command(next_help_heading = "Task")]
pub struct TaskArgs {
    /// Tabular benchmark: nas-bench-graph or analog-nasbench.
    #[arg(long, conflicts_with = "task")]
    pub benchmark: Option<String>,
    /// Dataset of the benchmark (nas-bench-graph: cora, citeseer, ...; analog-nasbench:
    /// baseline, analog, ...).
    #[arg(long, requires = "benchmark")]
    pub dataset: Option<String>,
    /// Task: BENCHMARK/DATASET (e.g. nas-bench-graph/cora), instead of the two above; or
    /// a real-training proxy task (fashion-mnist, fashion-mnist-tiny, ..., or a task
    /// TOML file): children of --space are then built and trained for real.
    #[arg(long)]
    pub task: Option<String>,
    /// MNAS search space of a real-training task: mnas-28 or a space TOML file.
    #[arg(long, default_value = "mnas-28")]
    pub space: String,
    /// Real training: epochs per child (default: the task's).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Real training: device, cpu (burn flex) or cuda / cuda:N (build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Real training: who computes convolutions and BatchNorms, `fast` (fnas's CPU kernels,
    /// the default on the CPU) or `burn` (burn's own operations, the default on a GPU).
    #[arg(long, value_name = "burn|fast")]
    pub kernels: Option<String>,
    /// Where the benchmark data is (default: $FNAS_DATA_DIR, ./data, or the repo's data/).
    #[arg(long, conflicts_with = "images")]
    pub data_dir: Option<PathBuf>,
    /// Real training on an image folder (DIR/train/<class>/*.png|jpg, optional val/ and
    /// test/) with the --task recipe (default fashion-mnist); see docs/image-folders.md.
    #[arg(long, value_name = "DIR", conflicts_with = "benchmark")]
    pub images: Option<PathBuf>,
}

/// The reward, shared by `search` and `bench`.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Reward")]
pub struct RewardArgs {
    /// Latency (or params) target T of the MnasNet reward ACC x (LAT/T)^w; none = accuracy only.
    #[arg(long)]
    pub target: Option<f64>,
    /// Constraint form when a target is set.
    #[arg(long, value_enum, default_value_t = Constraint::Soft)]
    pub constraint: Constraint,
    /// What LAT is in the reward.
    #[arg(long, value_enum, default_value_t = ObjectiveArg::Latency)]
    pub objective: ObjectiveArg,
}

impl RewardArgs {
    /// The reward these flags ask for.
    pub fn config(&self) -> fnas_run::Result<fnas_core::RewardConfig> {
        fnas_run::task::reward_config(
            self.target,
            self.constraint == Constraint::Hard,
            self.objective == ObjectiveArg::Params,
        )
    }
}

/// The reward of real training (`search` only).
#[derive(Args, Debug)]
#[command(next_help_heading = "Reward")]
pub struct RewardSeedsArgs {
    /// Real training: train each child this many times with different seeds and reward
    /// the mean validation accuracy (less training noise, that many times the cost; the
    /// first training's weights are kept, timed and stored in the pool).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub reward_seeds: u64,
}

/// The FNAS critic of a search: its pre-training and when it acts, plus its gate.
#[derive(Args, Debug)]
#[command(next_help_heading = "Critic")]
pub struct CriticArgs {
    /// Pre-train the FNAS critic on earlier experiments of this store that share the
    /// search space: `all`, or comma-separated experiment names.
    #[arg(long)]
    pub transfer_from: Option<String>,
    /// FNAS critic: the points (this search's evaluated ones plus transferred ones) it
    /// needs before it scores, gates or serves as PPO's value. Default 32 (four batches
    /// of 8) on a benchmark, 16 on real training, where a child costs seconds and the
    /// main job trains about 24.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub critic_min_points: Option<u64>,
    #[command(flatten)]
    pub gate: GateArgs,
}

/// The critic's gate and critic-ranked proposals, shared by `search` and `bench` (which
/// applies them to every strategy among --strategies that has the part they set).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Critic")]
pub struct GateArgs {
    /// FNAS gate: trust a confident prediction even when it might beat the best reward so
    /// far (the paper's plain rule). By default such a proposal is always trained, so a
    /// trusted prediction never hides a winner; late in a search that is most proposals.
    #[arg(long)]
    pub trust_contenders: bool,
    /// FNAS gate: trust nothing until the critic's std is calibrated, i.e. until 16 of
    /// the proposals it scored were trained and their errors measured. By default the
    /// gate compares the raw ensemble std before that, which on real training is 2-6x
    /// too small; most of the trusting on real training happens then (README figures).
    #[arg(long)]
    pub gate_after_calibration: bool,
    /// FNAS gate: the critic is confident when its std is below this many standard
    /// deviations of the task's rewards (default 0.4, chosen on synthetic rewards).
    #[arg(long, value_parser = parse_gate_tau)]
    pub gate_tau: Option<f64>,
    /// FNAS critic-ranked proposals (our extension): once the critic is usable, draw
    /// this many times the batch from the controller and train the batch's worth the
    /// critic rates best (mean + std); 1 = off (FNAS as in the paper).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub screen: u64,
}

/// The architecture knowledge pool of real training.
#[derive(Args, Debug)]
#[command(next_help_heading = "Knowledge pool")]
pub struct PoolArgs {
    /// Real training: the architecture knowledge pool (trained block weights warm-start
    /// similar blocks of new children, which then train --warm-epochs). auto: on for
    /// --strategy fnas, off for the others.
    #[arg(long, value_enum, default_value_t = PoolArg::Auto)]
    pub pool: PoolArg,
    /// Real training: epochs of a child initialised from the pool (default: half the
    /// proxy's, at least 1). A fraction such as 0.5 stops the last epoch early, so a warm
    /// start can cost less than one epoch.
    #[arg(long, value_parser = epochs)]
    pub warm_epochs: Option<f64>,
    /// Real training: peak learning rate of a child initialised from the pool, relative
    /// to the proxy's (no warm-up): transferred weights are fine-tuned, not retrained.
    #[arg(long, default_value_t = fnas_child::evaluator::DEFAULT_WARM_LR_SCALE, value_parser = lr_scale)]
    pub warm_lr_scale: f64,
    /// Real training: a child whose pool sources are farther than this (mean block
    /// distance, other-task term left out) trains the full proxy from scratch instead
    /// and becomes a source itself; a large value warm-starts every child.
    #[arg(long, default_value_t = fnas_child::evaluator::DEFAULT_WARM_MAX_DISTANCE, value_parser = distance)]
    pub warm_max_distance: f64,
    /// Real training: let warm starts use pool entries trained on another task
    /// (--transfer-from); by default only this task's entries are used, since
    /// another task's weights fine-tuned for half the proxy scored 3.5 points lower
    /// than training from scratch. The critic transfers either way.
    #[arg(long)]
    pub warm_other_tasks: bool,
    /// Size limit of the knowledge pool's weight files in MB; beyond it the least
    /// recently used networks are evicted.
    #[arg(long, default_value_t = fnas_child::pool::DEFAULT_POOL_LIMIT_MB)]
    pub pool_limit_mb: u64,
    /// Warm starts begin once the pool holds this many networks of the search's budget
    /// class (from this search or --transfer-from ones); the children before train from
    /// scratch and seed it.
    #[arg(long, default_value_t = fnas_child::pool::DEFAULT_MIN_NETWORKS)]
    pub pool_min_networks: usize,
    /// How warm starts pick sources: network = every block from the most similar stored
    /// network, adapted block by block (consecutive blocks keep the channel meanings they
    /// were trained with; measured better); block = each block from the most similar
    /// stored block of any network.
    #[arg(long, value_enum, default_value_t = PoolMatch::Network)]
    pub pool_match: PoolMatch,
}

/// What a search may spend.
#[derive(Args, Debug)]
#[command(next_help_heading = "Budget")]
pub struct BudgetArgs {
    /// Budget in cost units: distinct architectures evaluated (queried, or trained).
    /// Default 500 on a benchmark; on real training the default is --budget-images.
    #[arg(long, conflicts_with = "budget_images")]
    pub budget: Option<u64>,
    /// Real training: budget in training images processed instead of children (a child
    /// warm-started from the pool trains fewer epochs, so it costs less). Default on real
    /// training: 300000 (the main job: about 14 minutes of `fashion-mnist` children on 2 cores).
    #[arg(long)]
    pub budget_images: Option<u64>,
}

/// Who evaluates, and where their files go.
#[derive(Args, Debug)]
#[command(next_help_heading = "Workers")]
pub struct WorkersArgs {
    /// Children trained at once in this process, one thread each (default: one per core
    /// on real training, 1 on a benchmark); 0: this process only drives the search and
    /// `fnas worker` processes on the same store evaluate.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Real training: the folder for trained weights and the knowledge pool's files,
    /// recorded with the experiment (default: beside a SQLite store; required with a
    /// PostgreSQL store, on a file system that every worker mounts).
    #[arg(long)]
    pub artifacts: Option<PathBuf>,
    /// Leases a trial may lose (its worker died or stopped reporting) before it is
    /// recorded as failed, with the reason.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_attempts: u32,
    /// When another live `fnas search` drives this experiment, wait for it to finish or
    /// die instead of exiting.
    #[arg(long)]
    pub wait: bool,
    /// Testing and benchmarking: every evaluation first sleeps this many seconds (stored
    /// with the experiment, so `fnas worker`s sleep too).
    #[arg(long, hide_short_help = true)]
    pub simulate_eval_seconds: Option<f64>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMatch {
    Block,
    Network,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolArg {
    /// On for the fnas strategy, off otherwise.
    Auto,
    On,
    Off,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constraint {
    /// w = -0.07 on both sides of T.
    Soft,
    /// w = 0 under T, -1 over T.
    Hard,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectiveArg {
    /// Latency in milliseconds.
    Latency,
    /// Parameter count.
    Params,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    pub store: StoreArg,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Experiment name.
    pub name: String,
    #[command(flatten)]
    pub store: StoreArg,
    /// Number of best architectures to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// One JSON object with the experiment and every trial.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum SpaceCommand {
    /// List a space's decisions and its number of architectures.
    Show {
        /// A shipped space (nas-bench-graph, nas-bench-graph-proteins, nas-bench-201,
        /// mnas-28) or a path to an MNAS space TOML file.
        space: String,
        #[arg(long)]
        json: bool,
    },
    /// Print one uniformly random architecture's text form.
    Sample {
        /// A shipped space name or a TOML path.
        space: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// How many architectures to print (one per line).
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// nas-bench-graph or analog-nasbench.
    #[arg(long)]
    pub benchmark: String,
    /// Comma-separated datasets, or `all` (every dataset in the package).
    #[arg(long, default_value = "all")]
    pub datasets: String,
    /// Comma-separated strategies; a `+transfer` suffix (e.g. fnas+transfer) pre-trains
    /// the critic on this bench's vanilla-PPO runs (same seed) on the other datasets
    /// (for analog-nasbench: on the `baseline` column).
    #[arg(long, default_value = "random,evolution,ppo")]
    pub strategies: String,
    /// Number of seeds (0..N) per strategy and dataset.
    #[arg(long, default_value_t = 20)]
    pub seeds: u64,
    /// Budget per search in cost units.
    #[arg(long, default_value_t = 500)]
    pub budget: u64,
    /// Architectures per strategy batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Parallel searches (default: number of cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Where the benchmark data is.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Write one JSON record per (strategy, dataset, seed) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The strategy every ratio column divides by (per seed pair): default evolution
    /// when it is among --strategies, else ppo, else the first one.
    #[arg(long)]
    pub baseline: Option<String>,
    #[command(flatten)]
    pub reward: RewardArgs,
    #[command(flatten)]
    pub gate: GateArgs,
    #[command(flatten)]
    pub select: SelectArgs,
}

/// The settings of critic-chosen proposals (`fnas-select` strategies), shared by
/// `search` and `bench`; unset flags keep the strategy's preset.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Critic-chosen proposals (fnas-select)")]
pub struct SelectArgs {
    /// How the critic ranks candidates: thompson (one draw from each candidate's
    /// predicted mean and std; default), ucb (mean + std) or ei (expected improvement).
    #[arg(long, value_parser = parse_acquisition)]
    pub acquisition: Option<fnas_learn::acquisition::Acquisition>,
    /// The critic's view of an architecture: structure (the one-hot plus the space's
    /// structural features: graph wiring, cell paths, block sizes; default) or one-hot.
    #[arg(long, value_parser = parse_encoding)]
    pub encoding: Option<fnas_core::space::Encoding>,
    /// Candidates drawn per round for the critic to rank (two-edit mutants of the best,
    /// controller and uniform draws, 60/25/15), besides the one-edit neighbours of the
    /// 5 best. Default 100.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_candidates)]
    pub candidates: Option<usize>,
}

impl SelectArgs {
    /// The library's form of these flags.
    pub fn options(&self) -> fnas_run::SelectOptions {
        fnas_run::SelectOptions {
            acquisition: self.acquisition,
            encoding: self.encoding,
            candidates: self.candidates,
        }
    }
}

impl SearchArgs {
    /// The library's form of every flag but strategy, seed and name.
    pub fn options(&self) -> fnas_run::SearchOptions {
        let (t, c, p) = (&self.task, &self.critic, &self.pool);
        fnas_run::SearchOptions {
            batch_size: self.batch_size,
            task: fnas_run::TaskOptions {
                benchmark: t.benchmark.clone(),
                dataset: t.dataset.clone(),
                task: t.task.clone(),
                space: t.space.clone(),
                epochs: t.epochs,
                device: t.device.clone(),
                kernels: t.kernels.clone(),
                data_dir: t.data_dir.clone(),
                images: t.images.clone(),
            },
            reward: fnas_run::RewardOptions {
                target: self.reward.target,
                hard: self.reward.constraint == Constraint::Hard,
                params: self.reward.objective == ObjectiveArg::Params,
                seeds: self.reward_seeds.reward_seeds,
            },
            critic: fnas_run::CriticOptions {
                transfer_from: c.transfer_from.clone(),
                min_points: c.critic_min_points,
                trust_contenders: c.gate.trust_contenders,
                gate_after_calibration: c.gate.gate_after_calibration,
                gate_tau: c.gate.gate_tau,
                screen: c.gate.screen,
            },
            select: self.select.options(),
            pool: fnas_run::PoolOptions {
                mode: match p.pool {
                    PoolArg::Auto => fnas_run::PoolMode::Auto,
                    PoolArg::On => fnas_run::PoolMode::On,
                    PoolArg::Off => fnas_run::PoolMode::Off,
                },
                warm_epochs: p.warm_epochs,
                warm_lr_scale: p.warm_lr_scale,
                warm_max_distance: p.warm_max_distance,
                other_tasks: p.warm_other_tasks,
                limit_mb: p.pool_limit_mb,
                min_networks: p.pool_min_networks,
                per_block: p.pool_match == PoolMatch::Block,
            },
            budget: fnas_run::BudgetOptions {
                evaluations: self.budget.budget,
                images: self.budget.budget_images,
            },
            workers: fnas_run::WorkerOptions {
                workers: self.workers.workers,
                artifacts: self.workers.artifacts.clone(),
                simulate_eval_seconds: self.workers.simulate_eval_seconds,
            },
            trial: fnas_run::TrialOptions {
                command: self.trial.trial_command.clone(),
                code_dir: self.trial.trial_code_dir.clone(),
                timeout_seconds: self.trial.trial_timeout,
            },
        }
    }
}

fn parse_acquisition(text: &str) -> Result<fnas_learn::acquisition::Acquisition, String> {
    text.parse()
}

fn parse_encoding(text: &str) -> Result<fnas_core::space::Encoding, String> {
    text.parse()
}

/// `--candidates`: a whole number from 1 to 100,000.
fn parse_candidates(text: &str) -> Result<usize, String> {
    match text.parse::<i64>() {
        Ok(n) if (1..=100_000).contains(&n) => Ok(n as usize),
        Ok(n) => Err(format!("{n}: expected a count from 1 to 100000")),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// A finite number of `text` that passes `ok`, else the error "`text`: expected {what}".
fn number(text: &str, ok: impl Fn(f64) -> bool, what: &str) -> Result<f64, String> {
    let v: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if v.is_finite() && ok(v) {
        Ok(v)
    } else {
        Err(format!("`{text}`: expected {what}"))
    }
}

/// `--warm-lr-scale`: a finite factor in (0, 10].
fn lr_scale(text: &str) -> Result<f64, String> {
    number(
        text,
        |v| v > 0.0 && v <= 10.0,
        "a factor greater than 0 and at most 10",
    )
}

/// `--warm-epochs`: a finite epoch count greater than 0 and at most 10,000.
fn epochs(text: &str) -> Result<f64, String> {
    number(
        text,
        |v| v > 0.0 && v <= 10_000.0,
        "epochs greater than 0 and at most 10000",
    )
}

/// `--warm-max-distance`: a finite distance, at least 0.
fn distance(text: &str) -> Result<f64, String> {
    number(text, |v| v >= 0.0, "a distance of at least 0")
}

/// `--gate-tau`: a positive number (in standard deviations of the task's rewards).
fn parse_gate_tau(text: &str) -> Result<f64, String> {
    number(
        text,
        |v| v > 0.0,
        "a positive number of reward standard deviations",
    )
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Experiment name.
    pub experiment: String,
    /// The trial to export (ids: `fnas show EXPERIMENT --json`); a cached trial exports
    /// the trial whose result it reused.
    #[arg(long, conflicts_with = "best", required_unless_present = "best")]
    pub trial: Option<i64>,
    /// Export the evaluated trial with the best reward.
    #[arg(long)]
    pub best: bool,
    #[command(flatten)]
    pub store: StoreArg,
    /// The folder to write (created; it must not exist or be empty, unless --force).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a non-empty output folder.
    #[arg(long)]
    pub force: bool,
    /// Directory of the benchmark data (default: the data/ folder of the set-up).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Also write, as JSON, the logits fnas computes for the first --check-images test
    /// (t10k) images, to check the exported model against.
    #[arg(long, hide = true)]
    pub check_logits: Option<PathBuf>,
    /// Test images for --check-logits.
    #[arg(long, hide = true, default_value_t = 64)]
    pub check_images: usize,
}
