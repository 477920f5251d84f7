//! Reductions and shape ops: sum/mean, reshape, concat, index-select.
mod common;
use common::*;
use prune_core::Tape;

#[test]
fn mean_hand_computed() {
    let mut tape = Tape::new();
    let x = tape.leaf(t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]), true);
    let m = tape.mean(x, &[1], false).unwrap();
    assert_eq!(tape.value(m).unwrap().data(), &[1.5, 3.5]);
    let l = tape.sum_all(m).unwrap();
    let g = tape.backward(l).unwrap();
    assert_eq!(g.get(x).unwrap().data(), &[0.5; 4]);
}

#[test]
fn reductions_match_finite_differences() {
    let x = rand_t(&[2, 3, 4], 11);
    for axes in [vec![0], vec![1], vec![2], vec![0, 2], vec![0, 1, 2]] {
        for keepdim in [false, true] {
            let a = axes.clone();
            assert_grads("sum", &[x.clone()], move |tp, v| tp.sum(v[0], &a, keepdim));
            let a = axes.clone();
            assert_grads("mean", &[x.clone()], move |tp, v| {
                tp.mean(v[0], &a, keepdim)
            });
        }
    }
    assert_grads("gap", &[rand_t(&[2, 3, 4, 5], 12)], |tp, v| {
        tp.global_avg_pool(v[0])
    });
}

#[test]
fn shape_ops_match_finite_differences() {
    let x = rand_t(&[2, 3, 2, 2], 21);
    assert_grads("flatten", &[x.clone()], |tp, v| tp.flatten(v[0]));
    assert_grads("reshape", &[x.clone()], |tp, v| tp.reshape(v[0], &[6, 4]));
    let y = rand_t(&[2, 1, 2, 2], 22);
    assert_grads("concat", &[x.clone(), y], |tp, v| {
        tp.concat(&[v[0], v[1]], 1)
    });
    assert_grads("index_select", &[x.clone()], |tp, v| {
        tp.index_select(v[0], 1, &[2, 0, 2])
    });
    assert_grads("index_select last", &[x], |tp, v| {
        tp.index_select(v[0], 3, &[1])
    });
}

#[test]
fn concat_values_and_errors() {
    let mut tape = Tape::new();
    let a = tape.constant(t(&[1, 2, 1], &[1.0, 2.0]));
    let b = tape.constant(t(&[1, 1, 1], &[3.0]));
    let c = tape.concat(&[a, b], 1).unwrap();
    assert_eq!(tape.value(c).unwrap().data(), &[1.0, 2.0, 3.0]);
    let d = tape.constant(t(&[2, 1, 1], &[3.0, 4.0]));
    let e = tape.concat(&[a, d], 1).unwrap_err().to_string();
    assert!(e.contains("[1, 2, 1]") && e.contains("[2, 1, 1]"), "{e}");
    let e = tape.index_select(a, 1, &[5]).unwrap_err().to_string();
    assert!(e.contains("index 5"), "{e}");
    let e = tape.reshape(a, &[3]).unwrap_err().to_string();
    assert!(e.contains("[1, 2, 1]") && e.contains("[3]"), "{e}");
}
