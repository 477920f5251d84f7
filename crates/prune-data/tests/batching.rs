//! Batching (determinism, coverage, drop_last) and augmentation properties.

mod common;

use common::pattern_pixels;
use proptest::prelude::*;
use prune_data::augment::crop_flip_into;
use prune_data::{epoch_order, Augment, BatchOptions, CropFlip, Dataset, DatasetKind, Split};

fn synthetic(kind: DatasetKind, n: usize) -> Dataset {
    let per: usize = kind.image_shape().iter().product();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    Dataset::from_bytes(kind, Split::Train, &pattern_pixels(n, per), labels).unwrap()
}

/// Collects an epoch as (dataset index of each row, in order) by matching rows
/// back to the dataset, and checks the labels travel with their images.
fn epoch_indices(data: &Dataset, opts: &BatchOptions, epoch: u64) -> Vec<Vec<usize>> {
    let batches = data.batches_with(opts, epoch).unwrap();
    let order = batches.order().to_vec();
    let mut pos = 0;
    let mut out = Vec::new();
    for b in batches {
        let (t, labels) = b.unwrap();
        let per = data.example_len();
        assert_eq!(&t.shape()[1..], &data.shape[..]);
        assert_eq!(t.shape()[0], labels.len());
        let mut idx = Vec::new();
        for (row, label) in t.data().chunks(per).zip(&labels) {
            let i = order[pos];
            pos += 1;
            assert_eq!(row, data.image(i).unwrap(), "row of example {i}");
            assert_eq!(*label, usize::from(data.labels[i]));
            idx.push(i);
        }
        out.push(idx);
    }
    out
}

#[test]
fn every_example_once_per_epoch() {
    let data = synthetic(DatasetKind::Mnist, 103);
    for seed in [None, Some(7)] {
        for epoch in 0..3 {
            let opts = BatchOptions {
                shuffle_seed: seed,
                ..BatchOptions::new(10)
            };
            let batches = epoch_indices(&data, &opts, epoch);
            assert_eq!(batches.len(), 11);
            assert!(batches[..10].iter().all(|b| b.len() == 10));
            assert_eq!(batches[10].len(), 3);
            let mut all: Vec<usize> = batches.concat();
            if seed.is_none() {
                assert_eq!(all, (0..103).collect::<Vec<_>>());
            }
            all.sort_unstable();
            assert_eq!(all, (0..103).collect::<Vec<_>>());
        }
    }
}

#[test]
fn shuffling_is_deterministic_per_seed_and_epoch() {
    let data = synthetic(DatasetKind::FashionMnist, 64);
    let opts = BatchOptions::new(16).shuffle(42);
    let a: Vec<_> = data
        .batches_with(&opts, 3)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let b: Vec<_> = data
        .batches(16, Some(42), 3)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(a, b);
    assert_eq!(epoch_order(64, Some(42), 3), epoch_order(64, Some(42), 3));
    assert_ne!(epoch_order(64, Some(42), 3), epoch_order(64, Some(42), 4));
    assert_ne!(epoch_order(64, Some(42), 3), epoch_order(64, Some(43), 3));
    assert_ne!(epoch_order(64, Some(42), 0), (0..64).collect::<Vec<_>>());
    assert_eq!(epoch_order(5, None, 9), vec![0, 1, 2, 3, 4]);
}

#[test]
fn drop_last_and_sizes() {
    let data = synthetic(DatasetKind::Mnist, 25);
    let opts = BatchOptions::new(8).shuffle(1).drop_last(true);
    let it = data.batches_with(&opts, 0).unwrap();
    assert_eq!(it.len(), 3);
    let batches = epoch_indices(&data, &opts, 0);
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![8, 8, 8]
    );
    let it = data.batches(8, None, 0).unwrap();
    assert_eq!(it.len(), 4);
    // A batch larger than the dataset: one partial batch, or none with drop_last.
    assert_eq!(data.batches(100, None, 0).unwrap().count(), 1);
    assert_eq!(
        data.batches_with(&BatchOptions::new(100).drop_last(true), 0)
            .unwrap()
            .count(),
        0
    );
    assert!(data.batches(0, None, 0).is_err());
}

