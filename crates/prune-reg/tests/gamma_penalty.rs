//! The γ penalties of polarization and slimming as tape expressions against their f64
//! host references ([`Polarization::value_and_grad`], [`l1_value_and_grad`]): value and
//! subgradient on random γ, γ exactly 0 and γ = γ̄ ties, one and several layers. Each check
//! runs on the CPU backend, on the CUDA backend over the CPU emulation of the kernels
//! (`emu::`, device `cuda:61`) and on `cuda:0` when a GPU is present (reported as ignored
//! with the reason otherwise; `PRUNE_REQUIRE_GPU=1` makes that a failure). On the emulated
//! device a second evaluation is shown to copy nothing between host and device.

use prune_core::backend::cuda::{open_emulated, CudaDevice};
use prune_core::{Device, Tape, Tensor, Var};
use prune_graph::{Graph, Layer, Model, Regularizer};
use prune_reg::method::gamma_penalty::{l1_penalty, polarization_penalty};
use prune_reg::method::{PolarizationMethod, SlimmingMethod};
use prune_reg::polarization::Polarization;
use prune_reg::slimming::l1_value_and_grad;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// The ordinal under which the emulated device is registered.
const EMU: usize = 61;

macro_rules! per_device {
    ($gpu:expr, $emu:expr; $($f:ident),* $(,)?) => {
        vec![
            $(prune_testkit::test_needing(concat!("cpu::", stringify!($f)), &prune_testkit::Need::met(), || $f(Device::Cpu)),)*
            $(prune_testkit::test_needing(concat!("emu::", stringify!($f)), $emu, || $f(Device::Cuda(EMU))),)*
            $(prune_testkit::test_needing(concat!("cuda::", stringify!($f)), $gpu, || $f(Device::Cuda(0))),)*
        ]
    };
}

fn main() {
    let gpu = prune_testkit::Need::probe(
        "no usable GPU",
        "PRUNE_REQUIRE_GPU",
        CudaDevice::new(0).map(|_| ()).map_err(|e| e.to_string()),
    );
    let emu = prune_testkit::Need::probe(
        "no emulated device",
        "PRUNE_REQUIRE_EMU",
        open_emulated(EMU, 2, prune_kernels::Schedule::Shuffled(5)).map_err(|e| e.to_string()),
    );
    let mut trials = per_device!(&gpu, &emu;
        polarization_matches_the_f64_reference,
        slimming_matches_the_f64_reference,
    );
    trials.push(prune_testkit::test_needing(
        "emu::a_second_evaluation_copies_nothing_between_host_and_device",
        &emu,
        a_second_evaluation_copies_nothing_between_host_and_device,
    ));
    trials.push(prune_testkit::test_needing(
        "emu::the_methods_penalties_on_the_device_match_the_cpu",
        &emu,
        the_methods_penalties_on_the_device_match_the_cpu,
    ));
    prune_testkit::run(trials);
}

/// Layers of γ with exact ties: values `k/64` mirrored around ½ (so γ̄ = ½ exactly and
/// every sum is exact in f32), with some at 0 (mirrored to 1) and some at ½ = γ̄,
/// shuffled and cut into `sizes`.
fn tied_layers(rng: &mut ChaCha8Rng, sizes: &[usize]) -> Vec<Vec<f32>> {
    let n: usize = sizes.iter().sum();
    assert!(n.is_multiple_of(2), "mirrored pairs need an even count");
    let mut all = Vec::with_capacity(n);
    for i in 0..n / 2 {
        let v = match i % 4 {
            0 => 0.0,
            1 => 0.5,
            _ => rng.random_range(0..=64) as f32 / 64.0,
        };
        all.push(v);
        all.push(1.0 - v);
    }
    all.shuffle(rng);
    let mut out = Vec::new();
    let mut at = 0;
    for &s in sizes {
        out.push(all[at..at + s].to_vec());
        at += s;
    }
    out
}

/// Layers of random γ in [−0.5, 1) with every fourth exactly 0.
fn random_layers(rng: &mut ChaCha8Rng, sizes: &[usize]) -> Vec<Vec<f32>> {
    sizes
        .iter()
        .map(|&s| {
            (0..s)
                .map(|i| {
                    if i % 4 == 0 {
                        0.0
                    } else {
                        rng.random_range(-0.5f32..1.0)
                    }
                })
                .collect()
        })
        .collect()
}

