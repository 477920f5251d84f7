//! The model zoo, parametric in input shape and number of classes.
//!
//! * `lenet-300-100`, `lenet-500-300`: fully connected 784-300-100-10 and
//!   784-500-300-10 (the latter is the SBP paper's "LeNet-fc").
//! * `lenet5`: LeNet5-Caffe — conv 20 5x5, max-pool, conv 50 5x5, max-pool,
//!   fc 500, fc classes; ReLU after each hidden layer.
//! * `vgg-like`: the CIFAR VGG-16 with BN (64,64,M,128,128,M,256x3,M,512x3,M,
//!   512x3,M, then fc 512 + BN1d, fc classes). A pool is skipped once the
//!   feature map is 1x1, so 28x28 inputs work too.
//! * `resnet20/32/56`: CIFAR ResNets of basic blocks with 16/32/64 channels;
//!   downsampling shortcuts are 1x1 conv + BN.

use crate::error::{GraphError, Result};
use crate::ir::{Graph, Layer};
use crate::shapes::infer_shapes;

/// Names accepted by [`build`].
pub const MODEL_NAMES: &[&str] = &[
    "lenet-300-100",
    "lenet-500-300",
    "lenet5",
    "vgg-like",
    "resnet20",
    "resnet32",
    "resnet56",
];

/// Builds a zoo model for inputs of per-example shape `input` (`[C, H, W]`).
pub fn build(name: &str, input: &[usize], classes: usize) -> Result<Graph> {
    if input.len() != 3 || classes == 0 {
        return Err(GraphError::Invalid(format!(
            "zoo models need a [C, H, W] input and at least one class, got {input:?}, {classes}"
        )));
    }
    let g = match name {
        "lenet-300-100" => mlp(name, input, &[300, 100], classes)?,
        "lenet-500-300" => mlp(name, input, &[500, 300], classes)?,
        "lenet5" => lenet5(input, classes)?,
        "vgg-like" => vgg_like(input, classes)?,
        "resnet20" => resnet(name, 3, input, classes)?,
        "resnet32" => resnet(name, 5, input, classes)?,
        "resnet56" => resnet(name, 9, input, classes)?,
        other => {
            return Err(GraphError::Invalid(format!(
                "unknown model '{other}'; expected one of {}",
                MODEL_NAMES.join(", ")
            )))
        }
    };
    infer_shapes(&g)?;
    Ok(g)
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, pad: usize, bias: bool) -> Layer {
    Layer::Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel: [k, k],
        stride: [stride, stride],
        padding: [pad, pad],
        groups: 1,
        bias,
    }
}

fn bn(features: usize) -> Layer {
    Layer::BatchNorm {
        features,
        eps: 1e-5,
        momentum: 0.1,
    }
}

fn max_pool2() -> Layer {
    Layer::MaxPool {
        kernel: [2, 2],
        stride: [2, 2],
        padding: [0, 0],
    }
}

fn linear(i: usize, o: usize) -> Layer {
    Layer::Linear {
        in_features: i,
        out_features: o,
        bias: true,
    }
}

fn mlp(name: &str, input: &[usize], hidden: &[usize], classes: usize) -> Result<Graph> {
    let mut g = Graph::new(name, input);
    let mut prev = g.push("flatten", Layer::Flatten, &["input"])?;
    let mut width: usize = input.iter().product();
    for (i, &h) in hidden.iter().enumerate() {
        let fc = g.push(&format!("fc{}", i + 1), linear(width, h), &[&prev])?;
        prev = g.push(&format!("relu{}", i + 1), Layer::Relu, &[&fc])?;
        width = h;
    }
    g.push(
        &format!("fc{}", hidden.len() + 1),
        linear(width, classes),
        &[&prev],
    )?;
    Ok(g)
}

