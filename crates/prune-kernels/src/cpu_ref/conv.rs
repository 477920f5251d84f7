//! CPU reference of the masked convolution (`kernels/masked_conv.cu`) and a plain dense
//! convolution used to check it.  Accumulation is in f64.

use crate::error::KernelError;
use crate::keep::validate_keep;
use crate::shapes::ConvShape;

fn check(
    shape: &ConvShape,
    keep_in: &[u32],
    keep_out: &[u32],
) -> Result<(usize, usize), KernelError> {
    validate_keep(keep_in, shape.in_channels)?;
    validate_keep(keep_out, shape.out_channels)?;
    shape.input_len()?;
    shape.weight_len()?;
    shape.output_hw()
}

fn expect_len(op: &'static str, name: &str, got: usize, want: usize) -> Result<(), KernelError> {
    if got == want {
        Ok(())
    } else {
        Err(KernelError::shape(
            op,
            format!("`{name}` has {got} elements, expected {want}"),
        ))
    }
}

/// Input coordinate of output position `o` at tap `t`, if inside the input.
fn tap(o: usize, t: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
    let pos = (o * stride + t).checked_sub(pad)?;
    (pos < size).then_some(pos)
}

/// Compact output `[batch, keep_out.len(), Ho, Wo]` of the convolution restricted to the
/// kept channels.
pub fn forward(
    x: &[f32],
    w: &[f32],
    shape: &ConvShape,
    keep_in: &[u32],
    keep_out: &[u32],
) -> Result<Vec<f32>, KernelError> {
    const OP: &str = "cpu masked conv forward";
    let (ho, wo) = check(shape, keep_in, keep_out)?;
    expect_len(OP, "x", x.len(), shape.input_len()?)?;
    expect_len(OP, "weight", w.len(), shape.weight_len()?)?;
    let ConvShape {
        batch: n,
        in_channels: cin,
        height: h,
        width: wd,
        kernel: (kh, kw),
        stride: (sh, sw),
        padding: (ph, pw),
        ..
    } = *shape;
    let kout = keep_out.len();
    let mut y = vec![0.0f32; shape.output_len(kout)?];
    for b in 0..n {
        for (o, &co) in keep_out.iter().enumerate() {
            for oh in 0..ho {
                for ow in 0..wo {
                    let mut acc = 0.0f64;
                    for &ci in keep_in {
                        for r in 0..kh {
                            let Some(ih) = tap(oh, r, sh, ph, h) else {
                                continue;
                            };
                            for s in 0..kw {
                                let Some(iw) = tap(ow, s, sw, pw, wd) else {
                                    continue;
                                };
                                let wv = w[((co as usize * cin + ci as usize) * kh + r) * kw + s];
                                let xv = x[((b * cin + ci as usize) * h + ih) * wd + iw];
                                acc += wv as f64 * xv as f64;
                            }
                        }
                    }
                    y[((b * kout + o) * ho + oh) * wo + ow] = acc as f32;
                }
            }
        }
    }
    Ok(y)
}

/// Input gradient: writes `dx[n, keep_in[i], :, :]` of the full `[batch, Cin, H, W]`
/// buffer for the compact upstream gradient `dy`; other channels are left as they are.
pub fn backward_input(
    dy: &[f32],
    w: &[f32],
    shape: &ConvShape,
    keep_in: &[u32],
    keep_out: &[u32],
    dx: &mut [f32],
) -> Result<(), KernelError> {
    const OP: &str = "cpu masked conv input grad";
    let (ho, wo) = check(shape, keep_in, keep_out)?;
    let kout = keep_out.len();
    expect_len(OP, "dy", dy.len(), shape.output_len(kout)?)?;
    expect_len(OP, "weight", w.len(), shape.weight_len()?)?;
    expect_len(OP, "dx", dx.len(), shape.input_len()?)?;
    let ConvShape {
        batch: n,
        in_channels: cin,
        height: h,
        width: wd,
        kernel: (kh, kw),
        stride: (sh, sw),
        padding: (ph, pw),
        ..
    } = *shape;
    for b in 0..n {
        for &ci in keep_in {
            let ci = ci as usize;
            let mut plane = vec![0.0f64; h * wd];
            for (o, &co) in keep_out.iter().enumerate() {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let g = dy[((b * kout + o) * ho + oh) * wo + ow] as f64;
                        for r in 0..kh {
                            let Some(ih) = tap(oh, r, sh, ph, h) else {
                                continue;
                            };
                            for s in 0..kw {
                                let Some(iw) = tap(ow, s, sw, pw, wd) else {
                                    continue;
                                };
                                let wv = w[((co as usize * cin + ci) * kh + r) * kw + s];
                                plane[ih * wd + iw] += g * wv as f64;
                            }
                        }
                    }
                }
            }
            let base = (b * cin + ci) * h * wd;
            for (d, p) in dx[base..base + h * wd].iter_mut().zip(&plane) {
                *d = *p as f32;
            }
        }
    }
    Ok(())
}

