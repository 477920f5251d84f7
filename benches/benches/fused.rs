//! The fused tape ops against the chains they replace, in one process:
//! batch norm → residual add → ReLU (training: forward and backward; eval:
//! forward) and convolution → residual add → ReLU (eval forward), at the
//! shapes of ResNet-20's stages at batch 128 and of a single image.
//!
//! `cargo bench -p prune-benches --bench fused`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prune_core::cpu::Conv2dParams;
use prune_core::{Tape, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One training step of `relu(bn(x) + r)`: forward, `Σ y`, backward.
fn bn_train(x: &Tensor, g: &Tensor, b: &Tensor, r: &Tensor, fused: bool) {
    let mut tape = Tape::new();
    let v: Vec<Var> = [x, g, b, r]
        .iter()
        .map(|t| tape.leaf((*t).clone(), true))
        .collect();
    let y = if fused {
        tape.batch_norm_relu_train(v[0], v[1], v[2], Some(v[3]), 1e-5)
            .expect("fused")
            .0
    } else {
        let (bn, _, _) = tape.batch_norm_train(v[0], v[1], v[2], 1e-5).expect("bn");
        let s = tape.add(bn, v[3]).expect("add");
        tape.relu(s).expect("relu")
    };
    let l = tape.sum_all(y).expect("sum");
    black_box(tape.backward(l).expect("backward"));
}

/// Eval-mode `relu(bn(x) + r)` on a no-grad tape.
fn bn_eval(x: &Tensor, g: &Tensor, b: &Tensor, r: &Tensor, stats: &(Tensor, Tensor), fused: bool) {
    let mut tape = Tape::no_grad();
    let v: Vec<Var> = [x, g, b, r]
        .iter()
        .map(|t| tape.constant((*t).clone()))
        .collect();
    let (m, s) = stats;
    let y = if fused {
        tape.batch_norm_relu_eval(v[0], v[1], v[2], Some(v[3]), m, s, 1e-5)
            .expect("fused")
    } else {
        let bn = tape
            .batch_norm_eval(v[0], v[1], v[2], m, s, 1e-5)
            .expect("bn");
        let s = tape.add(bn, v[3]).expect("add");
        tape.relu(s).expect("relu")
    };
    black_box(tape.value(y).expect("value"));
}

/// Eval-mode `relu(conv(x) + b + r)` (3×3, padding 1) on a no-grad tape.
fn conv_eval(x: &Tensor, w: &Tensor, b: &Tensor, r: &Tensor, fused: bool) {
    let mut tape = Tape::no_grad();
    let v: Vec<Var> = [x, w, b, r]
        .iter()
        .map(|t| tape.constant((*t).clone()))
        .collect();
    let p = Conv2dParams {
        stride: (1, 1),
        padding: (1, 1),
        groups: 1,
    };
    let y = if fused {
        tape.conv2d_relu(v[0], v[1], Some(v[2]), p, Some(v[3]))
            .expect("fused")
    } else {
        let c = tape.conv2d(v[0], v[1], Some(v[2]), p).expect("conv");
        let s = tape.add(c, v[3]).expect("add");
        tape.relu(s).expect("relu")
    };
    black_box(tape.value(y).expect("value"));
}

fn bench(c: &mut Criterion) {
    prune_benches::keep_freed_pages();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut g = c.benchmark_group("fused");
    g.sample_size(20);
    for (n, ch, hw) in [(128usize, 16usize, 28usize), (128, 64, 7), (1, 16, 28)] {
        let shape = [n, ch, hw, hw];
        let x = Tensor::randn(shape, 0.0, 1.0, &mut rng);
        let r = Tensor::randn(shape, 0.0, 1.0, &mut rng);
        let gamma = Tensor::uniform([ch], 0.5, 1.5, &mut rng);
        let beta = Tensor::uniform([ch], -0.5, 0.5, &mut rng);
        let stats = (
            Tensor::uniform([ch], -0.1, 0.1, &mut rng),
            Tensor::uniform([ch], 0.5, 1.5, &mut rng),
        );
        let w = Tensor::randn([ch, ch, 3, 3], 0.0, 0.1, &mut rng);
        let id = format!("{n}x{ch}x{hw}x{hw}");
        g.throughput(Throughput::Elements(n as u64));
        for (name, fused) in [("unfused", false), ("fused", true)] {
            g.bench_with_input(
                BenchmarkId::new(format!("bn_add_relu_train_{name}"), &id),
                &(),
                |bch, _| bch.iter(|| bn_train(&x, &gamma, &beta, &r, fused)),
            );
            g.bench_with_input(
                BenchmarkId::new(format!("bn_add_relu_eval_{name}"), &id),
                &(),
                |bch, _| bch.iter(|| bn_eval(&x, &gamma, &beta, &r, &stats, fused)),
            );
            g.bench_with_input(
                BenchmarkId::new(format!("conv_add_relu_eval_{name}"), &id),
                &(),
                |bch, _| bch.iter(|| conv_eval(&x, &w, &beta, &r, fused)),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
