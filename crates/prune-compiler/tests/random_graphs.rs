//! Property test: random graphs with random parameters and random masks
//! always compile, and the compiled model reproduces the masked model.

mod common;

use common::{bn, conv, linear, nodes_of_kind, random_masks};
use proptest::prelude::*;
use prune_compiler::{compile, CompileOptions};
use prune_graph::ir::{Graph, Layer};
use prune_graph::Model;

#[derive(Clone, Copy, Debug)]
enum Gate {
    None,
    Bn,
    Scale,
    Sbp,
    BnScale,
}

#[derive(Clone, Debug)]
enum Block {
    Conv {
        out: usize,
        k3: bool,
        bias: bool,
        gate: Gate,
    },
    Pool {
        max: bool,
    },
    Residual {
        gate: Gate,
    },
    Projection {
        out: usize,
        shortcut: Gate,
    },
    Concat {
        a: usize,
        b: usize,
        bn_after: bool,
    },
    Depthwise {
        bias: bool,
        gate: Gate,
    },
}

#[derive(Clone, Debug)]
enum Head {
    Gap { hidden: Option<(usize, Gate)> },
    Flatten { feature_gate: bool, hidden: usize },
}

fn gate() -> impl Strategy<Value = Gate> {
    prop_oneof![
        Just(Gate::None),
        Just(Gate::Bn),
        Just(Gate::Scale),
        Just(Gate::Sbp),
        Just(Gate::BnScale)
    ]
}

fn block() -> impl Strategy<Value = Block> {
    prop_oneof![
        (1usize..6, any::<bool>(), any::<bool>(), gate()).prop_map(|(out, k3, bias, gate)| {
            Block::Conv {
                out,
                k3,
                bias,
                gate,
            }
        }),
        any::<bool>().prop_map(|max| Block::Pool { max }),
        gate().prop_map(|gate| Block::Residual { gate }),
        (1usize..6, gate()).prop_map(|(out, shortcut)| Block::Projection { out, shortcut }),
        (1usize..4, 1usize..4, any::<bool>()).prop_map(|(a, b, bn_after)| Block::Concat {
            a,
            b,
            bn_after
        }),
        (any::<bool>(), gate()).prop_map(|(bias, gate)| Block::Depthwise { bias, gate }),
    ]
}

fn head() -> impl Strategy<Value = Head> {
    prop_oneof![
        proptest::option::of((1usize..6, gate())).prop_map(|hidden| Head::Gap { hidden }),
        (any::<bool>(), 1usize..6).prop_map(|(feature_gate, hidden)| Head::Flatten {
            feature_gate,
            hidden
        }),
    ]
}

struct Builder {
    g: Graph,
    cur: String,
    c: usize,
    hw: usize,
    n: usize,
}

impl Builder {
    fn push(&mut self, prefix: &str, layer: Layer, inputs: &[&str]) -> String {
        self.n += 1;
        let name = format!("{prefix}{}", self.n);
        self.g.push(&name, layer, inputs).unwrap()
    }

    /// Appends `gate` after `x` (with `c` channels) and returns the new tip.
    fn gate(&mut self, x: &str, c: usize, gate: Gate) -> String {
        match gate {
            Gate::None => x.to_string(),
            Gate::Bn => self.push("bn", bn(c), &[x]),
            Gate::Scale => self.push("scale", Layer::Scale { units: c }, &[x]),
            Gate::Sbp => self.push("sbp", Layer::SbpGate { units: c }, &[x]),
            Gate::BnScale => {
                let b = self.push("bn", bn(c), &[x]);
                self.push("scale", Layer::Scale { units: c }, &[&b])
            }
        }
    }