/// Weight gradient: writes `dw[keep_out[o], keep_in[i], :, :]` of the full weight-shaped
/// buffer; other entries are left as they are.
pub fn backward_weight(
    dy: &[f32],
    x: &[f32],
    shape: &ConvShape,
    keep_in: &[u32],
    keep_out: &[u32],
    dw: &mut [f32],
) -> Result<(), KernelError> {
    const OP: &str = "cpu masked conv weight grad";
    let (ho, wo) = check(shape, keep_in, keep_out)?;
    let kout = keep_out.len();
    expect_len(OP, "dy", dy.len(), shape.output_len(kout)?)?;
    expect_len(OP, "x", x.len(), shape.input_len()?)?;
    expect_len(OP, "dw", dw.len(), shape.weight_len()?)?;
    let ConvShape {
        batch: n,
        in_channels: cin,
        height: h,
        width: wd,
        kernel: (kh, kw),
        stride: (sh, sw),
        padding: (ph, pw),
        ..
    } = *shape;
    for (o, &co) in keep_out.iter().enumerate() {
        for &ci in keep_in {
            for r in 0..kh {
                for s in 0..kw {
                    let mut acc = 0.0f64;
                    for b in 0..n {
                        for oh in 0..ho {
                            let Some(ih) = tap(oh, r, sh, ph, h) else {
                                continue;
                            };
                            for ow in 0..wo {
                                let Some(iw) = tap(ow, s, sw, pw, wd) else {
                                    continue;
                                };
                                let g = dy[((b * kout + o) * ho + oh) * wo + ow] as f64;
                                let xv = x[((b * cin + ci as usize) * h + ih) * wd + iw] as f64;
                                acc += g * xv;
                            }
                        }
                    }
                    dw[((co as usize * cin + ci as usize) * kh + r) * kw + s] = acc as f32;
                }
            }
        }
    }
    Ok(())
}

/// Plain dense convolution `[batch, Cout, Ho, Wo]` over all channels, written without the
/// index lists (an independent check of [`forward`]).
pub fn dense_forward(x: &[f32], w: &[f32], shape: &ConvShape) -> Result<Vec<f32>, KernelError> {
    const OP: &str = "cpu dense conv";
    let (ho, wo) = shape.output_hw()?;
    expect_len(OP, "x", x.len(), shape.input_len()?)?;
    expect_len(OP, "weight", w.len(), shape.weight_len()?)?;
    let (n, cin, h, wd, cout) = (
        shape.batch,
        shape.in_channels,
        shape.height,
        shape.width,
        shape.out_channels,
    );
    let (kh, kw) = shape.kernel;
    let mut y = vec![0.0f64; n * cout * ho * wo];
    for b in 0..n {
        for co in 0..cout {
            for ci in 0..cin {
                for r in 0..kh {
                    for s in 0..kw {
                        let wv = w[((co * cin + ci) * kh + r) * kw + s] as f64;
                        for oh in 0..ho {
                            let ih = (oh * shape.stride.0 + r) as isize - shape.padding.0 as isize;
                            if ih < 0 || ih >= h as isize {
                                continue;
                            }
                            for ow in 0..wo {
                                let iw =
                                    (ow * shape.stride.1 + s) as isize - shape.padding.1 as isize;
                                if iw < 0 || iw >= wd as isize {
                                    continue;
                                }
                                let xv = x[((b * cin + ci) * h + ih as usize) * wd + iw as usize];
                                y[((b * cout + co) * ho + oh) * wo + ow] += wv * xv as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(y.into_iter().map(|v| v as f32).collect())
}
