//! The SBP op of every backend against the single SBP math, computed independently:
//! forward/backward against `cpu_ref::sbp::{forward, backward}` (which re-draw the
//! samples), statistics against the per-channel closed forms, the KL gradient against
//! central differences of the KL in f64. Each check is written once and run on the CPU
//! backend always, on the CUDA backend over the CPU emulation of the kernels always
//! (`emu::`, device `cuda:63`), and on `cuda:0` when a GPU is present (reported as ignored
//! with the reason otherwise; `PRUNE_REQUIRE_GPU=1` makes that a failure).

mod common;
use common::{host, on};
use prune_core::backend::cuda::{open_emulated, CudaDevice};
use prune_core::backend::SbpNoiseArgs;
use prune_core::sbp::{backward, forward, kl, stats, NoiseMode, NoiseStream, SbpShape};
use prune_core::Device;

/// The ordinal under which the emulated device is registered.
const EMU: usize = 63;

fn main() {
    let gpu = prune_testkit::Need::probe(
        "no usable GPU",
        "PRUNE_REQUIRE_GPU",
        CudaDevice::new(0).map(|_| ()).map_err(|e| e.to_string()),
    );
    let met = prune_testkit::Need::met();
    let emu = prune_testkit::Need::probe(
        "no emulated device",
        "PRUNE_REQUIRE_EMU",
        open_emulated(EMU, 2, prune_kernels::Schedule::Shuffled(11)).map_err(|e| e.to_string()),
    );
    prune_testkit::run(vec![
        prune_testkit::test_needing("emu::sbp_noise_matches_reference", &emu, || {
            sbp_noise_matches_reference(Device::Cuda(EMU))
        }),
        prune_testkit::test_needing("emu::sbp_stats_and_kl_match_closed_forms", &emu, || {
            sbp_stats_and_kl_match_closed_forms(Device::Cuda(EMU))
        }),
        prune_testkit::test_needing("cpu::sbp_noise_matches_reference", &met, || {
            sbp_noise_matches_reference(Device::Cpu)
        }),
        prune_testkit::test_needing("cpu::sbp_stats_and_kl_match_closed_forms", &met, || {
            sbp_stats_and_kl_match_closed_forms(Device::Cpu)
        }),
        prune_testkit::test_needing("cuda::sbp_noise_matches_reference", &gpu, || {
            sbp_noise_matches_reference(Device::Cuda(0))
        }),
        prune_testkit::test_needing("cuda::sbp_stats_and_kl_match_closed_forms", &gpu, || {
            sbp_stats_and_kl_match_closed_forms(Device::Cuda(0))
        }),
    ]);
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * want.abs().max(1.0),
        "{what}: {got} vs {want}"
    );
}

/// Bit-equal on the CPU (the backend is the reference's math); within float rounding of
/// the double-precision sampling on a GPU.
fn same(d: Device, what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if d == Device::Cpu {
        assert_eq!(got, want, "{what}");
    } else {
        for (a, w) in got.iter().zip(want) {
            close(what, f64::from(*a), f64::from(*w), 1e-6);
        }
    }
}

/// Parameters that reach the mirrored branch (μ > 0 side), the far tail, narrow and wide σ
/// and the log σ clamp.
fn params(c: usize) -> (Vec<f32>, Vec<f32>) {
    let mu = [-0.5, -12.0, -2.0, 0.3, 4.0, -25.0, -1.0];
    let ls = [-1.0, 0.5, 0.0, -2.0, -3.0, 1.0, 21.0];
    (
        (0..c).map(|i| mu[i % 7]).collect(),
        (0..c).map(|i| ls[i % 7]).collect(),
    )
}

