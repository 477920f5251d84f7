//! Line charts: one coloured line (or set of markers) per series, with a
//! legend, optional log x and y axes and integer axes where the quantity is a
//! count (epochs, units).

use super::{render, Figure, FAMILY, PALETTE, PANEL_SIZE};
use crate::error::{RegError, Result};
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// One series of a [`LineChart`].
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// `(x, y)` points, drawn in the given order.
    pub points: Vec<(f64, f64)>,
    /// Join the points with a line; `false` draws markers only.
    pub line: bool,
}

/// A chart of several series over shared axes.
#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    /// Chart title.
    pub title: String,
    /// Description of the x axis.
    pub x_label: String,
    /// Description of the y axis.
    pub y_label: String,
    /// Logarithmic x axis (all x must then be positive).
    pub x_log: bool,
    /// Logarithmic y axis (all y must then be positive).
    pub y_log: bool,
    /// Label the x axis with integers only (epochs).
    pub x_integer: bool,
    /// Label the y axis with integers only (unit counts).
    pub y_integer: bool,
    /// The series, coloured in order.
    pub series: Vec<Series>,
}

/// A tick label: integers as integers, other values with up to three
/// significant decimals and no trailing zeros.
fn tick(v: f64, integer: bool) -> String {
    if integer {
        return if (v - v.round()).abs() < 1e-9 {
            format!("{:.0}", v)
        } else {
            String::new()
        };
    }
    let s = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Labelled points of a log axis over `[lo, hi]` (`0 < lo < hi`): the
/// densest of the mantissa sets {1, 1.2, 1.5, 2, 3, 5, 7}, {1, 2, 5}, {1}
/// (times powers of ten) that gives at most twelve labels, so that a short
/// range such as 1x–2.5x FLOPs reduction is labelled too.
pub(crate) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    const SETS: [&[f64]; 3] = [
        &[1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 7.0],
        &[1.0, 2.0, 5.0],
        &[1.0],
    ];
    let mut ticks = Vec::new();
    for set in SETS {
        ticks.clear();
        let mut p = 10f64.powf(lo.log10().floor());
        while p <= hi {
            for &m in set {
                let v = m * p;
                if v >= lo && v <= hi {
                    ticks.push(v);
                }
            }
            p *= 10.0;
        }
        if ticks.len() <= 12 {
            break;
        }
    }
    ticks
}

/// `[lo, hi]` widened by 5% on each side (multiplicatively on a log axis),
/// and to a unit interval when all values are equal.
fn padded(lo: f64, hi: f64, log: bool) -> (f64, f64) {
    if log {
        let (lo, hi) = if hi <= lo {
            (lo / 2.0, hi * 2.0)
        } else {
            (lo, hi)
        };
        let f = (hi / lo).powf(0.05);
        (lo / f, hi * f)
    } else {
        let (lo, hi) = if hi <= lo {
            (lo - 0.5, hi + 0.5)
        } else {
            (lo, hi)
        };
        let d = 0.05 * (hi - lo);
        (lo - d, hi + d)
    }
}

