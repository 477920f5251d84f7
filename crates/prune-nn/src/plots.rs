//! The pictures users read to judge a run: per-layer histograms of the
//! scale factors γ (polarization, slimming) or of log₁₀ SNR (SBP), written
//! as SVG beside the report.

use crate::error::Result;
use crate::method::PruningMethod;
use prune_graph::Model;
use prune_reg::plot::histogram_grid;
use std::path::Path;

/// Writes `histograms.svg` into `out` for the method's gates (nothing when
/// the model has none).
pub fn write_histograms(model: &Model, method: &dyn PruningMethod, out: &Path) -> Result<()> {
    let h = method.histograms(model)?;
    if h.layers.is_empty() {
        return Ok(());
    }
    let refs: Vec<(&str, &[f32])> = h
        .layers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    histogram_grid(&refs, 50, h.title, h.x_label, out.join("histograms.svg"))?;
    Ok(())
}
