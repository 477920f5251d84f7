//! Helpers of the CLI tests: running the binary, and a small synthetic
//! MNIST-format dataset so the input checks run without the real files.
#![allow(dead_code)]

use prune_nn::data::idx::{encode_idx_images, encode_idx_labels, IdxImages};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prune-nn"))
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// Writes `train` and `test` images in MNIST's IDX format into `dir/mnist`:
/// class k has a bright block at a class-specific place, so a few batches
/// learn something. Returns `dir/mnist`.
pub fn synthetic_mnist(dir: &Path, train: usize, test: usize) -> PathBuf {
    synthetic_set(dir, "mnist", train, test)
}

/// [`synthetic_mnist`] under another dataset's folder name (`fashion-mnist`).
pub fn synthetic_set(dir: &Path, name: &str, train: usize, test: usize) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).expect("mkdir");
    for (n, images, labels) in [
        (train, "train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        (test, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ] {
        let mut pixels = vec![0u8; n * 784];
        let mut ys = Vec::with_capacity(n);
        for i in 0..n {
            let k = (i * 7 + n) % 10;
            ys.push(k as u8);
            let (r0, c0) = ((k / 5) * 14 + 3, (k % 5) * 5 + 1);
            for r in r0..r0 + 7 {
                for c in c0..c0 + 4 {
                    pixels[i * 784 + r * 28 + c] = 220;
                }
            }
        }
        let img = IdxImages {
            count: n,
            rows: 28,
            cols: 28,
            pixels,
        };
        std::fs::write(out.join(images), encode_idx_images(&img).expect("idx")).expect("write");
        std::fs::write(out.join(labels), encode_idx_labels(&ys).expect("idx")).expect("write");
    }
    out
}

/// `defaults` (flag, value) pairs whose flag `extra` does not give, then `extra`.
pub fn with_defaults<'a>(
    head: &[&'a str],
    defaults: &[(&'a str, &'a str)],
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = head.to_vec();
    for (flag, value) in defaults {
        if !extra.contains(flag) {
            args.extend([*flag, *value]);
        }
    }
    args.extend_from_slice(extra);
    args
}

/// Trains a small lenet-300-100 run on `data` into `out`; `extra` flags
/// replace the defaults.
pub fn quick_train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let args = with_defaults(
        &["train"],
        &[
            ("--model", "lenet-300-100"),
            ("--dataset", "mnist"),
            ("--data", s(data)),
            ("--epochs", "1"),
            ("--batch-size", "50"),
            ("--out", s(out)),
        ],
        extra,
    );
    run(&args)
}

/// Reads a JSON file.
pub fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}
