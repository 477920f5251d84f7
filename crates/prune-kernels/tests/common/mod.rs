//! Helpers shared by the integration tests: a seeded generator, GPU availability with the
//! PRUNE_REQUIRE_GPU switch, and tolerance checks.
#![allow(dead_code)]

use prune_kernels::KernelContext;

/// SplitMix64: small, fast, good enough for test data.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from PRUNE_TEST_SEED or the clock; the seed is printed so a
    /// failing run can be repeated.
    pub fn fresh(test: &str) -> Rng {
        let seed = std::env::var("PRUNE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0x5eed)
            });
        eprintln!("{test}: PRUNE_TEST_SEED={seed}");
        Rng(seed)
    }

    pub fn seeded(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [lo, hi].
    pub fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// `n` floats uniform in [lo, hi).
    pub fn vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..n).map(|_| self.range(lo, hi) as f32).collect()
    }

    /// A random subset of 0..bound of size `k`, in random order.
    pub fn subset(&mut self, bound: usize, k: usize) -> Vec<u32> {
        let mut all: Vec<u32> = (0..bound as u32).collect();
        for i in 0..all.len() {
            let j = i + (self.next_u64() % (all.len() - i) as u64) as usize;
            all.swap(i, j);
        }
        all.truncate(k);
        all
    }

    /// A random sorted subset keeping roughly `frac` of 0..bound.
    pub fn sorted_subset(&mut self, bound: usize, frac: f64) -> Vec<u32> {
        (0..bound as u32).filter(|_| self.unit() < frac).collect()
    }
}

/// Whether device 0 opens: the need of the GPU tests, which the harness
/// reports as ignored (with the reason) when unmet, or fails when
/// PRUNE_REQUIRE_GPU=1.
#[allow(dead_code)]
pub fn gpu_need() -> prune_testkit::Need {
    prune_testkit::Need::probe(
        "no usable GPU",
        "PRUNE_REQUIRE_GPU",
        KernelContext::new(0).map(drop).map_err(|e| e.to_string()),
    )
}

/// Opens device 0 for a test that [`gpu_need`] let run.
#[allow(dead_code)]
pub fn gpu(test: &str) -> Option<KernelContext> {
    match KernelContext::new(0) {
        Ok(kc) => Some(kc),
        Err(e) => panic!("{test}: no usable GPU: {e}"),
    }
}

/// Asserts |got - want| <= tol[i] element-wise (NaN fails), naming the first offender.
pub fn assert_within(what: &str, got: &[f32], want: &[f64], tol: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for i in 0..got.len() {
        let err = (got[i] as f64 - want[i]).abs();
        assert!(
            err <= tol[i],
            "{what}[{i}]: got {} want {} (tolerance {:e}, {} entries)",
            got[i],
            want[i],
            tol[i],
            got.len()
        );
    }
}

/// Asserts |got - want| <= abs + rel |want| element-wise.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], rel: f64, abs: f64) {
    let want64: Vec<f64> = want.iter().map(|&v| v as f64).collect();
    let tol: Vec<f64> = want64.iter().map(|w| abs + rel * w.abs()).collect();
    assert_within(what, got, &want64, &tol);
}
