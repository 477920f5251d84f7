//! Fused SBP noise on the GPU against the CPU reference.  Skips without a GPU unless
//! PRUNE_REQUIRE_GPU=1.  Outputs are NaN-filled before every launch.

mod common;

use common::{assert_within, gpu, Rng};
use prune_kernels::cpu_ref::sbp as cref;
use prune_kernels::host::{download, poisoned, upload};
use prune_kernels::{Baselines, NoiseMode, SbpNoise, SbpParams, SbpShape, UnfusedWork};

fn main() {
    let need = common::gpu_need();
    prune_testkit::run(prune_testkit::tests_needing!(&need;
        forward_and_backward_match_cpu_reference,
        channel_stats_match_cpu_reference,
        unfused_chain_agrees_with_fused_forward,
        mismatched_buffers_are_rejected,
    ));
}

fn shapes() -> Vec<SbpShape> {
    vec![
        SbpShape::nchw(3, 5, 2, 3),
        SbpShape::features(37, 130),
        SbpShape::features(3, 1100),
        SbpShape::nchw(2, 3, 40, 41),
        SbpShape::nchw(5, 7, 7, 7),
        SbpShape::nchw(9, 16, 8, 8),
        SbpShape::nchw(1, 1, 1, 1),
        SbpShape::nchw(0, 4, 3, 3),
        SbpShape::nchw(2, 3, 0, 5),
        SbpShape::nchw(70, 2, 1, 3),
        SbpShape::nchw(2, 2, 32, 64),
        SbpShape::nchw(16, 64, 56, 56),
        SbpShape::features(2048, 513),
    ]
}

fn rel_tol(v: &[f64], rel: f64) -> Vec<f64> {
    v.iter().map(|x| rel * x.abs() + 1e-30).collect()
}

fn forward_and_backward_match_cpu_reference() {
    let Some(kc) = gpu("forward_and_backward_match_cpu_reference") else {
        return;
    };
    let sbp = SbpNoise::new(&kc).expect("compile sbp_noise.cu");
    let stream = kc.stream();
    let mut rng = Rng::fresh("forward_and_backward_match_cpu_reference");
    for mode in [NoiseMode::PerChannel, NoiseMode::PerExample] {
        for shape in shapes() {
            let what = format!("{shape:?} {mode:?}");
            let (n, c, tl) = (
                shape.numel().unwrap(),
                shape.channels,
                shape.theta_len(mode).unwrap(),
            );
            let x = rng.vec(n, -2.0, 2.0);
            let mu = rng.vec(c, -4.0, 0.5);
            let ls = rng.vec(c, -3.0, 1.0);
            let seed = rng.next_u64();
            let (y, theta) = sbp
                .forward_host(stream, &x, shape, &mu, &ls, seed, mode)
                .unwrap();
            let (yr, tr) = cref::forward(&x, &shape, &mu, &ls, seed, mode).unwrap();
            let tr64: Vec<f64> = tr.iter().map(|&v| v as f64).collect();
            let yr64: Vec<f64> = yr.iter().map(|&v| v as f64).collect();
            assert_within(
                &format!("theta {what}"),
                &theta,
                &tr64,
                &rel_tol(&tr64, 2e-6),
            );
            assert_within(&format!("y {what}"), &y, &yr64, &rel_tol(&yr64, 2e-6));

            let dy = rng.vec(n, -1.0, 1.0);
            let g = sbp
                .backward_host(stream, &dy, &x, &theta, shape, &mu, &ls, seed, mode)
                .unwrap();
            let r = cref::backward(&dy, &x, &shape, &mu, &ls, seed, mode).unwrap();
            let dx64: Vec<f64> = r.dx.iter().map(|&v| v as f64).collect();
            assert_within(&format!("dx {what}"), &g.dx, &dx64, &rel_tol(&dx64, 2e-6));
            // Float reductions on the device: tolerance relative to sum |dy x|.
            let mut abs_sum = vec![0.0f64; tl];
            for k in 0..n {
                let rc = k / shape.inner.max(1);
                let (row, ch) = (rc / c, rc % c);
                let t = if mode == NoiseMode::PerChannel {
                    ch
                } else {
                    row * c + ch
                };
                abs_sum[t] += (dy[k] as f64 * x[k] as f64).abs();
            }
            let tol: Vec<f64> = abs_sum.iter().map(|a| 1e-5 * a + 1e-6).collect();
            assert_within(&format!("dtheta {what}"), &g.dtheta, &r.dtheta, &tol);
            let smp = cref::samples(&shape, &mu, &ls, seed, mode).unwrap();
            let (mut bmu, mut bls) = (vec![1e-6f64; c], vec![1e-6f64; c]);
            for t in 0..tl {
                bmu[t % c] += 1e-5 * abs_sum[t] * smp[t].dtheta_dmu.abs();
                bls[t % c] += 1e-5 * abs_sum[t] * smp[t].dtheta_dlog_sigma.abs();
            }
            assert_within(&format!("dmu {what}"), &g.dmu, &r.dmu, &bmu);
            assert_within(
                &format!("dlog_sigma {what}"),
                &g.dlog_sigma,
                &r.dlog_sigma,
                &bls,
            );
        }
    }
}

