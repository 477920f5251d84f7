//! SGEMM throughput: square sizes and the matrix shapes of a LeNet5 training
//! step at batch 100. Throughput is reported in elements/s with one element
//! per floating-point operation (`2·m·n·k` per product), i.e. FLOP/s.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prune_core::cpu::{active_kernel, sgemm};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

/// A named product `C[m×n] = op(A)·op(B)`.
struct Shape {
    name: &'static str,
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
}

fn random(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..len).map(|_| rng.random::<f32>() - 0.5).collect()
}

fn run(c: &mut Criterion, group: &str, shapes: &[Shape]) {
    let mut g = c.benchmark_group(group);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for s in shapes {
        let a = random(s.m * s.k, &mut rng);
        let b = random(s.k * s.n, &mut rng);
        let mut out = vec![0.0f32; s.m * s.n];
        g.throughput(Throughput::Elements((2 * s.m * s.n * s.k) as u64));
        g.bench_function(BenchmarkId::from_parameter(s.name), |bench| {
            bench.iter(|| {
                sgemm(
                    s.trans_a,
                    s.trans_b,
                    s.m,
                    s.n,
                    s.k,
                    1.0,
                    black_box(&a),
                    black_box(&b),
                    0.0,
                    &mut out,
                );
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn square(c: &mut Criterion) {
    eprintln!("sgemm micro-kernel: {}", active_kernel().name);
    let shapes: Vec<Shape> = [256, 512, 1024]
        .iter()
        .flat_map(|&s| {
            [
                Shape {
                    name: leak(format!("{s}_nn")),
                    trans_a: false,
                    trans_b: false,
                    m: s,
                    n: s,
                    k: s,
                },
                Shape {
                    name: leak(format!("{s}_tt")),
                    trans_a: true,
                    trans_b: true,
                    m: s,
                    n: s,
                    k: s,
                },
            ]
        })
        .collect();
    run(c, "sgemm_square", &shapes);
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn lenet(c: &mut Criterion) {
    let shapes = [
        // fc1 (800 -> 500) at batch 100: forward x·Wᵀ, input and weight gradients.
        Shape {
            name: "fc1_fwd_100x500x800_nt",
            trans_a: false,
            trans_b: true,
            m: 100,
            n: 500,
            k: 800,
        },
        Shape {
            name: "fc1_dx_100x800x500_nn",
            trans_a: false,
            trans_b: false,
            m: 100,
            n: 800,
            k: 500,
        },
        Shape {
            name: "fc1_dw_500x800x100_tn",
            trans_a: true,
            trans_b: false,
            m: 500,
            n: 800,
            k: 100,
        },
        // fc2 (500 -> 10).
        Shape {
            name: "fc2_fwd_100x10x500_nt",
            trans_a: false,
            trans_b: true,
            m: 100,
            n: 10,
            k: 500,
        },
        // conv1 / conv2 im2col products of one image: W·col.
        Shape {
            name: "conv1_img_20x576x25",
            trans_a: false,
            trans_b: false,
            m: 20,
            n: 576,
            k: 25,
        },
        Shape {
            name: "conv2_img_50x64x500",
            trans_a: false,
            trans_b: false,
            m: 50,
            n: 64,
            k: 500,
        },
        // conv2 weight gradient of one image: dY·colᵀ.
        Shape {
            name: "conv2_dw_img_50x500x64_nt",
            trans_a: false,
            trans_b: true,
            m: 50,
            n: 500,
            k: 64,
        },
    ];
    run(c, "sgemm_lenet", &shapes);
}

criterion_group!(benches, square, lenet);
criterion_main!(benches);
