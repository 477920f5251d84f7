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
//! convolutions, overlapping pooling windows. The ops of a training step beyond the
//! layers (loss, gathers, optimizer steps, dropout) are checked in `backend_train_ops.rs`.

#[macro_use]
mod per_device;
mod common;
use common::{host, on};
use per_device::{close, vals};
use prune_core::autograd::{Binary, Unary};
use prune_core::backend::cuda::{open_emulated_with, ConvSetting, CudaDevice};
use prune_core::cpu::{Conv2dParams, PoolParams};
use prune_core::Device;
use prune_kernels::cpu_ref::elementwise::{self as ew, Binary as KB, Unary as KU};
use prune_kernels::cpu_ref::pooling::Pool;
use prune_kernels::cpu_ref::{batchnorm, conv};
use prune_kernels::ConvShape;

/// The ordinal under which the emulated device is registered (convolution through cuDNN's
/// host stand-in).
const EMU: usize = 63;
/// The emulated device whose convolutions take the implicit-GEMM fallback.
const EMU_GEMM: usize = 61;

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
    );
    tests.push(prune_testkit::test_needing(
        "emu_gemm::convolution_dense_grouped_and_gradients",
        &emu_gemm,
        || convolution_dense_grouped_and_gradients(Device::Cuda(EMU_GEMM)),
    ));
    prune_testkit::run(tests);
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
    assert!(b.all_finite(&[&x]).expect("finite"));
    let mut bad = xv.clone();
    bad[17] = f32::INFINITY;
    let bad = on(d, &[24], bad);
    let mut nan = xv.clone();
    nan[3] = f32::NAN;
    let nan = on(d, &[4, 6], nan);
    let empty = on(d, &[0], vec![]);
    assert!(!b.all_finite(&[&bad]).expect("finite"));
    assert!(!b.all_finite(&[&nan]).expect("finite"));
    // several tensors, one answer: false when any one holds a non-finite element
    assert!(b.all_finite(&[&x, &acc, &empty]).expect("finite"));
    assert!(b.all_finite(&[]).expect("finite"));
    assert!(!b.all_finite(&[&x, &bad, &acc]).expect("finite"));
    assert!(!b.all_finite(&[&empty, &acc, &nan]).expect("finite"));
    // huge but finite values stay finite (x·0, not a sum of x, is what is summed)
    let huge = on(d, &[4], vec![3.0e38; 4]);
    assert!(b.all_finite(&[&huge, &x]).expect("finite"));
    use prune_core::backend::first_non_finite;
    assert_eq!(first_non_finite(&[&x, &acc]).expect("scan"), None);
    assert_eq!(first_non_finite(&[&x, &nan, &bad]).expect("scan"), Some(1));
    assert_eq!(first_non_finite(&[&bad, &x]).expect("scan"), Some(0));
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
            .conv2d_backward(&x, &wt, &g, &p, true, true)
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
        close(
            &format!("{what} dbias"),
            &host(gr.bias.as_ref().expect("bias gradient")),
            &db,
            1e-5,
        );
        // neither the input's nor the bias's gradient when not asked for
        let only_w = b
            .conv2d_backward(&x, &wt, &g, &p, false, false)
            .expect("conv backward");
        assert!(only_w.x.is_none() && only_w.bias.is_none(), "{what}");
        close(
            &format!("{what} dw alone"),
            &host(&only_w.w),
            &dw_want,
            1e-5,
        );
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
