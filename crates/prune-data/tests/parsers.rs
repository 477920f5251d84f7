//! IDX and CIFAR-10 parsers on hand-built files: raw and gzipped, and every
//! kind of corruption.

mod common;

use common::*;
use prune_data::cifar::{parse_cifar, CIFAR_RECORD_BYTES};
use prune_data::idx::{parse_idx_images, parse_idx_labels};
use prune_data::{load, DataError, DatasetKind, Split};
use std::path::Path;

fn err_text(r: Result<impl std::fmt::Debug, DataError>) -> String {
    r.expect_err("expected an error").to_string()
}

#[test]
fn idx_round_trip_raw_and_gz() {
    let (img, lab) = mnist_like(13);
    for (i, l) in [(img.clone(), lab.clone()), (gzip(&img), gzip(&lab))] {
        let images = parse_idx_images(&i, "img").unwrap();
        assert_eq!((images.count, images.rows, images.cols), (13, 28, 28));
        assert_eq!(images.pixels, pattern_pixels(13, 784));
        let labels = parse_idx_labels(&l, "lab").unwrap();
        assert_eq!(labels, (0..13).map(|i| (i % 10) as u8).collect::<Vec<_>>());
    }
}

#[test]
fn load_mnist_dir_raw_and_gz_agree_and_normalize() {
    let tmp = tempfile::tempdir().unwrap();
    let (raw, gz) = (tmp.path().join("raw"), tmp.path().join("gz"));
    write_mnist_dir(&raw, 21, 5, false);
    write_mnist_dir(&gz, 21, 5, true);
    for kind in [DatasetKind::Mnist, DatasetKind::FashionMnist] {
        let a = load(kind, Split::Train, &raw).unwrap();
        let b = load(kind, Split::Train, &gz).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 21);
        assert_eq!(a.shape, [1, 28, 28]);
        assert_eq!(a.images.len(), 21 * 784);
        let t = load(kind, Split::Test, &gz).unwrap();
        assert_eq!(t.len(), 5);
        // Normalization: x = (p / 255 - mean) / std, checked on raw bytes.
        let pixels = pattern_pixels(21, 784);
        let (m, s) = (kind.mean()[0], kind.std()[0]);
        for (x, &p) in a.images.iter().zip(&pixels).step_by(97) {
            let expected = (f32::from(p) / 255.0 - m) / s;
            assert!((x - expected).abs() < 1e-6, "{x} vs {expected}");
        }
    }
}

#[test]
fn load_cifar_dir_concatenates_batches_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar_dir(tmp.path(), 4);
    let train = load(DatasetKind::Cifar10, Split::Train, tmp.path()).unwrap();
    assert_eq!(train.len(), 20);
    assert_eq!(train.shape, [3, 32, 32]);
    // Batch k holds labels (i + k) % 10.
    let expected: Vec<u8> = (0..5)
        .flat_map(|k| (0..4).map(move |i| ((i + k) % 10) as u8))
        .collect();
    assert_eq!(train.labels, expected);
    let test = load(DatasetKind::Cifar10, Split::Test, tmp.path()).unwrap();
    assert_eq!(test.labels, vec![5, 6, 7, 8]);
    // Per-channel normalization: channel c of image 0 uses mean[c], std[c].
    let img = test.image(0).unwrap();
    for c in 0..3 {
        let j = c * 1024 + 5;
        let p = (j % 256) as f32;
        let expected = (p / 255.0 - DatasetKind::Cifar10.mean()[c]) / DatasetKind::Cifar10.std()[c];
        assert!((img[j] - expected).abs() < 1e-6);
    }
}

#[test]
fn idx_bad_magic_is_named() {
    let (img, lab) = mnist_like(2);
    // Image bytes handed to the label parser and vice versa.
    let e = err_text(parse_idx_labels(&img, "labels.idx"));
    assert!(
        e.contains("labels.idx") && e.contains("bad magic number 2051"),
        "{e}"
    );
    let e = err_text(parse_idx_images(&lab, "images.idx"));
    assert!(
        e.contains("images.idx") && e.contains("expected 2051"),
        "{e}"
    );
    let mut bad = img.clone();
    bad[3] = 0x42;
    let e = err_text(parse_idx_images(&bad, "x"));
    assert!(e.contains("bad magic"), "{e}");
}

