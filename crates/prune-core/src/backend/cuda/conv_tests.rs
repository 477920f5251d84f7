//! The convolution engine on emulated devices: which path runs, the algorithm cache, the
//! workspace, errors.

use super::super::{emulated, open_emulated_with};
use super::*;
use crate::{Device, Tensor};
use prune_kernels::Schedule;

fn conv_once(ordinal: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let dev = Device::Cuda(ordinal);
    let p = Conv2dParams {
        stride: (2, 1),
        padding: (1, 0),
        groups: 2,
    };
    let vals = |n: usize, s: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 + s * 11) % 23) as f32 / 11.5 - 1.0)
            .collect()
    };
    let on = |shape: &[usize], v: Vec<f32>| {
        Tensor::from_vec(shape.to_vec(), v)
            .and_then(|t| t.to_device(dev))
            .expect("upload")
    };
    let x = on(&[2, 4, 5, 4], vals(160, 1));
    let w = on(&[6, 2, 3, 2], vals(72, 2));
    let be = dev.backend();
    let y = be.conv2d(&x, &w, None, &p).expect("forward");
    let g = on(y.shape(), vals(y.numel(), 3));
    let gr = be
        .conv2d_backward(&x, &w, &g, &p, true, true)
        .expect("backward");
    let host = |t: &Tensor| t.to_device(Device::Cpu).expect("download").data().to_vec();
    (host(&y), host(gr.x.as_ref().expect("dx")), host(&gr.w))
}

/// The stand-in runs every pass through one cached algorithm per (description, pass)
/// and agrees with the fallback; the fallback chooses no algorithm.
#[test]
fn stand_in_and_fallback_agree_and_algorithms_are_cached() {
    let (dnn, gemm, det) = (57, 58, 59);
    let sched = Schedule::Ascending;
    open_emulated_with(dnn, 2, sched, ConvSetting::Fastest).expect("open");
    open_emulated_with(gemm, 2, sched, ConvSetting::ImplicitGemm).expect("open");
    open_emulated_with(det, 2, sched, ConvSetting::Deterministic).expect("open");
    let d = emulated(dnn).expect("registered");
    assert!(d.uses_cudnn());
    assert!(d.convolution().contains("stand-in"), "{}", d.convolution());
    assert!(format!("{d:?}").contains("convolution: cuDNN stand-in"));
    let a = conv_once(dnn);
    let chosen = d.conv_algorithms();
    let passes: Vec<ConvPass> = chosen.iter().map(|c| c.pass).collect();
    assert_eq!(chosen.len(), 3, "{chosen:?}");
    for p in [
        ConvPass::Forward,
        ConvPass::BackwardData,
        ConvPass::BackwardFilter,
    ] {
        assert!(passes.contains(&p), "{chosen:?}");
    }
    let c = &chosen[0];
    assert_eq!(c.desc.groups, 2);
    assert_eq!(c.desc.y_dims(), [2, 6, 3, 3]);
    assert!(c.workspace_bytes > 0);
    let again = conv_once(dnn);
    assert_eq!(d.conv_algorithms(), chosen, "chosen once per shape");
    assert_eq!(a, again);

    let g = emulated(gemm).expect("registered");
    assert!(!g.uses_cudnn());
    assert!(
        g.convolution().contains("implicit-GEMM") && g.convolution().contains("PRUNE_CUDNN=off"),
        "{}",
        g.convolution()
    );
    let b = conv_once(gemm);
    assert!(g.conv_algorithms().is_empty());
    for (u, v) in [(&a.0, &b.0), (&a.1, &b.1), (&a.2, &b.2)] {
        for (p, q) in u.iter().zip(v.iter()) {
            assert!((p - q).abs() <= 1e-5 * q.abs().max(1.0), "{p} vs {q}");
        }
    }

    let t = emulated(det).expect("registered");
    assert!(
        t.convolution().contains("deterministic"),
        "{}",
        t.convolution()
    );
    assert_eq!(conv_once(det), a);
    assert!(t.conv_algorithms().iter().all(|c| c.deterministic));
}

/// Shapes that do not fit are errors naming them, on both paths.
#[test]
fn mismatched_convolutions_are_errors() {
    for (ordinal, setting) in [(55, ConvSetting::Fastest), (56, ConvSetting::ImplicitGemm)] {
        open_emulated_with(ordinal, 2, Schedule::Ascending, setting).expect("open");
        let dev = Device::Cuda(ordinal);
        let on = |shape: &[usize]| {
            Tensor::from_vec(shape.to_vec(), vec![0.5; shape.iter().product()])
                .and_then(|t| t.to_device(dev))
                .expect("upload")
        };
        let be = dev.backend();
        let p = Conv2dParams::default();
        let e = be
            .conv2d(&on(&[1, 3, 4, 4]), &on(&[2, 2, 3, 3]), None, &p)
            .expect_err("channels differ");
        assert!(e.to_string().contains("[2, 2, 3, 3]"), "{e}");
        let g = on(&[1, 2, 3, 3]);
        let e = be
            .conv2d_backward(&on(&[1, 2, 4, 4]), &on(&[2, 2, 3, 3]), &g, &p, true, true)
            .expect_err("gradient shape");
        assert!(e.to_string().contains("[1, 2, 3, 3]"), "{e}");
    }
}
