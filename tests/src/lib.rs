//! Helpers shared by the end-to-end tests in `tests/tests/`.

use prune_nn::data::{Dataset, DatasetKind};
use std::path::PathBuf;

/// The dataset folder from `PRUNE_NN_DATA`, or `None` (and a printed reason)
/// when it is unset, so a test can skip.
pub fn data_root() -> Option<PathBuf> {
    match std::env::var_os(prune_nn::data::DATA_ENV) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!("skipped: {} is not set", prune_nn::data::DATA_ENV);
            None
        }
    }
}

/// Train and test splits of MNIST from `PRUNE_NN_DATA`.
pub fn mnist() -> Option<(Dataset, Dataset)> {
    let root = data_root()?;
    let dir = root.join("mnist");
    match prune_nn::data::load_splits(DatasetKind::Mnist, &dir) {
        Ok(s) => Some(s),
        Err(e) => panic!("PRUNE_NN_DATA is set but MNIST did not load: {e}"),
    }
}
