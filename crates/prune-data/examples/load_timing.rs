//! Wall-clock cost of loading a dataset and of one epoch of batching.
//!
//! ```text
//! PRUNE_NN_DATA=/path/to/data cargo run --release -p prune-data --example load_timing -- [mnist|fashion-mnist|cifar10] [batch]
//! ```

use prune_data::{load_splits, locate, Augment, BatchOptions, DatasetKind};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let kind: DatasetKind = args.next().as_deref().unwrap_or("mnist").parse()?;
    let batch: usize = args.next().as_deref().unwrap_or("64").parse()?;

    let t0 = Instant::now();
    let dir = locate(kind, None)?;
    let (train, test) = load_splits(kind, &dir)?;
    let load_s = t0.elapsed().as_secs_f64();
    println!(
        "{kind}: loaded {} train + {} test from {} in {:.3} s",
        train.len(),
        test.len(),
        dir.display(),
        load_s
    );

    let mut opts = BatchOptions::new(batch).shuffle(1);
    for augment in [false, true] {
        if augment {
            opts = opts.augment(Augment::cifar(2));
        }
        let t1 = Instant::now();
        let mut checksum = 0f64;
        let mut batches = 0usize;
        for b in train.batches_with(&opts, 0)? {
            let (images, labels) = b?;
            checksum += f64::from(images.data()[0]) + labels[0] as f64;
            batches += 1;
        }
        let s = t1.elapsed().as_secs_f64();
        println!(
            "one shuffled epoch, batch {batch}, augment {augment}: {batches} batches in {:.3} s ({:.1} us/batch, checksum {checksum:.3})",
            s,
            s * 1e6 / batches as f64
        );
    }
    Ok(())
}
