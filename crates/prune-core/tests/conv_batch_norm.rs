//! The convolution + training-mode batch norm (+ residual + ReLU) pair of
//! `Tape::conv2d_batch_norm_train`, whose batch statistics are formed while
//! the convolution writes its output: the values, the statistics and every
//! gradient of the unfused chain `conv2d → batch_norm_train (→ add → relu)`
//! bit for bit, on every convolution path — the row-wise and 2-D Winograd
//! forms (whole planes, and bands of rows that leave planes to be read
//! again), the stride-2 phase kernel, im2col + GEMM, the direct kernel, a
//! depthwise layer — and whatever the thread count.
mod common;
use common::*;
use prune_core::{Tape, Tensor, Var};

/// A layer and whether its convolution has a bias.
type Case = (ConvCase, bool);

const CASES: [Case; 8] = [
    (([32, 16, 28, 28], [16, 16, 3, 3], 1, 1, 1), false), // row-wise Winograd
    (([40, 32, 14, 14], [32, 32, 3, 3], 1, 1, 1), false), // 2-D, bands of rows
    (([33, 64, 7, 7], [64, 64, 3, 3], 1, 1, 1), false),   // 2-D, whole planes
    (([4, 8, 9, 9], [12, 8, 3, 3], 2, 1, 1), false),      // stride 2
    (([6, 8, 10, 10], [16, 8, 1, 1], 2, 0, 1), true),     // 1×1, with a bias
    (([3, 5, 7, 7], [6, 5, 3, 3], 1, 1, 1), true),        // direct kernel
    (([3, 6, 11, 11], [6, 1, 3, 3], 1, 1, 6), false),     // depthwise
    (([1, 8, 48, 48], [16, 8, 3, 3], 1, 1, 1), false),    // one image, split by rows
];

/// How the batch norm ends: alone, with a ReLU, with a residual and ReLU.
#[derive(Clone, Copy, Debug)]
enum Tail {
    Bn,
    Relu,
    Residual,
}

/// `[x, w, γ, β, b?, residual?]`.
fn inputs(c: &Case, tail: Tail, seed: u64) -> Vec<Tensor> {
    let (layer, bias) = c;
    let (x_shape, w_shape) = (layer.0, layer.1);
    let cout = w_shape[0];
    let mut v = vec![
        rand_t(&x_shape, seed).map(|x| x + 0.2),
        rand_t(&w_shape, seed + 1),
        rand_t(&[cout], seed + 2).map(|g| g + 1.5),
        rand_t(&[cout], seed + 3),
    ];
    if *bias {
        v.push(rand_t(&[cout], seed + 4));
    }
    if let Tail::Residual = tail {
        v.push(rand_t(&conv_out_shape(layer), seed + 5));
    }
    v
}

/// Output, convolution output, batch statistics and every input's gradient
/// of `Σ y ⊙ R` for a fixed random `R`.
struct Run {
    y: Tensor,
    z: Tensor,
    stats: [Tensor; 2],
    grads: Vec<Tensor>,
}

fn run(c: &Case, tail: Tail, xs: &[Tensor], fused: bool) -> Run {
    let mut tape = Tape::new();
    let v: Vec<Var> = xs.iter().map(|t| tape.leaf(t.clone(), true)).collect();
    let b = c.1.then(|| v[4]);
    let residual = matches!(tail, Tail::Residual).then(|| v[v.len() - 1]);
    let relu = match tail {
        Tail::Bn => None,
        _ => Some(residual),
    };
    let (y, z, mean, var) = if fused {
        tape.conv2d_batch_norm_train(v[0], v[1], b, conv_params(&c.0), v[2], v[3], relu, 1e-5)
            .expect("fused")
    } else {
        let z = tape.conv2d(v[0], v[1], b, conv_params(&c.0)).expect("conv");
        let (y, mean, var) = match relu {
            Some(r) => tape.batch_norm_relu_train(z, v[2], v[3], r, 1e-5),
            None => tape.batch_norm_train(z, v[2], v[3], 1e-5),
        }
        .expect("bn");
        (y, z, mean, var)
    };
    let shape = tape.shape(y).expect("shape").to_vec();
    let r = tape.constant(rand_t(&shape, 99));
    let p = tape.mul(y, r).expect("mul");
    let l = tape.sum_all(p).expect("sum");
    let g = tape.backward(l).expect("backward");
    Run {
        y: tape.value(y).expect("y").clone(),
        z: tape.value(z).expect("z").clone(),
        stats: [mean, var],
        grads: v.iter().map(|&x| g.get(x).expect("grad").clone()).collect(),
    }
}

/// Equal bit patterns (`+0` and `−0` count as one: the sign of a zero a
/// ReLU outputs is not part of the contract).
fn same(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (i, (a, b)) in got.data().iter().zip(want.data()).enumerate() {
        assert!(
            a.to_bits() == b.to_bits() || (*a == 0.0 && *b == 0.0),
            "{what}: element {i} is {a:e}, unfused {b:e}"
        );
    }
}

fn same_runs(what: &str, got: &Run, want: &Run) {
    same(&format!("{what}: output"), &got.y, &want.y);
    same(&format!("{what}: convolution"), &got.z, &want.z);
    same(&format!("{what}: mean"), &got.stats[0], &want.stats[0]);
    same(&format!("{what}: variance"), &got.stats[1], &want.stats[1]);
    for (i, (a, b)) in got.grads.iter().zip(&want.grads).enumerate() {
        same(&format!("{what}: gradient {i}"), a, b);
    }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool")
}

#[test]
fn reproduces_the_unfused_chain_bit_for_bit() {
    // Two threads at least, so that the kernels that split a plane across
    // tasks do.
    pool(2).install(|| {
        for (k, c) in CASES.iter().enumerate() {
            for tail in [Tail::Bn, Tail::Relu, Tail::Residual] {
                let xs = inputs(c, tail, 10 * k as u64);
                let what = format!("case {k} {tail:?}");
                same_runs(&what, &run(c, tail, &xs, true), &run(c, tail, &xs, false));
            }
        }
    })
}

#[test]
fn the_thread_count_changes_no_bit() {
    for (k, c) in CASES.iter().enumerate().take(3) {
        let xs = inputs(c, Tail::Residual, 7 + k as u64);
        let one = pool(1).install(|| run(c, Tail::Residual, &xs, true));
        let three = pool(3).install(|| run(c, Tail::Residual, &xs, true));
        same_runs(&format!("case {k}, 3 threads vs 1"), &three, &one);
    }
}

#[test]
fn a_residual_of_another_shape_is_an_error_naming_both_shapes() {
    let c = &CASES[3];
    let xs = inputs(c, Tail::Bn, 3);
    let mut tape = Tape::new();
    let v: Vec<Var> = xs.iter().map(|t| tape.leaf(t.clone(), true)).collect();
    let r = tape.leaf(Tensor::zeros([4, 12, 9, 9]), true);
    let e = tape
        .conv2d_batch_norm_train(
            v[0],
            v[1],
            None,
            conv_params(&c.0),
            v[2],
            v[3],
            Some(Some(r)),
            1e-5,
        )
        .expect_err("shape");
    let msg = e.to_string();
    assert!(
        msg.contains("[4, 8, 9, 9]") && msg.contains("[4, 12, 9, 9]"),
        "{msg}"
    );
}
