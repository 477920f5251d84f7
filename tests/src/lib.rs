//! Helpers shared by the end-to-end tests in `tests/tests/`.

use prune_nn::data::{Dataset, DatasetKind};

/// Train and test splits of MNIST from `PRUNE_NN_DATA` (a relative value is
/// taken from the workspace root), for a test that `Need::data` let run.
pub fn mnist() -> (Dataset, Dataset) {
    let dir = prune_testkit::data().join("mnist");
    match prune_nn::data::load_splits(DatasetKind::Mnist, &dir) {
        Ok(s) => s,
        Err(e) => panic!("PRUNE_NN_DATA is set but MNIST did not load: {e}"),
    }
}
