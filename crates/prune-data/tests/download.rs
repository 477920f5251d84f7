//! Downloads against a local HTTP server on 127.0.0.1.

mod common;

use common::*;
use prune_data::download::sha256_hex;
use prune_data::{
    download, download_file, extract_cifar_archive, load_or_download_in, DataError, DatasetKind,
    SearchPaths, Split,
};
use std::time::Instant;

#[test]
fn good_file_lands_with_checksum_verified() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let sha = sha256_hex(&body);
    let server = Server::start(vec![("dir/file.bin", Reply::Body(body.clone()))], 1);
    let base = server.base.clone();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("sub").join("file.bin");
    download_file(
        &format!("{}dir/file.bin", server.base),
        &dest,
        &sha.to_uppercase(),
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(dir_entries(&tmp.path().join("sub")), vec!["file.bin"]);
    // Already present with the right digest: no second request (the server
    // answers one request only, so a second one would be refused).
    assert_eq!(server.finish(), 1);
    download_file(&format!("{base}dir/file.bin"), &dest, &sha).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
}

#[test]
fn wrong_checksum_leaves_nothing() {
    let body = b"not the file you are looking for".to_vec();
    let server = Server::start(vec![("f", Reply::Body(body.clone()))], 1);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("f");
    let wrong = "0".repeat(64);
    let e = download_file(&format!("{}f", server.base), &dest, &wrong).unwrap_err();
    match &e {
        DataError::Checksum {
            expected, actual, ..
        } => {
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &sha256_hex(&body));
        }
        other => panic!("expected a checksum error, got {other}"),
    }
    assert!(
        dir_entries(tmp.path()).is_empty(),
        "{:?}",
        dir_entries(tmp.path())
    );
    assert_eq!(server.finish(), 1);
}

#[test]
fn not_found_is_an_error() {
    let server = Server::start(vec![], 1);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("x");
    let e = download_file(
        &format!("{}missing.gz", server.base),
        &dest,
        &"0".repeat(64),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("404") && e.contains("missing.gz"), "{e}");
    assert!(dir_entries(tmp.path()).is_empty());
    assert_eq!(server.finish(), 1);
}

#[test]
fn truncated_body_is_an_error_and_leaves_nothing() {
    let body = vec![7u8; 5000];
    let sha = sha256_hex(&vec![7u8; 9000]);
    let server = Server::start(
        vec![(
            "t",
            Reply::Truncated {
                declared: 9000,
                body,
            },
        )],
        1,
    );
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("t");
    let e = download_file(&format!("{}t", server.base), &dest, &sha).unwrap_err();
    assert!(matches!(e, DataError::Download { .. }), "{e}");
    assert!(e.to_string().contains("5000"), "{e}");
    assert!(dir_entries(tmp.path()).is_empty());
    assert_eq!(server.finish(), 1);
}

#[test]
fn unreachable_mirror_fails_fast_with_directions() {
    // Port 9 of 127.0.0.1 (discard) is closed on test machines: connection refused.
    let tmp = tempfile::tempdir().unwrap();
    let paths = SearchPaths {
        data_env: Some(tmp.path().join("env")),
        cache_root: Some(tmp.path().join("cache")),
        system_fashion_mnist: Some(tmp.path().join("system")),
    };
    let start = Instant::now();
    let e = load_or_download_in(
        DatasetKind::FashionMnist,
        None,
        &paths,
        &["http://127.0.0.1:9/"],
    )
    .unwrap_err()
    .to_string();
    assert!(start.elapsed().as_secs() < 30);
    for needle in [
        "PRUNE_NN_DATA",
        "dataset-fashion-mnist",
        "train-images-idx3-ubyte.gz",
        "127.0.0.1:9",
    ] {
        assert!(e.contains(needle), "{needle:?} missing from: {e}");
    }
    // No partial files in the cache.
    assert!(dir_entries(&tmp.path().join("cache/fashion-mnist")).is_empty());
}

