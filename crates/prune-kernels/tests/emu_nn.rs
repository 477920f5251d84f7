//! Batch norm, pooling, channel concat / index-select and the SBP KL kernels
//! (`batchnorm.cu`, `pooling.cu`, `channels.cu`, `sbp_kl.cu`) run on the CPU through the
//! launch emulation, against the CPU references.

mod common;
mod emu;

use common::Rng;
use emu::*;
use prune_kernels::cpu_ref::pooling::Pool;
use prune_kernels::cpu_ref::{batchnorm, channels};
use prune_kernels::tiling::BLOCK;

const B: [u32; 3] = [BLOCK, 1, 1];

fn grid(n: usize) -> [u32; 3] {
    [n.div_ceil(256).clamp(1, 3) as u32, 1, 1]
}

#[test]
fn batchnorm_matches_reference() {
    let mut rng = Rng::fresh("emu batchnorm_matches_reference");
    for (n, c, hw) in [(4usize, 3usize, 25usize), (7, 5, 1), (1, 2, 1), (2, 4, 300)] {
        let total = n * c * hw;
        let x: Vec<f32> = rng
            .vec(total, -1.0, 1.0)
            .iter()
            .map(|v| v + 100.0)
            .collect();
        let dy = rng.vec(total, -1.0, 1.0);
        let (gamma, beta) = (rng.vec(c, 0.5, 1.5), rng.vec(c, -0.5, 0.5));
        let eps = 1e-5f32;
        let out = all_schedules("batchnorm", |s| {
            let (xd, dyd, gd, bd) = (buf(&x), buf(&dy), buf(&gamma), buf(&beta));
            let (mean, inv, unb) = (nan_buf(c), nan_buf(c), nan_buf(c));
            let dims = [Arg::i32(n as i32), Arg::i32(c as i32), Arg::i32(hw as i32)];
            let mut a = vec![xd.arg(), mean.arg(), inv.arg(), unb.arg()];
            a.extend(dims);
            a.push(Arg::f32(eps));
            launch("bn_stats", [c as u32, 1, 1], B, &a, s).unwrap();
            let y = nan_buf(total);
            let a = [
                xd.arg(),
                mean.arg(),
                inv.arg(),
                gd.arg(),
                bd.arg(),
                y.arg(),
                Arg::i64(total as i64),
                Arg::i32(c as i32),
                Arg::i32(hw as i32),
            ];
            launch("bn_apply", grid(total), B, &a, s).unwrap();
            let (dg, db, dx) = (nan_buf(c), nan_buf(c), nan_buf(total));
            let mut a = vec![
                dyd.arg(),
                xd.arg(),
                mean.arg(),
                inv.arg(),
                dg.arg(),
                db.arg(),
            ];
            a.extend(dims);
            launch("bn_backward_reduce", [c as u32, 1, 1], B, &a, s).unwrap();
            let mut a = vec![
                dyd.arg(),
                xd.arg(),
                mean.arg(),
                inv.arg(),
                gd.arg(),
                dg.arg(),
                db.arg(),
                dx.arg(),
                Arg::i64(total as i64),
            ];
            a.extend(dims);
            a.push(Arg::i32(1));
            launch("bn_backward_dx", grid(total), B, &a, s).unwrap();
            // eval: invstd from the (unbiased) variance, then the affine map and its dx
            let (inv_e, y_e, dx_e) = (nan_buf(c), nan_buf(total), nan_buf(total));
            let a = [unb.arg(), inv_e.arg(), Arg::i32(c as i32), Arg::f32(eps)];
            launch("bn_invstd", [1, 1, 1], B, &a, s).unwrap();
            let a = [
                xd.arg(),
                mean.arg(),
                inv_e.arg(),
                gd.arg(),
                bd.arg(),
                y_e.arg(),
                Arg::i64(total as i64),
                Arg::i32(c as i32),
                Arg::i32(hw as i32),
            ];
            launch("bn_apply", grid(total), B, &a, s).unwrap();
            let mut a = vec![
                dyd.arg(),
                xd.arg(),
                mean.arg(),
                inv_e.arg(),
                gd.arg(),
                dg.arg(),
                db.arg(),
                dx_e.arg(),
                Arg::i64(total as i64),
            ];
            a.extend(dims);
            a.push(Arg::i32(0));
            launch("bn_backward_dx", grid(total), B, &a, s).unwrap();
            vec![
                mean.to_vec(),
                inv.to_vec(),
                unb.to_vec(),
                y.to_vec(),
                dg.to_vec(),
                db.to_vec(),
                dx.to_vec(),
                y_e.to_vec(),
                dx_e.to_vec(),
            ]
        });
        let what = format!("[{n}, {c}, {hw}]");
        let (mean, inv, unb) = batchnorm::stats(&x, n, c, hw, eps);
        assert_close(&format!("mean {what}"), &out[0], &to_f64(&mean), 1e-7, 0.0);
        assert_close(&format!("invstd {what}"), &out[1], &to_f64(&inv), 1e-6, 0.0);
        assert_close(&format!("var {what}"), &out[2], &to_f64(&unb), 1e-6, 0.0);
        let y = batchnorm::apply(&x, &mean, &inv, &gamma, &beta, c, hw);
        assert_close(&format!("y {what}"), &out[3], &to_f64(&y), 1e-5, 1e-5);
        let (dx, dg, db) = batchnorm::backward(&dy, &x, &mean, &inv, &gamma, n, c, hw);
        assert_close(&format!("dgamma {what}"), &out[4], &dg, 1e-5, 1e-5);
        assert_close(&format!("dbeta {what}"), &out[5], &db, 1e-6, 1e-6);
        assert_close(&format!("dx {what}"), &out[6], &dx, 1e-4, 1e-5);
        let inv_e: Vec<f32> = unb
            .iter()
            .map(|v| (1.0 / (*v as f64 + eps as f64).sqrt()) as f32)
            .collect();
        let y_e = batchnorm::apply(&x, &mean, &inv_e, &gamma, &beta, c, hw);
        assert_close(
            &format!("eval y {what}"),
            &out[7],
            &to_f64(&y_e),
            1e-5,
            1e-5,
        );
        let dx_e: Vec<f64> = dy
            .iter()
            .enumerate()
            .map(|(e, &g)| {
                let ch = (e / hw) % c;
                g as f64 * gamma[ch] as f64 * inv_e[ch] as f64
            })
            .collect();
        assert_close(&format!("eval dx {what}"), &out[8], &dx_e, 1e-6, 1e-7);
    }
}

