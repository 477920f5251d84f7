//! CPU reference of channel gather / scatter: round trips and validation.

mod common;

use common::Rng;
use prune_kernels::cpu_ref::gather::{gather, scatter};
use prune_kernels::ChannelLayout;

fn layouts() -> Vec<ChannelLayout> {
    vec![
        ChannelLayout::nchw(3, 7, 5, 3),
        ChannelLayout::nchw(2, 16, 4, 4),
        ChannelLayout::nchw(4, 9, 1, 1),
        ChannelLayout::weight_out_dim(6, 5, 3, 3),
        ChannelLayout::weight_in_dim(6, 5, 3, 3),
        ChannelLayout::weight_in_dim(4, 11, 1, 1),
    ]
}

#[test]
fn gather_then_scatter_restores_kept_channels() {
    let mut rng = Rng::fresh("gather_then_scatter_restores_kept_channels");
    for l in layouts() {
        let src = rng.vec(l.full_len().unwrap(), -1.0, 1.0);
        for k in [0, 1, l.channels / 2, l.channels] {
            let keep = rng.subset(l.channels, k);
            let compact = gather(&src, &l, &keep).unwrap();
            assert_eq!(compact.len(), l.compact_len(k).unwrap());
            let mut back = vec![0.0f32; src.len()];
            scatter(&compact, &l, &keep, &mut back).unwrap();
            for (i, (&b, &s)) in back.iter().zip(&src).enumerate() {
                let c = (i / l.inner) % l.channels;
                let want = if keep.contains(&(c as u32)) { s } else { 0.0 };
                assert_eq!(b, want, "{l:?} keep {keep:?} at {i}");
            }
            // scatter then gather is the identity on the compact tensor
            assert_eq!(gather(&back, &l, &keep).unwrap(), compact);
        }
    }
}

#[test]
fn gather_follows_list_order() {
    let l = ChannelLayout::nchw(1, 4, 1, 2);
    let src: Vec<f32> = (0..8).map(|v| v as f32).collect();
    assert_eq!(gather(&src, &l, &[3, 1]).unwrap(), vec![6.0, 7.0, 2.0, 3.0]);
}

#[test]
fn scatter_keeps_other_channels() {
    let l = ChannelLayout::weight_in_dim(2, 3, 1, 1);
    let mut dst = vec![9.0f32; 6];
    scatter(&[1.0, 2.0], &l, &[1], &mut dst).unwrap();
    assert_eq!(dst, vec![9.0, 1.0, 9.0, 9.0, 2.0, 9.0]);
}

#[test]
fn invalid_lists_and_lengths_are_rejected() {
    let l = ChannelLayout::nchw(2, 3, 2, 2);
    let src = vec![0.0f32; 24];
    assert!(gather(&src, &l, &[3])
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    assert!(gather(&src, &l, &[1, 1])
        .unwrap_err()
        .to_string()
        .contains("more than once"));
    assert!(gather(&src[1..], &l, &[1]).is_err());
    let mut dst = vec![0.0f32; 23];
    assert!(scatter(&[0.0; 8], &l, &[0], &mut dst).is_err());
}
