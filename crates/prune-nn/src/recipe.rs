//! Recipes: the settings of a `prune-nn train` or `prune-nn prune` run,
//! kept in a TOML file.
//!
//! ```toml
//! command = "prune"                  # or "train"
//! reproduces = "SBP LeNet5 on MNIST (Neklyudov et al. 2017, Table 1)"
//! budget = "the paper's 200 epochs; ~40 min here"
//!
//! [args]                             # the command's flags, without "--"
//! method = "sbp"
//! epochs = 200
//! beta1 = 0.95
//! ```
//!
//! Keys of `[args]` are the command's long flags (`batch_size` or
//! `batch-size`); a list becomes a comma-separated value, `true` a bare
//! switch. Flags given on the command line override the file. The settings
//! a run actually used, and where each came from, are written to
//! `recipe.toml` in its run directory ([`write_resolved`]).

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the resolved recipe inside a run directory.
pub const RESOLVED_FILE: &str = "recipe.toml";

/// The commands a recipe can drive.
pub const COMMANDS: &[&str] = &["train", "prune"];

/// A parsed recipe file.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// Where it was read from.
    pub path: PathBuf,
    /// `train` or `prune`.
    pub command: String,
    /// What the recipe reproduces (paper, table, row).
    pub reproduces: String,
    /// The training budget and how it was scaled from the paper's.
    pub budget: String,
    /// Flag name (snake_case) → value.
    pub args: BTreeMap<String, toml::Value>,
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Usage(format!("recipe {}: {what}", path.display()))
}

fn text_field(table: &toml::Table, path: &Path, key: &str) -> Result<String> {
    match table.get(key) {
        None => Ok(String::new()),
        Some(toml::Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(bad(path, format!("'{key}' must be a string, got {v}"))),
    }
}

impl Recipe {
    /// Reads and checks a recipe file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses recipe text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let table: toml::Table = text.parse().map_err(|e| bad(path, e))?;
        for key in table.keys() {
            if !["command", "reproduces", "budget", "args"].contains(&key.as_str()) {
                return Err(bad(
                    path,
                    format!(
                        "unknown top-level key '{key}' (expected command, reproduces, budget, [args])"
                    ),
                ));
            }
        }
        let command = text_field(&table, path, "command")?;
        if !COMMANDS.contains(&command.as_str()) {
            return Err(bad(
                path,
                format!("'command' must be one of {COMMANDS:?}, got '{command}'"),
            ));
        }
        let raw = match table.get("args") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t.clone(),
            Some(v) => return Err(bad(path, format!("'args' must be a table, got {v}"))),
        };
        let mut args = BTreeMap::new();
        for (k, v) in raw {
            let key = k.replace('-', "_");
            if key == "recipe" {
                return Err(bad(path, "a recipe cannot name another recipe"));
            }
            check_value(path, &key, &v)?;
            if args.insert(key.clone(), v).is_some() {
                return Err(bad(path, format!("'{key}' is given twice")));
            }
        }
        Ok(Recipe {
            path: path.to_path_buf(),
            command,
            reproduces: text_field(&table, path, "reproduces")?,
            budget: text_field(&table, path, "budget")?,
            args,
        })
    }

    /// Command-line tokens for the recipe's settings that were not given on
    /// the command line (`given(key)` is true for those), checked against
    /// the command's `known` flags (snake_case). Returns the tokens and the
    /// keys they set.
    pub fn tokens(
        &self,
        command: &str,
        known: &[String],
        given: impl Fn(&str) -> bool,
    ) -> Result<(Vec<String>, Vec<String>)> {
        if command != self.command {
            return Err(bad(
                &self.path,
                format!(
                    "written for `prune-nn {}`, used with `prune-nn {command}`",
                    self.command
                ),
            ));
        }
        let mut tokens = Vec::new();
        let mut set = Vec::new();
        for (key, value) in &self.args {
            if !known.iter().any(|k| k == key) {
                return Err(bad(
                    &self.path,
                    format!(
                        "unknown setting '{key}' for `prune-nn {command}` (known: {})",
                        known.join(", ")
                    ),
                ));
            }
            if given(key) {
                continue;
            }
            let flag = format!("--{}", key.replace('_', "-"));
            match value {
                toml::Value::Boolean(false) => continue,
                toml::Value::Boolean(true) => tokens.push(flag),
                v => {
                    tokens.push(flag);
                    tokens.push(value_text(v));
                }
            }
            set.push(key.clone());
        }
        Ok((tokens, set))
    }
}

