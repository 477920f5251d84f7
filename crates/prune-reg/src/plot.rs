//! Charts as SVG or PNG: histograms of scale factors / SNRs with the pruning
//! threshold and the kept and pruned units ([`histogram_panels`]), and line
//! charts ([`line_chart`]) for accuracy against FLOPs and kept units per
//! epoch.
//!
//! The format follows the file name: `.svg` (text as SVG `<text>`
//! elements) or `.png` (rasterised). Both need glyph metrics, and PNG needs
//! the glyphs themselves, so the crate embeds DejaVu Sans
//! (`assets/DejaVuSans.ttf`, Bitstream Vera licence with DejaVu's
//! public-domain changes, `assets/LICENSE-DejaVu.txt`) and registers it as
//! the only `sans-serif` font: charts look the same everywhere and never read
//! system fonts.

mod histogram;
mod lines;

pub use histogram::{
    histogram, histogram_grid, histogram_panels, needs_log_axis, Panel, LOG_AXIS_MIN,
};
pub use lines::{line_chart, LineChart, Series};

use crate::error::{RegError, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// Width and height of a single-panel chart, pixels.
pub const PANEL_SIZE: (u32, u32) = (800, 500);

/// DejaVu Sans 2.37, embedded (see the module documentation).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The font family every chart uses.
pub(crate) const FAMILY: &str = "sans-serif";

/// Registers the embedded font once per process.
fn register_font() -> std::result::Result<(), String> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| "the embedded DejaVu Sans font could not be parsed".to_string())
    })
    .clone()
}

/// The file formats a chart can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Scalable vector graphics.
    Svg,
    /// Portable network graphics (RGB raster).
    Png,
}

impl Format {
    /// The format of `path`, from its extension (`.svg` or `.png`, any case).
    pub fn of(path: &Path) -> Result<Format> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            Some(other) => Err(plot_err(
                path,
                format!("unsupported extension .{other}: charts are written as .svg or .png"),
            )),
            None => Err(plot_err(
                path,
                "missing extension: charts are written as .svg or .png",
            )),
        }
    }
}

pub(crate) fn plot_err(path: &Path, e: impl std::fmt::Display) -> RegError {
    RegError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Something that can draw itself on any plotters backend.
pub(crate) trait Figure {
    /// Canvas size in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws on `root` (already filled white).
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String>;
}

/// Writes `fig` to `path` in the format its extension names.
pub(crate) fn render(fig: &impl Figure, path: &Path) -> Result<()> {
    let format = Format::of(path)?;
    register_font().map_err(|e| plot_err(path, e))?;
    let size = fig.size();
    match format {
        Format::Svg => {
            let root = SVGBackend::new(path, size).into_drawing_area();
            finish(root, fig, path)
        }
        Format::Png => {
            let root = BitMapBackend::new(path, size).into_drawing_area();
            finish(root, fig, path)
        }
    }
}

fn finish<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    fig: &impl Figure,
    path: &Path,
) -> Result<()> {
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    fig.draw(&root).map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))
}

/// The colours of the charts (Tableau 10: distinguishable, and kept/pruned
/// stay apart for red-green colour blindness: blue against orange).
pub(crate) const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];
