//! Tests of batch normalisation against direct f64 formulas and finite
//! differences.

use super::batchnorm::{
    batch_norm_eval, batch_norm_eval_backward, batch_norm_train, batch_norm_train_backward, BnSaved,
};
use super::test_util::{
    assert_close, assert_grad_close, dot_loss, fd_grad, rand_tensor, rand_vec, rng,
};
use crate::error::CoreError;
use crate::tensor::Tensor;

const SHAPES: &[&[usize]] = &[&[6, 3], &[2, 3, 4, 5], &[3, 2, 1, 3], &[1, 4, 3, 3]];

/// Channel of flat index `i` and values per channel.
fn channel_of(shape: &[usize], i: usize) -> usize {
    let hw: usize = shape[2..].iter().product();
    (i / hw) % shape[1]
}

/// Per-channel (mean, biased variance) in f64.
fn stats(x: &Tensor) -> Vec<(f64, f64)> {
    let c = x.shape()[1];
    let mut sum = vec![(0.0f64, 0.0f64, 0usize); c];
    for (i, &v) in x.data().iter().enumerate() {
        let s = &mut sum[channel_of(x.shape(), i)];
        s.0 += v as f64;
        s.2 += 1;
    }
    let means: Vec<f64> = sum.iter().map(|s| s.0 / s.2 as f64).collect();
    for (i, &v) in x.data().iter().enumerate() {
        let ch = channel_of(x.shape(), i);
        sum[ch].1 += (v as f64 - means[ch]).powi(2);
    }
    sum.iter()
        .zip(&means)
        .map(|(s, &m)| (m, s.1 / s.2 as f64))
        .collect()
}

fn params(c: usize, seed: u64) -> (Tensor, Tensor) {
    let mut r = rng(seed);
    let gamma =
        Tensor::from_vec([c], rand_vec(c, &mut r).iter().map(|v| v + 1.5).collect()).unwrap();
    let beta = rand_tensor(&[c], &mut r);
    (gamma, beta)
}

#[test]
fn train_forward_matches_formula() {
    for (i, shape) in SHAPES.iter().enumerate() {
        let x = rand_tensor(shape, &mut rng(i as u64));
        let (gamma, beta) = params(shape[1], 10 + i as u64);
        let eps = 1e-5;
        let (y, saved, unbiased) = batch_norm_train(&x, &gamma, &beta, eps).unwrap();
        let st = stats(&x);
        let m = (x.numel() / shape[1]) as f64;
        let want: Vec<f64> = x
            .data()
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let ch = channel_of(shape, k);
                let (mu, var) = st[ch];
                gamma.data()[ch] as f64 * (v as f64 - mu) / (var + eps as f64).sqrt()
                    + beta.data()[ch] as f64
            })
            .collect();
        assert_close(y.data(), &want, 1e-5, 1e-5, &format!("y {shape:?}"));
        let mean: Vec<f64> = st.iter().map(|s| s.0).collect();
        let inv: Vec<f64> = st.iter().map(|s| 1.0 / (s.1 + eps as f64).sqrt()).collect();
        let unb: Vec<f64> = st.iter().map(|s| s.1 * m / (m - 1.0)).collect();
        assert_close(&saved.mean, &mean, 1e-6, 1e-6, "mean");
        assert_close(&saved.inv_std, &inv, 1e-5, 1e-6, "inv_std");
        assert_close(&unbiased, &unb, 1e-5, 1e-6, "unbiased variance");
    }
}

#[test]
fn train_output_is_normalised() {
    // With gamma = 1 and beta = 0 each channel has mean 0 and variance ~1.
    let x = Tensor::from_vec(
        [4, 2, 3, 3],
        (0..72).map(|i| (i * i % 17) as f32 * 3.0 + 10.0).collect(),
    )
    .unwrap();
    let (y, _, _) = batch_norm_train(&x, &Tensor::ones([2]), &Tensor::zeros([2]), 0.0).unwrap();
    for (mu, var) in stats(&y) {
        assert!(mu.abs() < 1e-5 && (var - 1.0).abs() < 1e-4, "{mu} {var}");
    }
}

