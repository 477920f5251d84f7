//! The description of one convolution as the convolution library sees it, and its host
//! reference.
//!
//! [`ConvDesc`] holds exactly the values the CUDA backend turns into cuDNN descriptors
//! (`cudnn.rs`): the NCHW input `[N, C, H, W]`, the filter `[K, C/groups, KH, KW]`, the
//! output `[N, K, Ho, Wo]`, zero padding, stride, the group count (cuDNN's native grouped
//! convolution) and dilation 1 (prune-core has no dilated convolution). The emulated
//! runtime executes the same value on the host ([`ConvDesc::reference`]), so the backend's
//! mapping from tensors and [`Conv2dParams`] to the description, the buffer sizes and the
//! workspace handling run in CI although cuDNN itself does not.
//!
//! The math (cross-correlation, as cuDNN's `CUDNN_CROSS_CORRELATION` and prune-core's CPU
//! convolution), with `g(k) = k / (K/groups)` the group of output channel `k`,
//! `Cg = C/groups` and `ih = oh·sh − ph + i`, `iw = ow·sw − pw + j` (taps outside the
//! input read zero):
//!
//! ```text
//! forward          y[n,k,oh,ow]  = Σ_{c<Cg, i<KH, j<KW} x[n, g(k)·Cg + c, ih, iw] · w[k,c,i,j]
//! backward data    dx[n, g(k)·Cg + c, ih, iw] += dy[n,k,oh,ow] · w[k,c,i,j]
//! backward filter  dw[k,c,i,j]   = Σ_{n, oh, ow} dy[n,k,oh,ow] · x[n, g(k)·Cg + c, ih, iw]
//! ```
//!
//! The two backward passes are the adjoints of the forward map in `x` and in `w`; the
//! host reference accumulates in double precision.

use crate::cpu::Conv2dParams;
use crate::error::{CoreError, Result};

/// Which of the three convolution passes a call runs. The buffers of a pass, in the
/// order the runtimes take them as `(a, b, out)`:
///
/// | pass | a | b | out |
/// | --- | --- | --- | --- |
/// | `Forward` | `x` | `w` | `y` |
/// | `BackwardData` | `dy` | `w` | `dx` |
/// | `BackwardFilter` | `x` | `dy` | `dw` |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvPass {
    Forward,
    BackwardData,
    BackwardFilter,
}

/// One grouped, strided, zero-padded 2-D convolution (NCHW, dilation 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvDesc {
    pub batch: usize,
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    pub out_channels: usize,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub groups: usize,
}

impl ConvDesc {
    /// The description of convolving `x [N, C, H, W]` with `w [K, C/groups, KH, KW]`;
    /// errors name the shapes that do not fit together.
    pub fn new(x: &[usize], w: &[usize], p: &Conv2dParams) -> Result<Self> {
        const OP: &str = "conv2d";
        let groups = p.groups.max(1);
        if x.len() != 4 || w.len() != 4 || w[1] * groups != x[1] {
            return Err(CoreError::ShapeMismatch {
                op: OP,
                lhs: x.to_vec(),
                rhs: w.to_vec(),
            });
        }
        if !w[0].is_multiple_of(groups) {
            return Err(CoreError::InvalidArgument {
                op: OP,
                reason: format!("{groups} groups do not divide the {} filters {w:?}", w[0]),
            });
        }
        if p.stride.0 == 0 || p.stride.1 == 0 {
            return Err(CoreError::InvalidArgument {
                op: OP,
                reason: format!("stride {:?} must be positive", p.stride),
            });
        }
        let d = ConvDesc {
            batch: x[0],
            in_channels: x[1],
            height: x[2],
            width: x[3],
            out_channels: w[0],
            kernel: (w[2], w[3]),
            stride: p.stride,
            padding: p.padding,
            groups,
        };
        if d.height + 2 * d.padding.0 < d.kernel.0 || d.width + 2 * d.padding.1 < d.kernel.1 {
            return Err(CoreError::BadShape {
                op: OP,
                shape: x.to_vec(),
                reason: format!(
                    "the padded input is smaller than the {:?} kernel (padding {:?})",
                    d.kernel, d.padding
                ),
            });
        }
        Ok(d)
    }

    /// `(Ho, Wo) = ((H + 2ph − KH)/sh + 1, (W + 2pw − KW)/sw + 1)`: cuDNN's output size with
    /// dilation 1 (`cudnnGetConvolution2dForwardOutputDim`), and the CPU backend's.
    pub fn output_hw(&self) -> (usize, usize) {
        (
            (self.height + 2 * self.padding.0 - self.kernel.0) / self.stride.0 + 1,
            (self.width + 2 * self.padding.1 - self.kernel.1) / self.stride.1 + 1,
        )
    }

    /// Input channels per group.
    pub fn group_in(&self) -> usize {
        self.in_channels / self.groups
    }

    /// Output channels per group.
    pub fn group_out(&self) -> usize {
        self.out_channels / self.groups
    }

    /// The input shape `[N, C, H, W]`.
    pub fn x_dims(&self) -> [usize; 4] {
        [self.batch, self.in_channels, self.height, self.width]
    }