fn check_value(path: &Path, key: &str, v: &toml::Value) -> Result<()> {
    match v {
        toml::Value::String(_)
        | toml::Value::Integer(_)
        | toml::Value::Float(_)
        | toml::Value::Boolean(_) => Ok(()),
        toml::Value::Array(items) => {
            for i in items {
                if !matches!(
                    i,
                    toml::Value::String(_) | toml::Value::Integer(_) | toml::Value::Float(_)
                ) {
                    return Err(bad(
                        path,
                        format!("'{key}': list items must be numbers or strings, got {i}"),
                    ));
                }
            }
            Ok(())
        }
        other => Err(bad(
            path,
            format!("'{key}' must be a string, number, boolean or list, got {other}"),
        )),
    }
}

/// The command-line text of a recipe value.
fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(value_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Where a resolved setting came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    CommandLine,
    Recipe,
    Default,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::CommandLine => "command line",
            Source::Recipe => "recipe",
            Source::Default => "default",
        }
    }
}

/// One setting of a run as the command used it.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    /// Flag name, snake_case.
    pub key: String,
    /// The values as given (several for list flags).
    pub values: Vec<String>,
    /// A list flag (written as a TOML array).
    pub list: bool,
    /// A switch without a value.
    pub switch: bool,
    pub source: Source,
}

/// Reads a command-line value back as the TOML type it looks like.
fn typed(text: &str) -> toml::Value {
    if let Ok(i) = text.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(f) = text.parse::<f64>() {
        if f.is_finite() {
            toml::Value::Float(f)
        } else {
            toml::Value::String(text.to_string())
        }
    } else {
        toml::Value::String(text.to_string())
    }
}

/// The resolved recipe as TOML text: loadable again with `--recipe`.
pub fn render_resolved(command: &str, recipe: Option<&Recipe>, settings: &[Setting]) -> String {
    let mut root = toml::Table::new();
    root.insert("command".into(), toml::Value::String(command.into()));
    if let Some(r) = recipe {
        if !r.reproduces.is_empty() {
            root.insert("reproduces".into(), r.reproduces.clone().into());
        }
        if !r.budget.is_empty() {
            root.insert("budget".into(), r.budget.clone().into());
        }
    }
    let mut args = toml::Table::new();
    let mut sources = Vec::new();
    for s in settings {
        let value = if s.switch {
            toml::Value::Boolean(true)
        } else if s.list {
            toml::Value::Array(s.values.iter().map(|v| typed(v)).collect())
        } else {
            match s.values.as_slice() {
                [one] => typed(one),
                _ => continue,
            }
        };
        args.insert(s.key.clone(), value);
        sources.push(format!("#   {} = {}", s.key, s.source.as_str()));
    }
    root.insert("args".into(), toml::Value::Table(args));
    let mut text = String::from("# The settings this run used (prune-nn resolved recipe).\n");
    if let Some(r) = recipe {
        text.push_str(&format!("# From recipe {}.\n", r.path.display()));
    }
    text.push_str("# Where each setting came from:\n");
    for s in &sources {
        text.push_str(s);
        text.push('\n');
    }
    text.push('\n');
    text.push_str(&toml::to_string(&root).unwrap_or_default());
    text
}

/// Writes the resolved recipe into the run directory `out`, atomically,
/// refusing to replace the recipe file it was read from.
pub fn write_resolved(
    out: &Path,
    command: &str,
    recipe: Option<&Recipe>,
    settings: &[Setting],
) -> Result<PathBuf> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let path = out.join(RESOLVED_FILE);
    if let Some(r) = recipe {
        let same = match (path.canonicalize(), r.path.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            return Err(Error::Usage(format!(
                "{}: the run directory's resolved recipe would overwrite the recipe being read; choose another --out",
                path.display()
            )));
        }
    }
    let text = render_resolved(command, recipe, settings);
    prune_graph::io::atomic_write(&path, text.as_bytes())?;
    Ok(path)
}
