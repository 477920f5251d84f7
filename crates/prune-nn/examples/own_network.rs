//! Your own network, built in Rust with the IR's builder, trained on MNIST,
//! pruned with Structured Bayesian Pruning, compiled and saved.
//!
//! ```sh
//! PRUNE_NN_DATA=../shared/data cargo run --release -p prune-nn --example own_network -- runs/own
//! ```

use prune_nn::graph::{Graph, Layer, Model};
use prune_nn::prune::{prune, Method, PruneConfig};
use prune_nn::run::load_data;
use prune_nn::train::{fit, OptimizerKind, RunFiles, TrainConfig};
use std::path::PathBuf;

fn conv(cin: usize, cout: usize) -> Layer {
    Layer::Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        groups: 1,
        bias: false,
    }
}

fn bn(c: usize) -> Layer {
    Layer::BatchNorm {
        features: c,
        eps: 1e-5,
        momentum: 0.1,
    }
}

/// conv-bn-relu x2 with a max-pool after each, a residual 1x1 branch, and a linear head.
fn network() -> Result<Graph, prune_nn::graph::GraphError> {
    let pool = Layer::MaxPool {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [0, 0],
    };
    let mut g = Graph::new("own-cnn", &[1, 28, 28]);
    g.push("conv1", conv(1, 16), &["input"])?;
    g.push("bn1", bn(16), &["conv1"])?;
    g.push("relu1", Layer::Relu, &["bn1"])?;
    g.push("pool1", pool.clone(), &["relu1"])?; // 16x14x14
    g.push("conv2", conv(16, 32), &["pool1"])?;
    g.push("bn2", bn(32), &["conv2"])?;
    g.push("relu2", Layer::Relu, &["bn2"])?;
    g.push("conv3", conv(32, 32), &["relu2"])?;
    g.push("bn3", bn(32), &["conv3"])?;
    g.push("add", Layer::Add, &["bn3", "relu2"])?; // residual: conv2's channels couple with conv3's
    g.push("relu3", Layer::Relu, &["add"])?;
    g.push("pool2", pool, &["relu3"])?; // 32x7x7
    g.push("flatten", Layer::Flatten, &["pool2"])?;
    g.push(
        "fc",
        Layer::Linear {
            in_features: 32 * 49,
            out_features: 10,
            bias: true,
        },
        &["flatten"],
    )?;
    Ok(g)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "runs/own-network".into()),
    );
    let (train, test, dir) = load_data("mnist", None)?;
    println!("MNIST from {}", dir.display());
    let mut model = Model::init(network()?, 0)?;
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 100,
        lr: 1e-3,
        optimizer: OptimizerKind::adam(),
        schedule: Default::default(),
        seed: 0,
        augment: false,
        max_batches: Some(200),
        progress: true,
    };
    let dense_dir = out.join("dense");
    let s = fit(
        &mut model,
        &train,
        &test,
        &cfg,
        None,
        RunFiles {
            dir: Some(&dense_dir),
            resume: false,
        },
    )?;
    model.save(&dense_dir)?;
    println!("dense: test accuracy {:.4}", s.test_accuracy);

    let mut pc = PruneConfig::paper_defaults(Method::Sbp);
    pc.epochs = 1;
    pc.finetune_epochs = 1;
    pc.max_batches = Some(200);
    pc.progress = true;
    let pruned = prune(&model, &train, &test, &pc, &out.join("sbp"))?;
    let r = &pruned.report;
    println!(
        "SBP: {} -> {}, FLOPs {} -> {} ({:.2}x fewer), accuracy {:.4} -> {:.4}; wrote {}",
        r.architecture_before,
        r.architecture_after,
        r.flops_before,
        r.flops_after,
        r.flops_reduction,
        r.test_accuracy_before,
        r.test_accuracy_after,
        out.join("sbp").display()
    );
    Ok(())
}
