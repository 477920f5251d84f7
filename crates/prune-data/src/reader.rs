//! Opening data files that may or may not be gzip-compressed.
//!
//! Compression is detected from the content (the gzip magic bytes `1f 8b`),
//! not from the file name, so a raw file named `*.gz` or a gzipped file
//! without the suffix both read correctly.

use crate::error::{DataError, Result};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

/// The two magic bytes that open every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Wraps `reader` in a gzip decoder when its first two bytes are the gzip magic.
///
/// The peeked bytes are put back in front of the stream, so the returned reader
/// yields the decompressed content (or the raw content) from its start.
pub fn maybe_gunzip<'a, R: Read + 'a>(mut reader: R) -> std::io::Result<Box<dyn Read + 'a>> {
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < head.len() {
        match reader.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let rejoined = Cursor::new(head[..got].to_vec()).chain(reader);
    if got == 2 && head == GZIP_MAGIC {
        Ok(Box::new(MultiGzDecoder::new(rejoined)))
    } else {
        Ok(Box::new(rejoined))
    }
}

/// Opens `path` for reading, decompressing gzip content transparently.
pub fn open_data_file(path: &Path) -> Result<Box<dyn Read>> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    maybe_gunzip(BufReader::with_capacity(1 << 16, file)).map_err(|e| DataError::io(path, e))
}

/// Finds `name` or `name.gz` in `dir` (the uncompressed file first).
pub fn resolve_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let raw = dir.join(name);
    if raw.is_file() {
        return Some(raw);
    }
    let gz = dir.join(format!("{name}.gz"));
    gz.is_file().then_some(gz)
}

/// Reads `reader` to its end but never more than `limit + 1` bytes, so a stream
/// longer than expected is detected without buffering all of it.
///
/// Memory grows with the bytes actually read, not with `limit`, so a header
/// that claims an enormous payload cannot force a huge allocation.
pub fn read_bounded(reader: &mut dyn Read, limit: usize, file: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(limit.min(1 << 24));
    let cap = (limit as u64).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| DataError::format(file, format!("read failed: {e}")))?;
    Ok(out)
}

/// Display name of a path for error messages (the full path).
pub fn display_name(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    #[test]
    fn raw_and_gzip_read_back_identically() {
        let payload: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(&payload).unwrap();
        let gz = enc.finish().unwrap();

        for bytes in [&payload[..], &gz[..]] {
            let mut r = maybe_gunzip(bytes).unwrap();
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, payload);
        }
    }

    #[test]
    fn short_inputs_pass_through() {
        for bytes in [&[][..], &[0x1f][..], &[7u8, 8][..]] {
            let mut r = maybe_gunzip(bytes).unwrap();
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, bytes);
        }
    }

    #[test]
    fn read_bounded_stops_after_limit_plus_one() {
        let data = [1u8; 100];
        let out = read_bounded(&mut &data[..], 10, "x").unwrap();
        assert_eq!(out.len(), 11);
        let out = read_bounded(&mut &data[..], 1000, "x").unwrap();
        assert_eq!(out.len(), 100);
    }
}
