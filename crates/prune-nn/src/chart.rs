//! Charts across and inside run directories (`prune-nn chart`), written as
//! `.svg` or `.png`:
//!
//! * [`accuracy_flops`]: one point per run — FLOPs reduction (dense FLOPs /
//!   pruned FLOPs, log axis) against test accuracy — with a line per
//!   method, dense runs drawn at reduction 1.
//! * [`kept_units`]: kept units per layer, epoch by epoch, from a pruning
//!   run's `sparse/kept.jsonl` ([`crate::trajectory`]).
//! * [`histograms`]: per-layer histograms of the score a pruning run
//!   decided on (log₁₀ SNR, γ), kept and pruned units in two colours and
//!   the threshold drawn, from the run's `masks.json`.

use crate::error::{Error, Result};
use crate::prune::Method;
use crate::report::method_name;
use crate::run::REPORT_FILE;
use crate::trajectory::{KeptRecord, KEPT_FILE};
use prune_reg::plot::{histogram_panels, line_chart, Format, LineChart, Panel, Series};
use prune_reg::Masks;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What one run directory contributes to the accuracy–FLOPs chart.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPoint {
    /// The run directory.
    pub dir: PathBuf,
    /// The model's name (zoo name or imported graph name).
    pub model: String,
    /// The pruning method; `None` for a dense (training) run.
    pub method: Option<Method>,
    /// Dense FLOPs / pruned FLOPs (1 for a dense run).
    pub flops_reduction: f64,
    /// Test accuracy of the run's final model, in [0, 1].
    pub test_accuracy: f64,
    /// For a pruning run, the test accuracy of the dense model it started from.
    pub dense_accuracy: Option<f64>,
}

fn not_a_run(dir: &Path, why: &str) -> Error {
    Error::Usage(format!(
        "{} is not a run directory: {why} (charts read the output of `prune-nn train` or \
         `prune-nn prune`)",
        dir.display()
    ))
}

/// Reads `dir/report.json` as JSON.
fn read_report(dir: &Path) -> Result<Value> {
    if !dir.is_dir() {
        return Err(not_a_run(dir, "no such directory"));
    }
    let path = dir.join(REPORT_FILE);
    if !path.is_file() {
        return Err(not_a_run(dir, "it has no report.json"));
    }
    let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let v: Value = serde_json::from_slice(&text).map_err(|e| Error::io(&path, e))?;
    if !v.is_object() {
        return Err(Error::io(&path, "not a JSON object"));
    }
    Ok(v)
}

fn number(v: &Value, path: &Path, field: &str, kind: &str) -> Result<f64> {
    match v.get(field) {
        Some(x) => x.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
            Error::io(
                path,
                format!("field '{field}' of this {kind} is not a finite number"),
            )
        }),
        None => Err(Error::io(
            path,
            format!("this {kind} has no field '{field}'"),
        )),
    }
}

/// Reads the point of one run directory: a pruning report (it has a
/// `method`) or a training report (`test_accuracy`, no method).
pub fn run_point(dir: &Path) -> Result<RunPoint> {
    let v = read_report(dir)?;
    let path = dir.join(REPORT_FILE);
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("model")
        .to_string();
    match v.get("method") {
        Some(m) => {
            let method: Method = serde_json::from_value(m.clone()).map_err(|e| {
                Error::io(
                    &path,
                    format!("field 'method' is not a pruning method: {e}"),
                )
            })?;
            let kind = "pruning report";
            let flops_reduction = number(&v, &path, "flops_reduction", kind)?;
            if flops_reduction <= 0.0 {
                return Err(Error::io(&path, "field 'flops_reduction' is not positive"));
            }
            Ok(RunPoint {
                dir: dir.to_path_buf(),
                model,
                method: Some(method),
                flops_reduction,
                test_accuracy: number(&v, &path, "test_accuracy_after", kind)?,
                dense_accuracy: Some(number(&v, &path, "test_accuracy_before", kind)?),
            })
        }
        None if v.get("test_accuracy").is_some() => Ok(RunPoint {
            dir: dir.to_path_buf(),
            model,
            method: None,
            flops_reduction: 1.0,
            test_accuracy: number(&v, &path, "test_accuracy", "training report")?,
            dense_accuracy: None,
        }),
        None => Err(Error::io(
            &path,
            "neither a pruning report (no field 'method') nor a training report (no field \
             'test_accuracy'); an imported model has no accuracy until it is trained or pruned",
        )),
    }
}

