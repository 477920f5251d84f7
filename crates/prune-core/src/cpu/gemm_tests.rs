//! Tests of the GEMM against a direct triple loop accumulated in f64.

use super::gemm::{
    gemm_packed_b, gemm_prepacked, gemm_with, matmul, sgemm, sgemm_packed_serial, sgemm_serial,
    COut, Operand, PackedA, PackedBLayout,
};
use super::gemm_kernels::{available_kernels, Kernel};
use super::test_util::{assert_close, rand_vec, rng};
use crate::error::CoreError;
use crate::tensor::Tensor;

/// `alpha · op(A) · op(B) + beta · C` by direct loops in f64.
fn reference(
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &[f32],
) -> Vec<f64> {
    let mut out = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f64;
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] };
                let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                acc += av as f64 * bv as f64;
            }
            let prev = if beta == 0.0 {
                0.0
            } else {
                beta as f64 * c[i * n + j] as f64
            };
            out[i * n + j] = alpha as f64 * acc + prev;
        }
    }
    out
}

/// Runs one case through `kernel` (serial and parallel) and checks both
/// against the reference and against each other bit for bit.
fn check_case(
    kernel: &'static Kernel,
    ta: bool,
    tb: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    beta: f32,
    seed: u64,
) {
    let mut r = rng(seed);
    let a = rand_vec(m * k, &mut r);
    let b = rand_vec(k * n, &mut r);
    let c0 = rand_vec(m * n, &mut r);
    let want = reference(ta, tb, m, n, k, alpha, &a, &b, beta, &c0);
    let opa = Operand {
        data: &a,
        ld: if ta { m } else { k },
        trans: ta,
    };
    let opb = Operand {
        data: &b,
        ld: if tb { k } else { n },
        trans: tb,
    };
    let mut serial = c0.clone();
    gemm_with(
        kernel,
        m,
        n,
        k,
        alpha,
        opa,
        opb,
        beta,
        &mut serial,
        n,
        false,
    );
    let what = format!(
        "{} ta={ta} tb={tb} m={m} n={n} k={k} alpha={alpha} beta={beta}",
        kernel.name
    );
    let tol = 1e-5 * (k as f64).sqrt().max(1.0);
    assert_close(&serial, &want, tol, tol, &what);
    let mut par = c0.clone();
    gemm_with(kernel, m, n, k, alpha, opa, opb, beta, &mut par, n, true);
    assert!(par == serial, "{what}: parallel result differs from serial");
    // The same product with A packed up front.
    let pa = PackedA::with_kernel(kernel, ta, m, k, &a).unwrap();
    for parallel in [false, true] {
        let mut pre = c0.clone();
        gemm_prepacked(
            &pa,
            n,
            alpha,
            opb,
            COut::Update(&mut pre, beta),
            n,
            parallel,
        );
        assert!(
            pre == serial,
            "{what}: prepacked (parallel={parallel}) differs"
        );
    }
}

#[test]
fn all_kernels_all_transposes_odd_sizes() {
    let sizes = [
        (1, 1, 1),
        (1, 7, 3),
        (5, 1, 9),
        (3, 5, 1),
        (13, 17, 19),
        (14, 32, 8),
        (15, 33, 31),
        (29, 65, 40),
        (7, 100, 257),
        (37, 530, 70),
        (70, 45, 600),
    ];
    let mut seed = 0;
    for kernel in available_kernels() {
        for &(m, n, k) in &sizes {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                seed += 1;
                check_case(kernel, ta, tb, m, n, k, 1.0, 0.0, seed);
            }
        }
    }
}

#[test]
fn alpha_beta_and_accumulation() {
    let mut seed = 100;
    for kernel in available_kernels() {
        for &(alpha, beta) in &[
            (2.5f32, 0.0f32),
            (1.0, 1.0),
            (-0.5, 0.75),
            (0.0, 2.0),
            (1.0, -1.0),
        ] {
            for (ta, tb) in [(false, false), (true, true)] {
                seed += 1;
                check_case(kernel, ta, tb, 23, 41, 300, alpha, beta, seed);
            }
        }
    }
}

