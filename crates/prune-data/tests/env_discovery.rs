//! `locate` / `SearchPaths::from_env` read the process environment. This file
//! holds a single test, so its test binary is the only code in the process that
//! reads or writes these variables.

mod common;

use common::write_mnist_dir;
use prune_data::{locate, DatasetKind, SearchPaths};

#[test]
fn environment_variables_drive_discovery() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let xdg = tmp.path().join("xdg");
    let home = tmp.path().join("home");
    std::env::set_var("PRUNE_NN_DATA", &data);
    std::env::set_var("XDG_CACHE_HOME", &xdg);
    std::env::set_var("HOME", &home);

    let sp = SearchPaths::from_env();
    assert_eq!(sp.data_env.as_deref(), Some(data.as_path()));
    assert_eq!(sp.cache_root, Some(xdg.join("prune-nn")));

    write_mnist_dir(&xdg.join("prune-nn").join("mnist"), 1, 1, true);
    assert_eq!(
        locate(DatasetKind::Mnist, None).unwrap(),
        xdg.join("prune-nn").join("mnist")
    );
    write_mnist_dir(&data.join("mnist"), 1, 1, true);
    assert_eq!(
        locate(DatasetKind::Mnist, None).unwrap(),
        data.join("mnist")
    );

    std::env::remove_var("XDG_CACHE_HOME");
    std::env::set_var("PRUNE_NN_DATA", "");
    let sp = SearchPaths::from_env();
    assert_eq!(sp.data_env, None);
    assert_eq!(sp.cache_root, Some(home.join(".cache").join("prune-nn")));
    write_mnist_dir(&home.join(".cache/prune-nn/mnist"), 1, 1, false);
    assert_eq!(
        locate(DatasetKind::Mnist, None).unwrap(),
        home.join(".cache/prune-nn/mnist")
    );
}
