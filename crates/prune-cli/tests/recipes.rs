//! Every recipe in `recipes/` runs: a few batches of each, through the real
//! binary and the real `--recipe` path, so the files cannot rot. Dense
//! (`train`) recipes run first; each `prune` recipe then starts from the
//! model its `model` setting names, which some `train` recipe must produce.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let data = prune_testkit::Need::data();
    let mut trials = prune_testkit::tests!(
        recipe_errors_name_the_file_and_the_setting,
        command_line_flags_override_the_recipe
    );
    trials.extend(prune_testkit::tests_needing!(&data; every_recipe_runs_a_few_batches));
    prune_testkit::run(trials);
}

fn recipes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes")
}

fn recipe_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(recipes_dir())
        .expect("recipes/ exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn setting(path: &Path, key: &str) -> Option<toml::Value> {
    let text = std::fs::read_to_string(path).expect("readable recipe");
    let table: toml::Table = text.parse().expect("valid TOML");
    table.get("args")?.get(key).cloned()
}

fn text_setting(path: &Path, key: &str) -> String {
    match setting(path, key) {
        Some(toml::Value::String(s)) => s,
        other => panic!(
            "{}: '{key}' should be a string, got {other:?}",
            path.display()
        ),
    }
}

fn command_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("readable recipe");
    let table: toml::Table = text.parse().expect("valid TOML");
    table["command"].as_str().expect("command").to_string()
}

/// Runs one recipe for a handful of batches into `out`.
fn run_recipe(recipe: &Path, data: &Path, out: &Path, extra: &[String]) {
    let mut args: Vec<String> = vec![
        command_of(recipe),
        "--recipe".into(),
        recipe.display().to_string(),
    ];
    let dataset = text_setting(recipe, "dataset");
    args.extend([
        "--data".into(),
        data.join(&dataset).display().to_string(),
        "--epochs".into(),
        "2".into(),
        "--max-batches".into(),
        "2".into(),
        "--subset".into(),
        "256".into(),
        "--test-subset".into(),
        "100".into(),
        "--out".into(),
        out.display().to_string(),
    ]);
    // Two epochs: a linear decay must start inside them.
    if setting(recipe, "linear_decay_from").is_some() {
        args.extend(["--linear-decay-from".into(), "1".into()]);
    }
    args.extend(extra.iter().cloned());
    let o = Command::new(env!("CARGO_BIN_EXE_prune-nn"))
        .args(&args)
        .output()
        .expect("the binary runs");
    assert!(
        o.status.success(),
        "{} failed ({args:?}):\n{}{}",
        recipe.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // The resolved recipe records where each setting came from.
    let resolved = std::fs::read_to_string(out.join("recipe.toml")).expect("resolved recipe");
    assert!(resolved.contains("epochs = command line"), "{resolved}");
    let table: toml::Table = resolved.parse().expect("resolved recipe is TOML");
    assert_eq!(table["args"]["epochs"].as_integer(), Some(2));
    if let Some(seed) = setting(recipe, "seed") {
        assert_eq!(table["args"].get("seed"), Some(&seed), "{resolved}");
        assert!(resolved.contains("seed = recipe"), "{resolved}");
    }
}

fn every_recipe_runs_a_few_batches() {
    let data = prune_testkit::data();
    let files = recipe_files();
    assert!(
        files.len() >= 13,
        "expected the recipe set, found {files:?}"
    );
    let tmp = tempfile::tempdir().expect("tmp");
    // Dense recipes first; remember which run directory each produces.
    let mut produced: BTreeMap<String, PathBuf> = BTreeMap::new();
    for f in files.iter().filter(|f| command_of(f) == "train") {
        let name = text_setting(f, "out");
        let out = tmp.path().join(name.replace('/', "_"));
        run_recipe(f, &data, &out, &[]);
        assert!(out.join("model.json").exists());
        produced.insert(name, out);
    }
    for f in files.iter().filter(|f| command_of(f) == "prune") {
        let model = text_setting(f, "model");
        let dense = produced.get(&model).unwrap_or_else(|| {
            panic!(
                "{}: no train recipe produces its model '{model}'",
                f.display()
            )
        });
        let out = tmp.path().join(text_setting(f, "out").replace('/', "_"));
        let extra = [
            "--model".to_string(),
            dense.display().to_string(),
            "--finetune-epochs".into(),
            "1".into(),
            "--speed-repeats".into(),
            "0".into(),
        ];
        run_recipe(f, &data, &out, &extra);
        assert!(out.join("report.json").exists() && out.join("masks.json").exists());
        assert!(out.join("sparse/kept.jsonl").exists());
    }
}

fn recipe_errors_name_the_file_and_the_setting() {
    let tmp = tempfile::tempdir().expect("tmp");
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "command = \"train\"\n[args]\nmodel = \"lenet5\"\nepoch = 3\n",
    )
    .expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_prune-nn"))
        .args(["train", "--recipe"])
        .arg(&bad)
        .output()
        .expect("runs");
    let msg = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{msg}");
    assert!(msg.contains("bad.toml") && msg.contains("'epoch'"), "{msg}");
    // A prune recipe cannot drive `train`.
    let o = Command::new(env!("CARGO_BIN_EXE_prune-nn"))
        .args(["train", "--recipe"])
        .arg(recipes_dir().join("lenet5-sbp.toml"))
        .output()
        .expect("runs");
    let msg = String::from_utf8_lossy(&o.stderr);
    assert!(msg.contains("prune-nn prune"), "{msg}");
    // Broken TOML.
    std::fs::write(&bad, "command = \"train\"\n[args\n").expect("write");
    let o = Command::new(env!("CARGO_BIN_EXE_prune-nn"))
        .args(["train", "--recipe"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.toml"));
}

fn command_line_flags_override_the_recipe() {
    // No data needed: a missing data directory fails after the resolved
    // recipe was written, which is all this checks.
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_prune-nn"))
        .args(["train", "--recipe"])
        .arg(recipes_dir().join("lenet5-dense.toml"))
        .args(["--lr", "0.5", "--milestones", "3", "--out"])
        .arg(&out)
        .arg("--data")
        .arg(tmp.path().join("no-data-here"))
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(1));
    let resolved = std::fs::read_to_string(out.join("recipe.toml")).expect("resolved");
    let table: toml::Table = resolved.parse().expect("TOML");
    let args = &table["args"];
    assert_eq!(args["lr"].as_float(), Some(0.5));
    assert_eq!(args["milestones"].as_array().map(|a| a.len()), Some(1));
    assert_eq!(args["epochs"].as_integer(), Some(12));
    assert_eq!(args["model"].as_str(), Some("lenet5"));
    assert!(resolved.contains("lr = command line") && resolved.contains("epochs = recipe"));
}
