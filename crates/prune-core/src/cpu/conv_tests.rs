//! Tests of the convolution against direct loops in f64 and against
//! central finite differences.

use super::conv::{
    conv2d_backward, conv2d_backward_with, conv2d_forward, conv2d_out_hw, Conv2dParams,
};
use super::test_util::{
    assert_close, assert_grad_close, dot_loss, fd_grad, rand_tensor, rand_vec, rng,
};
use crate::error::CoreError;
use crate::tensor::Tensor;

/// One test configuration: `(n, cin, h, w, cout, kh, kw, stride, padding, groups)`.
type Case = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    (usize, usize),
    (usize, usize),
    usize,
);

const CASES: &[Case] = &[
    (2, 3, 7, 6, 4, 3, 3, (1, 1), (1, 1), 1),
    (3, 4, 9, 8, 6, 3, 2, (2, 1), (0, 1), 2),
    (1, 1, 12, 12, 5, 5, 5, (1, 1), (0, 0), 1),
    (2, 2, 5, 7, 3, 1, 1, (1, 1), (0, 0), 1),
    (2, 6, 6, 5, 4, 1, 1, (2, 2), (1, 0), 2),
    (2, 4, 8, 7, 4, 3, 3, (1, 1), (1, 1), 4),
    (3, 3, 7, 9, 6, 3, 3, (2, 2), (1, 1), 3),
    (2, 5, 6, 6, 5, 5, 3, (3, 2), (2, 1), 5),
    (9, 3, 5, 5, 7, 2, 2, (1, 1), (1, 1), 1),
    (1, 2, 3, 3, 2, 4, 4, (1, 1), (2, 2), 2),
    (2, 20, 12, 12, 50, 5, 5, (1, 1), (0, 0), 1),
    // More output channels than output pixels: the weight gradient
    // concatenates images along the depth (with im2col, 1x1, padding).
    (16, 2, 3, 3, 12, 2, 2, (1, 1), (0, 0), 1),
    (16, 4, 2, 2, 12, 1, 1, (1, 1), (0, 0), 2),
    (24, 2, 4, 3, 36, 3, 2, (1, 1), (1, 0), 2),
    // Small output planes: products over several images (conv_batched.rs),
    // with a partial last batch, stride 2, and a 1x1 layer.
    (11, 4, 6, 6, 6, 3, 3, (1, 1), (1, 1), 2),
    (13, 3, 9, 9, 5, 3, 3, (2, 2), (1, 1), 1),
    (5, 6, 2, 2, 7, 1, 1, (1, 1), (0, 0), 1),
    // stride 2 on rows long enough for the vector im2col/col2im
    (2, 3, 10, 30, 4, 3, 3, (2, 2), (1, 1), 1),
    // Planes with fewer pixels than kernel taps, batches large enough for
    // one product with the weights unrolled over the plane (conv_plane.rs;
    // `plane_cases_take_the_product` checks they do): 2x2 and 1x1 maps
    // under 3x3, non-square planes, stride and a 2x3 kernel unpadded in
    // rows; and a 2x2 map with too few images, through im2col. 100 input
    // channels make the unrolled weights two k-blocks deep.
    (16, 6, 2, 2, 7, 3, 3, (1, 1), (1, 1), 1),
    (16, 100, 2, 2, 9, 3, 3, (1, 1), (1, 1), 1),
    (3, 4, 1, 1, 5, 3, 3, (1, 1), (1, 1), 1),
    (32, 3, 2, 3, 5, 3, 3, (1, 1), (1, 1), 1),
    (32, 2, 3, 2, 4, 3, 3, (2, 1), (1, 1), 1),
    (32, 3, 2, 2, 4, 2, 3, (1, 2), (0, 1), 1),
    (5, 6, 2, 2, 7, 3, 3, (1, 1), (1, 1), 1),
];

fn params(c: &Case) -> Conv2dParams {
    Conv2dParams {
        stride: c.7,
        padding: c.8,
        groups: c.9,
    }
}

