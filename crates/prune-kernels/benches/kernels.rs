//! GPU benchmarks of the prune-kernels kernels against their baselines.
//!
//! Prints, before the criterion runs, one line per kernel with its effective bandwidth and
//! the fraction of device-to-device copy bandwidth measured on the same buffers, and the
//! masked-convolution speedup over a dense convolution followed by a mask multiply.  Every
//! timed call starts with a cold L2 (see `L2_FLUSH_BYTES`).
//! With `--features cudnn`, cuDNN's forward, backward-data and backward-filter passes on
//! the gathered (compact) tensors are timed beside the masked convolution's, with the
//! speedups.  Without a GPU it prints the reason and exits successfully, or fails when
//! `PRUNE_REQUIRE_GPU=1`.

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "cudnn")]
#[path = "support/cudnn_peer.rs"]
mod cudnn_peer;

use criterion::{BenchmarkId, Criterion};
use prune_kernels::cudarc::driver::{sys::CUevent_flags, CudaSlice, CudaStream, DriverError};
use prune_kernels::host::{upload, zeros};
use prune_kernels::{
    Baselines, ChannelGather, ChannelLayout, ConvShape, KeepList, KernelContext, KernelError,
    MaskedConv2d, NoiseMode, SbpNoise, SbpParams, SbpShape, UnfusedWork, Untouched,
};

fn drv(op: &'static str) -> impl FnOnce(DriverError) -> KernelError {
    move |source| KernelError::Driver {
        op: op.into(),
        source,
    }
}

/// Bytes written between timed calls to evict the previous call's data from L2 (larger
/// than the L2 of any current GPU: 50 MB on H100 / H200), so that every timed call reads
/// its inputs from DRAM, as it does in a training step where other layers run in between.
const L2_FLUSH_BYTES: usize = 256 << 20;

/// Seconds per call of `f`, timed with CUDA events around each of `iters` calls, with the
/// L2 cache flushed (outside the timed interval) before every call.
fn time_gpu(
    kc: &KernelContext,
    iters: u64,
    f: &mut dyn FnMut() -> Result<(), KernelError>,
) -> Result<f64, KernelError> {
    let ctx = kc.cuda_context();
    let stream = kc.stream();
    let start = ctx
        .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(drv("creating a timing event"))?;
    let end = ctx
        .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(drv("creating a timing event"))?;
    let mut flush = stream
        .alloc_zeros::<u8>(L2_FLUSH_BYTES)
        .map_err(drv("allocating the L2 flush buffer"))?;
    f()?; // warm-up
    let mut total_ms = 0.0f64;
    for _ in 0..iters.max(1) {
        stream
            .memset_zeros(&mut flush)
            .map_err(drv("flushing L2"))?;
        start
            .record(stream)
            .map_err(drv("recording a timing event"))?;
        f()?;
        end.record(stream)
            .map_err(drv("recording a timing event"))?;
        total_ms += start
            .elapsed_ms(&end)
            .map_err(drv("reading a timing event"))? as f64;
    }
    Ok(total_ms * 1e-3 / iters.max(1) as f64)
}

fn criterion_time(
    kc: &KernelContext,
    iters: u64,
    f: &mut dyn FnMut() -> Result<(), KernelError>,
) -> Duration {
    let secs = time_gpu(kc, iters, f).expect("GPU benchmark iteration failed");
    Duration::from_secs_f64(secs * iters as f64)
}

fn copy_fn<'a>(
    stream: &'a Arc<CudaStream>,
    src: &'a CudaSlice<f32>,
    dst: &'a mut CudaSlice<f32>,
) -> impl FnMut() -> Result<(), KernelError> + 'a {
    move || stream.memcpy_dtod(src, dst).map_err(drv("cuMemcpyDtoD"))
}

struct Line {
    name: String,
    bytes: f64,
    secs: f64,
}

fn report(lines: &[Line], copy_gbs: f64) {
    for l in lines {
        let gbs = l.bytes / l.secs / 1e9;
        println!(
            "{:<44} {:>9.3} ms {:>9.1} GB/s  {:>5.1}% of copy",
            l.name,
            l.secs * 1e3,
            gbs,
            100.0 * gbs / copy_gbs
        );
    }
}

