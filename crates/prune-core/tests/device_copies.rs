//! Host↔device copies of the CUDA backend, counted on the emulated device (`cuda:60`):
//! the index lists an op needs (index-select and its backward, the gathers of a grouped
//! convolution) and the broadcast geometry of elementwise ops are uploaded once per
//! content, so repeating a forward and backward pass on device tensors copies nothing
//! between host and device, and gives the same values; likewise the SBP gate and its KL
//! in both noise modes.

mod common;
use common::{host, on};
use prune_core::backend::cuda::open_emulated;
use prune_core::cpu::Conv2dParams;
use prune_core::sbp::{sbp_gate_train, sbp_kl, NoiseMode, NoiseStream};
use prune_core::{Device, Tape, Tensor};

/// The ordinal under which the emulated device is registered.
const EMU: usize = 60;

fn main() {
    let emu = prune_testkit::Need::probe(
        "no emulated device",
        "PRUNE_REQUIRE_EMU",
        open_emulated(EMU, 2, prune_kernels::Schedule::Ascending).map_err(|e| e.to_string()),
    );
    prune_testkit::run(vec![
        prune_testkit::test_needing(
            "emu::a_repeated_step_copies_nothing_between_host_and_device",
            &emu,
            a_repeated_step_copies_nothing_between_host_and_device,
        ),
        prune_testkit::test_needing(
            "emu::a_repeated_sbp_step_copies_nothing_between_host_and_device",
            &emu,
            a_repeated_sbp_step_copies_nothing_between_host_and_device,
        ),
    ]);
}

/// `(uploads, downloads)` made on this thread so far.
fn copies() -> (u64, u64) {
    let t = prune_kernels::transfers();
    (t.uploads, t.downloads)
}

fn a_repeated_step_copies_nothing_between_host_and_device() {
    let d = Device::Cuda(EMU);
    let x = on(
        d,
        &[2, 4, 5, 5],
        (0..200).map(|i| (i % 17) as f32 * 0.1 - 0.8).collect(),
    );
    let w = on(
        d,
        &[6, 2, 3, 3],
        (0..108).map(|i| (i % 7) as f32 * 0.05 - 0.15).collect(),
    );
    let scale = on(d, &[1, 6, 1, 1], vec![0.5, -1.0, 2.0, 1.5, 0.25, -0.5]);
    let p = Conv2dParams {
        stride: (1, 1),
        padding: (1, 1),
        groups: 2,
    };
    // Grouped convolution (index-select of each group), a broadcast product, a channel
    // gather with a repeated index, a concat; then the backward pass through all of them.
    let step = || -> (Tensor, Vec<Tensor>) {
        let mut tape = Tape::new();
        let (xv, wv, sv) = (tape.param(&x), tape.param(&w), tape.param(&scale));
        let y = tape.conv2d(xv, wv, None, p).expect("conv2d");
        let y = tape.mul(y, sv).expect("mul");
        let picked = tape
            .index_select(y, 1, &[5, 0, 5, 2])
            .expect("index_select");
        let both = tape.concat(&[picked, y], 1).expect("concat");
        let sq = tape.square(both).expect("square");
        let loss = tape.sum_all(sq).expect("sum");
        let g = tape.backward(loss).expect("backward");
        let grads = [xv, wv, sv]
            .iter()
            .map(|v| g.get(*v).expect("gradient").clone())
            .collect();
        (tape.value(loss).expect("loss").clone(), grads)
    };
    let first = step();
    let before = copies();
    let second = step();
    assert_eq!(
        copies(),
        before,
        "(uploads, downloads) of a repeated forward and backward pass"
    );
    assert_eq!(host(&first.0), host(&second.0));
    for (a, b) in first.1.iter().zip(&second.1) {
        assert_eq!(host(a), host(b));
    }
    // The counter sees copies when there are some.
    let _ = host(&first.0);
    assert_eq!(copies().1, before.1 + 1 + 2 * (1 + first.1.len() as u64));
}

/// The SBP gate (both noise modes) and its KL, forward and backward, twice with the same
/// noise stream: the second pass copies nothing and gives the same values.
fn a_repeated_sbp_step_copies_nothing_between_host_and_device() {
    let d = Device::Cuda(EMU);
    let x = on(
        d,
        &[3, 4, 2, 2],
        (0..48).map(|i| (i % 11) as f32 * 0.2 - 1.0).collect(),
    );
    let mu = on(d, &[4], vec![-0.5, -1.0, -2.0, -0.2]);
    let ls = on(d, &[4], vec![-1.0, -0.5, 0.0, -2.0]);
    for mode in [NoiseMode::PerChannel, NoiseMode::PerExample] {
        let step = || -> Vec<Tensor> {
            let mut tape = Tape::new();
            let (xv, mv, lv) = (tape.param(&x), tape.param(&mu), tape.param(&ls));
            let y = sbp_gate_train(&mut tape, xv, mv, lv, NoiseStream::new(5, 2, 9), mode)
                .expect("gate");
            let sq = tape.square(y).expect("square");
            let fit = tape.sum_all(sq).expect("sum");
            let kl = sbp_kl(&mut tape, mv, lv).expect("kl");
            let loss = tape.add(fit, kl).expect("loss");
            let g = tape.backward(loss).expect("backward");
            let mut out = vec![tape.value(loss).expect("loss").clone()];
            out.extend(
                [xv, mv, lv]
                    .iter()
                    .map(|v| g.get(*v).expect("gradient").clone()),
            );
            out
        };
        let first = step();
        let before = copies();
        let second = step();
        assert_eq!(
            copies(),
            before,
            "{mode:?}: (uploads, downloads) of a repeated pass"
        );
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(host(a), host(b), "{mode:?}");
        }
    }
}
