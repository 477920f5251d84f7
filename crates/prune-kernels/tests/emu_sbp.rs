//! `kernels/sbp_noise.cu` run on the CPU through the launch emulation, against the CPU
//! reference: float4 and scalar tiles, channels split into chunks, several row tiles,
//! per-channel and per-example noise, the mirrored (upper-tail) branch and every clamp.
//! Forward and backward go through the `SbpNoise` wrapper on the emulated runtime (grid
//! planning, the per-example sampling step, workspaces and argument lists included).

mod common;
mod emu;

use common::Rng;
use emu::*;
use prune_kernels::cpu_ref::{sbp, sbp_closed};
use prune_kernels::tiling::BLOCK;
use prune_kernels::{Emu, EmuStream, KernelContext, NoiseMode, SbpNoise, SbpShape};

/// A gate other than the first at a step other than the first, so the
/// counter words of the noise stream are exercised.
const STREAM_LAYER: u32 = 3;
const STREAM_STEP: u32 = 7;

fn stream(seed: u64) -> prune_kernels::cpu_ref::sbp::NoiseStream {
    prune_kernels::cpu_ref::sbp::NoiseStream::new(seed, STREAM_LAYER, STREAM_STEP)
}

/// Parameters that reach the ordinary, mirrored and clamped branches of the sampler.
fn params(rng: &mut Rng, c: usize) -> (Vec<f32>, Vec<f32>) {
    let mut mu = Vec::with_capacity(c);
    let mut ls = Vec::with_capacity(c);
    for k in 0..c {
        let (m, l) = match k % 6 {
            0 => (rng.range(-3.0, 1.0), rng.range(-3.0, 0.5)),
            1 => (rng.range(-30.0, -21.0), rng.range(-2.0, 0.0)), // alpha > 0: mirrored
            2 => (rng.range(-1.0, 0.0), 21.0 + rng.range(0.0, 3.0)), // log_sigma clamp
            3 => (rng.range(-1.0, 1.0), -25.0),                   // log_sigma below range
            4 => (rng.range(2.0, 6.0), rng.range(-4.0, -2.0)),    // mass at the upper bound
            _ => (rng.range(-0.5, 0.5), rng.range(2.0, 5.0)),     // u-clip
        };
        mu.push(m as f32);
        ls.push(l as f32);
    }
    (mu, ls)
}

fn shapes() -> Vec<(SbpShape, u32)> {
    vec![
        (SbpShape::nchw(3, 5, 4, 4), 132),   // float4 tiles
        (SbpShape::nchw(4, 7, 3, 3), 132),   // scalar tiles (inner 9)
        (SbpShape::nchw(2, 3, 33, 33), 132), // chunks of one channel (inner 1089), scalar
        (SbpShape::nchw(2, 2, 36, 36), 1),   // chunks, float4
        (SbpShape::features(37, 6), 1),      // inner 1, several row tiles
        (SbpShape::features(9, 1030), 132),  // > 1024 channels per row: two column tiles
        (SbpShape::nchw(40, 3, 1, 2), 1),    // inner 2, rows per tile > 1
    ]
}

/// The SBP wrapper on the emulated device with `sms` multiprocessors: the same grid
/// planning, argument lists and sampling step as on a GPU.
fn noise(sms: u32, sched: Schedule) -> (SbpNoise<Emu>, EmuStream) {
    let kc = KernelContext::emulated(sms, sched);
    (SbpNoise::new(&kc).unwrap(), *kc.stream())
}

fn forward(
    x: &[f32],
    shape: SbpShape,
    sms: u32,
    mu: &[f32],
    ls: &[f32],
    seed: u64,
    mode: NoiseMode,
    sched: Schedule,
) -> Vec<Vec<f32>> {
    let (sbp, s) = noise(sms, sched);
    let (y, theta) = sbp
        .forward_host(&s, x, shape, mu, ls, stream(seed), mode)
        .unwrap();
    vec![y, theta]
}

#[test]
fn forward_matches_reference() {
    let mut rng = Rng::fresh("emu sbp forward_matches_reference");
    for (shape, sms) in shapes() {
        for mode in [NoiseMode::PerChannel, NoiseMode::PerExample] {
            let x = rng.vec(shape.numel().unwrap(), -2.0, 2.0);
            let (mu, ls) = params(&mut rng, shape.channels);
            let seed = rng.next_u64();
            let out = all_schedules("sbp_forward", |s| {
                forward(&x, shape, sms, &mu, &ls, seed, mode, s)
            });
            let (y, theta) = sbp::forward(&x, &shape, &mu, &ls, stream(seed), mode).unwrap();
            let what = format!("{shape:?} {mode:?}");
            assert_close(
                &format!("theta {what}"),
                &out[1],
                &to_f64(&theta),
                1e-6,
                1e-30,
            );
            assert_close(&format!("y {what}"), &out[0], &to_f64(&y), 1e-6, 1e-30);
        }
    }
}

