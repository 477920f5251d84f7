//! NumPy-style broadcasting for elementwise binary ops on the CPU, and its
//! adjoint: summing a gradient back down to an operand's shape.
//!
//! Shapes are right-aligned; a dimension of size 1 (or a missing leading
//! dimension) stretches to the other operand's size. Adjacent dimensions that
//! are contiguous for every operand are merged first, so `[N,C,H,W] ∘ [1,C,1,1]`
//! runs as `[N, C, H·W]` with a broadcast scalar in the inner loop.

use crate::cpu::reduce;
use crate::error::{CoreError, Result};
use crate::tensor::{numel, Tensor};
use rayon::prelude::*;

/// The broadcast shape of `a` and `b`, or an error naming both.
pub fn broadcast_shape(a: &[usize], b: &[usize], op: &'static str) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(CoreError::ShapeMismatch {
                    op,
                    lhs: a.to_vec(),
                    rhs: b.to_vec(),
                })
            }
        };
    }
    Ok(out)
}

/// Row-major strides of `shape` aligned to `out`, with 0 for broadcast dims.
fn aligned_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let mut strides = vec![0; r];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        let oi = i + r - shape.len();
        strides[oi] = if shape[i] == 1 && out[oi] != 1 {
            0
        } else {
            acc
        };
        acc *= shape[i];
    }
    strides
}

/// Merges adjacent dims that are contiguous (or jointly broadcast) in every operand.
fn coalesce(out: &[usize], strides: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut dims: Vec<usize> = Vec::new();
    let mut st: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for i in 0..out.len() {
        if out[i] == 1 {
            continue;
        }
        let mergeable = !dims.is_empty()
            && strides.iter().enumerate().all(|(k, s)| {
                let prev = *st[k].last().unwrap_or(&0);
                prev == s[i] * out[i]
            });
        if mergeable {
            let last = dims.len() - 1;
            dims[last] *= out[i];
            for (k, s) in strides.iter().enumerate() {
                let l = st[k].len() - 1;
                st[k][l] = s[i];
            }
        } else {
            dims.push(out[i]);
            for (k, s) in strides.iter().enumerate() {
                st[k].push(s[i]);
            }
        }
    }
    if dims.is_empty() {
        dims.push(1);
        for s in st.iter_mut() {
            s.push(0);
        }
    }
    (dims, st)
}

/// Calls `f(outer_out_offset, [offset per operand])` for each row of the
/// innermost dimension; returns the inner length and inner strides.
fn for_each_row(dims: &[usize], strides: &[Vec<usize>], mut f: impl FnMut(usize, &[usize])) {
    let r = dims.len();
    let inner = dims[r - 1];
    let outer: usize = dims[..r - 1].iter().product();
    let mut idx = vec![0usize; r.saturating_sub(1)];
    let mut offs = vec![0usize; strides.len()];
    for row in 0..outer {
        f(row * inner, &offs);
        // odometer increment over the outer dims
        for d in (0..r - 1).rev() {
            idx[d] += 1;
            for (k, s) in strides.iter().enumerate() {
                offs[k] += s[d];
            }
            if idx[d] < dims[d] {
                break;
            }
            for (k, s) in strides.iter().enumerate() {
                offs[k] -= s[d] * dims[d];
            }
            idx[d] = 0;
        }
    }
}

/// Values from which the contiguous passes below run in parallel.
const PAR_MIN: usize = 1 << 15;

/// The run length when broadcasting `shape` to `out` repeats each of its
/// values over one contiguous run of the output (`[N, C, 1, 1]` to
/// `[N, C, H, W]`: runs of `H·W`, the adjoint of global average pooling).
fn trailing_runs(shape: &[usize], out: &[usize]) -> Option<usize> {
    let strides = [aligned_strides(out, out), aligned_strides(shape, out)];
    let (dims, st) = coalesce(out, &strides);
    (dims.len() == 2 && st[1] == [1, 0]).then(|| dims[1])
}

/// `x` broadcast to `shape`.
pub(crate) fn broadcast_to(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let out_shape = broadcast_shape(x.shape(), shape, "broadcast_to")?;
    match trailing_runs(x.shape(), &out_shape) {
        Some(inner) if inner > 0 => {
            let mut out = vec![0.0f32; numel(&out_shape)];
            let fill = |(o, &v): (&mut [f32], &f32)| o.fill(v);
            if out.len() >= PAR_MIN {
                out.par_chunks_mut(inner)
                    .zip(x.data().par_iter())
                    .for_each(fill);
            } else {
                out.chunks_mut(inner).zip(x.data()).for_each(fill);
            }
            Tensor::from_vec(out_shape, out)
        }
        _ => broadcast_zip(&Tensor::zeros(out_shape), x, "broadcast_to", |_, y| y),
    }
}

