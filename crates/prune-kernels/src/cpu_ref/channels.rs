//! CPU reference of `kernels/channels.cu`: concatenation, index selection and its backward
//! along the channel axis of `[outer, C, inner]` views.

use crate::error::KernelError;

/// Concatenation of `[outer, C_k, inner]` parts along the channel axis.
pub fn concat(parts: &[(&[f32], usize)], outer: usize, inner: usize) -> Vec<f32> {
    let total: usize = parts.iter().map(|p| p.1).sum();
    let mut out = vec![0.0f32; outer * total * inner];
    let mut off = 0;
    for &(src, c) in parts {
        for o in 0..outer {
            let from = o * c * inner;
            let to = (o * total + off) * inner;
            out[to..to + c * inner].copy_from_slice(&src[from..from + c * inner]);
        }
        off += c;
    }
    out
}

/// `dst[o, j, i] = src[o, idx[j], i]` (indices may repeat).
pub fn index_select(src: &[f32], outer: usize, c: usize, inner: usize, idx: &[u32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &j in idx {
            let b = (o * c + j as usize) * inner;
            out.extend_from_slice(&src[b..b + inner]);
        }
    }
    out
}

/// Backward of [`index_select`]: `dst[o, c, i] = sum_{j : idx[j] = c} src[o, j, i]`.
pub fn index_add(src: &[f32], outer: usize, c: usize, inner: usize, idx: &[u32]) -> Vec<f64> {
    let k = idx.len();
    let mut out = vec![0.0f64; outer * c * inner];
    for o in 0..outer {
        for (j, &t) in idx.iter().enumerate() {
            for i in 0..inner {
                out[(o * c + t as usize) * inner + i] += src[(o * k + j) * inner + i] as f64;
            }
        }
    }
    out
}

/// The CSR lists `index_add_channels` reads: `offsets[C + 1]` and the `j` of every channel
/// in increasing order.  Fails on an index outside `[0, C)`.
pub fn index_lists(idx: &[u32], c: usize) -> Result<(Vec<u32>, Vec<u32>), KernelError> {
    if let Some(&bad) = idx.iter().find(|&&i| i as usize >= c) {
        return Err(KernelError::invalid(
            "index_select",
            format!("index {bad} out of range for {c} channels"),
        ));
    }
    if idx.len() > u32::MAX as usize {
        return Err(KernelError::invalid(
            "index_select",
            "more than 2^32 indices",
        ));
    }
    let mut offsets = vec![0u32; c + 1];
    for &i in idx {
        offsets[i as usize + 1] += 1;
    }
    for k in 0..c {
        offsets[k + 1] += offsets[k];
    }
    let mut fill = offsets.clone();
    let mut js = vec![0u32; idx.len()];
    for (j, &i) in idx.iter().enumerate() {
        js[fill[i as usize] as usize] = j as u32;
        fill[i as usize] += 1;
    }
    Ok((offsets, js))
}
