//! Inference of LeNet5 (zoo `lenet5`, 1x28x28, 10 classes) dense versus
//! compiled to the SBP paper's 3-18-284-283 architecture: conv1 keeps 3 of
//! 20 channels, conv2 18 of 50, fc1 reads 284 of the 288 flattened features
//! of those channels and keeps 283 of 500 outputs.
//!
//! Scale gates (γ = 1, so the network is unchanged) are inserted after conv1,
//! conv2, fc1 and on the flattened features; masks on them drive
//! `prune_compiler::compile`, which folds the gates away. Throughput is in
//! images/s through `prune_graph::predict` at batch 100 and batch 1; a
//! median-of-runs ratio from `prune_compiler::measure_speed` is printed
//! before the criterion runs.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prune_compiler::{compile, measure_speed, CompileOptions};
use prune_core::Tensor;
use prune_graph::ir::{Graph, Layer, Node};
use prune_graph::{predict, zoo, ChannelMasks, Model};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

/// `graph` with a scale gate `<node>.g` (γ = 1) after each listed node.
fn with_gates(model: &Model, after: &[(&str, usize)]) -> Model {
    let mut nodes: Vec<Node> = Vec::new();
    for n in &model.graph.nodes {
        let mut n = n.clone();
        for inp in &mut n.inputs {
            if after.iter().any(|(a, _)| a == inp) {
                *inp = format!("{inp}.g");
            }
        }
        let name = n.name.clone();
        nodes.push(n);
        if let Some((_, units)) = after.iter().find(|(a, _)| *a == name) {
            nodes.push(Node {
                name: format!("{name}.g"),
                layer: Layer::Scale { units: *units },
                inputs: vec![name.clone()],
            });
        }
    }
    let graph = Graph {
        name: model.graph.name.clone(),
        nodes,
    };
    let mut params = model.params.clone();
    for (a, units) in after {
        params.insert(format!("{a}.g.weight"), Tensor::ones([*units]));
    }
    let m = Model { graph, params };
    m.validate().expect("gated LeNet5 is valid");
    m
}

fn keep(n: usize, kept: &[usize]) -> Vec<bool> {
    (0..n).map(|i| kept.contains(&i)).collect()
}

/// Masks for 3-18-284-283.
fn paper_masks() -> ChannelMasks {
    let c1 = [2usize, 9, 15];
    let c2: Vec<usize> = (0..18).map(|i| i * 2 + 1).collect();
    let mut feats = vec![true; 800];
    for c in &c2 {
        // Drop one feature in each of the first 4 kept channels: 288 → 284.
        if *c < 8 {
            feats[c * 16 + 5] = false;
        }
    }
    let hidden: Vec<usize> = (0..500).filter(|i| i % 7 != 3).take(283).collect();
    let mut m = ChannelMasks::new();
    m.insert("conv1.g".into(), keep(20, &c1));
    m.insert("conv2.g".into(), keep(50, &c2));
    m.insert("flatten.g".into(), feats);
    m.insert("fc1.g".into(), keep(500, &hidden));
    m
}

fn bench(c: &mut Criterion) {
    let graph = zoo::build("lenet5", &[1, 28, 28], 10).expect("zoo lenet5");
    let dense = Model::init(graph, 0).expect("init");
    let gated = with_gates(
        &dense,
        &[("conv1", 20), ("conv2", 50), ("flatten", 800), ("fc1", 500)],
    );
    let compiled = compile(&gated, &paper_masks(), &CompileOptions::default())
        .expect("compile LeNet5 3-18-284-283");
    println!("{}", compiled.report.to_table());
    let speed = measure_speed(&dense, &compiled.model, 50).expect("measure speed");
    println!(
        "lenet5 dense vs 3-18-284-283: batch 100 {:.0} vs {:.0} images/s ({:.2}x); \
         batch 1 {:.3} vs {:.3} ms ({:.2}x)",
        speed.dense_images_per_sec,
        speed.pruned_images_per_sec,
        speed.speedup_b100,
        speed.dense_latency_b1_ms,
        speed.pruned_latency_b1_ms,
        speed.speedup_b1
    );

    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut g = c.benchmark_group("lenet5_inference");
    g.sample_size(30);
    for batch in [100usize, 1] {
        let x = Tensor::randn([batch, 1, 28, 28], 0.0, 1.0, &mut rng);
        g.throughput(Throughput::Elements(batch as u64));
        for (name, model) in [("dense", &dense), ("3-18-284-283", &compiled.model)] {
            g.bench_function(BenchmarkId::new(name, format!("batch{batch}")), |b| {
                b.iter(|| black_box(predict(model, black_box(x.clone()), None).expect("predict")))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
