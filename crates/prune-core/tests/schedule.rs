//! Learning-rate schedules against values written out by hand.

use prune_core::optim::LrSchedule;

#[test]
fn steps_multiply_cumulatively() {
    // The polarization paper's sparsity-training schedule: 0.01, then x10 at
    // epoch 1 and x0.2 at 60, 120 and 160.
    let s = LrSchedule::Steps {
        milestones: vec![1, 60, 120, 160],
        gammas: vec![10.0, 0.2, 0.2, 0.2],
    };
    let got: Vec<f32> = [0, 1, 59, 60, 120, 160, 199]
        .iter()
        .map(|&e| s.lr(0.01, e))
        .collect();
    let want = [0.01, 0.1, 0.1, 0.02, 0.004, 0.0008, 0.0008];
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-7 * w.max(1.0), "{got:?} vs {want:?}");
    }
    assert!(s.validate().is_ok());
}

#[test]
fn linear_decay_matches_the_reference_policy() {
    // lr(e) = 1e-3 for e < 100, then 1e-3 (200 - e) / 100.
    let s = LrSchedule::LinearDecay {
        start_epoch: 100,
        total_epochs: 200,
    };
    for e in [0usize, 50, 99, 100, 150, 199, 200, 250] {
        let want = if e < 100 {
            1e-3
        } else {
            1e-3 * (200.0 - e.min(200) as f32) / 100.0
        };
        assert!((s.lr(1e-3, e) - want).abs() < 1e-9, "epoch {e}");
    }
}

#[test]
fn inconsistent_schedules_are_rejected() {
    let s = LrSchedule::Steps {
        milestones: vec![1, 2],
        gammas: vec![0.1],
    };
    assert!(s
        .validate()
        .unwrap_err()
        .contains("one factor per milestone"));
    let l = LrSchedule::LinearDecay {
        start_epoch: 5,
        total_epochs: 5,
    };
    assert!(l.validate().is_err());
}
