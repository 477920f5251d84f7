//! The three methods through the pipeline on a tiny network and synthetic
//! MNIST-shaped data: every run writes its files, and the polarization
//! search keeps the chosen trial (by index) on disk and prunes that model.

use prune_nn::data::{Dataset, DatasetKind, Split};
use prune_nn::graph::{Graph, Layer, Model};
use prune_nn::prune::{prune, Method, PruneConfig};
use prune_nn::reg::Masks;
use std::path::Path;

fn tiny() -> Model {
    let mut g = Graph::new("tiny-cnn", &[1, 28, 28]);
    let conv = Layer::Conv2d {
        in_channels: 1,
        out_channels: 8,
        kernel: [3, 3],
        stride: [2, 2],
        padding: [1, 1],
        groups: 1,
        bias: false,
    };
    g.push("conv1", conv, &["input"]).unwrap();
    let bn = Layer::BatchNorm {
        features: 8,
        eps: 1e-5,
        momentum: 0.1,
    };
    g.push("bn1", bn, &["conv1"]).unwrap();
    g.push("relu1", Layer::Relu, &["bn1"]).unwrap();
    g.push("pool", Layer::GlobalAvgPool, &["relu1"]).unwrap();
    let fc = Layer::Linear {
        in_features: 8,
        out_features: 10,
        bias: true,
    };
    g.push("fc", fc, &["pool"]).unwrap();
    Model::init(g, 0).unwrap()
}

fn data() -> Dataset {
    let pixels: Vec<u8> = (0..64 * 784).map(|i| (i * 7 % 251) as u8).collect();
    let labels: Vec<u8> = (0..64).map(|i| (i % 10) as u8).collect();
    Dataset::from_bytes(DatasetKind::Mnist, Split::Train, &pixels, labels).unwrap()
}

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
