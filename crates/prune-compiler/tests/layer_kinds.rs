//! One case per layer type: a small graph in which the layer sits next to a
//! masked gate, compiled and compared with the masked model, and the
//! channel counts the layer's description implies checked by hand.
//!
//! `sample` matches every `Layer` variant without a wildcard, so a new layer
//! type does not compile here until it has a case (and, in the compiler, a
//! description).

mod common;

use common::{conv, keep_only, linear, randomize};
use prune_compiler::verify::compare_with_masked;
use prune_compiler::{compile, CompileOptions};
use prune_graph::ir::{Graph, Layer};
use prune_graph::{ChannelMasks, Model};

/// A case: the model, its masks, and `(node, layer)` pairs expected after
/// compilation (`None`: the node is gone).
struct Case {
    model: Model,
    masks: ChannelMasks,
    expect: Vec<(&'static str, Option<Layer>)>,
}

fn scale(n: usize) -> Layer {
    Layer::Scale { units: n }
}

fn masks(entries: &[(&str, Vec<bool>)]) -> ChannelMasks {
    entries
        .iter()
        .map(|(n, k)| (n.to_string(), k.clone()))
        .collect()
}

fn model(g: Graph, seed: u64) -> Model {
    let mut m = Model::init(g, seed).unwrap();
    randomize(&mut m, seed);
    m
}

/// input [3, 6, 6] → conv1 (3→6) → g (scale, channels 1 and 4 masked) →
/// `layer` → `tail`, which reads `layer`'s output.
fn around(layer: Layer, tail: &[(&str, Layer)], seed: u64) -> Model {
    let mut g = Graph::new("case", &[3, 6, 6]);
    g.push("conv1", conv(3, 6, 3, 1, true), &["input"]).unwrap();
    g.push("g", scale(6), &["conv1"]).unwrap();
    g.push("x", layer, &["g"]).unwrap();
    let mut prev = "x".to_string();
    for (name, l) in tail {
        prev = g.push(name, l.clone(), &[&prev]).unwrap();
    }
    model(g, seed)
}

const KEEP4: [usize; 4] = [0, 2, 3, 5];

fn g_masks() -> ChannelMasks {
    masks(&[("g", keep_only(6, &KEEP4))])
}

/// conv1 keeps 4 of its 6 channels.
fn conv1_4() -> (&'static str, Option<Layer>) {
    ("conv1", Some(conv(3, 4, 3, 1, true)))
}

/// input [3, 6, 6] → conv1 (3→6) → `layer` → g (scale, channels 1 and 4
/// masked) → conv2 (6→2). The gate's factor folds backwards through the
/// layer only if it commutes with it, so a wrong description fails the
/// comparison with the masked model; a second scale folds away like the gate.
fn channelwise(layer: Layer) -> Case {
    let stays = !matches!(layer, Layer::Scale { .. });
    let mut g = Graph::new("case", &[3, 6, 6]);
    g.push("conv1", conv(3, 6, 3, 1, true), &["input"]).unwrap();
    g.push("x", layer.clone(), &["conv1"]).unwrap();
    g.push("g", scale(6), &["x"]).unwrap();
    g.push("conv2", conv(6, 2, 3, 1, false), &["g"]).unwrap();
    Case {
        model: model(g, 1),
        masks: g_masks(),
        expect: vec![
            conv1_4(),
            ("g", None),
            ("x", stays.then_some(layer)),
            ("conv2", Some(conv(4, 2, 3, 1, false))),
        ],
    }
}

fn pool(avg: bool) -> Layer {
    let (kernel, stride, padding) = ([2, 2], [2, 2], [0, 0]);
    if avg {
        Layer::AvgPool {
            kernel,
            stride,
            padding,
        }
    } else {
        Layer::MaxPool {
            kernel,
            stride,
            padding,
        }
    }
}

/// The case exercising `layer`'s variant.
fn sample(layer: &Layer) -> Case {
    match layer {
        Layer::Input { .. } => {
            // The input is pinned: a gate on it keeps every channel.
            let mut g = Graph::new("case", &[3, 4, 4]);
            g.push("g", scale(3), &["input"]).unwrap();
            g.push("conv", conv(3, 2, 3, 1, true), &["g"]).unwrap();
            Case {
                model: model(g, 2),
                masks: masks(&[("g", keep_only(3, &[0]))]),
                expect: vec![("conv", Some(conv(3, 2, 3, 1, true)))],
            }
        }
        Layer::Linear { .. } => {
            let mut g = Graph::new("case", &[5]);
            g.push("fc1", linear(5, 6), &["input"]).unwrap();
            g.push("g", scale(6), &["fc1"]).unwrap();
            g.push("fc2", linear(6, 3), &["g"]).unwrap();
            Case {
                model: model(g, 3),
                masks: g_masks(),
                expect: vec![
                    ("fc1", Some(linear(5, 4))),
                    ("g", None),
                    ("fc2", Some(linear(4, 3))),
                ],
            }
        }
        Layer::Conv2d { groups, .. } if *groups == 1 => Case {
            model: around(
                conv(6, 5, 3, 1, false),
                &[("g2", scale(5)), ("conv3", conv(5, 2, 1, 0, true))],
                4,
            ),
            masks: masks(&[
                ("g", keep_only(6, &KEEP4)),
                ("g2", keep_only(5, &[0, 1, 4])),
            ]),
            expect: vec![
                conv1_4(),
                ("x", Some(conv(4, 3, 3, 1, false))),
                ("conv3", Some(conv(3, 2, 1, 0, true))),
            ],
        },
        Layer::Conv2d { .. } if matches!(layer, Layer::Conv2d { groups: 6, .. }) => {
            // Depthwise: rows only; groups shrink with the channels.
            let dw = |c: usize| Layer::Conv2d {
                in_channels: c,
                out_channels: c,
                kernel: [3, 3],
                stride: [1, 1],
                padding: [1, 1],
                groups: c,
                bias: false,
            };
            Case {
                model: around(dw(6), &[("conv2", conv(6, 2, 1, 0, true))], 5),
                masks: g_masks(),
                expect: vec![
                    conv1_4(),
                    ("x", Some(dw(4))),
                    ("conv2", Some(conv(4, 2, 1, 0, true))),
                ],
            }
        }
        Layer::Conv2d { .. } => {
            // Grouped (2 groups of 3): its input is pinned, nothing is removed.
            let grouped = Layer::Conv2d {
                in_channels: 6,
                out_channels: 4,
                kernel: [3, 3],
                stride: [1, 1],
                padding: [1, 1],
                groups: 2,
                bias: true,
            };
            Case {
                model: around(grouped.clone(), &[], 6),
                masks: g_masks(),
                expect: vec![
                    ("conv1", Some(conv(3, 6, 3, 1, true))),
                    ("x", Some(grouped)),
                ],
            }
        }
        Layer::BatchNorm { .. } => {
            let bn = |c| Layer::BatchNorm {
                features: c,
                eps: 1e-5,
                momentum: 0.1,
            };
            let mut g = Graph::new("case", &[3, 6, 6]);
            g.push("conv1", conv(3, 6, 3, 1, true), &["input"]).unwrap();
            g.push("bn", bn(6), &["conv1"]).unwrap();
            g.push("relu", Layer::Relu, &["bn"]).unwrap();
            g.push("conv2", conv(6, 2, 3, 1, false), &["relu"]).unwrap();
            Case {
                model: model(g, 7),
                masks: masks(&[("bn", keep_only(6, &KEEP4))]),
                expect: vec![
                    conv1_4(),
                    ("bn", Some(bn(4))),
                    ("conv2", Some(conv(4, 2, 3, 1, false))),
                ],
            }
        }
        Layer::SbpGate { .. } => {
            let mut g = Graph::new("case", &[3, 6, 6]);
            g.push("conv1", conv(3, 6, 3, 1, true), &["input"]).unwrap();
            g.push("sbp", Layer::SbpGate { units: 6 }, &["conv1"])
                .unwrap();
            g.push("conv2", conv(6, 2, 3, 1, false), &["sbp"]).unwrap();
            Case {
                model: model(g, 8),
                masks: masks(&[("sbp", keep_only(6, &KEEP4))]),
                expect: vec![
                    conv1_4(),
                    ("sbp", None),
                    ("conv2", Some(conv(4, 2, 3, 1, false))),
                ],
            }
        }
        Layer::Scale { .. } => channelwise(scale(6)),
        Layer::Relu => channelwise(Layer::Relu),
        Layer::Relu6 => channelwise(Layer::Relu6),
        Layer::MaxPool { .. } => channelwise(pool(false)),
        Layer::AvgPool { .. } => channelwise(pool(true)),
        Layer::Dropout { .. } => channelwise(Layer::Dropout { p: 0.5 }),
        Layer::GlobalAvgPool => Case {
            model: around(Layer::GlobalAvgPool, &[("fc", linear(6, 3))], 9),
            masks: g_masks(),
            expect: vec![conv1_4(), ("fc", Some(linear(4, 3)))],
        },
        Layer::Flatten => Case {
            // Each channel is a block of 36 features.
            model: around(Layer::Flatten, &[("fc", linear(216, 3))], 10),
            masks: g_masks(),
            expect: vec![conv1_4(), ("fc", Some(linear(144, 3)))],
        },
        Layer::Add | Layer::Concat => {
            let mut g = Graph::new("case", &[3, 6, 6]);
            g.push("conv1", conv(3, 6, 3, 1, true), &["input"]).unwrap();
            g.push("g", scale(6), &["conv1"]).unwrap();
            g.push("conv1b", conv(3, 6, 1, 0, false), &["input"])
                .unwrap();
            g.push("gb", scale(6), &["conv1b"]).unwrap();
            g.push("x", layer.clone(), &["g", "gb"]).unwrap();
            let cin = if *layer == Layer::Add { 6 } else { 12 };
            g.push("conv2", conv(cin, 2, 3, 1, false), &["x"]).unwrap();
            // A sum removes a channel only when both branches drop it; a
            // concatenation removes each branch's channels on their own.
            let (m, conv2_in) = if *layer == Layer::Add {
                (
                    masks(&[
                        ("g", keep_only(6, &KEEP4)),
                        ("gb", keep_only(6, &[0, 2, 3, 4, 5])),
                    ]),
                    5,
                )
            } else {
                (
                    masks(&[
                        ("g", keep_only(6, &KEEP4)),
                        ("gb", keep_only(6, &[0, 1, 2])),
                    ]),
                    7,
                )
            };
            let conv1_out = if *layer == Layer::Add { 5 } else { 4 };
            Case {
                model: model(g, 11),
                masks: m,
                expect: vec![
                    ("conv1", Some(conv(3, conv1_out, 3, 1, true))),
                    ("conv2", Some(conv(conv2_in, 2, 3, 1, false))),
                ],
            }
        }
        Layer::Select { .. } => {
            // A gather's output is pinned: the gate after it keeps everything.
            let mut g = Graph::new("case", &[8]);
            let sel = Layer::Select {
                indices: vec![0, 1, 3, 4, 6, 7],
            };
            g.push("x", sel.clone(), &["input"]).unwrap();
            g.push("g", scale(6), &["x"]).unwrap();
            g.push("fc", linear(6, 3), &["g"]).unwrap();
            Case {
                model: model(g, 12),
                masks: g_masks(),
                expect: vec![("x", Some(sel)), ("fc", Some(linear(6, 3)))],
            }
        }
    }
}

/// One layer of every variant (two more convolutions: depthwise, grouped).
fn every_layer() -> Vec<Layer> {
    let c = |groups, out| Layer::Conv2d {
        in_channels: 6,
        out_channels: out,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        groups,
        bias: false,
    };
    vec![
        Layer::Input { shape: vec![1] },
        linear(1, 1),
        c(1, 5),
        c(6, 6),
        c(2, 4),
        Layer::BatchNorm {
            features: 1,
            eps: 1e-5,
            momentum: 0.1,
        },
        Layer::SbpGate { units: 1 },
        scale(1),
        Layer::Relu,
        Layer::Relu6,
        pool(false),
        pool(true),
        Layer::Dropout { p: 0.5 },
        Layer::GlobalAvgPool,
        Layer::Flatten,
        Layer::Add,
        Layer::Concat,
        Layer::Select { indices: vec![0] },
    ]
}

#[test]
fn every_layer_kind_slices_to_its_masked_forward() {
    let layers = every_layer();
    let mut kinds: Vec<&str> = layers.iter().map(Layer::kind).collect();
    kinds.dedup();
    assert_eq!(kinds.len(), 16, "one case per layer kind: {kinds:?}");
    for layer in &layers {
        let case = sample(layer);
        let what = format!("{} ({layer:?})", layer.kind());
        let compiled = compile(&case.model, &case.masks, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let err = compare_with_masked(
            &case.model,
            &compiled.effective_masks,
            &compiled.model,
            4,
            99,
        )
        .unwrap();
        assert!(err <= 1e-5, "{what}: relative error {err}");
        for (node, want) in &case.expect {
            let got = compiled
                .model
                .graph
                .node(node)
                .ok()
                .map(|n| n.layer.clone());
            assert_eq!(&got, want, "{what}: node '{node}'");
        }
    }
}
