//! The CUDA sources embedded in the crate and their compilation with NVRTC.
//!
//! Every kernel file is compiled as one translation unit made of `common.cuh`, any files
//! it builds on, and the file itself, each introduced by a `#line` directive so compiler
//! messages name the original file and line.

use std::ffi::{c_char, CString};

use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys, Ptx};

use crate::error::KernelError;
use crate::probe::{guarded, require_nvrtc};

const COMMON: &str = include_str!("../../../kernels/common.cuh");
const SBP_MATH: &str = include_str!("../../../kernels/sbp_math.cuh");
const SBP_NOISE: &str = include_str!("../../../kernels/sbp_noise.cu");
const MASKED_CONV: &str = include_str!("../../../kernels/masked_conv.cu");
const GATHER: &str = include_str!("../../../kernels/gather.cu");
const BASELINE: &str = include_str!("../../../kernels/baseline.cu");
const ELEMENTWISE: &str = include_str!("../../../kernels/elementwise.cu");
const REDUCE: &str = include_str!("../../../kernels/reduce.cu");
const BATCHNORM: &str = include_str!("../../../kernels/batchnorm.cu");
const POOLING: &str = include_str!("../../../kernels/pooling.cu");
const CHANNELS: &str = include_str!("../../../kernels/channels.cu");
const OPTIM: &str = include_str!("../../../kernels/optim.cu");
const SBP_KL: &str = include_str!("../../../kernels/sbp_kl.cu");

/// One kernel file of `kernels/`, compiled as one NVRTC program and loaded as one module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelFile {
    /// `sbp_noise.cu`: fused SBP noise forward / backward and channel statistics.
    SbpNoise,
    /// `masked_conv.cu`: convolution restricted to kept channels and its gradients.
    MaskedConv,
    /// `gather.cu`: channel gather / scatter and buffer fill.
    Gather,
    /// `baseline.cu`: unfused and naive kernels used by the benchmarks.
    Baseline,
    /// `elementwise.cu`: unary and broadcasting binary maps, dropout.
    Elementwise,
    /// `reduce.cu`: axis sums, log-softmax, negative log-likelihood.
    Reduce,
    /// `batchnorm.cu`: batch normalisation (train statistics, apply, backward).
    BatchNorm,
    /// `pooling.cu`: max / average pooling and global-average backward.
    Pooling,
    /// `channels.cu`: concatenation, slicing and index selection along channels.
    Channels,
    /// `optim.cu`: fused SGD and Adam updates.
    Optim,
    /// `sbp_kl.cu`: the SBP KL term and its gradient (built on `sbp_math.cuh`).
    SbpKl,
}

impl KernelFile {
    /// Every kernel file.
    pub const ALL: [KernelFile; 11] = [
        KernelFile::SbpNoise,
        KernelFile::MaskedConv,
        KernelFile::Gather,
        KernelFile::Baseline,
        KernelFile::Elementwise,
        KernelFile::Reduce,
        KernelFile::BatchNorm,
        KernelFile::Pooling,
        KernelFile::Channels,
        KernelFile::Optim,
        KernelFile::SbpKl,
    ];

