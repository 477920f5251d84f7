//! Synthetic 1×28×28 datasets for tests that check numerics or file
//! formats, not accuracy: random images whose label depends on the mean
//! brightness of one quadrant, so a few batches of training move the
//! weights.

use prune_nn::data::{Dataset, DatasetKind, Split};
use rand::{Rng, SeedableRng};

/// `n` images of `kind`'s shape (MNIST or Fashion-MNIST) for `split`.
pub fn synthetic(kind: DatasetKind, split: Split, n: usize, seed: u64) -> Dataset {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut pixels = vec![0u8; n * 784];
    let mut labels = Vec::with_capacity(n);
    for img in pixels.chunks_mut(784) {
        let label: u8 = rng.random_range(0..10);
        for (i, p) in img.iter_mut().enumerate() {
            let (r, c) = (i / 28, i % 28);
            let bright = (r < 14) == label.is_multiple_of(2) && (c < 14) == (label < 5);
            *p = rng.random_range(0..128) + if bright { 100 } else { 0 };
        }
        labels.push(label);
    }
    Dataset::from_bytes(kind, split, &pixels, labels).expect("dataset")
}
