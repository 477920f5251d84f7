//! Throughput and latency of a model on the CPU or a GPU: what `prune-nn bench`
//! reports, so a user sees what pruning bought them.
//!
//! * inference: images/s of eval-mode forward passes at the chosen batch
//!   size (no tape recorded), the median over repetitions after warm-up;
//! * training (optional): images/s of full SGD steps — forward in training
//!   mode, cross-entropy, backward, SGD with momentum 0.9 — at the same batch;
//! * latency: percentiles of single-image inference.
//!
//! Inputs are standard-normal and labels cycle through the classes; timing
//! does not depend on the values. On the CPU the model runs on a dedicated rayon
//! pool of the requested number of threads. On a GPU the model and the batch are
//! copied to the device once, before timing; every timed run ends by copying its
//! result to the host (the logits of an inference, the loss of a training step,
//! read after the update), which waits for all the work queued on the device's
//! stream, so each time covers the device's work and not just its queueing.

use crate::error::{Error, Result};
use prune_core::optim::{Optimizer, ParamUpdate, Sgd};
use prune_core::sbp::GateNoise;
use prune_core::{Device, Tape, Tensor};
use prune_graph::{forward, infer_shapes, predict, zoo, Model, RunOptions};
use prune_train::device::onto;
use prune_train::{model_device, model_to};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Images per forward pass for the throughput figures.
    pub batch_size: usize,
    /// Also time training steps.
    pub train: bool,
    /// Rayon threads (None: rayon's default, one per core).
    pub threads: Option<usize>,
    /// Untimed runs before each measurement.
    pub warmup: usize,
    /// Timed runs of each throughput figure (the median is reported).
    pub repeats: usize,
    /// Timed single-image runs for the latency percentiles.
    pub latency_runs: usize,
    /// Where the model runs (opened by the caller).
    pub device: Device,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            batch_size: 128,
            train: false,
            threads: None,
            warmup: 3,
            repeats: 10,
            latency_runs: 100,
            device: Device::Cpu,
        }
    }
}

/// Images/s over the timed repetitions.
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    pub median_images_per_sec: f64,
    pub min_images_per_sec: f64,
    pub max_images_per_sec: f64,
    pub median_ms: f64,
}

/// Single-image latency percentiles, milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub runs: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

/// Everything `prune-nn bench` prints.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub input: Vec<usize>,
    /// `cpu`, `cuda:N`.
    pub device: String,
    pub params: u64,
    /// Multiply-accumulates per image.
    pub flops: u64,
    pub threads: usize,
    pub batch_size: usize,
    pub repeats: usize,
    pub inference: Throughput,
    pub training: Option<Throughput>,
    pub latency_batch1: Latency,
}

/// Per-example input shape of a zoo model when benchmarked by name:
/// CIFAR shape for the VGG, MNIST shape otherwise.
pub fn zoo_input(name: &str) -> Vec<usize> {
    match name {
        "vgg-like" => vec![3, 32, 32],
        _ => vec![1, 28, 28],
    }
}

/// A run directory (`model.json` + weights) or a zoo model name (freshly
/// initialised, 10 classes; `input` overrides its default input shape).
pub fn load_model(spec: &str, input: Option<&[usize]>) -> Result<Model> {
    let dir = Path::new(spec);
    if dir.is_dir() {
        if input.is_some() {
            return Err(Error::Usage(format!(
                "--input applies to zoo models only; {spec} is a run directory"
            )));
        }
        return Ok(Model::load(dir)?);
    }
    if !zoo::MODEL_NAMES.contains(&spec) {
        return Err(Error::Usage(format!(
            "--model {spec}: neither a run directory nor a zoo model ({})",
            zoo::MODEL_NAMES.join(", ")
        )));
    }
    let shape = input
        .map(<[usize]>::to_vec)
        .unwrap_or_else(|| zoo_input(spec));
    Ok(Model::init(zoo::build(spec, &shape, 10)?, 0)?)
}

