//! Charts are written as SVG and PNG, show the threshold and the kept and
//! pruned units, render text from the embedded font (no system fonts), and
//! bad inputs are errors.

use prune_reg::plot::{
    histogram, histogram_grid, histogram_panels, line_chart, needs_log_axis, LineChart, Panel,
    Series,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

#[test]
fn histogram_writes_an_svg() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gammas.svg");
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let v: Vec<f32> = (0..500).map(|_| rng.random::<f32>().powi(3)).collect();
    histogram(&v, 100, "BN scales", "gamma", &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.len() > 1000);
    assert!(text.contains("<svg") && text.contains("BN scales") && text.contains("gamma"));
    assert!(text.matches("<rect").count() >= 50, "bars missing");
    // A constant input still has a drawable range.
    histogram(&[0.5; 10], 10, "flat", "x", dir.path().join("flat.svg")).unwrap();
}

#[test]
fn grid_has_one_panel_per_layer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grid.svg");
    let a: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
    let b: Vec<f32> = (0..50).map(|i| (i % 7) as f32).collect();
    let c = [1.0f32, 2.0, 2.0, 3.0];
    histogram_grid(
        &[("layer_a", &a), ("layer_b", &b), ("layer_c", &c)],
        20,
        "SNR per layer",
        "log10 SNR",
        &path,
    )
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    for name in ["layer_a", "layer_b", "layer_c", "SNR per layer"] {
        assert!(text.contains(name), "{name} missing");
    }
}

/// fc1 of a pruned LeNet5 in miniature: 600 units in a spike far below
/// SNR = 1, 100 kept units spread above it.
fn snr_layer() -> (Vec<f32>, Vec<bool>) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut v: Vec<f32> = (0..600)
        .map(|_| -3.0 - 0.05 * rng.random::<f32>())
        .collect();
    v.extend((0..100).map(|_| 0.2 + 1.5 * rng.random::<f32>()));
    let kept = v.iter().map(|&x| x > 0.0).collect();
    (v, kept)
}

#[test]
fn threshold_and_kept_units_are_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snr.svg");
    let (v, kept) = snr_layer();
    let panel = Panel {
        name: "fc1.sbp",
        values: &v,
        kept: Some(&kept),
        threshold: Some(0.0),
    };
    histogram_panels(&[panel], 50, "SBP", "log10 SNR", "SNR = 1", &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    for s in ["kept (100)", "pruned (600)", "SNR = 1", "100 of 700 kept"] {
        assert!(text.contains(s), "'{s}' missing");
    }
    // The spike dwarfs the kept units, so the count axis is logarithmic.
    assert!(text.contains("count (log scale)"));
    // Kept (blue) and pruned (orange) bars.
    assert!(text.contains("#1F77B4") && text.contains("#FF7F0E"));
}

#[test]
fn log_axis_only_when_one_bin_dwarfs_the_rest() {
    assert!(needs_log_axis(&[600, 0, 3, 5, 4, 2, 6]));
    assert!(!needs_log_axis(&[10, 12, 9, 14, 3]));
    assert!(!needs_log_axis(&[0, 40, 0]));
    assert!(!needs_log_axis(&[]));
    // A spike of a dozen units still reads well on a linear axis.
    assert!(!needs_log_axis(&[12, 1, 1, 1, 0]));
}

/// Decodes an RGB(A) PNG into (width, height, rgb pixels).
fn decode(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let px = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (info.width, info.height, px)
}