    /// The filter shape `[K, C/groups, KH, KW]`.
    pub fn w_dims(&self) -> [usize; 4] {
        [
            self.out_channels,
            self.group_in(),
            self.kernel.0,
            self.kernel.1,
        ]
    }

    /// The output shape `[N, K, Ho, Wo]`.
    pub fn y_dims(&self) -> [usize; 4] {
        let (ho, wo) = self.output_hw();
        [self.batch, self.out_channels, ho, wo]
    }

    /// Element counts of the pass's `(a, b, out)` buffers (see [`ConvPass`]).
    pub fn lens(&self, pass: ConvPass) -> [usize; 3] {
        let n = |d: [usize; 4]| d.iter().product::<usize>();
        let (x, w, y) = (n(self.x_dims()), n(self.w_dims()), n(self.y_dims()));
        match pass {
            ConvPass::Forward => [x, w, y],
            ConvPass::BackwardData => [y, w, x],
            ConvPass::BackwardFilter => [x, y, w],
        }
    }

    /// Errors unless buffers of `got` elements `(a, b, out)` hold the pass's tensors (the
    /// device's buffers are at least one element long, so an empty tensor may have one).
    pub fn check(&self, pass: ConvPass, got: [usize; 3]) -> Result<()> {
        let want = self.lens(pass);
        let fits = want.iter().zip(got).all(|(&w, g)| g >= w && g <= w.max(1));
        if fits {
            Ok(())
        } else {
            Err(CoreError::InvalidArgument {
                op: "conv2d",
                reason: format!(
                    "{pass:?} of {self:?} needs buffers of {want:?} elements, got {got:?}"
                ),
            })
        }
    }

    /// Runs `pass` on the host (the definitions in the module documentation), in double
    /// precision; the result overwrites `out`.
    pub fn reference(&self, pass: ConvPass, a: &[f32], b: &[f32], out: &mut [f32]) -> Result<()> {
        self.check(pass, [a.len(), b.len(), out.len()])?;
        let [xl, wl, yl] = self.lens(ConvPass::Forward);
        let mut acc = vec![0.0f64; out.len()];
        // Every (output element, tap) pair once: the three passes differ only in which two
        // of (x, w, dy/y) are read and which one accumulates.
        self.for_each_tap(|xi, wi, yi| match pass {
            ConvPass::Forward => acc[yi] += f64::from(a[xi]) * f64::from(b[wi]),
            ConvPass::BackwardData => acc[xi] += f64::from(a[yi]) * f64::from(b[wi]),
            ConvPass::BackwardFilter => acc[wi] += f64::from(b[yi]) * f64::from(a[xi]),
        });
        let n = match pass {
            ConvPass::Forward => yl,
            ConvPass::BackwardData => xl,
            ConvPass::BackwardFilter => wl,
        };
        for (o, v) in out[..n].iter_mut().zip(acc) {
            *o = v as f32;
        }
        Ok(())
    }