#[test]
fn backward_matches_reference() {
    let mut rng = Rng::fresh("emu sbp backward_matches_reference");
    for (shape, sms) in shapes() {
        for mode in [NoiseMode::PerChannel, NoiseMode::PerExample] {
            let n = shape.numel().unwrap();
            let c = shape.channels;
            let (x, dy) = (rng.vec(n, -2.0, 2.0), rng.vec(n, -1.0, 1.0));
            let (mu, ls) = params(&mut rng, c);
            let seed = rng.next_u64();
            let theta =
                forward(&x, shape, sms, &mu, &ls, seed, mode, Schedule::Ascending).swap_remove(1);
            let out = all_schedules("sbp_backward", |sched| {
                let (sbp, s) = noise(sms, sched);
                let g = sbp
                    .backward_host(&s, &dy, &x, &theta, shape, &mu, &ls, stream(seed), mode)
                    .unwrap();
                vec![g.dx, g.dmu, g.dlog_sigma, g.dtheta]
            });
            let g = sbp::backward(&dy, &x, &shape, &mu, &ls, stream(seed), mode).unwrap();
            let what = format!("{shape:?} {mode:?}");
            assert_close(&format!("dx {what}"), &out[0], &to_f64(&g.dx), 1e-6, 1e-30);
            // Float partial sums of up to a few thousand terms of magnitude <= 2.
            let scale = (n as f64 / theta.len() as f64).sqrt();
            assert_close(
                &format!("dtheta {what}"),
                &out[3],
                &g.dtheta,
                1e-5,
                1e-5 * scale,
            );
            let tol = |v: &[f64]| 1e-5 * scale * v.iter().fold(1.0f64, |m, x| m.max(x.abs()));
            assert_close(&format!("dmu {what}"), &out[1], &g.dmu, 1e-4, tol(&g.dmu));
            assert_close(
                &format!("dls {what}"),
                &out[2],
                &g.dlog_sigma,
                1e-4,
                tol(&g.dlog_sigma),
            );
        }
    }
}

#[test]
fn stats_match_reference() {
    let mut rng = Rng::fresh("emu sbp stats_match_reference");
    let c = 300; // two blocks, the second partly idle
    let (mut mu, mut ls) = params(&mut rng, c);
    mu.extend([-40.0, 5.0, 0.0, -20.0]);
    ls.extend([3.0, -18.0, 30.0, -30.0]);
    let c = mu.len();
    let out = all_schedules("sbp_channel_stats", |s| {
        let (mud, lsd) = (buf(&mu), buf(&ls));
        let (mean, snr, kl) = (nan_buf(c), nan_buf(c), nan_buf(c));
        launch(
            "sbp_channel_stats",
            [c.div_ceil(256) as u32, 1, 1],
            [BLOCK, 1, 1],
            &[
                mud.arg(),
                lsd.arg(),
                mean.arg(),
                snr.arg(),
                kl.arg(),
                Arg::i32(c as i32),
            ],
            s,
        )
        .unwrap();
        vec![mean.to_vec(), snr.to_vec(), kl.to_vec()]
    });
    let st: Vec<_> = mu
        .iter()
        .zip(&ls)
        .map(|(&m, &l)| sbp::stats(m as f64, l as f64))
        .collect();
    let mean: Vec<f64> = st.iter().map(|s| s.mean).collect();
    let kl: Vec<f64> = st.iter().map(|s| s.kl).collect();
    assert_close("mean", &out[0], &mean, 1e-5, 1e-30);
    assert_close("kl", &out[2], &kl, 1e-5, 1e-6);
    // SNR: from the log-moment second difference, and where Var/E² falls below
    // DIRECT_VAR_MIN (the second difference has lost its digits) from the centred
    // Gauss–Legendre integral, as the reference does: both regimes to float rounding.
    let concentrated = 1.0 / sbp_closed::DIRECT_VAR_MIN.sqrt();
    let (mut direct, mut tight) = (0, 0);
    for (i, s) in st.iter().enumerate() {
        let got = f64::from(out[1][i]);
        if s.snr < concentrated {
            direct += 1;
        } else {
            tight += 1;
        }
        let tol = 1e-5 * s.snr.abs() + 1e-30;
        assert!(
            (got - s.snr).abs() <= tol,
            "snr[{i}] (mu {}, log sigma {}): got {got}, want {}",
            mu[i],
            ls[i],
            s.snr
        );
    }
    assert!(
        direct > 100 && tight > 0,
        "both regimes reached: {direct} direct, {tight} concentrated"
    );
}
