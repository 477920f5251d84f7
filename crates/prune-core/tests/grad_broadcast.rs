//! Broadcasting binary arithmetic: per-channel vectors, both-sided broadcast.
mod common;
use common::*;
use prune_core::Tape;

#[test]
fn mul_by_channel_vector_hand_computed() {
    // y = x * s with s per channel; dL/ds_c = Σ over n,h,w of x
    let mut tape = Tape::new();
    let x = tape.leaf(t(&[2, 2, 1, 1], &[1.0, 2.0, 3.0, 4.0]), true);
    let s = tape.leaf(t(&[1, 2, 1, 1], &[10.0, 100.0]), true);
    let y = tape.mul(x, s).unwrap();
    let l = tape.sum_all(y).unwrap();
    let g = tape.backward(l).unwrap();
    assert_eq!(g.get(s).unwrap().data(), &[4.0, 6.0]);
    assert_eq!(g.get(x).unwrap().data(), &[10.0, 100.0, 10.0, 100.0]);
}

#[test]
fn binary_ops_match_finite_differences() {
    let a = rand_t(&[2, 3, 4, 5], 1);
    let b = rand_t(&[1, 3, 1, 1], 2).map(|v| v + 2.0);
    assert_grads("add", &[a.clone(), b.clone()], |tp, v| tp.add(v[0], v[1]));
    assert_grads("sub", &[a.clone(), b.clone()], |tp, v| tp.sub(v[0], v[1]));
    assert_grads("mul", &[a.clone(), b.clone()], |tp, v| tp.mul(v[0], v[1]));
    assert_grads("div", &[a.clone(), b.clone()], |tp, v| tp.div(v[0], v[1]));
    // broadcasting on the left operand and on both sides
    let c = rand_t(&[3, 1], 3);
    let d = rand_t(&[1, 4], 4).map(|v| v + 2.0);
    assert_grads("div both", &[c.clone(), d.clone()], |tp, v| {
        tp.div(v[0], v[1])
    });
    assert_grads(
        "mul rank",
        &[rand_t(&[4], 5), rand_t(&[2, 3, 4], 6)],
        |tp, v| tp.mul(v[0], v[1]),
    );
}

#[test]
fn incompatible_shapes_are_errors_naming_both() {
    let mut tape = Tape::new();
    let a = tape.constant(rand_t(&[2, 3], 1));
    let b = tape.constant(rand_t(&[4], 2));
    let e = tape.add(a, b).unwrap_err().to_string();
    assert!(e.contains("[2, 3]") && e.contains("[4]"), "{e}");
}