fn pools() -> Vec<Pool> {
    let p = |planes, h, w, k, s, pd| Pool {
        planes,
        h,
        w,
        kernel: k,
        stride: s,
        padding: pd,
    };
    vec![
        p(3, 8, 8, (2, 2), (2, 2), (0, 0)),
        p(2, 7, 9, (3, 3), (2, 2), (1, 1)), // overlapping windows, padding
        p(2, 5, 6, (3, 2), (1, 2), (1, 1)),
        p(1, 4, 4, (4, 4), (1, 1), (0, 0)),
    ]
}

fn pool_args(p: &Pool) -> Vec<Arg> {
    let (ho, wo) = p.out_hw();
    let mut a = vec![Arg::i64(p.planes as i64)];
    for v in [
        p.h,
        p.w,
        ho,
        wo,
        p.kernel.0,
        p.kernel.1,
        p.stride.0,
        p.stride.1,
        p.padding.0,
        p.padding.1,
    ] {
        a.push(Arg::i32(v as i32));
    }
    a
}

#[test]
fn pooling_matches_reference() {
    let mut rng = Rng::fresh("emu pooling_matches_reference");
    for p in pools() {
        let (ho, wo) = p.out_hw();
        let (nin, nout) = (p.planes * p.h * p.w, p.planes * ho * wo);
        let mut x = rng.vec(nin, -1.0, 1.0);
        x[3] = x[4]; // ties: the first maximum wins
        x[nin - 1] = f32::NAN;
        let dy = rng.vec(nout, -1.0, 1.0);
        let out = all_schedules("pooling", |s| {
            let (xd, dyd) = (buf(&x), buf(&dy));
            let (y, arg, dx) = (
                nan_buf(nout),
                DevBuf::<i32>::filled(nout, -7).unwrap(),
                nan_buf(nin),
            );
            let mut a = vec![xd.arg(), y.arg(), arg.arg()];
            a.extend(pool_args(&p));
            launch("max_pool_fwd", grid(nout), B, &a, s).unwrap();
            let mut a = vec![dyd.arg(), arg.arg(), dx.arg()];
            a.extend(pool_args(&p));
            launch("max_pool_bwd", grid(nin), B, &a, s).unwrap();
            let (ya, dxa) = (nan_buf(nout), nan_buf(nin));
            let mut a = vec![xd.arg(), ya.arg()];
            a.extend(pool_args(&p));
            launch("avg_pool_fwd", grid(nout), B, &a, s).unwrap();
            let mut a = vec![dyd.arg(), dxa.arg()];
            a.extend(pool_args(&p));
            launch("avg_pool_bwd", grid(nin), B, &a, s).unwrap();
            let argf = arg.to_vec().iter().map(|&v| v as f32).collect();
            vec![y.to_vec(), argf, dx.to_vec(), ya.to_vec(), dxa.to_vec()]
        });
        let (y, arg) = p.max_forward(&x);
        assert_close(&format!("max {p:?}"), &out[0], &to_f64(&y), 0.0, 0.0);
        let argf: Vec<f64> = arg.iter().map(|&v| v as f64).collect();
        assert_close(&format!("argmax {p:?}"), &out[1], &argf, 0.0, 0.0);
        assert_close(
            &format!("max bwd {p:?}"),
            &out[2],
            &p.max_backward(&dy, &arg),
            1e-6,
            1e-6,
        );
        assert_close(
            &format!("avg {p:?}"),
            &out[3],
            &p.avg_forward(&x),
            1e-6,
            1e-6,
        );
        assert_close(
            &format!("avg bwd {p:?}"),
            &out[4],
            &p.avg_backward(&dy),
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn global_average_pool_backward_spreads_evenly() {
    let (planes, hw) = (6usize, 49usize);
    let dy: Vec<f32> = (0..planes).map(|v| v as f32 - 2.0).collect();
    let out = all_schedules("global_avg_pool_bwd", |s| {
        let (d, dx) = (buf(&dy), nan_buf(planes * hw));
        let a = [
            d.arg(),
            dx.arg(),
            Arg::i64(planes as i64),
            Arg::i32(hw as i32),
        ];
        launch("global_avg_pool_bwd", [1, 1, 1], B, &a, s).unwrap();
        vec![dx.to_vec()]
    });
    let want: Vec<f64> = (0..planes * hw)
        .map(|e| dy[e / hw] as f64 / hw as f64)
        .collect();
    assert_close("global avg bwd", &out[0], &want, 1e-6, 0.0);
}

#[test]
fn concat_index_select_and_backward_match_reference() {
    let mut rng = Rng::fresh("emu concat_index_select_and_backward_match_reference");
    let (outer, inner) = (3usize, 10usize);
    let (c1, c2) = (4usize, 5usize);
    let (a, b) = (
        rng.vec(outer * c1 * inner, -1.0, 1.0),
        rng.vec(outer * c2 * inner, -1.0, 1.0),
    );
    let want = channels::concat(&[(&a, c1), (&b, c2)], outer, inner);
    let ct = c1 + c2;
    let out = all_schedules("concat", |s| {
        let (ad, bd, dst) = (buf(&a), buf(&b), nan_buf(want.len()));
        let (ab, bb) = (nan_buf(a.len()), nan_buf(b.len()));
        let cp = |src: &DevBuf<f32>,
                  dst: &DevBuf<f32>,
                  cs: usize,
                  so: usize,
                  cd: usize,
                  d_off: usize,
                  count: usize| {
            let args = [
                src.arg(),
                dst.arg(),
                Arg::i32(outer as i32),
                Arg::i32(cs as i32),
                Arg::i32(so as i32),
                Arg::i32(cd as i32),
                Arg::i32(d_off as i32),
                Arg::i32(count as i32),
                Arg::i32(inner as i32),
            ];
            launch("copy_channels", grid(outer * count * inner), B, &args, s).unwrap();
        };
        cp(&ad, &dst, c1, 0, ct, 0, c1);
        cp(&bd, &dst, c2, 0, ct, c1, c2);
        // backward of concat: slice the parts back out
        cp(&dst, &ab, ct, 0, c1, 0, c1);
        cp(&dst, &bb, ct, c1, c2, 0, c2);
        vec![dst.to_vec(), ab.to_vec(), bb.to_vec()]
    });
    assert_eq!(out[0], want);
    assert_eq!(out[1], a);
    assert_eq!(out[2], b);

    let c = 7usize;
    let src = rng.vec(outer * c * inner, -1.0, 1.0);
    for idx in [vec![3u32, 0, 3, 6, 3], vec![], vec![1, 2, 3, 4, 5, 6, 0]] {
        let k = idx.len();
        let sel = channels::index_select(&src, outer, c, inner, &idx);
        let g = rng.vec(outer * k * inner, -1.0, 1.0);
        let (offsets, js) = channels::index_lists(&idx, c).unwrap();
        let out = all_schedules("index_select", |s| {
            let (sd, id, dst) = (
                buf(&src),
                DevBuf::from_slice(&idx).unwrap(),
                nan_buf(sel.len()),
            );
            if k > 0 {
                let a = [
                    sd.arg(),
                    id.arg(),
                    dst.arg(),
                    Arg::i32(outer as i32),
                    Arg::i32(c as i32),
                    Arg::i32(k as i32),
                    Arg::i32(inner as i32),
                ];
                launch("index_select_channels", grid(sel.len()), B, &a, s).unwrap();
            }
            let (gd, od, jd, dx) = (
                buf(&g),
                DevBuf::from_slice(&offsets).unwrap(),
                DevBuf::from_slice(&js).unwrap(),
                nan_buf(src.len()),
            );
            let a = [
                gd.arg(),
                od.arg(),
                jd.arg(),
                dx.arg(),
                Arg::i32(outer as i32),
                Arg::i32(c as i32),
                Arg::i32(k as i32),
                Arg::i32(inner as i32),
            ];
            launch("index_add_channels", grid(src.len()), B, &a, s).unwrap();
            vec![dst.to_vec(), dx.to_vec()]
        });
        assert_eq!(out[0], sel, "{idx:?}");
        let want = channels::index_add(&g, outer, c, inner, &idx);
        assert_close(&format!("index_add {idx:?}"), &out[1], &want, 1e-6, 1e-6);
    }
    assert!(channels::index_lists(&[7], 7).is_err());
}

#[test]
fn sbp_kl_and_gradient_match_reference() {
    let mut rng = Rng::fresh("emu sbp_kl_and_gradient_match_reference");
    let mut mu = rng.vec(300, -6.0, 3.0);
    let mut ls = rng.vec(300, -6.0, 2.0);
    // tails, the mirrored branch, clamps, a near-uniform q
    mu.extend([-40.0, -25.0, 5.0, 0.0, -10.0, -10.0, 8.0, 0.5]);
    ls.extend([0.0, -3.0, -18.0, 30.0, 4.0, -30.0, -1.0, 3.5]);
    let c = mu.len();
    let out = all_schedules("sbp_kl_grad", |s| {
        let (m, l) = (buf(&mu), buf(&ls));
        let (kl, dm, dl) = (nan_buf(c), nan_buf(c), nan_buf(c));
        let a = [
            m.arg(),
            l.arg(),
            kl.arg(),
            dm.arg(),
            dl.arg(),
            Arg::i32(c as i32),
        ];
        launch("sbp_kl_grad", [c.div_ceil(256) as u32, 1, 1], B, &a, s).unwrap();
        vec![kl.to_vec(), dm.to_vec(), dl.to_vec()]
    });
    let r: Vec<(f64, f64, f64)> = mu
        .iter()
        .zip(&ls)
        .map(|(&m, &l)| kl_grad(m as f64, l as f64))
        .collect();
    assert_close(
        "kl",
        &out[0],
        &r.iter().map(|t| t.0).collect::<Vec<_>>(),
        1e-5,
        1e-6,
    );
    assert_close(
        "dkl/dmu",
        &out[1],
        &r.iter().map(|t| t.1).collect::<Vec<_>>(),
        1e-5,
        1e-6,
    );
    assert_close(
        "dkl/dls",
        &out[2],
        &r.iter().map(|t| t.2).collect::<Vec<_>>(),
        1e-5,
        1e-6,
    );
}

/// KL and its gradient from the single SBP math: `(kl, d/dmu, d/dlog_sigma)`.
fn kl_grad(mu: f64, log_sigma: f64) -> (f64, f64, f64) {
    let (kl, (dmu, dls)) = prune_kernels::cpu_ref::sbp_closed::kl_value_and_grad(mu, log_sigma);
    (kl, dmu, dls)
}
