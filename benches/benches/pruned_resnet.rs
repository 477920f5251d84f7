//! Inference of ResNet-20 (1x28x28, 10 classes) dense versus compiled with
//! about half the inner channels of every basic block removed: the first
//! convolution of each block keeps 9 of 16, 17 of 32 and 33 of 64 channels
//! (counts that are not multiples of 16, as after a real pruning run), and
//! the second convolution of the block reads only those. The masks sit on
//! the blocks' first batch norms (`layerS.B.bn1`), where network slimming
//! and polarization put them. Prints the FLOPs ratio and the speedup from
//! runs that alternate the two models (medians, the median of the per-pair
//! ratios, and the fastest runs), then criterion timings at batch 128 and
//! batch 1.
//!
//! `cargo bench -p prune-benches --bench pruned_resnet`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prune_compiler::{compile, CompileOptions};
use prune_core::Tensor;
use prune_graph::{predict, zoo, ChannelMasks, Model};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps the first `kept` of `n` channels of every block's `bn1` (the
/// choice of channels does not change the cost).
fn masks(blocks: usize) -> ChannelMasks {
    let mut m = ChannelMasks::new();
    for (s, (width, kept)) in [(16usize, 9usize), (32, 17), (64, 33)].iter().enumerate() {
        for b in 0..blocks {
            let keep: Vec<bool> = (0..*width).map(|i| i < *kept).collect();
            m.insert(format!("layer{}.{b}.bn1", s + 1), keep);
        }
    }
    m
}

/// Times `runs` predictions of each model, alternating dense and compiled
/// so that a change of machine load hits both alike; returns each model's
/// median and fastest run (ms) and the median of the per-pair time ratios
/// dense / compiled.
fn paired_ms(dense: &Model, compiled: &Model, x: &Tensor, runs: usize) -> [f64; 5] {
    let time = |m: &Model| {
        let t0 = Instant::now();
        black_box(predict(m, x.clone(), None).expect("predict"));
        t0.elapsed().as_secs_f64() * 1e3
    };
    time(dense);
    time(compiled);
    let (mut d, mut c, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (td, tc) = (time(dense), time(compiled));
        d.push(td);
        c.push(tc);
        r.push(td / tc);
    }
    for v in [&mut d, &mut c, &mut r] {
        v.sort_by(f64::total_cmp);
    }
    let mid = runs / 2;
    [d[mid], c[mid], d[0], c[0], r[mid]]
}

fn bench(c: &mut Criterion) {
    prune_benches::keep_freed_pages();
    let dense =
        Model::init(zoo::build("resnet20", &[1, 28, 28], 10).expect("zoo"), 0).expect("init");
    let compiled = compile(&dense, &masks(3), &CompileOptions::default())
        .expect("compile pruned ResNet-20")
        .model;
    let (fd, fc) = (
        dense.cost().expect("cost").flops as f64,
        compiled.cost().expect("cost").flops as f64,
    );
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let inputs: Vec<(usize, Tensor)> = [128usize, 1]
        .iter()
        .map(|&b| (b, Tensor::randn([b, 1, 28, 28], 0.0, 1.0, &mut rng)))
        .collect();
    for (batch, x) in &inputs {
        let runs = if *batch == 1 { 200 } else { 15 };
        let [d, p, d_min, p_min, ratio] = paired_ms(&dense, &compiled, x, runs);
        println!(
            "resnet20 dense vs pruned, batch {batch}: {d:.3} vs {p:.3} ms, speedup {:.2}x; \
             FLOPs ratio {:.2}x; speedup / FLOPs ratio {:.2}; paired: median speedup {ratio:.2}x \
             ({:.2} of the FLOPs ratio), fastest runs {d_min:.3} vs {p_min:.3} ms ({:.2})",
            d / p,
            fd / fc,
            (d / p) / (fd / fc),
            ratio / (fd / fc),
            (d_min / p_min) / (fd / fc)
        );
    }
    let mut g = c.benchmark_group("resnet20_pruned");
    g.sample_size(10);
    for (batch, x) in &inputs {
        g.throughput(Throughput::Elements(*batch as u64));
        for (name, model) in [("dense", &dense), ("pruned", &compiled)] {
            g.bench_function(BenchmarkId::new(name, format!("batch{batch}")), |b| {
                b.iter(|| black_box(predict(model, x.clone(), None).expect("predict")))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
