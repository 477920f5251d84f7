//! Save/load round trips and the errors bad files produce.

use prune_graph::io::{StorageDtype, MODEL_FILE, WEIGHTS_FILE};
use prune_graph::{zoo, Model};

#[test]
fn roundtrip_f32_and_half() {
    let m = Model::init(zoo::build("lenet5", &[1, 28, 28], 10).expect("zoo"), 3).expect("init");
    let dir = tempfile::tempdir().expect("tmp");
    m.save(dir.path()).expect("save");
    assert_eq!(Model::load(dir.path()).expect("load"), m);
    let h = tempfile::tempdir().expect("tmp");
    m.save_as(h.path(), StorageDtype::Bf16).expect("save bf16");
    let back = Model::load(h.path()).expect("load bf16");
    let (a, b) = (
        m.params.get("fc1.weight").expect("w"),
        back.params.get("fc1.weight").expect("w"),
    );
    assert!(a.max_abs_diff(b).expect("same shape") < 1e-2);
    // tensor names follow <node>.<field>
    let bytes = std::fs::read(dir.path().join(WEIGHTS_FILE)).expect("read");
    let names = prune_graph::io::tensors_from_safetensors(&bytes, dir.path()).expect("parse");
    let names: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"conv1.weight") && names.contains(&"fc2.bias"),
        "{names:?}"
    );
}

#[test]
fn bad_files_give_errors_naming_the_problem() {
    let m = Model::init(zoo::build("lenet5", &[1, 28, 28], 10).expect("zoo"), 3).expect("init");
    let dir = tempfile::tempdir().expect("tmp");
    m.save(dir.path()).expect("save");
    // wrong weight shape
    let mut bad = m.clone();
    bad.params
        .insert("fc1.weight", prune_core::Tensor::zeros([3, 3]));
    let bytes =
        prune_graph::io::tensors_to_safetensors(bad.params.iter(), StorageDtype::F32).expect("ser");
    std::fs::write(dir.path().join(WEIGHTS_FILE), bytes).expect("write");
    let e = Model::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains("fc1.weight") && e.contains("[500, 800]"), "{e}");
    // truncated weights file
    std::fs::write(dir.path().join(WEIGHTS_FILE), b"\x10\x00\x00").expect("write");
    let e = Model::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains(WEIGHTS_FILE), "{e}");
    // malformed JSON
    std::fs::write(dir.path().join(MODEL_FILE), b"{\"format\": 1").expect("write");
    let e = Model::load(dir.path()).unwrap_err().to_string();
    assert!(e.contains(MODEL_FILE), "{e}");
    // missing directory
    let e = Model::load(&dir.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn non_finite_weights_are_rejected_at_load_naming_the_tensor() {
    let mut m = Model::init(zoo::build("lenet5", &[1, 28, 28], 10).expect("zoo"), 3).expect("init");
    for (bad, text) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let t = m.params.get_mut("conv2.weight").expect("w");
        t.data_mut()[7] = bad;
        let dir = tempfile::tempdir().expect("tmp");
        m.save(dir.path()).expect("save");
        let e = Model::load(dir.path())
            .expect_err("non-finite weights load")
            .to_string();
        assert!(
            e.contains("conv2.weight") && e.contains(text) && e.contains(WEIGHTS_FILE),
            "{e}"
        );
        m.params.get_mut("conv2.weight").expect("w").data_mut()[7] = 0.0;
    }
}

#[test]
fn truncated_weights_name_the_file_and_say_truncated() {
    let m = Model::init(
        zoo::build("lenet-300-100", &[1, 28, 28], 10).expect("zoo"),
        3,
    )
    .expect("init");
    let dir = tempfile::tempdir().expect("tmp");
    m.save(dir.path()).expect("save");
    let path = dir.path().join(WEIGHTS_FILE);
    let bytes = std::fs::read(&path).expect("read");
    for keep in [0, 5, 100, bytes.len() / 2] {
        std::fs::write(&path, &bytes[..keep]).expect("truncate");
        let e = Model::load(dir.path())
            .expect_err("truncated file loads")
            .to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("truncated"),
            "{keep} bytes: {e}"
        );
    }
}
