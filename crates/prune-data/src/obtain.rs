//! Locate a dataset, downloading it into the cache when it is nowhere on disk.

use crate::dataset::{load, Dataset};
use crate::download::download;
use crate::error::{DataError, Result};
use crate::kind::{DatasetKind, Split};
use crate::locate::{locate_in, SearchPaths};
use std::path::{Path, PathBuf};

/// Loads both splits of `kind` from `dir`, in parallel.
pub fn load_splits(kind: DatasetKind, dir: &Path) -> Result<(Dataset, Dataset)> {
    let (train, test) = rayon::join(
        || load(kind, Split::Train, dir),
        || load(kind, Split::Test, dir),
    );
    Ok((train?, test?))
}

/// Loads `(train, test, folder used)` for `kind`, searching like
/// [`crate::locate()`]; when the dataset is found nowhere and no explicit folder
/// was given, downloads it into the cache from its public mirrors first.
pub fn load_or_download(
    kind: DatasetKind,
    explicit: Option<&Path>,
) -> Result<(Dataset, Dataset, PathBuf)> {
    load_or_download_in(kind, explicit, &SearchPaths::from_env(), kind.mirrors())
}

/// [`load_or_download`] with explicit search paths and mirror base URLs.
///
/// An explicit folder that lacks the dataset is an error (nothing is
/// downloaded into it). Mirrors are tried in order; files a failed mirror
/// already delivered (and verified) are kept. When every mirror fails, the
/// error says where to put the files by hand and what each mirror answered.
pub fn load_or_download_in(
    kind: DatasetKind,
    explicit: Option<&Path>,
    paths: &SearchPaths,
    mirrors: &[&str],
) -> Result<(Dataset, Dataset, PathBuf)> {
    let help = match locate_in(kind, explicit, paths) {
        Ok(dir) => {
            let (train, test) = load_splits(kind, &dir)?;
            return Ok((train, test, dir));
        }
        Err(DataError::NotFound(help)) if explicit.is_none() => help,
        Err(e) => return Err(e),
    };
    let Some(cache) = paths.cache_dir(kind) else {
        return Err(DataError::NotFound(format!(
            "{help} No cache folder to download into (set XDG_CACHE_HOME or HOME)."
        )));
    };
    let mut failures = Vec::new();
    for mirror in mirrors {
        match download(kind, mirror, &cache) {
            Ok(()) => {
                let (train, test) = load_splits(kind, &cache)?;
                return Ok((train, test, cache));
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(DataError::NotFound(format!(
        "{help} Downloading into {} failed: {}",
        cache.display(),
        if failures.is_empty() {
            "no mirror to try".to_string()
        } else {
            failures.join("; ")
        }
    )))
}