/// Value and per-layer gradient of `penalty` over `layers` placed on `device`.
fn on_tape(
    device: Device,
    layers: &[Vec<f32>],
    penalty: impl Fn(&mut Tape<'_>, &[Var]) -> prune_core::Result<Var>,
) -> (f64, Vec<Vec<f32>>) {
    let mut tape = Tape::new();
    let vars: Vec<Var> = layers
        .iter()
        .map(|l| {
            let t = Tensor::from_vec([l.len()], l.clone())
                .and_then(|t| t.to_device(device))
                .expect("γ on the device");
            tape.leaf(t, true)
        })
        .collect();
    let p = penalty(&mut tape, &vars).expect("penalty");
    let value = tape
        .value(p)
        .and_then(|v| v.to_device(Device::Cpu))
        .and_then(|v| v.item())
        .expect("value");
    let grads = tape.backward(p).expect("backward");
    let g = vars
        .iter()
        .map(|v| {
            grads
                .get(*v)
                .expect("a gradient for every γ")
                .to_device(Device::Cpu)
                .expect("gradient to the host")
                .data()
                .to_vec()
        })
        .collect();
    (f64::from(value), g)
}

fn assert_close(what: &str, value: f64, grad: &[Vec<f32>], want: (f64, &[Vec<f32>]), tol: f64) {
    let scale = want.0.abs().max(1.0);
    assert!(
        (value - want.0).abs() <= 1e-5 * scale,
        "{what}: value {value} vs reference {}",
        want.0
    );
    assert_eq!(grad.len(), want.1.len(), "{what}: layers");
    for (l, (g, w)) in grad.iter().zip(want.1).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: layer {l} length");
        for (j, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                f64::from((a - b).abs()) <= tol,
                "{what}: layer {l} γ[{j}]: gradient {a} vs reference {b}"
            );
        }
    }
}

/// The layer splits checked: one layer, and several of unequal sizes (power-of-two
/// totals, so that the f32 mean of the tied cases is exact as in the f64 reference).
const SPLITS: [&[usize]; 3] = [&[8], &[16], &[5, 11, 1, 15]];

fn polarization_matches_the_f64_reference(device: Device) {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let reg = Polarization::new(0.3, 1.2).expect("parameters");
    // The subgradient convention at 0 and at ties, on the smallest case by hand:
    // γ = (0, ½, 1), γ̄ = ½, t = 1, λ = 1: ∂R/∂γ = (0 + 1 + 0, 1 − 0 + 0, 1 − 1 + 0).
    let unit = Polarization::new(1.0, 1.0).expect("parameters");
    let small = vec![vec![0.0f32, 0.5, 1.0]];
    let (v, g) = on_tape(device, &small, |t, g| polarization_penalty(t, g, &unit));
    assert!((v - 0.5).abs() < 1e-6, "R(0, ½, 1) = 1.5 − 1 = {v}");
    assert_eq!(g, vec![vec![1.0, 1.0, 0.0]], "subgradient at 0 and at γ̄");
    for sizes in SPLITS {
        for trial in 0..3 {
            let layers = tied_layers(&mut rng, sizes);
            let refs: Vec<&[f32]> = layers.iter().map(Vec::as_slice).collect();
            let want = reg.value_and_grad(&refs).expect("reference");
            let (v, g) = on_tape(device, &layers, |t, g| polarization_penalty(t, g, &reg));
            let what = format!("tied {sizes:?} #{trial}");
            assert_close(&what, v, &g, (want.value, &want.grad), 1e-6);

            let layers = random_layers(&mut rng, sizes);
            let refs: Vec<&[f32]> = layers.iter().map(Vec::as_slice).collect();
            let want = reg.value_and_grad(&refs).expect("reference");
            let (v, g) = on_tape(device, &layers, |t, g| polarization_penalty(t, g, &reg));
            let what = format!("random {sizes:?} #{trial}");
            assert_close(&what, v, &g, (want.value, &want.grad), 1e-6);
        }
    }
}

fn slimming_matches_the_f64_reference(device: Device) {
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    for sizes in SPLITS {
        for lambda in [0.0, 1e-4, 0.7] {
            let layers = random_layers(&mut rng, sizes);
            let refs: Vec<&[f32]> = layers.iter().map(Vec::as_slice).collect();
            let (value, grad) = l1_value_and_grad(&refs, lambda).expect("reference");
            let (v, g) = on_tape(device, &layers, |t, g| l1_penalty(t, g, lambda));
            let what = format!("{sizes:?} λ = {lambda}");
            // sign(0) = 0: every fourth γ is exactly 0 and its gradient must be 0.
            assert!(g.iter().all(|l| l[0] == 0.0), "{what}: gradient at γ = 0");
            assert_close(&what, v, &g, (value, &grad), 0.0);
        }
    }
}

