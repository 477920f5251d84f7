//! In-memory datasets: decoded once to normalized `f32`, NCHW.
//!
//! Normalization, per channel `c`: `x = (p / 255 - mean[c]) / std[c]` for a
//! pixel byte `p`, with the constants of [`DatasetKind::mean`] and
//! [`DatasetKind::std`]. It is applied through a 256-entry lookup table per
//! channel, so decoding costs one table read per pixel.

use crate::cifar::{load_cifar_file, CifarRecords};
use crate::error::{DataError, Result};
use crate::idx::{load_idx_images, load_idx_labels};
use crate::kind::{DatasetKind, Split};
use crate::reader::{display_name, resolve_file};
use prune_core::Tensor;
use rayon::prelude::*;
use std::path::Path;

/// One split of a dataset, decoded and normalized, held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Which dataset this is.
    pub kind: DatasetKind,
    /// Training or test split.
    pub split: Split,
    /// Normalized pixels, `len() * C * H * W` values, NCHW.
    pub images: Vec<f32>,
    /// One label per image, each below `kind.classes()`.
    pub labels: Vec<u8>,
    /// Image shape `[C, H, W]`.
    pub shape: [usize; 3],
}

/// The 256-entry table mapping a pixel byte to its normalized value, per channel.
pub fn normalization_table(kind: DatasetKind) -> Vec<[f32; 256]> {
    kind.mean()
        .iter()
        .zip(kind.std())
        .map(|(&m, &s)| {
            let mut t = [0f32; 256];
            for (p, v) in t.iter_mut().enumerate() {
                *v = (p as f32 / 255.0 - m) / s;
            }
            t
        })
        .collect()
}

