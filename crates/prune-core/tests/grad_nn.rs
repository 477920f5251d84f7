//! Neural-network ops: linear, matmul, conv2d, pooling, dropout,
//! log-softmax and cross-entropy.
mod common;
use common::*;
use prune_core::cpu::{Conv2dParams, PoolParams};
use prune_core::Tape;

#[test]
fn linear_hand_computed() {
    // y = x wᵀ + b with x=[1,2], w=[[3,4]], b=[5] → 16; dy/dw = x, dy/dx = w, dy/db = 1
    let mut tape = Tape::new();
    let x = tape.leaf(t(&[1, 2], &[1.0, 2.0]), true);
    let w = tape.leaf(t(&[1, 2], &[3.0, 4.0]), true);
    let b = tape.leaf(t(&[1], &[5.0]), true);
    let y = tape.linear(x, w, Some(b)).unwrap();
    let l = tape.sum_all(y).unwrap();
    assert_eq!(tape.value(l).unwrap().item().unwrap(), 16.0);
    let g = tape.backward(l).unwrap();
    assert_eq!(g.get(x).unwrap().data(), &[3.0, 4.0]);
    assert_eq!(g.get(w).unwrap().data(), &[1.0, 2.0]);
    assert_eq!(g.get(b).unwrap().data(), &[1.0]);
}

#[test]
fn linear_and_matmul_match_finite_differences() {
    let (x, w, b) = (rand_t(&[5, 7], 1), rand_t(&[3, 7], 2), rand_t(&[3], 3));
    assert_grads("linear", &[x.clone(), w.clone(), b], |tp, v| {
        tp.linear(v[0], v[1], Some(v[2]))
    });
    assert_grads("linear nobias", &[x, w], |tp, v| {
        tp.linear(v[0], v[1], None)
    });
    assert_grads(
        "matmul",
        &[rand_t(&[4, 6], 4), rand_t(&[6, 3], 5)],
        |tp, v| tp.matmul(v[0], v[1]),
    );
}

#[test]
fn conv2d_matches_finite_differences() {
    let cases = [
        ([2, 3, 6, 5], [4, 3, 3, 3], (1, 1), (1, 1), 1),
        ([1, 2, 7, 7], [3, 2, 3, 2], (2, 1), (0, 1), 1),
        ([2, 4, 5, 5], [4, 1, 3, 3], (1, 1), (1, 1), 4), // depthwise
        ([1, 4, 5, 4], [6, 2, 1, 1], (1, 2), (0, 0), 2), // grouped 1x1
    ];
    for (i, (xs, ws, stride, padding, groups)) in cases.into_iter().enumerate() {
        let p = Conv2dParams {
            stride,
            padding,
            groups,
        };
        let inputs = [
            rand_t(&xs, 10 + i as u64),
            rand_t(&ws, 20 + i as u64),
            rand_t(&[ws[0]], 30),
        ];
        assert_grads(&format!("conv2d case {i}"), &inputs, move |tp, v| {
            tp.conv2d(v[0], v[1], Some(v[2]), p)
        });
    }
}

#[test]
fn pooling_matches_finite_differences() {
    // distinct values so the max is unique and the max is differentiable
    let mut x = rand_t(&[2, 3, 6, 6], 40);
    for (i, v) in x.data_mut().iter_mut().enumerate() {
        *v += i as f32 * 1e-1;
    }
    let p = PoolParams {
        kernel: (2, 2),
        stride: (2, 2),
        padding: (0, 0),
    };
    assert_grads("max_pool", &[x.clone()], move |tp, v| {
        tp.max_pool2d(v[0], p)
    });
    let q = PoolParams {
        kernel: (3, 3),
        stride: (2, 2),
        padding: (1, 1),
    };
    assert_grads("avg_pool", &[x], move |tp, v| tp.avg_pool2d(v[0], q));
}

#[test]
fn softmax_and_cross_entropy() {
    let x = rand_t(&[4, 5], 50);
    assert_grads("log_softmax", &[x.clone()], |tp, v| tp.log_softmax(v[0]));
    assert_grads("cross_entropy", &[x], |tp, v| {
        tp.cross_entropy(v[0], &[0, 4, 2, 2])
    });
    // hand-computed: uniform logits over K classes give loss ln K
    let mut tape = Tape::new();
    let z = tape.leaf(t(&[1, 4], &[0.0; 4]), true);
    let l = tape.cross_entropy(z, &[1]).unwrap();
    assert!((tape.value(l).unwrap().item().unwrap() - 4f32.ln()).abs() < 1e-6);
    let g = tape.backward(l).unwrap();
    assert_eq!(g.get(z).unwrap().data(), &[0.25, -0.75, 0.25, 0.25]);
    let e = tape.cross_entropy(z, &[4]).unwrap_err().to_string();
    assert!(e.contains("label 4"), "{e}");
}

#[test]
fn dropout_scales_and_routes_gradient() {
    let mut tape = Tape::new();
    let x = tape.leaf(rand_t(&[1000], 60), true);
    let y = tape.dropout(x, 0.25, &mut rng(1)).unwrap();
    let (xv, yv) = (
        tape.value(x).unwrap().clone(),
        tape.value(y).unwrap().clone(),
    );
    let kept = yv.data().iter().filter(|v| **v != 0.0).count();
    assert!((700..800).contains(&kept), "kept {kept}");
    let l = tape.sum_all(y).unwrap();
    let g = tape.backward(l).unwrap();
    for ((gx, yx), xx) in g
        .get(x)
        .unwrap()
        .data()
        .iter()
        .zip(yv.data())
        .zip(xv.data())
    {
        if *yx == 0.0 {
            assert_eq!(*gx, 0.0);
        } else {
            assert!((gx - 4.0 / 3.0).abs() < 1e-6 && (yx - xx * 4.0 / 3.0).abs() < 1e-6);
        }
    }
    assert!(tape.dropout(x, 1.0, &mut rng(1)).is_err());
    // same seed, same mask
    let mut t2 = Tape::new();
    let x2 = t2.constant(xv);
    let y2 = t2.dropout(x2, 0.25, &mut rng(1)).unwrap();
    assert_eq!(t2.value(y2).unwrap(), &yv);
}

#[test]
fn no_grad_tape_records_nothing() {
    let w = rand_t(&[3, 4], 70);
    let mut tape = Tape::no_grad();
    let wv = tape.param(&w);
    let x = tape.constant(rand_t(&[2, 4], 71));
    let y = tape.linear(x, wv, None).unwrap();
    let l = tape.sum_all(y).unwrap();
    assert!(tape
        .ops()
        .all(|(_, op)| matches!(op, prune_core::Op::Leaf | prune_core::Op::NoGrad)));
    assert!(tape.backward(l).is_err());
}

#[test]
fn gradients_accumulate_on_shared_leaves() {
    // L = Σ (x·x) computed as mul(x, x): dL/dx = 2x
    let mut tape = Tape::new();
    let x = tape.leaf(t(&[3], &[1.0, -2.0, 3.0]), true);
    let y = tape.mul(x, x).unwrap();
    let l = tape.sum_all(y).unwrap();
    let g = tape.backward(l).unwrap();
    assert_eq!(g.get(x).unwrap().data(), &[2.0, -4.0, 6.0]);
    assert!(
        tape.backward(y).is_err(),
        "non-scalar loss must be rejected"
    );
}