/// `f(a, b)` elementwise with broadcasting.
pub(crate) fn broadcast_zip(
    a: &Tensor,
    b: &Tensor,
    op: &'static str,
    f: impl Fn(f32, f32) -> f32,
) -> Result<Tensor> {
    if a.shape() == b.shape() {
        return a.zip_map(b, op, f);
    }
    let out_shape = broadcast_shape(a.shape(), b.shape(), op)?;
    let sa = aligned_strides(a.shape(), &out_shape);
    let sb = aligned_strides(b.shape(), &out_shape);
    let (dims, st) = coalesce(&out_shape, &[sa, sb]);
    let inner = dims[dims.len() - 1];
    let (ia, ib) = (st[0][dims.len() - 1], st[1][dims.len() - 1]);
    let mut out = vec![0.0f32; numel(&out_shape)];
    let (ad, bd) = (a.data(), b.data());
    for_each_row(&dims, &st, |o, offs| {
        let dst = &mut out[o..o + inner];
        match (ia, ib) {
            (1, 1) => {
                let (xa, xb) = (&ad[offs[0]..offs[0] + inner], &bd[offs[1]..offs[1] + inner]);
                for ((d, &x), &y) in dst.iter_mut().zip(xa).zip(xb) {
                    *d = f(x, y);
                }
            }
            (1, 0) => {
                let y = bd[offs[1]];
                for (d, &x) in dst.iter_mut().zip(&ad[offs[0]..offs[0] + inner]) {
                    *d = f(x, y);
                }
            }
            (0, 1) => {
                let x = ad[offs[0]];
                for (d, &y) in dst.iter_mut().zip(&bd[offs[1]..offs[1] + inner]) {
                    *d = f(x, y);
                }
            }
            _ => {
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = f(ad[offs[0] + j * ia], bd[offs[1] + j * ib]);
                }
            }
        }
    });
    Tensor::from_vec(out_shape, out)
}