/// Measures `model` as `cfg` asks.
pub fn bench(model: &Model, cfg: &BenchConfig) -> Result<BenchReport> {
    if cfg.batch_size == 0 || cfg.repeats == 0 || cfg.latency_runs == 0 {
        return Err(Error::Usage(
            "batch size, repeats and latency runs must be positive".into(),
        ));
    }
    let pool = {
        let mut b = rayon::ThreadPoolBuilder::new();
        if let Some(t) = cfg.threads {
            if t == 0 {
                return Err(Error::Usage("--threads must be at least 1".into()));
            }
            b = b.num_threads(t);
        }
        b.build()
            .map_err(|e| Error::Usage(format!("thread pool: {e}")))?
    };
    pool.install(|| bench_in_pool(model, cfg, pool.current_num_threads()))
}

fn bench_in_pool(model: &Model, cfg: &BenchConfig, threads: usize) -> Result<BenchReport> {
    let input = model.graph.input_shape()?.to_vec();
    let cost = model.cost()?;
    let mut on_device = model.clone();
    model_to(&mut on_device, cfg.device)?;
    let model = &on_device;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let batch = onto(random_batch(&input, cfg.batch_size, &mut rng)?, cfg.device)?;
    let infer_ms = timed(cfg.warmup, cfg.repeats, || {
        predict(model, batch.clone(), None)?.to_device(Device::Cpu)?;
        Ok(())
    })?;
    let training = if cfg.train {
        let mut trainer = Trainer::new(model.clone(), cfg.batch_size)?;
        let ms = timed(cfg.warmup, cfg.repeats, || trainer.step().map(|_| ()))?;
        Some(throughput(&ms, cfg.batch_size))
    } else {
        None
    };
    let one = onto(random_batch(&input, 1, &mut rng)?, cfg.device)?;
    let mut lat = timed(cfg.warmup, cfg.latency_runs, || {
        predict(model, one.clone(), None)?.to_device(Device::Cpu)?;
        Ok(())
    })?;
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    Ok(BenchReport {
        model: model.graph.name.clone(),
        input,
        device: cfg.device.to_string(),
        params: cost.params,
        flops: cost.flops,
        threads,
        batch_size: cfg.batch_size,
        repeats: cfg.repeats,
        inference: throughput(&infer_ms, cfg.batch_size),
        training,
        latency_batch1: Latency {
            runs: lat.len(),
            p50_ms: pct(0.5),
            p90_ms: pct(0.9),
            p99_ms: pct(0.99),
            mean_ms: lat.iter().sum::<f64>() / lat.len() as f64,
        },
    })
}

/// `n` standard-normal examples of per-example shape `input`.
pub fn random_batch(input: &[usize], n: usize, rng: &mut ChaCha8Rng) -> Result<Tensor> {
    let mut shape = vec![n];
    shape.extend_from_slice(input);
    Ok(Tensor::randn(shape, 0.0, 1.0, rng))
}

/// Runs `f` `warmup` times untimed, then `runs` times timed; milliseconds.
fn timed(warmup: usize, runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        f()?;
    }
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        f()?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(ms)
}

fn throughput(ms: &[f64], batch: usize) -> Throughput {
    let mut s = ms.to_vec();
    s.sort_by(f64::total_cmp);
    let ips = |t: f64| batch as f64 / (t / 1e3);
    let median = s[s.len() / 2];
    Throughput {
        median_images_per_sec: ips(median),
        min_images_per_sec: ips(s[s.len() - 1]),
        max_images_per_sec: ips(s[0]),
        median_ms: median,
    }
}

/// Repeated SGD steps (momentum 0.9, lr 0.01) on one fixed batch: the unit
/// of the training figure, also used by the criterion benchmarks. Runs on the
/// device of the model's parameters.
pub struct Trainer {
    model: Model,
    opt: Sgd,
    x: Tensor,
    labels: Vec<usize>,
    rng: ChaCha8Rng,
    step: u32,
}

