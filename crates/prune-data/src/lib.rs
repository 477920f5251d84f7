//! `prune-data`: MNIST, Fashion-MNIST and CIFAR-10 for prune-nn.
//!
//! * [`DatasetKind`], [`Split`] — which data; names, shapes, normalization constants.
//! * [`idx`], [`cifar`] — strict parsers of the distributed file formats
//!   (gzipped or raw); corrupt, truncated or mismatched files are errors that
//!   name the file and the problem.
//! * [`Dataset`] / [`load`] — one split decoded once to normalized `f32` NCHW.
//! * [`Batches`] — seeded per-epoch shuffling, fixed-size batches as
//!   `(Tensor [B, C, H, W], Vec<usize>)`, optional crop/flip augmentation.
//! * [`locate()`], [`download()`], [`load_or_download`] — discovery (`--data DIR`,
//!   `$PRUNE_NN_DATA/<name>`, `~/.cache/prune-nn/<name>`, Debian's
//!   Fashion-MNIST package) and verified downloads into the cache.

pub mod augment;
pub mod batch;
pub mod cifar;
pub mod dataset;
pub mod download;
pub mod error;
pub mod idx;
pub mod kind;
pub mod locate;
pub mod obtain;
pub mod reader;

pub use augment::{crop_flip_into, Augment, CropFlip};
pub use batch::{epoch_order, BatchOptions, Batches};
pub use dataset::{load, Dataset};
pub use download::{download, download_file, extract_cifar_archive, sha256_file, verify_checksums};
pub use error::{DataError, Result};
pub use kind::{DatasetKind, Split};
pub use locate::{locate, locate_in, SearchPaths, DATA_ENV};
pub use obtain::{load_or_download, load_or_download_in, load_splits};
