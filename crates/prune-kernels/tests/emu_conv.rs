//! `kernels/masked_conv.cu` run on the CPU through the launch emulation, against the CPU
//! reference: edge tiles in M, N and K, strides and padding, empty and full keep lists,
//! the weight gradient with and without split-K, untouched entries left as they were.

mod common;
mod emu;

use common::Rng;
use emu::*;
use prune_kernels::cpu_ref::conv;
use prune_kernels::tiling::{conv_grid, wgrad_split, BLOCK};
use prune_kernels::ConvShape;

fn shape(
    batch: usize,
    cin: usize,
    hw: (usize, usize),
    cout: usize,
    k: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> ConvShape {
    ConvShape {
        batch,
        in_channels: cin,
        height: hw.0,
        width: hw.1,
        out_channels: cout,
        kernel: k,
        stride,
        padding,
    }
}

fn shapes() -> Vec<ConvShape> {
    vec![
        shape(2, 5, (7, 6), 4, (3, 3), (1, 1), (1, 1)),
        shape(1, 3, (9, 5), 6, (3, 2), (2, 1), (0, 1)),
        shape(2, 6, (8, 7), 5, (5, 3), (2, 3), (2, 1)),
        shape(1, 4, (6, 5), 70, (1, 1), (1, 1), (0, 0)), // two M tiles
        shape(4, 3, (16, 16), 2, (3, 3), (1, 1), (1, 1)), // weight gradient split over K
    ]
}

fn geom(s: &ConvShape, kin: usize, kout: usize) -> Vec<Arg> {
    let (ho, wo) = s.output_hw().unwrap();
    [
        s.batch,
        s.in_channels,
        s.height,
        s.width,
        s.kernel.0,
        s.kernel.1,
        s.stride.0,
        s.stride.1,
        s.padding.0,
        s.padding.1,
        ho,
        wo,
        kin,
        kout,
    ]
    .iter()
    .map(|&v| Arg::i32(v as i32))
    .collect()
}

fn keep_cases(rng: &mut Rng, bound: usize) -> Vec<Vec<u32>> {
    vec![
        (0..bound as u32).collect(),
        rng.subset(bound, 1),
        rng.subset(bound, bound.div_ceil(2)),
        vec![],
    ]
}

#[test]
fn forward_and_gradients_match_reference() {
    let mut rng = Rng::fresh("emu conv forward_and_gradients_match_reference");
    let mut split_seen = false;
    for s in shapes() {
        let (ho, wo) = s.output_hw().unwrap();
        let x = rng.vec(s.input_len().unwrap(), -1.0, 1.0);
        let w = rng.vec(s.weight_len().unwrap(), -1.0, 1.0);
        let kins = keep_cases(&mut rng, s.in_channels);
        let kouts = keep_cases(&mut rng, s.out_channels);
        for (ki, ko) in kins.iter().zip(kouts.iter().rev()) {
            let (kin, kout) = (ki.len(), ko.len());
            let what = format!("{s:?} keep_in {ki:?} keep_out {ko:?}");
            let dy = rng.vec(s.batch * kout * ho * wo, -1.0, 1.0);
            let taps = s.kernel.0 * s.kernel.1;

            // forward: M = kout, N = batch*Ho*Wo
            let want = conv::forward(&x, &w, &s, ki, ko).unwrap();
            if kout > 0 && !want.is_empty() {
                let out = all_schedules("masked_conv_fwd", |sched| {
                    let (xd, wd, kid, kod) = (buf(&x), buf(&w), ubuf(ki), ubuf(ko));
                    let y = nan_buf(want.len());
                    let (gx, gy) = conv_grid(kout, s.batch * ho * wo).unwrap();
                    let mut a = vec![xd.arg(), wd.arg(), kid.arg(), kod.arg(), y.arg()];
                    a.extend(geom(&s, kin, kout));
                    launch("masked_conv_fwd", [gx, gy, 1], [BLOCK, 1, 1], &a, sched).unwrap();
                    vec![y.to_vec()]
                });
                assert_close(&format!("fwd {what}"), &out[0], &to_f64(&want), 1e-5, 1e-5);
            }

            // input gradient: M = kin, N = batch*H*W; other channels untouched (sentinel 7)
            let mut want_dx = vec![7.0f32; x.len()];
            conv::backward_input(&dy, &w, &s, ki, ko, &mut want_dx).unwrap();
            if kin > 0 {
                let out = all_schedules("masked_conv_dgrad", |sched| {
                    let (dyd, wd, kid, kod) = (buf(&dy), buf(&w), ubuf(ki), ubuf(ko));
                    let dx = DevBuf::filled(x.len(), 7.0f32).unwrap();
                    let (gx, gy) = conv_grid(kin, s.batch * s.height * s.width).unwrap();
                    let mut a = vec![dyd.arg(), wd.arg(), kid.arg(), kod.arg(), dx.arg()];
                    a.extend(geom(&s, kin, kout));
                    launch("masked_conv_dgrad", [gx, gy, 1], [BLOCK, 1, 1], &a, sched).unwrap();
                    vec![dx.to_vec()]
                });
                assert_close(
                    &format!("dgrad {what}"),
                    &out[0],
                    &to_f64(&want_dx),
                    1e-5,
                    1e-5,
                );
            }

            // weight gradient: M = kout, N = kin*taps, K = batch*Ho*Wo
            let mut want_dw = vec![7.0f32; w.len()];
            conv::backward_weight(&dy, &x, &s, ki, ko, &mut want_dw).unwrap();
            if kin > 0 && kout > 0 {
                let (m, n, k) = (kout, kin * taps, s.batch * ho * wo);
                let (splits, per) = wgrad_split(m, n, k, 132);
                split_seen |= splits > 1;
                let out = all_schedules("masked_conv_wgrad", |sched| {
                    let (dyd, xd, kid, kod) = (buf(&dy), buf(&x), ubuf(ki), ubuf(ko));
                    let dw = DevBuf::filled(w.len(), 7.0f32).unwrap();
                    let (gx, gy) = conv_grid(m, n).unwrap();
                    let partial = nan_buf(splits * m * n);
                    let target = if splits == 1 { dw.arg() } else { partial.arg() };
                    let mut a = vec![dyd.arg(), xd.arg(), kid.arg(), kod.arg(), target];
                    a.extend(geom(&s, kin, kout));
                    a.push(Arg::i32(per as i32));
                    a.push(Arg::i32((splits > 1) as i32));
                    launch(
                        "masked_conv_wgrad",
                        [gx, gy, splits as u32],
                        [BLOCK, 1, 1],
                        &a,
                        sched,
                    )
                    .unwrap();
                    if splits > 1 {
                        let total = m * n;
                        launch(
                            "masked_conv_wgrad_reduce",
                            [total.div_ceil(256) as u32, 1, 1],
                            [BLOCK, 1, 1],
                            &[
                                partial.arg(),
                                kid.arg(),
                                kod.arg(),
                                dw.arg(),
                                Arg::i32(s.in_channels as i32),
                                Arg::i32(taps as i32),
                                Arg::i32(kin as i32),
                                Arg::i32(kout as i32),
                                Arg::i32(splits as i32),
                            ],
                            sched,
                        )
                        .unwrap();
                    }
                    vec![dw.to_vec()]
                });
                let tol = 1e-5 * (k as f64).sqrt();
                assert_close(
                    &format!("wgrad {what}"),
                    &out[0],
                    &to_f64(&want_dw),
                    1e-5,
                    tol,
                );
            }
        }
    }
    assert!(split_seen, "no shape exercised the split-K weight gradient");
}
