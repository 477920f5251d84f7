//! Shared fixtures of the integration tests: hand-built dataset files and a
//! minimal HTTP server on 127.0.0.1.
#![allow(dead_code)]

use flate2::write::GzEncoder;
use flate2::Compression;
use prune_data::cifar::{encode_cifar, CifarRecords, CIFAR_IMAGE_BYTES};
use prune_data::idx::{encode_idx_images, encode_idx_labels, IdxImages};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Gzip-compresses `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Deterministic pixel bytes: image `i`, byte `j` is `(i * 7 + j) % 256`.
pub fn pattern_pixels(n: usize, per: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (0..per).map(move |j| ((i * 7 + j) % 256) as u8))
        .collect()
}

/// Raw IDX bytes of `n` 28x28 images and their labels `i % 10`.
pub fn mnist_like(n: usize) -> (Vec<u8>, Vec<u8>) {
    let images = IdxImages {
        count: n,
        rows: 28,
        cols: 28,
        pixels: pattern_pixels(n, 784),
    };
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    (
        encode_idx_images(&images).unwrap(),
        encode_idx_labels(&labels).unwrap(),
    )
}

/// Writes a four-file MNIST-style folder: `n_train` / `n_test` examples,
/// gzipped when `gz`.
pub fn write_mnist_dir(dir: &Path, n_train: usize, n_test: usize, gz: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, n) in [("train", n_train), ("t10k", n_test)] {
        let (img, lab) = mnist_like(n);
        for (name, bytes) in [
            (format!("{prefix}-images-idx3-ubyte"), img),
            (format!("{prefix}-labels-idx1-ubyte"), lab),
        ] {
            if gz {
                std::fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).unwrap();
            } else {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }
}

/// Raw CIFAR-10 batch bytes of `n` records, labels `(i + offset) % 10`.
pub fn cifar_like(n: usize, offset: usize) -> Vec<u8> {
    let records = CifarRecords {
        labels: (0..n).map(|i| ((i + offset) % 10) as u8).collect(),
        pixels: pattern_pixels(n, CIFAR_IMAGE_BYTES),
    };
    encode_cifar(&records).unwrap()
}

/// Writes the six CIFAR-10 batch files with `n` records each.
pub fn write_cifar_dir(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (k, name) in prune_data::DatasetKind::Cifar10
        .all_files()
        .iter()
        .enumerate()
    {
        std::fs::write(dir.join(name), cifar_like(n, k)).unwrap();
    }
}

/// Names of the entries of `dir`, sorted.
pub fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// What the test server answers for a path.
#[derive(Clone)]
pub enum Reply {
    /// 200 with this body and its true Content-Length.
    Body(Vec<u8>),
    /// 404.
    NotFound,
    /// 200 declaring `declared` bytes of Content-Length but sending only `body`,
    /// then closing the connection.
    Truncated { declared: usize, body: Vec<u8> },
}

/// A one-thread HTTP/1.1 server on an ephemeral port of 127.0.0.1 that serves
/// fixed replies, answers at most `max_requests` requests and gives up after
/// 30 s without them.
pub struct Server {
    pub base: String,
    handle: Option<JoinHandle<usize>>,
}

impl Server {
    pub fn start(routes: Vec<(&str, Reply)>, max_requests: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes: Vec<(String, Reply)> = routes
            .into_iter()
            .map(|(p, r)| (p.to_string(), r))
            .collect();
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut served = 0;
            while served < max_requests && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        handle_one(stream, &routes);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => break,
                }
            }
            served
        });
        Server {
            base: format!("http://127.0.0.1:{port}/"),
            handle: Some(handle),
        }
    }

    /// Waits for the server thread; returns the number of requests served.
    pub fn finish(mut self) -> usize {
        self.handle.take().unwrap().join().unwrap()
    }
}

fn handle_one(mut stream: TcpStream, routes: &[(String, Reply)]) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    let reply = routes
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, r)| r.clone())
        .unwrap_or(Reply::NotFound);
    let (status, declared, body) = match reply {
        Reply::Body(b) => ("200 OK", b.len(), b),
        Reply::NotFound => ("404 Not Found", 9, b"not found".to_vec()),
        Reply::Truncated { declared, body } => ("200 OK", declared, body),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {declared}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(header.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
}
