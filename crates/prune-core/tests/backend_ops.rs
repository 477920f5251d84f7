//! Every backend op against the kernel crate's CPU references (`prune_kernels::cpu_ref`,
//! double-precision loops written independently of prune-core's CPU kernels): each check
//! is written once and run on the CPU backend always, on the CUDA backend over the CPU
//! emulation of the kernels always (`emu::`, device `cuda:63`: the backend's own code
//! against the emulated kernels, a reference GEMM and cuDNN's host stand-in), and on
//! `cuda:0` when a GPU is present (reported as ignored with the reason otherwise;
//! `PRUNE_REQUIRE_GPU=1` makes that a failure). The convolution check runs once more on a
//! second emulated device, `cuda:61` (`emu_gemm::`), whose convolutions take the
//! implicit-GEMM fallback instead of cuDNN. Shapes are small but reach the edge
//! cases: broadcasting on every side, transposed GEMM operands, strided/padded and grouped
//! convolutions, overlapping pooling windows, repeated gather indices.

mod common;
use common::{host, on};
use prune_core::autograd::{Binary, Unary};
use prune_core::backend::cuda::{open_emulated_with, ConvSetting, CudaDevice};
use prune_core::backend::{AdamStep, SgdStep};
use prune_core::cpu::{Conv2dParams, PoolParams};
use prune_core::{Device, Indices};
use prune_kernels::cpu_ref::elementwise::{self as ew, Binary as KB, Unary as KU};
use prune_kernels::cpu_ref::pooling::Pool;
use prune_kernels::cpu_ref::{batchnorm, channels, conv, optim, reduce};
use prune_kernels::ConvShape;

/// The ordinal under which the emulated device is registered (convolution through cuDNN's
/// host stand-in).
const EMU: usize = 63;
/// The emulated device whose convolutions take the implicit-GEMM fallback.
const EMU_GEMM: usize = 61;

macro_rules! per_device {
    ($gpu:expr, $emu:expr; $($f:ident),* $(,)?) => {
        vec![
            $(prune_testkit::test_needing(concat!("cpu::", stringify!($f)), &prune_testkit::Need::met(), || $f(Device::Cpu)),)*
            $(prune_testkit::test_needing(concat!("emu::", stringify!($f)), $emu, || $f(Device::Cuda(EMU))),)*
            $(prune_testkit::test_needing(concat!("cuda::", stringify!($f)), $gpu, || $f(Device::Cuda(0))),)*
        ]
    };
}

fn main() {
    let gpu = prune_testkit::Need::probe(
        "no usable GPU",
        "PRUNE_REQUIRE_GPU",
        CudaDevice::new(0).map(|_| ()).map_err(|e| e.to_string()),
    );
    // Grids sized for 2 SMs and the threads of each block in a shuffled order.
    let emulated = |ordinal, setting| {
        prune_testkit::Need::probe(
            "no emulated device",
            "PRUNE_REQUIRE_EMU",
            open_emulated_with(ordinal, 2, prune_kernels::Schedule::Shuffled(7), setting)
                .map_err(|e| e.to_string()),
        )
    };
    let emu = emulated(EMU, ConvSetting::Fastest);
    let emu_gemm = emulated(EMU_GEMM, ConvSetting::ImplicitGemm);
    let mut tests = per_device!(&gpu, &emu;
        elementwise_and_broadcasting,
        reductions_and_broadcast_adjoint,
        gemm_all_transpositions,
        convolution_dense_grouped_and_gradients,
        pooling_forward_and_backward,
        batch_norm_train_eval_and_backward,
        softmax_and_cross_entropy,
        gather_concat_and_adjoints,
        optimizer_steps,
        fill_and_dropout_masks,
    );
    tests.push(prune_testkit::test_needing(
        "emu_gemm::convolution_dense_grouped_and_gradients",
        &emu_gemm,
        || convolution_dense_grouped_and_gradients(Device::Cuda(EMU_GEMM)),
    ));
    prune_testkit::run(tests);
}

/// Deterministic values in [−1, 1) (plus `shift`), away from kinks for small `seed` sets.
fn vals(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0)
        .collect()
}

