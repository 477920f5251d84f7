//! The pictures users read to judge a run: per-layer histograms of the
//! scale factors γ (polarization, slimming) or of log₁₀ SNR (SBP), with the
//! kept and pruned units in two colours and the threshold drawn, written as
//! SVG beside the report (the same picture as `prune-nn chart histograms`).

use crate::error::Result;
use crate::method::PruningMethod;
use prune_graph::Model;
use prune_reg::masks::Masks;
use prune_reg::plot::{histogram_panels, Panel};
use std::path::Path;

/// Writes `histograms.svg` into `out` for the method's gates (nothing when
/// the model has none). A layer's units are coloured by its mask in
/// `masks` (one colour when no mask of that name and size exists); the
/// threshold is the method's fixed one, else where the mask cuts the layer.
pub fn write_histograms(
    model: &Model,
    masks: &Masks,
    method: &dyn PruningMethod,
    out: &Path,
) -> Result<()> {
    let h = method.histograms(model)?;
    if h.layers.is_empty() {
        return Ok(());
    }
    let panels: Vec<Panel<'_>> = h
        .layers
        .iter()
        .map(|(name, values)| {
            let kept = masks
                .get(name)
                .map(|m| m.keep.as_slice())
                .filter(|k| k.len() == values.len());
            let threshold = h
                .threshold
                .or_else(|| kept.and_then(|k| crate::chart::cut(values, k)));
            Panel {
                name,
                values,
                kept,
                threshold,
            }
        })
        .collect();
    histogram_panels(
        &panels,
        50,
        h.title,
        h.x_label,
        h.threshold_label,
        out.join("histograms.svg"),
    )?;
    Ok(())
}