#[test]
fn idx_truncation_and_trailing_bytes_are_errors() {
    let (img, lab) = mnist_like(3);
    for cut in [0, 2, 4, 10, 15] {
        let e = err_text(parse_idx_images(&img[..cut], "img"));
        assert!(e.contains("truncated header"), "{cut}: {e}");
    }
    let e = err_text(parse_idx_images(&img[..img.len() - 1], "img"));
    assert!(
        e.contains("truncated") && e.contains("3 images of 28x28"),
        "{e}"
    );
    let e = err_text(parse_idx_labels(&lab[..lab.len() - 1], "lab"));
    assert!(e.contains("truncated") && e.contains("3 labels"), "{e}");
    let mut long = img.clone();
    long.push(0);
    let e = err_text(parse_idx_images(&long, "img"));
    assert!(e.contains("trailing data"), "{e}");
    // Truncated gzip stream: every strict prefix fails.
    let gz = gzip(&img);
    for cut in [3, 10, gz.len() / 2, gz.len() - 1] {
        assert!(parse_idx_images(&gz[..cut], "img.gz").is_err(), "cut {cut}");
    }
}

#[test]
fn idx_corrupt_gzip_is_an_error() {
    let (img, _) = mnist_like(3);
    let mut gz = gzip(&img);
    let n = gz.len();
    gz[n - 6] ^= 0xff; // inside the CRC32 trailer
    let e = err_text(parse_idx_images(&gz, "img.gz"));
    assert!(e.contains("img.gz"), "{e}");
}

#[test]
fn idx_overflowing_dimensions_are_an_error() {
    let mut bytes = 2051u32.to_be_bytes().to_vec();
    for d in [u32::MAX, u32::MAX, u32::MAX] {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    let e = err_text(parse_idx_images(&bytes, "huge"));
    // On 64-bit targets the product fits but the payload is absent.
    assert!(e.contains("overflow") || e.contains("truncated"), "{e}");
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn load_rejects_wrong_image_size() {
    let tmp = tempfile::tempdir().unwrap();
    write_mnist_dir(tmp.path(), 4, 4, false);
    let images = prune_data::idx::IdxImages {
        count: 4,
        rows: 32,
        cols: 32,
        pixels: vec![0; 4 * 1024],
    };
    write(
        tmp.path(),
        "train-images-idx3-ubyte",
        &prune_data::idx::encode_idx_images(&images).unwrap(),
    );
    let e = err_text(load(DatasetKind::Mnist, Split::Train, tmp.path()));
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("32x32"),
        "{e}"
    );
}

#[test]
fn load_rejects_count_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    write_mnist_dir(tmp.path(), 6, 4, false);
    let (_, lab) = mnist_like(5);
    write(tmp.path(), "train-labels-idx1-ubyte", &lab);
    let e = err_text(load(DatasetKind::Mnist, Split::Train, tmp.path()));
    assert!(
        e.contains("6 images") && e.contains("5 labels") && e.contains("train-labels-idx1-ubyte"),
        "{e}"
    );
}

#[test]
fn load_rejects_label_out_of_range() {
    let tmp = tempfile::tempdir().unwrap();
    write_mnist_dir(tmp.path(), 4, 4, true);
    let lab = prune_data::idx::encode_idx_labels(&[1, 2, 10, 3]).unwrap();
    std::fs::write(tmp.path().join("t10k-labels-idx1-ubyte.gz"), gzip(&lab)).unwrap();
    let e = err_text(load(DatasetKind::FashionMnist, Split::Test, tmp.path()));
    assert!(
        e.contains("t10k-labels-idx1-ubyte.gz") && e.contains("label 10 of example 2"),
        "{e}"
    );
}

#[test]
fn load_rejects_missing_and_empty_files() {
    let tmp = tempfile::tempdir().unwrap();
    let e = err_text(load(DatasetKind::Mnist, Split::Train, tmp.path()));
    assert!(e.contains("train-images-idx3-ubyte"), "{e}");
    write_mnist_dir(tmp.path(), 0, 1, false);
    let e = err_text(load(DatasetKind::Mnist, Split::Train, tmp.path()));
    assert!(e.contains("no examples"), "{e}");
}

#[test]
fn cifar_corruptions_are_errors() {
    let good = cifar_like(3, 0);
    assert_eq!(parse_cifar(&good, "b").unwrap().len(), 3);
    let e = err_text(parse_cifar(&good[..good.len() - 1], "data_batch_1.bin"));
    assert!(
        e.contains("data_batch_1.bin") && e.contains("not a multiple of the 3073-byte record"),
        "{e}"
    );
    let e = err_text(parse_cifar(&[], "empty.bin"));
    assert!(e.contains("empty"), "{e}");
    let mut bad = good.clone();
    bad[CIFAR_RECORD_BYTES] = 10;
    let e = err_text(parse_cifar(&bad, "b.bin"));
    assert!(e.contains("label 10 of example 1"), "{e}");

    let tmp = tempfile::tempdir().unwrap();
    write_cifar_dir(tmp.path(), 2);
    write(
        tmp.path(),
        "data_batch_3.bin",
        &good[..CIFAR_RECORD_BYTES + 100],
    );
    let e = err_text(load(DatasetKind::Cifar10, Split::Train, tmp.path()));
    assert!(
        e.contains("data_batch_3.bin") && e.contains("stray bytes"),
        "{e}"
    );
}
