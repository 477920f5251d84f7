//! The emulator itself: launches, argument checks, buffers.

use prune_kernels_emu::{kernel_names, kernel_params, launch, Arg, DevBuf, EmuError, Schedule};

#[test]
fn every_kernel_file_is_in_the_table() {
    let names = kernel_names();
    for k in [
        "sbp_forward",
        "masked_conv_fwd",
        "gather_channels_vec4",
        "base_gather_naive",
    ] {
        assert!(names.iter().any(|n| n == k), "{k} missing from {names:?}");
    }
    assert_eq!(kernel_params("fill_f32"), Some(vec![8, 4, 8]));
    assert_eq!(kernel_params("no_such_kernel"), None);
}

#[test]
fn grid_stride_fill_reaches_every_element() {
    for sched in [
        Schedule::Ascending,
        Schedule::Descending,
        Schedule::Shuffled(3),
    ] {
        let dst = DevBuf::<f32>::zeroed(1000).unwrap();
        launch(
            "fill_f32",
            [2, 1, 1],
            [256, 1, 1],
            &[dst.arg(), Arg::f32(2.5), Arg::i64(999)],
            sched,
        )
        .unwrap();
        let v = dst.to_vec();
        assert!(v[..999].iter().all(|&x| x == 2.5));
        assert_eq!(v[999], 0.0);
    }
}

#[test]
fn wrong_arguments_and_grids_are_errors() {
    let dst = DevBuf::<f32>::zeroed(4).unwrap();
    let e = launch(
        "fill_f32",
        [1, 1, 1],
        [32, 1, 1],
        &[dst.arg(), Arg::f32(1.0)],
        Schedule::Ascending,
    );
    assert!(matches!(e, Err(EmuError::Args { .. })), "{e:?}");
    let e = launch(
        "fill_f32",
        [1, 1, 1],
        [32, 1, 1],
        &[dst.arg(), Arg::f32(1.0), Arg::i32(4)],
        Schedule::Ascending,
    );
    assert!(matches!(e, Err(EmuError::Args { .. })), "{e:?}");
    let e = launch(
        "fill_f32",
        [1, 70_000, 1],
        [32, 1, 1],
        &[dst.arg(), Arg::f32(1.0), Arg::i64(4)],
        Schedule::Ascending,
    );
    assert!(matches!(e, Err(EmuError::Launch { .. })), "{e:?}");
    let e = launch("nope", [1, 1, 1], [32, 1, 1], &[], Schedule::Ascending);
    assert!(matches!(e, Err(EmuError::Launch { .. })), "{e:?}");
}

#[test]
fn buffers_round_trip() {
    let b = DevBuf::from_slice(&[1u32, 2, 3]).unwrap();
    assert_eq!(b.to_vec(), vec![1, 2, 3]);
    let e = DevBuf::<f32>::zeroed(0).unwrap();
    assert!(e.is_empty());
}

fn run_block(use_barrier: i32, sched: Schedule) -> Vec<f32> {
    let out = DevBuf::<f32>::zeroed(2 * 256).unwrap();
    launch(
        "pk_emu_selftest_block",
        [2, 1, 1],
        [256, 1, 1],
        &[out.arg(), Arg::i32(use_barrier)],
        sched,
    )
    .unwrap();
    out.to_vec()
}

#[test]
fn barriers_and_shuffles_behave_like_a_gpu() {
    // lane 0 of every warp holds 0 + 1 + ... + 31 = 496 after the shuffle tree
    let want: Vec<f32> = (0..512)
        .map(|e| ((e % 256 + 1) % 256 + 1) as f32 + 1000.0 * 496.0)
        .collect();
    for s in [
        Schedule::Ascending,
        Schedule::Descending,
        Schedule::Shuffled(9),
    ] {
        assert_eq!(run_block(1, s), want, "{s:?}");
    }
}

#[test]
fn a_missing_barrier_shows_as_schedule_dependence() {
    assert_ne!(
        run_block(0, Schedule::Ascending),
        run_block(0, Schedule::Descending)
    );
}

#[test]
fn a_shuffle_reached_by_part_of_a_warp_is_an_error() {
    let out = DevBuf::<f32>::zeroed(64).unwrap();
    let e = launch(
        "pk_emu_selftest_divergent",
        [1, 1, 1],
        [64, 1, 1],
        &[out.arg()],
        Schedule::Ascending,
    );
    match e {
        Err(EmuError::Launch { message, .. }) => assert!(message.contains("warp 0"), "{message}"),
        other => panic!("expected a launch error, got {other:?}"),
    }
}
