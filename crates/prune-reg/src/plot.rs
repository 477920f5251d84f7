//! Histograms of scale factors / SNRs as SVG files.
//!
//! Plots are written with the `plotters` SVG backend, which emits text as SVG
//! `<text>` elements and needs no font files. Raster output is not offered:
//! without a font-rendering feature the bitmap backend cannot draw text, and
//! depending on system fonts would make plotting fail on machines without them.

use crate::error::{RegError, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Width and height of a single-panel plot, pixels.
pub const PANEL_SIZE: (u32, u32) = (800, 500);

fn plot_err(path: &Path, e: impl std::fmt::Display) -> RegError {
    RegError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn check_path(path: &Path) -> Result<()> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("svg") => Ok(()),
        Some(other) => Err(plot_err(
            path,
            format!("unsupported extension .{other}: plots are written as .svg"),
        )),
        None => Err(plot_err(
            path,
            "missing extension: plots are written as .svg",
        )),
    }
}

/// Bin counts of `values` over their own range; returns `(lo, hi, counts)`.
fn bin(values: &[f32], bins: usize) -> (f64, f64, Vec<usize>) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for &v in values {
        lo = lo.min(f64::from(v));
        hi = hi.max(f64::from(v));
    }
    if hi <= lo {
        lo -= 0.5;
        hi += 0.5;
    }
    let mut counts = vec![0usize; bins];
    let scale = bins as f64 / (hi - lo);
    for &v in values {
        let i = ((f64::from(v) - lo) * scale).floor() as usize;
        counts[i.min(bins - 1)] += 1;
    }
    (lo, hi, counts)
}

fn check_values(what: &str, values: &[f32], bins: usize) -> Result<()> {
    if bins == 0 {
        return Err(RegError::InvalidParameter {
            name: "bins",
            value: 0.0,
            reason: "must be >= 1",
        });
    }
    if values.is_empty() {
        return Err(RegError::Empty {
            what: what.to_string(),
        });
    }
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(RegError::NonFinite {
            what: what.to_string(),
            index,
            value: f64::from(values[index]),
        });
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    values: &[f32],
    bins: usize,
    title: &str,
    x_label: &str,
) -> std::result::Result<(), String> {
    let (lo, hi, counts) = bin(values, bins);
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.05;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(lo..hi, 0.0..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("count")
        .draw()
        .map_err(|e| e.to_string())?;
    let width = (hi - lo) / bins as f64;
    chart
        .draw_series(counts.iter().enumerate().map(|(i, &c)| {
            let x0 = lo + i as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], BLUE.mix(0.6).filled())
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Writes a histogram of `values` with `bins` bins over their range to `path`
/// (which must end in `.svg`).
pub fn histogram(
    values: &[f32],
    bins: usize,
    title: &str,
    x_label: &str,
    path: impl AsRef<Path>,
) -> Result<()> {
    let path = path.as_ref();
    check_path(path)?;
    check_values("histogram values", values, bins)?;
    let root = SVGBackend::new(path, PANEL_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    draw_panel(&root, values, bins, title, x_label).map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}

/// Writes one histogram panel per layer, in a near-square grid, to `path`
/// (which must end in `.svg`). Each panel is titled with its layer name.
pub fn histogram_grid(
    layers: &[(&str, &[f32])],
    bins: usize,
    title: &str,
    x_label: &str,
    path: impl AsRef<Path>,
) -> Result<()> {
    let path = path.as_ref();
    check_path(path)?;
    if layers.is_empty() {
        return Err(RegError::Empty {
            what: "histogram grid (no layers)".to_string(),
        });
    }
    for (name, values) in layers {
        check_values(&format!("values of layer {name}"), values, bins)?;
    }
    let n = layers.len();
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let size = (
        (PANEL_SIZE.0 / 2) * cols as u32,
        (PANEL_SIZE.1 / 2) * rows as u32 + 40,
    );
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let root = root
        .titled(title, ("sans-serif", 24))
        .map_err(|e| plot_err(path, e))?;
    let panels = root.split_evenly((rows, cols));
    for ((name, values), area) in layers.iter().zip(panels.iter()) {
        draw_panel(area, values, bins, name, x_label).map_err(|e| plot_err(path, e))?;
    }
    root.present().map_err(|e| plot_err(path, e))
}
