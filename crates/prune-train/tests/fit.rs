//! Training-loop behaviour on a small synthetic problem: learning,
//! determinism, exact resume, and NaN handling with an intact checkpoint.

use prune_core::{Tape, Tensor, Var};
use prune_data::{Dataset, DatasetKind, Split};
use prune_graph::{zoo, Model};
use prune_train::{checkpoint, fit, OptimizerKind, Regularizer, RunFiles, TrainConfig, TrainError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Images of class k have a bright 7x7 block at a class-specific position.
fn synthetic(n: usize, seed: u64) -> Dataset {
    let mut pixels = vec![0u8; n * 784];
    let mut labels = Vec::with_capacity(n);
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    for i in 0..n {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = (s >> 33) as usize % 10;
        labels.push(k as u8);
        let (r0, c0) = ((k / 5) * 14 + 3, (k % 5) * 5 + 1);
        for r in r0..r0 + 7 {
            for c in c0..(c0 + 4).min(28) {
                pixels[i * 784 + r * 28 + c] = 200 + ((s >> (r % 8)) & 31) as u8;
            }
        }
    }
    Dataset::from_bytes(DatasetKind::Mnist, Split::Train, &pixels, labels).expect("dataset")
}

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        lr: 1e-3,
        optimizer: OptimizerKind::adam(),
        schedule: Default::default(),
        seed: 3,
        augment: false,
        max_batches: None,
        progress: false,
    }
}

fn model() -> Model {
    Model::init(
        zoo::build("lenet-300-100", &[1, 28, 28], 10).expect("zoo"),
        1,
    )
    .expect("init")
}

#[test]
fn learns_and_is_deterministic() {
    let (train, test) = (synthetic(512, 1), synthetic(256, 2));
    let mut a = model();
    let sa = fit(&mut a, &train, &test, &config(2), None, RunFiles::default()).expect("fit");
    assert!(sa.test_accuracy > 0.9, "accuracy {}", sa.test_accuracy);
    assert_eq!(sa.history.len(), 2);
    let mut b = model();
    fit(&mut b, &train, &test, &config(2), None, RunFiles::default()).expect("fit");
    assert_eq!(a.params, b.params, "same seed must give the same weights");
}

#[test]
fn resume_continues_exactly() {
    let (train, test) = (synthetic(256, 4), synthetic(64, 5));
    let mut straight = model();
    fit(
        &mut straight,
        &train,
        &test,
        &config(3),
        None,
        RunFiles::default(),
    )
    .expect("fit");

    let dir = tempfile::tempdir().expect("tmp");
    let first = RunFiles {
        dir: Some(dir.path()),
        resume: false,
    };
    let files = RunFiles {
        dir: Some(dir.path()),
        resume: true,
    };
    let mut m = model();
    fit(&mut m, &train, &test, &config(2), None, first).expect("first part");
    let mut fresh = model();
    let s = fit(&mut fresh, &train, &test, &config(3), None, files).expect("resumed");
    assert_eq!(s.history.len(), 3);
    assert_eq!(
        fresh.params, straight.params,
        "resumed run differs from an uninterrupted one"
    );
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).expect("metrics");
    assert_eq!(lines.lines().count(), 3);
}

/// A penalty that turns NaN after a number of calls.
struct Poison {
    calls: AtomicUsize,
    after: usize,
}

impl Regularizer for Poison {
    fn name(&self) -> &str {
        "poison"
    }
    fn penalty(
        &self,
        tape: &mut Tape<'_>,
        _model: &Model,
        _params: &BTreeMap<String, Var>,
        _n: usize,
    ) -> prune_core::Result<Option<Var>> {
        let k = self.calls.fetch_add(1, Ordering::SeqCst);
        let v = if k >= self.after { f32::NAN } else { 0.0 };
        Ok(Some(tape.constant(Tensor::scalar(v))))
    }
}

#[test]
fn nan_stops_training_and_keeps_the_last_checkpoint() {
    let (train, test) = (synthetic(128, 6), synthetic(32, 7));
    let dir = tempfile::tempdir().expect("tmp");
    let files = RunFiles {
        dir: Some(dir.path()),
        resume: false,
    };
    // 128 / 32 = 4 batches per epoch: NaN in the middle of epoch 2
    let poison = Poison {
        calls: AtomicUsize::new(0),
        after: 6,
    };
    let mut m = model();
    let err = fit(&mut m, &train, &test, &config(3), Some(&poison), files).expect_err("must stop");
    match err {
        TrainError::NonFinite { epoch, batch, .. } => assert_eq!((epoch, batch), (1, 2)),
        other => panic!("unexpected error {other}"),
    }
    let ck = checkpoint::load(dir.path())
        .expect("load")
        .expect("a checkpoint exists");
    assert_eq!(ck.state.epochs_done, 1);
    assert!(ck.model.params.iter().all(|(_, t)| t.all_finite()));
}

#[test]
fn bad_config_is_an_error() {
    let (train, test) = (synthetic(8, 1), synthetic(8, 2));
    let mut cfg = config(1);
    cfg.batch_size = 0;
    let e = fit(&mut model(), &train, &test, &cfg, None, RunFiles::default()).unwrap_err();
    assert!(e.to_string().contains("batch size"), "{e}");
}
