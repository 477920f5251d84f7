//! Per-layer histograms of a pruning score (γ, log₁₀ SNR) that show what a
//! reader looks for: where the threshold lies, which units it keeps and
//! which it prunes (two colours, stacked), integer counts, and a log count
//! axis when one bin — typically the spike of pruned units at γ ≈ 0 or
//! SNR ≪ 1 — dwarfs the rest.

use super::{render, Figure, FAMILY, PALETTE, PANEL_SIZE};
use crate::error::{RegError, Result};
use plotters::coord::ranged1d::{AsRangedCoord, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Colour of kept units.
const KEPT: RGBColor = PALETTE[0];
/// Colour of pruned units.
const PRUNED: RGBColor = PALETTE[1];

/// One histogram panel: a layer's per-unit values, optionally with the
/// pruning decision and the threshold that made it.
#[derive(Clone, Copy, Debug)]
pub struct Panel<'a> {
    /// Panel title (the layer's name).
    pub name: &'a str,
    /// One value per unit, in the units of the x axis.
    pub values: &'a [f32],
    /// Per unit, whether it is kept; `None` draws all units in one colour.
    pub kept: Option<&'a [bool]>,
    /// The threshold in x-axis units, drawn as a vertical line.
    pub threshold: Option<f64>,
}

impl<'a> Panel<'a> {
    /// A panel of `values` with neither mask nor threshold.
    pub fn new(name: &'a str, values: &'a [f32]) -> Self {
        Self {
            name,
            values,
            kept: None,
            threshold: None,
        }
    }
}

/// Whether counts need a log axis: the tallest bin holds more than ten
/// times the median of the non-empty bins, so on a linear axis the other
/// bins would be a few pixels high, and at least [`LOG_AXIS_MIN`] units
/// (below that a linear axis still shows a single unit clearly).
pub fn needs_log_axis(counts: &[usize]) -> bool {
    let mut nonzero: Vec<usize> = counts.iter().copied().filter(|&c| c > 0).collect();
    if nonzero.len() < 2 {
        return false;
    }
    nonzero.sort_unstable();
    let median = nonzero[nonzero.len() / 2];
    let max = nonzero[nonzero.len() - 1];
    max > 10 * median && max >= LOG_AXIS_MIN
}

/// The smallest tallest-bin count drawn on a log axis.
pub const LOG_AXIS_MIN: usize = 30;

/// Kept and pruned counts per bin over `[lo, hi]`.
struct Binned {
    lo: f64,
    hi: f64,
    kept: Vec<usize>,
    pruned: Vec<usize>,
}

impl Binned {
    /// Bins the panel's values over their range, widened to include the
    /// threshold. Units without a mask count as kept.
    fn new(p: &Panel<'_>, bins: usize) -> Binned {
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for &v in p.values {
            lo = lo.min(f64::from(v));
            hi = hi.max(f64::from(v));
        }
        if let Some(t) = p.threshold {
            lo = lo.min(t);
            hi = hi.max(t);
        }
        if hi <= lo {
            lo -= 0.5;
            hi += 0.5;
        }
        let mut kept = vec![0usize; bins];
        let mut pruned = vec![0usize; bins];
        let scale = bins as f64 / (hi - lo);
        for (u, &v) in p.values.iter().enumerate() {
            let i = (((f64::from(v) - lo) * scale).floor() as usize).min(bins - 1);
            match p.kept.map(|k| k[u]) {
                Some(false) => pruned[i] += 1,
                _ => kept[i] += 1,
            }
        }
        Binned {
            lo,
            hi,
            kept,
            pruned,
        }
    }

    fn totals(&self) -> Vec<usize> {
        self.kept
            .iter()
            .zip(&self.pruned)
            .map(|(a, b)| a + b)
            .collect()
    }
}

