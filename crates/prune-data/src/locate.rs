//! Finding a dataset on disk.
//!
//! Search order for dataset `d` (folder name `d.name()`):
//!
//! 1. an explicit directory (the CLI's `--data DIR`): `DIR` itself or `DIR/<d>`;
//!    when given, nothing else is searched;
//! 2. `$PRUNE_NN_DATA/<d>`;
//! 3. the cache, `$XDG_CACHE_HOME/prune-nn/<d>` or `~/.cache/prune-nn/<d>`;
//! 4. for Fashion-MNIST, `/usr/share/datasets/fashion-mnist` (Debian's package
//!    `dataset-fashion-mnist`).
//!
//! For CIFAR-10 each candidate may also hold the batches in the archive's
//! `cifar-10-batches-bin/` folder. A candidate counts when every file of both
//! splits is there (raw or `.gz`).

use crate::error::{DataError, Result};
use crate::kind::{DatasetKind, CIFAR10_ARCHIVE, CIFAR10_ARCHIVE_DIR};
use crate::reader::resolve_file;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Environment variable naming a folder with one sub-folder per dataset.
pub const DATA_ENV: &str = "PRUNE_NN_DATA";
/// Where Debian's `dataset-fashion-mnist` package installs its files.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// The places searched after an explicit directory. [`SearchPaths::from_env`]
/// reads them from the process environment; tests build them directly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SearchPaths {
    /// Value of `$PRUNE_NN_DATA`.
    pub data_env: Option<PathBuf>,
    /// Cache root, `.../prune-nn` (datasets live in sub-folders).
    pub cache_root: Option<PathBuf>,
    /// System folder with Fashion-MNIST.
    pub system_fashion_mnist: Option<PathBuf>,
}

/// The cache root for the given `$XDG_CACHE_HOME` and `$HOME` values:
/// `$XDG_CACHE_HOME/prune-nn` when that is set to an absolute path (the XDG
/// spec says to ignore relative ones), else `$HOME/.cache/prune-nn`.
pub fn cache_root_from(
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    let xdg = xdg_cache_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    match xdg {
        Some(p) => Some(p.join("prune-nn")),
        None => home
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".cache").join("prune-nn")),
    }
}

impl SearchPaths {
    /// Reads `PRUNE_NN_DATA`, `XDG_CACHE_HOME` and `HOME`.
    pub fn from_env() -> Self {
        SearchPaths {
            data_env: std::env::var_os(DATA_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            cache_root: cache_root_from(
                std::env::var_os("XDG_CACHE_HOME"),
                std::env::var_os("HOME"),
            ),
            system_fashion_mnist: Some(PathBuf::from(DEBIAN_FASHION_MNIST)),
        }
    }

    /// The cache folder of `kind`, where downloads go.
    pub fn cache_dir(&self, kind: DatasetKind) -> Option<PathBuf> {
        self.cache_root.as_ref().map(|r| r.join(kind.name()))
    }
}

/// Files of `kind` (both splits) missing from `dir`, neither raw nor `.gz`.
pub fn missing_files(kind: DatasetKind, dir: &Path) -> Vec<&'static str> {
    kind.all_files()
        .into_iter()
        .filter(|f| resolve_file(dir, f).is_none())
        .collect()
}

/// `dir` and, for CIFAR-10, its archive sub-folder.
fn expand(kind: DatasetKind, dir: PathBuf) -> Vec<PathBuf> {
    if kind == DatasetKind::Cifar10 {
        let sub = dir.join(CIFAR10_ARCHIVE_DIR);
        vec![dir, sub]
    } else {
        vec![dir]
    }
}

/// Candidate folders in search order, excluding an explicit one.
fn implicit_candidates(kind: DatasetKind, paths: &SearchPaths) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(env) = &paths.data_env {
        out.extend(expand(kind, env.join(kind.name())));
    }
    if let Some(cache) = paths.cache_dir(kind) {
        out.extend(expand(kind, cache));
    }
    if kind == DatasetKind::FashionMnist {
        if let Some(sys) = &paths.system_fashion_mnist {
            out.push(sys.clone());
        }
    }
    out
}

