//! Export → import without a runtime: every zoo model comes back with the
//! same layers and the same outputs; batch-norm folding keeps the outputs.

use prune_graph::{predict, zoo, Layer, Model};
use prune_onnx::{export_bytes, fold_batch_norms, import_bytes, ExportOptions};
use rand::{Rng, SeedableRng};

fn randomize_bn(model: &mut Model, seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let names: Vec<String> = model.params.iter().map(|(n, _)| n.clone()).collect();
    for n in names {
        let t = model.params.get_mut(&n).expect("param");
        if n.ends_with("running_var") {
            t.data_mut()
                .iter_mut()
                .for_each(|v| *v = rng.random_range(0.5..2.0));
        } else if n.ends_with("running_mean") || n.ends_with(".bias") {
            t.data_mut()
                .iter_mut()
                .for_each(|v| *v = rng.random_range(-0.2..0.2));
        }
    }
}

fn rel(a: &prune_core::Tensor, b: &prune_core::Tensor) -> f32 {
    let scale = b.data().iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    a.max_abs_diff(b).expect("same shape") / scale
}

#[test]
fn zoo_models_round_trip() {
    for (k, name) in zoo::MODEL_NAMES.iter().enumerate() {
        let input: &[usize] = if name.starts_with("lenet") {
            &[1, 28, 28]
        } else {
            &[3, 32, 32]
        };
        let mut m = Model::init(zoo::build(name, input, 10).expect("zoo"), k as u64).expect("init");
        randomize_bn(&mut m, k as u64);
        let bytes = export_bytes(&m, &ExportOptions::default()).expect("export");
        let back = import_bytes(&bytes, name, name).expect("import");
        let kinds = |m: &Model| {
            m.graph
                .nodes
                .iter()
                .map(|n| n.layer.kind())
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(&back), kinds(&m), "{name}: layers differ");
        for n in &m.graph.nodes {
            assert!(
                back.graph.index_of(&n.name).is_some(),
                "{name}: node '{}' renamed",
                n.name
            );
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let x = prune_core::Tensor::randn([&[2usize][..], input].concat(), 0.0, 1.0, &mut rng);
        let a = predict(&m, x.clone(), None).expect("predict");
        let b = predict(&back, x.clone(), None).expect("predict");
        assert_eq!(
            a.data(),
            b.data(),
            "{name}: outputs differ after a round trip"
        );
        let folded = fold_batch_norms(&m).expect("fold");
        let c = predict(&folded, x, None).expect("predict");
        assert!(
            rel(&c, &a) < 1e-5,
            "{name}: folding BN changed outputs by {}",
            rel(&c, &a)
        );
        if name.starts_with("resnet") || *name == "vgg-like" {
            assert!(folded
                .graph
                .nodes
                .iter()
                .all(|n| !matches!(n.layer, Layer::BatchNorm { .. })
                    || !matches!(
                        folded.graph.node(&n.inputs[0]).expect("input").layer,
                        Layer::Conv2d { .. } | Layer::Linear { .. }
                    )));
        }
    }
}

#[test]
fn export_rejects_opsets_out_of_range() {
    let m = Model::init(zoo::build("lenet5", &[1, 28, 28], 10).expect("zoo"), 0).expect("init");
    let err = export_bytes(
        &m,
        &ExportOptions {
            opset: 12,
            fold_bn: false,
        },
    )
    .expect_err("opset 12");
    assert!(err.to_string().contains("opset 12"), "{err}");
}