impl Trainer {
    /// A trainer of (a copy of) `model` on a random batch of `batch` images.
    pub fn new(model: Model, batch: usize) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let input = model.graph.input_shape()?.to_vec();
        let classes = infer_shapes(&model.graph)?
            .last()
            .and_then(|s| s.last().copied())
            .unwrap_or(1)
            .max(1);
        let x = onto(random_batch(&input, batch, &mut rng)?, model_device(&model))?;
        Ok(Self {
            model,
            opt: Sgd::new(0.9, false, 0.0),
            x,
            labels: (0..batch).map(|i| i % classes).collect(),
            rng,
            step: 0,
        })
    }

    /// One step: forward (training mode), cross-entropy, backward, update
    /// (batch-norm running statistics included); returns the loss, read on the
    /// host after the update (on a GPU this waits for the whole step).
    pub fn step(&mut self) -> Result<f32> {
        let (grads, bn, loss) = {
            let mut tape = Tape::new();
            let input = tape.constant(self.x.clone());
            let opts = RunOptions::train(GateNoise::new(1, self.step));
            let f = forward(&self.model, &mut tape, input, &opts, &mut self.rng)?;
            let loss = tape.cross_entropy(f.output, &self.labels)?;
            let loss_value = tape.value(loss)?.clone();
            let mut g = tape.backward(loss)?;
            let grads: BTreeMap<String, Tensor> = f
                .params
                .iter()
                .filter_map(|(n, v)| g.take(*v).map(|t| (n.clone(), t)))
                .collect();
            (grads, f.bn_updates, loss_value)
        };
        prune_graph::interp::apply_bn_updates(&mut self.model, &bn)?;
        let mut updates: Vec<ParamUpdate<'_>> = self
            .model
            .params
            .iter_mut()
            .filter_map(|(name, value)| {
                grads.get(name).map(|grad| ParamUpdate {
                    name,
                    value,
                    grad,
                    lr_mult: 1.0,
                    decay: false,
                })
            })
            .collect();
        self.opt.step(0.01, &mut updates)?;
        self.step = self.step.wrapping_add(1);
        Ok(loss.item()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> BenchConfig {
        BenchConfig {
            batch_size: 3,
            train: true,
            threads: Some(1),
            warmup: 1,
            repeats: 2,
            latency_runs: 3,
            device: Device::Cpu,
        }
    }

    #[test]
    fn reports_every_figure_of_a_zoo_model() {
        let model = load_model("lenet5", None).unwrap();
        let r = bench(&model, &tiny()).unwrap();
        assert_eq!(
            (r.model.as_str(), r.threads, r.batch_size),
            ("lenet5", 1, 3)
        );
        assert_eq!(r.input, vec![1, 28, 28]);
        assert!(r.flops > 0 && r.params > 0);
        let t = r.training.as_ref().unwrap();
        for x in [&r.inference, t] {
            assert!(x.min_images_per_sec <= x.median_images_per_sec);
            assert!(x.median_images_per_sec <= x.max_images_per_sec);
            assert!(x.median_ms > 0.0);
        }
        let l = &r.latency_batch1;
        assert_eq!(l.runs, 3);
        assert!(0.0 < l.p50_ms && l.p50_ms <= l.p90_ms && l.p90_ms <= l.p99_ms);
    }

    #[test]
    fn training_steps_change_the_weights() {
        let model = load_model("lenet5", Some(&[1, 20, 20])).unwrap();
        let before = model.params.get("fc2.weight").unwrap().clone();
        let mut t = Trainer::new(model, 4).unwrap();
        t.step().unwrap();
        assert!(t.model.params.get("fc2.weight").unwrap() != &before);
    }

    #[test]
    fn bad_requests_are_errors() {
        let e = load_model("resnet21", None).unwrap_err().to_string();
        assert!(e.contains("resnet21") && e.contains("resnet20"), "{e}");
        let model = load_model("lenet5", None).unwrap();
        for cfg in [
            BenchConfig {
                batch_size: 0,
                ..tiny()
            },
            BenchConfig {
                threads: Some(0),
                ..tiny()
            },
        ] {
            assert!(matches!(bench(&model, &cfg), Err(Error::Usage(_))));
        }
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().to_str().unwrap();
        assert!(load_model(spec, Some(&[1, 28, 28])).is_err());
    }
}
