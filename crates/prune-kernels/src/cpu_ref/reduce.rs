//! CPU reference of `kernels/reduce.cu`: sums over the middle axis of `[outer, red, inner]`,
//! log-softmax over rows and the negative log-likelihood (accumulated in f64).

/// `y[o, i] = scale * sum_r x[o, r, i]`.
pub fn reduce(x: &[f32], outer: usize, red: usize, inner: usize, scale: f32) -> Vec<f32> {
    let mut y = vec![0.0f32; outer * inner];
    for o in 0..outer {
        for i in 0..inner {
            let s: f64 = (0..red).map(|r| x[(o * red + r) * inner + i] as f64).sum();
            y[o * inner + i] = (s * scale as f64) as f32;
        }
    }
    y
}

/// Log-softmax of each row of `[rows, cols]`.
pub fn log_softmax(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; rows * cols];
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        let lse = m + s.ln();
        for (o, &v) in y[r * cols..(r + 1) * cols].iter_mut().zip(row) {
            *o = (v as f64 - lse) as f32;
        }
    }
    y
}

/// Backward of [`log_softmax`]: `dx = dy - exp(y) sum(dy)` per row.
pub fn log_softmax_backward(dy: &[f32], y: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut dx = vec![0.0f32; rows * cols];
    for r in 0..rows {
        let b = r * cols;
        let s: f64 = dy[b..b + cols].iter().map(|&v| v as f64).sum();
        for j in 0..cols {
            dx[b + j] = (dy[b + j] as f64 - (y[b + j] as f64).exp() * s) as f32;
        }
    }
    dx
}

/// `loss[r] = -logp[r, label_r]` (NaN for a label outside `[0, cols)`).
pub fn nll(logp: &[f32], labels: &[i32], cols: usize) -> Vec<f32> {
    labels
        .iter()
        .enumerate()
        .map(|(r, &l)| {
            if l >= 0 && (l as usize) < cols {
                -logp[r * cols + l as usize]
            } else {
                f32::NAN
            }
        })
        .collect()
}

/// Backward of [`nll`] scaled by `scale` (1/rows for a batch mean).
pub fn nll_backward(dloss: &[f32], labels: &[i32], cols: usize, scale: f32) -> Vec<f32> {
    let mut d = vec![0.0f32; labels.len() * cols];
    for (r, &l) in labels.iter().enumerate() {
        if l >= 0 && (l as usize) < cols {
            d[r * cols + l as usize] = -scale * dloss[r];
        } else {
            d[r * cols..(r + 1) * cols].fill(f32::NAN);
        }
    }
    d
}
