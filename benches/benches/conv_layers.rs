//! Per-layer convolution times of ResNet-20 (dense and compiled with 9/17/33
//! of 16/32/64 channels in the first convolution of every block) at batch
//! 128 and 1, and of the VGG-like net at batch 64: every distinct layer
//! shape, forward and backward, the fastest of repeated runs (on a shared
//! machine the run least disturbed by other processes), with the layer's
//! GFLOP/s and its share of the network's convolution time (each shape
//! weighted by how often the network uses it). This is the profile behind
//! docs/performance.md ("Where the time goes per layer").
//!
//! `cargo bench -p prune-benches --bench conv_layers [-- FILTER]` (FILTER is
//! a substring of the group names `resnet20-dense-b128`,
//! `resnet20-pruned-b1`, `vgg-b64`, …).

use prune_core::cpu::{conv2d_backward, conv2d_forward, Conv2dParams};
use prune_core::Tensor;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One layer shape: `(count in the net, Cin, H, Cout, kernel, stride)`;
/// square inputs, padding `kernel / 2`.
type Layer = (usize, usize, usize, usize, usize, usize);

/// ResNet-20 on 1×28×28 with the blocks' inner widths `inner[s]` (16/32/64
/// dense).
fn resnet20(inner: [usize; 3]) -> Vec<Layer> {
    let w = [16, 32, 64];
    let mut v = vec![(1, 1, 28, 16, 3, 1)];
    let mut hw = 28;
    for s in 0..3 {
        let cin = if s == 0 { 16 } else { w[s - 1] };
        if s > 0 {
            // first block: stride-2 conv1 and the 1×1 stride-2 shortcut
            v.push((1, cin, hw, inner[s], 3, 2));
            v.push((1, cin, hw, w[s], 1, 2));
            hw /= 2;
            v.push((1, inner[s], hw, w[s], 3, 1));
            v.push((2, w[s], hw, inner[s], 3, 1));
            v.push((2, inner[s], hw, w[s], 3, 1));
        } else {
            v.push((3, w[s], hw, inner[s], 3, 1));
            v.push((3, inner[s], hw, w[s], 3, 1));
        }
    }
    v
}

fn vgg() -> Vec<Layer> {
    vec![
        (1, 3, 32, 64, 3, 1),
        (1, 64, 32, 64, 3, 1),
        (1, 64, 16, 128, 3, 1),
        (1, 128, 16, 128, 3, 1),
        (1, 128, 8, 256, 3, 1),
        (2, 256, 8, 256, 3, 1),
        (1, 256, 4, 512, 3, 1),
        (2, 512, 4, 512, 3, 1),
        (3, 512, 2, 512, 3, 1),
    ]
}

fn best_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let t: Vec<f64> = (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.into_iter().fold(f64::INFINITY, f64::min)
}

fn group(name: &str, n: usize, layers: &[Layer], rng: &mut ChaCha8Rng) {
    println!("\n{name} (forward; backward with the input gradient except for the first layer)");
    println!(
        "{:>28} {:>3} {:>10} {:>7} {:>10} {:>7} {:>6}",
        "layer x[N,C,H,W] → Cout kxk/s", "×", "fwd ms", "GF/s", "bwd ms", "GF/s", "share"
    );
    let mut rows = Vec::new();
    for (i, &(count, cin, hw, cout, k, s)) in layers.iter().enumerate() {
        let x = Tensor::uniform([n, cin, hw, hw], -1.0, 1.0, rng);
        let w = Tensor::uniform([cout, cin, k, k], -0.1, 0.1, rng);
        let p = Conv2dParams {
            stride: (s, s),
            padding: (k / 2, k / 2),
            groups: 1,
        };
        let y = conv2d_forward(&x, &w, None, &p).expect("valid shapes");
        let (oh, ow) = (y.shape()[2], y.shape()[3]);
        let flops = 2.0 * (n * cout * oh * ow * cin * k * k) as f64;
        let runs = if n == 1 { 200 } else { 9 };
        let need_x = i > 0;
        let f = best_ms(runs, || {
            black_box(conv2d_forward(&x, &w, None, &p).expect("forward"));
        });
        let b = best_ms(runs, || {
            black_box(conv2d_backward(&x, &w, &y, &p, need_x).expect("backward"));
        });
        let bflops = flops * if need_x { 2.0 } else { 1.0 };
        rows.push((
            count,
            cin,
            hw,
            cout,
            k,
            s,
            f,
            flops / f / 1e6,
            b,
            bflops / b / 1e6,
        ));
    }
    let total_f: f64 = rows.iter().map(|r| r.0 as f64 * r.6).sum();
    let total_b: f64 = rows.iter().map(|r| r.0 as f64 * r.8).sum();
    for (count, cin, hw, cout, k, s, f, gf, b, gb) in rows {
        let label = format!("[{n},{cin},{hw},{hw}] → {cout} {k}x{k}/{s}");
        println!(
            "{label:>28} {count:>3} {f:>10.3} {gf:>7.1} {b:>10.3} {gb:>7.1} {:>5.1}%",
            100.0 * count as f64 * f / total_f
        );
    }
    println!(
        "{:>28} {:>3} {total_f:>10.3} {:>7} {total_b:>10.3}",
        "net total", "", ""
    );
}

fn main() {
    prune_benches::keep_freed_pages();
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let groups: Vec<(String, usize, Vec<Layer>)> = vec![
        ("resnet20-dense-b128".into(), 128, resnet20([16, 32, 64])),
        ("resnet20-pruned-b128".into(), 128, resnet20([9, 17, 33])),
        ("resnet20-dense-b1".into(), 1, resnet20([16, 32, 64])),
        ("resnet20-pruned-b1".into(), 1, resnet20([9, 17, 33])),
        ("vgg-b64".into(), 64, vgg()),
        // the last stage on 28x28 inputs (7x7) and on 32x32 inputs (8x8)
        (
            "stage3-b128".into(),
            128,
            vec![(1, 64, 7, 64, 3, 1), (1, 64, 8, 64, 3, 1)],
        ),
    ];
    for (name, n, layers) in groups {
        if name.contains(&filter) {
            group(&name, n, &layers, &mut rng);
        }
    }
}
