//! The real MNIST and Fashion-MNIST files under `$PRUNE_NN_DATA` (a relative
//! value is taken from the workspace root). Without the variable every test
//! here is reported as ignored, with the reason.

mod common;

use common::{dir_entries, Reply, Server};
use prune_data::idx::load_idx_images;
use prune_data::{load, locate, verify_checksums, DatasetKind, Split};
use prune_data::{load_or_download_in, SearchPaths};
use prune_testkit::{data, Need};

fn main() {
    let need = Need::data();
    prune_testkit::run(prune_testkit::tests_needing!(&need;
        real_mnist,
        real_fashion_mnist,
        real_gz_and_raw_agree,
        load_or_download_from_local_mirror_of_real_files,
    ));
}

fn check(kind: DatasetKind) {
    let root = data();
    let dir = root.join(kind.name());
    verify_checksums(kind, &dir).unwrap();
    assert_eq!(locate(kind, Some(&root)).unwrap(), dir);

    let train = load(kind, Split::Train, &dir).unwrap();
    let test_split = load(kind, Split::Test, &dir).unwrap();
    assert_eq!((train.len(), test_split.len()), (60_000, 10_000));
    assert_eq!(train.images.len(), 60_000 * 784);
    let (tr, te) = (train.class_counts(), test_split.class_counts());
    assert_eq!(tr.iter().sum::<usize>(), 60_000);
    match kind {
        // Fashion-MNIST is exactly balanced.
        DatasetKind::FashionMnist => {
            assert_eq!(tr, vec![6000; 10]);
            assert_eq!(te, vec![1000; 10]);
        }
        // MNIST: 5421 (digit 5) to 6742 (digit 1) in train, 892 to 1135 in test.
        _ => {
            assert_eq!(
                (tr.iter().min(), tr.iter().max()),
                (Some(&5421), Some(&6742))
            );
            assert_eq!(
                (te.iter().min(), te.iter().max()),
                (Some(&892), Some(&1135))
            );
        }
    }

    // The normalization constants are the training set's statistics: check
    // them against the raw bytes, and the normalized data against N(0, 1) moments.
    let raw = load_idx_images(&dir.join("train-images-idx3-ubyte.gz")).unwrap();
    let n = raw.pixels.len() as f64;
    let mean = raw
        .pixels
        .iter()
        .map(|&p| f64::from(p) / 255.0)
        .sum::<f64>()
        / n;
    let var = raw
        .pixels
        .iter()
        .map(|&p| (f64::from(p) / 255.0 - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(
        (mean - f64::from(kind.mean()[0])).abs() < 5e-4,
        "mean {mean}"
    );
    assert!(
        (var.sqrt() - f64::from(kind.std()[0])).abs() < 5e-4,
        "std {}",
        var.sqrt()
    );
    let m = train.images.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let v = train
        .images
        .iter()
        .map(|&x| (f64::from(x) - m).powi(2))
        .sum::<f64>()
        / n;
    assert!(
        m.abs() < 2e-3 && (v.sqrt() - 1.0).abs() < 2e-3,
        "normalized mean {m} std {}",
        v.sqrt()
    );
}

fn real_mnist() {
    check(DatasetKind::Mnist);
}

fn real_fashion_mnist() {
    check(DatasetKind::FashionMnist);
}

fn real_gz_and_raw_agree() {
    let root = data();
    let src = root.join("mnist");
    let tmp = tempfile::tempdir().unwrap();
    for name in DatasetKind::Mnist.files(Split::Test) {
        let mut r = prune_data::reader::open_data_file(&src.join(format!("{name}.gz"))).unwrap();
        let mut f = std::fs::File::create(tmp.path().join(name)).unwrap();
        std::io::copy(&mut r, &mut f).unwrap();
    }
    let raw = load(DatasetKind::Mnist, Split::Test, tmp.path()).unwrap();
    let gz = load(DatasetKind::Mnist, Split::Test, &src).unwrap();
    assert_eq!(raw, gz);
}

/// Serves the real MNIST files from `$PRUNE_NN_DATA/mnist` as a mirror and
/// downloads them into an empty cache: checksums, atomic placement, loading.
fn load_or_download_from_local_mirror_of_real_files() {
    let root = data();
    let kind = DatasetKind::Mnist;
    let routes: Vec<(&str, Reply)> = kind
        .known_sha256()
        .iter()
        .map(|(name, _)| {
            (
                *name,
                Reply::Body(std::fs::read(root.join("mnist").join(name)).unwrap()),
            )
        })
        .collect();
    let server = Server::start(routes, 4);
    let tmp = tempfile::tempdir().unwrap();
    let paths = SearchPaths {
        data_env: None,
        cache_root: Some(tmp.path().join("cache")),
        system_fashion_mnist: None,
    };
    let (train, test, dir) = load_or_download_in(kind, None, &paths, &[&server.base]).unwrap();
    assert_eq!(dir, tmp.path().join("cache").join("mnist"));
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    assert_eq!(dir_entries(&dir).len(), 4);
    prune_data::verify_checksums(kind, &dir).unwrap();
    assert_eq!(server.finish(), 4);
}
