//! Every zoo model exported to ONNX and run in onnxruntime: dense, with SBP
//! gates, and compiled from random masks (with `select` gathers and folded
//! gates). Logits must match prune-nn's own forward to 1e-5 relative.

mod ort;

use prune_nn::compiler::{compile, CompileOptions};
use prune_nn::graph::params::{param_specs, ParamKind};
use prune_nn::graph::{predict, zoo, ChannelMasks, Model};
use prune_nn::onnx::{export_file, ExportOptions};
use prune_nn::reg::method::{insert_sbp_gates, sbp_gates};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Random weights, BN statistics and SBP parameters (some units below SNR 1).
fn randomize(model: &mut Model, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for spec in param_specs(&model.graph) {
        let t = model.params.get_mut(&spec.name).expect("param");
        let fan_in = spec.shape.iter().skip(1).product::<usize>().max(1) as f32;
        for v in t.data_mut() {
            let u: f32 = rng.random_range(-1.0..1.0);
            *v = match spec.kind {
                ParamKind::Weight => u * (3.0 / fan_in).sqrt(),
                ParamKind::Bias | ParamKind::BnBeta | ParamKind::RunningMean => 0.2 * u,
                ParamKind::BnGamma | ParamKind::ScaleGamma => 1.0 + 0.5 * u,
                ParamKind::RunningVar => 1.25 + 0.75 * u,
                ParamKind::SbpMu => -1.0 + u,
                ParamKind::SbpLogSigma => -1.5 + 2.5 * u,
            };
        }
    }
}

/// Keeps a random ~60% of every SBP gate's channels (at least one).
fn random_masks(model: &Model, seed: u64) -> ChannelMasks {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut masks = ChannelMasks::new();
    for g in sbp_gates(&model.graph) {
        let n = model.params.get(&format!("{g}.mu")).expect("mu").numel();
        let mut keep: Vec<bool> = (0..n).map(|_| rng.random_bool(0.6)).collect();
        keep[rng.random_range(0..n)] = true;
        masks.insert(g, keep);
    }
    masks
}

fn main() {
    let need = ort::need();
    prune_testkit::run(prune_testkit::tests_needing!(&need; zoo_models_match_onnxruntime));
}

fn zoo_models_match_onnxruntime() {
    let py = ort::python();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut jobs = Vec::new();
    let mut want = Vec::new();
    for (k, name) in zoo::MODEL_NAMES.iter().enumerate() {
        let input: &[usize] = if name.starts_with("lenet") {
            &[1, 28, 28]
        } else {
            &[3, 32, 32]
        };
        let mut dense = Model::init(zoo::build(name, input, 10).expect("zoo"), 0).expect("init");
        randomize(&mut dense, k as u64);
        let mut gated = insert_sbp_gates(&dense).expect("gates");
        randomize(&mut gated, 100 + k as u64);
        let masks = random_masks(&gated, k as u64);
        let compiled = compile(&gated, &masks, &CompileOptions::default())
            .unwrap_or_else(|e| panic!("{name}: compile: {e}"))
            .model;
        let x = ort::random_input(&[2, input[0], input[1], input[2]], k as u64);
        for (kind, m) in [
            ("dense", &dense),
            ("gated", &gated),
            ("compiled", &compiled),
        ] {
            for fold_bn in [false, true] {
                if fold_bn && kind == "gated" {
                    continue;
                }
                let path = dir.path().join(format!("{name}-{kind}-{fold_bn}.onnx"));
                let opts = ExportOptions {
                    fold_bn,
                    ..Default::default()
                };
                export_file(m, &opts, &path).unwrap_or_else(|e| panic!("{name} {kind}: {e}"));
                let y = predict(m, x.clone(), None).expect("predict");
                want.push((format!("{name} {kind} fold_bn={fold_bn}"), y));
                jobs.push((path, x.clone()));
            }
        }
    }
    let got = ort::run_models(&py, dir.path(), &jobs);
    for ((label, y), o) in want.iter().zip(&got) {
        let e = ort::rel_error(o, y);
        eprintln!("{label}: onnxruntime vs prune-nn rel. error {e:.2e}");
        assert!(e <= 1e-5, "{label}: rel. error {e:.2e} > 1e-5");
    }
}
