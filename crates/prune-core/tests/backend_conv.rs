//! cuDNN convolution on a GPU under the deterministic setting. This binary sets
//! `PRUNE_CUDNN=deterministic` before any device opens, then checks on `cuda:0` that the
//! convolutions go through cuDNN, that every algorithm cuDNN was allowed to choose is one it
//! reports deterministic, that two runs of the forward and both backward passes agree bit
//! for bit, and that they match the CPU backend. Without a GPU (or without libcudnn next
//! to it) the cases are reported as ignored with the reason; `PRUNE_REQUIRE_GPU=1` (as in
//! `scripts/gpu-check.sh`) makes that a failure. The same engine logic runs in CI on the
//! emulated device (`backend::cuda::conv` unit tests: stand-in, fallback, algorithm cache).
//!
//! One case needs only libcudnn, no GPU: the output shape cuDNN derives from the
//! descriptors the backend builds equals the backend's own, for plain, strided, padded,
//! grouped and depthwise convolutions (ignored with the reason where libcudnn does not
//! load).

mod common;
use common::{host, on};
use prune_core::backend::cuda::{cudnn_output_dims, ConvDesc, ConvSetting, CudaDevice};
use prune_core::cpu::Conv2dParams;
use prune_core::Device;

fn main() {
    // Read once per process, when the first device opens: set before anything opens one.
    std::env::set_var(ConvSetting::ENV, "deterministic");
    let opened = CudaDevice::new(0);
    let gpu = prune_testkit::Need::probe(
        "no usable GPU",
        "PRUNE_REQUIRE_GPU",
        opened.as_ref().map(|_| ()).map_err(|e| e.to_string()),
    );
    let cudnn = prune_testkit::Need::probe(
        "no cuDNN on the GPU",
        "PRUNE_REQUIRE_GPU",
        match &opened {
            Ok(d) if d.uses_cudnn() => Ok(()),
            Ok(d) => Err(d.convolution()),
            Err(e) => Err(e.to_string()),
        },
    );
    let libcudnn = prune_testkit::Need::probe(
        "no libcudnn",
        "PRUNE_REQUIRE_GPU",
        cudnn_output_dims(&shapes()[0].0)
            .map(|_| ())
            .map_err(|e| e.to_string()),
    );
    prune_testkit::run(vec![
        prune_testkit::test_needing(
            "cudnn::descriptors_give_the_backend_output_shape",
            &libcudnn,
            descriptors_give_the_backend_output_shape,
        ),
        prune_testkit::test_needing(
            "cuda::device_reports_cudnn_deterministic",
            &gpu,
            device_reports_cudnn_deterministic,
        ),
        prune_testkit::test_needing(
            "cuda::deterministic_cudnn_repeats_bitwise_and_matches_cpu",
            &cudnn,
            deterministic_cudnn_repeats_bitwise_and_matches_cpu,
        ),
    ]);
}

/// Descriptions with every kind of geometry the backend maps, with the output shape
/// worked out by hand.
fn shapes() -> Vec<(ConvDesc, [usize; 4])> {
    let desc = |x: [usize; 4], w: [usize; 4], stride, padding, groups| {
        let p = Conv2dParams {
            stride,
            padding,
            groups,
        };
        ConvDesc::new(&x, &w, &p).expect("valid description")
    };
    vec![
        (
            desc([2, 3, 28, 28], [6, 3, 5, 5], (1, 1), (0, 0), 1),
            [2, 6, 24, 24],
        ),
        (
            desc([4, 16, 32, 32], [32, 16, 3, 3], (2, 2), (1, 1), 1),
            [4, 32, 16, 16],
        ),
        (
            desc([1, 4, 6, 5], [6, 2, 3, 2], (1, 2), (1, 0), 2),
            [1, 6, 6, 2],
        ),
        (
            desc([3, 8, 7, 9], [8, 1, 3, 3], (2, 1), (2, 1), 8),
            [3, 8, 5, 9],
        ),
        (
            desc([5, 12, 10, 10], [6, 12, 1, 1], (3, 3), (0, 0), 1),
            [5, 6, 4, 4],
        ),
    ]
}

