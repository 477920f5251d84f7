//! SVG histograms are written and non-empty; bad inputs are errors.

use prune_reg::plot::{histogram, histogram_grid};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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

#[test]
fn bad_plot_requests_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let v = [0.1f32, 0.2];
    assert!(histogram(&v, 10, "t", "x", dir.path().join("a.png")).is_err());
    assert!(histogram(&v, 10, "t", "x", dir.path().join("noext")).is_err());
    assert!(histogram(&[], 10, "t", "x", dir.path().join("e.svg")).is_err());
    assert!(histogram(&[f32::NAN], 10, "t", "x", dir.path().join("n.svg")).is_err());
    assert!(histogram(&v, 0, "t", "x", dir.path().join("z.svg")).is_err());
    assert!(histogram_grid(&[], 10, "t", "x", dir.path().join("g.svg")).is_err());
}
