//! 2-D convolution forward and backward at the LeNet5 shapes (batch 100)
//! at VGG-style 3x3 shapes (batch 32), and at the ResNet-20 3x3 shapes on
//! 28x28 inputs (batch 128 and 1, dense and with pruned channel counts). Throughput is FLOP/s: the forward
//! pass costs `2·N·Cout·OH·OW·Cin·kh·kw`, the backward pass the same again
//! for the weight gradient and once more for the input gradient.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use prune_core::cpu::{conv2d_backward, conv2d_forward, Conv2dParams};
use prune_core::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;

/// `(name, x shape, Cout, kernel, padding, need input gradient)`.
type Case = (&'static str, [usize; 4], usize, usize, usize, bool);

const CASES: &[Case] = &[
    (
        "lenet_conv1_100x1x28x28_20c5",
        [100, 1, 28, 28],
        20,
        5,
        0,
        false,
    ),
    (
        "lenet_conv2_100x20x12x12_50c5",
        [100, 20, 12, 12],
        50,
        5,
        0,
        true,
    ),
    ("vgg_32x64x32x32_64c3", [32, 64, 32, 32], 64, 3, 1, true),
    ("vgg_32x128x16x16_128c3", [32, 128, 16, 16], 128, 3, 1, true),
    ("vgg_32x256x8x8_256c3", [32, 256, 8, 8], 256, 3, 1, true),
    (
        "resnet_128x16x28x28_16c3",
        [128, 16, 28, 28],
        16,
        3,
        1,
        true,
    ),
    (
        "resnet_128x32x14x14_32c3",
        [128, 32, 14, 14],
        32,
        3,
        1,
        true,
    ),
    ("resnet_128x64x7x7_64c3", [128, 64, 7, 7], 64, 3, 1, true),
    ("resnet_1x16x28x28_16c3", [1, 16, 28, 28], 16, 3, 1, true),
    ("resnet_1x64x7x7_64c3", [1, 64, 7, 7], 64, 3, 1, true),
    ("pruned_1x9x28x28_16c3", [1, 9, 28, 28], 16, 3, 1, true),
    ("pruned_1x33x7x7_64c3", [1, 33, 7, 7], 64, 3, 1, true),
];

fn conv(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut g = c.benchmark_group("conv2d");
    g.sample_size(20);
    for &(name, xs, cout, k, pad, need_x) in CASES {
        let x = Tensor::uniform(xs.to_vec(), -1.0, 1.0, &mut rng);
        let w = Tensor::uniform([cout, xs[1], k, k], -0.1, 0.1, &mut rng);
        let b = Tensor::zeros([cout]);
        let p = Conv2dParams {
            stride: (1, 1),
            padding: (pad, pad),
            groups: 1,
        };
        let y = conv2d_forward(&x, &w, Some(&b), &p).expect("valid shapes");
        let (oh, ow) = (y.shape()[2], y.shape()[3]);
        let fwd_flops = 2 * xs[0] * cout * oh * ow * xs[1] * k * k;

        g.throughput(Throughput::Elements(fwd_flops as u64));
        g.bench_function(BenchmarkId::new("forward", name), |bench| {
            bench.iter(|| {
                black_box(conv2d_forward(black_box(&x), &w, Some(&b), &p).expect("valid shapes"))
            })
        });
        let bwd_flops = fwd_flops * if need_x { 2 } else { 1 };
        g.throughput(Throughput::Elements(bwd_flops as u64));
        g.bench_function(BenchmarkId::new("backward", name), |bench| {
            bench.iter(|| {
                black_box(conv2d_backward(black_box(&x), &w, &y, &p, need_x).expect("valid shapes"))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, conv);
criterion_main!(benches);
