//! Mini-batches over an in-memory [`Dataset`].
//!
//! Each epoch visits a permutation of `0..len`: the identity without a seed, or
//! a Fisher-Yates shuffle driven by ChaCha8 seeded with the shuffle seed on
//! stream `epoch` (same seed and epoch, same order, on every platform). Batches
//! are consecutive slices of that order; a batch is assembled by copying each
//! example's row of normalized values (in parallel), or by writing its
//! augmented version when augmentation is on.

use crate::augment::{crop_flip_into, Augment};
use crate::dataset::Dataset;
use crate::error::{DataError, Result};
use prune_core::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// How to cut an epoch into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Examples per batch (at least 1).
    pub batch_size: usize,
    /// Shuffle seed; `None` keeps the dataset order.
    pub shuffle_seed: Option<u64>,
    /// Drop the last batch when it is smaller than `batch_size`.
    pub drop_last: bool,
    /// Random crop/flip applied to every example.
    pub augment: Option<Augment>,
}

impl BatchOptions {
    /// Batches of `batch_size` in dataset order, last partial batch kept, no augmentation.
    pub fn new(batch_size: usize) -> Self {
        BatchOptions {
            batch_size,
            shuffle_seed: None,
            drop_last: false,
            augment: None,
        }
    }

    /// Sets the shuffle seed.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.shuffle_seed = Some(seed);
        self
    }

    /// Sets `drop_last`.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Sets the augmentation.
    pub fn augment(mut self, augment: Augment) -> Self {
        self.augment = Some(augment);
        self
    }
}

/// The order in which epoch `epoch` visits `0..len`.
pub fn epoch_order(len: usize, shuffle_seed: Option<u64>, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if let Some(seed) = shuffle_seed {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(epoch);
        order.shuffle(&mut rng);
    }
    order
}

/// Iterator over the batches of one epoch: `(images [B, C, H, W], labels)`.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    data: &'a Dataset,
    order: Vec<usize>,
    batch_size: usize,
    /// Start of the next batch in `order`.
    pos: usize,
    /// End of the last batch in `order` (shorter than `len` with `drop_last`).
    end: usize,
    augment: Option<Augment>,
    fill: Vec<f32>,
    epoch: u64,
}

impl<'a> Batches<'a> {
    /// The batches of `data` for `epoch` under `opts`.
    pub fn new(data: &'a Dataset, opts: &BatchOptions, epoch: u64) -> Result<Self> {
        if opts.batch_size == 0 {
            return Err(DataError::InvalidArgument(
                "batch size must be at least 1".to_string(),
            ));
        }
        data.validate()?;
        let order = epoch_order(data.len(), opts.shuffle_seed, epoch);
        let end = if opts.drop_last {
            data.len() - data.len() % opts.batch_size
        } else {
            data.len()
        };
        Ok(Batches {
            data,
            order,
            batch_size: opts.batch_size,
            pos: 0,
            end,
            augment: opts.augment,
            fill: data.zero_pixel(),
            epoch,
        })
    }

    /// The visiting order of the whole epoch (dataset indices).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Builds the batch of the given dataset indices.
    fn assemble(&self, indices: &[usize]) -> Result<(Tensor, Vec<usize>)> {
        let data = self.data;
        let per = data.example_len();
        let mut out = vec![0f32; indices.len() * per];
        match self.augment {
            None => out
                .par_chunks_mut(per)
                .zip(indices.par_iter())
                .with_min_len(16)
                .for_each(|(dst, &i)| dst.copy_from_slice(&data.images[i * per..(i + 1) * per])),
            Some(aug) => out
                .par_chunks_mut(per)
                .zip(indices.par_iter())
                .with_min_len(8)
                .try_for_each(|(dst, &i)| {
                    let choice = aug.choices(self.epoch, i);
                    let src = &data.images[i * per..(i + 1) * per];
                    crop_flip_into(src, data.shape, aug.pad, choice, &self.fill, dst)
                })?,
        }
        let [c, h, w] = data.shape;
        let images = Tensor::from_vec(vec![indices.len(), c, h, w], out)?;
        let labels = indices
            .iter()
            .map(|&i| usize::from(data.labels[i]))
            .collect();
        Ok((images, labels))
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<(Tensor, Vec<usize>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let stop = (self.pos + self.batch_size).min(self.end);
        let batch = self.assemble(&self.order[self.pos..stop]);
        self.pos = stop;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.end - self.pos).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

impl Dataset {
    /// The batches of `epoch`: size `batch_size` (last one partial), shuffled
    /// with `shuffle_seed` when given, no augmentation.
    pub fn batches(
        &self,
        batch_size: usize,
        shuffle_seed: Option<u64>,
        epoch: u64,
    ) -> Result<Batches<'_>> {
        let opts = BatchOptions {
            shuffle_seed,
            ..BatchOptions::new(batch_size)
        };
        Batches::new(self, &opts, epoch)
    }

    /// The batches of `epoch` under `opts` (drop_last, augmentation).
    pub fn batches_with(&self, opts: &BatchOptions, epoch: u64) -> Result<Batches<'_>> {
        Batches::new(self, opts, epoch)
    }
}