#[test]
fn wrong_files_from_a_mirror_are_rejected() {
    let (img, lab) = mnist_like(3);
    let routes = vec![
        ("train-images-idx3-ubyte.gz", Reply::Body(gzip(&img))),
        ("train-labels-idx1-ubyte.gz", Reply::Body(gzip(&lab))),
    ];
    let server = Server::start(routes, 1);
    let tmp = tempfile::tempdir().unwrap();
    let e = download(DatasetKind::Mnist, &server.base, tmp.path()).unwrap_err();
    assert!(matches!(e, DataError::Checksum { .. }), "{e}");
    assert!(e.to_string().contains("train-images-idx3-ubyte.gz"), "{e}");
    assert!(dir_entries(tmp.path()).is_empty());
    assert_eq!(server.finish(), 1);
}

fn tar_gz(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, &data[..]).unwrap();
    }
    gzip(&builder.into_inner().unwrap())
}

#[test]
fn cifar_archive_extraction() {
    let tmp = tempfile::tempdir().unwrap();
    let mut entries: Vec<(String, Vec<u8>)> = DatasetKind::Cifar10
        .all_files()
        .iter()
        .enumerate()
        .map(|(k, f)| (format!("cifar-10-batches-bin/{f}"), cifar_like(3, k)))
        .collect();
    entries.push((
        "cifar-10-batches-bin/batches.meta.txt".into(),
        b"airplane\n".to_vec(),
    ));
    let refs: Vec<(&str, Vec<u8>)> = entries
        .iter()
        .map(|(n, d)| (n.as_str(), d.clone()))
        .collect();
    let archive = tmp.path().join("a.tar.gz");
    std::fs::write(&archive, tar_gz(&refs)).unwrap();
    let out = tmp.path().join("out");
    extract_cifar_archive(&archive, &out).unwrap();
    let mut expected: Vec<String> = DatasetKind::Cifar10
        .all_files()
        .iter()
        .map(|s| s.to_string())
        .collect();
    expected.sort();
    assert_eq!(dir_entries(&out), expected);
    let train = prune_data::load(DatasetKind::Cifar10, Split::Train, &out).unwrap();
    assert_eq!(train.len(), 15);

    // A corrupt member (length not a multiple of 3073) and a missing member fail.
    let mut bad = refs.clone();
    bad[2].1.pop();
    std::fs::write(&archive, tar_gz(&bad)).unwrap();
    let e = extract_cifar_archive(&archive, &tmp.path().join("o2"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("data_batch_3.bin") && e.contains("not a multiple"),
        "{e}"
    );
    std::fs::write(&archive, tar_gz(&refs[1..])).unwrap();
    let e = extract_cifar_archive(&archive, &tmp.path().join("o3"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("lacks data_batch_1.bin"), "{e}");
}

/// The real mirrors, for machines with internet access: run with
/// `cargo test -p prune-data -- --ignored`. Without access it must fail within
/// the connect timeout, cleanly.
#[test]
#[ignore = "uses the network"]
fn real_mirror_download_succeeds_or_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let result = download(
        DatasetKind::Mnist,
        DatasetKind::Mnist.mirrors()[0],
        tmp.path(),
    );
    eprintln!(
        "real mirror: {:?} after {:?}",
        result.as_ref().err().map(|e| e.to_string()),
        start.elapsed()
    );
    match result {
        Ok(()) => prune_data::verify_checksums(DatasetKind::Mnist, tmp.path()).unwrap(),
        Err(e) => {
            assert!(matches!(e, DataError::Download { .. }), "{e}");
            assert!(dir_entries(tmp.path()).is_empty());
        }
    }
}

#[test]
fn stale_file_is_replaced_atomically() {
    let body = b"fresh content".to_vec();
    let server = Server::start(vec![("f", Reply::Body(body.clone()))], 1);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("f");
    std::fs::write(&dest, b"stale").unwrap();
    download_file(&format!("{}f", server.base), &dest, &sha256_hex(&body)).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(dir_entries(tmp.path()), vec!["f"]);
    assert_eq!(server.finish(), 1);
}
