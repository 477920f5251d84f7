//! Elementwise, dropout, optimizer and reduction kernels (`elementwise.cu`, `optim.cu`,
//! `reduce.cu`) run on the CPU through the launch emulation, against the CPU references.

mod common;
mod emu;

use common::Rng;
use emu::*;
use prune_kernels::cpu_ref::elementwise::{self as ew, Binary, Unary};
use prune_kernels::cpu_ref::{optim, reduce};
use prune_kernels::tiling::BLOCK;

const B: [u32; 3] = [BLOCK, 1, 1];

/// A grid-stride grid deliberately smaller than the work for large n (loops run > once).
fn grid(n: usize) -> [u32; 3] {
    [n.div_ceil(256).clamp(1, 3) as u32, 1, 1]
}

#[test]
fn unary_ops_match_reference() {
    let mut rng = Rng::fresh("emu unary_ops_match_reference");
    let n = 1000;
    let mut x = rng.vec(n, -4.0, 4.0);
    x[0] = f32::NAN;
    x[1] = 0.0;
    for op in Unary::ALL {
        let xin: Vec<f32> = match op {
            Unary::Log | Unary::Sqrt => x.iter().map(|v| v.abs() + 0.01).collect(),
            _ => x.clone(),
        };
        let out = all_schedules("ew_unary", |s| {
            let (xd, y) = (buf(&xin), nan_buf(n));
            let a = [
                xd.arg(),
                y.arg(),
                Arg::i64(n as i64),
                Arg::i32(op as i32),
                Arg::f32(0.75),
            ];
            launch("ew_unary", grid(n), B, &a, s).unwrap();
            vec![y.to_vec()]
        });
        let want = to_f64(&ew::unary(op, &xin, 0.75));
        assert_close(&format!("{op:?}"), &out[0], &want, 2e-6, 1e-7);
    }
}

#[test]
fn binary_ops_broadcast_like_reference() {
    let mut rng = Rng::fresh("emu binary_ops_broadcast_like_reference");
    let cases: [(&[usize], &[usize]); 6] = [
        (&[3, 4, 5], &[3, 4, 5]),       // dense: the contiguous path
        (&[2, 3, 4, 5], &[1, 3, 1, 1]), // per-channel
        (&[4, 1], &[1, 6]),             // outer product
        (&[7], &[2, 3, 7]),             // rank padding
        (&[2, 1, 3, 1, 2, 1, 2, 3], &[1, 2, 1, 2, 1, 2, 1, 1]), // eight dims
        (&[5, 1], &[1]),
    ];
    for (ad, bd) in cases {
        let a = rng.vec(ad.iter().product(), -2.0, 2.0);
        let b = rng.vec(bd.iter().product(), 0.5, 2.0);
        let (dims, sa, sb) = ew::broadcast(ad, bd).unwrap();
        let n: usize = dims.iter().product();
        let contiguous = (ad == bd) as i32;
        let mut meta: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        meta.extend(sa.iter().map(|&s| s as i64));
        meta.extend(sb.iter().map(|&s| s as i64));
        for op in Binary::ALL {
            let out = all_schedules("ew_binary", |s| {
                let (x, y, o) = (buf(&a), buf(&b), nan_buf(n));
                let m = DevBuf::from_slice(&meta).unwrap();
                let args = [
                    x.arg(),
                    y.arg(),
                    o.arg(),
                    m.arg(),
                    Arg::i64(n as i64),
                    Arg::i32(dims.len() as i32),
                    Arg::i32(op as i32),
                    Arg::i32(contiguous),
                ];
                launch("ew_binary", grid(n), B, &args, s).unwrap();
                vec![o.to_vec()]
            });
            let (want, _) = ew::binary(op, &a, ad, &b, bd).unwrap();
            assert_close(
                &format!("{op:?} {ad:?} {bd:?}"),
                &out[0],
                &to_f64(&want),
                1e-6,
                1e-7,
            );
        }
    }
}