fn lenet5(input: &[usize], classes: usize) -> Result<Graph> {
    let mut g = Graph::new("lenet5", input);
    g.push("conv1", conv(input[0], 20, 5, 1, 0, true), &["input"])?;
    g.push("relu1", Layer::Relu, &["conv1"])?;
    g.push("pool1", max_pool2(), &["relu1"])?;
    g.push("conv2", conv(20, 50, 5, 1, 0, true), &["pool1"])?;
    g.push("relu2", Layer::Relu, &["conv2"])?;
    g.push("pool2", max_pool2(), &["relu2"])?;
    g.push("flatten", Layer::Flatten, &["pool2"])?;
    let flat: usize = infer_shapes(&g)?
        .last()
        .map(|s| s.iter().product())
        .unwrap_or(0);
    g.push("fc1", linear(flat, 500), &["flatten"])?;
    g.push("relu3", Layer::Relu, &["fc1"])?;
    g.push("fc2", linear(500, classes), &["relu3"])?;
    Ok(g)
}

fn vgg_like(input: &[usize], classes: usize) -> Result<Graph> {
    const CFG: &[usize] = &[
        64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
    ];
    let mut g = Graph::new("vgg-like", input);
    let (mut prev, mut c, mut hw) = ("input".to_string(), input[0], input[1].min(input[2]));
    let (mut conv_i, mut pool_i) = (0, 0);
    for &v in CFG {
        if v == 0 {
            if hw >= 2 {
                pool_i += 1;
                prev = g.push(&format!("pool{pool_i}"), max_pool2(), &[&prev])?;
                hw /= 2;
            }
            continue;
        }
        conv_i += 1;
        let cn = g.push(
            &format!("conv{conv_i}"),
            conv(c, v, 3, 1, 1, false),
            &[&prev],
        )?;
        let b = g.push(&format!("bn{conv_i}"), bn(v), &[&cn])?;
        prev = g.push(&format!("relu{conv_i}"), Layer::Relu, &[&b])?;
        c = v;
    }
    g.push("flatten", Layer::Flatten, &[&prev])?;
    let flat: usize = infer_shapes(&g)?
        .last()
        .map(|s| s.iter().product())
        .unwrap_or(0);
    g.push("fc1", linear(flat, 512), &["flatten"])?;
    g.push("bn_fc1", bn(512), &["fc1"])?;
    g.push("relu_fc1", Layer::Relu, &["bn_fc1"])?;
    g.push("fc2", linear(512, classes), &["relu_fc1"])?;
    Ok(g)
}

fn resnet(name: &str, blocks: usize, input: &[usize], classes: usize) -> Result<Graph> {
    let mut g = Graph::new(name, input);
    g.push("conv1", conv(input[0], 16, 3, 1, 1, false), &["input"])?;
    g.push("bn1", bn(16), &["conv1"])?;
    let mut prev = g.push("relu1", Layer::Relu, &["bn1"])?;
    let mut c = 16;
    for (s, &width) in [16usize, 32, 64].iter().enumerate() {
        for b in 0..blocks {
            let stride = if s > 0 && b == 0 { 2 } else { 1 };
            let p = format!("layer{}.{}", s + 1, b);
            g.push(
                &format!("{p}.conv1"),
                conv(c, width, 3, stride, 1, false),
                &[&prev],
            )?;
            g.push(&format!("{p}.bn1"), bn(width), &[&format!("{p}.conv1")])?;
            g.push(&format!("{p}.relu1"), Layer::Relu, &[&format!("{p}.bn1")])?;
            g.push(
                &format!("{p}.conv2"),
                conv(width, width, 3, 1, 1, false),
                &[&format!("{p}.relu1")],
            )?;
            g.push(&format!("{p}.bn2"), bn(width), &[&format!("{p}.conv2")])?;
            let shortcut = if stride != 1 || c != width {
                g.push(
                    &format!("{p}.down.conv"),
                    conv(c, width, 1, stride, 0, false),
                    &[&prev],
                )?;
                g.push(
                    &format!("{p}.down.bn"),
                    bn(width),
                    &[&format!("{p}.down.conv")],
                )?
            } else {
                prev.clone()
            };
            g.push(
                &format!("{p}.add"),
                Layer::Add,
                &[&format!("{p}.bn2"), &shortcut],
            )?;
            prev = g.push(&format!("{p}.relu2"), Layer::Relu, &[&format!("{p}.add")])?;
            c = width;
        }
    }
    g.push("pool", Layer::GlobalAvgPool, &[&prev])?;
    g.push("fc", linear(c, classes), &["pool"])?;
    Ok(g)
}
