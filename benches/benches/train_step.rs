//! One LeNet5 training step (forward, cross-entropy, backward, Adam) at
//! batch 100 on 1x28x28 inputs, reported as images/s.
//!
//! `cargo bench -p prune-benches --bench train_step`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use prune_core::optim::{Adam, Optimizer, ParamUpdate};
use prune_core::{Tape, Tensor};
use prune_graph::{forward, zoo, Model, RunOptions};
use rand::SeedableRng;

/// The same allocator as the `prune-nn` binary: a training step allocates
/// and frees its activations every iteration.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn step(
    model: &mut Model,
    opt: &mut Adam,
    x: &Tensor,
    labels: &[usize],
    rng: &mut rand_chacha::ChaCha8Rng,
) {
    let grads = {
        let mut tape = Tape::new();
        let input = tape.constant(x.clone());
        let f = forward(
            model,
            &mut tape,
            input,
            &RunOptions::train(prune_core::sbp::GateNoise::new(0, 0)),
            rng,
        )
        .expect("forward");
        let loss = tape.cross_entropy(f.output, labels).expect("loss");
        let mut g = tape.backward(loss).expect("backward");
        f.params
            .iter()
            .filter_map(|(n, v)| g.take(*v).map(|t| (n.clone(), t)))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let mut updates: Vec<ParamUpdate<'_>> = model
        .params
        .iter_mut()
        .filter_map(|(name, value)| {
            grads.get(name).map(|grad| ParamUpdate {
                name,
                value,
                grad,
                lr_mult: 1.0,
                decay: false,
            })
        })
        .collect();
    opt.step(1e-3, &mut updates).expect("step");
}

fn bench(c: &mut Criterion) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut model =
        Model::init(zoo::build("lenet5", &[1, 28, 28], 10).expect("zoo"), 0).expect("init");
    let x = Tensor::randn([100, 1, 28, 28], 0.0, 1.0, &mut rng);
    let labels: Vec<usize> = (0..100).map(|i| i % 10).collect();
    let mut opt = Adam::default();
    let mut g = c.benchmark_group("train_step");
    g.throughput(Throughput::Elements(100));
    g.bench_function("lenet5_batch100", |b| {
        b.iter(|| step(&mut model, &mut opt, &x, &labels, &mut rng))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