fn run(kc: &KernelContext, c: &mut Criterion) -> Result<(), KernelError> {
    let stream = kc.stream().clone();
    let sbp = SbpNoise::new(kc)?;
    let base = Baselines::new(kc)?;
    let gather = ChannelGather::new(kc)?;
    let conv = MaskedConv2d::new(kc)?;
    let info = kc.device();
    println!(
        "device: {} (sm_{}{}, {} SMs, {:.1} GiB), NVRTC arch {}",
        info.name,
        info.compute_capability.0,
        info.compute_capability.1,
        info.multiprocessors,
        info.total_memory as f64 / (1u64 << 30) as f64,
        kc.arch()
    );
    let iters = 50;

    // ---------------------------------------------------------------- noise
    let noise_shapes = [
        ("nchw 64x256x56x56", SbpShape::nchw(64, 256, 56, 56)),
        ("nf 4096x4096", SbpShape::features(4096, 4096)),
    ];
    for (label, shape) in noise_shapes {
        let n = shape.numel()?;
        let x = upload(&stream, &vec![1.0f32; n])?;
        let mut y = zeros(&stream, n)?;
        let mu = upload(&stream, &vec![-0.5f32; shape.channels])?;
        let ls = upload(&stream, &vec![-2.0f32; shape.channels])?;
        let mut dst = zeros(&stream, n)?;
        let copy = time_gpu(kc, iters, &mut copy_fn(&stream, &x, &mut dst))?;
        let bytes = 2.0 * 4.0 * n as f64;
        let copy_gbs = bytes / copy / 1e9;
        println!(
            "{:<44} {:>9.3} ms {:>9.1} GB/s  (cuMemcpyDtoD, {n} floats)",
            format!("copy [{label}]"),
            copy * 1e3,
            copy_gbs
        );
        let mut lines = Vec::new();
        for mode in [NoiseMode::PerChannel, NoiseMode::PerExample] {
            let p = SbpParams {
                mu: &mu,
                log_sigma: &ls,
                stream: 42u64.into(),
                mode,
            };
            let mut theta = zeros(&stream, shape.theta_len(mode)?)?;
            // Per example the fused forward is the sampling step and the streaming pass.
            let mut dth = match mode {
                NoiseMode::PerChannel => None,
                NoiseMode::PerExample => Some(zeros(&stream, 2 * shape.theta_len(mode)?)?),
            };
            let mut work = UnfusedWork::new(&stream, shape.theta_len(mode)?)?;
            let mut fused =
                || sbp.forward_into(&stream, &x, shape, &p, &mut y, &mut theta, dth.as_mut());
            let t_fused = time_gpu(kc, iters, &mut fused)?;
            lines.push(Line {
                name: format!("sbp fused [{label} {mode:?}]"),
                bytes,
                secs: t_fused,
            });
            let mut yu = zeros(&stream, n)?;
            let mut unfused = || base.unfused_noise(&stream, &x, shape, &p, &mut work, &mut yu);
            let t_unfused = time_gpu(kc, iters, &mut unfused)?;
            lines.push(Line {
                name: format!("sbp unfused [{label} {mode:?}]"),
                bytes,
                secs: t_unfused,
            });
            let mut g = c.benchmark_group(format!("sbp_noise/{label}/{mode:?}"));
            g.sample_size(10)
                .warm_up_time(Duration::from_millis(200))
                .measurement_time(Duration::from_secs(1));
            g.bench_function(BenchmarkId::new("fused", label), |b| {
                b.iter_custom(|it| {
                    criterion_time(kc, it, &mut || {
                        sbp.forward_into(&stream, &x, shape, &p, &mut y, &mut theta, dth.as_mut())
                    })
                })
            });
            g.bench_function(BenchmarkId::new("unfused", label), |b| {
                b.iter_custom(|it| {
                    criterion_time(kc, it, &mut || {
                        base.unfused_noise(&stream, &x, shape, &p, &mut work, &mut yu)
                    })
                })
            });
            g.finish();
        }
        report(&lines, copy_gbs);
    }

    // ---------------------------------------------------------------- gather
    let layout = ChannelLayout::nchw(64, 256, 56, 56);
    let keep_idx: Vec<u32> = (0..256u32).filter(|c| c % 10 < 3).collect();
    let keep = KeepList::new(&stream, &keep_idx, 256)?;
    let full = layout.full_len()?;
    let compact = layout.compact_len(keep.len())?;
    let src = upload(&stream, &vec![1.0f32; full])?;
    let mut dst = zeros(&stream, compact)?;
    let copy_src = zeros(&stream, compact)?;
    let mut copy_dst = zeros(&stream, compact)?;
    let bytes = 2.0 * 4.0 * compact as f64;
    let copy = time_gpu(kc, iters, &mut copy_fn(&stream, &copy_src, &mut copy_dst))?;
    let copy_gbs = bytes / copy / 1e9;
    println!(
        "{:<44} {:>9.3} ms {:>9.1} GB/s  (cuMemcpyDtoD, {compact} floats)",
        "copy [gather output size]",
        copy * 1e3,
        copy_gbs
    );
    let mut full_dst = zeros(&stream, full)?;
    let t_g = time_gpu(kc, iters, &mut || {
        gather.gather_into(&stream, &src, &layout, &keep, &mut dst)
    })?;
    let t_n = time_gpu(kc, iters, &mut || {
        base.naive_gather(&stream, &src, &layout, &keep, &mut dst)
    })?;
    let t_s = time_gpu(kc, iters, &mut || {
        gather.scatter_into(
            &stream,
            &copy_src,
            &layout,
            &keep,
            &mut full_dst,
            Untouched::Keep,
        )
    })?;
    report(
        &[
            Line {
                name: "gather vec4 [64x256x56x56, 30% kept]".into(),
                bytes,
                secs: t_g,
            },
            Line {
                name: "gather naive [64x256x56x56, 30% kept]".into(),
                bytes,
                secs: t_n,
            },
            Line {
                name: "scatter vec4 [64x256x56x56, 30% kept]".into(),
                bytes,
                secs: t_s,
            },
        ],
        copy_gbs,
    );
    let mut g = c.benchmark_group("gather/64x256x56x56/30%");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(1));
    g.bench_function("vec4", |b| {
        b.iter_custom(|it| {
            criterion_time(kc, it, &mut || {
                gather.gather_into(&stream, &src, &layout, &keep, &mut dst)
            })
        })
    });
    g.bench_function("naive", |b| {
        b.iter_custom(|it| {
            criterion_time(kc, it, &mut || {
                base.naive_gather(&stream, &src, &layout, &keep, &mut dst)
            })
        })
    });
    g.finish();

    // ---------------------------------------------------------------- conv
    let sh = ConvShape {
        batch: 32,
        in_channels: 256,
        height: 28,
        width: 28,
        out_channels: 256,
        kernel: (3, 3),
        stride: (1, 1),
        padding: (1, 1),
    };
    let x = upload(&stream, &vec![0.5f32; sh.input_len()?])?;
    let w = upload(&stream, &vec![0.01f32; sh.weight_len()?])?;
    let ki = KeepList::new(&stream, &keep_idx, 256)?;
    let ko = KeepList::new(&stream, &keep_idx, 256)?;
    let all_in = KeepList::all(&stream, 256)?;
    let all_out = KeepList::all(&stream, 256)?;
    let mut y_masked = zeros(&stream, sh.output_len(ko.len())?)?;
    let mut y_dense = zeros(&stream, sh.output_len(256)?)?;
    let mut y_mul = zeros(&stream, sh.output_len(256)?)?;
    let mask: Vec<f32> = (0..256u32)
        .map(|c| if keep_idx.contains(&c) { 1.0 } else { 0.0 })
        .collect();
    let mask = upload(&stream, &mask)?;
    let (ho, wo) = sh.output_hw()?;
    let out_shape = SbpShape::nchw(sh.batch, 256, ho, wo);
    let t_m = time_gpu(kc, 20, &mut || {
        conv.forward_into(&stream, &x, &w, &sh, &ki, &ko, &mut y_masked)
    })?;
    let t_d = time_gpu(kc, 20, &mut || {
        conv.forward_into(&stream, &x, &w, &sh, &all_in, &all_out, &mut y_dense)?;
        base.scale_channels(
            &stream,
            &y_dense,
            &mask,
            out_shape,
            NoiseMode::PerChannel,
            &mut y_mul,
        )
    })?;
    let dense_flops = 2.0 * (sh.batch * 256 * ho * wo * 256 * 9) as f64;
    println!(
        "{:<44} {:>9.3} ms {:>9.1} GFLOP/s (useful)",
        "masked conv [32x256x28x28 3x3, 30% in/out]",
        t_m * 1e3,
        dense_flops * 0.09 / t_m / 1e9
    );
    println!(
        "{:<44} {:>9.3} ms {:>9.1} GFLOP/s",
        "dense conv + mask multiply",
        t_d * 1e3,
        dense_flops / t_d / 1e9
    );
    println!("masked conv speedup over dense + mask: {:.2}x", t_d / t_m);
    // The backward passes of the masked convolution: dy is the compact output gradient,
    // dx / dw the full tensors (only kept channels written).
    let dy = upload(&stream, &vec![0.01f32; sh.output_len(ko.len())?])?;
    let mut dx = zeros(&stream, sh.input_len()?)?;
    let mut dw = zeros(&stream, sh.weight_len()?)?;
    let t_md = time_gpu(kc, 20, &mut || {
        conv.backward_input_into(&stream, &dy, &w, &sh, &ki, &ko, &mut dx)
    })?;
    let t_mf = time_gpu(kc, 20, &mut || {
        conv.backward_weight_into(&stream, &dy, &x, &sh, &ki, &ko, &mut dw)
    })?;
    let useful = dense_flops * 0.09;
    for (name, t) in [
        ("masked conv input grad [30% in/out]", t_md),
        ("masked conv weight grad [30% in/out]", t_mf),
    ] {
        println!(
            "{:<44} {:>9.3} ms {:>9.1} GFLOP/s (useful)",
            name,
            t * 1e3,
            useful / t / 1e9
        );
    }
    #[cfg(feature = "cudnn")]
    let mut peer = cudnn_peer::compact_conv(&stream, &sh, ki.len(), ko.len())?;
    #[cfg(feature = "cudnn")]
    if let Some(passes) = peer.as_mut() {
        let masked = [t_m, t_md, t_mf];
        let names = ["forward", "backward data", "backward filter"];
        for ((launch, t_mask), name) in passes.iter_mut().zip(masked).zip(names) {
            let t_c = time_gpu(kc, 20, &mut **launch)?;
            println!(
                "{:<44} {:>9.3} ms {:>9.1} GFLOP/s",
                format!("cuDNN {name} on the gathered tensors"),
                t_c * 1e3,
                useful / t_c / 1e9
            );
            println!(
                "masked conv speedup over cuDNN on gathered tensors ({name}): {:.2}x",
                t_c / t_mask
            );
        }
    }
    #[cfg(not(feature = "cudnn"))]
    println!("cuDNN peer skipped: built without the cudnn feature");
    let mut g = c.benchmark_group("conv/32x256x28x28/3x3/30%");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("masked", |b| {
        b.iter_custom(|it| {
            criterion_time(kc, it, &mut || {
                conv.forward_into(&stream, &x, &w, &sh, &ki, &ko, &mut y_masked)
            })
        })
    });
    #[cfg(feature = "cudnn")]
    if let Some([fwd, _, _]) = peer.as_mut() {
        g.bench_function("cudnn-gathered", |b| {
            b.iter_custom(|it| criterion_time(kc, it, &mut **fwd))
        });
    }
    g.bench_function("dense+mask", |b| {
        b.iter_custom(|it| {
            criterion_time(kc, it, &mut || {
                conv.forward_into(&stream, &x, &w, &sh, &all_in, &all_out, &mut y_dense)?;
                base.scale_channels(
                    &stream,
                    &y_dense,
                    &mask,
                    out_shape,
                    NoiseMode::PerChannel,
                    &mut y_mul,
                )
            })
        })
    });
    g.finish();
    Ok(())
}

fn main() {
    let kc = match KernelContext::new(0) {
        Ok(kc) => kc,
        Err(e) => {
            // A visible skip here; a failure where a GPU is required (scripts/gpu-check.sh).
            println!("prune-kernels benchmarks skipped: {e}");
            if std::env::var("PRUNE_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                eprintln!("PRUNE_REQUIRE_GPU=1: the benchmarks need a GPU");
                std::process::exit(1);
            }
            return;
        }
    };
    let mut c = Criterion::default().configure_from_args();
    if let Err(e) = run(&kc, &mut c) {
        eprintln!("prune-kernels benchmarks failed: {e}");
        std::process::exit(1);
    }
    c.final_summary();
}
