//! Command-line arguments.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "prune-nn",
    version,
    about = "Structured pruning of neural networks: SBP, polarization, network slimming"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a zoo model from scratch.
    Train(TrainArgs),
    /// Evaluate a saved model on its dataset's test split.
    Eval(EvalArgs),
    /// Print a model's layers, costs and prunable channel groups.
    Graph(GraphArgs),
    /// Compile a model and a masks file into a physically smaller model.
    Compile(CompileArgs),
    /// Sparse-train, prune, compile and fine-tune a trained model.
    Prune(PruneArgs),
    /// The whole pipeline on LeNet5: train, prune with SBP, compile, compare.
    Demo(DemoArgs),
    /// Import an ONNX model into a run directory.
    Import(crate::onnx::ImportArgs),
    /// Export a run directory's model as ONNX.
    Export(crate::onnx::ExportArgs),
    /// Images/s (inference, training with --train) and batch-1 latency of a model.
    Bench(crate::bench::BenchArgs),
    /// Charts of run directories: accuracy against FLOPs, kept units, histograms.
    Chart(crate::chart::ChartArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Optim {
    Adam,
    Sgd,
}

#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Dataset: mnist, fashion-mnist or cifar10.
    #[arg(long, default_value = "mnist")]
    pub dataset: String,
    /// Directory holding the dataset files (else $PRUNE_NN_DATA/DATASET, the cache, ...).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use only the first N training examples.
    #[arg(long)]
    pub subset: Option<usize>,
    /// Use only the first N test examples (quick checks).
    #[arg(long)]
    pub test_subset: Option<usize>,
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct TrainArgs {
    /// Where to run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = crate::device::parse)]
    pub device: prune_nn::core::Device,
    /// A recipe file (recipes/*.toml); flags given here override it.
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// lenet-300-100, lenet-500-300, lenet5, vgg-like, resnet20, resnet32, resnet56.
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    #[arg(long, value_enum, default_value_t = Optim::Adam)]
    pub optimizer: Optim,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// Adam β1.
    #[arg(long, default_value_t = 0.9)]
    pub beta1: f32,
    /// Random crop + flip augmentation.
    #[arg(long)]
    pub augment: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop each epoch after this many batches.
    #[arg(long)]
    pub max_batches: Option<usize>,
    /// Continue from the run directory's checkpoint (same settings; --epochs may grow).
    #[arg(long)]
    pub resume: bool,
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an earlier run in --out (never a directory the command reads).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Where to run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = crate::device::parse)]
    pub device: prune_nn::core::Device,
    /// A run directory (model.json + weights.safetensors, or checkpoint/).
    #[arg(long)]
    pub model: PathBuf,
    /// Dataset (default: the one in the run's report.json).
    #[arg(long)]
    pub dataset: Option<String>,
    #[arg(long)]
    pub data: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    #[arg(long)]
    pub model: PathBuf,
}

#[derive(Args, Debug)]
pub struct CompileArgs {
    /// Where to run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = crate::device::parse)]
    pub device: prune_nn::core::Device,
    #[arg(long)]
    pub model: PathBuf,
    /// A masks.json written by `prune-nn prune` (gate node → keep flags).
    #[arg(long)]
    pub masks: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// Fold batch norm into the preceding conv/linear layer.
    #[arg(long)]
    pub fold_bn: bool,
    /// Replace an earlier run in --out (never a directory the command reads).
    #[arg(long)]
    pub force: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MethodArg {
    Sbp,
    Polarization,
    Slimming,
}

/// The learning-rate schedule flags.
#[derive(Args, Debug, Clone)]
pub struct ScheduleArgs {
    /// Multiply the learning rate at these epochs (by --gammas, else by 0.1).
    #[arg(long, value_delimiter = ',')]
    pub milestones: Vec<usize>,
    /// One factor per milestone, applied cumulatively (e.g. 10,0.2,0.2,0.2).
    #[arg(long, value_delimiter = ',')]
    pub gammas: Vec<f32>,
    /// Constant rate until this epoch, then linear decay to 0 at the last epoch.
    #[arg(long)]
    pub linear_decay_from: Option<usize>,
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct PruneArgs {
    /// Where to run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = crate::device::parse)]
    pub device: prune_nn::core::Device,
    /// A recipe file (recipes/*.toml); flags given here override it.
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub method: MethodArg,
    /// A trained run directory.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Sparse-training epochs.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 2)]
    pub finetune_epochs: usize,
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    #[arg(long, default_value_t = 1e-4)]
    pub finetune_lr: f32,
    /// Optimizer of sparse training and fine-tuning (default: the method's paper).
    #[arg(long, value_enum)]
    pub optimizer: Option<Optim>,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Adam β1 (SBP's paper uses 0.95).
    #[arg(long)]
    pub beta1: Option<f32>,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// Fine-tuning: multiply the rate at these epochs (by --finetune-gammas, else 0.1).
    #[arg(long, value_delimiter = ',')]
    pub finetune_milestones: Vec<usize>,
    #[arg(long, value_delimiter = ',')]
    pub finetune_gammas: Vec<f32>,
    /// SBP: draw the noise per example instead of once per minibatch.
    #[arg(long)]
    pub sbp_per_example: bool,
    /// SBP: KL weight of each gate in graph order (default 1 each), e.g. 10,10,1,1.
    #[arg(long, value_delimiter = ',')]
    pub sbp_kl_weights: Vec<f32>,
    /// Continue sparse training from OUT/sparse/checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Timing repeats of the dense-vs-pruned speed measurement (0 skips it).
    #[arg(long, default_value_t = 5)]
    pub speed_repeats: usize,
    /// SBP: learning-rate multiplier of the noise parameters (10 for deep nets).
    #[arg(long, default_value_t = 1.0)]
    pub sbp_lr_mult: f32,
    /// Polarization λ.
    #[arg(long, default_value_t = 1e-4)]
    pub lambda: f64,
    /// Polarization t.
    #[arg(long, default_value_t = 1.2)]
    pub t: f64,
    /// Polarization upper bound a of γ.
    #[arg(long, default_value_t = 1.0)]
    pub a: f32,
    /// Polarization: one global histogram threshold.
    #[arg(long)]
    pub global_threshold: bool,
    /// Slimming λ.
    #[arg(long, default_value_t = 1e-4)]
    pub slim_lambda: f64,
    /// Slimming: percent of γ pruned globally.
    #[arg(long, default_value_t = 50.0)]
    pub percent: f64,
    /// Target FLOPs reduction (dense/pruned), e.g. 2.0: slimming picks the γ
    /// percentile, SBP the global SNR threshold, polarization searches λ.
    #[arg(long)]
    pub target_flops: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub max_batches: Option<usize>,
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an earlier run in --out (never a directory the command reads).
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct DemoArgs {
    /// Where to run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = crate::device::parse)]
    pub device: prune_nn::core::Device,
    /// Where the demo writes its runs.
    #[arg(long, default_value = "runs/demo")]
    pub out: PathBuf,
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Dense training epochs.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// SBP epochs.
    #[arg(long, default_value_t = 8)]
    pub sbp_epochs: usize,
    /// Use only the first N training examples (quick tries).
    #[arg(long)]
    pub subset: Option<usize>,
    /// Replace an earlier run in --out (never a directory the command reads).
    #[arg(long)]
    pub force: bool,
}