fn descriptors_give_the_backend_output_shape() {
    for (d, want) in shapes() {
        assert_eq!(d.y_dims(), want, "{d:?}: the backend's shape");
        let got = cudnn_output_dims(&d).expect("cuDNN output shape");
        assert_eq!(
            got, want,
            "{d:?}: cuDNN's shape from the backend's descriptors"
        );
    }
}

fn dev() -> std::sync::Arc<CudaDevice> {
    CudaDevice::new(0).expect("cuda:0")
}

fn device_reports_cudnn_deterministic() {
    let d = dev();
    let what = d.convolution();
    assert!(d.uses_cudnn(), "cuda:0 convolves without cuDNN: {what}");
    assert!(what.contains("deterministic"), "{what}");
    println!("cuda:0 convolution through {what}");
}

fn vals(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0)
        .collect()
}

/// Forward, backward data and backward filter of ResNet-like shapes (plain 3x3, strided
/// grouped, 1x1 projection): twice on the GPU, bit for bit equal, and against the CPU
/// backend. Each output is a sum of products (up to 288 for y and dx, N·H·W = 3136 for dw)
/// whose order differs between cuDNN's algorithm and the CPU's GEMM, and FFT or Winograd
/// algorithms round differently again, so the bound is relative to the same sum over the
/// absolute values, |x|·|w|, |g|·|w| and |x|·|g| (computed by the CPU backend on |x|, |w|,
/// |g|): |gpu − cpu| ≤ 1e-5 · Σ|terms| + 1e-6.
fn deterministic_cudnn_repeats_bitwise_and_matches_cpu() {
    let gpu = Device::Cuda(0);
    for (x_shape, w_shape, stride, padding, groups) in [
        ([16, 32, 14, 14], [32, 32, 3, 3], (1, 1), (1, 1), 1),
        ([8, 32, 15, 15], [64, 8, 3, 3], (2, 2), (1, 1), 4),
        ([8, 32, 14, 14], [64, 32, 1, 1], (2, 2), (0, 0), 1),
    ] {
        let p = Conv2dParams {
            stride,
            padding,
            groups,
        };
        let n = |s: &[usize]| s.iter().product::<usize>();
        let (xv, wv) = (vals(n(&x_shape), 1), vals(n(&w_shape), 2));
        let run = |d: Device, absolute: bool| {
            let f = |v: Vec<f32>| -> Vec<f32> {
                if absolute {
                    v.iter().map(|a| a.abs()).collect()
                } else {
                    v
                }
            };
            let (x, w) = (
                on(d, &x_shape, f(xv.clone())),
                on(d, &w_shape, f(wv.clone())),
            );
            let be = d.backend();
            let y = be.conv2d(&x, &w, None, &p).expect("forward");
            let g = on(d, y.shape(), f(vals(y.numel(), 3)));
            let gr = be
                .conv2d_backward(&x, &w, &g, &p, true, true)
                .expect("backward");
            [host(&y), host(gr.x.as_ref().expect("dx")), host(&gr.w)]
        };
        let (a, b) = (run(gpu, false), run(gpu, false));
        let (cpu, scale) = (run(Device::Cpu, false), run(Device::Cpu, true));
        let what = format!("{x_shape:?} * {w_shape:?} stride {stride:?} groups {groups}");
        for (k, name) in ["y", "dx", "dw"].iter().enumerate() {
            let same = a[k]
                .iter()
                .zip(&b[k])
                .all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same, "{what} {name}: two runs differ");
            for (i, ((g, c), m)) in a[k].iter().zip(&cpu[k]).zip(&scale[k]).enumerate() {
                assert!(
                    (g - c).abs() <= 1e-5 * m + 1e-6,
                    "{what} {name}[{i}]: cuda {g} vs cpu {c} (sum of |terms| {m})"
                );
            }
        }
    }
    let chosen = dev().conv_algorithms();
    assert!(chosen.len() >= 9, "{chosen:?}");
    for c in &chosen {
        assert!(c.deterministic, "{c:?}");
    }
    println!("cuDNN algorithms chosen under PRUNE_CUDNN=deterministic:");
    for c in chosen {
        println!(
            "  {:?} {:?}x{:?} groups {}: {} ({} B workspace)",
            c.pass,
            c.desc.x_dims(),
            c.desc.w_dims(),
            c.desc.groups,
            c.name,
            c.workspace_bytes
        );
    }
}