/// Evaluating both penalties and their gradients again on the emulated device makes no
/// host↔device copy: the γ stay on the device and the penalty is built from device ops
/// (the first evaluation uploads the broadcast geometry once, as any first op does).
fn a_second_evaluation_copies_nothing_between_host_and_device() {
    let device = Device::Cuda(EMU);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let layers = random_layers(&mut rng, &[6, 3, 9]);
    let reg = Polarization::new(0.3, 1.2).expect("parameters");
    let tensors: Vec<Tensor> = layers
        .iter()
        .map(|l| {
            Tensor::from_vec([l.len()], l.clone())
                .and_then(|t| t.to_device(device))
                .expect("γ on the device")
        })
        .collect();
    let step = || {
        let mut tape = Tape::new();
        let vars: Vec<Var> = tensors.iter().map(|t| tape.param(t)).collect();
        let p = polarization_penalty(&mut tape, &vars, &reg).expect("polarization");
        let s = l1_penalty(&mut tape, &vars, 0.01).expect("slimming");
        let total = tape.add(p, s).expect("sum");
        let grads = tape.backward(total).expect("backward");
        let g: Vec<Tensor> = vars
            .iter()
            .map(|v| grads.get(*v).expect("gradient").clone())
            .collect();
        (tape.value(total).expect("value").clone(), g)
    };
    let first = step();
    let before = prune_kernels::transfers();
    let second = step();
    let after = prune_kernels::transfers();
    assert_eq!(
        (
            after.uploads - before.uploads,
            after.downloads - before.downloads
        ),
        (0, 0),
        "host↔device copies (uploads, downloads) of a second penalty evaluation"
    );
    // The counter sees a copy when there is one.
    let probe = prune_kernels::transfers();
    tensors[0].to_device(Device::Cpu).expect("to host");
    assert_eq!(prune_kernels::transfers().downloads, probe.downloads + 1);
    // And it computed the same thing.
    let host = |t: &Tensor| t.to_device(Device::Cpu).expect("to host").data().to_vec();
    assert_eq!(host(&first.0), host(&second.0));
    for (a, b) in first.1.iter().zip(&second.1) {
        assert_eq!(host(a), host(b));
    }
}

/// The regularizers themselves (`PolarizationMethod`, `SlimmingMethod`) on a model with two
/// scale gates whose γ live on the emulated device: the same value and gradients as on
/// the CPU, and a second evaluation copies nothing between host and device.
fn the_methods_penalties_on_the_device_match_the_cpu() {
    let mut g = Graph::new("two scales", &[3]);
    g.push("a", Layer::Scale { units: 3 }, &["input"])
        .expect("push");
    g.push("b", Layer::Scale { units: 3 }, &["a"])
        .expect("push");
    let model = Model::init(g, 0).expect("init");
    let gammas = [vec![0.0f32, 0.7, 0.45], vec![0.9, 0.05, 0.0]];
    let methods: Vec<Box<dyn Regularizer>> = vec![
        Box::new(PolarizationMethod {
            reg: Polarization::new(0.5, 1.2).expect("parameters"),
            upper: 1.0,
        }),
        Box::new(SlimmingMethod { lambda: 0.3 }),
    ];
    for m in &methods {
        let run = |device: Device| {
            let tensors: Vec<Tensor> = gammas
                .iter()
                .map(|v| {
                    Tensor::from_vec([v.len()], v.clone())
                        .and_then(|t| t.to_device(device))
                        .expect("γ")
                })
                .collect();
            let eval = |tensors: &[Tensor]| {
                let mut tape = Tape::new();
                let vars: Vec<Var> = tensors.iter().map(|t| tape.param(t)).collect();
                let params: BTreeMap<String, Var> = ["a.weight", "b.weight"]
                    .iter()
                    .map(|n| n.to_string())
                    .zip(vars.iter().copied())
                    .collect();
                let p = m
                    .penalty(&mut tape, &model, &params, 1)
                    .expect("penalty")
                    .expect("a penalty");
                let grads = tape.backward(p).expect("backward");
                let mut out = vec![tape.value(p).expect("value").clone()];
                out.extend(
                    vars.iter()
                        .map(|v| grads.get(*v).expect("gradient").clone()),
                );
                out
            };
            let first = eval(&tensors);
            let before = prune_kernels::transfers();
            let _second = eval(&tensors);
            let after = prune_kernels::transfers();
            let copies = (
                after.uploads - before.uploads,
                after.downloads - before.downloads,
            );
            let host: Vec<Vec<f32>> = first
                .iter()
                .map(|t| t.to_device(Device::Cpu).expect("to host").data().to_vec())
                .collect();
            (host, copies)
        };
        let (cpu, _) = run(Device::Cpu);
        let (emu, copies) = run(Device::Cuda(EMU));
        assert_eq!(
            copies,
            (0, 0),
            "{}: (uploads, downloads) of a second evaluation",
            m.name()
        );
        for (a, b) in cpu.iter().flatten().zip(emu.iter().flatten()) {
            assert!((a - b).abs() <= 1e-6, "{}: cpu {a} vs device {b}", m.name());
        }
    }
}