/// Finds the folder holding `kind`, searching `explicit` only when given,
/// else the places of `paths` in order.
pub fn locate_in(
    kind: DatasetKind,
    explicit: Option<&Path>,
    paths: &SearchPaths,
) -> Result<PathBuf> {
    let candidates = match explicit {
        Some(dir) => {
            let mut c = expand(kind, dir.to_path_buf());
            c.extend(expand(kind, dir.join(kind.name())));
            c
        }
        None => implicit_candidates(kind, paths),
    };
    if let Some(found) = candidates
        .iter()
        .find(|d| missing_files(kind, d).is_empty())
    {
        return Ok(found.clone());
    }
    Err(DataError::NotFound(not_found_message(
        kind,
        explicit,
        &candidates,
        paths,
    )))
}

/// Finds the folder holding `kind` using the process environment.
pub fn locate(kind: DatasetKind, explicit: Option<&Path>) -> Result<PathBuf> {
    locate_in(kind, explicit, &SearchPaths::from_env())
}

/// Why `dir` cannot be searched, when the reason is not simply that it is
/// absent: a folder that exists but may not be read is not "missing".
fn access_problem(dir: &Path) -> Option<String> {
    let denied = |e: &std::io::Error| e.kind() == std::io::ErrorKind::PermissionDenied;
    match std::fs::metadata(dir) {
        Err(e) if denied(&e) => Some(format!(
            "{}: permission denied (a parent folder may not be entered)",
            dir.display()
        )),
        Err(_) => None,
        Ok(m) if !m.is_dir() => Some(format!("{}: not a folder", dir.display())),
        Ok(_) => match std::fs::read_dir(dir) {
            Err(e) if denied(&e) => Some(format!(
                "{}: permission denied (the folder exists but may not be read)",
                dir.display()
            )),
            _ => None,
        },
    }
}

/// The message of a failed search: what was searched, which files are needed,
/// where to put them.
pub fn not_found_message(
    kind: DatasetKind,
    explicit: Option<&Path>,
    searched: &[PathBuf],
    paths: &SearchPaths,
) -> String {
    let mut msg = format!("{} not found.", kind.title());
    let mut problems: Vec<String> = Vec::new();
    for p in explicit
        .into_iter()
        .chain(searched.iter().map(PathBuf::as_path))
        .filter_map(access_problem)
    {
        if !problems.contains(&p) {
            problems.push(p);
        }
    }
    if !problems.is_empty() {
        msg += &format!(" Not readable: {}.", problems.join("; "));
    }
    if let Some(dir) = explicit {
        if access_problem(dir).is_none() {
            msg += &format!(" The --data folder {} does not hold it", dir.display());
            let missing = missing_files(kind, dir);
            msg += &format!(" (missing: {}).", missing.join(", "));
        }
    }
    if searched.is_empty() {
        msg +=
            " No folder to search: PRUNE_NN_DATA is unset and neither XDG_CACHE_HOME nor HOME is.";
    } else {
        let list: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
        msg += &format!(" Searched: {}.", list.join(", "));
    }
    let files: Vec<String> = kind
        .all_files()
        .iter()
        .map(|f| {
            if kind.is_idx() {
                format!("{f}.gz")
            } else {
                f.to_string()
            }
        })
        .collect();
    msg += &format!(
        " Needed files ({}): {}.",
        if kind.is_idx() {
            "gzipped or not"
        } else {
            "raw"
        },
        files.join(", ")
    );
    let cache = paths
        .cache_dir(kind)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("~/.cache/prune-nn/{}", kind.name()));
    msg += &format!(
        " Put them in a folder given with --data DIR, or in $DIR/{name}/ with {DATA_ENV}=$DIR, or in {cache}/.",
        name = kind.name()
    );
    match kind {
        DatasetKind::FashionMnist => {
            msg += &format!(
                " On Debian/Ubuntu, `apt-get install dataset-fashion-mnist` installs them in {DEBIAN_FASHION_MNIST}."
            );
        }
        DatasetKind::Cifar10 => {
            msg += &format!(
                " They are the contents of {CIFAR10_ARCHIVE} ({}{CIFAR10_ARCHIVE}), folder {CIFAR10_ARCHIVE_DIR}/.",
                kind.mirrors()[0]
            );
        }
        DatasetKind::Mnist => {}
    }
    msg += &format!(" Download mirrors: {}.", kind.mirrors().join(", "));
    msg
}
