//! The test harness of the prune-nn workspace.
//!
//! Some tests need what a machine may lack: the MNIST files under
//! `PRUNE_NN_DATA`, a CUDA GPU, or the NVRTC library. Test binaries that
//! hold such tests use this harness (`harness = false` in Cargo.toml) instead
//! of libtest's, so that an unmet need is decided at run time and reported
//! the way `#[ignore]` is: `test name ... ignored (reason)` in the normal
//! `cargo test` output and counted in the "N ignored" total, never as a pass.
//!
//! ```text
//! fn main() {
//!     let data = Need::data();
//!     prune_testkit::run(vec![
//!         prune_testkit::test("parses_flags", parses_flags),
//!         prune_testkit::test_needing("trains_on_mnist", &data, trains_on_mnist),
//!     ]);
//! }
//! ```
//!
//! A need can be made mandatory with an environment variable
//! (`PRUNE_REQUIRE_GPU=1`, `PRUNE_REQUIRE_NVRTC=1`): the tests then run and
//! fail with the reason instead of being ignored.

pub use libtest_mimic::Trial;
use libtest_mimic::{Arguments, Completion, Failed};
use std::path::{Path, PathBuf};

/// Environment variable naming the folder with `mnist/` and `fashion-mnist/`.
pub const DATA_ENV: &str = "PRUNE_NN_DATA";

/// The workspace root: the folder the README's commands run from.
pub fn workspace_root() -> PathBuf {
    // This crate lives in `<root>/crates/prune-testkit`.
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| here.to_path_buf())
}

/// Resolves a `PRUNE_NN_DATA` value. Cargo runs each test binary in its
/// crate's folder, so a relative value (the README's `../shared/data`) is
/// taken relative to the workspace root, where `cargo test` is run, not
/// relative to the test's working directory.
pub fn resolve_data_path(value: &Path) -> PathBuf {
    if value.is_absolute() {
        value.to_path_buf()
    } else {
        workspace_root().join(value)
    }
}

/// Why a test cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unmet {
    /// Reported as ignored, with this reason.
    Skip(String),
    /// A mistake in the environment (e.g. `PRUNE_NN_DATA` naming no folder):
    /// the test fails with this message.
    Fail(String),
}

/// The dataset folder named by `PRUNE_NN_DATA` (resolved by
/// [`resolve_data_path`]), or why there is none.
///
/// Unset (or empty) is a reason to skip; set to a folder that does not
/// exist is not — that is a mistake in the command line, and the test fails.
pub fn data_root() -> Result<PathBuf, Unmet> {
    match std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
        None => Err(Unmet::Skip(format!(
            "{DATA_ENV} is not set; run `{DATA_ENV}=../shared/data cargo test` from the \
             workspace root to include it"
        ))),
        Some(v) => {
            let p = resolve_data_path(Path::new(&v));
            if p.is_dir() {
                Ok(p)
            } else {
                Err(Unmet::Fail(format!(
                    "{DATA_ENV}={} resolves to {}, which is not a folder (a relative value \
                     is taken from the workspace root {})",
                    Path::new(&v).display(),
                    p.display(),
                    workspace_root().display()
                )))
            }
        }
    }
}

/// [`data_root`] for a test that [`Need::data`] let run.
pub fn data() -> PathBuf {
    match data_root() {
        Ok(p) => p,
        Err(Unmet::Skip(m) | Unmet::Fail(m)) => panic!("{m}"),
    }
}

/// Something a group of tests needs, decided once per test binary.
#[derive(Clone, Debug)]
pub struct Need {
    /// `None` when met; else why not.
    missing: Option<Unmet>,
    /// The variable that, set to `1`, turns a skip into a failure.
    require_env: Option<&'static str>,
}

impl Need {
    /// A need that is met.
    pub fn met() -> Self {
        Need {
            missing: None,
            require_env: None,
        }
    }