impl LineChart {
    fn check(&self) -> Result<((f64, f64), (f64, f64))> {
        let points: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .collect();
        if points.is_empty() {
            return Err(RegError::Empty {
                what: format!("chart '{}' (no points)", self.title),
            });
        }
        for s in &self.series {
            for (i, &(x, y)) in s.points.iter().enumerate() {
                if !x.is_finite() || !y.is_finite() {
                    return Err(RegError::NonFinite {
                        what: format!("point of series '{}'", s.name),
                        index: i,
                        value: if x.is_finite() { y } else { x },
                    });
                }
                if self.x_log && x <= 0.0 {
                    return Err(RegError::InvalidParameter {
                        name: "x",
                        value: x,
                        reason: "must be positive on a log axis",
                    });
                }
                if self.y_log && y <= 0.0 {
                    return Err(RegError::InvalidParameter {
                        name: "y",
                        value: y,
                        reason: "must be positive on a log axis",
                    });
                }
            }
        }
        let fold = |f: fn(&(f64, f64)) -> f64| {
            points
                .iter()
                .map(f)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                    (lo.min(v), hi.max(v))
                })
        };
        let (x0, x1) = fold(|p| p.0);
        let (y0, y1) = fold(|p| p.1);
        Ok((padded(x0, x1, self.x_log), padded(y0, y1, self.y_log)))
    }

    /// The corner of the plot area whose legend-sized box covers the fewest
    /// points and line midpoints (ties: upper right, lower right, upper
    /// left, lower left).
    fn legend_corner(&self, x: (f64, f64), y: (f64, f64)) -> SeriesLabelPosition {
        let nx = |v: f64| {
            if self.x_log {
                (v / x.0).ln() / (x.1 / x.0).ln()
            } else {
                (v - x.0) / (x.1 - x.0)
            }
        };
        let ny = |v: f64| {
            if self.y_log {
                (v / y.0).ln() / (y.1 / y.0).ln()
            } else {
                (v - y.0) / (y.1 - y.0)
            }
        };
        let mut pts: Vec<(f64, f64)> = Vec::new();
        for s in &self.series {
            for (k, &(px, py)) in s.points.iter().enumerate() {
                pts.push((nx(px), ny(py)));
                if let (true, Some(&(qx, qy))) = (s.line, s.points.get(k + 1)) {
                    pts.push((0.5 * (nx(px) + nx(qx)), 0.5 * (ny(py) + ny(qy))));
                }
            }
        }
        let w = 0.35;
        let h = (0.06 * self.series.len() as f64 + 0.04).min(0.95);
        let corners = [
            (SeriesLabelPosition::UpperRight, 1.0 - w, 1.0 - h),
            (SeriesLabelPosition::LowerRight, 1.0 - w, 0.0),
            (SeriesLabelPosition::UpperLeft, 0.0, 1.0 - h),
            (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
        ];
        let covered = |&(_, cx, cy): &(SeriesLabelPosition, f64, f64)| {
            pts.iter()
                .filter(|&&(px, py)| px >= cx && px <= cx + w && py >= cy && py <= cy + h)
                .count()
        };
        let mut best = 0;
        for k in 1..corners.len() {
            if covered(&corners[k]) < covered(&corners[best]) {
                best = k;
            }
        }
        corners[best].0.clone()
    }

    fn body<DB: DrawingBackend, X, XR, Y, YR>(
        &self,
        root: &DrawingArea<DB, Shift>,
        x: XR,
        y: YR,
        legend: SeriesLabelPosition,
    ) -> std::result::Result<(), String>
    where
        XR: AsRangedCoord<CoordDescType = X, Value = f64>,
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
        YR: AsRangedCoord<CoordDescType = Y, Value = f64>,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FAMILY, 20))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(60)
            .build_cartesian_2d(x, y)
            .map_err(|e| e.to_string())?;
        let (xi, yi) = (self.x_integer, self.y_integer);
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&|v: &f64| tick(*v, xi))
            .y_label_formatter(&|v: &f64| tick(*v, yi))
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 14))
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, s) in self.series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            // Past eight series the colours repeat with another marker.
            let shape = (k / PALETTE.len()) % 3;
            if s.line {
                chart
                    .draw_series(LineSeries::new(
                        s.points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| e.to_string())?;
            }
            let style = color.filled();
            let markers: Vec<DynElement<'static, DB, (f64, f64)>> = s
                .points
                .iter()
                .map(|&p| match shape {
                    0 => Circle::new(p, 4, style).into_dyn(),
                    1 => TriangleMarker::new(p, 5, style).into_dyn(),
                    _ => Cross::new(p, 4, color.stroke_width(2)).into_dyn(),
                })
                .collect();
            chart
                .draw_series(markers)
                .map_err(|e| e.to_string())?
                .label(&s.name)
                .legend(move |(x, y)| match shape {
                    0 => Circle::new((x + 6, y), 4, style).into_dyn(),
                    1 => TriangleMarker::new((x + 6, y), 5, style).into_dyn(),
                    _ => Cross::new((x + 6, y), 4, color.stroke_width(2)).into_dyn(),
                });
        }
        chart
            .configure_series_labels()
            .position(legend)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FAMILY, 12))
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

struct Checked<'a> {
    chart: &'a LineChart,
    x: (f64, f64),
    y: (f64, f64),
}

impl Figure for Checked<'_> {
    fn size(&self) -> (u32, u32) {
        PANEL_SIZE
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String> {
        let ((x0, x1), (y0, y1)) = (self.x, self.y);
        let legend = self.chart.legend_corner(self.x, self.y);
        let c = self.chart;
        let log_x = || (x0..x1).log_scale().with_key_points(log_ticks(x0, x1));
        let log_y = || (y0..y1).log_scale().with_key_points(log_ticks(y0, y1));
        match (c.x_log, c.y_log) {
            (true, true) => c.body(root, log_x(), log_y(), legend),
            (true, false) => c.body(root, log_x(), y0..y1, legend),
            (false, true) => c.body(root, x0..x1, log_y(), legend),
            (false, false) => c.body(root, x0..x1, y0..y1, legend),
        }
    }
}

/// Writes `chart` to `path` (`.svg` or `.png`).
pub fn line_chart(chart: &LineChart, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    super::Format::of(path)?;
    let (x, y) = chart.check()?;
    render(&Checked { chart, x, y }, path)
}

#[cfg(test)]
mod tests {
    use super::log_ticks;

    #[test]
    fn log_ticks_label_short_and_long_ranges() {
        assert_eq!(log_ticks(0.95, 2.5), [1.0, 1.2, 1.5, 2.0]);
        assert_eq!(
            log_ticks(0.9, 120.0),
            [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        );
        assert_eq!(log_ticks(1.0, 1e8).len(), 9);
    }
}
