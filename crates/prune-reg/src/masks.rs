//! Keep masks of prunable units, one [`LayerMask`] per layer, and their JSON file.
//!
//! Every pruning rule of this crate ends in [`LayerMask::from_decision`], which
//! enforces that no layer is ever emptied: when a rule would remove all units of
//! a layer, the unit with the highest score (the lowest index among equal
//! scores) is kept and the layer is flagged `forced`.

use crate::error::{RegError, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The pruning decision of one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerMask {
    /// Layer (group) name.
    pub name: String,
    /// `keep[i]`: unit `i` survives pruning.
    pub keep: Vec<bool>,
    /// The score the decision was based on (higher is more important).
    pub scores: Vec<f32>,
    /// True when every unit would have been removed and the best one was kept.
    pub forced: bool,
}

/// Index of the largest score; the lowest index wins ties. `scores` non-empty.
fn best_index(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate().skip(1) {
        if s > scores[best] {
            best = i;
        }
    }
    best
}

fn check_scores(name: &str, scores: &[f32]) -> Result<()> {
    match scores.iter().position(|s| !s.is_finite()) {
        Some(index) => Err(RegError::NonFinite {
            what: format!("scores of layer {name}"),
            index,
            value: f64::from(scores[index]),
        }),
        None => Ok(()),
    }
}

impl LayerMask {
    /// Builds a layer's mask from a rule's keep decision and scores, keeping the
    /// best-scored unit if the decision removes everything.
    pub fn from_decision(name: &str, keep: Vec<bool>, scores: Vec<f32>) -> Result<Self> {
        if keep.len() != scores.len() {
            return Err(RegError::LengthMismatch {
                what: "scores (vs keep)",
                expected: keep.len(),
                got: scores.len(),
            });
        }
        if keep.is_empty() {
            return Err(RegError::Empty {
                what: format!("layer {name}"),
            });
        }
        check_scores(name, &scores)?;
        let mut mask = LayerMask {
            name: name.to_string(),
            keep,
            scores,
            forced: false,
        };
        mask.ensure_not_empty();
        Ok(mask)
    }

    /// Keeps the best unit when no unit is kept; returns whether it had to.
    pub fn ensure_not_empty(&mut self) -> bool {
        if self.keep.is_empty() || self.keep.iter().any(|&k| k) {
            return false;
        }
        let best = best_index(&self.scores);
        self.keep[best] = true;
        self.forced = true;
        true
    }

    /// Number of units kept.
    pub fn kept(&self) -> usize {
        self.keep.iter().filter(|&&k| k).count()
    }

    /// Number of units.
    pub fn len(&self) -> usize {
        self.keep.len()
    }

    /// True for a layer without units (never produced by this crate's rules).
    pub fn is_empty(&self) -> bool {
        self.keep.is_empty()
    }

    /// Indices of the kept units, ascending.
    pub fn kept_indices(&self) -> Vec<usize> {
        self.keep
            .iter()
            .enumerate()
            .filter_map(|(i, &k)| k.then_some(i))
            .collect()
    }
}

/// The masks of all pruned layers of a model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Masks {
    /// One entry per layer, in model order.
    pub layers: Vec<LayerMask>,
}

impl Masks {
    /// Wraps layer masks.
    pub fn new(layers: Vec<LayerMask>) -> Self {
        Masks { layers }
    }

    /// The mask of the layer called `name`.
    pub fn get(&self, name: &str) -> Option<&LayerMask> {
        self.layers.iter().find(|l| l.name == name)
    }

    /// Units kept over all layers.
    pub fn kept(&self) -> usize {
        self.layers.iter().map(LayerMask::kept).sum()
    }

    /// Units over all layers.
    pub fn total(&self) -> usize {
        self.layers.iter().map(LayerMask::len).sum()
    }

    /// Checks the invariants a mask file must satisfy: unique names, equal
    /// lengths of `keep` and `scores`, finite scores, no empty layer.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for l in &self.layers {
            if !names.insert(l.name.as_str()) {
                return Err(format!("layer name {} appears twice", l.name));
            }
            if l.keep.len() != l.scores.len() {
                return Err(format!(
                    "layer {}: keep has {} entries, scores has {}",
                    l.name,
                    l.keep.len(),
                    l.scores.len()
                ));
            }
            if l.keep.is_empty() {
                return Err(format!("layer {} has no units", l.name));
            }
            if l.kept() == 0 {
                return Err(format!("layer {} keeps no unit", l.name));
            }
            if let Some(i) = l.scores.iter().position(|s| !s.is_finite()) {
                return Err(format!("layer {}: score {i} is not finite", l.name));
            }
        }
        Ok(())
    }

    /// Writes the masks as pretty JSON, atomically: a temporary file in the same
    /// directory is written, flushed to disk and renamed over `path`.
    pub fn save_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let json = serde_json::to_vec_pretty(self).map_err(|source| RegError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let tmp = temp_path(path);
        let io_err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| RegError::Io { path: p, source }
        };
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.write_all(b"\n")?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(&tmp)(e));
        }
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(path)(e)
        })
    }

    /// Reads and validates masks written by [`Masks::save_json`].
    pub fn load_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| RegError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let masks: Masks = serde_json::from_slice(&bytes).map_err(|source| RegError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        masks.validate().map_err(|reason| RegError::InvalidMasks {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(masks)
    }
}

/// `<dir>/.<file name>.tmp.<pid>` next to `path`.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "masks.json".to_string());
    let tmp_name = format!(".{name}.tmp.{}", std::process::id());
    match path.parent() {
        Some(dir) => dir.join(tmp_name),
        None => PathBuf::from(tmp_name),
    }
}