/// Sums `grad` (of a broadcast result) down to `shape`: the adjoint of broadcasting.
pub(crate) fn reduce_to_shape(grad: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if grad.shape() == shape {
        return Ok(grad.clone());
    }
    let out_shape = grad.shape().to_vec();
    let bs = broadcast_shape(shape, &out_shape, "reduce_to_shape")?;
    if bs != out_shape {
        return Err(CoreError::ShapeMismatch {
            op: "reduce_to_shape",
            lhs: grad.shape().to_vec(),
            rhs: shape.to_vec(),
        });
    }
    if let Some(inner) = trailing_runs(shape, &out_shape).filter(|&i| i > 0) {
        // One contiguous run per output value: the runs in parallel, each
        // summed as below in f64 lanes (global average pooling of ResNet's
        // last stage, 128 × 64 planes of 49 values: 0.06 ms, against 0.11 ms
        // with one serial chain of f64 additions per plane).
        let gd = grad.data();
        let mut out = vec![0.0f32; numel(shape)];
        let sum = |(o, src): (&mut f32, &[f32])| *o = reduce::sum(src) as f32;
        if gd.len() >= PAR_MIN {
            out.par_iter_mut().zip(gd.par_chunks(inner)).for_each(sum);
        } else {
            out.iter_mut().zip(gd.chunks(inner)).for_each(sum);
        }
        return Tensor::from_vec(shape.to_vec(), out);
    }
    let st_target = aligned_strides(shape, &out_shape);
    let st_grad = aligned_strides(&out_shape, &out_shape);
    let (dims, st) = coalesce(&out_shape, &[st_grad, st_target]);
    let inner = dims[dims.len() - 1];
    let it = st[1][dims.len() - 1];
    let mut acc = vec![0.0f64; numel(shape)];
    let gd = grad.data();
    for_each_row(&dims, &st, |_, offs| {
        let src = &gd[offs[0]..offs[0] + inner];
        if it == 0 {
            // a run summed in f64 in independent lanes (`reduce::sum`)
            acc[offs[1]] += reduce::sum(src);
        } else {
            for (j, &v) in src.iter().enumerate() {
                acc[offs[1] + j * it] += v as f64;
            }
        }
    });
    Tensor::from_vec(shape.to_vec(), acc.into_iter().map(|v| v as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], data: Vec<f32>) -> Tensor {
        Tensor::from_vec(shape.to_vec(), data).expect("valid test tensor")
    }

    #[test]
    fn shapes_broadcast_like_numpy() {
        assert_eq!(
            broadcast_shape(&[2, 3, 4], &[3, 1], "t").unwrap(),
            vec![2, 3, 4]
        );
        assert_eq!(broadcast_shape(&[1, 5], &[4, 1], "t").unwrap(), vec![4, 5]);
        assert_eq!(broadcast_shape(&[], &[2], "t").unwrap(), vec![2]);
        let e = broadcast_shape(&[2, 3], &[4], "add").unwrap_err();
        assert!(
            e.to_string().contains("[2, 3]") && e.to_string().contains("[4]"),
            "{e}"
        );
    }

    #[test]
    fn per_channel_vector_broadcast() {
        // [N=2, C=2, H=1, W=2] + [1, C, 1, 1]
        let a = t(&[2, 2, 1, 2], vec![1., 2., 3., 4., 5., 6., 7., 8.]);
        let b = t(&[1, 2, 1, 1], vec![10., 100.]);
        let c = broadcast_zip(&a, &b, "add", |x, y| x + y).unwrap();
        assert_eq!(c.data(), &[11., 12., 103., 104., 15., 16., 107., 108.]);
        let r = reduce_to_shape(&c, &[1, 2, 1, 1]).unwrap();
        assert_eq!(
            r.data(),
            &[11. + 12. + 15. + 16., 103. + 104. + 107. + 108.]
        );
    }

    #[test]
    fn both_sides_broadcast() {
        let a = t(&[3, 1], vec![1., 2., 3.]);
        let b = t(&[1, 2], vec![10., 20.]);
        let c = broadcast_zip(&a, &b, "mul", |x, y| x * y).unwrap();
        assert_eq!(c.shape(), &[3, 2]);
        assert_eq!(c.data(), &[10., 20., 20., 40., 30., 60.]);
        assert_eq!(
            reduce_to_shape(&c, &[3, 1]).unwrap().data(),
            &[30., 60., 90.]
        );
        assert_eq!(reduce_to_shape(&c, &[2]).unwrap().data(), &[60., 120.]);
        assert_eq!(reduce_to_shape(&c, &[]).unwrap().data(), &[180.]);
    }

    /// Repeating each value over a contiguous run, and summing such runs,
    /// give what the general passes give, to the bit, below and above the
    /// size that runs in parallel.
    #[test]
    fn trailing_runs_match_the_general_passes() {
        for (n, c, hw) in [(2usize, 3usize, 4usize), (64, 32, 49), (1, 5, 1)] {
            let small = t(
                &[n, c, 1, 1],
                (0..n * c).map(|v| (v as f32 * 0.3).sin()).collect(),
            );
            let full = [n, c, hw, 1];
            let got = broadcast_to(&small, &full).unwrap();
            let want = broadcast_zip(&Tensor::zeros(full.to_vec()), &small, "t", |_, y| y).unwrap();
            assert_eq!(got.data(), want.data(), "{n} {c} {hw}");
            let g = t(
                &full,
                (0..n * c * hw).map(|v| (v as f32 * 0.7).cos()).collect(),
            );
            let sums = reduce_to_shape(&g, &[n, c, 1, 1]).unwrap();
            for (i, s) in sums.data().iter().enumerate() {
                let run = &g.data()[i * hw..(i + 1) * hw];
                let want = reduce::sum(run);
                assert_eq!(s.to_bits(), (want as f32).to_bits(), "{n} {c} {hw} {i}");
                let exact: f64 = run.iter().map(|&v| v as f64).sum();
                assert!(
                    (want - exact).abs() <= 1e-12 * hw as f64,
                    "{n} {c} {hw} {i}"
                );
            }
        }
        assert!(trailing_runs(&[1, 3, 1, 1], &[2, 3, 4, 4]).is_none());
    }

    #[test]
    fn strided_middle_broadcast() {
        // [2,3,2] * [2,1,2]: the middle dim is broadcast
        let a = t(&[2, 3, 2], (0..12).map(|v| v as f32).collect());
        let b = t(&[2, 1, 2], vec![1., -1., 2., -2.]);
        let c = broadcast_zip(&a, &b, "mul", |x, y| x * y).unwrap();
        let expect: Vec<f32> = (0..12)
            .map(|i| {
                let (n, w) = (i / 6, i % 2);
                i as f32 * [1., -1., 2., -2.][n * 2 + w]
            })
            .collect();
        assert_eq!(c.data(), expect.as_slice());
    }
}
