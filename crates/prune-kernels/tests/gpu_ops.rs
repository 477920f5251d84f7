//! The backend operations ([`NnKernels`]) on the GPU against the CPU references, through
//! the safe wrappers (so argument order and launch geometry are checked too).  Skips
//! without a GPU unless PRUNE_REQUIRE_GPU=1.  Outputs are NaN-filled before every launch.

mod common;

use common::{assert_close, assert_within, gpu, Rng};
use prune_kernels::cpu_ref::elementwise::{self as ew, Binary, Unary};
use prune_kernels::cpu_ref::pooling::Pool;
use prune_kernels::cpu_ref::{batchnorm, channels, optim, reduce};
use prune_kernels::host::{download, poisoned, upload};
use prune_kernels::ops::nn::BnParams;
use prune_kernels::ops::update::{AdamStep, SgdStep};
use prune_kernels::NnKernels;

fn main() {
    let need = common::gpu_need();
    prune_testkit::run(prune_testkit::tests_needing!(&need;
        backend_ops_match_cpu_reference,
    ));
}

fn backend_ops_match_cpu_reference() {
    let Some(kc) = gpu("backend_ops_match_cpu_reference") else {
        return;
    };
    let k = NnKernels::new(&kc).expect("compile the backend kernels");
    let s = kc.stream();
    let mut rng = Rng::fresh("backend_ops_match_cpu_reference");

    // elementwise
    let x = rng.vec(100_003, -3.0, 3.0);
    let xd = upload(s, &x).unwrap();
    for op in [
        Unary::Relu,
        Unary::Sigmoid,
        Unary::Tanh,
        Unary::Exp,
        Unary::Scale,
    ] {
        let mut y = poisoned(s, x.len()).unwrap();
        k.unary(s, op, &xd, &mut y, x.len(), 0.5).unwrap();
        assert_close(
            &format!("{op:?}"),
            &download(s, &y, x.len()).unwrap(),
            &ew::unary(op, &x, 0.5),
            2e-6,
            1e-7,
        );
    }
    let (ad, bd) = ([8usize, 16, 5, 5], [1usize, 16, 1, 1]);
    let a = rng.vec(8 * 16 * 25, -1.0, 1.0);
    let b = rng.vec(16, 0.5, 1.5);
    let (a_d, b_d) = (upload(s, &a).unwrap(), upload(s, &b).unwrap());
    for op in Binary::ALL {
        let mut o = poisoned(s, a.len()).unwrap();
        k.binary(s, op, &a_d, &ad, &b_d, &bd, &mut o).unwrap();
        let (want, _) = ew::binary(op, &a, &ad, &b, &bd).unwrap();
        assert_close(
            &format!("{op:?}"),
            &download(s, &o, a.len()).unwrap(),
            &want,
            1e-6,
            1e-7,
        );
    }
    let (mut y, mut m) = (poisoned(s, x.len()).unwrap(), poisoned(s, x.len()).unwrap());
    k.dropout(s, &xd, &mut y, &mut m, x.len(), 0.25, 11, 3)
        .unwrap();
    let (wy, wm) = ew::dropout(&x, 0.25, 11, 3).unwrap();
    assert_eq!(download(s, &m, x.len()).unwrap(), wm);
    assert_eq!(download(s, &y, x.len()).unwrap(), wy);
    assert!(k
        .dropout(s, &xd, &mut y, &mut m, x.len(), 1.0, 1, 1)
        .is_err());

    // reductions over non-adjacent axes: [8, 16, 25] over axes 0 and 2 -> [16]
    let mut r = poisoned(s, 16).unwrap();
    k.reduce_axes(s, &a_d, &[8, 16, 25], &[0, 2], true, &mut r)
        .unwrap();
    let step = reduce::reduce(&a, 1, 8, 16 * 25, 1.0 / 8.0);
    let want = reduce::reduce(&step, 16, 25, 1, 1.0 / 25.0);
    assert_close(
        "mean over (0, 2)",
        &download(s, &r, 16).unwrap(),
        &want,
        1e-5,
        1e-6,
    );

    // log-softmax + NLL
    let (rows, cols) = (64usize, 10usize);
    let logits = rng.vec(rows * cols, -5.0, 5.0);
    let labels: Vec<i32> = (0..rows).map(|_| rng.int(0, cols - 1) as i32).collect();
    let (ld, labd) = (upload(s, &logits).unwrap(), upload(s, &labels).unwrap());
    let mut lp = poisoned(s, logits.len()).unwrap();
    k.log_softmax(s, &ld, &mut lp, rows, cols).unwrap();
    let lp_h = download(s, &lp, logits.len()).unwrap();
    assert_close(
        "log_softmax",
        &lp_h,
        &reduce::log_softmax(&logits, rows, cols),
        1e-5,
        1e-5,
    );
    let mut loss = poisoned(s, rows).unwrap();
    k.nll(s, &lp, &labd, &mut loss, rows, cols).unwrap();
    assert_close(
        "nll",
        &download(s, &loss, rows).unwrap(),
        &reduce::nll(&lp_h, &labels, cols),
        0.0,
        0.0,
    );

    // batch norm
    let (n, c, hw) = (4usize, 6usize, 49usize);
    let bx = rng.vec(n * c * hw, -1.0, 1.0);
    let (gamma, beta) = (rng.vec(c, 0.5, 1.5), rng.vec(c, -0.5, 0.5));
    let (bxd, gd, bed) = (
        upload(s, &bx).unwrap(),
        upload(s, &gamma).unwrap(),
        upload(s, &beta).unwrap(),
    );
    let (mut mean, mut inv, mut var) = (
        poisoned(s, c).unwrap(),
        poisoned(s, c).unwrap(),
        poisoned(s, c).unwrap(),
    );
    k.bn_stats(s, &bxd, (n, c, hw), 1e-5, &mut mean, &mut inv, &mut var)
        .unwrap();
    let mut by = poisoned(s, bx.len()).unwrap();
    let p = BnParams {
        gamma: &gd,
        beta: &bed,
    };
    k.bn_apply(s, &bxd, (n, c, hw), &mean, &inv, &p, &mut by)
        .unwrap();
    let (wm, wi, _) = batchnorm::stats(&bx, n, c, hw, 1e-5);
    let want = batchnorm::apply(&bx, &wm, &wi, &gamma, &beta, c, hw);
    assert_close(
        "bn y",
        &download(s, &by, bx.len()).unwrap(),
        &want,
        1e-5,
        1e-5,
    );
    let dy = rng.vec(bx.len(), -1.0, 1.0);
    let dyd = upload(s, &dy).unwrap();
    let (mut dx, mut dg, mut db) = (
        poisoned(s, bx.len()).unwrap(),
        poisoned(s, c).unwrap(),
        poisoned(s, c).unwrap(),
    );
    k.bn_backward(
        s,
        &dyd,
        &bxd,
        (n, c, hw),
        &mean,
        &inv,
        &gd,
        true,
        &mut dx,
        &mut dg,
        &mut db,
    )
    .unwrap();
    let (wdx, _, _) = batchnorm::backward(&dy, &bx, &wm, &wi, &gamma, n, c, hw);
    let tol: Vec<f64> = wdx.iter().map(|v| 1e-5 + 1e-4 * v.abs()).collect();
    assert_within("bn dx", &download(s, &dx, bx.len()).unwrap(), &wdx, &tol);

    // pooling
    let pool = Pool {
        planes: n * c,
        h: 7,
        w: 7,
        kernel: (3, 3),
        stride: (2, 2),
        padding: (1, 1),
    };
    let (ho, wo) = pool.out_hw();
    let nout = n * c * ho * wo;
    let (mut py, mut arg) = (
        poisoned(s, nout).unwrap(),
        upload(s, &vec![-7i32; nout]).unwrap(),
    );
    k.max_pool(s, &pool, &bxd, &mut py, &mut arg).unwrap();
    let (wy, warg) = pool.max_forward(&bx);
    assert_close("max pool", &download(s, &py, nout).unwrap(), &wy, 0.0, 0.0);
    assert_eq!(download(s, &arg, nout).unwrap(), warg);
    let pdy = rng.vec(nout, -1.0, 1.0);
    let pdyd = upload(s, &pdy).unwrap();
    let mut pdx = poisoned(s, bx.len()).unwrap();
    k.max_pool_backward(s, &pool, &pdyd, &arg, &mut pdx)
        .unwrap();
    let want = pool.max_backward(&pdy, &warg);
    let tol = vec![1e-6; want.len()];
    assert_within(
        "max pool bwd",
        &download(s, &pdx, bx.len()).unwrap(),
        &want,
        &tol,
    );
    k.avg_pool(s, &pool, true, &pdyd, &mut pdx).unwrap();
    let want = pool.avg_backward(&pdy);
    assert_within(
        "avg pool bwd",
        &download(s, &pdx, bx.len()).unwrap(),
        &want,
        &tol,
    );

    // index select and its backward
    let idx = [5u32, 0, 5, 2];
    let mut sel = poisoned(s, n * idx.len() * hw).unwrap();
    k.index_select(s, &bxd, &idx, &mut sel, (n, c, hw)).unwrap();
    let want = channels::index_select(&bx, n, c, hw, &idx);
    assert_eq!(download(s, &sel, want.len()).unwrap(), want);
    let mut back = poisoned(s, bx.len()).unwrap();
    k.index_add(s, &sel, &idx, &mut back, (n, c, hw)).unwrap();
    let want = channels::index_add(&want, n, c, hw, &idx);
    assert_within(
        "index add",
        &download(s, &back, bx.len()).unwrap(),
        &want,
        &vec![1e-6; want.len()],
    );
    assert!(k.index_select(s, &bxd, &[6], &mut sel, (n, c, hw)).is_err());

    // optimizer steps
    let (w0, g0) = (rng.vec(5000, -1.0, 1.0), rng.vec(5000, -1.0, 1.0));
    let (mut wd, gd2) = (upload(s, &w0).unwrap(), upload(s, &g0).unwrap());
    let (mut md, mut vd) = (
        upload(s, &vec![0.0f32; 5000]).unwrap(),
        upload(s, &vec![0.0f32; 5000]).unwrap(),
    );
    let st = AdamStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 1e-4,
        t: 1,
    };
    k.adam_step(s, &mut wd, &gd2, &mut md, &mut vd, 5000, st)
        .unwrap();
    let (mut w, mut mm, mut vv) = (w0.clone(), vec![0.0; 5000], vec![0.0; 5000]);
    optim::adam_step(
        &mut w, &g0, &mut mm, &mut vv, 1e-3, 0.9, 0.999, 1e-8, 1e-4, 1,
    );
    assert_close("adam", &download(s, &wd, 5000).unwrap(), &w, 1e-6, 1e-7);
    let sg = SgdStep {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 5e-4,
        nesterov: true,
    };
    // A fresh velocity: `vd` holds Adam's second moments by now.
    let mut veld = upload(s, &vec![0.0f32; 5000]).unwrap();
    k.sgd_step(s, &mut wd, &gd2, &mut veld, 5000, sg).unwrap();
    let mut vel = vec![0.0f32; 5000];
    optim::sgd_step(&mut w, &g0, &mut vel, 0.1, 0.9, 5e-4, true);
    assert_close("sgd", &download(s, &wd, 5000).unwrap(), &w, 1e-5, 1e-6);
    // running average of batch statistics
    let mut rd = upload(s, &w0).unwrap();
    k.ema_step(s, &mut rd, &gd2, 5000, 0.1).unwrap();
    let mut r = w0.clone();
    optim::ema_step(&mut r, &g0, 0.1);
    assert_close("ema", &download(s, &rd, 5000).unwrap(), &r, 1e-6, 1e-7);

    // SBP KL gradient
    let (mu, ls) = (rng.vec(200, -6.0, 2.0), rng.vec(200, -5.0, 2.0));
    let (mud, lsd) = (upload(s, &mu).unwrap(), upload(s, &ls).unwrap());
    let (mut kl, mut dmu, mut dls) = (
        poisoned(s, 200).unwrap(),
        poisoned(s, 200).unwrap(),
        poisoned(s, 200).unwrap(),
    );
    k.sbp_kl_grad(s, &mud, &lsd, 200, &mut kl, &mut dmu, &mut dls)
        .unwrap();
    let r: Vec<_> = mu
        .iter()
        .zip(&ls)
        .map(|(&m, &l)| kl_grad(m as f64, l as f64))
        .collect();
    let tol = |v: &[f64]| v.iter().map(|x| 1e-6 + 1e-5 * x.abs()).collect::<Vec<_>>();
    let want: Vec<f64> = r.iter().map(|t| t.1).collect();
    assert_within(
        "dkl/dmu",
        &download(s, &dmu, 200).unwrap(),
        &want,
        &tol(&want),
    );
    let want: Vec<f64> = r.iter().map(|t| t.2).collect();
    assert_within(
        "dkl/dls",
        &download(s, &dls, 200).unwrap(),
        &want,
        &tol(&want),
    );
}

/// KL and its gradient from the single SBP math: `(kl, d/dmu, d/dlog_sigma)`.
fn kl_grad(mu: f64, log_sigma: f64) -> (f64, f64, f64) {
    let (kl, (dmu, dls)) = prune_kernels::cpu_ref::sbp_closed::kl_value_and_grad(mu, log_sigma);
    (kl, dmu, dls)
}
