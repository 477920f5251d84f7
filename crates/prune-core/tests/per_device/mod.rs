//! What the backend op tests share: the per-device test list and deterministic values
//! compared against the references with a relative tolerance.
#![allow(dead_code)]

/// One trial per listed check and device: `cpu::` always, `emu::` (the emulated device
/// registered as `cuda:EMU` by the caller) and `cuda::` (GPU 0) when their needs are met.
macro_rules! per_device {
    ($gpu:expr, $emu:expr; $($f:ident),* $(,)?) => {
        vec![
            $(prune_testkit::test_needing(concat!("cpu::", stringify!($f)), &prune_testkit::Need::met(), || $f(Device::Cpu)),)*
            $(prune_testkit::test_needing(concat!("emu::", stringify!($f)), $emu, || $f(Device::Cuda(EMU))),)*
            $(prune_testkit::test_needing(concat!("cuda::", stringify!($f)), $gpu, || $f(Device::Cuda(0))),)*
        ]
    };
}

/// Deterministic values in [−1, 1) (plus `shift`), away from kinks for small `seed` sets.
pub fn vals(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5) - 1.0)
        .collect()
}

#[track_caller]
pub fn close<T: Copy + Into<f64>>(what: &str, got: &[f32], want: &[T], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let w: f64 = w.into();
        assert!(
            (f64::from(g) - w).abs() <= tol * w.abs().max(1.0),
            "{what}[{i}]: {g} vs {w}"
        );
    }
}
