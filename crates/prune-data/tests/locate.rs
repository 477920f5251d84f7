//! Discovery order with temporary folders; the environment is passed in as a
//! [`SearchPaths`] value, so these tests never touch process-global variables.

mod common;

use common::*;
use prune_data::locate::{cache_root_from, missing_files};
use prune_data::{locate_in, DatasetKind, SearchPaths};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

struct Places {
    _tmp: tempfile::TempDir,
    explicit: PathBuf,
    env: PathBuf,
    cache: PathBuf,
    system: PathBuf,
}

fn places() -> Places {
    let tmp = tempfile::tempdir().unwrap();
    let p = |s: &str| tmp.path().join(s);
    Places {
        explicit: p("explicit"),
        env: p("env"),
        cache: p("cache/prune-nn"),
        system: p("usr-share-fashion-mnist"),
        _tmp: tmp,
    }
}

fn search(p: &Places) -> SearchPaths {
    SearchPaths {
        data_env: Some(p.env.clone()),
        cache_root: Some(p.cache.clone()),
        system_fashion_mnist: Some(p.system.clone()),
    }
}

#[test]
fn order_is_explicit_env_cache_system() {
    let p = places();
    let kind = DatasetKind::FashionMnist;
    let sp = search(&p);
    let env_dir = p.env.join("fashion-mnist");
    let cache_dir = p.cache.join("fashion-mnist");

    assert!(locate_in(kind, None, &sp).is_err());
    write_mnist_dir(&p.system, 2, 2, true);
    assert_eq!(locate_in(kind, None, &sp).unwrap(), p.system);
    write_mnist_dir(&cache_dir, 2, 2, true);
    assert_eq!(locate_in(kind, None, &sp).unwrap(), cache_dir);
    write_mnist_dir(&env_dir, 2, 2, false);
    assert_eq!(locate_in(kind, None, &sp).unwrap(), env_dir);
    write_mnist_dir(&p.explicit, 2, 2, true);
    assert_eq!(locate_in(kind, Some(&p.explicit), &sp).unwrap(), p.explicit);
}

#[test]
fn explicit_folder_may_be_the_root_and_is_never_bypassed() {
    let p = places();
    let sp = search(&p);
    write_mnist_dir(&p.env.join("mnist"), 2, 2, true);
    // An explicit folder without the data is an error even though $PRUNE_NN_DATA has it.
    let e = locate_in(DatasetKind::Mnist, Some(&p.explicit), &sp)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--data folder") && e.contains("train-images-idx3-ubyte"),
        "{e}"
    );
    // A root with a dataset sub-folder works as an explicit folder.
    assert_eq!(
        locate_in(DatasetKind::Mnist, Some(&p.env), &sp).unwrap(),
        p.env.join("mnist")
    );
}

#[test]
fn incomplete_folders_are_skipped() {
    let p = places();
    let sp = search(&p);
    let env_dir = p.env.join("mnist");
    write_mnist_dir(&env_dir, 2, 2, true);
    std::fs::remove_file(env_dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(
        missing_files(DatasetKind::Mnist, &env_dir),
        vec!["t10k-labels-idx1-ubyte"]
    );
    write_mnist_dir(&p.cache.join("mnist"), 2, 2, false);
    assert_eq!(
        locate_in(DatasetKind::Mnist, None, &sp).unwrap(),
        p.cache.join("mnist")
    );
}

#[test]
fn system_folder_is_only_for_fashion_mnist() {
    let p = places();
    let sp = search(&p);
    write_mnist_dir(&p.system, 2, 2, true);
    assert!(locate_in(DatasetKind::Mnist, None, &sp).is_err());
    assert!(locate_in(DatasetKind::FashionMnist, None, &sp).is_ok());
}

#[test]
fn cifar_archive_subfolder_is_found() {
    let p = places();
    let sp = search(&p);
    let sub = p.cache.join("cifar10").join("cifar-10-batches-bin");
    write_cifar_dir(&sub, 1);
    assert_eq!(locate_in(DatasetKind::Cifar10, None, &sp).unwrap(), sub);
}

#[test]
fn not_found_message_says_where_to_put_files() {
    let p = places();
    let sp = search(&p);
    let e = locate_in(DatasetKind::FashionMnist, None, &sp)
        .unwrap_err()
        .to_string();
    for needle in [
        "Fashion-MNIST not found",
        "PRUNE_NN_DATA",
        "train-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        "dataset-fashion-mnist",
        "--data",
        &p.cache.join("fashion-mnist").display().to_string(),
    ] {
        assert!(e.contains(needle), "{needle:?} missing from: {e}");
    }
    let e = locate_in(DatasetKind::Cifar10, None, &SearchPaths::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("data_batch_1.bin") && e.contains("cifar-10-binary.tar.gz"),
        "{e}"
    );
}

#[test]
fn cache_root_follows_xdg_then_home() {
    let os = |s: &str| Some(OsString::from(s));
    assert_eq!(
        cache_root_from(os("/xdg"), os("/home/u")),
        Some(Path::new("/xdg/prune-nn").to_path_buf())
    );
    // Relative or empty XDG_CACHE_HOME is ignored, as the XDG spec requires.
    for xdg in [os("rel/cache"), os(""), None] {
        assert_eq!(
            cache_root_from(xdg, os("/home/u")),
            Some(Path::new("/home/u/.cache/prune-nn").to_path_buf())
        );
    }
    assert_eq!(cache_root_from(None, None), None);
    assert_eq!(cache_root_from(None, os("")), None);
}
