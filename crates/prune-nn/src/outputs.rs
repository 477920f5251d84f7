//! Output directories: no command replaces what it reads or silently
//! overwrites an earlier run, and every directory holding a model says which
//! dataset it belongs to, so `prune-nn eval --model DIR` needs no flags.

use crate::error::{Error, Result};
use crate::run::{read_json, write_json, REPORT_FILE};
use prune_graph::io::MODEL_FILE;
use std::path::{Path, PathBuf};

/// Files whose presence makes a directory an earlier run.
const RUN_FILES: [&str; 5] = [
    MODEL_FILE,
    prune_graph::io::WEIGHTS_FILE,
    REPORT_FILE,
    "metrics.jsonl",
    "checkpoint",
];

/// `path` made absolute and free of `.`/`..` and symlinks as far as it exists.
fn canonical(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    // Canonicalize the longest existing prefix, keep the rest as written.
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            return rest.iter().rev().fold(c, |p: PathBuf, r| p.join(r));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return abs,
        }
    }
}

/// Checks that a command may write its run into `out`.
///
/// * `out` must not be, or contain, a directory the command reads
///   (`reads`): the input would be replaced while it is still the only copy.
///   `--force` does not lift this.
/// * `out` must not already hold a run (a model, report, metrics or
///   checkpoint) unless `force` is set; a training run continues an existing
///   directory with `--resume` instead.
pub fn check_output_dir(out: &Path, reads: &[&Path], force: bool) -> Result<()> {
    let o = canonical(out);
    for r in reads {
        let r_abs = canonical(r);
        if r_abs == o || r_abs.starts_with(&o) {
            return Err(Error::Usage(format!(
                "--out {} would overwrite {}, which this command reads; choose another \
                 output directory",
                out.display(),
                r.display()
            )));
        }
    }
    if force {
        return Ok(());
    }
    let found: Vec<&str> = RUN_FILES
        .iter()
        .copied()
        .filter(|f| out.join(f).exists())
        .collect();
    if !found.is_empty() {
        return Err(Error::Usage(format!(
            "--out {} already holds a run ({}); choose a new directory, pass --resume to \
             continue a training run, or --force to replace it",
            out.display(),
            found.join(", ")
        )));
    }
    Ok(())
}

/// Records `dataset` in `dir/report.json` (creating a minimal report when
/// there is none), so `eval --model dir` finds it.
pub fn record_dataset(dir: &Path, dataset: &str) -> Result<()> {
    let path = dir.join(REPORT_FILE);
    let mut v: serde_json::Value = if path.exists() {
        read_json(&path)?
    } else {
        serde_json::json!({})
    };
    match v.as_object_mut() {
        Some(obj) => {
            obj.insert(
                "dataset".into(),
                serde_json::Value::String(dataset.to_string()),
            );
        }
        None => {
            return Err(Error::io(&path, "report.json is not a JSON object"));
        }
    }
    write_json(&path, &v)
}

/// Where the model of run directory `dir` is: `dir` itself, or for a run
/// that keeps only checkpoints (a pruning run's `finetune/`) its latest
/// checkpoint.
pub fn model_dir(dir: &Path) -> PathBuf {
    let checkpoint = dir.join("checkpoint");
    if !dir.join(MODEL_FILE).is_file() && checkpoint.join(MODEL_FILE).is_file() {
        checkpoint
    } else {
        dir.to_path_buf()
    }
}

/// [`record_dataset`] for `dir` and every directory below it that holds a
/// model or checkpoints (a pruning run's `sparse/`, `finetune/`, search
/// trials, ...).
pub fn record_dataset_tree(dir: &Path, dataset: &str) -> Result<()> {
    if dir.join(MODEL_FILE).is_file() || dir.join("checkpoint").is_dir() {
        record_dataset(dir, dataset)?;
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        // A checkpoint belongs to its run directory, not a run of its own.
        if path.is_dir() && !name.to_string_lossy().starts_with("checkpoint") {
            record_dataset_tree(&path, dataset)?;
        }
    }
    Ok(())
}

/// File that marks a run directory as being written by a running command.
pub const LOCK_FILE: &str = ".prune-nn.lock";

/// Exclusive use of an output directory for as long as it lives: a second
/// command writing into the same `--out` (e.g. two trainings started
/// together) is refused instead of mixing its files with the first one's.
/// The lock file holds the owner's process id; a lock left by a process
/// that no longer runs (killed mid-run) is taken over, so `--resume` after
/// a crash still works.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

fn process_alive(pid: u32) -> bool {
    let proc_root = Path::new("/proc");
    if !proc_root.is_dir() {
        // No way to tell: assume it runs.
        return true;
    }
    proc_root.join(pid.to_string()).exists()
}

impl RunLock {
    /// Locks `dir` (creating it).
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    write!(f, "{}", std::process::id()).map_err(|e| Error::io(&path, e))?;
                    return Ok(RunLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| t.trim().parse::<u32>().ok());
                    match owner {
                        Some(pid) if process_alive(pid) => {
                            return Err(Error::Usage(format!(
                                "{} is being written by another prune-nn command (process \
                                 {pid}); wait for it or choose another --out",
                                dir.display()
                            )));
                        }
                        // Stale (or unreadable) lock of a finished process.
                        _ => {
                            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                        }
                    }
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Err(Error::io(&path, "could not take the lock"))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