#[track_caller]
fn close<T: Copy + Into<f64>>(what: &str, got: &[f32], want: &[T], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let w: f64 = w.into();
        assert!(
            (f64::from(g) - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}

fn elementwise_and_broadcasting(d: Device) {
    let b = d.backend();
    let xv: Vec<f32> = vals(24, 1).iter().map(|v| v * 3.0).collect();
    let x = on(d, &[2, 3, 4], xv.clone());
    let pos: Vec<f32> = xv.iter().map(|v| v.abs() + 0.5).collect();
    let xp = on(d, &[2, 3, 4], pos.clone());
    for (op, k, a, input, xs) in [
        (Unary::Relu, KU::Relu, 0.0, &x, &xv),
        (Unary::Exp, KU::Exp, 0.0, &x, &xv),
        (Unary::Log, KU::Log, 0.0, &xp, &pos),
        (Unary::Sqrt, KU::Sqrt, 0.0, &xp, &pos),
        (Unary::Square, KU::Square, 0.0, &x, &xv),
        (Unary::Abs, KU::Abs, 0.0, &x, &xv),
        (Unary::Neg, KU::Neg, 0.0, &x, &xv),
        (Unary::Scale(-1.5), KU::Scale, -1.5, &x, &xv),
        (Unary::Shift(0.25), KU::AddScalar, 0.25, &x, &xv),
    ] {
        let y = b.unary(input, op).expect("unary");
        close(&format!("{op:?}"), &host(&y), &ew::unary(k, xs, a), 1e-6);
        // backward: g · f'(x) against a central difference of the reference map
        let g = vals(24, 2);
        let gt = on(d, &[2, 3, 4], g.clone());
        let dx = b
            .unary_backward(op, input, &y, &gt)
            .expect("unary backward");
        let h = 1e-3f64;
        let fd: Vec<f64> = xs
            .iter()
            .zip(&g)
            .map(|(&v, &gv)| {
                let f = |t: f64| k.apply(t, f64::from(a));
                f64::from(gv) * (f(f64::from(v) + h) - f(f64::from(v) - h)) / (2.0 * h)
            })
            .collect();
        close(&format!("{op:?} backward"), &host(&dx), &fd, 1e-4);
    }
    let y = b.unary(&x, Unary::Clamp(-0.5, 1.0)).expect("clamp");
    let want: Vec<f32> = xv.iter().map(|v| v.clamp(-0.5, 1.0)).collect();
    close("clamp", &host(&y), &want, 0.0);
    let g = on(d, &[2, 3, 4], vec![1.0; 24]);
    let dx = b
        .unary_backward(Unary::Clamp(-0.5, 1.0), &x, &y, &g)
        .expect("clamp backward");
    let want: Vec<f32> = xv
        .iter()
        .map(|&v| f32::from((-0.5..=1.0).contains(&v)))
        .collect();
    close("clamp backward", &host(&dx), &want, 0.0);
    // broadcasting on either side and both
    for (ad, bd) in [
        (vec![2, 3, 4], vec![4]),
        (vec![3, 1], vec![2, 3, 4]),
        (vec![2, 1, 4], vec![1, 3, 1]),
    ] {
        let (an, bn) = (ad.iter().product(), bd.iter().product());
        let (av, bv) = (
            vals(an, 3),
            vals(bn, 4).iter().map(|v| v + 2.0).collect::<Vec<_>>(),
        );
        let (at, bt) = (on(d, &ad, av.clone()), on(d, &bd, bv.clone()));
        for (op, k) in [
            (Binary::Add, KB::Add),
            (Binary::Sub, KB::Sub),
            (Binary::Mul, KB::Mul),
            (Binary::Div, KB::Div),
        ] {
            let y = b.binary(&at, &bt, op).expect("binary");
            let (want, dims) = ew::binary(k, &av, &ad, &bv, &bd).expect("ref");
            assert_eq!(y.shape(), &dims[..]);
            close(&format!("{op:?} {ad:?} {bd:?}"), &host(&y), &want, 1e-6);
            // the gradients at the broadcast shape: ∂/∂a = g·∂op/∂a, ∂/∂b = g·∂op/∂b
            let n: usize = dims.iter().product();
            let g = on(d, &dims, vec![1.0; n]);
            let (ga, gb) = b
                .binary_backward(op, &at, &bt, &y, &g)
                .expect("binary backward");
            let abig = ew::binary(KB::Add, &av, &ad, &vec![0.0; n], &dims)
                .expect("a")
                .0;
            let bbig = ew::binary(KB::Add, &vec![0.0; n], &dims, &bv, &bd)
                .expect("b")
                .0;
            let (wa, wb): (Vec<f64>, Vec<f64>) = abig
                .iter()
                .zip(&bbig)
                .map(|(&p, &q)| {
                    let (p, q) = (f64::from(p), f64::from(q));
                    match op {
                        Binary::Add => (1.0, 1.0),
                        Binary::Sub => (1.0, -1.0),
                        Binary::Mul => (q, p),
                        Binary::Div => (1.0 / q, -p / (q * q)),
                    }
                })
                .unzip();
            close(&format!("{op:?} ∂a"), &host(&ga), &wa, 1e-5);
            close(&format!("{op:?} ∂b"), &host(&gb), &wb, 1e-5);
        }
    }
    let mut acc = on(d, &[2, 3, 4], xv.clone());
    b.add_assign(&mut acc, &xp).expect("add_assign");
    let want: Vec<f32> = xv.iter().zip(&pos).map(|(a, c)| a + c).collect();
    close("add_assign", &host(&acc), &want, 1e-6);
    assert!(b.all_finite(&x).expect("finite"));
    let mut bad = xv.clone();
    bad[17] = f32::INFINITY;
    assert!(!b.all_finite(&on(d, &[24], bad)).expect("finite"));
}

fn reductions_and_broadcast_adjoint(d: Device) {
    let b = d.backend();
    let xv = vals(2 * 3 * 4 * 5, 5);
    let x = on(d, &[2, 3, 4, 5], xv.clone());
    // sums against direct f64 loops
    let s = b.sum_to_shape(&x, &[3, 1, 1]).expect("sum");
    assert_eq!(s.shape(), &[3, 1, 1]);
    let mut want = vec![0f64; 3];
    for (i, v) in xv.iter().enumerate() {
        want[(i / 20) % 3] += f64::from(*v);
    }
    close("sum to [3,1,1]", &host(&s), &want, 1e-5);
    let s = b.sum_to_shape(&x, &[4, 1]).expect("sum");
    let mut want = vec![0f64; 4];
    for (i, v) in xv.iter().enumerate() {
        want[(i / 5) % 4] += f64::from(*v);
    }
    close("sum to [4,1]", &host(&s), &want, 1e-5);
    let s = b.sum_to_shape(&x, &[]).expect("sum all");
    let total: f64 = xv.iter().map(|&v| f64::from(v)).sum();
    close("sum all", &host(&s), &[total], 1e-5);
    let up = b
        .broadcast_to(&on(d, &[3, 1], vec![1.0, 2.0, 3.0]), &[2, 3, 4])
        .expect("bcast");
    let want: Vec<f32> = (0..24).map(|i| ((i / 4) % 3 + 1) as f32).collect();
    close("broadcast_to", &host(&up), &want, 0.0);
}

fn gemm_all_transpositions(d: Device) {
    let b = d.backend();
    let (m, k, n) = (5, 7, 3);
    let a = vals(m * k, 6);
    let c = vals(k * n, 7);
    let want: Vec<f64> = (0..m * n)
        .map(|e| {
            let (i, j) = (e / n, e % n);
            (0..k)
                .map(|p| f64::from(a[i * k + p]) * f64::from(c[p * n + j]))
                .sum()
        })
        .collect();
    let tr = |v: &[f32], r: usize, cc: usize| -> Vec<f32> {
        (0..r * cc).map(|e| v[(e % r) * cc + e / r]).collect()
    };
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let at = if ta {
            on(d, &[k, m], tr(&a, m, k))
        } else {
            on(d, &[m, k], a.clone())
        };
        let bt = if tb {
            on(d, &[n, k], tr(&c, k, n))
        } else {
            on(d, &[k, n], c.clone())
        };
        let y = b.matmul(&at, &bt, ta, tb).expect("matmul");
        assert_eq!(y.shape(), &[m, n]);
        close(&format!("matmul ta={ta} tb={tb}"), &host(&y), &want, 1e-5);
    }
}

fn convolution_dense_grouped_and_gradients(d: Device) {
    let b = d.backend();
    for (groups, stride, padding) in [
        (1, (1, 1), (1, 1)),
        (1, (2, 1), (0, 2)),
        (2, (1, 2), (1, 0)),
    ] {
        let (n, cin, h, w, cout, kh, kw) = (2, 4, 6, 5, 6, 3, 2);
        let p = Conv2dParams {
            stride,
            padding,
            groups,
        };
        let (cg, og) = (cin / groups, cout / groups);
        let xv = vals(n * cin * h * w, 8);
        let wv = vals(cout * cg * kh * kw, 9);
        let bias = vals(cout, 10);
        let x = on(d, &[n, cin, h, w], xv.clone());
        let wt = on(d, &[cout, cg, kh, kw], wv.clone());
        let bt = on(d, &[cout], bias.clone());
        let y = b.conv2d(&x, &wt, Some(&bt), &p).expect("conv");
        // reference: each group as a dense convolution on its channels
        let shape_g = ConvShape {
            batch: n,
            in_channels: cg,
            height: h,
            width: w,
            out_channels: og,
            kernel: (kh, kw),
            stride,
            padding,
        };
        let (ho, wo) = shape_g.output_hw().expect("geometry");
        assert_eq!(y.shape(), &[n, cout, ho, wo]);
        let hw = h * w;
        let (mut want, mut dx_want, mut dw_want) = (
            vec![0f32; n * cout * ho * wo],
            vec![0f32; xv.len()],
            vec![0f32; wv.len()],
        );
        let gv = vals(n * cout * ho * wo, 11);
        for gi in 0..groups {
            let xg: Vec<f32> = (0..n * cg * hw)
                .map(|e| {
                    let (nn, r) = (e / (cg * hw), e % (cg * hw));
                    xv[nn * cin * hw + gi * cg * hw + r]
                })
                .collect();
            let wg = &wv[gi * og * cg * kh * kw..(gi + 1) * og * cg * kh * kw];
            let yg = conv::dense_forward(&xg, wg, &shape_g).expect("ref conv");
            let gg: Vec<f32> = (0..n * og * ho * wo)
                .map(|e| {
                    let (nn, r) = (e / (og * ho * wo), e % (og * ho * wo));
                    gv[nn * cout * ho * wo + gi * og * ho * wo + r]
                })
                .collect();
            let all_in: Vec<u32> = (0..cg as u32).collect();
            let all_out: Vec<u32> = (0..og as u32).collect();
            let mut dxg = vec![0f32; xg.len()];
            conv::backward_input(&gg, wg, &shape_g, &all_in, &all_out, &mut dxg).expect("ref dx");
            let mut dwg = vec![0f32; wg.len()];
            conv::backward_weight(&gg, &xg, &shape_g, &all_in, &all_out, &mut dwg).expect("dw");
            for e in 0..yg.len() {
                let (nn, r) = (e / (og * ho * wo), e % (og * ho * wo));
                let c = gi * og + r / (ho * wo);
                want[nn * cout * ho * wo + gi * og * ho * wo + r] = yg[e] + bias[c];
            }
            for e in 0..dxg.len() {
                let (nn, r) = (e / (cg * hw), e % (cg * hw));
                dx_want[nn * cin * hw + gi * cg * hw + r] = dxg[e];
            }
            dw_want[gi * og * cg * kh * kw..(gi + 1) * og * cg * kh * kw].copy_from_slice(&dwg);
        }
        let what = format!("conv groups={groups} stride={stride:?} pad={padding:?}");
        close(&what, &host(&y), &want, 1e-5);
        let g = on(d, &[n, cout, ho, wo], gv.clone());
        let gr = b
            .conv2d_backward(&x, &wt, &g, &p, true)
            .expect("conv backward");
        close(
            &format!("{what} dx"),
            &host(gr.x.as_ref().expect("dx")),
            &dx_want,
            1e-5,
        );
        close(&format!("{what} dw"), &host(&gr.w), &dw_want, 1e-5);
        let db: Vec<f64> = (0..cout)
            .map(|c| {
                (0..n)
                    .flat_map(|nn| (0..ho * wo).map(move |q| (nn, q)))
                    .map(|(nn, q)| f64::from(gv[(nn * cout + c) * ho * wo + q]))
                    .sum()
            })
            .collect();
        close(&format!("{what} dbias"), &host(&gr.bias), &db, 1e-5);
    }
}

fn pooling_forward_and_backward(d: Device) {
    let b = d.backend();
    let (n, c, h, w) = (2, 3, 7, 6);
    let xv = vals(n * c * h * w, 12);
    let x = on(d, &[n, c, h, w], xv.clone());
    for (kernel, stride, padding) in [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1))] {
        let pp = PoolParams {
            kernel,
            stride,
            padding,
        };
        let pool = Pool {
            planes: n * c,
            h,
            w,
            kernel,
            stride,
            padding,
        };
        let (ho, wo) = pool.out_hw();
        let gv = vals(n * c * ho * wo, 13);
        let g = on(d, &[n, c, ho, wo], gv.clone());
        let (y, am) = b.max_pool2d(&x, &pp).expect("max pool");
        let (want, ref_am) = pool.max_forward(&xv);
        close(&format!("max pool {kernel:?}"), &host(&y), &want, 0.0);
        let dx = b
            .max_pool2d_backward(&g, &am, x.shape(), &pp)
            .expect("max pool backward");
        close(
            "max pool backward",
            &host(&dx),
            &pool.max_backward(&gv, &ref_am),
            1e-6,
        );
        let y = b.avg_pool2d(&x, &pp).expect("avg pool");
        close(
            &format!("avg pool {kernel:?}"),
            &host(&y),
            &pool.avg_forward(&xv),
            1e-6,
        );
        let dx = b
            .avg_pool2d_backward(&g, x.shape(), &pp)
            .expect("avg backward");
        close(
            "avg pool backward",
            &host(&dx),
            &pool.avg_backward(&gv),
            1e-6,
        );
    }
}

