//! The pictures users read to judge a run: per-layer histograms of the
//! scale factors γ (polarization, slimming) or of log₁₀ SNR (SBP), written
//! as SVG beside the report.

use crate::error::Result;
use crate::prune::Method;
use prune_graph::Model;
use prune_reg::method::{gamma_gates, sbp_gates, sbp_layer_mask};
use prune_reg::plot::histogram_grid;
use std::path::Path;

/// Writes `histograms.svg` into `out` for the method's gates.
pub fn write_histograms(model: &Model, method: Method, out: &Path) -> Result<()> {
    let mut layers: Vec<(String, Vec<f32>)> = Vec::new();
    let (title, x_label) = match method {
        Method::Sbp => {
            for g in sbp_gates(&model.graph) {
                let mu = model.params.get(&format!("{g}.mu"))?;
                let ls = model.params.get(&format!("{g}.log_sigma"))?;
                let snr = sbp_layer_mask(&g, mu.data(), ls.data())?.scores;
                let log_snr = snr.iter().map(|s| s.max(1e-12).log10()).collect();
                layers.push((g, log_snr));
            }
            (
                "SBP signal-to-noise ratio per unit",
                "log10 SNR (units with SNR > 1 are kept)",
            )
        }
        Method::Polarization | Method::Slimming => {
            for g in gamma_gates(&model.graph) {
                layers.push((
                    g.clone(),
                    model.params.get(&format!("{g}.weight"))?.data().to_vec(),
                ));
            }
            ("Scale factors per layer", "gamma")
        }
    };
    if layers.is_empty() {
        return Ok(());
    }
    let refs: Vec<(&str, &[f32])> = layers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    histogram_grid(&refs, 50, title, x_label, out.join("histograms.svg"))?;
    Ok(())
}
