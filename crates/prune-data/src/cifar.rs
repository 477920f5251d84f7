//! CIFAR-10 binary batches.
//!
//! Each file is a sequence of fixed-size records of [`CIFAR_RECORD_BYTES`] bytes:
//! one label byte (0..=9) followed by 3072 pixel bytes, the 1024 red values of
//! the 32x32 image in row-major order, then the 1024 green, then the 1024 blue.
//! That is already CHW order, so a record's pixels are copied as they are.
//! The distributed files hold 10,000 records each.

use crate::error::{DataError, Result};
use crate::reader::{display_name, open_data_file};
use std::io::Read;
use std::path::Path;

/// Pixel bytes of one CIFAR-10 image: 3 channels of 32x32.
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;
/// Bytes of one record: a label byte and the image.
pub const CIFAR_RECORD_BYTES: usize = 1 + CIFAR_IMAGE_BYTES;
/// Number of classes of CIFAR-10.
pub const CIFAR_CLASSES: usize = 10;

/// The decoded records of one or more CIFAR-10 batch files.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CifarRecords {
    /// One label per record, each below [`CIFAR_CLASSES`].
    pub labels: Vec<u8>,
    /// `labels.len() * 3072` pixel bytes, CHW per image.
    pub pixels: Vec<u8>,
}

impl CifarRecords {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Appends the records of `other`.
    pub fn extend(&mut self, other: CifarRecords) {
        self.labels.extend_from_slice(&other.labels);
        self.pixels.extend_from_slice(&other.pixels);
    }
}

/// Parses one CIFAR-10 batch file held in memory (uncompressed bytes).
///
/// Fails when the length is zero or not a multiple of [`CIFAR_RECORD_BYTES`], or
/// when a label is outside `0..10`.
pub fn parse_cifar(bytes: &[u8], file: &str) -> Result<CifarRecords> {
    if bytes.is_empty() {
        return Err(DataError::format(file, "empty file: no CIFAR-10 records"));
    }
    if !bytes.len().is_multiple_of(CIFAR_RECORD_BYTES) {
        return Err(DataError::format(
            file,
            format!(
                "length {} is not a multiple of the {CIFAR_RECORD_BYTES}-byte record \
                 ({} whole records and {} stray bytes): truncated or not a CIFAR-10 batch",
                bytes.len(),
                bytes.len() / CIFAR_RECORD_BYTES,
                bytes.len() % CIFAR_RECORD_BYTES
            ),
        ));
    }
    let n = bytes.len() / CIFAR_RECORD_BYTES;
    let mut out = CifarRecords {
        labels: Vec::with_capacity(n),
        pixels: Vec::with_capacity(n * CIFAR_IMAGE_BYTES),
    };
    for (index, record) in bytes.chunks_exact(CIFAR_RECORD_BYTES).enumerate() {
        let label = record[0];
        if usize::from(label) >= CIFAR_CLASSES {
            return Err(DataError::LabelOutOfRange {
                file: file.to_string(),
                index,
                label,
                classes: CIFAR_CLASSES,
            });
        }
        out.labels.push(label);
        out.pixels.extend_from_slice(&record[1..]);
    }
    Ok(out)
}

/// Reads one CIFAR-10 batch file from disk (raw, or gzip-compressed).
pub fn load_cifar_file(path: &Path) -> Result<CifarRecords> {
    let mut reader = open_data_file(path)?;
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| DataError::format(display_name(path), format!("read failed: {e}")))?;
    parse_cifar(&bytes, &display_name(path))
}

/// Encodes records as a CIFAR-10 batch file. The inverse of [`parse_cifar`].
pub fn encode_cifar(records: &CifarRecords) -> Result<Vec<u8>> {
    if records.pixels.len() != records.labels.len() * CIFAR_IMAGE_BYTES {
        return Err(DataError::InvalidArgument(format!(
            "{} CIFAR-10 labels need {} pixel bytes, got {}",
            records.labels.len(),
            records.labels.len() * CIFAR_IMAGE_BYTES,
            records.pixels.len()
        )));
    }
    let mut out = Vec::with_capacity(records.len() * CIFAR_RECORD_BYTES);
    for (label, image) in records
        .labels
        .iter()
        .zip(records.pixels.chunks_exact(CIFAR_IMAGE_BYTES))
    {
        out.push(*label);
        out.extend_from_slice(image);
    }
    Ok(out)
}