fn channel_stats_match_cpu_reference() {
    let Some(kc) = gpu("channel_stats_match_cpu_reference") else {
        return;
    };
    let sbp = SbpNoise::new(&kc).expect("compile sbp_noise.cu");
    let mut rng = Rng::fresh("channel_stats_match_cpu_reference");
    for c in [1usize, 7, 300, 1000] {
        let mu = rng.vec(c, -25.0, 5.0);
        let ls = rng.vec(c, -8.0, 6.0);
        let st = sbp.stats_host(kc.stream(), &mu, &ls).unwrap();
        let r: Vec<_> = (0..c)
            .map(|i| cref::stats(mu[i] as f64, ls[i] as f64))
            .collect();
        let mean: Vec<f64> = r.iter().map(|s| s.mean).collect();
        let snr: Vec<f64> = r.iter().map(|s| s.snr).collect();
        let kl: Vec<f64> = r.iter().map(|s| s.kl).collect();
        assert_within("mean", &st.mean, &mean, &rel_tol(&mean, 1e-5));
        // SNR is a second difference of log masses: rounding grows like SNR^2 times the
        // relative accuracy of erfcx (a few ulp).
        let snr_tol: Vec<f64> = snr.iter().map(|s| s * (1e-5 + 1e-14 * s * s)).collect();
        assert_within("snr", &st.snr, &snr, &snr_tol);
        let kl_tol: Vec<f64> = kl.iter().map(|k| 1e-5 * k.abs().max(1.0)).collect();
        assert_within("kl", &st.kl, &kl, &kl_tol);
    }
}

fn unfused_chain_agrees_with_fused_forward() {
    let Some(kc) = gpu("unfused_chain_agrees_with_fused_forward") else {
        return;
    };
    let sbp = SbpNoise::new(&kc).expect("compile sbp_noise.cu");
    let base = Baselines::new(&kc).expect("compile baseline.cu");
    let stream = kc.stream();
    let mut rng = Rng::fresh("unfused_chain_agrees_with_fused_forward");
    for mode in [NoiseMode::PerChannel, NoiseMode::PerExample] {
        for shape in [SbpShape::nchw(4, 6, 5, 5), SbpShape::features(33, 17)] {
            let n = shape.numel().unwrap();
            let x = upload(stream, &rng.vec(n, -1.0, 1.0)).unwrap();
            let mu = upload(stream, &rng.vec(shape.channels, -3.0, 0.0)).unwrap();
            let ls = upload(stream, &rng.vec(shape.channels, -2.0, 0.5)).unwrap();
            let p = SbpParams {
                mu: &mu,
                log_sigma: &ls,
                stream: rng.next_u64().into(),
                mode,
            };
            let yf = sbp.forward(stream, &x, shape, &p).unwrap().y;
            let mut work = UnfusedWork::new(stream, shape.theta_len(mode).unwrap()).unwrap();
            let mut yu = poisoned(stream, n).unwrap();
            base.unfused_noise(stream, &x, shape, &p, &mut work, &mut yu)
                .unwrap();
            let yf = download(stream, &yf, n).unwrap();
            let yu = download(stream, &yu, n).unwrap();
            let yf64: Vec<f64> = yf.iter().map(|&v| v as f64).collect();
            assert_within(
                &format!("unfused {shape:?} {mode:?}"),
                &yu,
                &yf64,
                &rel_tol(&yf64, 1e-5),
            );
        }
    }
}

fn mismatched_buffers_are_rejected() {
    let Some(kc) = gpu("mismatched_buffers_are_rejected") else {
        return;
    };
    let sbp = SbpNoise::new(&kc).expect("compile sbp_noise.cu");
    let stream = kc.stream();
    let shape = SbpShape::nchw(2, 3, 2, 2);
    let err = sbp
        .forward_host(
            stream,
            &[0.0; 23],
            shape,
            &[0.0; 3],
            &[0.0; 3],
            1,
            NoiseMode::PerChannel,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("`x` has 23 elements, expected 24"), "{err}");
    let err = sbp
        .forward_host(
            stream,
            &[0.0; 24],
            shape,
            &[0.0; 2],
            &[0.0; 3],
            1,
            NoiseMode::PerChannel,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("`mu`"), "{err}");
}
