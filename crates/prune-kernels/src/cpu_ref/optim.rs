//! CPU reference of `kernels/optim.cu`, the fused optimizer updates (the same arithmetic as
//! prune-core's `Sgd` and `Adam`, in f32 like the kernels).

/// The running average `r = (1 − m)·r + m·b` in place (batch norm's running statistics,
/// PyTorch's convention).
pub fn ema_step(r: &mut [f32], b: &[f32], m: f32) {
    for (r, &b) in r.iter_mut().zip(b) {
        *r = (1.0 - m) * *r + m * b;
    }
}

/// SGD with L2 weight decay and optional (Nesterov) momentum, in place.
pub fn sgd_step(
    w: &mut [f32],
    g: &[f32],
    v: &mut [f32],
    lr: f32,
    momentum: f32,
    wd: f32,
    nesterov: bool,
) {
    for ((w, &g), v) in w.iter_mut().zip(g).zip(v.iter_mut()) {
        let g = g + wd * *w;
        if momentum == 0.0 {
            *w -= lr * g;
        } else {
            *v = momentum * *v + g;
            *w -= lr * if nesterov { g + momentum * *v } else { *v };
        }
    }
}

/// Adam with L2 weight decay at step `t` (1-based), in place.
#[allow(clippy::too_many_arguments)]
pub fn adam_step(
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    lr: f32,
    b1: f32,
    b2: f32,
    eps: f32,
    wd: f32,
    t: u32,
) {
    let (bc1, bc2) = adam_bias_corrections(b1, b2, t);
    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = g + wd * *w;
        *m = b1 * *m + (1.0 - b1) * g;
        *v = b2 * *v + (1.0 - b2) * g * g;
        *w -= (lr as f64 * (*m as f64 / bc1) / ((*v as f64 / bc2).sqrt() + eps as f64)) as f32;
    }
}

/// `(1 - b1^t, 1 - b2^t)` in double precision.
pub fn adam_bias_corrections(b1: f32, b2: f32, t: u32) -> (f64, f64) {
    let t = t.min(i32::MAX as u32) as i32;
    (1.0 - (b1 as f64).powi(t), 1.0 - (b2 as f64).powi(t))
}
