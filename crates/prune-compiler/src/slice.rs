//! Tensor helpers of the surgery: gathering indices along an axis and
//! scaling slices of conv/linear weights.

use crate::error::{CompileError, Result};
use prune_core::Tensor;

/// Gathers `idx` along `axis` of `t` (row-major), e.g. the kept output rows
/// (`axis = 0`) or input columns (`axis = 1`) of a weight.
pub(crate) fn gather(name: &str, t: &Tensor, axis: usize, idx: &[usize]) -> Result<Tensor> {
    let shape = t.shape();
    if axis >= shape.len() {
        return Err(CompileError::Param {
            name: name.into(),
            reason: format!("cannot slice axis {axis} of a tensor of shape {shape:?}"),
        });
    }
    let dim = shape[axis];
    if let Some(&bad) = idx.iter().find(|&&i| i >= dim) {
        return Err(CompileError::Param {
            name: name.into(),
            reason: format!("index {bad} out of range for axis {axis} of shape {shape:?}"),
        });
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let d = t.data();
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            let s = (o * dim + i) * inner;
            out.extend_from_slice(&d[s..s + inner]);
        }
    }
    let mut new_shape = shape.to_vec();
    new_shape[axis] = idx.len();
    Ok(Tensor::from_vec(new_shape, out)?)
}

/// Multiplies output row `r` of a weight `[out, ...]` (or entry `r` of a
/// vector) by `s[r]`.
pub(crate) fn scale_rows(name: &str, t: &mut Tensor, s: &[f32]) -> Result<()> {
    let rows = t.shape().first().copied().unwrap_or(0);
    if rows != s.len() {
        return Err(CompileError::Param {
            name: name.into(),
            reason: format!(
                "has {rows} output rows but the factor has {} entries",
                s.len()
            ),
        });
    }
    let inner = t.numel() / rows.max(1);
    for (row, &f) in t.data_mut().chunks_mut(inner.max(1)).zip(s) {
        row.iter_mut().for_each(|v| *v *= f);
    }
    Ok(())
}

/// Multiplies the weights that read input channel `c` by `s[c]`.
///
/// A weight `[out, in/groups, kh, kw]` (or `[out, in]` for a linear layer,
/// `groups = 1`): output row `o` belongs to group `o / (out/groups)` and its
/// column `j` reads input channel `group·(in/groups) + j`. Because
/// `conv(x·s) = conv_with(w·s)(x)` per input channel (zero padding stays
/// zero), this moves a per-channel scale of the input into the weights.
pub(crate) fn scale_input_columns(
    name: &str,
    w: &mut Tensor,
    groups: usize,
    s: &[f32],
) -> Result<()> {
    let shape = w.shape().to_vec();
    if shape.len() < 2 || groups == 0 || !shape[0].is_multiple_of(groups) {
        return Err(CompileError::Param {
            name: name.into(),
            reason: format!("cannot scale input columns of shape {shape:?} with {groups} groups"),
        });
    }
    let (out, cin_g) = (shape[0], shape[1]);
    if cin_g * groups != s.len() {
        return Err(CompileError::Param {
            name: name.into(),
            reason: format!(
                "reads {} input channels but the factor has {} entries",
                cin_g * groups,
                s.len()
            ),
        });
    }
    let inner: usize = shape[2..].iter().product();
    let out_g = out / groups;
    let d = w.data_mut();
    for o in 0..out {
        let g = o / out_g.max(1);
        for j in 0..cin_g {
            let f = s[g * cin_g + j];
            let start = (o * cin_g + j) * inner;
            d[start..start + inner].iter_mut().for_each(|v| *v *= f);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::from_vec(shape.to_vec(), (0..n).map(|i| i as f32).collect()).unwrap()
    }

    #[test]
    fn gather_rows_and_columns() {
        let w = t(&[3, 4]);
        let r = gather("w", &w, 0, &[0, 2]).unwrap();
        assert_eq!(r.shape(), &[2, 4]);
        assert_eq!(r.data(), &[0., 1., 2., 3., 8., 9., 10., 11.]);
        let c = gather("w", &w, 1, &[1, 3]).unwrap();
        assert_eq!(c.shape(), &[3, 2]);
        assert_eq!(c.data(), &[1., 3., 5., 7., 9., 11.]);
    }

    #[test]
    fn gather_conv_input_channels() {
        // [out 2, in 3, 1, 2]
        let w = t(&[2, 3, 1, 2]);
        let c = gather("w", &w, 1, &[2]).unwrap();
        assert_eq!(c.shape(), &[2, 1, 1, 2]);
        assert_eq!(c.data(), &[4., 5., 10., 11.]);
    }

    #[test]
    fn gather_rejects_out_of_range() {
        let err = gather("fc.weight", &t(&[2, 2]), 1, &[2]).unwrap_err();
        assert!(err.to_string().contains("fc.weight"), "{err}");
        assert!(gather("w", &t(&[2]), 1, &[0]).is_err());
    }

    #[test]
    fn scale_rows_multiplies_each_row() {
        let mut w = t(&[2, 3]);
        scale_rows("w", &mut w, &[2.0, -1.0]).unwrap();
        assert_eq!(w.data(), &[0., 2., 4., -3., -4., -5.]);
        assert!(scale_rows("w", &mut w, &[1.0]).is_err());
    }

    #[test]
    fn scale_input_columns_dense_and_grouped() {
        let mut w = t(&[2, 2]);
        scale_input_columns("w", &mut w, 1, &[10.0, 0.5]).unwrap();
        assert_eq!(w.data(), &[0., 0.5, 20., 1.5]);
        // Depthwise [2, 1, 1, 1], groups 2: row o reads channel o.
        let mut d = t(&[2, 1, 1, 1]);
        d.data_mut()[0] = 1.0;
        scale_input_columns("d", &mut d, 2, &[3.0, 4.0]).unwrap();
        assert_eq!(d.data(), &[3., 4.]);
        // Grouped [4, 1, 1, 1], groups 2: rows 0–1 read channel 0, rows 2–3 channel 1.
        let mut g = Tensor::ones([4, 1, 1, 1]);
        scale_input_columns("g", &mut g, 2, &[2.0, 5.0]).unwrap();
        assert_eq!(g.data(), &[2., 2., 5., 5.]);
        assert!(scale_input_columns("g", &mut g, 2, &[1.0]).is_err());
    }
}
