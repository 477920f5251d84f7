//! Elementwise unary ops: hand-computed gradients and finite differences.
mod common;
use common::*;
use prune_core::autograd::Unary;
use prune_core::Tape;

#[test]
fn relu_hand_computed() {
    let mut tape = Tape::new();
    let x = tape.leaf(t(&[4], &[-1.0, 0.5, 2.0, -0.1]), true);
    let y = tape.relu(x).unwrap();
    let s = tape.sum_all(y).unwrap();
    assert_eq!(tape.value(s).unwrap().item().unwrap(), 2.5);
    let g = tape.backward(s).unwrap();
    assert_eq!(g.get(x).unwrap().data(), &[0.0, 1.0, 1.0, 0.0]);
}

#[test]
fn square_and_exp_hand_computed() {
    // d/dx Σ (x² + eˣ) = 2x + eˣ
    let mut tape = Tape::new();
    let x = tape.leaf(t(&[2], &[1.0, -2.0]), true);
    let a = tape.square(x).unwrap();
    let b = tape.exp(x).unwrap();
    let c = tape.add(a, b).unwrap();
    let s = tape.sum_all(c).unwrap();
    let g = tape.backward(s).unwrap();
    let gx = g.get(x).unwrap().data().to_vec();
    assert!((gx[0] - (2.0 + 1f32.exp())).abs() < 1e-5);
    assert!((gx[1] - (-4.0 + (-2f32).exp())).abs() < 1e-5);
}

#[test]
fn unary_ops_match_finite_differences() {
    let ops = [
        Unary::Relu,
        Unary::Exp,
        Unary::Square,
        Unary::Abs,
        Unary::Neg,
        Unary::Clamp(-0.5, 0.5),
        Unary::Scale(-3.0),
        Unary::Shift(2.0),
    ];
    for (i, op) in ops.into_iter().enumerate() {
        // keep away from kinks (0 for relu/abs, ±0.5 for clamp)
        let mut x = rand_t(&[3, 5], 100 + i as u64);
        x.data_mut().iter_mut().for_each(|v| {
            if v.abs() < 0.1 || (v.abs() - 0.5).abs() < 0.05 {
                *v += 0.2
            }
        });
        assert_grads(&format!("{op:?}"), &[x], |tape, v| tape.unary(v[0], op));
    }
    // log and sqrt on positive inputs
    let x = rand_t(&[7], 3).map(|v| v.abs() + 0.5);
    assert_grads("log", &[x.clone()], |tape, v| tape.log(v[0]));
    assert_grads("sqrt", &[x], |tape, v| tape.sqrt(v[0]));
}

#[test]
fn clamp_rejects_inverted_bounds() {
    let mut tape = Tape::new();
    let x = tape.leaf(t(&[1], &[0.0]), true);
    let e = tape.clamp(x, 1.0, -1.0).unwrap_err();
    assert!(e.to_string().contains("clamp"), "{e}");
}
