//! Layer masks, the no-empty-layer rule and the JSON file.

use prune_reg::{LayerMask, Masks, RegError};

fn sample_masks() -> Masks {
    Masks::new(vec![
        LayerMask::from_decision("conv1", vec![true, false, true], vec![0.9, 0.1, 0.5]).unwrap(),
        LayerMask::from_decision("conv2", vec![false, false], vec![0.2, 0.2]).unwrap(),
    ])
}

#[test]
fn empty_decisions_keep_the_best_unit() {
    let m = sample_masks();
    let c2 = m.get("conv2").unwrap();
    assert!(c2.forced);
    assert_eq!(c2.keep, vec![true, false]); // ties: lowest index
    assert!(!m.get("conv1").unwrap().forced);
    assert_eq!(m.kept(), 3);
    assert_eq!(m.total(), 5);
    assert_eq!(m.get("conv1").unwrap().kept_indices(), vec![0, 2]);
    let mut l = LayerMask {
        name: "x".into(),
        keep: vec![false, false, false],
        scores: vec![0.1, 0.7, 0.3],
        forced: false,
    };
    assert!(l.ensure_not_empty());
    assert_eq!(l.keep, vec![false, true, false]);
    assert!(!l.ensure_not_empty());
}

#[test]
fn bad_decisions_are_rejected() {
    assert!(matches!(
        LayerMask::from_decision("a", vec![true], vec![0.1, 0.2]),
        Err(RegError::LengthMismatch { .. })
    ));
    assert!(matches!(
        LayerMask::from_decision("a", vec![], vec![]),
        Err(RegError::Empty { .. })
    ));
    assert!(matches!(
        LayerMask::from_decision("a", vec![true], vec![f32::NAN]),
        Err(RegError::NonFinite { .. })
    ));
}

#[test]
fn json_round_trip_is_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("masks.json");
    let m = sample_masks();
    m.save_json(&path).unwrap();
    // Overwrite in place: the rename replaces the previous file.
    m.save_json(&path).unwrap();
    let back = Masks::load_json(&path).unwrap();
    assert_eq!(back, m);
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "temporary file left behind");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"forced\": true") && text.contains("\"conv2\""));
}

#[test]
fn invalid_files_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.json");
    let err = Masks::load_json(&missing).unwrap_err();
    assert!(matches!(err, RegError::Io { .. }));
    assert!(err.to_string().contains("none.json"));
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"layers\": [{\"name\": 3}]}").unwrap();
    assert!(matches!(
        Masks::load_json(&bad).unwrap_err(),
        RegError::Json { .. }
    ));
    let empty_keep = dir.path().join("empty.json");
    std::fs::write(
        &empty_keep,
        r#"{"layers":[{"name":"c","keep":[false,false],"scores":[1,2],"forced":false}]}"#,
    )
    .unwrap();
    let err = Masks::load_json(&empty_keep).unwrap_err();
    assert!(matches!(err, RegError::InvalidMasks { .. }));
    assert!(err.to_string().contains("keeps no unit"), "{err}");
    let dup = dir.path().join("dup.json");
    std::fs::write(
        &dup,
        r#"{"layers":[{"name":"c","keep":[true],"scores":[1],"forced":false},
                      {"name":"c","keep":[true],"scores":[1],"forced":false}]}"#,
    )
    .unwrap();
    assert!(Masks::load_json(&dup)
        .unwrap_err()
        .to_string()
        .contains("twice"));
    let in_missing_dir = dir.path().join("no/such/dir/m.json");
    assert!(matches!(
        sample_masks().save_json(&in_missing_dir),
        Err(RegError::Io { .. })
    ));
}
