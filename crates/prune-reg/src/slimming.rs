//! Network slimming (Liu et al. 2017): an L1 penalty on batch-norm scales and a
//! global percentile threshold.
//!
//! * Penalty `λ·Σ|γ|` with subgradient `λ·sign(γ)`, `sign(0) = 0`.
//! * Pruning: over all layers, exactly `round(p·n)` units with the smallest
//!   `|γ|` are removed (`p = percent/100`, `n` the number of units, halves
//!   rounded away from zero), ordering units by `(|γ|, layer index, unit index)`
//!   so ties at the threshold are broken deterministically towards earlier
//!   layers and lower indices. 0 % removes nothing; a layer that would lose all
//!   its units keeps the one with the largest `|γ|` (flagged `forced`), so at
//!   100 % every layer keeps exactly one unit.

use crate::error::{RegError, Result};
use crate::masks::{LayerMask, Masks};

/// `λ·Σ|γ|` over all layers and its subgradient (one vector per layer), in f64 on the
/// host: the reference of the tape form training uses
/// ([`crate::method::gamma_penalty::l1_penalty`]).
pub fn l1_value_and_grad(groups: &[&[f32]], lambda: f64) -> Result<(f64, Vec<Vec<f32>>)> {
    if !(lambda.is_finite() && lambda >= 0.0) {
        return Err(RegError::InvalidParameter {
            name: "lambda",
            value: lambda,
            reason: "must be finite and >= 0",
        });
    }
    let mut value = 0.0;
    let mut grad = Vec::with_capacity(groups.len());
    for (g, layer) in groups.iter().enumerate() {
        if let Some(i) = layer.iter().position(|v| !v.is_finite()) {
            return Err(RegError::NonFinite {
                what: format!("gammas of layer {g}"),
                index: i,
                value: f64::from(layer[i]),
            });
        }
        let mut gl = Vec::with_capacity(layer.len());
        for &x in layer.iter() {
            value += f64::from(x).abs();
            let s = if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            };
            gl.push((lambda * s) as f32);
        }
        grad.push(gl);
    }
    Ok((lambda * value, grad))
}

/// Number of units removed for `percent` of `n`: `round(percent/100 · n)`.
pub fn prune_count(n: usize, percent: f64) -> Result<usize> {
    if !(percent.is_finite() && (0.0..=100.0).contains(&percent)) {
        return Err(RegError::InvalidParameter {
            name: "percent",
            value: percent,
            reason: "must lie in [0, 100]",
        });
    }
    Ok(((percent / 100.0) * n as f64).round().min(n as f64) as usize)
}

/// The global percentile masks of network slimming; scores are `|γ|`.
pub fn slimming_masks(layers: &[(&str, &[f32])], percent: f64) -> Result<Masks> {
    let mut units: Vec<(f32, usize, usize)> = Vec::new();
    for (li, (name, values)) in layers.iter().enumerate() {
        if values.is_empty() {
            return Err(RegError::Empty {
                what: format!("layer {name}"),
            });
        }
        for (ui, &v) in values.iter().enumerate() {
            if !v.is_finite() {
                return Err(RegError::NonFinite {
                    what: format!("scale factors of layer {name}"),
                    index: ui,
                    value: f64::from(v),
                });
            }
            units.push((v.abs(), li, ui));
        }
    }
    let remove = prune_count(units.len(), percent)?;
    units.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let mut keep: Vec<Vec<bool>> = layers.iter().map(|(_, v)| vec![true; v.len()]).collect();
    for &(_, li, ui) in units.iter().take(remove) {
        keep[li][ui] = false;
    }
    let masks = layers
        .iter()
        .zip(keep)
        .map(|((name, values), k)| {
            LayerMask::from_decision(name, k, values.iter().map(|v| v.abs()).collect())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Masks::new(masks))
}

/// The `|γ|` value at the slimming threshold: the largest removed `|γ|`
/// (before the no-empty-layer rule), or `None` when nothing is removed.
pub fn slimming_threshold(layers: &[(&str, &[f32])], percent: f64) -> Result<Option<f32>> {
    let mut all: Vec<f32> = Vec::new();
    for (name, values) in layers {
        for (i, &v) in values.iter().enumerate() {
            if !v.is_finite() {
                return Err(RegError::NonFinite {
                    what: format!("scale factors of layer {name}"),
                    index: i,
                    value: f64::from(v),
                });
            }
            all.push(v.abs());
        }
    }
    let remove = prune_count(all.len(), percent)?;
    if remove == 0 {
        return Ok(None);
    }
    all.sort_by(f32::total_cmp);
    Ok(Some(all[remove - 1]))
}
