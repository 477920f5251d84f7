//! The read-only lists of the backend ops (index lists of index-select and its backward,
//! the broadcast geometry of the elementwise kernels) are uploaded once per content: a
//! second call with the same list makes no host-to-device copy and gives the same result
//! (checked against the CPU references), and the cache stays within its bound.

use prune_kernels::cpu_ref::channels;
use prune_kernels::cpu_ref::elementwise::{self as ew, Binary};
use prune_kernels::ops::MAX_LISTS;
use prune_kernels::{transfers, Emu, KernelContext, NnKernels, Runtime, Schedule};
use prune_kernels_emu::DevBuf;

fn context() -> (KernelContext<Emu>, NnKernels<Emu>) {
    let kc = KernelContext::emulated(2, Schedule::Shuffled(3));
    let nn = NnKernels::new(&kc).expect("kernels");
    (kc, nn)
}

fn up(kc: &KernelContext<Emu>, v: &[f32]) -> DevBuf<f32> {
    Emu::upload(kc.stream(), v).expect("upload")
}

/// Host-to-device copies made by `f` on this thread.
fn uploads_of<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = transfers().uploads;
    let out = f();
    (out, transfers().uploads - before)
}

#[test]
fn index_lists_are_uploaded_once() {
    let (kc, nn) = context();
    let s = kc.stream();
    let (outer, c, inner) = (2usize, 5usize, 3usize);
    let src: Vec<f32> = (0..outer * c * inner)
        .map(|i| i as f32 * 0.5 - 3.0)
        .collect();
    let idx = [4u32, 0, 4, 2];
    let xd = up(&kc, &src);
    let select = || {
        let mut y = Emu::zeros::<f32>(s, outer * idx.len() * inner).expect("alloc");
        nn.index_select(s, &xd, &idx, &mut y, (outer, c, inner))
            .expect("index_select");
        y.as_slice().to_vec()
    };
    let (first, n1) = uploads_of(select);
    let (second, n2) = uploads_of(select);
    assert_eq!(n1, 1, "the first call uploads the list");
    assert_eq!(n2, 0, "the second call reuses it");
    assert_eq!(first, second);
    assert_eq!(first, channels::index_select(&src, outer, c, inner, &idx));

    let g: Vec<f32> = (0..outer * idx.len() * inner)
        .map(|i| i as f32 - 7.0)
        .collect();
    let gd = up(&kc, &g);
    let add = || {
        let mut y = Emu::zeros::<f32>(s, outer * c * inner).expect("alloc");
        nn.index_add(s, &gd, &idx, &mut y, (outer, c, inner))
            .expect("index_add");
        y.as_slice().to_vec()
    };
    let (first, n1) = uploads_of(add);
    let (second, n2) = uploads_of(add);
    assert_eq!(n1, 2, "the first backward uploads its two CSR lists");
    assert_eq!(n2, 0, "the second reuses them");
    assert_eq!(first, second);
    let want = channels::index_add(&g, outer, c, inner, &idx);
    for (a, b) in first.iter().zip(&want) {
        assert!((f64::from(*a) - b).abs() < 1e-6, "{a} vs {b}");
    }

    // Another list is another upload; the first is still held.
    let other = [1u32, 3];
    let mut y = Emu::zeros::<f32>(s, outer * other.len() * inner).expect("alloc");
    let (_, n) = uploads_of(|| nn.index_select(s, &xd, &other, &mut y, (outer, c, inner)));
    assert_eq!(n, 1);
    assert_eq!(uploads_of(select).1, 0);
}

#[test]
fn broadcast_geometry_is_uploaded_once() {
    let (kc, nn) = context();
    let s = kc.stream();
    let (ad, bd) = ([2usize, 3, 4], [1usize, 3, 1]);
    let a: Vec<f32> = (0..24).map(|i| i as f32 * 0.25).collect();
    let b = [2.0f32, -1.0, 0.5];
    let (xa, xb) = (up(&kc, &a), up(&kc, &b));
    let run = || {
        let mut out = Emu::zeros::<f32>(s, 24).expect("alloc");
        nn.binary(s, Binary::Mul, &xa, &ad, &xb, &bd, &mut out)
            .expect("binary");
        out.as_slice().to_vec()
    };
    let (first, n1) = uploads_of(run);
    let (second, n2) = uploads_of(run);
    assert_eq!((n1, n2), (1, 0), "uploads of the first and second call");
    assert_eq!(first, second);
    let (want, _) = ew::binary(Binary::Mul, &a, &ad, &b, &bd).expect("reference");
    assert_eq!(first, want);
}

#[test]
fn the_cache_is_bounded() {
    let (kc, nn) = context();
    let s = kc.stream();
    let c = MAX_LISTS + 40;
    let src: Vec<f32> = (0..c).map(|i| i as f32).collect();
    let xd = up(&kc, &src);
    let mut y = Emu::zeros::<f32>(s, 1).expect("alloc");
    for i in 0..c {
        let idx = [i as u32];
        nn.index_select(s, &xd, &idx, &mut y, (1, c, 1))
            .expect("index_select");
        assert_eq!(y.as_slice()[0], i as f32, "list {i} after evictions");
        assert!(
            nn.cached_lists() <= MAX_LISTS,
            "{} lists held",
            nn.cached_lists()
        );
    }
}