fn batch_norm_train_eval_and_backward(d: Device) {
    let b = d.backend();
    for dims in [vec![4, 3, 5, 2], vec![6, 5]] {
        let (n, c) = (dims[0], dims[1]);
        let hw: usize = dims[2..].iter().product();
        let xv: Vec<f32> = vals(n * c * hw, 14).iter().map(|v| 2.0 * v + 0.3).collect();
        let (gamma, beta) = (vals(c, 15), vals(c, 16));
        let x = on(d, &dims, xv.clone());
        let (gt, bt) = (on(d, &[c], gamma.clone()), on(d, &[c], beta.clone()));
        let eps = 1e-5;
        let out = b.batch_norm_train(&x, &gt, &bt, eps).expect("bn train");
        let (mean, inv, unb) = batchnorm::stats(&xv, n, c, hw, eps);
        close("bn mean", &host(&out.stats.mean), &mean, 1e-5);
        close("bn inv std", &host(&out.stats.inv_std), &inv, 1e-5);
        close("bn unbiased var", &host(&out.var), &unb, 1e-5);
        let want = batchnorm::apply(&xv, &mean, &inv, &gamma, &beta, c, hw);
        close("bn train y", &host(&out.y), &want, 1e-5);
        let gv = vals(n * c * hw, 17);
        let g = on(d, &dims, gv.clone());
        let gr = b
            .batch_norm_train_backward(&x, &gt, &out.stats, &g)
            .expect("bn backward");
        let (dx, dg, db) = batchnorm::backward(&gv, &xv, &mean, &inv, &gamma, n, c, hw);
        close("bn dx", &host(&gr.x), &dx, 1e-4);
        close("bn dgamma", &host(&gr.gamma), &dg, 1e-4);
        close("bn dbeta", &host(&gr.beta), &db, 1e-4);
        // eval: running statistics, y = γ (x − m)/√(v + ε) + β, dx = g γ /√(v + ε)
        let (rm, rv): (Vec<f32>, Vec<f32>) = (0..c)
            .map(|i| (0.1 * i as f32, 0.5 + 0.2 * i as f32))
            .unzip();
        let (rmt, rvt) = (on(d, &[c], rm.clone()), on(d, &[c], rv.clone()));
        let y = b
            .batch_norm_eval(&x, &gt, &bt, &rmt, &rvt, eps)
            .expect("bn eval");
        let inv_r: Vec<f32> = rv.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        close(
            "bn eval y",
            &host(&y),
            &batchnorm::apply(&xv, &rm, &inv_r, &gamma, &beta, c, hw),
            1e-5,
        );
        let gr = b
            .batch_norm_eval_backward(&x, &gt, &rmt, &rvt, eps, &g)
            .expect("bn eval backward");
        let dx: Vec<f64> = gv
            .iter()
            .enumerate()
            .map(|(e, &gg)| {
                let ch = (e / hw) % c;
                f64::from(gg) * f64::from(gamma[ch]) * f64::from(inv_r[ch])
            })
            .collect();
        close("bn eval dx", &host(&gr.x), &dx, 1e-5);
    }
}

