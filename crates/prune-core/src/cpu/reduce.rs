//! Deterministic f64 reductions of f32 data with independent lanes, so the
//! sums vectorise instead of waiting on one serial chain of additions.

use super::dispatch::dispatch;

/// Lanes of one vector register of f64 (AVX-512).
pub(super) const VEC: usize = 8;

/// Registers of partial sums per sum. An f64 addition has a latency of
/// about four cycles, so with one register per sum each reduction waits on
/// its own chain of additions; four independent registers keep the adder
/// busy. On data in cache (a loop over a 128×16×28×28 gradient, 2-vCPU
/// Xeon) batch norm's masked sums ran 3x faster with 32 lanes than with 8;
/// inside a training step they are bound by memory traffic, and the step
/// time did not change.
pub(super) const REGS: usize = 4;

/// Lanes of the partial sums.
pub(super) const LANES: usize = VEC * REGS;

/// Two sums `(Σ f(a_i, b_i, c_i).0, Σ f(a_i, b_i, c_i).1)` over
/// equal-length slices in one pass, each accumulated in f64 in `LANES`
/// interleaved partial sums (element `i` of a full block of `LANES` to lane
/// `i mod LANES`, element `j` of the partial last block to lane `j`) that
/// are added in a fixed tree at the end ([`lanes_total`]). Callers that need one sum return
/// `0.0` as the second (the compiler drops it) and pass a slice twice for
/// fewer inputs; `f` is defined where this is inlined, so that it is
/// compiled for the same vector unit.
#[inline(always)]
pub(crate) fn sum_map3_pair(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    f: impl Fn(f32, f32, f32) -> (f64, f64),
) -> (f64, f64) {
    // Lane `VEC·k + l` is `acc[k][l]`.
    let mut acc0 = [[0.0f64; VEC]; REGS];
    let mut acc1 = [[0.0f64; VEC]; REGS];
    let (ca, cb, cc) = (
        a.chunks_exact(LANES),
        b.chunks_exact(LANES),
        c.chunks_exact(LANES),
    );
    let (ra, rb, rc) = (ca.remainder(), cb.remainder(), cc.remainder());
    for ((xa, xb), xc) in ca.zip(cb).zip(cc) {
        for k in 0..REGS {
            for l in 0..VEC {
                let i = k * VEC + l;
                let (u, v) = f(xa[i], xb[i], xc[i]);
                acc0[k][l] += u;
                acc1[k][l] += v;
            }
        }
    }
    // The partial block one register at a time, then element by element.
    let (pa, pb, pc) = (
        ra.chunks_exact(VEC),
        rb.chunks_exact(VEC),
        rc.chunks_exact(VEC),
    );
    let (ta, tb, tc) = (pa.remainder(), pb.remainder(), pc.remainder());
    let full = ra.len() / VEC;
    for (k, ((xa, xb), xc)) in pa.zip(pb).zip(pc).enumerate() {
        for l in 0..VEC {
            let (u, v) = f(xa[l], xb[l], xc[l]);
            acc0[k][l] += u;
            acc1[k][l] += v;
        }
    }
    for (l, ((&u, &v), &w)) in ta.iter().zip(tb).zip(tc).enumerate() {
        let (p, q) = f(u, v, w);
        acc0[full][l] += p;
        acc1[full][l] += q;
    }
    (lanes_total(&acc0), lanes_total(&acc1))
}

/// The partial sums of [`sum_map3_pair`] added in a fixed tree: the
/// registers lane by lane, `(r0 + r1) + (r2 + r3)`, then the eight lanes
/// pairwise, `l + (l + 4)`, `l + (l + 2)`, `l + (l + 1)` — a few vector
/// additions instead of a serial chain of 32 (which cost as much as the
/// sums themselves on a 7×7 plane).
#[inline(always)]
fn lanes_total(acc: &[[f64; VEC]; REGS]) -> f64 {
    let r: [f64; VEC] = std::array::from_fn(|l| (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]));
    let h: [f64; 4] = std::array::from_fn(|l| r[l] + r[l + 4]);
    (h[0] + h[2]) + (h[1] + h[3])
}

