//! Zero-padded input planes for the direct kernel (`conv_flat.rs`; the
//! row-wise transform builds the same planes in registers,
//! `conv_wino_kernels.rs`).
//!
//! One image `x [cin, h, w]` becomes `cin` planes of `hp` rows at a pitch
//! `wp` (`hp ≥ ph + h`, `wp ≥ pw + w`): padded row `r` of plane `c` holds
//! `pw` zeros, row `r − ph` of channel `c` (zeros above and below the
//! image), and zeros to the pitch; the buffer's slack after the last plane
//! is zero too. Every value of the buffer is written exactly once, whatever
//! it held: with AVX-512 each padded row is whole 16-value stores of masked
//! loads from the image row (lanes outside the row load as zeros), so the
//! padding costs no separate pass.

use super::conv_flat::FlatGeom;

/// Where an image's rows go in its padded planes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Padding {
    pub(crate) cin: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) ph: usize,
    pub(crate) pw: usize,
    /// Padded rows per plane.
    pub(crate) hp: usize,
    /// Row pitch.
    pub(crate) wp: usize,
}

impl Padding {
    /// The padding of `g`'s input into planes of `hp` rows at pitch `wp`.
    pub(crate) fn of(g: &FlatGeom, hp: usize, wp: usize) -> Self {
        Self {
            cin: g.cin,
            h: g.h,
            w: g.w,
            ph: g.ph,
            pw: g.pw,
            hp,
            wp,
        }
    }

    /// Values per padded plane.
    fn plane(&self) -> usize {
        self.hp * self.wp
    }

    /// One image `x` into the padded planes `p` (every value of `p`
    /// written; see the module doc).
    pub(crate) fn apply(&self, x: &[f32], p: &mut [f32]) {
        assert!(self.ph + self.h <= self.hp && self.pw + self.w <= self.wp);
        assert!(x.len() >= self.cin * self.h * self.w && p.len() >= self.cin * self.plane());
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is available; the assertions bound every
            // unmasked lane of the loads and every store.
            unsafe { avx512::apply(self, x, p) };
            return;
        }
        self.apply_scalar(x, p);
    }

    /// [`Padding::apply`] by slice copies and fills.
    pub(crate) fn apply_scalar(&self, x: &[f32], p: &mut [f32]) {
        let (wp, plane) = (self.wp, self.plane());
        for (c, pc) in p.chunks_mut(plane).enumerate().take(self.cin) {
            pc.fill(0.0);
            for r in 0..self.h {
                let src = &x[(c * self.h + r) * self.w..][..self.w];
                let at = (r + self.ph) * wp + self.pw;
                pc[at..at + self.w].copy_from_slice(src);
            }
        }
        p[self.cin * plane..].fill(0.0);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::Padding;
    use std::arch::x86_64::*;

    const LANES: usize = 16;

    /// Lanes `j < n` set.
    fn first(n: usize) -> __mmask16 {
        if n >= LANES {
            0xFFFF
        } else {
            (1u16 << n) - 1
        }
    }

    /// See [`Padding::apply`].
    ///
    /// # Safety
    /// AVX-512F; `x` holds the image and `p` at least `cin` planes.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn apply(g: &Padding, x: &[f32], p: &mut [f32]) {
        let (wp, w, pw) = (g.wp, g.w, g.pw);
        let (xp, pp) = (x.as_ptr(), p.as_mut_ptr());
        // Per 16-value store of a row at column `k`: the lanes holding
        // image values, `pw ≤ k + j < pw + w`, read from `row + k + j − pw`.
        let chunks: Vec<(usize, __mmask16, __mmask16)> = (0..wp)
            .step_by(LANES)
            .map(|k| {
                let lo = pw.saturating_sub(k).min(LANES);
                let hi = (pw + w).saturating_sub(k).min(LANES);
                let load = first(hi) & !first(lo);
                (k, load, first(wp - k))
            })
            .collect();
        // SAFETY: a lane of a load is set only where `k + j − pw` lies in
        // `0..w`, inside the image row (asserted by the caller); masked-off
        // lanes are not read, so the base pointer may point before the
        // row (`wrapping_sub`). Stores stay inside row `r` of plane `c`.
        unsafe {
            for c in 0..g.cin {
                for r in 0..g.hp {
                    let dst = pp.add((c * g.hp + r) * wp);
                    let inside = r >= g.ph && r - g.ph < g.h;
                    let row = if inside {
                        xp.add((c * g.h + r - g.ph) * w).wrapping_sub(pw)
                    } else {
                        xp
                    };
                    for &(k, load, store) in &chunks {
                        let v = if inside {
                            _mm512_maskz_loadu_ps(load, row.wrapping_add(k))
                        } else {
                            _mm512_setzero_ps()
                        };
                        _mm512_mask_storeu_ps(dst.add(k), store, v);
                    }
                }
            }
        }
        p[g.cin * g.plane()..].fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::Padding;

    /// Both paths against the padded planes built value by value, over a
    /// buffer of NaNs: pitches narrower and wider than a vector, padding
    /// of 0–2, rows longer than one vector.
    #[test]
    fn every_value_written_once_and_right() {
        for &(cin, h, w, ph, pw, extra_w, slack) in &[
            (3usize, 5usize, 7usize, 1usize, 1usize, 0usize, 7usize),
            (2, 28, 28, 1, 1, 2, 16),
            (2, 9, 33, 2, 2, 3, 0),
            (1, 4, 3, 0, 0, 0, 5),
            (4, 6, 17, 0, 2, 1, 20),
        ] {
            let g = Padding {
                cin,
                h,
                w,
                ph,
                pw,
                hp: h + 2 * ph,
                wp: w + 2 * pw + extra_w,
            };
            let x: Vec<f32> = (0..cin * h * w).map(|i| i as f32 + 0.5).collect();
            let len = cin * g.hp * g.wp + slack;
            let mut want = vec![0.0f32; len];
            for c in 0..cin {
                for r in 0..h {
                    for j in 0..w {
                        want[(c * g.hp + r + ph) * g.wp + pw + j] = x[(c * h + r) * w + j];
                    }
                }
            }
            let (mut got, mut scalar) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            g.apply(&x, &mut got);
            g.apply_scalar(&x, &mut scalar);
            assert_eq!(
                got, want,
                "{cin}×{h}×{w}, padding {ph}/{pw}, pitch {}",
                g.wp
            );
            assert_eq!(scalar, want, "scalar, {cin}×{h}×{w}");
        }
    }
}