fn sbp_noise_matches_reference(d: Device) {
    // [N, C, H, W] with a 7×7 map (inner % 4 ≠ 0), [N, C, L], and [N, F] (inner = 1).
    for dims in [vec![2, 5, 7, 7], vec![3, 4, 5], vec![6, 7]] {
        let numel: usize = dims.iter().product();
        let shape = SbpShape {
            rows: dims[0],
            channels: dims[1],
            inner: dims[2..].iter().product(),
        };
        let x: Vec<f32> = (0..numel)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let g: Vec<f32> = (0..numel)
            .map(|i| ((i * 11 % 17) as f32 - 8.0) / 5.0)
            .collect();
        let (mu, ls) = params(shape.channels);
        for mode in [NoiseMode::PerChannel, NoiseMode::PerExample] {
            let stream = NoiseStream::new(0x5eed_0000_0001, 3, 42);
            let (xt, mt, lt) = (
                on(d, &dims, x.clone()),
                on(d, &[shape.channels], mu.clone()),
                on(d, &[shape.channels], ls.clone()),
            );
            let b = d.backend();
            let fwd = b
                .sbp_noise_forward(&xt, &mt, &lt, &SbpNoiseArgs { stream, mode })
                .expect("forward");
            assert_eq!(fwd.y.shape(), &dims[..]);
            let (y_ref, theta_ref) = forward(&x, &shape, &mu, &ls, stream, mode).expect("ref");
            same(d, &format!("{dims:?} {mode:?}: y"), &host(&fwd.y), &y_ref);
            same(
                d,
                &format!("{dims:?} {mode:?}: θ"),
                &host(&fwd.saved.theta),
                &theta_ref,
            );
            let gt = on(d, &dims, g.clone());
            let gr = b
                .sbp_noise_backward(&xt, &gt, &fwd.saved)
                .expect("backward");
            let r = backward(&g, &x, &shape, &mu, &ls, stream, mode).expect("ref");
            same(d, &format!("{dims:?} {mode:?}: dx"), &host(&gr.dx), &r.dx);
            for (name, got, want) in [
                ("dmu", host(&gr.dmu), &r.dmu),
                ("dlog_sigma", host(&gr.dlog_sigma), &r.dlog_sigma),
            ] {
                assert_eq!(got.len(), shape.channels);
                for (a, w) in got.iter().zip(want) {
                    close(name, f64::from(*a), *w, 1e-5);
                }
            }
        }
    }
}

fn sbp_stats_and_kl_match_closed_forms(d: Device) {
    let c = 14;
    let (mu, ls) = params(c);
    let b = d.backend();
    let (mt, lt) = (on(d, &[c], mu.clone()), on(d, &[c], ls.clone()));
    let st = b.sbp_stats(&mt, &lt).expect("stats");
    let (mean, snr, scale) = (host(&st.expected_theta), host(&st.snr), host(&st.scale));
    for i in 0..c {
        let want = stats(f64::from(mu[i]), f64::from(ls[i]));
        close("E[θ]", f64::from(mean[i]), want.mean, 1e-5);
        close("SNR", f64::from(snr[i]), want.snr.min(1e30), 1e-4);
        assert_eq!(scale[i], if want.keep { mean[i] } else { 0.0 }, "scale {i}");
    }
    let k = b.sbp_kl(&mt, &lt).expect("kl");
    assert!(k.sum.shape().is_empty(), "the KL is a scalar");
    let want: f64 = mu
        .iter()
        .zip(&ls)
        .map(|(&m, &l)| kl(m.into(), l.into()))
        .sum();
    close("Σ KL", f64::from(host(&k.sum)[0]), want, 1e-5);
    // ∂/∂μ and ∂/∂log σ by central differences in f64, away from the log σ clamp.
    let (dmu, dls) = (host(&k.dmu), host(&k.dlog_sigma));
    let h = 1e-5;
    for i in 0..c {
        let (m, l) = (f64::from(mu[i]), f64::from(ls[i]));
        if l.abs() >= 20.0 - 10.0 * h {
            assert_eq!(dls[i], 0.0, "log σ beyond the clamp gets no gradient");
            continue;
        }
        let fd_mu = (kl(m + h, l) - kl(m - h, l)) / (2.0 * h);
        let fd_ls = (kl(m, l + h) - kl(m, l - h)) / (2.0 * h);
        close("∂KL/∂μ", f64::from(dmu[i]), fd_mu, 1e-4);
        close("∂KL/∂log σ", f64::from(dls[i]), fd_ls, 1e-4);
    }
}