/// Value of `x` at a padded position, or 0 outside the image.
fn at(x: &[f32], shape: [usize; 4], n: usize, c: usize, ih: isize, iw: isize) -> f64 {
    let [_, cn, h, w] = shape;
    if ih < 0 || iw < 0 || ih as usize >= h || iw as usize >= w {
        return 0.0;
    }
    x[((n * cn + c) * h + ih as usize) * w + iw as usize] as f64
}

/// Calls `f(n, co, oh, ow, ci, ki, kj, ih, iw)` for every term of the sum.
fn for_each_term(c: &Case, mut f: impl FnMut([usize; 7], isize, isize)) {
    let &(n, cin, h, w, cout, kh, kw, (sh, sw), (ph, pw), groups) = c;
    let (oh, ow) = conv2d_out_hw(h, w, kh, kw, &params(c)).unwrap();
    let (cin_g, cout_g) = (cin / groups, cout / groups);
    for b in 0..n {
        for co in 0..cout {
            let gi = co / cout_g;
            for y in 0..oh {
                for x in 0..ow {
                    for cl in 0..cin_g {
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let ih = (y * sh + ki) as isize - ph as isize;
                                let iw = (x * sw + kj) as isize - pw as isize;
                                f([b, co, y, x, gi * cin_g + cl, ki, kj], ih, iw);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn reference_forward(c: &Case, x: &Tensor, w: &Tensor, b: &Tensor) -> Vec<f64> {
    let &(n, cin, h, wd, cout, kh, kw, ..) = c;
    let (oh, ow) = conv2d_out_hw(h, wd, kh, kw, &params(c)).unwrap();
    let cin_g = cin / c.9;
    let mut y = vec![0.0f64; n * cout * oh * ow];
    for (i, v) in y.iter_mut().enumerate() {
        *v = b.data()[(i / (oh * ow)) % cout] as f64;
    }
    for_each_term(c, |[b, co, yy, xx, ci, ki, kj], ih, iw| {
        let wv = w.data()[((co * cin_g + ci % cin_g) * kh + ki) * kw + kj] as f64;
        y[((b * cout + co) * oh + yy) * ow + xx] +=
            wv * at(x.data(), [n, cin, h, wd], b, ci, ih, iw);
    });
    y
}

/// Direct-loop gradients `(dx, dw, db)` for upstream gradient `dy`.
fn reference_backward(
    c: &Case,
    x: &Tensor,
    w: &Tensor,
    dy: &[f32],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let &(n, cin, h, wd, cout, kh, kw, ..) = c;
    let (oh, ow) = conv2d_out_hw(h, wd, kh, kw, &params(c)).unwrap();
    let cin_g = cin / c.9;
    let mut dx = vec![0.0f64; x.numel()];
    let mut dw = vec![0.0f64; w.numel()];
    let mut db = vec![0.0f64; cout];
    for (i, v) in dy.iter().enumerate() {
        db[(i / (oh * ow)) % cout] += *v as f64;
    }
    for_each_term(c, |[b, co, yy, xx, ci, ki, kj], ih, iw| {
        let g = dy[((b * cout + co) * oh + yy) * ow + xx] as f64;
        let wi = ((co * cin_g + ci % cin_g) * kh + ki) * kw + kj;
        dw[wi] += g * at(x.data(), [n, cin, h, wd], b, ci, ih, iw);
        if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < wd {
            dx[((b * cin + ci) * h + ih as usize) * wd + iw as usize] += g * w.data()[wi] as f64;
        }
    });
    (dx, dw, db)
}

fn inputs(c: &Case, seed: u64) -> (Tensor, Tensor, Tensor) {
    let &(n, cin, h, w, cout, kh, kw, ..) = c;
    let mut r = rng(seed);
    (
        rand_tensor(&[n, cin, h, w], &mut r),
        rand_tensor(&[cout, cin / c.9, kh, kw], &mut r),
        rand_tensor(&[cout], &mut r),
    )
}

#[test]
fn forward_matches_direct_loops() {
    for (i, c) in CASES.iter().enumerate() {
        let (x, w, b) = inputs(c, i as u64);
        let y = conv2d_forward(&x, &w, Some(&b), &params(c)).unwrap();
        let (oh, ow) = conv2d_out_hw(c.2, c.3, c.5, c.6, &params(c)).unwrap();
        assert_eq!(y.shape(), &[c.0, c.4, oh, ow]);
        assert_close(
            y.data(),
            &reference_forward(c, &x, &w, &b),
            1e-5,
            1e-5,
            &format!("{c:?}"),
        );
        let y0 = conv2d_forward(&x, &w, None, &params(c)).unwrap();
        let zero = Tensor::zeros([c.4]);
        assert_close(
            y0.data(),
            &reference_forward(c, &x, &w, &zero),
            1e-5,
            1e-5,
            &format!("{c:?} no bias"),
        );
    }
}

/// The output is written without a zero-fill first: a buffer of NaN of the
/// output's size freed just before each call (which the allocator may hand
/// back) must leave no trace, on every path (per-image and several-image
/// GEMM, column split of one image, direct kernel by images, rows and
/// channel blocks).
#[test]
fn forward_overwrites_every_output_value() {
    let mut cases = CASES.to_vec();
    cases.extend([
        (1, 16, 28, 28, 16, 3, 3, (1, 1), (1, 1), 1),
        (1, 16, 28, 28, 24, 3, 3, (1, 1), (1, 1), 1),
        (1, 64, 7, 7, 96, 3, 3, (1, 1), (1, 1), 1),
        (1, 32, 28, 28, 64, 3, 3, (2, 2), (1, 1), 1),
        (4, 16, 28, 28, 9, 3, 3, (1, 1), (1, 1), 1),
    ]);
    for (i, c) in cases.iter().enumerate() {
        let (x, w, b) = inputs(c, 70 + i as u64);
        let (oh, ow) = conv2d_out_hw(c.2, c.3, c.5, c.6, &params(c)).unwrap();
        drop(std::hint::black_box(vec![f32::NAN; c.0 * c.4 * oh * ow]));
        let y = conv2d_forward(&x, &w, Some(&b), &params(c)).unwrap();
        assert_close(
            y.data(),
            &reference_forward(c, &x, &w, &b),
            1e-4,
            1e-4,
            &format!("{c:?}"),
        );
    }
}

#[test]
fn backward_matches_direct_loops() {
    for (i, c) in CASES.iter().enumerate() {
        let (x, w, _) = inputs(c, 100 + i as u64);
        let y = conv2d_forward(&x, &w, None, &params(c)).unwrap();
        let dy = rand_vec(y.numel(), &mut rng(200 + i as u64));
        let dyt = Tensor::from_vec(y.shape().to_vec(), dy.clone()).unwrap();
        let grads = conv2d_backward(&x, &w, &dyt, &params(c), true).unwrap();
        let (dx, dw, db) = reference_backward(c, &x, &w, &dy);
        let what = format!("{c:?}");
        assert_close(
            grads.x.as_ref().unwrap().data(),
            &dx,
            1e-4,
            1e-4,
            &format!("dx {what}"),
        );
        assert_close(grads.w.data(), &dw, 1e-4, 1e-4, &format!("dw {what}"));
        assert_close(
            grads.bias.as_ref().unwrap().data(),
            &db,
            1e-4,
            1e-4,
            &format!("db {what}"),
        );
        assert_eq!(grads.w.shape(), w.shape());
        let no_x = conv2d_backward(&x, &w, &dyt, &params(c), false).unwrap();
        assert!(no_x.x.is_none());
        assert_eq!(no_x.w, grads.w);
        assert_eq!(no_x.bias, grads.bias);
    }
}

#[test]
fn backward_matches_finite_differences() {
    // A GEMM case with stride, padding and groups, a depthwise case with a
    // channel multiplier, a 1x1 case, and a plane smaller than the kernel
    // (conv_plane.rs) with stride.
    let plane = CASES[CASES.len() - 3];
    for (i, c) in [CASES[1], CASES[6], CASES[4], plane].iter().enumerate() {
        let (x, w, b) = inputs(c, 300 + i as u64);
        let p = params(c);
        let y = conv2d_forward(&x, &w, Some(&b), &p).unwrap();
        let r = rand_vec(y.numel(), &mut rng(400 + i as u64));
        let rt = Tensor::from_vec(y.shape().to_vec(), r.clone()).unwrap();
        let grads = conv2d_backward(&x, &w, &rt, &p, true).unwrap();
        let loss = |x: &Tensor, w: &Tensor, b: &Tensor| {
            dot_loss(conv2d_forward(x, w, Some(b), &p).unwrap().data(), &r)
        };
        let eps = 1e-2;
        let fx = fd_grad(x.data(), eps, |v| {
            loss(
                &Tensor::from_vec(x.shape().to_vec(), v.to_vec()).unwrap(),
                &w,
                &b,
            )
        });
        let fw = fd_grad(w.data(), eps, |v| {
            loss(
                &x,
                &Tensor::from_vec(w.shape().to_vec(), v.to_vec()).unwrap(),
                &b,
            )
        });
        let fb = fd_grad(b.data(), eps, |v| {
            loss(
                &x,
                &w,
                &Tensor::from_vec(b.shape().to_vec(), v.to_vec()).unwrap(),
            )
        });
        let what = format!("{c:?}");
        assert_grad_close(
            grads.x.as_ref().unwrap().data(),
            &fx,
            1e-3,
            1e-3,
            &format!("dx {what}"),
        );
        assert_grad_close(grads.w.data(), &fw, 1e-3, 1e-3, &format!("dw {what}"));
        assert_grad_close(
            grads.bias.as_ref().unwrap().data(),
            &fb,
            1e-3,
            1e-3,
            &format!("db {what}"),
        );
    }
}

#[test]
fn plane_cases_take_the_product() {
    use super::conv::geometry;
    use super::conv_plane::applies;
    let n = CASES.len();
    for (i, c) in CASES.iter().enumerate() {
        let (x, w, _) = inputs(c, 500 + i as u64);
        let g = geometry("test", &x, &w, &params(c)).unwrap();
        let want = (n - 7..n - 1).contains(&i);
        assert_eq!(applies(&g), want, "{c:?}");
    }
}

#[test]
fn results_do_not_depend_on_thread_count() {
    // Per-image weight-gradient products, concatenated ones, and the
    // product over a plane smaller than the kernel (conv_plane.rs).
    for c in [
        (13, 4, 10, 10, 8, 3, 3, (1, 1), (1, 1), 2),
        (20, 3, 4, 4, 24, 3, 3, (1, 1), (0, 0), 1),
        (40, 24, 2, 2, 32, 3, 3, (1, 1), (1, 1), 1),
    ] {
        let (x, w, b) = inputs(&c, 9);
        let p = params(&c);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let y = conv2d_forward(&x, &w, Some(&b), &p).unwrap();
                let g = conv2d_backward(&x, &w, &y, &p, true).unwrap();
                (y, g)
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(run(threads) == one, "{c:?}: {threads} threads");
        }
    }
}

#[test]
fn shape_errors_name_both_shapes() {
    let p = Conv2dParams::default();
    let x = Tensor::zeros([2, 3, 8, 8]);
    let msg = |e: CoreError| e.to_string();

    let w_bad_cin = Tensor::zeros([4, 2, 3, 3]);
    let e = msg(conv2d_forward(&x, &w_bad_cin, None, &p).unwrap_err());
    assert!(
        e.contains("[2, 3, 8, 8]") && e.contains("[4, 2, 3, 3]"),
        "{e}"
    );

    let w3 = Tensor::zeros([4, 3, 3]);
    let e = msg(conv2d_forward(&x, &w3, None, &p).unwrap_err());
    assert!(e.contains("[2, 3, 8, 8]") && e.contains("[4, 3, 3]"), "{e}");

    let w = Tensor::zeros([4, 3, 3, 3]);
    let e = msg(conv2d_forward(&x, &w, Some(&Tensor::zeros([5])), &p).unwrap_err());
    assert!(e.contains("[4, 3, 3, 3]") && e.contains("[5]"), "{e}");

    let e = msg(conv2d_backward(&x, &w, &Tensor::zeros([2, 4, 5, 6]), &p, true).unwrap_err());
    assert!(
        e.contains("[2, 4, 5, 6]") && e.contains("[2, 4, 6, 6]"),
        "{e}"
    );

    let grouped = Conv2dParams { groups: 2, ..p };
    let e = msg(conv2d_forward(&x, &w, None, &grouped).unwrap_err());
    assert!(
        e.contains("[2, 3, 8, 8]") && e.contains("[4, 3, 3, 3]"),
        "{e}"
    );

    for bad in [
        Conv2dParams {
            stride: (0, 1),
            ..p
        },
        Conv2dParams { groups: 0, ..p },
    ] {
        assert!(matches!(
            conv2d_forward(&x, &w, None, &bad),
            Err(CoreError::InvalidArgument { .. })
        ));
    }
    let huge_pad = Conv2dParams {
        padding: (usize::MAX / 2, 0),
        ..p
    };
    assert!(matches!(
        conv2d_forward(&x, &w, None, &huge_pad),
        Err(CoreError::InvalidArgument { .. })
    ));
    let vast = Conv2dParams {
        padding: (1 << 40, 1 << 40),
        ..p
    };
    let e = msg(conv2d_forward(&x, &w, None, &vast).unwrap_err());
    assert!(e.contains("too many elements"), "{e}");
    let big = Tensor::zeros([4, 3, 9, 9]);
    let e = msg(conv2d_forward(&x, &big, None, &p).unwrap_err());
    assert!(e.contains("9x9") && e.contains("8x8"), "{e}");
}

#[test]
fn empty_batches_and_tiny_images() {
    let p = Conv2dParams {
        padding: (1, 1),
        ..Conv2dParams::default()
    };
    let w = Tensor::ones([2, 3, 3, 3]);
    let b = Tensor::from_vec([2], vec![0.5, -1.0]).unwrap();
    let y = conv2d_forward(&Tensor::zeros([0, 3, 4, 4]), &w, Some(&b), &p).unwrap();
    assert_eq!(y.shape(), &[0, 2, 4, 4]);
    // A 1x1 image with padding 1: only the centre tap sees data.
    let x = Tensor::zeros([1, 3, 1, 1]);
    let y = conv2d_forward(&x, &w, Some(&b), &p).unwrap();
    assert_eq!(y.data(), &[0.5, -1.0]);
    let g = conv2d_backward(&x, &w, &y, &p, true).unwrap();
    assert_eq!(g.bias.as_ref().unwrap().data(), &[0.5, -1.0]);
}

#[test]
fn single_images_split_by_columns_match_batches_and_loops() {
    // One image whose output columns are split across threads (odd,
    // pruned-looking channel counts, an edge block narrower than the rest,
    // a 1x1 layer and a grouped one): equal to the direct loops, bit-equal
    // to the same image inside a batch of two and to itself on 1 or 3
    // threads.
    for c in [
        (1, 17, 24, 24, 26, 3, 3, (1, 1), (1, 1), 1),
        (1, 128, 26, 30, 27, 1, 1, (1, 1), (0, 0), 1),
        (1, 16, 40, 44, 80, 3, 3, (1, 1), (1, 1), 2),
    ] {
        let (x, w, b) = inputs(&c, 21);
        let p = params(&c);
        let y = conv2d_forward(&x, &w, Some(&b), &p).unwrap();
        assert_close(
            y.data(),
            &reference_forward(&c, &x, &w, &b),
            1e-5,
            1e-5,
            &format!("{c:?}"),
        );
        let mut two = x.data().to_vec();
        two.extend_from_slice(x.data());
        let x2 = Tensor::from_vec([2, c.1, c.2, c.3], two).unwrap();
        let y2 = conv2d_forward(&x2, &w, Some(&b), &p).unwrap();
        assert!(y2.data()[..y.numel()] == *y.data(), "{c:?}: batch of two");
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let yt = pool.install(|| conv2d_forward(&x, &w, Some(&b), &p).unwrap());
            assert!(yt == y, "{c:?}: {threads} threads");
        }
    }
}

#[test]
fn products_over_several_images_equal_per_image_products() {
    // Each image of a batch whose products are concatenated (small output
    // planes) gives bit for bit the output and input gradient it gives
    // alone (one image: per-image products), on 1 and 3 threads. (Over
    // 128 channels a 3×3 layer at a batch of 32 takes the 2-D Winograd
    // transform, a different sum; the wide case has a 3×2 kernel.)
    for c in [
        (11, 4, 6, 6, 6, 3, 3, (1, 1), (1, 1), 2),
        (13, 3, 9, 9, 5, 3, 3, (2, 2), (1, 1), 1),
        (40, 20, 4, 4, 130, 3, 2, (1, 1), (1, 1), 1),
        (5, 6, 2, 2, 7, 1, 1, (1, 1), (0, 0), 1),
    ] {
        let (x, w, b) = inputs(&c, 23);
        let p = params(&c);
        let (img_in, img_out) = (x.numel() / c.0, {
            let (oh, ow) = conv2d_out_hw(c.2, c.3, c.5, c.6, &p).unwrap();
            c.4 * oh * ow
        });
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let y = conv2d_forward(&x, &w, Some(&b), &p).unwrap();
                let g = conv2d_backward(&x, &w, &y, &p, true).unwrap();
                let dx = g.x.unwrap();
                for i in 0..c.0 {
                    let xi = x.data()[i * img_in..(i + 1) * img_in].to_vec();
                    let xi = Tensor::from_vec([1, c.1, c.2, c.3], xi).unwrap();
                    let yi = conv2d_forward(&xi, &w, Some(&b), &p).unwrap();
                    let what = format!("{c:?}, image {i}, {threads} threads");
                    assert!(
                        yi.data() == &y.data()[i * img_out..(i + 1) * img_out],
                        "{what}"
                    );
                    let dyi = y.data()[i * img_out..(i + 1) * img_out].to_vec();
                    let dyi = Tensor::from_vec(yi.shape().to_vec(), dyi).unwrap();
                    let gi = conv2d_backward(&xi, &w, &dyi, &p, true).unwrap();
                    let dxi = gi.x.unwrap();
                    assert!(
                        dxi.data() == &dx.data()[i * img_in..(i + 1) * img_in],
                        "dx {what}"
                    );
                }
            });
        }
    }
}

/// Without the bias gradient every path (GEMM with groups, direct, the
/// row-wise and 2-D transforms, the plane product, depthwise) gives the
/// same weight and input gradients, and no bias.
#[test]
fn backward_without_the_bias_gradient_matches() {
    let cases = [
        CASES[1],
        CASES[5],
        CASES[0],
        (33, 8, 16, 16, 12, 3, 3, (1, 1), (1, 1), 1),
        (32, 4, 28, 28, 6, 3, 3, (1, 1), (1, 1), 1),
        (16, 6, 2, 2, 7, 3, 3, (1, 1), (1, 1), 1),
    ];
    for (i, c) in cases.iter().enumerate() {
        let (x, w, _) = inputs(c, 700 + i as u64);
        let p = params(c);
        let y = conv2d_forward(&x, &w, None, &p).unwrap();
        let g = rand_tensor(y.shape(), &mut rng(800 + i as u64));
        let full = conv2d_backward(&x, &w, &g, &p, true).unwrap();
        let lean = conv2d_backward_with(&x, &w, &g, &p, true, false).unwrap();
        assert!(full.bias.is_some() && lean.bias.is_none(), "{c:?}");
        assert_eq!(full.w.data(), lean.w.data(), "{c:?}: weight gradient");
        assert_eq!(
            full.x.as_ref().unwrap().data(),
            lean.x.as_ref().unwrap().data(),
            "{c:?}: input gradient"
        );
    }
}
