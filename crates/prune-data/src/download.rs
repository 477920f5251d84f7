//! Downloads with SHA-256 verification and atomic placement.
//!
//! A file is streamed into a temporary file in the destination folder while
//! its SHA-256 is computed; only when the body is complete (as long as the
//! `Content-Length` header says) and the digest matches is the temporary file
//! renamed onto the destination. On any failure the temporary file is removed,
//! so the destination either holds a verified file or nothing new.

use crate::cifar::{parse_cifar, CIFAR_RECORD_BYTES};
use crate::error::{DataError, Result};
use crate::kind::{DatasetKind, CIFAR10_ARCHIVE, CIFAR10_ARCHIVE_SHA256};
use crate::reader::{display_name, read_bounded};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

/// Time allowed to open a TCP connection (includes DNS resolution).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for any single read of the response to make progress.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Records in each distributed CIFAR-10 batch file.
const CIFAR_RECORDS_PER_FILE: usize = 10_000;

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_TIMEOUT)
        .timeout_read(READ_TIMEOUT)
        .timeout_write(READ_TIMEOUT)
        .build()
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex SHA-256 of the file at `path`.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Checks the published SHA-256 of every distributed file of `kind` in `dir`
/// (the `.gz` files of MNIST and Fashion-MNIST). Fails on a missing file or a
/// mismatch. CIFAR-10 has no per-file digests (its archive is checked on download).
pub fn verify_checksums(kind: DatasetKind, dir: &Path) -> Result<()> {
    for (name, expected) in kind.known_sha256() {
        let path = dir.join(name);
        let actual = sha256_file(&path)?;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(DataError::Checksum {
                file: display_name(&path),
                expected: expected.to_string(),
                actual,
            });
        }
    }
    Ok(())
}

/// Creates a temporary file next to `dest` (same folder, so the final rename
/// is atomic). It is deleted when dropped without being persisted.
fn temp_beside(dest: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let stem = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    tempfile::Builder::new()
        .prefix(&format!(".{stem}."))
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(|e| DataError::io(dir, e))
}

/// Moves a complete temporary file onto `dest`.
fn persist(tmp: tempfile::NamedTempFile, dest: &Path) -> Result<()> {
    tmp.as_file()
        .sync_all()
        .map_err(|e| DataError::io(tmp.path(), e))?;
    tmp.persist(dest)
        .map_err(|e| DataError::io(dest, e.error))?;
    Ok(())
}

/// Downloads `url` to `dest`, verifying its SHA-256 (hex, either case).
///
/// Skips the transfer when `dest` already holds a file with that digest.
/// Fails on a connection error or timeout, a non-2xx status, a body shorter or
/// longer than its `Content-Length`, or a digest mismatch; in every failure
/// case nothing is left at `dest` that was not there before.
pub fn download_file(url: &str, dest: &Path, sha256: &str) -> Result<()> {
    if dest.is_file() && sha256_file(dest)?.eq_ignore_ascii_case(sha256) {
        return Ok(());
    }
    let fail = |reason: String| DataError::Download {
        url: url.to_string(),
        reason,
    };
    let response = agent().get(url).call().map_err(|e| match e {
        ureq::Error::Status(code, r) => fail(format!("HTTP status {code} {}", r.status_text())),
        ureq::Error::Transport(t) => {
            // ureq prefixes the URL, which the error already names.
            let text = t.to_string();
            let prefix = format!("{url}: ");
            fail(text.strip_prefix(&prefix).unwrap_or(&text).to_string())
        }
    })?;
    let declared = response
        .header("Content-Length")
        .and_then(|v| v.trim().parse::<u64>().ok());

    let mut tmp = temp_beside(dest)?;
    let mut body = response.into_reader();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut received: u64 = 0;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(fail(format!(
                    "body failed after {received} bytes{}: {e}",
                    declared.map(|d| format!(" of {d}")).unwrap_or_default()
                )))
            }
        };
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n])
            .map_err(|e| DataError::io(tmp.path(), e))?;
        received += n as u64;
    }
    if let Some(d) = declared {
        if received != d {
            return Err(fail(format!(
                "body has {received} bytes, Content-Length says {d}"
            )));
        }
    }
    let actual = hex(&hasher.finalize());
    if !actual.eq_ignore_ascii_case(sha256) {
        return Err(DataError::Checksum {
            file: url.to_string(),
            expected: sha256.to_string(),
            actual,
        });
    }
    persist(tmp, dest)
}

/// `base` with exactly one trailing slash, then `name`.
fn join_url(base: &str, name: &str) -> String {
    format!("{}/{name}", base.trim_end_matches('/'))
}

/// Downloads every file of `kind` from the mirror `base_url` into `dest_dir`.
///
/// MNIST and Fashion-MNIST: the four `.gz` files, each checked against its
/// published SHA-256. CIFAR-10: `cifar-10-binary.tar.gz`, checked, then its six
/// batch files are extracted into `dest_dir` and the archive is removed.
pub fn download(kind: DatasetKind, base_url: &str, dest_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dest_dir).map_err(|e| DataError::io(dest_dir, e))?;
    if kind.is_idx() {
        for (name, sha) in kind.known_sha256() {
            download_file(&join_url(base_url, name), &dest_dir.join(name), sha)?;
        }
        return Ok(());
    }
    let archive = dest_dir.join(CIFAR10_ARCHIVE);
    download_file(
        &join_url(base_url, CIFAR10_ARCHIVE),
        &archive,
        CIFAR10_ARCHIVE_SHA256,
    )?;
    extract_cifar_archive(&archive, dest_dir)?;
    std::fs::remove_file(&archive).map_err(|e| DataError::io(&archive, e))
}

/// Extracts the six CIFAR-10 batch files from a `.tar.gz` archive into
/// `dest_dir` (flat, without the archive's folder), each validated as a CIFAR-10
/// batch and placed atomically. Other members are ignored; links, duplicates
/// and missing batches are errors.
pub fn extract_cifar_archive(archive: &Path, dest_dir: &Path) -> Result<()> {
    let name = display_name(archive);
    let file = File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let wanted: BTreeSet<&str> = DatasetKind::Cifar10.all_files().into_iter().collect();
    let mut found = BTreeSet::new();
    let bad = |e: std::io::Error| DataError::format(&name, format!("bad archive: {e}"));
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let Some(member) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| wanted.get(n).copied())
        else {
            continue;
        };
        let label = format!("{name}:{}", path.display());
        if !entry.header().entry_type().is_file() {
            return Err(DataError::format(label, "not a regular file"));
        }
        if !found.insert(member) {
            return Err(DataError::format(label, "appears twice in the archive"));
        }
        let limit = CIFAR_RECORDS_PER_FILE * CIFAR_RECORD_BYTES;
        let bytes = read_bounded(&mut entry, limit, &label)?;
        if bytes.len() > limit {
            return Err(DataError::format(
                label,
                format!("larger than {limit} bytes ({CIFAR_RECORDS_PER_FILE} records)"),
            ));
        }
        parse_cifar(&bytes, &label)?;
        let dest = dest_dir.join(member);
        let mut tmp = temp_beside(&dest)?;
        tmp.write_all(&bytes)
            .map_err(|e| DataError::io(tmp.path(), e))?;
        persist(tmp, &dest)?;
    }
    let missing: Vec<&str> = wanted.difference(&found).copied().collect();
    if !missing.is_empty() {
        return Err(DataError::format(
            name,
            format!("archive lacks {}", missing.join(", ")),
        ));
    }
    Ok(())
}
