//! Channel gather / scatter on the GPU against the CPU reference (float4 and scalar
//! paths, empty and full keep lists, permuted order).  Skips without a GPU unless
//! PRUNE_REQUIRE_GPU=1.  Outputs are NaN-filled before every launch.

mod common;

use common::{gpu, Rng};
use prune_kernels::cpu_ref::gather as cref;
use prune_kernels::host::{download, poisoned, upload};
use prune_kernels::{Baselines, ChannelGather, ChannelLayout, KeepList, Untouched};

fn main() {
    let need = common::gpu_need();
    prune_testkit::run(prune_testkit::tests_needing!(&need;
        gather_and_scatter_match_cpu_reference,
    ));
}

fn layouts() -> Vec<ChannelLayout> {
    vec![
        ChannelLayout::nchw(3, 7, 5, 3),
        ChannelLayout::nchw(2, 16, 4, 4),
        ChannelLayout::nchw(4, 9, 1, 1),
        ChannelLayout::nchw(3, 5, 33, 33),
        ChannelLayout::nchw(2, 300, 2, 2),
        ChannelLayout::nchw(8, 64, 28, 28),
        ChannelLayout::weight_out_dim(6, 5, 3, 3),
        ChannelLayout::weight_in_dim(6, 5, 3, 3),
        ChannelLayout::weight_in_dim(64, 128, 1, 1),
    ]
}

fn gather_and_scatter_match_cpu_reference() {
    let Some(kc) = gpu("gather_and_scatter_match_cpu_reference") else {
        return;
    };
    let g = ChannelGather::new(&kc).expect("compile gather.cu");
    let base = Baselines::new(&kc).expect("compile baseline.cu");
    let stream = kc.stream();
    let mut rng = Rng::fresh("gather_and_scatter_match_cpu_reference");
    for l in layouts() {
        let c = l.channels;
        for k in [0, 1, c / 3, c] {
            let keep = rng.subset(c, k);
            let src = rng.vec(l.full_len().unwrap(), -1.0, 1.0);
            let want = cref::gather(&src, &l, &keep).unwrap();
            let got = g.gather_host(stream, &src, &l, &keep).unwrap();
            assert_eq!(got, want, "gather {l:?} kept {k}");

            let init = vec![f32::NAN; src.len()];
            let got = g
                .scatter_host(stream, &want, &l, &keep, &init, Untouched::Keep)
                .unwrap();
            let mut exp = init.clone();
            cref::scatter(&want, &l, &keep, &mut exp).unwrap();
            for i in 0..got.len() {
                assert!(
                    got[i] == exp[i] || (got[i].is_nan() && exp[i].is_nan()),
                    "scatter {l:?} at {i}"
                );
            }
            let got = g
                .scatter_host(stream, &want, &l, &keep, &init, Untouched::Zero)
                .unwrap();
            let mut exp = vec![0.0f32; src.len()];
            cref::scatter(&want, &l, &keep, &mut exp).unwrap();
            assert_eq!(got, exp, "scatter-zero {l:?} kept {k}");

            // The naive baseline computes the same gather.
            let list = KeepList::new(stream, &keep, c).unwrap();
            let sd = upload(stream, &src).unwrap();
            let mut dd = poisoned(stream, want.len()).unwrap();
            base.naive_gather(stream, &sd, &l, &list, &mut dd).unwrap();
            assert_eq!(
                download(stream, &dd, want.len()).unwrap(),
                want,
                "naive {l:?}"
            );
        }
    }
}