fn softmax_and_cross_entropy(d: Device) {
    let b = d.backend();
    let (rows, cols) = (5, 7);
    let xv: Vec<f32> = vals(rows * cols, 18).iter().map(|v| 4.0 * v).collect();
    let x = on(d, &[rows, cols], xv.clone());
    let y = b.log_softmax(&x).expect("log_softmax");
    let want = reduce::log_softmax(&xv, rows, cols);
    close("log_softmax", &host(&y), &want, 1e-6);
    let gv = vals(rows * cols, 19);
    let dx = b
        .log_softmax_backward(&y, &on(d, &[rows, cols], gv.clone()))
        .expect("log_softmax backward");
    close(
        "log_softmax backward",
        &host(&dx),
        &reduce::log_softmax_backward(&gv, &want, rows, cols),
        1e-5,
    );
    let labels = [3u32, 0, 6, 6, 1];
    let li: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
    let lab = Indices::from_vec([rows], labels.to_vec())
        .expect("labels")
        .to_device(d)
        .expect("labels on the device");
    let loss = b.cross_entropy(&x, &lab).expect("cross entropy");
    let per_row = reduce::nll(&want, &li, cols);
    let mean: f64 = per_row.iter().map(|&v| f64::from(v)).sum::<f64>() / rows as f64;
    close("cross entropy", &host(&loss), &[mean], 1e-6);
    let g = on(d, &[], vec![0.5]);
    let dl = b.cross_entropy_backward(&x, &lab, &g).expect("ce backward");
    let dlogp = reduce::nll_backward(&vec![0.5; rows], &li, cols, 1.0 / rows as f32);
    close(
        "cross entropy backward",
        &host(&dl),
        &reduce::log_softmax_backward(&dlogp, &want, rows, cols),
        1e-6,
    );
}

