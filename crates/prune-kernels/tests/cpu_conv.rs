//! CPU reference of the masked convolution: against a plain dense convolution with the
//! dropped channels zeroed and the output sliced, gradients against finite differences and
//! the adjoint identity, untouched entries, and argument validation.

mod common;

use common::Rng;
use prune_kernels::cpu_ref::conv::{backward_input, backward_weight, dense_forward, forward};
use prune_kernels::ConvShape;

fn shapes() -> Vec<ConvShape> {
    let s = |batch, cin, h, w, cout, kh, kw, st: (usize, usize), pd: (usize, usize)| ConvShape {
        batch,
        in_channels: cin,
        height: h,
        width: w,
        out_channels: cout,
        kernel: (kh, kw),
        stride: st,
        padding: pd,
    };
    vec![
        s(2, 5, 7, 6, 4, 3, 3, (1, 1), (1, 1)),
        s(1, 3, 9, 5, 6, 3, 2, (2, 1), (0, 1)),
        s(3, 4, 5, 5, 3, 1, 1, (1, 1), (0, 0)),
        s(2, 6, 8, 7, 5, 5, 3, (2, 3), (2, 1)),
        s(1, 2, 3, 3, 2, 3, 3, (1, 1), (0, 0)),
    ]
}

fn keep_cases(rng: &mut Rng, bound: usize) -> Vec<Vec<u32>> {
    vec![
        (0..bound as u32).collect(),
        vec![],
        rng.subset(bound, 1),
        rng.subset(bound, bound.div_ceil(2)),
        rng.sorted_subset(bound, 0.3),
    ]
}

/// Dense convolution with dropped input channels zeroed, output sliced to `keep_out`.
fn dense_reference(
    x: &[f32],
    w: &[f32],
    sh: &ConvShape,
    keep_in: &[u32],
    keep_out: &[u32],
) -> Vec<f32> {
    let plane = sh.height * sh.width;
    let mut xm = vec![0.0f32; x.len()];
    for b in 0..sh.batch {
        for &c in keep_in {
            let base = (b * sh.in_channels + c as usize) * plane;
            xm[base..base + plane].copy_from_slice(&x[base..base + plane]);
        }
    }
    let full = dense_forward(&xm, w, sh).unwrap();
    let (ho, wo) = sh.output_hw().unwrap();
    let mut out = Vec::new();
    for b in 0..sh.batch {
        for &o in keep_out {
            let base = (b * sh.out_channels + o as usize) * ho * wo;
            out.extend_from_slice(&full[base..base + ho * wo]);
        }
    }
    out
}