dispatch!(
    /// True when no value of `a` is NaN or infinite: blocks of 1024 values
    /// tested without an early exit inside a block (so the test vectorises),
    /// stopping at the first block that fails.
    finite_block,
    (a: &[f32]) -> bool,
    a.chunks(1024)
        .all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite()))
);

/// True when no value of `a` is NaN or infinite; large slices are tested
/// in parallel (a training step tests every gradient: 15 million values
/// for VGG-like).
pub(crate) fn all_finite(a: &[f32]) -> bool {
    use rayon::prelude::*;
    const PAR_MIN: usize = 1 << 18;
    if a.len() < PAR_MIN {
        finite_block(a)
    } else {
        a.par_chunks(1 << 16).all(finite_block)
    }
}

/// Runs the AVX-512 form of a reduction (`reduce_avx512.rs`: the same
/// lanes, to the bit) when the CPU has it, else `$any`.
macro_rules! with_avx512 {
    ($wide:ident($($arg:expr),*), $any:expr) => {{
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected; the callers pass slices of
            // equal length.
            return unsafe { super::reduce_avx512::$wide($($arg),*) };
        }
        $any
    }};
}

/// `Σ a_i` in f64 (see [`sum_map3_pair`]).
pub(crate) fn sum(a: &[f32]) -> f64 {
    with_avx512!(sum(a), sum_any(a))
}

dispatch!(
    /// [`sum`] through the compiler's vectorisation.
    sum_any,
    (a: &[f32]) -> f64,
    sum_map3_pair(a, a, a, |u, _, _| (u as f64, 0.0)).0
);

/// `(Σ p_i, Σ (p_i − mean(p))²)` of one plane in f64: the plane is read
/// twice while it is in cache.
pub(crate) fn plane_moments(p: &[f32]) -> (f64, f64) {
    with_avx512!(plane_moments(p), plane_moments_any(p))
}

dispatch!(
    /// [`plane_moments`] through the compiler's vectorisation.
    plane_moments_any,
    (p: &[f32]) -> (f64, f64),
    {
        let s = sum_map3_pair(p, p, p, |u, _, _| (u as f64, 0.0)).0;
        let m = s / p.len().max(1) as f64;
        let d = |u: f32| u as f64 - m;
        (s, sum_map3_pair(p, p, p, |u, _, _| (d(u) * d(u), 0.0)).0)
    }
);

/// `(Σ dy_i, Σ dy_i·(x_i − μ))` in f64, in one pass (over the shorter
/// length).
pub(crate) fn grad_sums(dy: &[f32], x: &[f32], mu: f64) -> (f64, f64) {
    let n = dy.len().min(x.len());
    let (dy, x) = (&dy[..n], &x[..n]);
    with_avx512!(grad_sums(dy, x, mu), grad_sums_any(dy, x, mu))
}

dispatch!(
    /// [`grad_sums`] through the compiler's vectorisation.
    grad_sums_any,
    (dy: &[f32], x: &[f32], mu: f64) -> (f64, f64),
    sum_map3_pair(dy, x, x, |d, v, _| (d as f64, d as f64 * (v as f64 - mu)))
);

/// [`grad_sums`] of the ReLU-masked gradient `d_i = g_i·[y_i > 0]` of
/// `y_i = max(x_i·a + c, 0)`, without reading `y` or writing `d` out:
/// `(Σ d_i, Σ d_i·(x_i − μ))`. The mask is recomputed by the same
/// operations as the forward (`x·a + c > 0` exactly where `y > 0`), and
/// the lanes are [`grad_sums`]'s (a masked element adds `0.0`), so the
/// sums are bit-identical to `grad_sums(d, x, μ)`.
pub(crate) fn masked_grad_sums(g: &[f32], x: &[f32], mu: f64, a: f32, c: f32) -> (f64, f64) {
    let n = g.len().min(x.len());
    let (g, x) = (&g[..n], &x[..n]);
    with_avx512!(
        masked_grad_sums(g, x, mu, a, c),
        masked_grad_sums_any(g, x, mu, a, c)
    )
}