#[test]
fn eval_forward_matches_formula() {
    for (i, shape) in SHAPES.iter().enumerate() {
        let x = rand_tensor(shape, &mut rng(20 + i as u64));
        let c = shape[1];
        let (gamma, beta) = params(c, 30 + i as u64);
        let rm = rand_vec(c, &mut rng(40 + i as u64));
        let rv: Vec<f32> = rand_vec(c, &mut rng(50 + i as u64))
            .iter()
            .map(|v| v.abs() + 0.5)
            .collect();
        let y = batch_norm_eval(&x, &gamma, &beta, &rm, &rv, 1e-3).unwrap();
        let want: Vec<f64> = x
            .data()
            .iter()
            .enumerate()
            .map(|(k, &v)| {
                let ch = channel_of(shape, k);
                gamma.data()[ch] as f64 * (v as f64 - rm[ch] as f64) / (rv[ch] as f64 + 1e-3).sqrt()
                    + beta.data()[ch] as f64
            })
            .collect();
        assert_close(y.data(), &want, 1e-5, 1e-5, &format!("{shape:?}"));
    }
}

/// Finite-difference check of a layer `f(x, gamma, beta)` against grads.
fn check_fd(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    grads: (&[f32], &[f32], &[f32]),
    r: &[f32],
    f: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor,
    what: &str,
) {
    let t = |like: &Tensor, v: &[f32]| Tensor::from_vec(like.shape().to_vec(), v.to_vec()).unwrap();
    let eps = 1e-2;
    let fx = fd_grad(x.data(), eps, |v| {
        dot_loss(f(&t(x, v), gamma, beta).data(), r)
    });
    let fg = fd_grad(gamma.data(), eps, |v| {
        dot_loss(f(x, &t(gamma, v), beta).data(), r)
    });
    let fb = fd_grad(beta.data(), eps, |v| {
        dot_loss(f(x, gamma, &t(beta, v)).data(), r)
    });
    assert_grad_close(grads.0, &fx, 1e-3, 1e-3, &format!("dx {what}"));
    assert_grad_close(grads.1, &fg, 1e-3, 1e-3, &format!("dgamma {what}"));
    assert_grad_close(grads.2, &fb, 1e-3, 1e-3, &format!("dbeta {what}"));
}

#[test]
fn train_backward_matches_finite_differences() {
    for (i, shape) in SHAPES.iter().enumerate() {
        let x = rand_tensor(shape, &mut rng(60 + i as u64));
        let (gamma, beta) = params(shape[1], 70 + i as u64);
        let eps = 1e-3;
        let (y, saved, _) = batch_norm_train(&x, &gamma, &beta, eps).unwrap();
        let r = rand_vec(y.numel(), &mut rng(80 + i as u64));
        let dy = Tensor::from_vec(y.shape().to_vec(), r.clone()).unwrap();
        let g = batch_norm_train_backward(&x, &gamma, &saved, &dy).unwrap();
        check_fd(
            &x,
            &gamma,
            &beta,
            (g.x.data(), g.gamma.data(), g.beta.data()),
            &r,
            |x, gm, bt| batch_norm_train(x, gm, bt, eps).unwrap().0,
            &format!("{shape:?}"),
        );
    }
}

#[test]
fn eval_backward_matches_finite_differences() {
    for (i, shape) in SHAPES.iter().enumerate() {
        let x = rand_tensor(shape, &mut rng(90 + i as u64));
        let c = shape[1];
        let (gamma, beta) = params(c, 100 + i as u64);
        let rm = rand_vec(c, &mut rng(110 + i as u64));
        let rv: Vec<f32> = rand_vec(c, &mut rng(120 + i as u64))
            .iter()
            .map(|v| v.abs() + 0.5)
            .collect();
        let eps = 1e-5;
        let y = batch_norm_eval(&x, &gamma, &beta, &rm, &rv, eps).unwrap();
        let r = rand_vec(y.numel(), &mut rng(130 + i as u64));
        let dy = Tensor::from_vec(y.shape().to_vec(), r.clone()).unwrap();
        let g = batch_norm_eval_backward(&gamma, &rv, eps, &x, &rm, &dy).unwrap();
        check_fd(
            &x,
            &gamma,
            &beta,
            (g.x.data(), g.gamma.data(), g.beta.data()),
            &r,
            |x, gm, bt| batch_norm_eval(x, gm, bt, &rm, &rv, eps).unwrap(),
            &format!("{shape:?}"),
        );
    }
}

