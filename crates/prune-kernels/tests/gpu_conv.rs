//! Masked convolution on the GPU against the CPU reference, including empty keep lists,
//! odd sizes, strides, padding and the split-K weight gradient.  Skips without a GPU
//! unless PRUNE_REQUIRE_GPU=1.  Outputs are NaN-filled (or filled with a sentinel whose
//! survival outside the kept channels is checked) before every launch.

mod common;

use common::{assert_within, gpu, Rng};
use prune_kernels::cpu_ref::conv as cref;
use prune_kernels::{ConvShape, MaskedConv2d};

fn main() {
    let need = common::gpu_need();
    prune_testkit::run(prune_testkit::tests_needing!(&need;
        masked_conv_matches_cpu_reference,
        invalid_keep_lists_are_rejected,
    ));
}

#[allow(clippy::too_many_arguments)]
fn s(
    batch: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: (usize, usize),
    st: (usize, usize),
    pd: (usize, usize),
) -> ConvShape {
    ConvShape {
        batch,
        in_channels: cin,
        height: h,
        width: w,
        out_channels: cout,
        kernel: k,
        stride: st,
        padding: pd,
    }
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// Tolerance from the same computation on absolute values (a bound on the float error).
fn tol_from(bound: &[f32]) -> Vec<f64> {
    bound
        .iter()
        .map(|&b| 1e-5 * b.abs() as f64 + 1e-6)
        .collect()
}

fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn masked_conv_matches_cpu_reference() {
    let Some(kc) = gpu("masked_conv_matches_cpu_reference") else {
        return;
    };
    let conv = MaskedConv2d::new(&kc).expect("compile masked_conv.cu");
    let stream = kc.stream();
    let mut rng = Rng::fresh("masked_conv_matches_cpu_reference");
    let shapes = [
        s(2, 5, 7, 6, 4, (3, 3), (1, 1), (1, 1)),
        s(1, 3, 9, 5, 6, (3, 2), (2, 1), (0, 1)),
        s(3, 4, 5, 5, 3, (1, 1), (1, 1), (0, 0)),
        s(2, 6, 8, 7, 5, (5, 3), (2, 3), (2, 1)),
        s(2, 70, 9, 9, 67, (3, 3), (1, 1), (1, 1)),
        s(1, 8, 40, 40, 9, (3, 3), (2, 2), (1, 1)),
        s(8, 32, 14, 14, 48, (3, 3), (1, 1), (1, 1)),
    ];
    for sh in shapes {
        let (cin, cout) = (sh.in_channels, sh.out_channels);
        let cases = vec![
            (
                (0..cin as u32).collect::<Vec<_>>(),
                (0..cout as u32).collect::<Vec<_>>(),
            ),
            (vec![], rng.subset(cout, cout / 2 + 1)),
            (rng.subset(cin, cin / 2 + 1), vec![]),
            (
                rng.subset(cin, (cin * 3).div_ceil(10)),
                rng.subset(cout, (cout * 3).div_ceil(10)),
            ),
            (rng.sorted_subset(cin, 0.5), rng.sorted_subset(cout, 0.5)),
        ];
        for (ki, ko) in cases {
            let what = format!("{sh:?} kin={} kout={}", ki.len(), ko.len());
            let x = rng.vec(sh.input_len().unwrap(), -1.0, 1.0);
            let w = rng.vec(sh.weight_len().unwrap(), -1.0, 1.0);
            let y = conv.forward_host(stream, &x, &w, &sh, &ki, &ko).unwrap();
            let yr = cref::forward(&x, &w, &sh, &ki, &ko).unwrap();
            let bound = cref::forward(&abs(&x), &abs(&w), &sh, &ki, &ko).unwrap();
            assert_within(&format!("y {what}"), &y, &to64(&yr), &tol_from(&bound));

            let dy = rng.vec(yr.len(), -1.0, 1.0);
            let init = vec![f32::NAN; x.len()];
            let dx = conv
                .backward_input_host(stream, &dy, &w, &sh, &ki, &ko, &init)
                .unwrap();
            // Dropped channels must stay NaN; kept ones must match.
            let mut dxr = vec![f32::NAN; x.len()];
            cref::backward_input(&dy, &w, &sh, &ki, &ko, &mut dxr).unwrap();
            let mut bound = vec![0.0f32; x.len()];
            cref::backward_input(&abs(&dy), &abs(&w), &sh, &ki, &ko, &mut bound).unwrap();
            for i in 0..x.len() {
                assert_eq!(
                    dx[i].is_nan(),
                    dxr[i].is_nan(),
                    "dx[{i}] written set {what}"
                );
            }
            let kept: Vec<usize> = (0..x.len()).filter(|&i| !dxr[i].is_nan()).collect();
            let pick = |v: &[f32]| kept.iter().map(|&i| v[i]).collect::<Vec<f32>>();
            assert_within(
                &format!("dx {what}"),
                &pick(&dx),
                &to64(&pick(&dxr)),
                &tol_from(&pick(&bound)),
            );

            let init = vec![f32::NAN; w.len()];
            let dw = conv
                .backward_weight_host(stream, &dy, &x, &sh, &ki, &ko, &init)
                .unwrap();
            let mut dwr = vec![f32::NAN; w.len()];
            cref::backward_weight(&dy, &x, &sh, &ki, &ko, &mut dwr).unwrap();
            let mut bound = vec![0.0f32; w.len()];
            cref::backward_weight(&abs(&dy), &abs(&x), &sh, &ki, &ko, &mut bound).unwrap();
            for i in 0..w.len() {
                assert_eq!(
                    dw[i].is_nan(),
                    dwr[i].is_nan(),
                    "dw[{i}] written set {what}"
                );
            }
            let kept: Vec<usize> = (0..w.len()).filter(|&i| !dwr[i].is_nan()).collect();
            let pick = |v: &[f32]| kept.iter().map(|&i| v[i]).collect::<Vec<f32>>();
            assert_within(
                &format!("dw {what}"),
                &pick(&dw),
                &to64(&pick(&dwr)),
                &tol_from(&pick(&bound)),
            );
        }
    }
}

fn invalid_keep_lists_are_rejected() {
    let Some(kc) = gpu("invalid_keep_lists_are_rejected") else {
        return;
    };
    let conv = MaskedConv2d::new(&kc).expect("compile masked_conv.cu");
    let sh = s(1, 3, 4, 4, 2, (3, 3), (1, 1), (1, 1));
    let x = vec![0.0f32; sh.input_len().unwrap()];
    let w = vec![0.0f32; sh.weight_len().unwrap()];
    let e = conv
        .forward_host(kc.stream(), &x, &w, &sh, &[3], &[0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("out of range"), "{e}");
    let e = conv
        .forward_host(kc.stream(), &x, &w, &sh, &[0], &[1, 1])
        .unwrap_err()
        .to_string();
    assert!(e.contains("more than once"), "{e}");
}
