//! Helpers of the emulated-kernel tests: launches under several thread schedules that must
//! agree bit for bit, and tolerance checks against the CPU references.
#![allow(dead_code)]

pub use prune_kernels_emu::{launch, Arg, DevBuf, Schedule};

/// The schedules every emulated test runs under.
pub const SCHEDULES: [Schedule; 3] = [
    Schedule::Ascending,
    Schedule::Descending,
    Schedule::Shuffled(0x5eed),
];

/// Runs `f` (which allocates fresh buffers, launches and returns the outputs) under every
/// schedule and checks the outputs agree bit for bit; returns those of the first.
pub fn all_schedules<T: Copy + PartialEq + std::fmt::Debug>(
    what: &str,
    f: impl Fn(Schedule) -> Vec<Vec<T>>,
) -> Vec<Vec<T>> {
    let first = f(SCHEDULES[0]);
    for s in &SCHEDULES[1..] {
        let other = f(*s);
        for (k, (a, b)) in first.iter().zip(&other).enumerate() {
            let bits_eq = a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    // NaN == NaN for this purpose: compare the representations.
                    format!("{x:?}") == format!("{y:?}")
                });
            assert!(
                bits_eq,
                "{what}: output {k} differs between schedules {:?} and {s:?}",
                SCHEDULES[0]
            );
        }
    }
    first
}

/// A buffer filled with NaN, so that an element the kernel should write but does not shows.
pub fn nan_buf(len: usize) -> DevBuf<f32> {
    DevBuf::filled(len, f32::NAN).expect("emulated buffer")
}

pub fn buf(v: &[f32]) -> DevBuf<f32> {
    DevBuf::from_slice(v).expect("emulated buffer")
}

pub fn ubuf(v: &[u32]) -> DevBuf<u32> {
    DevBuf::from_slice(v).expect("emulated buffer")
}

/// |got - want| <= atol + rtol |want| elementwise, with a message naming the first miss.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g as f64 - w).abs() <= atol + rtol * w.abs() || (g.is_nan() && w.is_nan());
        assert!(ok, "{what}[{i}]: got {g}, want {w}");
    }
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}
