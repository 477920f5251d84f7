//! Conv nets end to end: ResNet-20/56 on 1x28x28 and the VGG-like net on
//! 3x32x32 — training steps (forward in training mode, cross-entropy,
//! backward, SGD with momentum) and inference at batch 128 and batch 1 —
//! reported as images/s. The PyTorch figures for the same work come from
//! `torch_cpu_bench.py` (see docs/performance.md).
//!
//! `cargo bench -p prune-benches --bench convnets`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prune_core::Tensor;
use prune_graph::{predict, zoo, Model};
use prune_nn::bench::{zoo_input, Trainer};
use rand::SeedableRng;

/// The same allocator as the `prune-nn` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn model(name: &str) -> Model {
    Model::init(zoo::build(name, &zoo_input(name), 10).expect("zoo"), 0).expect("init")
}

fn input(name: &str, batch: usize) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut shape = vec![batch];
    shape.extend(zoo_input(name));
    Tensor::randn(shape, 0.0, 1.0, &mut rng)
}

fn bench(c: &mut Criterion) {
    prune_benches::keep_freed_pages();
    let mut g = c.benchmark_group("convnets");
    g.sample_size(10);
    for (name, train_batch) in [("resnet20", 128), ("resnet56", 128), ("vgg-like", 64)] {
        let mut trainer = Trainer::new(model(name), train_batch).expect("trainer");
        g.throughput(Throughput::Elements(train_batch as u64));
        g.bench_function(format!("{name}_train_batch{train_batch}"), |b| {
            b.iter(|| trainer.step().expect("step"))
        });
        if name == "resnet56" {
            continue;
        }
        let m = model(name);
        for batch in [128usize, 1] {
            let x = input(name, batch);
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(format!("{name}_infer_batch{batch}"), |b| {
                b.iter(|| predict(&m, x.clone(), None).expect("predict"))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
