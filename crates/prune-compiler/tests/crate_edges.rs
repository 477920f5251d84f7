//! The compiler's normal dependencies follow the intended crate edges
//! (compiler → graph → core → kernels): none of the trainer's or the
//! regularizers' I/O crates reach it. Runs `cargo tree` on the workspace's
//! lock file, offline.

use std::process::Command;

/// Crates that must not appear in `cargo tree -p prune-compiler -e normal`.
const FORBIDDEN: &[&str] = &[
    "ureq",
    "plotters",
    "indicatif",
    "tar",
    "sha2",
    "prune-reg",
    "prune-train",
    "prune-data",
];

#[test]
fn compiler_links_no_io_or_regularizer_crates() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "-p", "prune-compiler", "-e", "normal", "--offline"])
        .args(["--prefix", "none", "--charset", "ascii"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.contains(&"prune-graph"), "unexpected tree:\n{tree}");
    let bad: Vec<&&str> = FORBIDDEN.iter().filter(|f| names.contains(f)).collect();
    assert!(bad.is_empty(), "prune-compiler depends on {bad:?}:\n{tree}");
}
