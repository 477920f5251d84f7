//! `kernels/gather.cu` and the naive gather of `kernels/baseline.cu` run on the CPU through
//! the launch emulation, against the CPU reference: float4 and scalar paths, several grid
//! columns per slice, weight layouts, scatter leaving or zeroing other channels.

mod common;
mod emu;

use common::Rng;
use emu::*;
use prune_kernels::cpu_ref::gather::{gather, scatter};
use prune_kernels::tiling::{gather_grid, BLOCK};
use prune_kernels::ChannelLayout;

fn layouts() -> Vec<ChannelLayout> {
    vec![
        ChannelLayout::nchw(3, 7, 5, 3),    // scalar, inner 15
        ChannelLayout::nchw(2, 16, 4, 4),   // float4
        ChannelLayout::nchw(2, 9, 7, 7),    // scalar 7x7
        ChannelLayout::nchw(4, 9, 1, 1),    // inner 1
        ChannelLayout::nchw(2, 40, 12, 12), // float4, row > 1024 units: several grid columns
        ChannelLayout::nchw(1, 30, 11, 11), // scalar, row > 1024
        ChannelLayout::weight_out_dim(6, 5, 3, 3),
        ChannelLayout::weight_in_dim(6, 5, 3, 3),
        ChannelLayout::nchw(3, 6, 1, 2), // inner 2
        ChannelLayout::nchw(2, 5, 2, 3), // inner 6
    ]
}

/// Launches the gather or scatter kernel the wrapper picks for this layout.
fn run(
    scatter_mode: bool,
    l: &ChannelLayout,
    keep: &[u32],
    src: &[f32],
    dst_init: &[f32],
    sched: Schedule,
) -> Vec<f32> {
    let vec4 = l.inner.is_multiple_of(4);
    let unit_inner = if vec4 { l.inner / 4 } else { l.inner };
    let row_units = keep.len() * unit_inner;
    let (s, k, d) = (buf(src), ubuf(keep), buf(dst_init));
    if l.outer > 0 && row_units > 0 {
        let name = match (scatter_mode, vec4) {
            (false, true) => "gather_channels_vec4",
            (false, false) => "gather_channels_f32",
            (true, true) => "scatter_channels_vec4",
            (true, false) => "scatter_channels_f32",
        };
        let (gx, gy) = gather_grid(l.outer, row_units);
        launch(
            name,
            [gx, gy, 1],
            [BLOCK, 1, 1],
            &[
                s.arg(),
                k.arg(),
                d.arg(),
                Arg::i32(l.outer as i32),
                Arg::i32(l.channels as i32),
                Arg::i32(keep.len() as i32),
                Arg::i32(unit_inner as i32),
            ],
            sched,
        )
        .unwrap();
    }
    d.to_vec()
}

#[test]
fn gather_and_scatter_match_reference() {
    let mut rng = Rng::fresh("emu gather_and_scatter_match_reference");
    for l in layouts() {
        let src = rng.vec(l.full_len().unwrap(), -1.0, 1.0);
        for k in [l.channels, 1, l.channels / 2, 0] {
            let keep = rng.subset(l.channels, k);
            let want = gather(&src, &l, &keep).unwrap();
            let init = vec![f32::NAN; want.len()];
            let got = all_schedules("gather", |s| vec![run(false, &l, &keep, &src, &init, s)]);
            assert_eq!(got[0], want, "gather {l:?} keep {keep:?}");

            let full_init = rng.vec(src.len(), 5.0, 6.0);
            let mut want_full = full_init.clone();
            scatter(&want, &l, &keep, &mut want_full).unwrap();
            let got = all_schedules("scatter", |s| {
                vec![run(true, &l, &keep, &want, &full_init, s)]
            });
            assert_eq!(got[0], want_full, "scatter {l:?} keep {keep:?}");
        }
    }
}

#[test]
fn naive_gather_matches_reference() {
    let mut rng = Rng::fresh("emu naive_gather_matches_reference");
    for l in layouts() {
        let src = rng.vec(l.full_len().unwrap(), -1.0, 1.0);
        let keep = rng.subset(l.channels, l.channels.div_ceil(3));
        let want = gather(&src, &l, &keep).unwrap();
        let got = all_schedules("base_gather_naive", |sched| {
            let (s, k, d) = (buf(&src), ubuf(&keep), nan_buf(want.len()));
            launch(
                "base_gather_naive",
                [want.len().div_ceil(256).max(1) as u32, 1, 1],
                [BLOCK, 1, 1],
                &[
                    s.arg(),
                    k.arg(),
                    d.arg(),
                    Arg::i64(want.len() as i64),
                    Arg::i32(l.channels as i32),
                    Arg::i32(keep.len() as i32),
                    Arg::i32(l.inner as i32),
                ],
                sched,
            )
            .unwrap();
            vec![d.to_vec()]
        });
        assert_eq!(got[0], want, "{l:?}");
    }
}

#[test]
fn fill_reaches_every_element() {
    for n in [1usize, 255, 256, 1000, 70_001] {
        let got = all_schedules("fill_f32", |sched| {
            let d = nan_buf(n + 1);
            launch(
                "fill_f32",
                [n.div_ceil(256).min(64) as u32, 1, 1],
                [BLOCK, 1, 1],
                &[d.arg(), Arg::f32(-3.5), Arg::i64(n as i64)],
                sched,
            )
            .unwrap();
            vec![d.to_vec()]
        });
        assert!(got[0][..n].iter().all(|&v| v == -3.5), "n = {n}");
        assert!(got[0][n].is_nan(), "fill wrote past n = {n}");
    }
}

/// The emulator's table (every `__global__` of kernels/*.cu) and the kernel lists the
/// crate loads by name agree, so every kernel the crate can launch is emulated and every
/// kernel file is known to the crate.
#[test]
fn emulated_kernels_are_the_crates_kernels() {
    use prune_kernels::KernelFile;
    let mut listed: Vec<String> = KernelFile::ALL
        .iter()
        .flat_map(|f| f.kernels().iter().map(|k| k.to_string()))
        .collect();
    let mut emulated = prune_kernels_emu::kernel_names();
    listed.sort();
    emulated.sort();
    assert_eq!(listed, emulated);
}