impl Dataset {
    /// Builds a dataset from raw pixel bytes (NCHW, `C*H*W` bytes per image)
    /// and labels, normalizing the pixels with the dataset's constants.
    pub fn from_bytes(
        kind: DatasetKind,
        split: Split,
        pixels: &[u8],
        labels: Vec<u8>,
    ) -> Result<Self> {
        let shape = kind.image_shape();
        let per = shape.iter().product::<usize>();
        if pixels.len() != labels.len() * per {
            return Err(DataError::InvalidArgument(format!(
                "{} {split}: {} labels need {} pixel bytes ({:?} each), got {}",
                kind.title(),
                labels.len(),
                labels.len() * per,
                shape,
                pixels.len()
            )));
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= kind.classes())
        {
            return Err(DataError::LabelOutOfRange {
                file: format!("{} {split} labels", kind.title()),
                index,
                label,
                classes: kind.classes(),
            });
        }
        let tables = normalization_table(kind);
        let plane = shape[1] * shape[2];
        let mut images = vec![0f32; pixels.len()];
        // One chunk per channel plane of one image: the table is fixed per chunk.
        images
            .par_chunks_mut(plane)
            .zip(pixels.par_chunks(plane))
            .enumerate()
            .with_min_len(64)
            .for_each(|(i, (dst, src))| {
                let table = &tables[i % shape[0]];
                for (d, &p) in dst.iter_mut().zip(src) {
                    *d = table[usize::from(p)];
                }
            });
        Ok(Dataset {
            kind,
            split,
            images,
            labels,
            shape,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image, `C * H * W`.
    pub fn example_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The normalized pixels of example `index` (CHW), or `None` past the end.
    pub fn image(&self, index: usize) -> Option<&[f32]> {
        let n = self.example_len();
        self.images.get(index * n..(index + 1) * n)
    }

    /// Checks that the public fields agree: `images` holds `len() * C*H*W`
    /// values and every label is below `kind.classes()`.
    pub fn validate(&self) -> Result<()> {
        let per = self.example_len();
        if Some(self.images.len()) != self.len().checked_mul(per) {
            return Err(DataError::InvalidArgument(format!(
                "{} {}: {} labels with images of {:?} need {} values, got {}",
                self.kind.title(),
                self.split,
                self.len(),
                self.shape,
                self.len().saturating_mul(per),
                self.images.len()
            )));
        }
        if let Some((index, &label)) = self
            .labels
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= self.kind.classes())
        {
            return Err(DataError::LabelOutOfRange {
                file: format!("{} {} labels", self.kind.title(), self.split),
                index,
                label,
                classes: self.kind.classes(),
            });
        }
        Ok(())
    }

    /// The first `n` examples (all of them when `n >= len()`), e.g. for short
    /// CI budgets. The order of the examples is kept.
    pub fn subset(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        let values = n.saturating_mul(self.example_len()).min(self.images.len());
        Dataset {
            kind: self.kind,
            split: self.split,
            images: self.images[..values].to_vec(),
            labels: self.labels[..n].to_vec(),
            shape: self.shape,
        }
    }

    /// Number of examples of each class (`kind.classes()` entries, more if a
    /// label lies beyond them).
    pub fn class_counts(&self) -> Vec<usize> {
        let top = self
            .labels
            .iter()
            .map(|&l| usize::from(l) + 1)
            .max()
            .unwrap_or(0);
        let mut counts = vec![0usize; self.kind.classes().max(top)];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    /// The whole split as one `[N, C, H, W]` tensor and its labels.
    pub fn to_tensor(&self) -> Result<(Tensor, Vec<usize>)> {
        let [c, h, w] = self.shape;
        let t = Tensor::from_vec(vec![self.len(), c, h, w], self.images.clone())?;
        Ok((t, self.labels.iter().map(|&l| usize::from(l)).collect()))
    }

    /// The normalized value of a zero pixel byte, per channel: the fill of
    /// zero padding in the raw image space (`-mean[c] / std[c]`).
    pub fn zero_pixel(&self) -> Vec<f32> {
        self.kind
            .mean()
            .iter()
            .zip(self.kind.std())
            .map(|(&m, &s)| -m / s)
            .collect()
    }
}

/// Loads one split of `kind` from the files in `dir` (raw or gzipped).
///
/// IDX datasets need `<prefix>-images-idx3-ubyte[.gz]` and
/// `<prefix>-labels-idx1-ubyte[.gz]`; the images must be 28x28 and the two files
/// must hold the same number of examples. CIFAR-10 reads `data_batch_1..5.bin`
/// (train) or `test_batch.bin` (test). Every label must be below 10 and a split
/// must not be empty.
pub fn load(kind: DatasetKind, split: Split, dir: &Path) -> Result<Dataset> {
    let files = kind.files(split);
    let paths = files
        .iter()
        .map(|name| {
            resolve_file(dir, name).ok_or_else(|| {
                DataError::NotFound(format!(
                    "{} {split}: neither {name} nor {name}.gz is in {}",
                    kind.title(),
                    dir.display()
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;

    let (pixels, labels) = if kind.is_idx() {
        let (images_path, labels_path) = (&paths[0], &paths[1]);
        let (images, labels) = rayon::join(
            || load_idx_images(images_path),
            || load_idx_labels(labels_path),
        );
        let (images, labels) = (images?, labels?);
        let [_, h, w] = kind.image_shape();
        if (images.rows, images.cols) != (h, w) {
            return Err(DataError::format(
                display_name(images_path),
                format!(
                    "images are {}x{}, {} images are {h}x{w}",
                    images.rows,
                    images.cols,
                    kind.title()
                ),
            ));
        }
        if images.count != labels.len() {
            return Err(DataError::CountMismatch {
                images_file: display_name(images_path),
                images: images.count,
                labels_file: display_name(labels_path),
                labels: labels.len(),
            });
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= kind.classes())
        {
            return Err(DataError::LabelOutOfRange {
                file: display_name(labels_path),
                index,
                label,
                classes: kind.classes(),
            });
        }
        (images.pixels, labels)
    } else {
        let parts = paths
            .par_iter()
            .map(|p| load_cifar_file(p))
            .collect::<Result<Vec<_>>>()?;
        let mut all = CifarRecords::default();
        for part in parts {
            all.extend(part);
        }
        (all.pixels, all.labels)
    };
    if labels.is_empty() {
        return Err(DataError::format(
            display_name(&paths[0]),
            format!("{} {split} split holds no examples", kind.title()),
        ));
    }
    Dataset::from_bytes(kind, split, &pixels, labels)
}