#[test]
fn masked_forward_equals_dense_then_slice() {
    let mut rng = Rng::fresh("masked_forward_equals_dense_then_slice");
    for sh in shapes() {
        let x = rng.vec(sh.input_len().unwrap(), -1.0, 1.0);
        let w = rng.vec(sh.weight_len().unwrap(), -1.0, 1.0);
        for ki in keep_cases(&mut rng, sh.in_channels) {
            for ko in keep_cases(&mut rng, sh.out_channels) {
                let got = forward(&x, &w, &sh, &ki, &ko).unwrap();
                let want = dense_reference(&x, &w, &sh, &ki, &ko);
                common::assert_close(
                    &format!("{sh:?} in={ki:?} out={ko:?}"),
                    &got,
                    &want,
                    1e-5,
                    1e-5,
                );
            }
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

#[test]
fn gradients_satisfy_the_adjoint_identity() {
    // <g, conv(x, w)> = <dx(g), x> = <dw(g), w> restricted to kept channels.
    let mut rng = Rng::fresh("gradients_satisfy_the_adjoint_identity");
    for sh in shapes() {
        let ki = rng.sorted_subset(sh.in_channels, 0.6);
        let ko = rng.sorted_subset(sh.out_channels, 0.6);
        let x = rng.vec(sh.input_len().unwrap(), -1.0, 1.0);
        let w = rng.vec(sh.weight_len().unwrap(), -1.0, 1.0);
        let y = forward(&x, &w, &sh, &ki, &ko).unwrap();
        let g = rng.vec(y.len(), -1.0, 1.0);
        let lhs = dot(&g, &y);
        let mut dx = vec![0.0f32; x.len()];
        backward_input(&g, &w, &sh, &ki, &ko, &mut dx).unwrap();
        let mut dw = vec![0.0f32; w.len()];
        backward_weight(&g, &x, &sh, &ki, &ko, &mut dw).unwrap();
        let scale = 1.0 + y.len() as f64;
        assert!(
            (dot(&dx, &x) - lhs).abs() < 1e-5 * scale,
            "{sh:?}: <dx,x> {} vs {lhs}",
            dot(&dx, &x)
        );
        assert!(
            (dot(&dw, &w) - lhs).abs() < 1e-5 * scale,
            "{sh:?}: <dw,w> {} vs {lhs}",
            dot(&dw, &w)
        );
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mut rng = Rng::fresh("gradients_match_finite_differences");
    for sh in shapes() {
        let ki = rng.sorted_subset(sh.in_channels, 0.7);
        let ko = rng.sorted_subset(sh.out_channels, 0.7);
        if ki.is_empty() || ko.is_empty() {
            continue;
        }
        let mut x = rng.vec(sh.input_len().unwrap(), -1.0, 1.0);
        let mut w = rng.vec(sh.weight_len().unwrap(), -1.0, 1.0);
        let g = rng.vec(sh.output_len(ko.len()).unwrap(), -1.0, 1.0);
        let loss = |x: &[f32], w: &[f32]| dot(&g, &forward(x, w, &sh, &ki, &ko).unwrap());
        let mut dx = vec![0.0f32; x.len()];
        backward_input(&g, &w, &sh, &ki, &ko, &mut dx).unwrap();
        let mut dw = vec![0.0f32; w.len()];
        backward_weight(&g, &x, &sh, &ki, &ko, &mut dw).unwrap();
        // The loss is linear in x and in w, so a large step is exact up to rounding.
        let h = 0.25f32;
        let plane = sh.height * sh.width;
        for _ in 0..20 {
            let b = rng.int(0, sh.batch - 1);
            let c = ki[rng.int(0, ki.len() - 1)] as usize;
            let i = (b * sh.in_channels + c) * plane + rng.int(0, plane - 1);
            let x0 = x[i];
            x[i] = x0 + h;
            let lp = loss(&x, &w);
            x[i] = x0 - h;
            let lm = loss(&x, &w);
            x[i] = x0;
            let fd = (lp - lm) / (2.0 * h as f64);
            assert!(
                (fd - dx[i] as f64).abs() < 1e-4 * (1.0 + fd.abs()),
                "{sh:?} dx[{i}] {} vs {fd}",
                dx[i]
            );
        }
        let taps = sh.kernel.0 * sh.kernel.1;
        for _ in 0..20 {
            let o = ko[rng.int(0, ko.len() - 1)] as usize;
            let c = ki[rng.int(0, ki.len() - 1)] as usize;
            let i = (o * sh.in_channels + c) * taps + rng.int(0, taps - 1);
            let w0 = w[i];
            w[i] = w0 + h;
            let lp = loss(&x, &w);
            w[i] = w0 - h;
            let lm = loss(&x, &w);
            w[i] = w0;
            let fd = (lp - lm) / (2.0 * h as f64);
            assert!(
                (fd - dw[i] as f64).abs() < 1e-4 * (1.0 + fd.abs()),
                "{sh:?} dw[{i}] {} vs {fd}",
                dw[i]
            );
        }
    }
}

#[test]
fn gradients_leave_dropped_entries_untouched() {
    let mut rng = Rng::fresh("gradients_leave_dropped_entries_untouched");
    let sh = shapes()[0];
    let ki = vec![3u32, 0];
    let ko = vec![2u32];
    let x = rng.vec(sh.input_len().unwrap(), -1.0, 1.0);
    let w = rng.vec(sh.weight_len().unwrap(), -1.0, 1.0);
    let g = rng.vec(sh.output_len(1).unwrap(), -1.0, 1.0);
    let mut dx = vec![7.5f32; x.len()];
    backward_input(&g, &w, &sh, &ki, &ko, &mut dx).unwrap();
    let plane = sh.height * sh.width;
    for (i, &v) in dx.iter().enumerate() {
        let c = (i / plane) % sh.in_channels;
        assert_eq!(v == 7.5, !ki.contains(&(c as u32)), "dx[{i}] channel {c}");
    }
    let mut dw = vec![-3.0f32; w.len()];
    backward_weight(&g, &x, &sh, &ki, &ko, &mut dw).unwrap();
    let taps = sh.kernel.0 * sh.kernel.1;
    for (i, &v) in dw.iter().enumerate() {
        let (o, c) = (i / (sh.in_channels * taps), (i / taps) % sh.in_channels);
        let kept = ko.contains(&(o as u32)) && ki.contains(&(c as u32));
        assert_eq!(v == -3.0, !kept, "dw[{i}] out {o} in {c}");
    }
}

#[test]
fn invalid_arguments_are_rejected() {
    let sh = shapes()[0];
    let x = vec![0.0f32; sh.input_len().unwrap()];
    let w = vec![0.0f32; sh.weight_len().unwrap()];
    let e = forward(&x, &w, &sh, &[0, 0], &[0]).unwrap_err().to_string();
    assert!(e.contains("more than once"), "{e}");
    let e = forward(&x, &w, &sh, &[9], &[0]).unwrap_err().to_string();
    assert!(e.contains("out of range"), "{e}");
    let e = forward(&x[1..], &w, &sh, &[0], &[0])
        .unwrap_err()
        .to_string();
    assert!(e.contains("`x`"), "{e}");
    let bad = ConvShape {
        stride: (0, 1),
        ..sh
    };
    assert!(forward(&x, &w, &bad, &[0], &[0]).is_err());
    let big = ConvShape {
        kernel: (11, 3),
        ..sh
    };
    let e = big.output_hw().unwrap_err().to_string();
    assert!(e.contains("larger than the padded input"), "{e}");
}
