//! Network slimming: L1 penalty and the global percentile cut.

use prune_reg::slimming::{l1_value_and_grad, prune_count, slimming_masks, slimming_threshold};

#[test]
fn l1_value_and_subgradient() {
    let a = [0.5f32, -0.25, 0.0];
    let b = [2.0f32];
    let (v, g) = l1_value_and_grad(&[&a, &b], 0.1).unwrap();
    assert!((v - 0.275).abs() < 1e-12);
    assert_eq!(g, vec![vec![0.1f32, -0.1, 0.0], vec![0.1]]);
    assert!(l1_value_and_grad(&[&a], -1.0).is_err());
    assert!(l1_value_and_grad(&[&[f32::NAN]], 1.0).is_err());
}

#[test]
fn ties_are_broken_by_layer_then_index() {
    let a = [0.1f32, 0.2, 0.1];
    let b = [0.1f32, 0.3];
    let layers = [("a", a.as_slice()), ("b", b.as_slice())];
    // 40 % of 5 = 2 units: the two 0.1s of layer a go first.
    let m = slimming_masks(&layers, 40.0).unwrap();
    assert_eq!(m.layers[0].keep, vec![false, true, false]);
    assert_eq!(m.layers[1].keep, vec![true, true]);
    // 60 % = 3: then b[0].
    let m = slimming_masks(&layers, 60.0).unwrap();
    assert_eq!(m.layers[1].keep, vec![false, true]);
    assert_eq!(slimming_threshold(&layers, 60.0).unwrap(), Some(0.1));
}

#[test]
fn zero_and_hundred_percent() {
    let a = [0.3f32, -0.9, 0.2];
    let b = [0.05f32, 0.01];
    let layers = [("a", a.as_slice()), ("b", b.as_slice())];
    let m = slimming_masks(&layers, 0.0).unwrap();
    assert_eq!(m.kept(), 5);
    assert!(m.layers.iter().all(|l| !l.forced));
    assert_eq!(slimming_threshold(&layers, 0.0).unwrap(), None);
    let m = slimming_masks(&layers, 100.0).unwrap();
    // Each layer keeps its largest |γ| and is flagged forced.
    assert_eq!(m.layers[0].keep, vec![false, true, false]);
    assert_eq!(m.layers[1].keep, vec![true, false]);
    assert!(m.layers.iter().all(|l| l.forced));
    assert_eq!(m.layers[0].scores, vec![0.3, 0.9, 0.2]);
}

#[test]
fn counts_round_half_away_from_zero_and_reject_bad_input() {
    assert_eq!(prune_count(5, 50.0).unwrap(), 3);
    assert_eq!(prune_count(5, 49.0).unwrap(), 2);
    assert_eq!(prune_count(7, 100.0).unwrap(), 7);
    assert_eq!(prune_count(0, 30.0).unwrap(), 0);
    assert!(prune_count(5, 100.5).is_err());
    assert!(prune_count(5, -1.0).is_err());
    assert!(prune_count(5, f64::NAN).is_err());
    let a = [0.3f32, f32::INFINITY];
    assert!(slimming_masks(&[("a", a.as_slice())], 10.0).is_err());
    assert!(slimming_masks(&[("e", [].as_slice())], 10.0).is_err());
}

#[test]
fn a_layer_emptied_by_the_global_cut_is_forced() {
    let big = [1.0f32, 0.9, 0.8, 0.7];
    let small = [0.01f32, 0.02];
    let layers = [("big", big.as_slice()), ("small", small.as_slice())];
    let m = slimming_masks(&layers, 34.0).unwrap(); // round(0.34·6) = 2
    let s = m.get("small").unwrap();
    assert!(s.forced);
    assert_eq!(s.keep, vec![false, true]);
    assert_eq!(m.get("big").unwrap().kept(), 4);
}