    /// Calls `f(x index, w index, y index)` for every output element and every filter tap
    /// that lands inside the input.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (ho, wo) = self.output_hw();
        let (cg, kg) = (self.group_in(), self.group_out());
        let (kh, kw) = self.kernel;
        let inside = |o: usize, t: usize, s: usize, p: usize, size: usize| {
            (o * s + t).checked_sub(p).filter(|&v| v < size)
        };
        for n in 0..self.batch {
            for k in 0..self.out_channels {
                let c0 = (k / kg) * cg;
                for oh in 0..ho {
                    for ow in 0..wo {
                        let yi = ((n * self.out_channels + k) * ho + oh) * wo + ow;
                        for c in 0..cg {
                            for i in 0..kh {
                                let Some(ih) =
                                    inside(oh, i, self.stride.0, self.padding.0, self.height)
                                else {
                                    continue;
                                };
                                for j in 0..kw {
                                    let Some(iw) =
                                        inside(ow, j, self.stride.1, self.padding.1, self.width)
                                    else {
                                        continue;
                                    };
                                    let xi = ((n * self.in_channels + c0 + c) * self.height + ih)
                                        * self.width
                                        + iw;
                                    let wi = ((k * cg + c) * kh + i) * kw + j;
                                    f(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prune_kernels::cpu_ref::conv;
    use prune_kernels::ConvShape;

    fn vals(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0)
            .collect()
    }

    fn desc(groups: usize, stride: (usize, usize), padding: (usize, usize)) -> ConvDesc {
        let p = Conv2dParams {
            stride,
            padding,
            groups,
        };
        ConvDesc::new(&[2, 6, 5, 7], &[4, 6 / groups, 3, 2], &p).expect("desc")
    }

    /// Groups = 1 against the kernel crate's independent dense convolution and its
    /// masked-conv gradients with every channel kept.
    #[test]
    fn ungrouped_passes_match_the_kernel_reference() {
        for (stride, padding) in [((1, 1), (1, 1)), ((2, 1), (0, 2)), ((1, 3), (2, 0))] {
            let d = desc(1, stride, padding);
            let sh = ConvShape {
                batch: d.batch,
                in_channels: d.in_channels,
                height: d.height,
                width: d.width,
                out_channels: d.out_channels,
                kernel: d.kernel,
                stride,
                padding,
            };
            let [xl, wl, yl] = d.lens(ConvPass::Forward);
            let (x, w, dy) = (vals(xl, 1), vals(wl, 2), vals(yl, 3));
            let mut y = vec![0.0; yl];
            d.reference(ConvPass::Forward, &x, &w, &mut y).unwrap();
            let want = conv::dense_forward(&x, &w, &sh).unwrap();
            let all_in: Vec<u32> = (0..d.in_channels as u32).collect();
            let all_out: Vec<u32> = (0..d.out_channels as u32).collect();
            let (mut dx, mut dx_want) = (vec![0.0; xl], vec![0.0; xl]);
            d.reference(ConvPass::BackwardData, &dy, &w, &mut dx)
                .unwrap();
            conv::backward_input(&dy, &w, &sh, &all_in, &all_out, &mut dx_want).unwrap();
            let (mut dw, mut dw_want) = (vec![0.0; wl], vec![0.0; wl]);
            d.reference(ConvPass::BackwardFilter, &x, &dy, &mut dw)
                .unwrap();
            conv::backward_weight(&dy, &x, &sh, &all_in, &all_out, &mut dw_want).unwrap();
            for (got, want) in [(&y, &want), (&dx, &dx_want), (&dw, &dw_want)] {
                for (g, w) in got.iter().zip(want.iter()) {
                    assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{g} vs {w}");
                }
            }
        }
    }

    /// Grouped passes are adjoint: `<conv(x, w), dy> = <x, data(dy, w)> = <w, filter(x, dy)>`,
    /// and group `g` of the output depends only on group `g` of the input and filters.
    #[test]
    fn grouped_passes_are_adjoint_and_separable() {
        let d = desc(2, (2, 1), (1, 1));
        let [xl, wl, yl] = d.lens(ConvPass::Forward);
        let (x, w, dy) = (vals(xl, 4), vals(wl, 5), vals(yl, 6));
        let (mut y, mut dx, mut dw) = (vec![0.0; yl], vec![0.0; xl], vec![0.0; wl]);
        d.reference(ConvPass::Forward, &x, &w, &mut y).unwrap();
        d.reference(ConvPass::BackwardData, &dy, &w, &mut dx)
            .unwrap();
        d.reference(ConvPass::BackwardFilter, &x, &dy, &mut dw)
            .unwrap();
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(&p, &q)| f64::from(p) * f64::from(q))
                .sum()
        };
        let (fy, fx, fw) = (dot(&y, &dy), dot(&x, &dx), dot(&w, &dw));
        assert!((fy - fx).abs() < 1e-4 * fy.abs().max(1.0), "{fy} vs {fx}");
        assert!((fy - fw).abs() < 1e-4 * fy.abs().max(1.0), "{fy} vs {fw}");
        // Changing the second group's input leaves the first group's outputs alone.
        let mut x2 = x.clone();
        let hw = d.height * d.width;
        for n in 0..d.batch {
            for c in d.group_in()..d.in_channels {
                for q in 0..hw {
                    x2[(n * d.in_channels + c) * hw + q] += 1.0;
                }
            }
        }
        let mut y2 = vec![0.0; yl];
        d.reference(ConvPass::Forward, &x2, &w, &mut y2).unwrap();
        let [_, _, ho, wo] = d.y_dims();
        for n in 0..d.batch {
            for k in 0..d.out_channels {
                let first = k < d.group_out();
                for q in 0..ho * wo {
                    let i = (n * d.out_channels + k) * ho * wo + q;
                    assert_eq!(y[i] == y2[i], first, "n={n} k={k} q={q}");
                }
            }
        }
    }

    #[test]
    fn mismatched_shapes_and_buffers_are_refused() {
        let p = Conv2dParams {
            groups: 2,
            ..Conv2dParams::default()
        };
        assert!(ConvDesc::new(&[1, 4, 5, 5], &[3, 2, 3, 3], &p).is_err());
        assert!(ConvDesc::new(&[1, 4, 5, 5], &[4, 4, 3, 3], &p).is_err());
        assert!(ConvDesc::new(&[1, 4, 2, 2], &[4, 2, 3, 3], &p).is_err());
        let d = ConvDesc::new(&[1, 4, 5, 5], &[4, 2, 3, 3], &p).unwrap();
        assert_eq!(d.y_dims(), [1, 4, 3, 3]);
        let [x, w, y] = d.lens(ConvPass::Forward);
        assert!(d.check(ConvPass::Forward, [x, w, y]).is_ok());
        assert!(d.check(ConvPass::Forward, [x, w, y - 1]).is_err());
        assert!(d.check(ConvPass::BackwardData, [x, w, y]).is_err());
        let mut out = vec![0.0; y - 1];
        assert!(d
            .reference(ConvPass::Forward, &vec![0.0; x], &vec![0.0; w], &mut out)
            .is_err());
    }
}