#[test]
fn subset_takes_the_first_examples() {
    let data = synthetic(DatasetKind::Mnist, 30);
    let s = data.subset(7);
    assert_eq!(s.len(), 7);
    assert_eq!(s.labels, data.labels[..7]);
    assert_eq!(s.images, data.images[..7 * 784]);
    assert_eq!(data.subset(1000).len(), 30);
    assert_eq!(data.subset(0).batches(4, None, 0).unwrap().count(), 0);
    let (t, labels) = s.to_tensor().unwrap();
    assert_eq!(t.shape(), &[7, 1, 28, 28]);
    assert_eq!(labels, vec![0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(data.class_counts(), vec![3; 10]);
}

#[test]
fn augmented_batches_keep_shape_and_are_reproducible() {
    let data = synthetic(DatasetKind::Cifar10, 40);
    let opts = BatchOptions::new(16).shuffle(5).augment(Augment::cifar(11));
    let a: Vec<_> = data
        .batches_with(&opts, 2)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let b: Vec<_> = data
        .batches_with(&opts, 2)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(a, b);
    for (t, labels) in &a {
        assert_eq!(&t.shape()[1..], &[3, 32, 32]);
        assert_eq!(t.shape()[0], labels.len());
    }
    let c: Vec<_> = data
        .batches_with(&opts, 3)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_ne!(a, c);
    // Each augmented row equals crop_flip of its source image with the
    // choices of (seed, epoch, index), independently of batch size.
    let aug = Augment::cifar(11);
    let order = epoch_order(40, Some(5), 2);
    let fill = data.zero_pixel();
    let rows: Vec<&[f32]> = a.iter().flat_map(|(t, _)| t.data().chunks(3072)).collect();
    for (row, &i) in rows.iter().zip(&order) {
        let mut expected = vec![0f32; 3072];
        let choice = aug.choices(2, i);
        crop_flip_into(
            data.image(i).unwrap(),
            [3, 32, 32],
            4,
            choice,
            &fill,
            &mut expected,
        )
        .unwrap();
        assert_eq!(*row, &expected[..]);
    }
}

#[test]
fn augmentation_choices_are_in_range_and_balanced() {
    let aug = Augment::cifar(3);
    let mut flips = 0;
    let mut seen_dx = [false; 9];
    for i in 0..10_000 {
        let c = aug.choices(0, i);
        assert!(c.dy <= 8 && c.dx <= 8);
        seen_dx[c.dx] = true;
        flips += usize::from(c.flip);
    }
    assert!(seen_dx.iter().all(|&s| s));
    // Binomial(10000, 1/2): the standard deviation is 50, so 4500..5500 is 10 sigma.
    assert!((4500..5500).contains(&flips), "{flips}");
    let no_flip = Augment {
        hflip: false,
        ..aug
    };
    assert!((0..1000).all(|i| !no_flip.choices(0, i).flip));
    assert_eq!(aug.choices(4, 17), aug.choices(4, 17));
}

#[test]
fn zero_padding_fills_with_the_normalized_zero_pixel() {
    let data = synthetic(DatasetKind::Cifar10, 1);
    let fill = data.zero_pixel();
    let src = data.image(0).unwrap();
    let mut out = vec![0f32; 3072];
    // Shift the content down-right by 4 (dy = dx = 0): top rows and left columns are padding.
    let choice = CropFlip {
        dy: 0,
        dx: 0,
        flip: false,
    };
    crop_flip_into(src, [3, 32, 32], 4, choice, &fill, &mut out).unwrap();
    for c in 0..3 {
        let plane = &out[c * 1024..(c + 1) * 1024];
        let src_plane = &src[c * 1024..(c + 1) * 1024];
        // Normalized zero pixel: (0 - mean) / std.
        let z = -DatasetKind::Cifar10.mean()[c] / DatasetKind::Cifar10.std()[c];
        assert!((fill[c] - z).abs() < 1e-7);
        for y in 0..32 {
            for x in 0..32 {
                let v = plane[y * 32 + x];
                if y < 4 || x < 4 {
                    assert_eq!(v, fill[c]);
                } else {
                    assert_eq!(v, src_plane[(y - 4) * 32 + (x - 4)]);
                }
            }
        }
    }
}

#[test]
fn crop_flip_rejects_bad_arguments() {
    let src = vec![0f32; 12];
    let mut dst = vec![0f32; 12];
    let id = CropFlip::identity(1);
    assert!(crop_flip_into(&src, [1, 3, 4], 1, id, &[0.0], &mut dst).is_ok());
    assert!(crop_flip_into(&src, [1, 3, 5], 1, id, &[0.0], &mut dst).is_err());
    assert!(crop_flip_into(&src, [1, 3, 4], 1, id, &[0.0, 1.0], &mut dst).is_err());
    let far = CropFlip {
        dy: 3,
        dx: 0,
        flip: false,
    };
    assert!(crop_flip_into(&src, [1, 3, 4], 1, far, &[0.0], &mut dst).is_err());
}

/// Straightforward reference: materialize the padded image, crop, then flip.
fn reference(
    src: &[f32],
    [c, h, w]: [usize; 3],
    pad: usize,
    ch: CropFlip,
    fill: &[f32],
) -> Vec<f32> {
    let (ph, pw) = (h + 2 * pad, w + 2 * pad);
    let mut padded = vec![0f32; c * ph * pw];
    for k in 0..c {
        for i in 0..ph {
            for j in 0..pw {
                padded[(k * ph + i) * pw + j] =
                    if i >= pad && i < h + pad && j >= pad && j < w + pad {
                        src[(k * h + i - pad) * w + j - pad]
                    } else {
                        fill[k]
                    };
            }
        }
    }
    let mut crop = vec![0f32; c * h * w];
    for k in 0..c {
        for y in 0..h {
            for x in 0..w {
                crop[(k * h + y) * w + x] = padded[(k * ph + y + ch.dy) * pw + x + ch.dx];
            }
        }
    }
    if ch.flip {
        for row in crop.chunks_mut(w) {
            row.reverse();
        }
    }
    crop
}

proptest! {
    #[test]
    fn fused_crop_flip_matches_reference(c in 1usize..4, h in 1usize..9, w in 1usize..9,
                                         pad in 0usize..12, dy in 0usize..25, dx in 0usize..25,
                                         flip: bool, seed in any::<u64>()) {
        let (dy, dx) = (dy % (2 * pad + 1), dx % (2 * pad + 1));
        let src: Vec<f32> = (0..c * h * w).map(|i| (i as u64 ^ seed) as f32).collect();
        let fill: Vec<f32> = (0..c).map(|k| -1.0 - k as f32).collect();
        let choice = CropFlip { dy, dx, flip };
        let mut out = vec![0f32; src.len()];
        crop_flip_into(&src, [c, h, w], pad, choice, &fill, &mut out).unwrap();
        prop_assert_eq!(&out, &reference(&src, [c, h, w], pad, choice, &fill));
    }

    #[test]
    fn flip_twice_and_identity_crop_are_identity(c in 1usize..4, h in 1usize..9, w in 1usize..9,
                                                 pad in 0usize..5) {
        let src: Vec<f32> = (0..c * h * w).map(|i| i as f32).collect();
        let fill = vec![f32::NAN; c];
        let mut once = vec![0f32; src.len()];
        let mut twice = vec![0f32; src.len()];
        let flip = CropFlip { flip: true, ..CropFlip::identity(pad) };
        crop_flip_into(&src, [c, h, w], pad, flip, &fill, &mut once).unwrap();
        crop_flip_into(&once, [c, h, w], pad, flip, &fill, &mut twice).unwrap();
        prop_assert_eq!(&twice, &src);
        if w > 1 {
            prop_assert_ne!(&once, &src);
        }
        crop_flip_into(&src, [c, h, w], pad, CropFlip::identity(pad), &fill, &mut once).unwrap();
        prop_assert_eq!(&once, &src);
    }
}

#[test]
fn inconsistent_public_fields_are_errors_not_panics() {
    let mut data = synthetic(DatasetKind::Mnist, 5);
    data.images.truncate(100);
    assert!(data.batches(2, None, 0).is_err());
    assert_eq!(data.subset(3).images.len(), 100);
    let mut data = synthetic(DatasetKind::Mnist, 5);
    data.labels[4] = 12;
    let e = data.batches(2, None, 0).unwrap_err().to_string();
    assert!(e.contains("label 12 of example 4"), "{e}");
    assert_eq!(data.class_counts().len(), 13);
}
