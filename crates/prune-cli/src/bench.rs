//! `prune-nn bench`: images/s and batch-1 latency of a run directory or a
//! zoo model (see `prune_nn::bench`).

use clap::Args;
use prune_nn::bench::{bench, load_model, BenchConfig, BenchReport};
use prune_nn::Result;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A run directory (model.json + weights) or a zoo model name (resnet20, vgg-like, …).
    #[arg(long)]
    pub model: String,
    /// Images per batch for the throughput figures.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Also time training steps (forward, backward, SGD).
    #[arg(long)]
    pub train: bool,
    /// Threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where to run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu", value_parser = crate::device::parse)]
    pub device: prune_nn::core::Device,
    /// Timed repetitions per throughput figure (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub repeats: usize,
    /// Untimed warm-up runs before each measurement.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Timed single-image runs for the latency percentiles.
    #[arg(long, default_value_t = 100)]
    pub latency_runs: usize,
    /// Per-example input shape of a zoo model, e.g. 3,32,32.
    #[arg(long, value_delimiter = ',')]
    pub input: Option<Vec<usize>>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark and prints the report.
pub fn run(a: BenchArgs) -> Result<()> {
    let device = crate::device::open(a.device)?;
    let model = load_model(&a.model, a.input.as_deref())?;
    let cfg = BenchConfig {
        batch_size: a.batch_size,
        train: a.train,
        threads: a.threads,
        warmup: a.warmup,
        repeats: a.repeats,
        latency_runs: a.latency_runs,
        device,
    };
    let r = bench(&model, &cfg)?;
    if a.json {
        let s = serde_json::to_string_pretty(&r)
            .map_err(|e| prune_nn::Error::Usage(format!("report: {e}")))?;
        println!("{s}");
    } else {
        print!("{}", render(&r));
    }
    Ok(())
}

fn render(r: &BenchReport) -> String {
    let mut s = format!(
        "model {} (input {:?}): {} params, {} MACs/image; {}, {} threads\n",
        r.model, r.input, r.params, r.flops, r.device, r.threads
    );
    let line = |what: &str, t: &prune_nn::bench::Throughput| {
        format!(
            "{what:<10} batch {:>4}: {:>10.1} images/s (median of {}, range {:.1}–{:.1}; {:.2} ms/batch)\n",
            r.batch_size,
            t.median_images_per_sec,
            r.repeats,
            t.min_images_per_sec,
            t.max_images_per_sec,
            t.median_ms
        )
    };
    s += &line("inference", &r.inference);
    if let Some(t) = &r.training {
        s += &line("training", t);
    }
    let l = &r.latency_batch1;
    s += &format!(
        "latency   batch    1: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, mean {:.3} ms ({} runs)\n",
        l.p50_ms, l.p90_ms, l.p99_ms, l.mean_ms, l.runs
    );
    s
}
