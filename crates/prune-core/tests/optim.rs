//! Optimizer steps against hand-computed updates; schedules.
mod common;
use common::*;
use prune_core::optim::{Adam, LrSchedule, Optimizer, ParamUpdate, Sgd};
use prune_core::Tensor;

fn step(opt: &mut dyn Optimizer, w: &mut Tensor, g: &Tensor, lr: f32, decay: bool) {
    let mut p = [ParamUpdate {
        name: "w",
        value: w,
        grad: g,
        lr_mult: 1.0,
        decay,
    }];
    opt.step(lr, &mut p).unwrap();
}

#[test]
fn sgd_momentum_hand_computed() {
    let mut w = t(&[1], &[1.0]);
    let g = t(&[1], &[0.5]);
    let mut opt = Sgd::new(0.9, false, 0.1);
    // g' = 0.5 + 0.1·1 = 0.6; v = 0.6; w = 1 - 0.1·0.6 = 0.94
    step(&mut opt, &mut w, &g, 0.1, true);
    assert!((w.data()[0] - 0.94).abs() < 1e-6);
    // g' = 0.5 + 0.094 = 0.594; v = 0.9·0.6 + 0.594 = 1.134; w = 0.94 - 0.1134 = 0.8266
    step(&mut opt, &mut w, &g, 0.1, true);
    assert!((w.data()[0] - 0.8266).abs() < 1e-6, "{}", w.data()[0]);
}

#[test]
fn sgd_nesterov_hand_computed() {
    let mut w = t(&[1], &[1.0]);
    let g = t(&[1], &[1.0]);
    let mut opt = Sgd::new(0.5, true, 0.0);
    // v = 1; w -= 0.1·(1 + 0.5·1) = 0.85
    step(&mut opt, &mut w, &g, 0.1, true);
    assert!((w.data()[0] - 0.85).abs() < 1e-6);
    // v = 1.5; w -= 0.1·(1 + 0.75) = 0.675
    step(&mut opt, &mut w, &g, 0.1, true);
    assert!((w.data()[0] - 0.675).abs() < 1e-6);
}

#[test]
fn adam_hand_computed_and_lr_mult() {
    // first Adam step moves each weight by lr·sign(g) (bias-corrected m̂/√v̂ = ±1)
    let mut w = t(&[2], &[1.0, 1.0]);
    let g = t(&[2], &[0.3, -2.0]);
    let mut opt = Adam::new(0.95, 0.999, 1e-8, 0.0);
    step(&mut opt, &mut w, &g, 0.01, false);
    assert!((w.data()[0] - 0.99).abs() < 1e-6 && (w.data()[1] - 1.01).abs() < 1e-6);
    // a parameter group at 10x the rate moves 10x as far
    let mut w2 = t(&[1], &[0.0]);
    let g2 = t(&[1], &[1.0]);
    let mut p = [ParamUpdate {
        name: "sbp.mu",
        value: &mut w2,
        grad: &g2,
        lr_mult: 10.0,
        decay: false,
    }];
    opt.step(0.01, &mut p).unwrap();
    assert!((w2.data()[0] + 0.1).abs() < 1e-5, "{}", w2.data()[0]);
}

#[test]
fn optimizer_state_roundtrips_and_rejects_bad_gradients() {
    let mut a = Adam::default();
    let mut w = t(&[2], &[1.0, 2.0]);
    step(&mut a, &mut w, &t(&[2], &[0.1, 0.2]), 0.1, false);
    let mut b = Adam::default();
    b.load_state(a.state());
    let (mut wa, mut wb) = (w.clone(), w.clone());
    step(&mut a, &mut wa, &t(&[2], &[0.3, -0.1]), 0.1, false);
    step(&mut b, &mut wb, &t(&[2], &[0.3, -0.1]), 0.1, false);
    assert_eq!(wa, wb);
    let mut p = [ParamUpdate {
        name: "w",
        value: &mut w,
        grad: &t(&[2], &[f32::NAN, 0.0]),
        lr_mult: 1.0,
        decay: false,
    }];
    assert!(a
        .step(0.1, &mut p)
        .unwrap_err()
        .to_string()
        .contains("gradient of w"));
    let mut p = [ParamUpdate {
        name: "w",
        value: &mut w,
        grad: &t(&[3], &[0.0; 3]),
        lr_mult: 1.0,
        decay: false,
    }];
    assert!(a.step(0.1, &mut p).is_err());
}

#[test]
fn schedules() {
    let m = LrSchedule::MultiStep {
        milestones: vec![2, 4],
        gamma: 0.1,
    };
    assert_eq!(m.lr(1.0, 1), 1.0);
    assert!((m.lr(1.0, 2) - 0.1).abs() < 1e-7 && (m.lr(1.0, 5) - 0.01).abs() < 1e-7);
    let l = LrSchedule::LinearDecay {
        start_epoch: 2,
        total_epochs: 6,
    };
    assert_eq!(
        [l.lr(1.0, 0), l.lr(1.0, 2), l.lr(1.0, 4), l.lr(1.0, 6)],
        [1.0, 1.0, 0.5, 0.0]
    );
    let c = LrSchedule::Cosine {
        total_epochs: 10,
        min_lr: 0.0,
    };
    assert!((c.lr(1.0, 0) - 1.0).abs() < 1e-6 && (c.lr(1.0, 5) - 0.5).abs() < 1e-6);
    assert!(c.lr(1.0, 10).abs() < 1e-6);
}