/// The accuracy–FLOPs chart of `points`: a line per (model, method), the
/// points of a line in order of FLOPs reduction, and the dense runs as
/// markers at reduction 1. Without dense runs the dense accuracies that the
/// pruning reports start from are drawn instead.
pub fn accuracy_flops_chart(points: &[RunPoint]) -> LineChart {
    let models: std::collections::BTreeSet<&str> =
        points.iter().map(|p| p.model.as_str()).collect();
    let name = |base: &str, model: &str| {
        if models.len() > 1 {
            format!("{base} ({model})")
        } else {
            base.to_string()
        }
    };
    let mut dense: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let have_dense = points.iter().any(|p| p.method.is_none());
    for p in points {
        let acc = 100.0 * p.test_accuracy;
        match p.method {
            None => dense
                .entry(name("dense", &p.model))
                .or_default()
                .push((1.0, acc)),
            Some(m) => {
                lines
                    .entry(name(method_name(m), &p.model))
                    .or_default()
                    .push((p.flops_reduction, acc));
                if let (false, Some(d)) = (have_dense, p.dense_accuracy) {
                    let e = dense.entry(name("dense", &p.model)).or_default();
                    if !e.iter().any(|&(_, y)| (y - 100.0 * d).abs() < 1e-9) {
                        e.push((1.0, 100.0 * d));
                    }
                }
            }
        }
    }
    let mut series: Vec<Series> = dense
        .into_iter()
        .map(|(name, points)| Series {
            name,
            points,
            line: false,
        })
        .collect();
    for (name, mut points) in lines {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.push(Series {
            name,
            points,
            line: true,
        });
    }
    LineChart {
        title: "Test accuracy against FLOPs reduction".into(),
        x_label: "FLOPs reduction (dense / pruned, log scale)".into(),
        y_label: "test accuracy (%)".into(),
        x_log: true,
        y_log: false,
        x_integer: false,
        y_integer: false,
        series,
    }
}

/// `prune-nn chart accuracy-flops`: one point per run directory, written to
/// `out` (`.svg` or `.png`).
pub fn accuracy_flops(runs: &[PathBuf], out: &Path) -> Result<()> {
    Format::of(out)?;
    if runs.is_empty() {
        return Err(Error::Usage(
            "accuracy-flops needs at least one run directory".into(),
        ));
    }
    let points = runs
        .iter()
        .map(|d| run_point(d))
        .collect::<Result<Vec<_>>>()?;
    line_chart(&accuracy_flops_chart(&points), out)?;
    Ok(())
}

/// The `kept.jsonl` of a pruning run (in `sparse/`) or of a sparse-training
/// directory itself.
pub fn kept_file(dir: &Path) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(not_a_run(dir, "no such directory"));
    }
    let candidates = [dir.join("sparse").join(KEPT_FILE), dir.join(KEPT_FILE)];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            Error::Usage(format!(
                "{} has no kept-units trajectory: neither {} nor {} exists (it is written \
             during sparse training by `prune-nn prune`)",
                dir.display(),
                candidates[0].display(),
                candidates[1].display()
            ))
        })
}

/// Reads a `kept.jsonl`, naming the line of a malformed record.
pub fn read_trajectory(path: &Path) -> Result<Vec<KeptRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r: KeptRecord = serde_json::from_str(line)
            .map_err(|e| Error::io(path, format!("line {}: {e}", i + 1)))?;
        records.push(r);
    }
    if records.is_empty() {
        return Err(Error::io(
            path,
            "no records: sparse training stopped before its first epoch ended",
        ));
    }
    Ok(records)
}

/// The kept-units chart of `records`: one line per layer, epochs on x.
pub fn kept_units_chart(records: &[KeptRecord], title: &str) -> LineChart {
    let mut layers: Vec<String> = Vec::new();
    for r in records {
        for name in r.kept.keys() {
            if !layers.contains(name) {
                layers.push(name.clone());
            }
        }
    }
    let series: Vec<Series> = layers
        .into_iter()
        .map(|name| {
            let points = records
                .iter()
                .filter_map(|r| r.kept.get(&name).map(|&k| (r.epoch as f64, k as f64)))
                .collect();
            Series {
                name,
                points,
                line: true,
            }
        })
        .collect();
    // Layers of very different widths (LeNet5: 20 filters beside 800 fully
    // connected inputs) share a log axis so the narrow ones stay readable.
    let (lo, hi) = series
        .iter()
        .flat_map(|s: &Series| s.points.iter().map(|p| p.1))
        .fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let y_log = lo >= 1.0 && hi / lo > 20.0;
    LineChart {
        title: title.to_string(),
        x_label: "epoch of sparse training".into(),
        y_label: if y_log {
            "kept units (log scale)".into()
        } else {
            "kept units".into()
        },
        x_log: false,
        y_log,
        x_integer: true,
        y_integer: true,
        series,
    }
}