fn check_panel(p: &Panel<'_>, bins: usize) -> Result<()> {
    let what = format!("values of layer {}", p.name);
    if bins == 0 {
        return Err(RegError::InvalidParameter {
            name: "bins",
            value: 0.0,
            reason: "must be >= 1",
        });
    }
    if p.values.is_empty() {
        return Err(RegError::Empty { what });
    }
    if let Some(index) = p.values.iter().position(|v| !v.is_finite()) {
        return Err(RegError::NonFinite {
            what,
            index,
            value: f64::from(p.values[index]),
        });
    }
    if let Some(k) = p.kept {
        if k.len() != p.values.len() {
            return Err(RegError::LengthMismatch {
                what: "kept mask of a histogram panel",
                expected: p.values.len(),
                got: k.len(),
            });
        }
    }
    if let Some(t) = p.threshold.filter(|t| !t.is_finite()) {
        return Err(RegError::NonFinite {
            what: format!("threshold of layer {}", p.name),
            index: 0,
            value: t,
        });
    }
    Ok(())
}

struct Histograms<'a> {
    panels: &'a [Panel<'a>],
    bins: usize,
    title: &'a str,
    x_label: &'a str,
    threshold_label: &'a str,
}

impl Histograms<'_> {
    /// Rows and columns of a near-square grid.
    fn grid(&self) -> (usize, usize) {
        let n = self.panels.len();
        let cols = (n as f64).sqrt().ceil() as usize;
        (n.div_ceil(cols), cols)
    }
}

impl Figure for Histograms<'_> {
    fn size(&self) -> (u32, u32) {
        if self.panels.len() == 1 {
            return PANEL_SIZE;
        }
        let (rows, cols) = self.grid();
        (520 * cols as u32, 320 * rows as u32 + 40)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        if self.panels.len() == 1 {
            let title = format!("{}: {}", self.title, self.panels[0].name);
            return self.panel(root, &self.panels[0], &title, 20);
        }
        let root = root
            .titled(self.title, (FAMILY, 24))
            .map_err(|e| e.to_string())?;
        let (rows, cols) = self.grid();
        for (p, area) in self.panels.iter().zip(root.split_evenly((rows, cols))) {
            self.panel(&area, p, p.name, 16)?;
        }
        Ok(())
    }
}

