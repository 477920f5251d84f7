//! The zoo builds valid graphs; costs match hand counts.

use prune_graph::{cost, infer_shapes, zoo, Model};

#[test]
fn every_zoo_model_builds_for_mnist_and_cifar_shapes() {
    for name in zoo::MODEL_NAMES {
        for input in [[1, 28, 28], [3, 32, 32]] {
            let g =
                zoo::build(name, &input, 10).unwrap_or_else(|e| panic!("{name} {input:?}: {e}"));
            let shapes = infer_shapes(&g).expect("shapes");
            assert_eq!(shapes.last().expect("output"), &vec![10], "{name}");
        }
    }
    let e = zoo::build("alexnet", &[1, 28, 28], 10)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown model 'alexnet'") && e.contains("lenet5"),
        "{e}"
    );
}

#[test]
fn lenet5_flops_and_params_by_hand() {
    let g = zoo::build("lenet5", &[1, 28, 28], 10).expect("lenet5");
    let c = cost(&g).expect("cost");
    // conv1 20·1·5·5·24·24, conv2 50·20·5·5·8·8, fc1 800·500, fc2 500·10
    let flops = 20 * 25 * 576 + 50 * 20 * 25 * 64 + 800 * 500 + 500 * 10;
    assert_eq!(c.flops, flops as u64);
    let params = (20 * 25 + 20) + (50 * 20 * 25 + 50) + (800 * 500 + 500) + (500 * 10 + 10);
    assert_eq!(c.params, params as u64);
    let fc = zoo::build("lenet-500-300", &[1, 28, 28], 10).expect("fc");
    assert_eq!(
        cost(&fc).expect("cost").flops,
        (784 * 500 + 500 * 300 + 300 * 10) as u64
    );
}

#[test]
fn resnet20_has_about_270k_params() {
    let g = zoo::build("resnet20", &[3, 32, 32], 10).expect("resnet20");
    let m = Model::init(g, 0).expect("init");
    let p = m.cost().expect("cost").params;
    // 0.27M in He et al. (option A shortcuts); 1x1-conv shortcuts add a few thousand.
    assert!((260_000..290_000).contains(&p), "{p}");
}