/// `prune-nn chart kept-units`: kept units per layer over the epochs of a
/// pruning run's sparse training, written to `out` (`.svg` or `.png`).
pub fn kept_units(run: &Path, out: &Path) -> Result<()> {
    Format::of(out)?;
    let path = kept_file(run)?;
    let records = read_trajectory(&path)?;
    let title = match read_report(run).ok().and_then(|v| {
        let m: Method = serde_json::from_value(v.get("method")?.clone()).ok()?;
        let model = v.get("model")?.as_str()?.to_string();
        Some(format!("{model}, {}", method_name(m)))
    }) {
        Some(what) => format!("Kept units per layer during sparse training: {what}"),
        None => "Kept units per layer during sparse training".to_string(),
    };
    line_chart(&kept_units_chart(records.as_slice(), &title), out)?;
    Ok(())
}

/// `prune-nn chart histograms`: per-layer histograms of the scores in a
/// pruning run's `masks.json` — log₁₀ SNR for SBP (threshold SNR = 1), γ
/// for polarization and slimming (the threshold drawn halfway between the
/// largest pruned and the smallest kept γ, where the rule cut) — with kept
/// and pruned units in two colours, written to `out` (`.svg` or `.png`).
pub fn histograms(run: &Path, out: &Path) -> Result<()> {
    Format::of(out)?;
    let v = read_report(run)?;
    let report = run.join(REPORT_FILE);
    let method: Method = match v.get("method") {
        Some(m) => serde_json::from_value(m.clone())
            .map_err(|e| Error::io(&report, format!("field 'method': {e}")))?,
        None => {
            return Err(Error::io(
                &report,
                "not a pruning report (no field 'method')",
            ))
        }
    };
    let masks_path = run.join("masks.json");
    if !masks_path.is_file() {
        return Err(not_a_run(run, "it has no masks.json"));
    }
    let masks = Masks::load_json(&masks_path)?;
    let sbp = method == Method::Sbp;
    let values: Vec<Vec<f32>> = masks
        .layers
        .iter()
        .map(|l| {
            if sbp {
                l.scores.iter().map(|s| s.max(1e-12).log10()).collect()
            } else {
                l.scores.clone()
            }
        })
        .collect();
    let panels: Vec<Panel<'_>> = masks
        .layers
        .iter()
        .zip(&values)
        .map(|(l, v)| Panel {
            name: &l.name,
            values: v,
            kept: Some(&l.keep),
            threshold: if sbp { Some(0.0) } else { cut(v, &l.keep) },
        })
        .collect();
    let (title, x_label, threshold) = if sbp {
        (
            "SBP signal-to-noise ratio per unit",
            "log10 SNR (units with SNR > 1 are kept)",
            "SNR = 1",
        )
    } else {
        ("Scale factors per layer", "|gamma|", "threshold")
    };
    histogram_panels(&panels, 50, title, x_label, threshold, out)?;
    Ok(())
}

/// Halfway between the largest pruned and the smallest kept score, when
/// every pruned score lies below every kept one (the rule cut there);
/// `None` when a layer keeps or prunes everything.
pub(crate) fn cut(values: &[f32], keep: &[bool]) -> Option<f64> {
    let pruned = values
        .iter()
        .zip(keep)
        .filter(|(_, &k)| !k)
        .map(|(&v, _)| v)
        .fold(f32::NEG_INFINITY, f32::max);
    let kept = values
        .iter()
        .zip(keep)
        .filter(|(_, &k)| k)
        .map(|(&v, _)| v)
        .fold(f32::INFINITY, f32::min);
    (pruned.is_finite() && kept.is_finite() && pruned <= kept)
        .then(|| 0.5 * (f64::from(pruned) + f64::from(kept)))
}