#[test]
fn large_enough_to_run_in_parallel() {
    // m·n·k above the parallel threshold, with several k- and n-blocks.
    for kernel in available_kernels() {
        check_case(kernel, false, false, 150, 600, 520, 1.0, 0.5, 7);
        check_case(kernel, true, true, 97, 1040, 300, 1.0, 0.0, 8);
        // m above the in-place threshold: an untransposed B is packed.
        check_case(kernel, false, false, 300, 260, 300, 1.0, 0.0, 9);
        check_case(kernel, true, false, 270, 300, 250, 0.5, 1.0, 10);
    }
}

#[test]
fn degenerate_dimensions() {
    // k == 0: C = beta · C; m or n == 0: nothing to do.
    let mut c = vec![2.0f32; 6];
    sgemm(false, false, 2, 3, 0, 1.0, &[], &[], 0.5, &mut c);
    assert_eq!(c, vec![1.0; 6]);
    sgemm(false, false, 2, 3, 0, 1.0, &[], &[], 0.0, &mut c);
    assert_eq!(c, vec![0.0; 6]);
    let mut empty: Vec<f32> = vec![];
    sgemm(true, false, 0, 3, 4, 1.0, &[], &[0.0; 12], 1.0, &mut empty);
    sgemm(false, true, 3, 0, 4, 1.0, &[0.0; 12], &[], 1.0, &mut empty);
}

#[test]
fn beta_zero_ignores_nan_in_c() {
    for kernel in available_kernels() {
        let (m, n, k) = (9, 37, 5);
        let mut r = rng(3);
        let a = rand_vec(m * k, &mut r);
        let b = rand_vec(k * n, &mut r);
        let mut c = vec![f32::NAN; m * n];
        let opa = Operand {
            data: &a,
            ld: k,
            trans: false,
        };
        let opb = Operand {
            data: &b,
            ld: n,
            trans: false,
        };
        gemm_with(kernel, m, n, k, 1.0, opa, opb, 0.0, &mut c, n, false);
        assert!(c.iter().all(|v| v.is_finite()), "{}", kernel.name);
    }
}

/// `COut::Overwrite` stores the values of `COut::Update` with
/// β = 0 into a buffer it never reads (here never initialised), leaves the
/// columns past `n` of each `ldc` row alone, and writes zeros when
/// `alpha = 0`.
#[test]
fn overwriting_product_matches_beta_zero() {
    let (m, n, k, ldc) = (21, 53, 40, 60);
    let mut r = rng(12);
    let a = rand_vec(m * k, &mut r);
    let b = rand_vec(k * n, &mut r);
    let opb = Operand {
        data: &b,
        ld: n,
        trans: false,
    };
    let pa = PackedA::new(false, m, k, &a).unwrap();
    for parallel in [false, true] {
        let mut want = vec![-1.0f32; m * ldc];
        gemm_prepacked(
            &pa,
            n,
            1.5,
            opb,
            COut::Update(&mut want, 0.0),
            ldc,
            parallel,
        );
        let mut out = vec![std::mem::MaybeUninit::new(-1.0f32); m * ldc];
        for (i, row) in out.chunks_mut(ldc).enumerate() {
            row[..n].fill(std::mem::MaybeUninit::uninit());
            assert_eq!(row.len(), ldc, "row {i}");
        }
        gemm_prepacked(&pa, n, 1.5, opb, COut::Overwrite(&mut out), ldc, parallel);
        // SAFETY: every row's first `n` values were written by the product
        // and the rest were initialised to -1.
        let got: Vec<f32> = out.iter().map(|v| unsafe { v.assume_init() }).collect();
        assert_eq!(got, want, "parallel {parallel}");
    }
    let mut out = vec![std::mem::MaybeUninit::<f32>::uninit(); m * n];
    gemm_prepacked(&pa, n, 0.0, opb, COut::Overwrite(&mut out), n, false);
    // SAFETY: with alpha = 0 every value is written as zero.
    assert!(out.iter().all(|v| unsafe { v.assume_init() } == 0.0));
}