    /// File name under `kernels/`.
    pub fn file_name(self) -> &'static str {
        match self {
            KernelFile::SbpNoise => "sbp_noise.cu",
            KernelFile::MaskedConv => "masked_conv.cu",
            KernelFile::Gather => "gather.cu",
            KernelFile::Baseline => "baseline.cu",
            KernelFile::Elementwise => "elementwise.cu",
            KernelFile::Reduce => "reduce.cu",
            KernelFile::BatchNorm => "batchnorm.cu",
            KernelFile::Pooling => "pooling.cu",
            KernelFile::Channels => "channels.cu",
            KernelFile::Optim => "optim.cu",
            KernelFile::SbpKl => "sbp_kl.cu",
        }
    }

    /// Names of the `extern "C"` kernels the file defines.
    pub fn kernels(self) -> &'static [&'static str] {
        match self {
            KernelFile::SbpNoise => &[
                "sbp_sample_per_example",
                "sbp_forward",
                "sbp_backward_tiles",
                "sbp_backward_finalize",
                "sbp_channel_stats",
            ],
            KernelFile::MaskedConv => &[
                "masked_conv_fwd",
                "masked_conv_dgrad",
                "masked_conv_wgrad",
                "masked_conv_wgrad_reduce",
            ],
            KernelFile::Gather => &[
                "gather_channels_vec4",
                "gather_channels_f32",
                "scatter_channels_vec4",
                "scatter_channels_f32",
                "fill_f32",
            ],
            KernelFile::Baseline => &[
                "base_noise_uniform",
                "base_noise_log_theta",
                "base_exp",
                "base_scale_channels",
                "base_gather_naive",
            ],
            KernelFile::Elementwise => &["ew_unary", "ew_binary", "dropout_fwd"],
            KernelFile::Reduce => &[
                "reduce_rows",
                "reduce_cols",
                "log_softmax_fwd",
                "log_softmax_bwd",
                "nll_fwd",
                "nll_bwd",
            ],
            KernelFile::BatchNorm => &[
                "bn_stats",
                "bn_apply",
                "bn_invstd",
                "bn_backward_reduce",
                "bn_backward_dx",
            ],
            KernelFile::Pooling => &[
                "max_pool_fwd",
                "max_pool_bwd",
                "avg_pool_fwd",
                "avg_pool_bwd",
                "global_avg_pool_bwd",
            ],
            KernelFile::Channels => &[
                "copy_channels",
                "index_select_channels",
                "index_add_channels",
            ],
            KernelFile::Optim => &["sgd_step", "adam_step", "ema_step"],
            KernelFile::SbpKl => &["sbp_kl_grad"],
        }
    }

    /// The parts of the translation unit, in order: (file name, text).
    fn parts(self) -> Vec<(&'static str, &'static str)> {
        let mut parts = vec![("common.cuh", COMMON)];
        match self {
            KernelFile::SbpNoise => {
                parts.push(("sbp_math.cuh", SBP_MATH));
                parts.push(("sbp_noise.cu", SBP_NOISE));
            }
            KernelFile::MaskedConv => parts.push(("masked_conv.cu", MASKED_CONV)),
            KernelFile::Gather => parts.push(("gather.cu", GATHER)),
            KernelFile::Baseline => {
                parts.push(("sbp_math.cuh", SBP_MATH));
                parts.push(("baseline.cu", BASELINE));
            }
            KernelFile::Elementwise => parts.push(("elementwise.cu", ELEMENTWISE)),
            KernelFile::Reduce => parts.push(("reduce.cu", REDUCE)),
            KernelFile::BatchNorm => parts.push(("batchnorm.cu", BATCHNORM)),
            KernelFile::Pooling => parts.push(("pooling.cu", POOLING)),
            KernelFile::Channels => parts.push(("channels.cu", CHANNELS)),
            KernelFile::Optim => parts.push(("optim.cu", OPTIM)),
            KernelFile::SbpKl => {
                parts.push(("sbp_math.cuh", SBP_MATH));
                parts.push(("sbp_kl.cu", SBP_KL));
            }
        }
        parts
    }

    /// The complete program text handed to NVRTC.
    pub fn program_source(self) -> String {
        let mut src = String::new();
        for (name, text) in self.parts() {
            src.push_str(&format!("#line 1 \"{name}\"\n"));
            src.push_str(text);
            if !text.ends_with('\n') {
                src.push('\n');
            }
        }
        src
    }
}

/// Output of a successful NVRTC compilation.
#[derive(Debug, Clone)]
pub struct CompiledKernel {
    /// Program name given to NVRTC (the kernel file name).
    pub name: String,
    /// The architecture option used, e.g. `compute_90`.
    pub arch: String,
    /// PTX text (no trailing NUL).
    pub ptx: String,
    /// NVRTC's log: empty unless the compiler emitted warnings or remarks.
    pub log: String,
}

impl CompiledKernel {
    /// The PTX in the form cudarc loads.
    pub fn to_ptx(&self) -> Ptx {
        Ptx::from_src(self.ptx.clone())
    }
}

/// NVRTC options used for every kernel file (besides the architecture).
pub const NVRTC_OPTIONS: [&str; 3] = ["--std=c++17", "--fmad=true", "--extra-device-vectorization"];

fn c_chars_to_string(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

struct Program(nvrtc_sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: the program was created by create_program and is destroyed once here.
        // A failure to free it leaves nothing to recover, so the status is dropped.
        let _ = unsafe { nvrtc::destroy_program(self.0) };
    }
}