impl Histograms<'_> {
    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        p: &Panel<'_>,
        title: &str,
        font: u32,
    ) -> std::result::Result<(), String> {
        let b = Binned::new(p, self.bins);
        let totals = b.totals();
        let max = totals.iter().copied().max().unwrap_or(1).max(1) as f64;
        let caption = match p.kept {
            Some(k) => format!(
                "{title} ({} of {} kept)",
                k.iter().filter(|&&x| x).count(),
                k.len()
            ),
            None => title.to_string(),
        };
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(caption, (FAMILY, font))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(48);
        if needs_log_axis(&totals) {
            // Log axis from 0.5 so that a bin of one unit is a visible bar.
            let y = (0.5..max * 2.0).log_scale();
            self.body(builder, &b, p, y, 0.5, "count (log scale)")
        } else {
            // Integer ticks: up to ten labels at a step of 1, 2, 5, 10, ...
            let top = (max * 1.05).ceil().max(max + 1.0);
            self.body(builder, &b, p, 0.0..top, 0.0, "count")
        }
    }

    /// Axes, stacked bars (pruned below kept), the threshold and a legend.
    fn body<DB: DrawingBackend, Y, YR>(
        &self,
        mut builder: ChartBuilder<'_, '_, DB>,
        b: &Binned,
        p: &Panel<'_>,
        y: YR,
        base: f64,
        y_desc: &str,
    ) -> std::result::Result<(), String>
    where
        YR: AsRangedCoord<CoordDescType = Y, Value = f64>,
        Y: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
    {
        let mut chart = builder
            .build_cartesian_2d(b.lo..b.hi, y)
            .map_err(|e| e.to_string())?;
        let top = chart.y_range().end;
        // Linear: up to ten integer labels (a step of 1, 2, 5, 10, ...);
        // log: few enough that only the powers of ten are labelled.
        let int_labels = if base > 0.0 {
            4
        } else {
            (top - base).round().clamp(1.0, 10.0) as usize + 1
        };
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc(y_desc)
            .y_labels(int_labels)
            .light_line_style(TRANSPARENT)
            .y_label_formatter(&|v: &f64| {
                if (v - v.round()).abs() < 1e-9 && *v >= 1.0 - 1e-9 || *v == 0.0 {
                    format!("{:.0}", v)
                } else {
                    String::new()
                }
            })
            .label_style((FAMILY, 12))
            .axis_desc_style((FAMILY, 13))
            .draw()
            .map_err(|e| e.to_string())?;
        let width = (b.hi - b.lo) / self.bins as f64;
        let x0 = |i: usize| b.lo + i as f64 * width;
        let bar = |i: usize, from: usize, to: usize, c: RGBColor| {
            let y0 = if from == 0 { base } else { from as f64 };
            Rectangle::new([(x0(i), y0), (x0(i) + width, to as f64)], c.filled())
        };
        let masked = p.kept.is_some();
        let n_pruned: usize = b.pruned.iter().sum();
        let n_kept: usize = b.kept.iter().sum();
        let pruned_bars: Vec<_> = (0..self.bins)
            .filter(|&i| b.pruned[i] > 0)
            .map(|i| bar(i, 0, b.pruned[i], PRUNED))
            .collect();
        let kept_bars: Vec<_> = (0..self.bins)
            .filter(|&i| b.kept[i] > 0)
            .map(|i| bar(i, b.pruned[i], b.pruned[i] + b.kept[i], KEPT))
            .collect();
        let series = chart.draw_series(kept_bars).map_err(|e| e.to_string())?;
        if masked {
            series
                .label(format!("kept ({n_kept})"))
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], KEPT.filled()));
            chart
                .draw_series(pruned_bars)
                .map_err(|e| e.to_string())?
                .label(format!("pruned ({n_pruned})"))
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], PRUNED.filled()));
        }
        if let Some(t) = p.threshold {
            chart
                .draw_series(LineSeries::new(
                    [(t, base), (t, top)],
                    BLACK.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(format!("{} ({t:.3})", self.threshold_label))
                .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], BLACK.stroke_width(2)));
        }
        if masked || p.threshold.is_some() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font((FAMILY, 12))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Writes one histogram per panel (a single chart, or a near-square grid
/// titled `title`) to `path` (`.svg` or `.png`). Each panel stacks its
/// pruned units (orange) under its kept ones (blue), draws the threshold as
/// a vertical line labelled `threshold_label` (e.g. `"SNR = 1"`,
/// `"γ valley"`), and switches to a log count axis when
/// [`needs_log_axis`] says the tallest bin dwarfs the others.
pub fn histogram_panels(
    panels: &[Panel<'_>],
    bins: usize,
    title: &str,
    x_label: &str,
    threshold_label: &str,
    path: impl AsRef<Path>,
) -> Result<()> {
    let path = path.as_ref();
    super::Format::of(path)?;
    if panels.is_empty() {
        return Err(RegError::Empty {
            what: "histogram (no panels)".to_string(),
        });
    }
    for p in panels {
        check_panel(p, bins)?;
    }
    let fig = Histograms {
        panels,
        bins,
        title,
        x_label,
        threshold_label,
    };
    render(&fig, path)
}

/// Writes a histogram of `values` with `bins` bins over their range to `path`
/// (`.svg` or `.png`), all units in one colour and no threshold.
pub fn histogram(
    values: &[f32],
    bins: usize,
    title: &str,
    x_label: &str,
    path: impl AsRef<Path>,
) -> Result<()> {
    let panel = Panel::new("", values);
    let path = path.as_ref();
    super::Format::of(path)?;
    check_panel(&panel, bins)?;
    let fig = Histograms {
        panels: &[panel],
        bins,
        title,
        x_label,
        threshold_label: "",
    };
    render(&SingleTitle(&fig), path)
}

/// A one-panel histogram titled with the chart title only.
struct SingleTitle<'a>(&'a Histograms<'a>);

impl Figure for SingleTitle<'_> {
    fn size(&self) -> (u32, u32) {
        PANEL_SIZE
    }
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        self.0.panel(root, &self.0.panels[0], self.0.title, 20)
    }
}

/// Writes one histogram panel per layer, in a near-square grid, to `path`
/// (`.svg` or `.png`). Each panel is titled with its layer name; use
/// [`histogram_panels`] to show the threshold and the kept units.
pub fn histogram_grid(
    layers: &[(&str, &[f32])],
    bins: usize,
    title: &str,
    x_label: &str,
    path: impl AsRef<Path>,
) -> Result<()> {
    let panels: Vec<Panel<'_>> = layers.iter().map(|(n, v)| Panel::new(n, v)).collect();
    histogram_panels(&panels, bins, title, x_label, "", path)
}
