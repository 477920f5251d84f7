//! Deterministic f64 reductions of f32 data with independent lanes, so the
//! sums vectorise instead of waiting on one serial chain of additions.

/// Lanes of the partial sums.
const LANES: usize = 8;

/// `Σ f(a_i, b_i)` over equal-length slices, accumulated in f64 in `LANES`
/// interleaved partial sums that are added in a fixed order at the end.
#[inline(always)]
pub(crate) fn sum_map2(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += f(xa[l], xb[l]);
        }
    }
    for (l, (&u, &v)) in ra.iter().zip(rb).enumerate() {
        acc[l] += f(u, v);
    }
    acc.iter().sum()
}

/// Two sums `(Σ f(a_i, b_i).0, Σ f(a_i, b_i).1)` in one pass, each
/// accumulated like [`sum_map2`].
#[inline(always)]
pub(crate) fn sum_map2_pair(
    a: &[f32],
    b: &[f32],
    f: impl Fn(f32, f32) -> (f64, f64),
) -> (f64, f64) {
    let mut acc0 = [0.0f64; LANES];
    let mut acc1 = [0.0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for l in 0..LANES {
            let (u, v) = f(xa[l], xb[l]);
            acc0[l] += u;
            acc1[l] += v;
        }
    }
    for (l, (&u, &v)) in ra.iter().zip(rb).enumerate() {
        let (p, q) = f(u, v);
        acc0[l] += p;
        acc1[l] += q;
    }
    (acc0.iter().sum(), acc1.iter().sum())
}

/// Like [`sum_map2_pair`] over three equal-length slices: the same lanes
/// in the same order, so `f(a, b, c)` that equals some `g(d, b)` gives
/// bit-identical sums to `sum_map2_pair(d, b, g)`.
#[inline(always)]
pub(crate) fn sum_map3_pair(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    f: impl Fn(f32, f32, f32) -> (f64, f64),
) -> (f64, f64) {
    let mut acc0 = [0.0f64; LANES];
    let mut acc1 = [0.0f64; LANES];
    let (ca, cb, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let (ra, rb, rc) = (ca.remainder(), cb.remainder(), cc.remainder());
    for ((xa, xb), xc) in ca.zip(cb).zip(cc) {
        for l in 0..LANES {
            let (u, v) = f(xa[l], xb[l], xc[l]);
            acc0[l] += u;
            acc1[l] += v;
        }
    }
    for (l, ((&u, &v), &w)) in ra.iter().zip(rb).zip(rc).enumerate() {
        let (p, q) = f(u, v, w);
        acc0[l] += p;
        acc1[l] += q;
    }
    (acc0.iter().sum(), acc1.iter().sum())
}

/// `Σ a_i` in f64 (see [`sum_map2`]), through a copy compiled for the
/// widest vector unit present. The lanes and their order are the same in
/// every copy, so the result does not depend on the CPU.
pub(crate) fn sum(a: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn sum_avx512(a: &[f32]) -> f64 {
            sum_map2(a, a, |u, _| u as f64)
        }
        #[target_feature(enable = "avx2")]
        unsafe fn sum_avx2(a: &[f32]) -> f64 {
            sum_map2(a, a, |u, _| u as f64)
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected.
            return unsafe { sum_avx512(a) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 was detected.
            return unsafe { sum_avx2(a) };
        }
    }
    sum_map2(a, a, |u, _| u as f64)
}

/// Runs `$body` (an expression over the arguments) through a copy
/// compiled for AVX-512F or AVX2 when present; the lanes and their order are
/// the same in every copy, so results do not depend on the CPU.
macro_rules! dispatch {
    ($(#[$m:meta])* $name:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $body:expr) => {
        $(#[$m])*
        pub(crate) fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn wide($($arg: $ty),*) -> $ret {
                    $body
                }
                #[target_feature(enable = "avx2")]
                unsafe fn mid($($arg: $ty),*) -> $ret {
                    $body
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: AVX-512F was detected.
                    return unsafe { wide($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 was detected.
                    return unsafe { mid($($arg),*) };
                }
            }
            $body
        }
    };
}

dispatch!(
    /// `(Σ p_i, Σ (p_i − mean(p))²)` of one plane in f64: the plane is read
    /// twice while it is in cache.
    plane_moments,
    (p: &[f32]) -> (f64, f64),
    {
        let s = sum_map2(p, p, |u, _| u as f64);
        let m = s / p.len().max(1) as f64;
        (s, sum_map2(p, p, |u, _| (u as f64 - m) * (u as f64 - m)))
    }
);

dispatch!(
    /// `(Σ dy_i, Σ dy_i·(x_i − μ))` in f64, in one pass.
    grad_sums,
    (dy: &[f32], x: &[f32], mu: f64) -> (f64, f64),
    sum_map2_pair(dy, x, |d, v| (d as f64, d as f64 * (v as f64 - mu)))
);

dispatch!(
    /// [`grad_sums`] of the ReLU-masked gradient `d_i = g_i·[y_i > 0]`
    /// without writing `d` out: `(Σ d_i, Σ d_i·(x_i − μ))`, bit-identical to
    /// `grad_sums(d, x, μ)` (a masked element adds the same `0.0`).
    masked_grad_sums,
    (g: &[f32], y: &[f32], x: &[f32], mu: f64) -> (f64, f64),
    sum_map3_pair(g, y, x, |gg, yy, v| {
        let d = if yy > 0.0 { gg } else { 0.0 };
        (d as f64, d as f64 * (v as f64 - mu))
    })
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_match_serial_f64() {
        for n in [0usize, 1, 7, 8, 9, 100, 1001] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a.iter().map(|&v| v as f64).sum();
            assert!((sum(&a) - want).abs() < 1e-9, "{n}");
            let want: f64 = a.iter().zip(&b).map(|(&u, &v)| u as f64 * v as f64).sum();
            let got = sum_map2(&a, &b, |u, v| u as f64 * v as f64);
            assert!((got - want).abs() < 1e-9, "{n}");
            let (s, q) = plane_moments(&a);
            let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n.max(1) as f64;
            let want_q: f64 = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum();
            assert!(
                (s - mean * n as f64).abs() < 1e-9 && (q - want_q).abs() < 1e-9,
                "{n}"
            );
            let (sd, sdx) = grad_sums(&a, &b, 0.25);
            let want_sdx: f64 = a
                .iter()
                .zip(&b)
                .map(|(&d, &v)| d as f64 * (v as f64 - 0.25))
                .sum();
            assert!(
                (sd - s).abs() < 1e-9 && (sdx - want_sdx).abs() < 1e-9,
                "{n}"
            );
        }
    }
}
