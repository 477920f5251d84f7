//! `prune` on a CUDA device: the three methods through the whole pipeline on the
//! emulated device (`cuda:63`, prune-core's CUDA backend over the CPU emulation of the
//! kernels), compared with the same run on the CPU: the same files, masks that are the
//! rule on the saved sparse model, and a sparse model within a few optimizer steps'
//! reach of the CPU one. On `cuda:0` when a GPU is present (ignored with the reason
//! otherwise; `PRUNE_REQUIRE_GPU=1` makes that a failure).

use prune_nn::core::backend::cuda::{open_emulated, CudaDevice};
use prune_nn::core::Device;
mod tiny;
use prune_nn::graph::Model;
use prune_nn::prune::{prune, Method, PruneConfig};
use prune_nn::reg::Masks;
use tiny::{data, tiny};

/// The ordinal under which the emulated device is registered.
const EMU: usize = 63;

fn main() {
    let emu = prune_testkit::Need::probe(
        "no emulated device",
        "PRUNE_REQUIRE_EMU",
        open_emulated(EMU, 2, prune_kernels::Schedule::Ascending).map_err(|e| e.to_string()),
    );
    let gpu = prune_testkit::Need::probe(
        "no usable GPU",
        "PRUNE_REQUIRE_GPU",
        CudaDevice::new(0).map(|_| ()).map_err(|e| e.to_string()),
    );
    prune_testkit::run(vec![
        prune_testkit::test_needing("emu::every_method_prunes_on_the_device", &emu, || {
            every_method_prunes_on_the_device(Device::Cuda(EMU))
        }),
        prune_testkit::test_needing("cuda::every_method_prunes_on_the_device", &gpu, || {
            every_method_prunes_on_the_device(Device::Cuda(0))
        }),
        prune_testkit::test_needing("emu::bench_runs_on_the_device", &emu, || {
            bench_runs_on_the_device(Device::Cuda(EMU))
        }),
        prune_testkit::test_needing("cuda::bench_runs_on_the_device", &gpu, || {
            bench_runs_on_the_device(Device::Cuda(0))
        }),
    ]);
}

/// `prune-nn bench --device`: every figure measured on the device, the caller's model
/// left where it was, and a training step on the device giving the CPU's loss.
fn bench_runs_on_the_device(device: Device) {
    use prune_nn::bench::{bench, BenchConfig, Trainer};
    let model = tiny();
    let cfg = BenchConfig {
        batch_size: 4,
        train: true,
        threads: Some(1),
        warmup: 1,
        repeats: 2,
        latency_runs: 2,
        device,
    };
    let r = bench(&model, &cfg).unwrap();
    assert_eq!(r.device, device.to_string());
    let t = r.training.as_ref().expect("training figures");
    for x in [&r.inference, t] {
        assert!(x.median_ms > 0.0 && x.min_images_per_sec <= x.max_images_per_sec);
    }
    assert_eq!(r.latency_batch1.runs, 2);
    assert_eq!(prune_nn::train::model_device(&model), Device::Cpu);

    let mut on_device = tiny();
    prune_nn::train::model_to(&mut on_device, device).unwrap();
    let (mut a, mut b) = (
        Trainer::new(tiny(), 4).unwrap(),
        Trainer::new(on_device, 4).unwrap(),
    );
    for step in 0..2 {
        let (la, lb) = (a.step().unwrap(), b.step().unwrap());
        assert!(
            (la - lb).abs() <= 1e-4 * la.abs().max(1.0),
            "step {step}: loss cpu {la} vs {device} {lb}"
        );
    }
}

/// One sparse epoch of two steps; SBP also fine-tunes and measures speed (on the
/// emulated device each extra pass costs seconds, so the γ methods skip those stages,
/// which do not depend on the method).
fn quick(method: Method) -> PruneConfig {
    let mut c = PruneConfig::paper_defaults(method);
    let full = method == Method::Sbp;
    c.epochs = 1;
    c.finetune_epochs = usize::from(full);
    c.batch_size = 32;
    c.speed_repeats = usize::from(full);
    c
}

fn every_method_prunes_on_the_device(device: Device) {
    let d = data();
    for method in [Method::Sbp, Method::Polarization, Method::Slimming] {
        let cfg = quick(method);
        let (cpu_dir, dev_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cpu = prune(&tiny(), &d, &d, &cfg, cpu_dir.path()).unwrap();
        let mut dense = tiny();
        prune_nn::train::model_to(&mut dense, device).unwrap();
        let dev = prune(&dense, &d, &d, &cfg, dev_dir.path()).unwrap();
        // The results come back to the host.
        for (_, t) in dev.model.params.iter() {
            assert_eq!(t.device(), Device::Cpu, "{method:?}");
        }
        for f in ["report.json", "report.md", "masks.json", "histograms.svg"] {
            assert!(dev_dir.path().join(f).exists(), "{method:?}: {f}");
        }
        assert!(
            dev_dir.path().join("sparse/kept.jsonl").exists(),
            "{method:?}"
        );
        let sparse = Model::load(&dev_dir.path().join("sparse")).unwrap();
        let rule = method.build(&cfg).unwrap().rule(&sparse).unwrap();
        assert_eq!(
            Masks::load_json(dev_dir.path().join("masks.json")).unwrap(),
            rule,
            "{method:?}"
        );
        // Two optimizer steps from the same start: each parameter within a few steps
        // of Adam (lr 1e-3) of the CPU run's.
        let cpu_sparse = Model::load(&cpu_dir.path().join("sparse")).unwrap();
        for (name, t) in sparse.params.iter() {
            let c = cpu_sparse.params.get(name).unwrap();
            for (i, (a, b)) in t.data().iter().zip(c.data()).enumerate() {
                assert!((a - b).abs() <= 5e-3, "{method:?} {name}[{i}]: {a} vs {b}");
            }
        }
        let (rc, rd) = (&cpu.report, &dev.report);
        assert_eq!(rc.flops_before, rd.flops_before, "{method:?}");
        assert!(rd.test_accuracy_sparse.is_finite(), "{method:?}");
        assert_eq!(
            rd.speed.is_some(),
            cfg.speed_repeats > 0,
            "{method:?}: speed"
        );
    }
}
