//! The pruning threshold of polarized scale factors: the first local minimum of
//! their histogram (Zhuang et al. 2020).
//!
//! The scale factors are binned into `bins` equal bins over `[0, a]` (values
//! outside are counted in the first or last bin; `γ = a` belongs to the last).
//! With `diff[i] = count[i+1] - count[i]`, the scan goes left to right for the
//! first `i` with `diff[i] ≤ 0 ≤ diff[i+1]`; the threshold is the left edge of
//! bin `i+1`, and units with `γ > threshold` are kept.
//!
//! When no such `i` exists the histogram has no valley (it only rises, or only
//! falls, or has fewer than three bins): the threshold is then 0, so only scales
//! that are exactly zero are pruned, and [`HistogramThreshold::found`] is false.

use crate::error::{RegError, Result};
use crate::masks::{LayerMask, Masks};

/// Number of histogram bins used by the paper.
pub const DEFAULT_BINS: usize = 100;

/// The histogram and the threshold found in it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramThreshold {
    /// Units with `γ > threshold` are kept.
    pub threshold: f32,
    /// Whether a valley was found (false: the fallback threshold 0 was used).
    pub found: bool,
    /// Counts per bin.
    pub counts: Vec<usize>,
    /// Width of one bin.
    pub bin_width: f32,
}

/// One histogram per layer, or one over all layers applied to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdMode {
    /// Each layer's own histogram.
    PerLayer,
    /// One histogram of all layers' scales; the same threshold everywhere.
    Global,
}

fn check_args(bins: usize, upper: f32) -> Result<()> {
    if bins == 0 {
        return Err(RegError::InvalidParameter {
            name: "bins",
            value: 0.0,
            reason: "must be >= 1",
        });
    }
    if !(upper.is_finite() && upper > 0.0) {
        return Err(RegError::InvalidParameter {
            name: "upper",
            value: f64::from(upper),
            reason: "must be finite and > 0",
        });
    }
    Ok(())
}

fn check_values(what: &str, values: &[f32]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(RegError::NonFinite {
            what: what.to_string(),
            index,
            value: f64::from(values[index]),
        }),
        None => Ok(()),
    }
}

/// Counts of `values` in `bins` equal bins over `[0, upper]`.
pub fn histogram_counts<'a>(
    values: impl IntoIterator<Item = &'a f32>,
    bins: usize,
    upper: f32,
) -> Vec<usize> {
    let mut counts = vec![0usize; bins];
    let scale = bins as f64 / f64::from(upper);
    for &v in values {
        let pos = (f64::from(v) * scale).floor();
        let idx = if pos < 0.0 {
            0
        } else {
            (pos as usize).min(bins - 1)
        };
        counts[idx] += 1;
    }
    counts
}

/// The first-local-minimum threshold of a histogram (see the module docs).
pub fn threshold_from_counts(counts: &[usize], upper: f32) -> HistogramThreshold {
    let bins = counts.len();
    let bin_width = upper / bins.max(1) as f32;
    let diff: Vec<i64> = counts
        .windows(2)
        .map(|w| w[1] as i64 - w[0] as i64)
        .collect();
    let hit = diff.windows(2).position(|d| d[0] <= 0 && 0 <= d[1]);
    match hit {
        Some(i) => HistogramThreshold {
            threshold: (i + 1) as f32 * bin_width,
            found: true,
            counts: counts.to_vec(),
            bin_width,
        },
        None => HistogramThreshold {
            threshold: 0.0,
            found: false,
            counts: counts.to_vec(),
            bin_width,
        },
    }
}

/// Histogram threshold of one set of scale factors.
pub fn histogram_threshold(values: &[f32], bins: usize, upper: f32) -> Result<HistogramThreshold> {
    check_args(bins, upper)?;
    check_values("scale factors", values)?;
    Ok(threshold_from_counts(
        &histogram_counts(values, bins, upper),
        upper,
    ))
}

/// Keep masks of polarized layers: `γ > threshold`, thresholds per layer or
/// global; scores are the scale factors. A layer that would be emptied keeps
/// its largest scale (flagged `forced`). Returns the masks and the threshold
/// used for each layer.
pub fn polarization_masks(
    layers: &[(&str, &[f32])],
    mode: ThresholdMode,
    bins: usize,
    upper: f32,
) -> Result<(Masks, Vec<HistogramThreshold>)> {
    check_args(bins, upper)?;
    for (name, values) in layers {
        check_values(&format!("scale factors of layer {name}"), values)?;
    }
    let global = match mode {
        ThresholdMode::Global => {
            let all = layers.iter().flat_map(|(_, v)| v.iter());
            Some(threshold_from_counts(
                &histogram_counts(all, bins, upper),
                upper,
            ))
        }
        ThresholdMode::PerLayer => None,
    };
    let mut out = Vec::with_capacity(layers.len());
    let mut thresholds = Vec::with_capacity(layers.len());
    for (name, values) in layers {
        let th = match &global {
            Some(g) => g.clone(),
            None => threshold_from_counts(&histogram_counts(*values, bins, upper), upper),
        };
        let keep = values.iter().map(|&g| g > th.threshold).collect();
        out.push(LayerMask::from_decision(name, keep, values.to_vec())?);
        thresholds.push(th);
    }
    Ok((Masks::new(out), thresholds))
}
