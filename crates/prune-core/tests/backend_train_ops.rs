//! The backend ops of a training step beyond the layers — log-softmax and cross-entropy,
//! channel gathers and concat with their adjoints, the fused optimizer steps and running
//! averages, fills,
//! dropout masks and the zero outputs of empty operands — against the kernel crate's CPU references, each check written once
//! and run per device as in `backend_ops.rs`: the CPU backend always, the CUDA backend
//! over the CPU emulation of the kernels always (`emu::`, device `cuda:63`), and `cuda:0`
//! when a GPU is present (reported as ignored with the reason otherwise;
//! `PRUNE_REQUIRE_GPU=1` makes that a failure).

#[macro_use]
mod per_device;
mod common;
use common::{host, on};
use per_device::{close, vals};
use prune_core::backend::cuda::{open_emulated, CudaDevice};
use prune_core::backend::{AdamStep, SgdStep};
use prune_core::{Device, Indices};
use prune_kernels::cpu_ref::{channels, optim, reduce};

/// The ordinal under which the emulated device is registered.
const EMU: usize = 63;

fn main() {
    let gpu = prune_testkit::Need::probe(
        "no usable GPU",
        "PRUNE_REQUIRE_GPU",
        CudaDevice::new(0).map(|_| ()).map_err(|e| e.to_string()),
    );
    // Grids sized for 2 SMs and the threads of each block in a shuffled order.
    let emu = prune_testkit::Need::probe(
        "no emulated device",
        "PRUNE_REQUIRE_EMU",
        open_emulated(EMU, 2, prune_kernels::Schedule::Shuffled(7)).map_err(|e| e.to_string()),
    );
    prune_testkit::run(per_device!(&gpu, &emu;
        softmax_and_cross_entropy,
        gather_concat_and_adjoints,
        optimizer_steps,
        fill_and_dropout_masks,
        empty_operands_give_zeros,
    ));
}

/// Outputs that are not empty although an operand is — a sum over an empty axis, a product
/// over an empty inner dimension, a weight gradient over an empty batch, batch-norm
/// gradients of an empty batch — are zeros, on every device (the device backend writes
/// most outputs without clearing them first, and its emulation fills fresh buffers with
/// NaN, so a missing clear shows).
fn empty_operands_give_zeros(d: Device) {
    use prune_core::cpu::Conv2dParams;
    let b = d.backend();
    let zeros = |t: &prune_core::Tensor, shape: &[usize], what: &str| {
        assert_eq!(t.shape(), shape, "{what}: shape");
        assert!(host(t).iter().all(|&v| v == 0.0), "{what}: {:?}", host(t));
    };
    let s = b.sum_to_shape(&on(d, &[0, 5], vec![]), &[5]).expect("sum");
    zeros(&s, &[5], "sum over an empty axis");
    let m = b
        .matmul(
            &on(d, &[3, 0], vec![]),
            &on(d, &[0, 4], vec![]),
            false,
            false,
        )
        .expect("matmul");
    zeros(&m, &[3, 4], "product over an empty inner dimension");
    let p = Conv2dParams {
        stride: (1, 1),
        padding: (1, 1),
        groups: 1,
    };
    let (x, w) = (
        on(d, &[0, 2, 4, 4], vec![]),
        on(d, &[3, 2, 3, 3], vals(54, 1)),
    );
    let y = b.conv2d(&x, &w, None, &p).expect("conv");
    assert_eq!(y.shape(), &[0, 3, 4, 4]);
    let g = b
        .conv2d_backward(&x, &w, &on(d, &[0, 3, 4, 4], vec![]), &p, true, true)
        .expect("conv backward");
    zeros(&g.w, &[3, 2, 3, 3], "weight gradient of an empty batch");
    zeros(
        g.bias.as_ref().expect("bias"),
        &[3],
        "bias gradient of an empty batch",
    );
}

