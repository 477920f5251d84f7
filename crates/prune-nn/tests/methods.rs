//! The three methods through the pipeline on a tiny network and synthetic
//! MNIST-shaped data: every run writes its files, and the polarization
//! search keeps the chosen trial (by index) on disk and prunes that model.

mod tiny;
use prune_nn::graph::Model;
use prune_nn::prune::{prune, Method, PruneConfig};
use prune_nn::reg::Masks;
use std::path::Path;
use tiny::{data, tiny};

fn quick(method: Method) -> PruneConfig {
    let mut c = PruneConfig::paper_defaults(method);
    c.epochs = 1;
    c.finetune_epochs = 0;
    c.batch_size = 32;
    c.speed_repeats = 0;
    c
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn every_method_runs_the_pipeline_and_writes_its_files() {
    let (dense, d) = (tiny(), data());
    for method in [Method::Sbp, Method::Polarization, Method::Slimming] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = quick(method);
        let pruned = prune(&dense, &d, &d, &cfg, dir.path()).unwrap();
        assert_eq!(pruned.report.method, method);
        for f in ["report.json", "report.md", "masks.json", "histograms.svg"] {
            assert!(dir.path().join(f).exists(), "{method:?}: {f}");
        }
        assert!(dir.path().join("sparse/kept.jsonl").exists(), "{method:?}");
        // The masks are the method's rule on the saved sparse model.
        let sparse = Model::load(&dir.path().join("sparse")).unwrap();
        let rule = method.build(&cfg).unwrap().rule(&sparse).unwrap();
        assert_eq!(
            Masks::load_json(dir.path().join("masks.json")).unwrap(),
            rule,
            "{method:?}"
        );
        let r = json(&dir.path().join("report.json"));
        assert_eq!(
            r["test_accuracy_sparse"].as_f64(),
            Some(pruned.report.test_accuracy_sparse)
        );
    }
}

#[test]
fn the_polarization_search_prunes_its_chosen_trial() {
    let (dense, d) = (tiny(), data());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = quick(Method::Polarization);
    cfg.target_flops = Some(1.5);
    cfg.max_batches = Some(1);
    prune(&dense, &d, &d, &cfg, dir.path()).unwrap();
    let s = json(&dir.path().join("search.json"));
    let trials = s["trials"].as_array().unwrap();
    let chosen = s["chosen_trial"].as_u64().unwrap() as usize;
    assert!(chosen < trials.len(), "{s}");
    for k in 0..trials.len() {
        assert!(dir
            .path()
            .join(format!("search/trial-{k}/model.json"))
            .exists());
    }
    // masks.json is the rule of the chosen trial's model, not another's.
    let trial = Model::load(&dir.path().join(format!("search/trial-{chosen}"))).unwrap();
    let rule = Method::Polarization
        .build(&cfg)
        .unwrap()
        .rule(&trial)
        .unwrap();
    assert_eq!(
        Masks::load_json(dir.path().join("masks.json")).unwrap(),
        rule
    );
    let r = json(&dir.path().join("report.json"));
    assert_eq!(
        r["test_accuracy_sparse"].as_f64(),
        trials[chosen]["test_accuracy"].as_f64()
    );
}

/// FLOPs of `model` compiled under `masks`.
fn flops(model: &Model, masks: &Masks) -> u64 {
    use prune_nn::compiler::{compile, CompileOptions};
    let c = compile(
        model,
        &prune_nn::reg::method::to_channel_masks(masks),
        &CompileOptions::default(),
    )
    .unwrap();
    c.model.cost().unwrap().flops
}

#[test]
fn sbp_meets_a_flops_target_with_the_smallest_snr_threshold() {
    let (dense, d) = (tiny(), data());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = quick(Method::Sbp);
    cfg.target_flops = Some(1.5);
    cfg.max_batches = Some(2);
    let pruned = prune(&dense, &d, &d, &cfg, dir.path()).unwrap();
    assert_eq!(pruned.report.target_flops_met, Some(true));
    assert!(
        pruned.report.flops_reduction >= 1.5,
        "{}",
        pruned.report.flops_reduction
    );
    // One short epoch leaves every SNR above 1, so the rule alone prunes
    // nothing: the threshold had to rise above 1.
    let sparse = Model::load(&dir.path().join("sparse")).unwrap();
    let rule = Method::Sbp.build(&cfg).unwrap().rule(&sparse).unwrap();
    assert_eq!(rule.kept(), rule.total());
    let masks = &pruned.masks;
    assert!(masks.kept() < masks.total());
    // A global threshold: every kept unit scores at least every pruned one.
    let (mut min_kept, mut max_pruned) = (f32::INFINITY, f32::NEG_INFINITY);
    for l in &masks.layers {
        for (&k, &s) in l.keep.iter().zip(&l.scores) {
            if k {
                min_kept = min_kept.min(s);
            } else {
                max_pruned = max_pruned.max(s);
            }
        }
    }
    assert!(min_kept > max_pruned, "{min_kept} vs {max_pruned}");
    // The smallest such threshold: keeping the best pruned unit as well
    // misses the target.
    let dense_flops = flops(&sparse, &rule) as f64;
    let mut more = masks.clone();
    for l in &mut more.layers {
        for (k, &s) in l.keep.iter_mut().zip(&l.scores) {
            if s >= max_pruned {
                *k = true;
            }
        }
    }
    assert!(dense_flops / (flops(&sparse, &more) as f64) < 1.5);
}

#[test]
fn the_masked_accuracy_is_the_compiled_models_on_a_residual_network() {
    // ResNet-20: the rule's masks cut residual streams unevenly, and the
    // compiler keeps a stream channel when any gate on it keeps it. The
    // report's masked accuracy is that resolved model's, so it equals the
    // compiled model's.
    let dense = Model::init(
        prune_nn::graph::zoo::build("resnet20", &[1, 28, 28], 10).unwrap(),
        0,
    )
    .unwrap();
    let d = data();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = quick(Method::Slimming);
    // Enough steps to fit the 64 examples, so that removing channels shows
    // in the accuracy (with the rule's raw masks this run's masked model
    // scores 48% against the compiled model's 83%).
    cfg.epochs = 15;
    cfg.percent = 10.0;
    let pruned = prune(&dense, &d, &d, &cfg, dir.path()).unwrap();
    let r = &pruned.report;
    assert!(r.flops_reduction > 1.0);
    assert!(r.test_accuracy_sparse > 0.5, "{}", r.test_accuracy_sparse);
    assert_eq!(r.test_accuracy_masked, r.test_accuracy_compiled);
}
