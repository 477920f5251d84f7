//! Dataset identities: names, file layouts, image shapes, normalization constants,
//! published checksums and download mirrors.

use crate::error::DataError;
use std::fmt;
use std::str::FromStr;

/// The datasets this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// MNIST handwritten digits: 60,000 + 10,000 grey 28x28 images, 10 classes.
    Mnist,
    /// Fashion-MNIST (Zalando): same layout as MNIST, clothing articles.
    FashionMnist,
    /// CIFAR-10: 50,000 + 10,000 RGB 32x32 images, 10 classes.
    Cifar10,
}

/// Training or test part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

/// IDX magic number of an unsigned-byte, 3-dimensional array (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic number of an unsigned-byte, 1-dimensional array (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// File name of the CIFAR-10 binary archive on its authors' server.
pub const CIFAR10_ARCHIVE: &str = "cifar-10-binary.tar.gz";
/// SHA-256 of [`CIFAR10_ARCHIVE`] (170,052,171 bytes; MD5 c32a1d4ab5d03f1284b67883e8d87530
/// as published by the dataset's authors).
pub const CIFAR10_ARCHIVE_SHA256: &str =
    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd";
/// Folder inside [`CIFAR10_ARCHIVE`] that holds the batches.
pub const CIFAR10_ARCHIVE_DIR: &str = "cifar-10-batches-bin";

const MNIST_SHA256: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
];

const FASHION_MNIST_SHA256: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    ),
];

const IDX_TRAIN: [&str; 2] = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"];
const IDX_TEST: [&str; 2] = ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];
const CIFAR_TRAIN: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const CIFAR_TEST: [&str; 1] = ["test_batch.bin"];

impl DatasetKind {
    /// Every dataset, in a fixed order.
    pub const ALL: [DatasetKind; 3] = [
        DatasetKind::Mnist,
        DatasetKind::FashionMnist,
        DatasetKind::Cifar10,
    ];

    /// Short name, also the folder name under `$PRUNE_NN_DATA` and the cache:
    /// `mnist`, `fashion-mnist`, `cifar10`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Cifar10 => "cifar10",
        }
    }

    /// Human-readable name for messages.
    pub fn title(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "MNIST",
            DatasetKind::FashionMnist => "Fashion-MNIST",
            DatasetKind::Cifar10 => "CIFAR-10",
        }
    }

    /// Image shape `[C, H, W]`.
    pub fn image_shape(self) -> [usize; 3] {
        match self {
            DatasetKind::Mnist | DatasetKind::FashionMnist => [1, 28, 28],
            DatasetKind::Cifar10 => [3, 32, 32],
        }
    }

    /// Number of classes (labels lie in `0..classes`).
    pub fn classes(self) -> usize {
        10
    }

    /// Per-channel mean of the pixel values scaled to `[0, 1]`, over the training set.
    pub fn mean(self) -> &'static [f32] {
        match self {
            DatasetKind::Mnist => &[0.1307],
            DatasetKind::FashionMnist => &[0.2860],
            DatasetKind::Cifar10 => &[0.4914, 0.4822, 0.4465],
        }
    }

    /// Per-channel standard deviation of the pixel values scaled to `[0, 1]`.
    pub fn std(self) -> &'static [f32] {
        match self {
            DatasetKind::Mnist => &[0.3081],
            DatasetKind::FashionMnist => &[0.3530],
            DatasetKind::Cifar10 => &[0.2470, 0.2435, 0.2616],
        }
    }

    /// Whether the files are IDX (MNIST family) rather than CIFAR binary batches.
    pub fn is_idx(self) -> bool {
        !matches!(self, DatasetKind::Cifar10)
    }

    /// File names of one split, without a `.gz` suffix.
    ///
    /// IDX datasets: `[images, labels]`. CIFAR-10: the batch files, in the order
    /// their records are concatenated.
    pub fn files(self, split: Split) -> &'static [&'static str] {
        match (self.is_idx(), split) {
            (true, Split::Train) => &IDX_TRAIN,
            (true, Split::Test) => &IDX_TEST,
            (false, Split::Train) => &CIFAR_TRAIN,
            (false, Split::Test) => &CIFAR_TEST,
        }
    }

    /// All files of both splits.
    pub fn all_files(self) -> Vec<&'static str> {
        let mut v = self.files(Split::Train).to_vec();
        v.extend_from_slice(self.files(Split::Test));
        v
    }

    /// Published SHA-256 of each distributed file (`name.gz` for the IDX datasets).
    /// CIFAR-10 is distributed as one archive; see [`CIFAR10_ARCHIVE_SHA256`].
    pub fn known_sha256(self) -> &'static [(&'static str, &'static str)] {
        match self {
            DatasetKind::Mnist => &MNIST_SHA256,
            DatasetKind::FashionMnist => &FASHION_MNIST_SHA256,
            DatasetKind::Cifar10 => &[],
        }
    }

    /// Public mirrors, tried in order; each is a base URL ending in `/`.
    pub fn mirrors(self) -> &'static [&'static str] {
        match self {
            DatasetKind::Mnist => &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ],
            DatasetKind::FashionMnist => {
                &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
            }
            DatasetKind::Cifar10 => &["https://www.cs.toronto.edu/~kriz/"],
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DatasetKind {
    type Err = DataError;

    /// Parses `mnist`, `fashion-mnist` (also `fashion_mnist`, `fmnist`) and
    /// `cifar10` (also `cifar-10`), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mnist" => Ok(DatasetKind::Mnist),
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" | "fmnist" => {
                Ok(DatasetKind::FashionMnist)
            }
            "cifar10" | "cifar-10" | "cifar_10" => Ok(DatasetKind::Cifar10),
            _ => Err(DataError::UnknownDataset(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str() {
        for kind in DatasetKind::ALL {
            assert_eq!(kind.name().parse::<DatasetKind>().unwrap(), kind);
            assert_eq!(kind.to_string().parse::<DatasetKind>().unwrap(), kind);
        }
        assert_eq!(
            "Fashion-MNIST".parse::<DatasetKind>().unwrap(),
            DatasetKind::FashionMnist
        );
        let err = "imagenet".parse::<DatasetKind>().unwrap_err();
        assert!(err.to_string().contains("imagenet"), "{err}");
    }

    #[test]
    fn constants_are_consistent() {
        for kind in DatasetKind::ALL {
            let c = kind.image_shape()[0];
            assert_eq!(kind.mean().len(), c);
            assert_eq!(kind.std().len(), c);
            assert!(kind.std().iter().all(|&s| s > 0.0));
            for (name, sha) in kind.known_sha256() {
                assert_eq!(sha.len(), 64, "{name}");
                assert!(sha.bytes().all(|b| b.is_ascii_hexdigit()));
                let stem = name.strip_suffix(".gz").unwrap();
                assert!(kind.all_files().contains(&stem), "{name}");
            }
            assert!(kind.mirrors().iter().all(|m| m.ends_with('/')));
        }
        assert_eq!(DatasetKind::Cifar10.all_files().len(), 6);
    }
}