#[test]
fn shape_errors_name_both_shapes() {
    let x = Tensor::zeros([4, 3, 2, 2]);
    let (g3, b3) = (Tensor::ones([3]), Tensor::zeros([3]));
    let g2 = Tensor::ones([2]);
    let e = batch_norm_train(&x, &g2, &b3, 1e-5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[4, 3, 2, 2]") && e.contains("[2]"), "{e}");
    let e = batch_norm_eval(&x, &g3, &b3, &[0.0; 3], &[1.0; 4], 1e-5)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[4, 3, 2, 2]") && e.contains("[4]"), "{e}");
    let saved = BnSaved {
        mean: vec![0.0; 3],
        inv_std: vec![1.0; 3],
    };
    let e = batch_norm_train_backward(&x, &g3, &saved, &Tensor::zeros([4, 3, 2, 1]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[4, 3, 2, 2]") && e.contains("[4, 3, 2, 1]"),
        "{e}"
    );
    let short = BnSaved {
        mean: vec![0.0; 2],
        inv_std: vec![1.0; 3],
    };
    assert!(batch_norm_train_backward(&x, &g3, &short, &x).is_err());
    let e = batch_norm_eval_backward(&g3, &[1.0; 3], 1e-5, &x, &[0.0; 3], &Tensor::zeros([4, 3]))
        .unwrap_err();
    assert!(matches!(e, CoreError::ShapeMismatch { .. }));

    assert!(matches!(
        batch_norm_train(&Tensor::zeros([4, 3, 2]), &g3, &b3, 1e-5),
        Err(CoreError::BadShape { .. })
    ));
    assert!(matches!(
        batch_norm_train(&Tensor::zeros([1, 3]), &g3, &b3, 1e-5),
        Err(CoreError::BadShape { .. })
    ));
    assert!(matches!(
        batch_norm_train(&x, &g3, &b3, -1.0),
        Err(CoreError::InvalidArgument { .. })
    ));
    assert!(matches!(
        batch_norm_train(&x, &g3, &b3, f32::NAN),
        Err(CoreError::InvalidArgument { .. })
    ));
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let x = rand_tensor(&[7, 5, 6, 6], &mut rng(140));
    let (gamma, beta) = params(5, 141);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let (y, saved, var) = batch_norm_train(&x, &gamma, &beta, 1e-5).unwrap();
            let g = batch_norm_train_backward(&x, &gamma, &saved, &y).unwrap();
            (y, saved, var, g)
        })
    };
    let one = run(1);
    assert!(run(3) == one);
}

#[test]
fn train_statistics_exact_for_odd_planes_and_a_large_offset() {
    // 17 channels of 7×7 planes (an odd, pruned-looking shape), values far
    // from zero: the per-plane moments combined with Chan's formula must
    // match the two-pass f64 reference.
    let shape = [5usize, 17, 7, 7];
    let mut x = rand_tensor(&shape, &mut rng(150));
    x.data_mut().iter_mut().for_each(|v| *v += 1000.0);
    let (gamma, beta) = params(17, 151);
    let (_, saved, unbiased) = batch_norm_train(&x, &gamma, &beta, 1e-5).unwrap();
    let st = stats(&x);
    let m = (x.numel() / 17) as f64;
    let mean: Vec<f64> = st.iter().map(|s| s.0).collect();
    let unb: Vec<f64> = st.iter().map(|s| s.1 * m / (m - 1.0)).collect();
    assert_close(&saved.mean, &mean, 1e-7, 1e-7, "mean");
    assert_close(&unbiased, &unb, 1e-4, 1e-6, "unbiased variance");
}

/// No channels: empty statistics and gradients, not a panic.
#[test]
fn zero_channels_give_empty_results() {
    let x = Tensor::zeros([2, 0, 3, 3]);
    let p = Tensor::zeros([0]);
    let (y, saved, _) = batch_norm_train(&x, &p, &p, 1e-5).unwrap();
    assert_eq!(y.shape(), [2, 0, 3, 3]);
    let g = batch_norm_train_backward(&x, &p, &saved, &x).unwrap();
    assert_eq!(
        (g.x.shape(), g.gamma.shape()),
        ([2, 0, 3, 3].as_slice(), [0].as_slice())
    );
}
