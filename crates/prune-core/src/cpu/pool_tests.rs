//! Tests of pooling against direct loops and finite differences.

use super::pool::{
    avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward, PoolParams,
};
use super::test_util::{assert_close, assert_grad_close, dot_loss, fd_grad, rand_vec, rng};
use crate::error::CoreError;
use crate::tensor::Tensor;
use rand::seq::SliceRandom;

/// `(shape, kernel, stride, padding)`.
type Case = ([usize; 4], (usize, usize), (usize, usize), (usize, usize));

const CASES: &[Case] = &[
    ([2, 3, 8, 8], (2, 2), (2, 2), (0, 0)),
    ([1, 2, 7, 9], (3, 3), (2, 2), (1, 1)),
    ([2, 1, 5, 6], (3, 2), (1, 2), (1, 0)),
    ([3, 2, 6, 5], (2, 3), (1, 1), (0, 1)),
    ([1, 1, 4, 4], (4, 4), (1, 1), (2, 2)),
    ([2, 2, 9, 7], (3, 3), (3, 2), (0, 1)),
];

fn params(c: &Case) -> PoolParams {
    PoolParams {
        kernel: c.1,
        stride: c.2,
        padding: c.3,
    }
}

fn out_hw(c: &Case) -> (usize, usize) {
    let [_, _, h, w] = c.0;
    (
        (h + 2 * c.3 .0 - c.1 .0) / c.2 .0 + 1,
        (w + 2 * c.3 .1 - c.1 .1) / c.2 .1 + 1,
    )
}

/// Calls `f(plane, out_index, in_index)` for every in-image window element.
fn for_each_window_elem(c: &Case, mut f: impl FnMut(usize, usize, usize)) {
    let [n, ch, h, w] = c.0;
    let (oh, ow) = out_hw(c);
    for plane in 0..n * ch {
        for y in 0..oh {
            for x in 0..ow {
                for ki in 0..c.1 .0 {
                    for kj in 0..c.1 .1 {
                        let ih = (y * c.2 .0 + ki) as isize - c.3 .0 as isize;
                        let iw = (x * c.2 .1 + kj) as isize - c.3 .1 as isize;
                        if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < w {
                            f(plane, y * ow + x, ih as usize * w + iw as usize);
                        }
                    }
                }
            }
        }
    }
}

/// Distinct values (a shuffled grid 0.1 apart) so that a finite-difference
/// step of 1e-2 never changes which element wins a window.
fn distinct(shape: [usize; 4], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - n as f32 * 0.05).collect();
    v.shuffle(&mut rng(seed));
    Tensor::from_vec(shape.to_vec(), v).unwrap()
}

#[test]
fn max_pool_matches_direct_loops() {
    for (i, c) in CASES.iter().enumerate() {
        let x = Tensor::from_vec(
            c.0.to_vec(),
            rand_vec(c.0.iter().product(), &mut rng(i as u64)),
        )
        .unwrap();
        let (y, arg) = max_pool2d_forward(&x, &params(c)).unwrap();
        let (oh, ow) = out_hw(c);
        assert_eq!(y.shape(), &[c.0[0], c.0[1], oh, ow]);
        let hw = c.0[2] * c.0[3];
        let mut best = vec![(f32::NEG_INFINITY, 0usize); y.numel()];
        for_each_window_elem(c, |plane, o, inp| {
            let v = x.data()[plane * hw + inp];
            let b = &mut best[plane * oh * ow + o];
            if v > b.0 {
                *b = (v, inp);
            }
        });
        for (k, &(v, at)) in best.iter().enumerate() {
            assert_eq!(y.data()[k], v, "{c:?} output {k}");
            assert_eq!(arg[k] as usize, at, "{c:?} argmax {k}");
        }
    }
}

#[test]
fn max_pool_backward_matches_finite_differences() {
    for (i, c) in CASES.iter().enumerate() {
        let x = distinct(c.0, i as u64);
        let p = params(c);
        let (y, arg) = max_pool2d_forward(&x, &p).unwrap();
        let r = rand_vec(y.numel(), &mut rng(50 + i as u64));
        let dy = Tensor::from_vec(y.shape().to_vec(), r.clone()).unwrap();
        let dx = max_pool2d_backward(&dy, &arg, x.shape()).unwrap();
        let fd = fd_grad(x.data(), 1e-2, |v| {
            let xt = Tensor::from_vec(x.shape().to_vec(), v.to_vec()).unwrap();
            dot_loss(max_pool2d_forward(&xt, &p).unwrap().0.data(), &r)
        });
        assert_grad_close(dx.data(), &fd, 1e-3, 1e-3, &format!("{c:?}"));
    }
}

#[test]
fn max_pool_propagates_nan_and_prefers_first_maximum() {
    let p = PoolParams {
        kernel: (2, 2),
        stride: (2, 2),
        padding: (0, 0),
    };
    let x = Tensor::from_vec(
        [1, 1, 2, 4],
        vec![1.0, 3.0, f32::NAN, 0.0, 3.0, 2.0, 5.0, 1.0],
    )
    .unwrap();
    let (y, arg) = max_pool2d_forward(&x, &p).unwrap();
    assert_eq!(y.data()[0], 3.0);
    assert_eq!(arg[0], 1);
    assert!(y.data()[1].is_nan());
    assert_eq!(arg[1], 2);
}

