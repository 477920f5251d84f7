//! CPU reference of `kernels/batchnorm.cu` on `[n, C, hw]` (f64 accumulation, as prune-core).

/// Batch statistics: `(mean, invstd, var_unbiased)` per channel.
pub fn stats(x: &[f32], n: usize, c: usize, hw: usize, eps: f32) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let m = n * hw;
    let (mut mean, mut inv, mut unb) = (vec![0.0; c], vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let vals =
            || (0..n).flat_map(move |i| (0..hw).map(move |p| x[(i * c + ch) * hw + p] as f64));
        let mu = vals().sum::<f64>() / m as f64;
        let var = vals().map(|v| (v - mu) * (v - mu)).sum::<f64>() / m as f64;
        mean[ch] = mu as f32;
        inv[ch] = (1.0 / (var + eps as f64).sqrt()) as f32;
        unb[ch] = if m > 1 {
            (var * m as f64 / (m - 1) as f64) as f32
        } else {
            0.0
        };
    }
    (mean, inv, unb)
}

/// `y = gamma (x - mean) invstd + beta`.
pub fn apply(
    x: &[f32],
    mean: &[f32],
    invstd: &[f32],
    gamma: &[f32],
    beta: &[f32],
    c: usize,
    hw: usize,
) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(e, &v)| {
            let ch = (e / hw) % c;
            gamma[ch] * ((v - mean[ch]) * invstd[ch]) + beta[ch]
        })
        .collect()
}

/// Training backward: `(dx, dgamma, dbeta)`.
pub fn backward(
    dy: &[f32],
    x: &[f32],
    mean: &[f32],
    invstd: &[f32],
    gamma: &[f32],
    n: usize,
    c: usize,
    hw: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let m = (n * hw) as f64;
    let (mut dg, mut db) = (vec![0.0f64; c], vec![0.0f64; c]);
    for (e, (&g, &v)) in dy.iter().zip(x).enumerate() {
        let ch = (e / hw) % c;
        db[ch] += g as f64;
        dg[ch] += g as f64 * (v as f64 - mean[ch] as f64) * invstd[ch] as f64;
    }
    let dx = dy
        .iter()
        .zip(x)
        .enumerate()
        .map(|(e, (&g, &v))| {
            let ch = (e / hw) % c;
            let s = invstd[ch] as f64;
            let xhat = (v as f64 - mean[ch] as f64) * s;
            gamma[ch] as f64 * s * (g as f64 - db[ch] / m - xhat * dg[ch] / m)
        })
        .collect();
    (dx, dg, db)
}