dispatch!(
    /// [`masked_grad_sums`] through the compiler's vectorisation.
    masked_grad_sums_any,
    (g: &[f32], x: &[f32], mu: f64, a: f32, c: f32) -> (f64, f64),
    sum_map3_pair(g, x, x, |gg, v, _| {
        let d = if v * a + c > 0.0 { gg } else { 0.0 };
        (d as f64, d as f64 * (v as f64 - mu))
    })
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every position of a non-finite value is found, in short slices, at
    /// block edges and past the size tested in parallel.
    #[test]
    fn all_finite_finds_every_non_finite_value() {
        for n in [0usize, 1, 17, 1023, 1024, 1025, (1 << 18) + 5] {
            let mut a: Vec<f32> = (0..n).map(|i| i as f32 * 1e-3 - 7.0).collect();
            assert!(all_finite(&a), "length {n}");
            let spots = [0, n / 2, 1023, 1024, n.saturating_sub(1)];
            for &at in spots.iter().filter(|&&at| at < n) {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    let keep = a[at];
                    a[at] = bad;
                    assert!(!all_finite(&a), "length {n}, {bad} at {at}");
                    a[at] = keep;
                }
            }
        }
    }

    #[test]
    fn masked_sums_equal_sums_of_the_materialised_gradient() {
        for n in [0usize, 1, 9, 31, 33, 49, 100, 784] {
            let g: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            for (a, c) in [(1.3f32, -0.2f32), (-0.7, 0.1), (0.0, 0.0), (2.0, f32::NAN)] {
                // The forward's output and the materialised masked gradient.
                let y: Vec<f32> = x.iter().map(|&v| (v * a + c).max(0.0)).collect();
                let d: Vec<f32> = g
                    .iter()
                    .zip(&y)
                    .map(|(&gg, &yy)| if yy > 0.0 { gg } else { 0.0 })
                    .collect();
                let want = grad_sums(&d, &x, 0.25);
                let got = masked_grad_sums(&g, &x, 0.25, a, c);
                assert_eq!(got.0.to_bits(), want.0.to_bits(), "{n} {a} {c}");
                assert_eq!(got.1.to_bits(), want.1.to_bits(), "{n} {a} {c}");
            }
        }
    }

    /// The AVX-512 forms give the portable forms' sums to the bit, on
    /// lengths with and without whole blocks, registers and a tail.
    #[test]
    fn every_form_gives_the_same_bits() {
        for n in [0usize, 1, 5, 8, 13, 31, 32, 33, 49, 64, 100, 196, 784, 1001] {
            let a: Vec<f32> = (0..n)
                .map(|i| (i as f32 * 0.37).sin() * 3.0 + 0.5)
                .collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let bits = |p: (f64, f64)| (p.0.to_bits(), p.1.to_bits());
            assert_eq!(sum(&a).to_bits(), sum_any(&a).to_bits(), "{n}");
            assert_eq!(bits(plane_moments(&a)), bits(plane_moments_any(&a)), "{n}");
            assert_eq!(
                bits(grad_sums(&a, &b, 0.25)),
                bits(grad_sums_any(&a, &b, 0.25)),
                "{n}"
            );
            for (fa, fc) in [(1.3f32, -0.2f32), (-0.7, 0.1), (2.0, f32::NAN)] {
                assert_eq!(
                    bits(masked_grad_sums(&a, &b, 0.25, fa, fc)),
                    bits(masked_grad_sums_any(&a, &b, 0.25, fa, fc)),
                    "{n} {fa} {fc}"
                );
            }
        }
    }

    #[test]
    fn sums_match_serial_f64() {
        for n in [0usize, 1, 7, 8, 9, 31, 32, 33, 49, 63, 100, 1001] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a.iter().map(|&v| v as f64).sum();
            assert!((sum(&a) - want).abs() < 1e-9, "{n}");
            let want: f64 = a.iter().zip(&b).map(|(&u, &v)| u as f64 * v as f64).sum();
            let got = sum_map3_pair(&a, &b, &b, |u, v, _| (u as f64 * v as f64, 0.0)).0;
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