    /// The real datasets under `PRUNE_NN_DATA`.
    pub fn data() -> Self {
        Need {
            missing: data_root().err(),
            require_env: None,
        }
    }

    /// A need checked by `probe`; `what` says what is missing when it fails
    /// (e.g. "no usable GPU"), and `require_env=1` makes it mandatory.
    pub fn probe(what: &str, require_env: &'static str, probe: Result<(), String>) -> Self {
        Need {
            missing: probe
                .err()
                .map(|e| Unmet::Skip(format!("{what}: {e}; {require_env}=1 makes this a failure"))),
            require_env: Some(require_env),
        }
    }

    /// A need checked by `probe` that no environment variable makes
    /// mandatory; `what` says what is missing when it fails.
    pub fn check(what: &str, probe: Result<(), String>) -> Self {
        Need {
            missing: probe.err().map(|e| Unmet::Skip(format!("{what}: {e}"))),
            require_env: None,
        }
    }

    /// Whether the tests needing this will run.
    pub fn is_met(&self) -> bool {
        self.missing.is_none()
    }

    fn required(&self) -> bool {
        self.require_env
            .is_some_and(|v| std::env::var(v).is_ok_and(|x| x == "1"))
    }
}

/// An ordinary test.
pub fn test(name: &str, f: fn()) -> Trial {
    Trial::test(name, move || {
        f();
        Ok(())
    })
}

/// A test that runs only when `need` is met and is reported as ignored,
/// with the reason, otherwise (or fails, when the need is mandatory).
pub fn test_needing(name: &str, need: &Need, f: fn()) -> Trial {
    let need = need.clone();
    Trial::ignorable_test(name, move || match &need.missing {
        None => {
            f();
            Ok(Completion::Completed)
        }
        Some(Unmet::Skip(reason)) if need.required() => Err(Failed::from(reason.as_str())),
        Some(Unmet::Skip(reason)) => Ok(Completion::ignored_with(reason)),
        Some(Unmet::Fail(reason)) => Err(Failed::from(reason.as_str())),
    })
}

/// Runs the trials with libtest's command-line flags and exits.
pub fn run(trials: Vec<Trial>) -> ! {
    let args = Arguments::from_args();
    libtest_mimic::run(&args, trials).exit()
}

/// `[test(name, f), ...]` for plain test functions, named after themselves.
#[macro_export]
macro_rules! tests {
    ($($f:ident),* $(,)?) => {
        vec![$($crate::test(stringify!($f), $f)),*]
    };
}

/// `[test_needing(name, need, f), ...]` for test functions that need `need`.
#[macro_export]
macro_rules! tests_needing {
    ($need:expr; $($f:ident),* $(,)?) => {
        vec![$($crate::test_needing(stringify!($f), $need, $f)),*]
    };
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn relative_data_paths_resolve_from_the_workspace_root() {
        let root = workspace_root();
        assert!(root.join("Cargo.toml").is_file(), "{}", root.display());
        assert!(root.join("crates").is_dir(), "{}", root.display());
        assert_eq!(
            resolve_data_path(Path::new("../shared/data")),
            root.join("../shared/data")
        );
        assert_eq!(resolve_data_path(Path::new("/abs")), PathBuf::from("/abs"));
    }

    #[test]
    fn unmet_needs_are_ignored_with_a_reason() {
        let need = Need::probe("no usable GPU", "PRUNE_TESTKIT_NEVER_SET", Err("x".into()));
        assert!(!need.is_met());
        assert!(!need.required());
        let Some(Unmet::Skip(msg)) = need.missing.clone() else {
            panic!("an unmet probe is a skip")
        };
        assert!(msg.contains("no usable GPU: x"), "{msg}");
        assert!(msg.contains("PRUNE_TESTKIT_NEVER_SET=1"), "{msg}");
        assert!(Need::probe("y", "Z", Ok(())).is_met());
    }
}
