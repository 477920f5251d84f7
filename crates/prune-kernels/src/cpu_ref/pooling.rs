//! CPU reference of `kernels/pooling.cu` (the semantics of prune-core's CPU pooling): max
//! pooling with the first maximum and NaN propagation, average pooling counting padding as
//! zero, written in scatter form (the kernels use the gather form).

/// Geometry of a 2-D pooling on `planes` planes of `h x w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

impl Pool {
    /// `(Ho, Wo)`.
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.h + 2 * self.padding.0 - self.kernel.0) / self.stride.0 + 1,
            (self.w + 2 * self.padding.1 - self.kernel.1) / self.stride.1 + 1,
        )
    }

    fn windows(&self) -> impl Iterator<Item = (usize, usize, usize, Vec<usize>)> + '_ {
        let (ho, wo) = self.out_hw();
        (0..self.planes).flat_map(move |pl| {
            (0..ho * wo).map(move |q| {
                let (oh, ow) = (q / wo, q % wo);
                let mut taps = Vec::new();
                for r in 0..self.kernel.0 {
                    let ih = (oh * self.stride.0 + r) as isize - self.padding.0 as isize;
                    for s in 0..self.kernel.1 {
                        let iw = (ow * self.stride.1 + s) as isize - self.padding.1 as isize;
                        if ih >= 0 && iw >= 0 && (ih as usize) < self.h && (iw as usize) < self.w {
                            taps.push(ih as usize * self.w + iw as usize);
                        }
                    }
                }
                (pl, q, pl * ho * wo + q, taps)
            })
        })
    }

    /// Max pooling: `(y, argmax)` with argmax the flat index in the plane.
    pub fn max_forward(&self, x: &[f32]) -> (Vec<f32>, Vec<i32>) {
        let (mut y, mut arg) = (Vec::new(), Vec::new());
        for (pl, _, _, taps) in self.windows() {
            let base = pl * self.h * self.w;
            let mut best: Option<(f32, usize)> = None;
            for t in taps {
                let v = x[base + t];
                best = match best {
                    None => Some((v, t)),
                    Some((b, _)) if !b.is_nan() && (v > b || v.is_nan()) => Some((v, t)),
                    keep => keep,
                };
            }
            let (v, t) = best
                .map(|(v, t)| (v, t as i32))
                .unwrap_or((f32::NEG_INFINITY, -1));
            y.push(v);
            arg.push(t);
        }
        (y, arg)
    }

    /// Max pooling backward: `dx[argmax] += dy`.
    pub fn max_backward(&self, dy: &[f32], argmax: &[i32]) -> Vec<f64> {
        let (ho, wo) = self.out_hw();
        let mut dx = vec![0.0f64; self.planes * self.h * self.w];
        for (e, (&g, &a)) in dy.iter().zip(argmax).enumerate() {
            if a >= 0 {
                dx[e / (ho * wo) * self.h * self.w + a as usize] += g as f64;
            }
        }
        dx
    }

    /// Average pooling (padding counts as zero).
    pub fn avg_forward(&self, x: &[f32]) -> Vec<f64> {
        let area = (self.kernel.0 * self.kernel.1) as f64;
        self.windows()
            .map(|(pl, _, _, taps)| {
                let base = pl * self.h * self.w;
                taps.iter().map(|&t| x[base + t] as f64).sum::<f64>() / area
            })
            .collect()
    }

    /// Average pooling backward.
    pub fn avg_backward(&self, dy: &[f32]) -> Vec<f64> {
        let area = (self.kernel.0 * self.kernel.1) as f64;
        let mut dx = vec![0.0f64; self.planes * self.h * self.w];
        for (pl, _, e, taps) in self.windows() {
            for t in taps {
                dx[pl * self.h * self.w + t] += dy[e] as f64 / area;
            }
        }
        dx
    }
}
