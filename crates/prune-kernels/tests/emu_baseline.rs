//! `kernels/baseline.cu` (the benchmark baselines) run on the CPU through the launch
//! emulation: the unfused noise chain must give the fused kernel's result.

mod common;
mod emu;

use common::Rng;
use emu::*;
use prune_kernels::cpu_ref::sbp;
use prune_kernels::tiling::BLOCK;
use prune_kernels::{NoiseMode, SbpShape};

/// A gate other than the first at a step other than the first, so the
/// counter words of the noise stream are exercised.
const STREAM_LAYER: u32 = 3;
const STREAM_STEP: u32 = 7;

fn stream(seed: u64) -> prune_kernels::cpu_ref::sbp::NoiseStream {
    prune_kernels::cpu_ref::sbp::NoiseStream::new(seed, STREAM_LAYER, STREAM_STEP)
}

#[test]
fn unfused_chain_matches_reference() {
    let mut rng = Rng::fresh("emu unfused_chain_matches_reference");
    for shape in [SbpShape::nchw(3, 5, 3, 3), SbpShape::features(20, 13)] {
        for mode in [NoiseMode::PerChannel, NoiseMode::PerExample] {
            let c = shape.channels;
            let n = shape.numel().unwrap();
            let x = rng.vec(n, -2.0, 2.0);
            let mu = rng.vec(c, -3.0, 0.5);
            let ls = rng.vec(c, -3.0, 0.5);
            let seed = rng.next_u64();
            let count = shape.theta_len(mode).unwrap();
            let pe = (mode == NoiseMode::PerExample) as i32;
            let out = all_schedules("unfused chain", |sched| {
                let (xd, mud, lsd) = (buf(&x), buf(&mu), buf(&ls));
                let (eps, logt, theta, y) =
                    (nan_buf(count), nan_buf(count), nan_buf(count), nan_buf(n));
                let g = [count.div_ceil(256) as u32, 1, 1];
                let b = [BLOCK, 1, 1];
                launch(
                    "base_noise_uniform",
                    g,
                    b,
                    &[
                        eps.arg(),
                        Arg::i32(shape.rows as i32),
                        Arg::i32(c as i32),
                        Arg::u32(seed as u32),
                        Arg::u32((seed >> 32) as u32),
                        Arg::u32(STREAM_STEP),
                        Arg::u32(2 * STREAM_LAYER),
                        Arg::i32(pe),
                    ],
                    sched,
                )
                .unwrap();
                launch(
                    "base_noise_log_theta",
                    g,
                    b,
                    &[
                        eps.arg(),
                        mud.arg(),
                        lsd.arg(),
                        logt.arg(),
                        Arg::i64(count as i64),
                        Arg::i32(c as i32),
                    ],
                    sched,
                )
                .unwrap();
                launch(
                    "base_exp",
                    g,
                    b,
                    &[logt.arg(), theta.arg(), Arg::i64(count as i64)],
                    sched,
                )
                .unwrap();
                launch(
                    "base_scale_channels",
                    [n.div_ceil(256) as u32, 1, 1],
                    b,
                    &[
                        xd.arg(),
                        theta.arg(),
                        y.arg(),
                        Arg::i64(n as i64),
                        Arg::i32(c as i32),
                        Arg::i32(shape.inner as i32),
                        Arg::i32(pe),
                    ],
                    sched,
                )
                .unwrap();
                vec![theta.to_vec(), y.to_vec()]
            });
            let (y, theta) = sbp::forward(&x, &shape, &mu, &ls, stream(seed), mode).unwrap();
            // log theta and exp go through float: a few ulps of theta.
            assert_close("theta", &out[0], &to_f64(&theta), 1e-5, 1e-30);
            assert_close("y", &out[1], &to_f64(&y), 1e-5, 1e-30);
        }
    }
}
