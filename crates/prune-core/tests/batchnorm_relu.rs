//! The fused batch norm (+ residual) + ReLU node: gradients against finite
//! differences, and values and gradients against the unfused chain
//! `batch_norm → add → relu`, which it must reproduce bit for bit.
mod common;
use common::*;
use prune_core::gradcheck::GradcheckConfig;
use prune_core::{Result, Tape, Tensor, Var};

/// Equal bit patterns, except that `+0` and `−0` count as one value (the
/// sign of a zero that a ReLU outputs is not part of the contract).
fn assert_same(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (i, (a, b)) in got.data().iter().zip(want.data()).enumerate() {
        assert!(
            a.to_bits() == b.to_bits() || (*a == 0.0 && *b == 0.0),
            "{what}: element {i} is {a:e}, unfused {b:e}"
        );
    }
}

/// Running statistics for `c` channels.
fn running(c: usize) -> (Tensor, Tensor) {
    let mean = rand_t(&[c], 11).map(|v| 0.3 * v);
    let var = rand_t(&[c], 12).map(|v| 1.0 + 0.5 * v);
    (mean, var)
}

/// One forward of either form; inputs `[x, γ, β, residual?]`.
fn run(tape: &mut Tape, v: &[Var], train: bool, fused: bool) -> Result<Var> {
    let c = tape.shape(v[1])?[0];
    let (rm, rv) = running(c);
    let residual = v.get(3).copied();
    if fused {
        return if train {
            Ok(tape
                .batch_norm_relu_train(v[0], v[1], v[2], residual, 1e-5)?
                .0)
        } else {
            tape.batch_norm_relu_eval(v[0], v[1], v[2], residual, &rm, &rv, 1e-5)
        };
    }
    let bn = if train {
        tape.batch_norm_train(v[0], v[1], v[2], 1e-5)?.0
    } else {
        tape.batch_norm_eval(v[0], v[1], v[2], &rm, &rv, 1e-5)?
    };
    let pre = match residual {
        Some(r) => tape.add(bn, r)?,
        None => bn,
    };
    tape.relu(pre)
}

/// `[x, γ, β]` plus a residual when asked, for an input of `shape`.
fn inputs(shape: &[usize], with_residual: bool, seed: u64) -> Vec<Tensor> {
    let c = shape[1];
    let mut v = vec![
        rand_t(shape, seed).map(|x| 2.0 * x + 0.3),
        rand_t(&[c], seed + 1).map(|g| g + 1.5),
        rand_t(&[c], seed + 2).map(|b| 0.5 * b),
    ];
    if with_residual {
        v.push(rand_t(shape, seed + 3));
    }
    v
}

/// Forward value, the batch statistics (training) and every input's
/// gradient of `Σ y ⊙ R` for a fixed random `R`.
fn value_and_grads(xs: &[Tensor], train: bool, fused: bool) -> (Tensor, Vec<Tensor>, Vec<Tensor>) {
    let mut tape = Tape::new();
    let vars: Vec<Var> = xs.iter().map(|t| tape.leaf(t.clone(), true)).collect();
    let mut stats = Vec::new();
    let y = if train && fused {
        let (y, m, v) = tape
            .batch_norm_relu_train(vars[0], vars[1], vars[2], vars.get(3).copied(), 1e-5)
            .unwrap();
        stats = vec![m, v];
        y
    } else if train {
        let (bn, m, v) = tape
            .batch_norm_train(vars[0], vars[1], vars[2], 1e-5)
            .unwrap();
        stats = vec![m, v];
        let pre = match vars.get(3) {
            Some(&r) => tape.add(bn, r).unwrap(),
            None => bn,
        };
        tape.relu(pre).unwrap()
    } else {
        run(&mut tape, &vars, false, fused).unwrap()
    };
    let value = tape.value(y).unwrap().clone();
    let r = tape.constant(rand_t(value.shape(), 99));
    let prod = tape.mul(y, r).unwrap();
    let loss = tape.sum_all(prod).unwrap();
    let g = tape.backward(loss).unwrap();
    let grads = vars.iter().map(|v| g.get(*v).unwrap().clone()).collect();
    (value, stats, grads)
}