#[test]
fn public_entry_points_agree() {
    let (m, n, k) = (33, 70, 45);
    let mut r = rng(11);
    let a = rand_vec(m * k, &mut r);
    let b = rand_vec(k * n, &mut r);
    let want = reference(false, true, m, n, k, 1.0, &a, &b, 0.0, &[]);
    let mut c1 = vec![0.0; m * n];
    sgemm(false, true, m, n, k, 1.0, &a, &b, 0.0, &mut c1);
    let mut c2 = vec![0.0; m * n];
    sgemm_serial(false, true, m, n, k, 1.0, &a, &b, 0.0, &mut c2);
    let pa = PackedA::new(false, m, k, &a).unwrap();
    let mut c3 = vec![0.0; m * n];
    sgemm_packed_serial(&pa, true, n, 1.0, &b, 0.0, &mut c3);
    assert_close(&c1, &want, 1e-5, 1e-5, "sgemm");
    assert_eq!(c1, c2);
    assert_eq!(c1, c3);
    // Packing a transposed A gives the same product.
    let mut at = vec![0.0; m * k];
    for i in 0..m {
        for p in 0..k {
            at[p * m + i] = a[i * k + p];
        }
    }
    let pat = PackedA::new(true, m, k, &at).unwrap();
    let mut c4 = vec![0.0; m * n];
    sgemm_packed_serial(&pat, true, n, 1.0, &b, 0.0, &mut c4);
    assert_eq!(c1, c4);
    assert!(matches!(
        PackedA::new(false, m, k, &a[1..]),
        Err(CoreError::BadShape { .. })
    ));
}

#[test]
fn matmul_shapes_and_errors() {
    let mut r = rng(5);
    let a = Tensor::from_vec([3, 4], rand_vec(12, &mut r)).unwrap();
    let b = Tensor::from_vec([5, 4], rand_vec(20, &mut r)).unwrap();
    let c = matmul(&a, &b, false, true).unwrap();
    assert_eq!(c.shape(), &[3, 5]);
    let want = reference(false, true, 3, 5, 4, 1.0, a.data(), b.data(), 0.0, &[]);
    assert_close(c.data(), &want, 1e-6, 1e-6, "matmul");
    let ct = matmul(&b, &a, false, true).unwrap();
    assert_eq!(ct.shape(), &[5, 3]);
    let at = matmul(&a, &a, true, false).unwrap();
    assert_eq!(at.shape(), &[4, 4]);

    let err = matmul(&a, &b, false, false).unwrap_err().to_string();
    assert!(err.contains("[3, 4]") && err.contains("[5, 4]"), "{err}");
    let v = Tensor::zeros([4]);
    let err = matmul(&a, &v, false, false).unwrap_err().to_string();
    assert!(err.contains("[3, 4]") && err.contains("[4]"), "{err}");
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let (m, n, k) = (130, 300, 420);
    let mut r = rng(21);
    let a = rand_vec(m * k, &mut r);
    let b = rand_vec(k * n, &mut r);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut c = vec![0.0; m * n];
            sgemm(false, true, m, n, k, 1.0, &a, &b, 0.0, &mut c);
            c
        })
    };
    let one = run(1);
    for threads in [2, 3, 5] {
        assert!(run(threads) == one, "{threads} threads");
    }
}

/// A right operand written straight into the packed layout gives the
/// product of the operand in place, to the bit: several k-blocks, a
/// partial last column panel (zero-padded), serial and parallel.
#[test]
fn prepacked_right_operand_matches_the_operand_in_place() {
    for (m, n, k) in [(5, 37, 29), (64, 200, 900), (33, 64, 385)] {
        let mut r = rng(40 + m as u64);
        let a = rand_vec(m * k, &mut r);
        let b = rand_vec(k * n, &mut r);
        let layout = PackedBLayout::new(k, n);
        let mut packed = vec![0.0f32; layout.len()];
        for p in 0..k {
            for j in 0..n {
                packed[layout.row(p) + layout.col(j)] = b[p * n + j];
            }
        }
        let opa = Operand {
            data: &a,
            ld: k,
            trans: false,
        };
        for parallel in [false, true] {
            let mut want = vec![0.0f32; m * n];
            let opb = Operand {
                data: &b,
                ld: n,
                trans: false,
            };
            gemm_with(
                super::gemm_kernels::active_kernel(),
                m,
                n,
                k,
                1.0,
                opa,
                opb,
                0.0,
                &mut want,
                n,
                parallel,
            );
            let mut got = vec![f32::NAN; m * n];
            gemm_packed_b(m, n, k, 1.0, opa, &packed, &mut got, n, parallel);
            assert_eq!(got, want, "{m}x{n}x{k}, parallel {parallel}");
        }
    }
}