#[test]
fn max_pool_nan_and_ties_in_vector_and_general_paths() {
    // Rows wide enough for the 4-window vector path plus a tail, with NaNs
    // and ties, through the 2x2/2 path and the general path (3x3/2, pad 1).
    let mut r = rng(7);
    let mut v: Vec<f32> = rand_vec(2 * 6 * 14, &mut r)
        .iter()
        .map(|x| (x * 3.0).round())
        .collect();
    for &i in &[3usize, 20, 31, 60, 61, 100, 150] {
        v[i] = f32::NAN;
    }
    let x = Tensor::from_vec([2, 1, 6, 14], v).unwrap();
    for p in [
        PoolParams {
            kernel: (2, 2),
            stride: (2, 2),
            padding: (0, 0),
        },
        PoolParams {
            kernel: (3, 3),
            stride: (2, 2),
            padding: (1, 1),
        },
        PoolParams {
            kernel: (2, 3),
            stride: (1, 3),
            padding: (1, 0),
        },
    ] {
        let c: Case = ([2, 1, 6, 14], p.kernel, p.stride, p.padding);
        let (y, arg) = max_pool2d_forward(&x, &p).unwrap();
        let (oh, ow) = out_hw(&c);
        let mut best = vec![(f32::NEG_INFINITY, usize::MAX); y.numel()];
        for_each_window_elem(&c, |plane, o, inp| {
            let val = x.data()[plane * 84 + inp];
            let b = &mut best[plane * oh * ow + o];
            if b.1 == usize::MAX {
                b.1 = inp; // the first in-image element of the window
            }
            if val > b.0 || (val.is_nan() && !b.0.is_nan()) {
                *b = (val, inp);
            }
        });
        for (k, &(val, at)) in best.iter().enumerate() {
            let got = y.data()[k];
            assert!(
                got == val || (got.is_nan() && val.is_nan()),
                "{p:?} output {k}: {got} vs {val}"
            );
            assert_eq!(arg[k] as usize, at, "{p:?} argmax {k}");
        }
    }
}

#[test]
fn avg_pool_matches_direct_loops_and_finite_differences() {
    for (i, c) in CASES.iter().enumerate() {
        let x = Tensor::from_vec(
            c.0.to_vec(),
            rand_vec(c.0.iter().product(), &mut rng(i as u64)),
        )
        .unwrap();
        let p = params(c);
        let y = avg_pool2d_forward(&x, &p).unwrap();
        let (oh, ow) = out_hw(c);
        let hw = c.0[2] * c.0[3];
        let area = (c.1 .0 * c.1 .1) as f64;
        let mut want = vec![0.0f64; y.numel()];
        for_each_window_elem(c, |plane, o, inp| {
            want[plane * oh * ow + o] += x.data()[plane * hw + inp] as f64 / area;
        });
        assert_close(y.data(), &want, 1e-5, 1e-6, &format!("{c:?}"));

        let r = rand_vec(y.numel(), &mut rng(80 + i as u64));
        let dy = Tensor::from_vec(y.shape().to_vec(), r.clone()).unwrap();
        let dx = avg_pool2d_backward(&dy, x.shape(), &p).unwrap();
        let fd = fd_grad(x.data(), 1e-2, |v| {
            let xt = Tensor::from_vec(x.shape().to_vec(), v.to_vec()).unwrap();
            dot_loss(avg_pool2d_forward(&xt, &p).unwrap().data(), &r)
        });
        assert_grad_close(dx.data(), &fd, 1e-3, 1e-3, &format!("{c:?}"));
    }
}

#[test]
fn errors_are_reported_not_panicked() {
    let p = PoolParams {
        kernel: (2, 2),
        stride: (2, 2),
        padding: (0, 0),
    };
    let x = Tensor::zeros([1, 2, 4, 4]);
    assert!(matches!(
        max_pool2d_forward(&Tensor::zeros([2, 4, 4]), &p),
        Err(CoreError::BadShape { .. })
    ));
    for bad in [
        PoolParams {
            stride: (0, 2),
            ..p
        },
        PoolParams {
            kernel: (0, 2),
            ..p
        },
        PoolParams {
            padding: (2, 0),
            ..p
        },
    ] {
        assert!(
            matches!(
                avg_pool2d_forward(&x, &bad),
                Err(CoreError::InvalidArgument { .. })
            ),
            "{bad:?}"
        );
    }
    let big = PoolParams {
        kernel: (5, 5),
        stride: (1, 1),
        padding: (0, 0),
    };
    assert!(matches!(
        max_pool2d_forward(&x, &big),
        Err(CoreError::BadShape { .. })
    ));
    assert!(max_pool2d_forward(&Tensor::zeros([1, 1, 0, 4]), &p).is_err());

    let (y, arg) = max_pool2d_forward(&x, &p).unwrap();
    let e = max_pool2d_backward(&y, &arg[1..], x.shape()).unwrap_err();
    assert!(matches!(e, CoreError::InvalidArgument { .. }));
    let mut bad_arg = arg.clone();
    bad_arg[0] = 16;
    assert!(max_pool2d_backward(&y, &bad_arg, x.shape()).is_err());
    let e = max_pool2d_backward(&y, &arg, &[1, 3, 4, 4])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[1, 2, 2, 2]") && e.contains("[1, 3, 4, 4]"),
        "{e}"
    );

    let vast = [1, 1, 1 << 40, 1 << 40];
    assert!(avg_pool2d_backward(&y, &vast, &p).is_err());
    assert!(max_pool2d_backward(&Tensor::zeros([1, 1, 1, 1]), &[0], &vast).is_err());
    let e = avg_pool2d_backward(&Tensor::zeros([1, 2, 3, 2]), x.shape(), &p)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[1, 2, 3, 2]") && e.contains("[1, 2, 2, 2]"),
        "{e}"
    );
}
