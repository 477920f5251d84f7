//! `prune-nn`: structured pruning of neural networks — Structured Bayesian
//! Pruning (Neklyudov et al. 2017), the polarization regularizer (Zhuang et
//! al. 2020) and network slimming (Liu et al. 2017) — with a compiler that
//! turns pruning masks into a physically smaller, faster dense network.
//!
//! This crate is the facade: it re-exports the workspace crates and holds
//! the end-to-end pipeline ([`prune::prune`], [`demo::run`]) and ONNX import
//! and export of run directories ([`onnx`]).
//!
//! # Quick start
//!
//! Build a network (or import one with [`onnx::import_file`]), train it,
//! prune it with a method — sparse training, masks, compilation into a
//! smaller dense network verified against the masked one, fine-tuning —
//! and save it as a run directory and as ONNX:
//!
//! ```
//! use prune_nn::data::{Dataset, DatasetKind, Split};
//! use prune_nn::graph::{Graph, Layer, Model};
//! use prune_nn::prune::{prune, Method, PruneConfig};
//! use prune_nn::train::{fit, OptimizerKind, RunFiles, TrainConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 1. A network from the IR's builder: node name, layer, inputs.
//! let mut g = Graph::new("tiny-cnn", &[1, 28, 28]);
//! let conv = Layer::Conv2d {
//!     in_channels: 1, out_channels: 8, kernel: [3, 3], stride: [2, 2],
//!     padding: [1, 1], groups: 1, bias: false,
//! };
//! g.push("conv1", conv, &["input"])?;
//! g.push("bn1", Layer::BatchNorm { features: 8, eps: 1e-5, momentum: 0.1 }, &["conv1"])?;
//! g.push("relu1", Layer::Relu, &["bn1"])?;
//! g.push("pool", Layer::GlobalAvgPool, &["relu1"])?;
//! g.push("fc", Layer::Linear { in_features: 8, out_features: 10, bias: true }, &["pool"])?;
//! let mut model = Model::init(g, 0)?;
//!
//! // 2. Data: `prune_nn::run::load_data("mnist", None)` loads MNIST; here a
//! //    few synthetic MNIST-shaped images keep the example fast.
//! let pixels: Vec<u8> = (0..128 * 784).map(|i| (i * 7 % 251) as u8).collect();
//! let labels: Vec<u8> = (0..128).map(|i| (i % 10) as u8).collect();
//! let train = Dataset::from_bytes(DatasetKind::Mnist, Split::Train, &pixels, labels.clone())?;
//! let test = Dataset::from_bytes(DatasetKind::Mnist, Split::Test, &pixels, labels)?;
//!
//! // 3. Train the dense network.
//! let cfg = TrainConfig {
//!     epochs: 1, batch_size: 32, lr: 1e-3, optimizer: OptimizerKind::adam(),
//!     schedule: Default::default(), seed: 0, augment: false, max_batches: None,
//!     progress: false,
//! };
//! fit(&mut model, &train, &test, &cfg, None, RunFiles { dir: None, resume: false })?;
//!
//! // 4. Prune with network slimming (or Method::Sbp, Method::Polarization):
//! //    the result is the compiled, fine-tuned smaller network.
//! let mut pc = PruneConfig::paper_defaults(Method::Slimming);
//! pc.epochs = 1;
//! pc.finetune_epochs = 1;
//! pc.batch_size = 32;
//! pc.speed_repeats = 0;
//! let out = std::env::temp_dir().join(format!("prune-nn-quick-start-{}", std::process::id()));
//! let pruned = prune(&model, &train, &test, &pc, &out)?;
//! println!("{} -> {} FLOPs", pruned.report.flops_before, pruned.report.flops_after);
//!
//! // 5. Save: model.json + weights.safetensors, and ONNX for onnxruntime.
//! pruned.model.save(&out.join("compiled"))?;
//! prune_nn::onnx::export_file(&pruned.model, &Default::default(), &out.join("model.onnx"))?;
//! # std::fs::remove_dir_all(&out)?;
//! # Ok(())
//! # }
//! ```

pub mod bench;
pub mod chart;
pub mod demo;
pub mod error;
pub mod method;
pub mod onnx;
pub mod outputs;
pub mod plots;
pub mod prune;
pub mod recipe;
pub mod report;
pub mod run;
mod settings;
mod tools;
pub mod trajectory;

pub use error::{Error, Result};
pub use prune_compiler as compiler;
pub use prune_core as core;
pub use prune_data as data;
pub use prune_graph as graph;
pub use prune_reg as reg;
pub use prune_train as train;
pub use tools::{compile_masks, describe, evaluate};