    fn block(&mut self, b: &Block) {
        let x = self.cur.clone();
        let c = self.c;
        match *b {
            Block::Conv {
                out,
                k3,
                bias,
                gate,
            } => {
                let (k, p) = if k3 { (3, 1) } else { (1, 0) };
                let y = self.push("conv", conv(c, out, k, p, bias), &[&x]);
                let y = self.gate(&y, out, gate);
                self.cur = self.push("relu", Layer::Relu, &[&y]);
                self.c = out;
            }
            Block::Pool { max } => {
                if self.hw >= 2 {
                    let w = [2, 2];
                    let layer = if max {
                        Layer::MaxPool {
                            kernel: w,
                            stride: w,
                            padding: [0, 0],
                        }
                    } else {
                        Layer::AvgPool {
                            kernel: w,
                            stride: w,
                            padding: [0, 0],
                        }
                    };
                    self.cur = self.push("pool", layer, &[&x]);
                    self.hw /= 2;
                }
            }
            Block::Residual { gate } => {
                let y = self.push("conv", conv(c, c, 3, 1, false), &[&x]);
                let y = self.gate(&y, c, gate);
                let y = self.push("relu", Layer::Relu, &[&y]);
                let y = self.push("conv", conv(c, c, 3, 1, false), &[&y]);
                let y = self.push("bn", bn(c), &[&y]);
                let y = self.push("add", Layer::Add, &[&y, &x]);
                self.cur = self.push("relu", Layer::Relu, &[&y]);
            }
            Block::Projection { out, shortcut } => {
                let y = self.push("conv", conv(c, out, 3, 1, false), &[&x]);
                let y = self.push("bn", bn(out), &[&y]);
                let y = self.push("relu", Layer::Relu, &[&y]);
                let y = self.push("conv", conv(out, out, 3, 1, false), &[&y]);
                let y = self.push("bn", bn(out), &[&y]);
                let s = self.push("conv", conv(c, out, 1, 0, false), &[&x]);
                let s = self.gate(&s, out, shortcut);
                let y = self.push("add", Layer::Add, &[&y, &s]);
                self.cur = self.push("relu", Layer::Relu, &[&y]);
                self.c = out;
            }
            Block::Concat { a, b, bn_after } => {
                let ya = self.push("conv", conv(c, a, 3, 1, true), &[&x]);
                let ya = self.push("scale", Layer::Scale { units: a }, &[&ya]);
                let ya = self.push("relu", Layer::Relu, &[&ya]);
                let yb = self.push("conv", conv(c, b, 1, 0, false), &[&x]);
                let yb = self.push("bn", bn(b), &[&yb]);
                let yb = self.push("relu", Layer::Relu, &[&yb]);
                let mut y = self.push("cat", Layer::Concat, &[&ya, &yb]);
                if bn_after {
                    y = self.push("bn", bn(a + b), &[&y]);
                }
                self.cur = y;
                self.c = a + b;
            }
            Block::Depthwise { bias, gate } => {
                let layer = Layer::Conv2d {
                    in_channels: c,
                    out_channels: c,
                    kernel: [3, 3],
                    stride: [1, 1],
                    padding: [1, 1],
                    groups: c,
                    bias,
                };
                let y = self.push("dw", layer, &[&x]);
                let y = self.gate(&y, c, gate);
                self.cur = self.push("relu", Layer::Relu, &[&y]);
            }
        }
    }

    fn head(&mut self, h: &Head) {
        let x = self.cur.clone();
        match *h {
            Head::Gap { hidden } => {
                let mut y = self.push("gap", Layer::GlobalAvgPool, &[&x]);
                let mut width = self.c;
                if let Some((units, gate)) = hidden {
                    let z = self.push("fc", linear(width, units), &[&y]);
                    let z = self.gate(&z, units, gate);
                    y = self.push("relu", Layer::Relu, &[&z]);
                    width = units;
                }
                self.push("logits", linear(width, 3), &[&y]);
            }
            Head::Flatten {
                feature_gate,
                hidden,
            } => {
                let mut y = self.push("flatten", Layer::Flatten, &[&x]);
                let width = self.c * self.hw * self.hw;
                if feature_gate {
                    y = self.push("scale", Layer::Scale { units: width }, &[&y]);
                }
                let z = self.push("fc", linear(width, hidden), &[&y]);
                let z = self.push("relu", Layer::Relu, &[&z]);
                self.push("logits", linear(hidden, 3), &[&z]);
            }
        }
    }
}

fn build(stem: usize, blocks: &[Block], head: &Head) -> Graph {
    let mut b = Builder {
        g: Graph::new("random", &[2, 6, 6]),
        cur: "input".into(),
        c: 2,
        hw: 6,
        n: 0,
    };
    // A gated stem so the network input is never part of a prunable sum.
    b.block(&Block::Conv {
        out: stem,
        k3: true,
        bias: false,
        gate: Gate::Bn,
    });
    for blk in blocks {
        b.block(blk);
    }
    b.head(head);
    b.g
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_graphs_compile_and_verify(
        stem in 1usize..6,
        blocks in proptest::collection::vec(block(), 0..5),
        head in head(),
        p in 0.2f64..0.9,
        seed in any::<u64>(),
        fold_bn in any::<bool>(),
    ) {
        let graph = build(stem, &blocks, &head);
        let mut m = Model::init(graph, seed).unwrap();
        common::randomize(&mut m, seed);
        let masks = random_masks(&m.graph, p, seed ^ 0x5eed);
        let opts = CompileOptions { fold_bn, verify_batch: 3, ..Default::default() };
        let c = compile(&m, &masks, &opts)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{:#?}", m.graph.nodes)))?;
        let err = c.report.verify_max_rel_error.unwrap();
        prop_assert!(err <= 1e-5, "relative error {}", err);
        prop_assert!(nodes_of_kind(&c.model.graph, "sbp_gate").is_empty());
        prop_assert!(c.report.flops_after <= c.report.flops_before);
        prop_assert!(c.report.params_after <= c.report.params_before);
        // Every masked gate keeps exactly the unmasked channels (masked
        // flattened features of kept channels stay, zeroed).
        for (gate, keep) in &c.effective_masks {
            let kept = keep.iter().filter(|&&k| k).count();
            let layer = c.report.layers.iter().find(|l| &l.name == gate).unwrap();
            prop_assert_eq!(layer.channels_after - layer.channels_zeroed, kept);
        }
        c.model.validate().unwrap();
    }
}