#[test]
fn dropout_matches_reference_and_rate() {
    let mut rng = Rng::fresh("emu dropout_matches_reference_and_rate");
    for (n, p) in [(4099usize, 0.3f32), (7, 0.5), (1000, 0.0)] {
        let x = rng.vec(n, -1.0, 1.0);
        let (seed, offset) = (rng.next_u64(), rng.next_u64());
        let out = all_schedules("dropout_fwd", |s| {
            let (xd, y, m) = (buf(&x), nan_buf(n), nan_buf(n));
            let a = [
                xd.arg(),
                y.arg(),
                m.arg(),
                Arg::i64(n as i64),
                Arg::f32(p),
                Arg::u32(seed as u32),
                Arg::u32((seed >> 32) as u32),
                Arg::u32(offset as u32),
                Arg::u32((offset >> 32) as u32),
            ];
            launch("dropout_fwd", grid(n.div_ceil(4)), B, &a, s).unwrap();
            vec![y.to_vec(), m.to_vec()]
        });
        let (y, mask) = ew::dropout(&x, p, seed, offset).unwrap();
        assert_eq!(out[0], y);
        assert_eq!(out[1], mask);
        if n > 4000 {
            let dropped = mask.iter().filter(|&&m| m == 0.0).count() as f64 / n as f64;
            // binomial: sd = sqrt(p(1-p)/n) ~ 0.007
            assert!(
                (dropped - p as f64).abs() < 0.04,
                "dropped {dropped}, p {p}"
            );
        }
    }
}

#[test]
fn optimizer_steps_match_reference() {
    let mut rng = Rng::fresh("emu optimizer_steps_match_reference");
    let n = 777;
    let (w0, g) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
    let v0 = rng.vec(n, -0.1, 0.1);
    for (momentum, nesterov, wd) in [
        (0.0f32, false, 0.0f32),
        (0.9, false, 1e-4),
        (0.9, true, 5e-4),
    ] {
        let out = all_schedules("sgd_step", |s| {
            let (w, gd, v) = (buf(&w0), buf(&g), buf(&v0));
            let a = [
                w.arg(),
                gd.arg(),
                v.arg(),
                Arg::i64(n as i64),
                Arg::f32(0.05),
                Arg::f32(momentum),
                Arg::f32(wd),
                Arg::i32(nesterov as i32),
            ];
            launch("sgd_step", grid(n), B, &a, s).unwrap();
            vec![w.to_vec(), v.to_vec()]
        });
        let (mut w, mut v) = (w0.clone(), v0.clone());
        optim::sgd_step(&mut w, &g, &mut v, 0.05, momentum, wd, nesterov);
        assert_close("sgd w", &out[0], &to_f64(&w), 1e-6, 1e-7);
        assert_close("sgd v", &out[1], &to_f64(&v), 1e-6, 1e-7);
    }
    for m in [0.1f32, 0.0, 1.0] {
        let out = all_schedules("ema_step", |s| {
            let (r, b) = (buf(&w0), buf(&g));
            let a = [r.arg(), b.arg(), Arg::i64(n as i64), Arg::f32(m)];
            launch("ema_step", grid(n), B, &a, s).unwrap();
            vec![r.to_vec()]
        });
        let mut r = w0.clone();
        optim::ema_step(&mut r, &g, m);
        assert_close("ema r", &out[0], &to_f64(&r), 1e-6, 1e-7);
    }
    let m0 = rng.vec(n, -0.1, 0.1);
    let vv0: Vec<f32> = rng.vec(n, 0.0, 0.01);
    for (t, wd) in [(1u32, 0.0f32), (10, 1e-2)] {
        let (bc1, bc2) = optim::adam_bias_corrections(0.9, 0.999, t);
        let out = all_schedules("adam_step", |s| {
            let (w, gd, m, v) = (buf(&w0), buf(&g), buf(&m0), buf(&vv0));
            let a = [
                w.arg(),
                gd.arg(),
                m.arg(),
                v.arg(),
                Arg::i64(n as i64),
                Arg::f32(1e-3),
                Arg::f32(0.9),
                Arg::f32(0.999),
                Arg::f32(1e-8),
                Arg::f32(wd),
                Arg::f32(bc1 as f32),
                Arg::f32(bc2 as f32),
            ];
            launch("adam_step", grid(n), B, &a, s).unwrap();
            vec![w.to_vec(), m.to_vec(), v.to_vec()]
        });
        let (mut w, mut m, mut v) = (w0.clone(), m0.clone(), vv0.clone());
        optim::adam_step(&mut w, &g, &mut m, &mut v, 1e-3, 0.9, 0.999, 1e-8, wd, t);
        assert_close("adam w", &out[0], &to_f64(&w), 1e-6, 1e-7);
        assert_close("adam m", &out[1], &to_f64(&m), 1e-6, 1e-8);
        assert_close("adam v", &out[2], &to_f64(&v), 1e-6, 1e-9);
    }
}