fn softmax_and_cross_entropy(d: Device) {
    let b = d.backend();
    let (rows, cols) = (5, 7);
    let xv: Vec<f32> = vals(rows * cols, 18).iter().map(|v| 4.0 * v).collect();
    let x = on(d, &[rows, cols], xv.clone());
    let y = b.log_softmax(&x).expect("log_softmax");
    let want = reduce::log_softmax(&xv, rows, cols);
    close("log_softmax", &host(&y), &want, 1e-6);
    let gv = vals(rows * cols, 19);
    let dx = b
        .log_softmax_backward(&y, &on(d, &[rows, cols], gv.clone()))
        .expect("log_softmax backward");
    close(
        "log_softmax backward",
        &host(&dx),
        &reduce::log_softmax_backward(&gv, &want, rows, cols),
        1e-5,
    );
    let labels = [3u32, 0, 6, 6, 1];
    let li: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
    let lab = Indices::from_vec([rows], labels.to_vec())
        .expect("labels")
        .to_device(d)
        .expect("labels on the device");
    let loss = b.cross_entropy(&x, &lab).expect("cross entropy");
    let per_row = reduce::nll(&want, &li, cols);
    let mean: f64 = per_row.iter().map(|&v| f64::from(v)).sum::<f64>() / rows as f64;
    close("cross entropy", &host(&loss), &[mean], 1e-6);
    let g = on(d, &[], vec![0.5]);
    let dl = b.cross_entropy_backward(&x, &lab, &g).expect("ce backward");
    let dlogp = reduce::nll_backward(&vec![0.5; rows], &li, cols, 1.0 / rows as f32);
    close(
        "cross entropy backward",
        &host(&dl),
        &reduce::log_softmax_backward(&dlogp, &want, rows, cols),
        1e-6,
    );
}

fn gather_concat_and_adjoints(d: Device) {
    let b = d.backend();
    let (outer, c, inner) = (2, 5, 3);
    let xv = vals(outer * c * inner, 20);
    let x = on(d, &[outer, c, inner], xv.clone());
    let idx = [4usize, 1, 1, 0];
    let iu: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    let y = b.index_select(&x, 1, &idx).expect("index_select");
    assert_eq!(y.shape(), &[outer, 4, inner]);
    close(
        "index_select",
        &host(&y),
        &channels::index_select(&xv, outer, c, inner, &iu),
        0.0,
    );
    let gv = vals(outer * 4 * inner, 21);
    let g = on(d, &[outer, 4, inner], gv.clone());
    let dx = b
        .index_add(&g, &[outer, c, inner], 1, &idx)
        .expect("index_add");
    let mut want = vec![0f64; outer * c * inner];
    for o in 0..outer {
        for (j, &ci) in idx.iter().enumerate() {
            for i in 0..inner {
                want[(o * c + ci) * inner + i] += f64::from(gv[(o * 4 + j) * inner + i]);
            }
        }
    }
    close("index_add", &host(&dx), &want, 1e-6);
    let zv = vals(outer * 2 * inner, 22);
    let z = on(d, &[outer, 2, inner], zv.clone());
    let cat = b.concat(&[&x, &z], 1).expect("concat");
    assert_eq!(cat.shape(), &[outer, c + 2, inner]);
    let want = channels::concat(&[(&xv, c), (&zv, 2)], outer, inner);
    close("concat", &host(&cat), &want, 0.0);
    let parts = b.split(&cat, 1, &[c, 2]).expect("split");
    close("split 0", &host(&parts[0]), &xv, 0.0);
    close("split 1", &host(&parts[1]), &zv, 0.0);
}