fn gather_concat_and_adjoints(d: Device) {
    let b = d.backend();
    let (outer, c, inner) = (2, 5, 3);
    let xv = vals(outer * c * inner, 20);
    let x = on(d, &[outer, c, inner], xv.clone());
    let idx = [4usize, 1, 1, 0];
    let iu: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    let y = b.index_select(&x, 1, &idx).expect("index_select");
    assert_eq!(y.shape(), &[outer, 4, inner]);
    close(
        "index_select",
        &host(&y),
        &channels::index_select(&xv, outer, c, inner, &iu),
        0.0,
    );
    let gv = vals(outer * 4 * inner, 21);
    let g = on(d, &[outer, 4, inner], gv.clone());
    let dx = b
        .index_add(&g, &[outer, c, inner], 1, &idx)
        .expect("index_add");
    let mut want = vec![0f64; outer * c * inner];
    for o in 0..outer {
        for (j, &ci) in idx.iter().enumerate() {
            for i in 0..inner {
                want[(o * c + ci) * inner + i] += f64::from(gv[(o * 4 + j) * inner + i]);
            }
        }
    }
    close("index_add", &host(&dx), &want, 1e-6);
    let zv = vals(outer * 2 * inner, 22);
    let z = on(d, &[outer, 2, inner], zv.clone());
    let cat = b.concat(&[&x, &z], 1).expect("concat");
    assert_eq!(cat.shape(), &[outer, c + 2, inner]);
    let want = channels::concat(&[(&xv, c), (&zv, 2)], outer, inner);
    close("concat", &host(&cat), &want, 0.0);
    let parts = b.split(&cat, 1, &[c, 2]).expect("split");
    close("split 0", &host(&parts[0]), &xv, 0.0);
    close("split 1", &host(&parts[1]), &zv, 0.0);
}