#[test]
fn reductions_match_reference() {
    let mut rng = Rng::fresh("emu reductions_match_reference");
    for (outer, red, inner) in [
        (5usize, 1000usize, 1usize),
        (3, 7, 1),
        (4, 9, 13),
        (1, 300, 70),
        (2, 1, 5),
    ] {
        let x = rng.vec(outer * red * inner, -1.0, 1.0);
        let scale = 1.0 / red as f32;
        let out = all_schedules("reduce", |s| {
            let (xd, y) = (buf(&x), nan_buf(outer * inner));
            if inner == 1 {
                let a = [
                    xd.arg(),
                    y.arg(),
                    Arg::i64(outer as i64),
                    Arg::i32(red as i32),
                    Arg::f32(scale),
                ];
                launch("reduce_rows", [outer.min(2) as u32, 1, 1], B, &a, s).unwrap();
            } else {
                let a = [
                    xd.arg(),
                    y.arg(),
                    Arg::i64(outer as i64),
                    Arg::i32(red as i32),
                    Arg::i32(inner as i32),
                    Arg::f32(scale),
                ];
                launch("reduce_cols", grid(outer * inner), B, &a, s).unwrap();
            }
            vec![y.to_vec()]
        });
        let want = reduce::reduce(&x, outer, red, inner, scale);
        assert_close(
            &format!("mean {outer}x{red}x{inner}"),
            &out[0],
            &to_f64(&want),
            1e-5,
            1e-6,
        );
    }
}

#[test]
fn log_softmax_and_nll_match_reference() {
    let mut rng = Rng::fresh("emu log_softmax_and_nll_match_reference");
    for (rows, cols) in [(5usize, 10usize), (3, 1000), (1, 1), (4, 257)] {
        let mut x = rng.vec(rows * cols, -8.0, 8.0);
        x[0] = 80.0; // exp overflows without the max shift
        let dy = rng.vec(rows * cols, -1.0, 1.0);
        let mut labels: Vec<i32> = (0..rows).map(|_| rng.int(0, cols - 1) as i32).collect();
        if rows > 2 {
            labels[2] = cols as i32; // out of range: NaN
        }
        let dloss = rng.vec(rows, 0.5, 1.5);
        let scale = 1.0 / rows as f32;
        let out = all_schedules("log_softmax", |s| {
            let (xd, y, dyd, dx) = (buf(&x), nan_buf(x.len()), buf(&dy), nan_buf(x.len()));
            let g = [rows.min(2) as u32, 1, 1];
            let (r, c) = (Arg::i32(rows as i32), Arg::i32(cols as i32));
            launch("log_softmax_fwd", g, B, &[xd.arg(), y.arg(), r, c], s).unwrap();
            launch(
                "log_softmax_bwd",
                g,
                B,
                &[dyd.arg(), y.arg(), dx.arg(), r, c],
                s,
            )
            .unwrap();
            let lab = DevBuf::from_slice(&labels).unwrap();
            let (loss, dl, dlogp) = (nan_buf(rows), buf(&dloss), nan_buf(x.len()));
            launch(
                "nll_fwd",
                [1, 1, 1],
                B,
                &[y.arg(), lab.arg(), loss.arg(), r, c],
                s,
            )
            .unwrap();
            let a = [dl.arg(), lab.arg(), dlogp.arg(), r, c, Arg::f32(scale)];
            launch("nll_bwd", grid(x.len()), B, &a, s).unwrap();
            vec![y.to_vec(), dx.to_vec(), loss.to_vec(), dlogp.to_vec()]
        });
        let y = reduce::log_softmax(&x, rows, cols);
        assert_close("log_softmax", &out[0], &to_f64(&y), 1e-5, 1e-5);
        let dx = reduce::log_softmax_backward(&dy, &out[0], rows, cols);
        assert_close("log_softmax bwd", &out[1], &to_f64(&dx), 1e-5, 1e-5);
        assert_close(
            "nll",
            &out[2],
            &to_f64(&reduce::nll(&out[0], &labels, cols)),
            0.0,
            0.0,
        );
        let want = reduce::nll_backward(&dloss, &labels, cols, scale);
        assert_close("nll bwd", &out[3], &to_f64(&want), 0.0, 0.0);
    }
}