/// Compiles one kernel file for `arch` (`compute_XX` gives PTX that the driver finishes
/// for the device).  Needs only `libnvrtc`, no GPU.
pub fn compile(file: KernelFile, arch: &str) -> Result<CompiledKernel, KernelError> {
    compile_source(file.file_name(), &file.program_source(), arch)
}

/// Compiles an arbitrary CUDA program text named `name` with the crate's NVRTC options.
pub fn compile_source(name: &str, source: &str, arch: &str) -> Result<CompiledKernel, KernelError> {
    require_nvrtc()?;
    let compile_err = |log: String| KernelError::Compile {
        kernel: name.to_string(),
        log,
    };
    let src = CString::new(source)
        .map_err(|_| compile_err("kernel source contains a NUL byte".into()))?;
    let cname =
        CString::new(name).map_err(|_| compile_err("program name contains a NUL byte".into()))?;
    let mut options: Vec<String> = vec![format!("--gpu-architecture={arch}")];
    options.extend(NVRTC_OPTIONS.iter().map(|s| s.to_string()));
    guarded("compiling with NVRTC", || {
        let prog = Program(
            nvrtc::create_program(&src, Some(cname.as_c_str()))
                .map_err(|e| compile_err(format!("nvrtcCreateProgram: {e}")))?,
        );
        // SAFETY: `prog` is a live program; the option strings outlive the call.
        let status = unsafe { nvrtc::compile_program(prog.0, &options) };
        // SAFETY: `prog` is live; the log is read after compilation as NVRTC requires.
        let log = unsafe { nvrtc::get_program_log(prog.0) }
            .map(|l| c_chars_to_string(&l))
            .unwrap_or_default();
        if let Err(e) = status {
            return Err(compile_err(format!(
                "{e} (options {options:?})\n{}",
                log.trim_end()
            )));
        }
        // SAFETY: compilation succeeded, so the program holds PTX.
        let ptx = unsafe { nvrtc::get_ptx(prog.0) }
            .map_err(|e| compile_err(format!("nvrtcGetPTX: {e}")))?;
        Ok(CompiledKernel {
            name: name.to_string(),
            arch: arch.to_string(),
            ptx: c_chars_to_string(&ptx),
            log: log.trim().to_string(),
        })
    })
}

/// NVRTC's version (major, minor).
pub fn nvrtc_version() -> Result<(i32, i32), KernelError> {
    require_nvrtc()?;
    guarded("querying the NVRTC version", || {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: plain out-parameters.
        unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) }
            .result()
            .map_err(|e| KernelError::NoCuda(format!("nvrtcVersion: {e}")))?;
        Ok((major, minor))
    })
}

/// Virtual architectures NVRTC can target, as numbers like 75, 80, 90.
pub fn nvrtc_supported_archs() -> Result<Vec<i32>, KernelError> {
    require_nvrtc()?;
    guarded("querying NVRTC architectures", || {
        let mut n = 0;
        // SAFETY: plain out-parameter.
        unsafe { nvrtc_sys::nvrtcGetNumSupportedArchs(&mut n) }
            .result()
            .map_err(|e| KernelError::NoCuda(format!("nvrtcGetNumSupportedArchs: {e}")))?;
        let mut archs = vec![0i32; n.max(0) as usize];
        if !archs.is_empty() {
            // SAFETY: `archs` has room for the `n` entries NVRTC writes.
            unsafe { nvrtc_sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }
                .result()
                .map_err(|e| KernelError::NoCuda(format!("nvrtcGetSupportedArchs: {e}")))?;
        }
        Ok(archs)
    })
}

/// The `compute_XX` option for a device of compute capability `cc`: the device's own
/// architecture when NVRTC knows it, otherwise the newest one NVRTC supports below it
/// (the driver JIT-compiles the PTX forward).
pub fn arch_for_device(cc: (i32, i32), supported: &[i32]) -> Result<String, KernelError> {
    let want = cc.0 * 10 + cc.1;
    supported
        .iter()
        .copied()
        .filter(|&a| a <= want)
        .max()
        .map(|a| format!("compute_{a}"))
        .ok_or_else(|| {
            KernelError::NoDevice(format!(
                "compute capability {}.{} is older than every architecture this NVRTC \
                 supports ({supported:?})",
                cc.0, cc.1
            ))
        })
}