fn optimizer_steps(d: Device) {
    let b = d.backend();
    let n = 37;
    let (w0, g) = (vals(n, 23), vals(n, 24));
    for (momentum, nesterov) in [(0.0, false), (0.9, false), (0.9, true)] {
        let h = SgdStep {
            lr: 0.1,
            weight_decay: 5e-4,
            momentum,
            nesterov,
        };
        let mut w = on(d, &[n], w0.clone());
        let mut v = on(d, &[n], vec![0.0; n]);
        let gt = on(d, &[n], g.clone());
        let (mut wr, mut vr) = (w0.clone(), vec![0f32; n]);
        for _ in 0..3 {
            let vel = (momentum != 0.0).then_some(&mut v);
            b.sgd_update(&mut w, &gt, vel, &h).expect("sgd");
            optim::sgd_step(&mut wr, &g, &mut vr, 0.1, momentum, 5e-4, nesterov);
        }
        close(
            &format!("sgd μ={momentum} nesterov={nesterov}"),
            &host(&w),
            &wr,
            1e-6,
        );
    }
    let mut w = on(d, &[n], w0.clone());
    let (mut m, mut v) = (on(d, &[n], vec![0.0; n]), on(d, &[n], vec![0.0; n]));
    let gt = on(d, &[n], g.clone());
    let (mut wr, mut mr, mut vr) = (w0.clone(), vec![0f32; n], vec![0f32; n]);
    for t in 1..=3u32 {
        let (bc1, bc2) = optim::adam_bias_corrections(0.9, 0.999, t);
        let h = AdamStep {
            lr: 1e-2,
            weight_decay: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            bias_correction1: bc1,
            bias_correction2: bc2,
        };
        b.adam_update(&mut w, &gt, &mut m, &mut v, &h)
            .expect("adam");
        optim::adam_step(
            &mut wr, &g, &mut mr, &mut vr, 1e-2, 0.9, 0.999, 1e-8, 1e-4, t,
        );
    }
    close("adam", &host(&w), &wr, 1e-5);
    // an update of a shared buffer leaves the other tensor alone
    let mut w = on(d, &[n], w0.clone());
    let keep = w.clone();
    let h = SgdStep {
        lr: 0.1,
        weight_decay: 0.0,
        momentum: 0.0,
        nesterov: false,
    };
    b.sgd_update(&mut w, &gt, None, &h).expect("sgd");
    close("clone untouched", &host(&keep), &w0, 0.0);
}

fn fill_and_dropout_masks(d: Device) {
    let b = d.backend();
    close(
        "full",
        &host(&b.full(&[3, 4], -2.5).expect("full")),
        &[-2.5f32; 12],
        0.0,
    );
    let z = b.full(&[0, 4], 1.0).expect("empty");
    assert_eq!(z.shape(), &[0, 4]);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
    let (p, n) = (0.3f32, 20_000);
    let m = host(&b.dropout_mask(&[n], p, &mut rng).expect("dropout"));
    let keep = 1.0 / (1.0 - p);
    assert!(
        m.iter().all(|&v| v == 0.0 || v == keep),
        "mask values are 0 or 1/(1-p)"
    );
    let dropped = m.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
    // 20k Bernoulli(0.3) draws: the standard deviation of the fraction is 0.0032
    assert!((dropped - 0.3).abs() < 0.02, "dropped fraction {dropped}");
    let m2 = host(&b.dropout_mask(&[n], p, &mut rng).expect("dropout"));
    assert_ne!(m, m2, "the next call draws a new mask");
}
