//! IDX files (MNIST, Fashion-MNIST).
//!
//! Layout: a big-endian `u32` magic number, then one big-endian `u32` per
//! dimension, then the unsigned bytes of the array in row-major order.
//!
//! | file   | magic        | dims                 | payload bytes        |
//! |--------|--------------|----------------------|----------------------|
//! | images | 2051 (0x803) | count, rows, cols    | count * rows * cols  |
//! | labels | 2049 (0x801) | count                | count                |
//!
//! The parsers check the magic number, that the dimensions multiply without
//! overflow, and that the payload has exactly the declared length (neither
//! truncated nor followed by trailing bytes). Gzip input is decompressed on
//! the fly; memory never exceeds the bytes actually present.

use crate::error::{DataError, Result};
use crate::kind::{IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC};
use crate::reader::{display_name, maybe_gunzip, open_data_file, read_bounded};
use std::io::Read;
use std::path::Path;

/// The decoded content of an IDX image file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows of each image.
    pub rows: usize,
    /// Columns of each image.
    pub cols: usize,
    /// `count * rows * cols` pixel bytes, image after image, row-major.
    pub pixels: Vec<u8>,
}

/// Reads `N` big-endian `u32` header words. `offset` is the number of header
/// bytes already consumed and `header_len` the full header size, for the message
/// on a short read.
fn read_header<const N: usize>(
    reader: &mut dyn Read,
    offset: usize,
    header_len: usize,
    file: &str,
) -> Result<[u32; N]> {
    let mut buf = vec![0u8; 4 * N];
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(DataError::format(
                    file,
                    format!(
                    "truncated header: the data ends after {} bytes, the header needs {header_len}",
                    offset + got
                ),
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DataError::format(file, format!("read failed: {e}"))),
        }
    }
    let mut words = [0u32; N];
    for (w, chunk) in words.iter_mut().zip(buf.chunks_exact(4)) {
        *w = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    Ok(words)
}

fn check_magic(found: u32, expected: u32, file: &str) -> Result<()> {
    if found == expected {
        return Ok(());
    }
    let what = |m: u32| match m {
        IDX_IMAGES_MAGIC => " (an IDX image file)",
        IDX_LABELS_MAGIC => " (an IDX label file)",
        _ => "",
    };
    Err(DataError::format(
        file,
        format!(
            "bad magic number {found}{}: expected {expected}{}",
            what(found),
            what(expected)
        ),
    ))
}

/// Reads the payload of exactly `len` bytes, rejecting short and long streams.
fn read_payload(reader: &mut dyn Read, len: usize, what: &str, file: &str) -> Result<Vec<u8>> {
    let data = read_bounded(reader, len, file)?;
    match data.len().cmp(&len) {
        std::cmp::Ordering::Equal => Ok(data),
        std::cmp::Ordering::Less => Err(DataError::format(
            file,
            format!(
                "truncated: header declares {what} ({len} payload bytes) but only {} follow",
                data.len()
            ),
        )),
        std::cmp::Ordering::Greater => Err(DataError::format(
            file,
            format!(
                "trailing data: more than the {len} payload bytes declared by the header ({what})"
            ),
        )),
    }
}

/// Reads an IDX image file from a stream of (already decompressed) bytes.
pub fn read_idx_images(reader: &mut dyn Read, file: &str) -> Result<IdxImages> {
    let [magic] = read_header::<1>(reader, 0, 16, file)?;
    check_magic(magic, IDX_IMAGES_MAGIC, file)?;
    let [count, rows, cols] = read_header::<3>(reader, 4, 16, file)?;
    let (count, rows, cols) = (count as usize, rows as usize, cols as usize);
    let len = count
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| {
            DataError::format(
                file,
                format!("dimensions {count} x {rows} x {cols} overflow the address space"),
            )
        })?;
    let what = format!("{count} images of {rows}x{cols}");
    let pixels = read_payload(reader, len, &what, file)?;
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels,
    })
}

/// Reads an IDX label file from a stream of (already decompressed) bytes.
pub fn read_idx_labels(reader: &mut dyn Read, file: &str) -> Result<Vec<u8>> {
    let [magic] = read_header::<1>(reader, 0, 8, file)?;
    check_magic(magic, IDX_LABELS_MAGIC, file)?;
    let [count] = read_header::<1>(reader, 4, 8, file)?;
    let what = format!("{count} labels");
    read_payload(reader, count as usize, &what, file)
}

/// Parses an IDX image file held in memory, raw or gzip-compressed.
pub fn parse_idx_images(bytes: &[u8], file: &str) -> Result<IdxImages> {
    let mut r = maybe_gunzip(bytes).map_err(|e| DataError::format(file, e.to_string()))?;
    read_idx_images(&mut r, file)
}

/// Parses an IDX label file held in memory, raw or gzip-compressed.
pub fn parse_idx_labels(bytes: &[u8], file: &str) -> Result<Vec<u8>> {
    let mut r = maybe_gunzip(bytes).map_err(|e| DataError::format(file, e.to_string()))?;
    read_idx_labels(&mut r, file)
}

/// Reads an IDX image file from disk, raw or gzip-compressed.
pub fn load_idx_images(path: &Path) -> Result<IdxImages> {
    let mut r = open_data_file(path)?;
    read_idx_images(&mut r, &display_name(path))
}

/// Reads an IDX label file from disk, raw or gzip-compressed.
pub fn load_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let mut r = open_data_file(path)?;
    read_idx_labels(&mut r, &display_name(path))
}

/// Encodes an IDX image file (raw bytes). The inverse of [`parse_idx_images`];
/// used to write subsets and test fixtures.
pub fn encode_idx_images(images: &IdxImages) -> Result<Vec<u8>> {
    let dims = [images.count, images.rows, images.cols];
    let expected = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if expected != Some(images.pixels.len()) {
        return Err(DataError::InvalidArgument(format!(
            "IDX images {}x{}x{} need {:?} pixel bytes, got {}",
            images.count,
            images.rows,
            images.cols,
            expected,
            images.pixels.len()
        )));
    }
    let mut out = Vec::with_capacity(16 + images.pixels.len());
    out.extend_from_slice(&IDX_IMAGES_MAGIC.to_be_bytes());
    for d in dims {
        let d = u32::try_from(d).map_err(|_| {
            DataError::InvalidArgument(format!("IDX dimension {d} does not fit in a u32"))
        })?;
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(&images.pixels);
    Ok(out)
}

/// Encodes an IDX label file (raw bytes). The inverse of [`parse_idx_labels`].
pub fn encode_idx_labels(labels: &[u8]) -> Result<Vec<u8>> {
    let count = u32::try_from(labels.len()).map_err(|_| {
        DataError::InvalidArgument(format!("{} labels do not fit in an IDX file", labels.len()))
    })?;
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&IDX_LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(labels);
    Ok(out)
}
