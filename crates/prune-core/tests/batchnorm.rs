//! Batch norm: train/eval semantics and gradients.
mod common;
use common::*;
use prune_core::Tape;

#[test]
fn train_mode_normalizes_with_batch_statistics() {
    let x = rand_t(&[8, 3, 4, 4], 1).map(|v| 3.0 * v + 2.0);
    let mut tape = Tape::new();
    let xv = tape.constant(x.clone());
    let g = tape.constant(t(&[3], &[1.0, 1.0, 1.0]));
    let b = tape.constant(t(&[3], &[0.0, 0.0, 0.0]));
    let (y, mean, var) = tape.batch_norm_train(xv, g, b, 1e-5).unwrap();
    let yv = tape.value(y).unwrap();
    for c in 0..3 {
        let vals: Vec<f64> = (0..8)
            .flat_map(|n| (0..16).map(move |k| (n, k)))
            .map(|(n, k)| yv.data()[(n * 3 + c) * 16 + k] as f64)
            .collect();
        let m = vals.iter().sum::<f64>() / vals.len() as f64;
        let v = vals.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / vals.len() as f64;
        assert!(
            m.abs() < 1e-5 && (v - 1.0).abs() < 1e-3,
            "channel {c}: mean {m} var {v}"
        );
        // the returned variance is the unbiased batch variance of x
        let xs: Vec<f64> = (0..8)
            .flat_map(|n| (0..16).map(move |k| (n, k)))
            .map(|(n, k)| x.data()[(n * 3 + c) * 16 + k] as f64)
            .collect();
        let xm = xs.iter().sum::<f64>() / 128.0;
        let xv = xs.iter().map(|a| (a - xm) * (a - xm)).sum::<f64>() / 127.0;
        let (mean, var) = (mean.data()[c] as f64, var.data()[c] as f64);
        assert!((mean - xm).abs() < 1e-4 && (var - xv).abs() < 1e-3);
    }
}

#[test]
fn eval_mode_uses_running_statistics() {
    let mut tape = Tape::new();
    let x = tape.constant(t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]));
    let g = tape.constant(t(&[2], &[2.0, 1.0]));
    let b = tape.constant(t(&[2], &[0.5, 0.0]));
    let y = tape
        .batch_norm_eval(x, g, b, &t(&[2], &[1.0, 0.0]), &t(&[2], &[4.0, 1.0]), 0.0)
        .unwrap();
    // (x - μ)/σ·γ + β
    assert_eq!(tape.value(y).unwrap().data(), &[0.5, 2.0, 2.5, 4.0]);
}

#[test]
fn gradients_match_finite_differences() {
    let x = rand_t(&[4, 3, 2, 2], 2);
    let g = rand_t(&[3], 3).map(|v| v + 1.5);
    let b = rand_t(&[3], 4);
    assert_grads("bn2d train", &[x.clone(), g.clone(), b.clone()], |tp, v| {
        Ok(tp.batch_norm_train(v[0], v[1], v[2], 1e-5)?.0)
    });
    let x1 = rand_t(&[6, 3], 5);
    assert_grads(
        "bn1d train",
        &[x1.clone(), g.clone(), b.clone()],
        |tp, v| Ok(tp.batch_norm_train(v[0], v[1], v[2], 1e-5)?.0),
    );
    let (rm, rv) = (t(&[3], &[0.1, -0.2, 0.3]), t(&[3], &[0.5, 1.5, 2.0]));
    assert_grads("bn eval", &[x1, g, b], |tp, v| {
        tp.batch_norm_eval(v[0], v[1], v[2], &rm, &rv, 1e-5)
    });
}