/// Moves the inputs so that no pre-activation lies within 0.02 of the
/// ReLU's kink, where central differences straddle two slopes. With a
/// residual, the residual is shifted (the statistics do not depend on it);
/// in evaluation mode, `x` (the statistics are fixed); in training mode
/// without a residual, each channel's values are rebuilt in pairs `m ± d`
/// with `d ≥ 0.5`, so none is near the batch mean, and `β` is made small.
fn away_from_kink(mut xs: Vec<Tensor>, train: bool) -> Vec<Tensor> {
    let c = xs[1].numel();
    if train && xs.len() < 4 {
        let hw = xs[0].numel() / (xs[0].shape()[0] * c);
        let n = xs[0].shape()[0];
        let d = rand_t(&[xs[0].numel()], 5);
        let x = xs[0].data_mut();
        for ch in 0..c {
            let idx: Vec<usize> = (0..n)
                .flat_map(|i| (0..hw).map(move |p| (i * c + ch) * hw + p))
                .collect();
            for (k, pair) in idx.chunks(2).enumerate() {
                let dev = 0.5 + d.data()[pair[0]].abs();
                let m = 0.1 * ch as f32;
                x[pair[0]] = m + dev;
                if let Some(&j) = pair.get(1) {
                    x[j] = m - dev;
                } else {
                    panic!("channel {ch} has an odd number of values (pair {k})");
                }
            }
        }
        xs[2] = xs[2].map(|b| 0.1 * b);
        return xs;
    }
    let mut tape = Tape::new();
    let v: Vec<Var> = xs[..3].iter().map(|t| tape.constant(t.clone())).collect();
    let (rm, rv) = running(c);
    let bn = if train {
        tape.batch_norm_train(v[0], v[1], v[2], 1e-5).unwrap().0
    } else {
        tape.batch_norm_eval(v[0], v[1], v[2], &rm, &rv, 1e-5)
            .unwrap()
    };
    let bn = tape.value(bn).unwrap().clone();
    let hw = xs[0].numel() / (xs[0].shape()[0] * c);
    let slot = if xs.len() == 4 { 3 } else { 0 };
    let (gamma, var) = (xs[1].clone(), rv);
    for (i, b) in bn.data().iter().enumerate() {
        let pre = b + if slot == 3 { xs[3].data()[i] } else { 0.0 };
        if pre.abs() < 0.02 {
            let ch = (i / hw) % c;
            // a residual moves `pre` one for one; x moves it by γ/√(σ² + ε)
            let slope = if slot == 3 {
                1.0
            } else {
                gamma.data()[ch] / (var.data()[ch] + 1e-5).sqrt()
            };
            let shift = if pre < 0.0 { -0.05 } else { 0.05 };
            xs[slot].data_mut()[i] += shift / slope;
        }
    }
    xs
}

const SHAPES: [&[usize]; 4] = [&[4, 3, 5, 5], &[2, 17, 7, 7], &[3, 2, 2, 9], &[6, 5]];

#[test]
fn gradients_match_finite_differences() {
    for (k, shape) in SHAPES.iter().enumerate() {
        for with_residual in [false, true] {
            for train in [true, false] {
                let xs = away_from_kink(inputs(shape, with_residual, 10 * k as u64), train);
                let name = format!("{shape:?} residual {with_residual} train {train}");
                // a small step: the ReLU's kink must not fall inside it
                let cfg = GradcheckConfig {
                    eps: 1e-3,
                    ..GradcheckConfig::default()
                };
                assert_grads_cfg(&name, &xs, |tp, v| run(tp, v, train, true), cfg);
            }
        }
    }
}

#[test]
fn reproduces_the_unfused_chain_bit_for_bit() {
    for (k, shape) in SHAPES.iter().enumerate() {
        for with_residual in [false, true] {
            for train in [true, false] {
                let xs = inputs(shape, with_residual, 100 + k as u64);
                let what = format!("{shape:?} residual {with_residual} train {train}");
                let (y, stats, grads) = value_and_grads(&xs, train, true);
                let (y0, stats0, grads0) = value_and_grads(&xs, train, false);
                assert!(y.data().contains(&0.0), "{what}: no ReLU cut");
                assert_same(&format!("{what}: output"), &y, &y0);
                for (i, (s, s0)) in stats.iter().zip(&stats0).enumerate() {
                    assert_same(&format!("{what}: statistic {i}"), s, s0);
                }
                for (i, (g, g0)) in grads.iter().zip(&grads0).enumerate() {
                    assert_same(&format!("{what}: gradient of input {i}"), g, g0);
                }
            }
        }
    }
}

#[test]
fn a_residual_without_gradient_gets_none_and_the_rest_are_unchanged() {
    let xs = inputs(&[2, 4, 3, 3], true, 7);
    let mut tape = Tape::new();
    let vars: Vec<Var> = xs[..3].iter().map(|t| tape.leaf(t.clone(), true)).collect();
    let r = tape.constant(xs[3].clone());
    let (y, _, _) = tape
        .batch_norm_relu_train(vars[0], vars[1], vars[2], Some(r), 1e-5)
        .unwrap();
    let loss = tape.sum_all(y).unwrap();
    let g = tape.backward(loss).unwrap();
    assert!(g.get(r).is_none());
    let (_, _, want) = value_and_grads(&xs, true, false);
    let (_, _, fused) = value_and_grads(&xs, true, true);
    assert_same("x gradient", &fused[0], &want[0]);
    assert_eq!(
        tape.ops()
            .filter(|(_, op)| op.name() == "BatchNormRelu")
            .count(),
        1
    );
}

#[test]
fn a_residual_of_another_shape_is_an_error_naming_both_shapes() {
    let xs = inputs(&[2, 4, 3, 3], false, 3);
    let mut tape = Tape::new();
    let vars: Vec<Var> = xs.iter().map(|t| tape.leaf(t.clone(), true)).collect();
    let r = tape.constant(Tensor::zeros([2, 4, 3, 2]));
    let e = tape
        .batch_norm_relu_train(vars[0], vars[1], vars[2], Some(r), 1e-5)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("batch_norm_relu") && e.contains("[2, 4, 3, 2]"),
        "{e}"
    );
    let (rm, rv) = running(4);
    let e = tape
        .batch_norm_relu_eval(vars[0], vars[1], vars[2], Some(r), &rm, &rv, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2, 4, 3, 3]"), "{e}");
}
