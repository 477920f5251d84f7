//! The first-local-minimum histogram threshold of polarized scale factors.

use prune_reg::threshold::{
    histogram_counts, histogram_threshold, polarization_masks, threshold_from_counts,
    ThresholdMode, DEFAULT_BINS,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Polarized scales: `low` in the first bin (near 0, as after clamping) and
/// `high` spread over the top 5 % below `top`.
fn bimodal(rng: &mut ChaCha8Rng, low: usize, high: usize, top: f32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..low).map(|_| rng.random_range(0.0f32..0.008)).collect();
    v.extend((0..high).map(|_| rng.random_range(top - 0.05..=top)));
    v
}

#[test]
fn bimodal_scales_are_split_between_the_clusters() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let g = bimodal(&mut rng, 600, 400, 1.0);
    let th = histogram_threshold(&g, DEFAULT_BINS, 1.0).unwrap();
    assert!(th.found);
    assert!(
        th.threshold >= 0.008 && th.threshold < 0.95,
        "{}",
        th.threshold
    );
    assert_eq!(g.iter().filter(|&&x| x > th.threshold).count(), 400);
    assert_eq!(th.counts.iter().sum::<usize>(), 1000);
}

#[test]
fn rule_takes_the_left_edge_of_the_bin_after_the_first_valley() {
    // counts 5 3 3 4 …: diff = -2, 0, 1: first i with diff[i] ≤ 0 ≤ diff[i+1] is 0.
    let mut counts = vec![0usize; 10];
    counts[..4].copy_from_slice(&[5, 3, 3, 4]);
    counts[9] = 7;
    let th = threshold_from_counts(&counts, 1.0);
    assert!(th.found);
    assert!((th.threshold - 0.1).abs() < 1e-7);
    // 9 7 4 1 0 0 …: the first i with diff[i] ≤ 0 ≤ diff[i+1] is 3 (-1 then 0).
    let counts = [9usize, 7, 4, 1, 0, 0, 0, 2, 5, 9];
    let th = threshold_from_counts(&counts, 1.0);
    assert!((th.threshold - 0.4).abs() < 1e-7, "{}", th.threshold);
}

#[test]
fn a_spread_out_low_cluster_stops_the_scan_at_its_first_dip() {
    // The rule takes the first valley from the left, even inside a cluster that
    // spans several bins: counts 22 17 21 0 … 40 → threshold at bin 1.
    let mut counts = vec![0usize; 100];
    counts[..3].copy_from_slice(&[22, 17, 21]);
    counts[97] = 40;
    let th = threshold_from_counts(&counts, 1.0);
    assert!((th.threshold - 0.01).abs() < 1e-7);
}

#[test]
fn no_valley_falls_back_to_zero() {
    let rising: Vec<usize> = (1..=20).collect();
    let th = threshold_from_counts(&rising, 1.0);
    assert!(!th.found);
    assert_eq!(th.threshold, 0.0);
    let falling: Vec<usize> = (1..=20).rev().collect();
    assert!(!threshold_from_counts(&falling, 1.0).found);
    assert!(!threshold_from_counts(&[3, 1], 1.0).found);
}

#[test]
fn histogram_bins_edges_and_out_of_range_values() {
    let counts = histogram_counts(&[0.0f32, 0.0099, 0.015, 1.0, 1.3, -0.2], 100, 1.0);
    assert_eq!(counts[0], 3); // 0, 0.0099 and the clamped -0.2
    assert_eq!(counts[1], 1);
    assert_eq!(counts[99], 2); // γ = a and the clamped 1.3
    assert!(histogram_threshold(&[f32::NAN], 100, 1.0).is_err());
    assert!(histogram_threshold(&[0.5], 0, 1.0).is_err());
    assert!(histogram_threshold(&[0.5], 10, 0.0).is_err());
}

#[test]
fn per_layer_and_global_modes() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let a = bimodal(&mut rng, 60, 40, 1.0);
    let b = bimodal(&mut rng, 30, 70, 0.5);
    let layers = [("a", a.as_slice()), ("b", b.as_slice())];
    let (m, th) = polarization_masks(&layers, ThresholdMode::PerLayer, 100, 1.0).unwrap();
    assert_eq!(m.layers[0].kept(), 40);
    assert_eq!(m.layers[1].kept(), 70);
    assert_ne!(th[0].counts, th[1].counts);
    let (g, thg) = polarization_masks(&layers, ThresholdMode::Global, 100, 1.0).unwrap();
    assert_eq!(thg[0], thg[1]);
    assert_eq!(thg[0].counts.iter().sum::<usize>(), 200);
    assert_eq!(g.kept(), 110);
    assert_eq!(g.layers[1].scores, b);
}

#[test]
fn a_layer_below_the_global_threshold_keeps_its_best_unit() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let a = bimodal(&mut rng, 60, 40, 1.0);
    let dead = [0.001f32, 0.005, 0.004];
    let layers = [("a", a.as_slice()), ("dead", dead.as_slice())];
    let (m, _) = polarization_masks(&layers, ThresholdMode::Global, 100, 1.0).unwrap();
    let d = m.get("dead").unwrap();
    assert!(d.forced);
    assert_eq!(d.keep, vec![false, true, false]);
    assert!(!m.get("a").unwrap().forced);
}
