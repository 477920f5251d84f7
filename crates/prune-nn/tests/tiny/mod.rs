//! The tiny CNN and the 64-example dataset the pipeline tests share: a
//! convolution, batch norm, ReLU, global pooling and a linear layer on
//! MNIST-shaped input, and deterministic images with labels `i % 10`.

use prune_nn::data::{Dataset, DatasetKind, Split};
use prune_nn::graph::{Graph, Layer, Model};

/// conv1 (8 channels, stride 2) → bn1 → relu1 → pool → fc.
pub fn tiny() -> Model {
    let mut g = Graph::new("tiny-cnn", &[1, 28, 28]);
    let conv = Layer::Conv2d {
        in_channels: 1,
        out_channels: 8,
        kernel: [3, 3],
        stride: [2, 2],
        padding: [1, 1],
        groups: 1,
        bias: false,
    };
    g.push("conv1", conv, &["input"]).unwrap();
    let bn = Layer::BatchNorm {
        features: 8,
        eps: 1e-5,
        momentum: 0.1,
    };
    g.push("bn1", bn, &["conv1"]).unwrap();
    g.push("relu1", Layer::Relu, &["bn1"]).unwrap();
    g.push("pool", Layer::GlobalAvgPool, &["relu1"]).unwrap();
    let fc = Layer::Linear {
        in_features: 8,
        out_features: 10,
        bias: true,
    };
    g.push("fc", fc, &["pool"]).unwrap();
    Model::init(g, 0).unwrap()
}

/// 64 deterministic MNIST-shaped examples, labels `i % 10`.
pub fn data() -> Dataset {
    let pixels: Vec<u8> = (0..64 * 784).map(|i| (i * 7 % 251) as u8).collect();
    let labels: Vec<u8> = (0..64).map(|i| (i % 10) as u8).collect();
    Dataset::from_bytes(DatasetKind::Mnist, Split::Train, &pixels, labels).unwrap()
}
