//! Property tests: the parsers never panic on arbitrary input; they either
//! succeed with internally consistent sizes or return an error.

mod common;

use common::{gzip, mnist_like};
use proptest::prelude::*;
use prune_data::cifar::{parse_cifar, CIFAR_IMAGE_BYTES, CIFAR_RECORD_BYTES};
use prune_data::idx::{parse_idx_images, parse_idx_labels};

fn check_images(bytes: &[u8]) {
    if let Ok(img) = parse_idx_images(bytes, "fuzz") {
        assert_eq!(img.pixels.len(), img.count * img.rows * img.cols);
    }
}

fn check_labels(bytes: &[u8]) {
    if let Ok(labels) = parse_idx_labels(bytes, "fuzz") {
        // A raw label file is exactly header + payload.
        if bytes.first() != Some(&0x1f) {
            assert_eq!(bytes.len(), 8 + labels.len());
        }
    }
}

/// Bytes that start like an IDX file (so the parser gets past the magic) with
/// small random dimensions and a random tail.
fn idx_like() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(2051u32), Just(2049u32)],
        prop::collection::vec(0u32..6, 3),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(magic, dims, tail)| {
            let mut v = magic.to_be_bytes().to_vec();
            for d in dims {
                v.extend_from_slice(&d.to_be_bytes());
            }
            v.extend(tail);
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn idx_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_images(&bytes);
        check_labels(&bytes);
    }

    #[test]
    fn idx_structured_bytes(bytes in idx_like()) {
        check_images(&bytes);
        check_labels(&bytes);
        check_images(&gzip(&bytes));
        check_labels(&gzip(&bytes));
    }

    #[test]
    fn gzip_magic_then_garbage(tail in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut bytes = vec![0x1f, 0x8b];
        bytes.extend(tail);
        check_images(&bytes);
        check_labels(&bytes);
    }

    #[test]
    fn truncated_or_flipped_valid_files(n in 0usize..4, cut in any::<prop::sample::Index>(),
                                        flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (img, lab) = mnist_like(n);
        for file in [img.clone(), lab.clone(), gzip(&img), gzip(&lab)] {
            let c = cut.index(file.len());
            // Every strict prefix of a valid file is rejected.
            prop_assert!(parse_idx_images(&file[..c], "cut").is_err());
            prop_assert!(parse_idx_labels(&file[..c], "cut").is_err());
            let mut flipped = file.clone();
            let i = flip.index(flipped.len());
            flipped[i] ^= 1 << bit;
            check_images(&flipped);
            check_labels(&flipped);
        }
    }

    #[test]
    fn cifar_arbitrary_bytes(records in 0usize..3, extra in 0usize..3,
                             seed in prop::collection::vec(any::<u8>(), 1..64)) {
        let len = records * CIFAR_RECORD_BYTES + extra;
        let bytes: Vec<u8> = seed.iter().copied().cycle().take(len).collect();
        match parse_cifar(&bytes, "fuzz") {
            Ok(r) => {
                prop_assert_eq!(extra, 0);
                prop_assert_eq!(r.labels.len(), records);
                prop_assert_eq!(r.pixels.len(), records * CIFAR_IMAGE_BYTES);
                prop_assert!(r.labels.iter().all(|&l| l < 10));
            }
            Err(_) => prop_assert!(
                extra != 0 || records == 0
                    || bytes.chunks(CIFAR_RECORD_BYTES).any(|c| c[0] >= 10)
            ),
        }
    }

    #[test]
    fn cifar_short_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        // Shorter than one record: always an error, never a panic.
        prop_assert!(parse_cifar(&bytes, "fuzz").is_err());
    }
}
