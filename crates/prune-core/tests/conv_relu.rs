//! The fused convolution (+ residual) + ReLU node: gradients against finite
//! differences, and values and gradients against the unfused chain
//! `conv2d → add → relu`, which it reproduces bit for bit on every
//! convolution path (direct stride-1, im2col + GEMM, 1×1, depthwise, a
//! single image split by channels).
mod common;
use common::*;
use prune_core::gradcheck::GradcheckConfig;
use prune_core::{Result, Tape, Tensor, Var};

type Case = ConvCase;

const CASES: [Case; 7] = [
    ([3, 5, 7, 7], [6, 5, 3, 3], 1, 1, 1), // direct stride-1 kernel
    ([1, 5, 9, 9], [9, 5, 3, 3], 1, 1, 1), // one image, split by channels
    ([2, 4, 8, 8], [6, 4, 3, 3], 2, 1, 1), // stride 2: im2col + GEMM
    ([2, 6, 5, 5], [3, 6, 1, 1], 1, 0, 1), // 1×1: GEMM on the planes
    ([2, 4, 6, 6], [4, 1, 3, 3], 1, 1, 4), // depthwise
    ([2, 4, 6, 6], [6, 2, 3, 3], 1, 1, 2), // grouped
    ([1, 16, 28, 28], [32, 16, 3, 3], 2, 1, 1), // one image, GEMM split by columns
];

/// `[x, w, b?, residual?]`.
fn inputs(c: &Case, bias: bool, residual: bool, seed: u64) -> Vec<Tensor> {
    let mut v = vec![rand_t(&c.0, seed), rand_t(&c.1, seed + 1)];
    if bias {
        v.push(rand_t(&[c.1[0]], seed + 2));
    }
    if residual {
        v.push(rand_t(&conv_out_shape(c), seed + 3));
    }
    v
}

fn run(tape: &mut Tape, v: &[Var], c: &Case, bias: bool, fused: bool) -> Result<Var> {
    let b = bias.then(|| v[2]);
    let r = v.get(if bias { 3 } else { 2 }).copied();
    if fused {
        return tape.conv2d_relu(v[0], v[1], b, conv_params(c), r);
    }
    let y = tape.conv2d(v[0], v[1], b, conv_params(c))?;
    let pre = match r {
        Some(r) => tape.add(y, r)?,
        None => y,
    };
    tape.relu(pre)
}

fn value_and_grads(xs: &[Tensor], c: &Case, bias: bool, fused: bool) -> (Tensor, Vec<Tensor>) {
    let mut tape = Tape::new();
    let vars: Vec<Var> = xs.iter().map(|t| tape.leaf(t.clone(), true)).collect();
    let y = run(&mut tape, &vars, c, bias, fused).unwrap();
    let value = tape.value(y).unwrap().clone();
    let r = tape.constant(rand_t(value.shape(), 77));
    let prod = tape.mul(y, r).unwrap();
    let loss = tape.sum_all(prod).unwrap();
    let g = tape.backward(loss).unwrap();
    (
        value,
        vars.iter().map(|v| g.get(*v).unwrap().clone()).collect(),
    )
}

fn same(what: &str, a: &Tensor, b: &Tensor) {
    assert_eq!(a.shape(), b.shape(), "{what}");
    for (i, (u, v)) in a.data().iter().zip(b.data()).enumerate() {
        assert!(
            u.to_bits() == v.to_bits() || (*u == 0.0 && *v == 0.0),
            "{what}: element {i}: fused {u:e}, unfused {v:e}"
        );
    }
}

#[test]
fn reproduces_the_unfused_chain_bit_for_bit() {
    for (k, c) in CASES.iter().enumerate() {
        for (bias, residual) in [(true, false), (false, true), (true, true)] {
            let xs = inputs(c, bias, residual, 20 * k as u64);
            let what = format!("{c:?} bias {bias} residual {residual}");
            let (y, g) = value_and_grads(&xs, c, bias, true);
            let (y0, g0) = value_and_grads(&xs, c, bias, false);
            assert!(y.data().contains(&0.0), "{what}: no ReLU cut");
            same(&format!("{what}: output"), &y, &y0);
            for (i, (a, b)) in g.iter().zip(&g0).enumerate() {
                same(&format!("{what}: gradient of input {i}"), a, b);
            }
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    // a small step and a residual that keeps every pre-activation at least
    // 0.02 from the ReLU's kink, where central differences straddle it
    for (k, c) in CASES.iter().enumerate() {
        let mut xs = inputs(c, true, true, 50 + k as u64);
        let mut tape = Tape::new();
        let v: Vec<Var> = xs[..3].iter().map(|t| tape.constant(t.clone())).collect();
        let y = tape.conv2d(v[0], v[1], Some(v[2]), conv_params(c)).unwrap();
        let y = tape.value(y).unwrap().clone();
        for (r, a) in xs[3].data_mut().iter_mut().zip(y.data()) {
            let pre = a + *r;
            if pre.abs() < 0.02 {
                *r += if pre < 0.0 { -0.05 } else { 0.05 };
            }
        }
        let cfg = GradcheckConfig {
            eps: 1e-3,
            ..GradcheckConfig::default()
        };
        let name = format!("{c:?}");
        assert_grads_cfg(&name, &xs, |tp, v| run(tp, v, c, true, true), cfg);
    }
}

#[test]
fn a_residual_of_another_shape_is_an_error() {
    let c = &CASES[0];
    let xs = inputs(c, false, false, 1);
    let mut tape = Tape::new();
    let x = tape.leaf(xs[0].clone(), true);
    let w = tape.leaf(xs[1].clone(), true);
    let r = tape.constant(Tensor::zeros([3, 6, 7, 6]));
    let e = tape
        .conv2d_relu(x, w, None, conv_params(c), Some(r))
        .unwrap_err()
        .to_string();
    assert!(e.contains("residual") && e.contains("[3, 6, 7, 6]"), "{e}");
}