/// PNG text comes from the font embedded in the crate: plotters' glyph
/// renderer here reads no system font, so dark pixels in the title band
/// (where nothing but the title is drawn) show the glyphs were rasterised.
#[test]
fn png_histogram_renders_text_and_both_colours() {
    let dir = tempfile::tempdir().unwrap();
    let (v, kept) = snr_layer();
    let panel = Panel {
        name: "fc1.sbp",
        values: &v,
        kept: Some(&kept),
        threshold: Some(0.0),
    };
    let titled = dir.path().join("snr.png");
    histogram_panels(&[panel], 50, "SBP", "log10 SNR", "SNR = 1", &titled).unwrap();
    let (w, h, px) = decode(&titled);
    assert_eq!((w, h), (800, 500));
    let dark = |p: &[u8; 3]| p.iter().all(|&c| c < 100);
    let title_band = px[..(w * 28) as usize].iter().filter(|p| dark(p)).count();
    assert!(
        title_band > 50,
        "title not rendered: {title_band} dark pixels"
    );
    let near = |p: &[u8; 3], c: [u8; 3]| p.iter().zip(c).all(|(&a, b)| a.abs_diff(b) < 8);
    let blue = px.iter().filter(|p| near(p, [31, 119, 180])).count();
    let orange = px.iter().filter(|p| near(p, [255, 127, 14])).count();
    assert!(blue > 100 && orange > 100, "blue {blue}, orange {orange}");

    // The grid form and the plain histogram write PNGs too.
    let a: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
    let grid = dir.path().join("grid.PNG");
    histogram_grid(&[("a", &a), ("b", &a)], 20, "grid", "x", &grid).unwrap();
    let (gw, gh, _) = decode(&grid);
    assert!(gw > 800 && gh > 300);
    histogram(&a, 10, "plain", "x", dir.path().join("plain.png")).unwrap();
}

fn chart(series: Vec<Series>, x_log: bool) -> LineChart {
    LineChart {
        title: "Accuracy against FLOPs".into(),
        x_label: "FLOPs reduction".into(),
        y_label: "test accuracy".into(),
        x_log,
        y_log: false,
        x_integer: false,
        y_integer: false,
        series,
    }
}

#[test]
fn line_charts_in_both_formats() {
    let dir = tempfile::tempdir().unwrap();
    let c = chart(
        vec![
            Series {
                name: "dense".into(),
                points: vec![(1.0, 0.99)],
                line: false,
            },
            Series {
                name: "SBP".into(),
                points: vec![(2.4, 0.985), (5.0, 0.97)],
                line: true,
            },
            Series {
                name: "polarization".into(),
                points: vec![(1.8, 0.989)],
                line: true,
            },
        ],
        true,
    );
    let svg = dir.path().join("acc.svg");
    line_chart(&c, &svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    for s in ["dense", "SBP", "polarization", "FLOPs reduction"] {
        assert!(text.contains(s), "{s} missing");
    }
    let png = dir.path().join("acc.png");
    line_chart(&c, &png).unwrap();
    let (w, h, px) = decode(&png);
    assert_eq!((w, h), (800, 500));
    assert!(px.iter().any(|p| p == &[255, 127, 14]), "SBP line missing");
}

#[test]
fn bad_chart_requests_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let v = [0.1f32, 0.2];
    let err = |r: prune_reg::Result<()>| r.unwrap_err().to_string();
    let e = err(histogram(&v, 10, "t", "x", dir.path().join("a.jpg")));
    assert!(e.contains(".jpg") && e.contains(".svg or .png"), "{e}");
    assert!(histogram(&v, 10, "t", "x", dir.path().join("noext")).is_err());
    assert!(histogram(&[], 10, "t", "x", dir.path().join("e.svg")).is_err());
    assert!(histogram(&[f32::NAN], 10, "t", "x", dir.path().join("n.svg")).is_err());
    assert!(histogram(&v, 0, "t", "x", dir.path().join("z.svg")).is_err());
    assert!(histogram_grid(&[], 10, "t", "x", dir.path().join("g.svg")).is_err());
    let short = [true];
    let p = Panel {
        kept: Some(&short),
        ..Panel::new("l", &v)
    };
    let e = err(histogram_panels(
        &[p],
        5,
        "t",
        "x",
        "",
        dir.path().join("m.svg"),
    ));
    assert!(e.contains("length mismatch"), "{e}");
    let e = err(line_chart(&chart(vec![], false), dir.path().join("l.svg")));
    assert!(e.contains("no points"), "{e}");
    let neg = Series {
        name: "s".into(),
        points: vec![(0.0, 1.0)],
        line: false,
    };
    let e = err(line_chart(
        &chart(vec![neg], true),
        dir.path().join("l.svg"),
    ));
    assert!(e.contains("log axis"), "{e}");
    assert!(!dir.path().join("l.svg").exists());
}