fn optimizer_steps(d: Device) {
    let b = d.backend();
    let n = 37;
    let (w0, g) = (vals(n, 23), vals(n, 24));
    // the running average of batch statistics, three steps
    let (mut r, gt) = (on(d, &[n], w0.clone()), on(d, &[n], g.clone()));
    let mut rr = w0.clone();
    for m in [0.1f32, 0.5, 1.0] {
        b.ema_update(&mut r, &gt, m).expect("ema");
        optim::ema_step(&mut rr, &g, m);
    }
    close("running average", &host(&r), &rr, 1e-6);
    assert!(b
        .ema_update(&mut r, &on(d, &[n + 1], vals(n + 1, 25)), 0.1)
        .is_err());
    for (momentum, nesterov) in [(0.0, false), (0.9, false), (0.9, true)] {
        let h = SgdStep {
            lr: 0.1,
            weight_decay: 5e-4,
            momentum,
            nesterov,
        };
        let mut w = on(d, &[n], w0.clone());
        let mut v = on(d, &[n], vec![0.0; n]);
        let gt = on(d, &[n], g.clone());
        let (mut wr, mut vr) = (w0.clone(), vec![0f32; n]);
        for _ in 0..3 {
            let vel = (momentum != 0.0).then_some(&mut v);
            b.sgd_update(&mut w, &gt, vel, &h).expect("sgd");
            optim::sgd_step(&mut wr, &g, &mut vr, 0.1, momentum, 5e-4, nesterov);
        }
        close(
            &format!("sgd μ={momentum} nesterov={nesterov}"),
            &host(&w),
            &wr,
            1e-6,
        );
    }
    let mut w = on(d, &[n], w0.clone());
    let (mut m, mut v) = (on(d, &[n], vec![0.0; n]), on(d, &[n], vec![0.0; n]));
    let gt = on(d, &[n], g.clone());
    let (mut wr, mut mr, mut vr) = (w0.clone(), vec![0f32; n], vec![0f32; n]);
    for t in 1..=3u32 {
        let (bc1, bc2) = optim::adam_bias_corrections(0.9, 0.999, t);
        let h = AdamStep {
            lr: 1e-2,
            weight_decay: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            bias_correction1: bc1,
            bias_correction2: bc2,
        };
        b.adam_update(&mut w, &gt, &mut m, &mut v, &h)
            .expect("adam");
        optim::adam_step(
            &mut wr, &g, &mut mr, &mut vr, 1e-2, 0.9, 0.999, 1e-8, 1e-4, t,
        );
    }
    close("adam", &host(&w), &wr, 1e-5);
    // an update of a shared buffer leaves the other tensor alone
    let mut w = on(d, &[n], w0.clone());
    let keep = w.clone();
    let h = SgdStep {
        lr: 0.1,
        weight_decay: 0.0,
        momentum: 0.0,
        nesterov: false,
    };
    b.sgd_update(&mut w, &gt, None, &h).expect("sgd");
    close("clone untouched", &host(&keep), &w0, 0.0);
}

fn fill_and_dropout_masks(d: Device) {
    let b = d.backend();
    close(
        "full",
        &host(&b.full(&[3, 4], -2.5).expect("full")),
        &[-2.5f32; 12],
        0.0,
    );
    let z = b.full(&[0, 4], 1.0).expect("empty");
    assert_eq!(z.shape(), &[0, 4]);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
    let (p, n) = (0.3f32, 20_000);
    let m = host(&b.dropout_mask(&[n], p, &mut rng).expect("dropout"));
    let keep = 1.0 / (1.0 - p);
    assert!(
        m.iter().all(|&v| v == 0.0 || v == keep),
        "mask values are 0 or 1/(1-p)"
    );
    let dropped = m.iter().filter(|&&v| v == 0.0).count() as f64 / n as f64;
    // 20k Bernoulli(0.3) draws: the standard deviation of the fraction is 0.0032
    assert!((dropped - 0.3).abs() < 0.02, "dropped fraction {dropped}");
    let m2 = host(&b.dropout_mask(&[n], p, &mut rng).expect("dropout"));
    assert_ne!(m, m2, "the next call draws a new mask");
}
