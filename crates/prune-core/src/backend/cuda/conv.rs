//! Convolution of the CUDA backend: cuDNN when it can be used, else the implicit-GEMM
//! kernels of `masked_conv.cu`.
//!
//! * **cuDNN** (`cudnn.rs`; on the emulated device a host stand-in executes the same
//!   [`ConvDesc`]): forward, backward data and backward filter of the whole convolution in
//!   one call each, groups native (`cudnnSetConvolutionGroupCount`), stride and zero
//!   padding from [`Conv2dParams`]. The algorithm of each (description, pass) is chosen
//!   once, on first use, and cached on the device; its workspace is a buffer from the
//!   device's pool, returned after the call.
//! * **Implicit GEMM** (the fallback): `masked_conv.cu` with every channel kept (forward,
//!   input gradient, weight gradient with a deterministic split-K). Grouped convolutions
//!   run group by group: the group's input channels and filters are gathered
//!   (`index_select`), convolved, and the outputs concatenated.
//!
//! Either way the bias is a broadcast add and its gradient the sum of `g` over batch and
//! space.
//!
//! Which engine a device uses is fixed when it opens, from the `PRUNE_CUDNN` environment
//! variable (read once per process, see [`ConvSetting`]) and whether libcudnn loads;
//! [`GpuDevice::convolution`] says which (it is part of the device's `Debug` text).

use super::conv_desc::{ConvDesc, ConvPass};
use super::ops::{bin, reduce, sl, wrap};
use super::{kernel_err, GpuDevice, GpuRuntime};
use crate::cpu::{Conv2dGrads, Conv2dParams};
use crate::error::{CoreError, Result};
use crate::tensor::{numel, Tensor};
use prune_kernels::cpu_ref::elementwise::Binary as KB;
use prune_kernels::{ConvShape, KeepList, KernelContext};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// How the CUDA backend convolves. Read from `PRUNE_CUDNN` (once per process) when a
/// device opens:
///
/// | `PRUNE_CUDNN` | setting |
/// | --- | --- |
/// | unset, empty or `fastest` | [`ConvSetting::Fastest`] |
/// | `deterministic` | [`ConvSetting::Deterministic`] |
/// | `off` | [`ConvSetting::ImplicitGemm`] |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvSetting {
    /// cuDNN with the algorithm its heuristics rank first (some backward algorithms add
    /// with atomics, so repeated runs may differ in the last bits); the implicit-GEMM
    /// kernels when libcudnn cannot be used.
    Fastest,
    /// cuDNN restricted to algorithms it reports deterministic (bitwise repeatable);
    /// the implicit-GEMM kernels (deterministic too) when libcudnn cannot be used.
    Deterministic,
    /// The implicit-GEMM kernels, cuDNN not loaded (benchmarks, tests, or a broken
    /// cuDNN installation).
    ImplicitGemm,
}

impl ConvSetting {
    /// The environment variable the setting is read from.
    pub const ENV: &'static str = "PRUNE_CUDNN";

    /// The setting a value of `PRUNE_CUDNN` names.
    pub fn parse(value: &str) -> Result<Self> {
        match value.trim() {
            "" | "fastest" => Ok(ConvSetting::Fastest),
            "deterministic" => Ok(ConvSetting::Deterministic),
            "off" => Ok(ConvSetting::ImplicitGemm),
            other => Err(CoreError::InvalidArgument {
                op: "opening a CUDA device",
                reason: format!(
                    "{}={other:?}: expected `fastest`, `deterministic` or `off`",
                    Self::ENV
                ),
            }),
        }
    }

    /// The setting of this process (`PRUNE_CUDNN`, read on the first call).
    pub fn from_env() -> Result<Self> {
        static SETTING: OnceLock<Result<ConvSetting>> = OnceLock::new();
        SETTING
            .get_or_init(|| ConvSetting::parse(&std::env::var(Self::ENV).unwrap_or_default()))
            .clone()
    }
}

/// An algorithm chosen for one pass of one [`ConvDesc`].
#[derive(Debug, Clone)]
pub struct ConvAlgo<A> {
    /// The runtime's handle of the algorithm.
    pub algo: A,
    /// Its name (cuDNN's enumerator).
    pub name: String,
    /// Whether the library reports it bitwise repeatable.
    pub deterministic: bool,
    /// Workspace it needs, bytes.
    pub workspace_bytes: usize,
}

/// One cached algorithm choice, as [`GpuDevice::conv_algorithms`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenAlgo {
    pub desc: ConvDesc,
    pub pass: ConvPass,
    pub name: String,
    pub deterministic: bool,
    pub workspace_bytes: usize,
}

/// Chosen algorithms by description and pass.
type AlgoCache<A> = HashMap<(ConvDesc, ConvPass), Arc<ConvAlgo<A>>>;

/// A device's convolution engine: the library (or why there is none) and the algorithm
/// chosen per description and pass.
pub(super) struct ConvEngine<R: GpuRuntime> {
    setting: ConvSetting,
    dnn: std::result::Result<R::Dnn, String>,
    algos: Mutex<AlgoCache<R::Algo>>,
}

impl<R: GpuRuntime> ConvEngine<R> {
    /// Loads the library on `kc` unless `setting` turns it off; a library that cannot be
    /// used leaves the implicit-GEMM kernels, with the reason kept for
    /// [`GpuDevice::convolution`].
    pub(super) fn open(kc: &KernelContext<R>, setting: ConvSetting) -> Self {
        let dnn = match setting {
            ConvSetting::ImplicitGemm => {
                Err(format!("cuDNN turned off by {}=off", ConvSetting::ENV))
            }
            ConvSetting::Fastest | ConvSetting::Deterministic => R::dnn(kc),
        };
        ConvEngine {
            setting,
            dnn,
            algos: Mutex::new(HashMap::new()),
        }
    }

    fn describe(&self) -> String {
        match &self.dnn {
            Ok(dnn) => format!(
                "{} ({} algorithms, FP32 math)",
                R::dnn_name(dnn),
                match self.setting {
                    ConvSetting::Deterministic => "deterministic",
                    _ => "fastest heuristic",
                }
            ),
            Err(why) => format!("implicit-GEMM kernels (masked_conv.cu): {why}"),
        }
    }

    /// The algorithm of `pass` for `desc`, chosen on the first call.
    fn algo(
        &self,
        dnn: &R::Dnn,
        desc: &ConvDesc,
        pass: ConvPass,
    ) -> Result<Arc<ConvAlgo<R::Algo>>> {
        let key = (*desc, pass);
        if let Some(a) = self.lock().get(&key) {
            return Ok(a.clone());
        }
        let deterministic = self.setting == ConvSetting::Deterministic;
        let a = R::conv_algo(dnn, desc, pass, deterministic)?;
        if deterministic && !a.deterministic {
            return Err(CoreError::InvalidArgument {
                op: "conv2d",
                reason: format!("{pass:?} of {desc:?}: {} is not deterministic", a.name),
            });
        }
        let a = Arc::new(a);
        self.lock().insert(key, a.clone());
        Ok(a)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AlgoCache<R::Algo>> {
        self.algos.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<R: GpuRuntime> GpuDevice<R> {
    /// Which convolution engine the device uses, and why: e.g. `cuDNN 9.10.2 (fastest
    /// heuristic algorithms, FP32 math)` or `implicit-GEMM kernels (masked_conv.cu):
    /// libcudnn was not found on the loader path (...)`.
    pub fn convolution(&self) -> String {
        self.convs.describe()
    }

    /// True when convolutions go through cuDNN (or its stand-in on the emulated device).
    pub fn uses_cudnn(&self) -> bool {
        self.convs.dnn.is_ok()
    }

    /// The algorithms chosen so far, one per (description, pass).
    pub fn conv_algorithms(&self) -> Vec<ChosenAlgo> {
        let mut v: Vec<ChosenAlgo> = self
            .convs
            .lock()
            .iter()
            .map(|((desc, pass), a)| ChosenAlgo {
                desc: *desc,
                pass: *pass,
                name: a.name.clone(),
                deterministic: a.deterministic,
                workspace_bytes: a.workspace_bytes,
            })
            .collect();
        v.sort_by_key(|c| format!("{:?}{:?}", c.desc, c.pass));
        v
    }
}

/// The output buffer of `pass`: unwritten when the library computes it (beta = 0: it
/// does not read it), zeros when an operand is empty and no call is made.
fn pass_output<R: GpuRuntime>(
    d: &GpuDevice<R>,
    desc: &ConvDesc,
    pass: ConvPass,
) -> Result<R::Buf<f32>> {
    let lens = desc.lens(pass);
    d.output_of(lens[2], !lens.contains(&0))
}

/// `pass` of `desc` through the library on `(a, b, out)` (see [`ConvPass`]).
fn dnn_pass<R: GpuRuntime>(
    d: &GpuDevice<R>,
    dnn: &R::Dnn,
    desc: &ConvDesc,
    pass: ConvPass,
    a: &R::Buf<f32>,
    b: &R::Buf<f32>,
    out: &mut R::Buf<f32>,
) -> Result<()> {
    desc.check(pass, [R::len(a), R::len(b), R::len(out)])?;
    if desc.lens(pass).contains(&0) {
        // An empty operand: the zeroed output (`pass_output`) is the answer; cuDNN
        // refuses zero sizes.
        return Ok(());
    }
    let algo = d.convs.algo(dnn, desc, pass)?;
    let mut ws = d.output(algo.workspace_bytes.div_ceil(4))?;
    let run = R::conv_run(dnn, desc, pass, &algo, a, b, out, &mut ws);
    d.release(ws);
    run
}

pub(super) fn conv2d<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
) -> Result<Tensor> {
    const OP: &str = "conv2d";
    let desc = ConvDesc::new(x.shape(), w.shape(), p)?;
    let y = match &d.convs.dnn {
        Ok(dnn) => {
            let shape = desc.y_dims().to_vec();
            let mut y = pass_output(d, &desc, ConvPass::Forward)?;
            let (xb, wb) = (sl::<R>(OP, x)?, sl::<R>(OP, w)?);
            dnn_pass(d, dnn, &desc, ConvPass::Forward, xb, wb, &mut y)?;
            wrap(d, shape, y)?
        }
        Err(_) if p.groups <= 1 => gemm_forward(d, x, w, p)?,
        Err(_) => {
            let be = super::backend(d.ordinal());
            let (cin, cout) = (desc.group_in(), desc.group_out());
            let mut parts = Vec::with_capacity(p.groups);
            for g in 0..p.groups {
                let xg = be.index_select(x, 1, &group_range(g, cin))?;
                let wg = be.index_select(w, 0, &group_range(g, cout))?;
                parts.push(gemm_forward(d, &xg, &wg, p)?);
            }
            be.concat(&parts.iter().collect::<Vec<_>>(), 1)?
        }
    };
    match bias {
        Some(b) => bin(d, &y, &b.reshape([1, b.numel(), 1, 1])?, KB::Add),
        None => Ok(y),
    }
}

pub(super) fn conv2d_backward<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    p: &Conv2dParams,
    need_x: bool,
    need_bias: bool,
) -> Result<Conv2dGrads> {
    const OP: &str = "conv2d backward";
    let desc = ConvDesc::new(x.shape(), w.shape(), p)?;
    if g.shape() != desc.y_dims() {
        return Err(CoreError::ShapeMismatch {
            op: OP,
            lhs: g.shape().to_vec(),
            rhs: desc.y_dims().to_vec(),
        });
    }
    let bias = if need_bias {
        Some(reduce(d, g, &[0, 2, 3], false, vec![desc.out_channels])?)
    } else {
        None
    };
    let (dx, dw) = match &d.convs.dnn {
        Ok(dnn) => {
            let (xb, wb, gb) = (sl::<R>(OP, x)?, sl::<R>(OP, w)?, sl::<R>(OP, g)?);
            let dx = if need_x {
                let mut dx = pass_output(d, &desc, ConvPass::BackwardData)?;
                dnn_pass(d, dnn, &desc, ConvPass::BackwardData, gb, wb, &mut dx)?;
                Some(wrap(d, x.shape().to_vec(), dx)?)
            } else {
                None
            };
            let mut dw = pass_output(d, &desc, ConvPass::BackwardFilter)?;
            dnn_pass(d, dnn, &desc, ConvPass::BackwardFilter, xb, gb, &mut dw)?;
            (dx, wrap(d, w.shape().to_vec(), dw)?)
        }
        Err(_) if p.groups <= 1 => gemm_backward(d, x, w, g, p, need_x)?,
        Err(_) => {
            let be = super::backend(d.ordinal());
            let (cin, cpg) = (desc.group_in(), desc.group_out());
            let (mut dxs, mut dws) = (Vec::new(), Vec::new());
            for k in 0..p.groups {
                let xg = be.index_select(x, 1, &group_range(k, cin))?;
                let wg = be.index_select(w, 0, &group_range(k, cpg))?;
                let gg = be.index_select(g, 1, &group_range(k, cpg))?;
                let (dxg, dwg) = gemm_backward(d, &xg, &wg, &gg, p, need_x)?;
                dxs.extend(dxg);
                dws.push(dwg);
            }
            let dx = if need_x {
                Some(be.concat(&dxs.iter().collect::<Vec<_>>(), 1)?)
            } else {
                None
            };
            (dx, be.concat(&dws.iter().collect::<Vec<_>>(), 0)?)
        }
    };
    Ok(Conv2dGrads { x: dx, w: dw, bias })
}

fn group_range(g: usize, per: usize) -> Vec<usize> {
    (g * per..(g + 1) * per).collect()
}

/// The keep list of all `bound` channels (uploaded once per size).
fn keep_all<R: GpuRuntime>(d: &GpuDevice<R>, bound: usize) -> Result<Arc<KeepList<R>>> {
    let mut keeps = d.keeps.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(k) = keeps.get(&bound) {
        return Ok(k.clone());
    }
    let k = Arc::new(KeepList::<R>::all(d.stream(), bound).map_err(kernel_err("conv2d"))?);
    keeps.insert(bound, k.clone());
    Ok(k)
}

/// The kernel crate's shape of one ungrouped convolution.
fn conv_shape(x: &[usize], w: &[usize], p: &Conv2dParams) -> Result<ConvShape> {
    if x.len() != 4 || w.len() != 4 || x[1] != w[1] {
        return Err(CoreError::ShapeMismatch {
            op: "conv2d",
            lhs: x.to_vec(),
            rhs: w.to_vec(),
        });
    }
    Ok(ConvShape {
        batch: x[0],
        in_channels: x[1],
        height: x[2],
        width: x[3],
        out_channels: w[0],
        kernel: (w[2], w[3]),
        stride: p.stride,
        padding: p.padding,
    })
}

/// One ungrouped convolution (no bias) through the implicit-GEMM kernels.
fn gemm_forward<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    w: &Tensor,
    p: &Conv2dParams,
) -> Result<Tensor> {
    let s = conv_shape(x.shape(), w.shape(), p)?;
    let (ho, wo) = s.output_hw().map_err(kernel_err("conv2d"))?;
    let (ki, ko) = (keep_all(d, s.in_channels)?, keep_all(d, s.out_channels)?);
    let shape = vec![s.batch, s.out_channels, ho, wo];
    let mut y = d.zeros(numel(&shape))?;
    d.conv
        .forward_into(
            d.stream(),
            sl::<R>("conv2d", x)?,
            sl::<R>("conv2d", w)?,
            &s,
            &ki,
            &ko,
            &mut y,
        )
        .map_err(kernel_err("conv2d"))?;
    wrap(d, shape, y)
}

/// Input and weight gradients of one ungrouped convolution through the implicit-GEMM
/// kernels.
fn gemm_backward<R: GpuRuntime>(
    d: &Arc<GpuDevice<R>>,
    x: &Tensor,
    w: &Tensor,
    g: &Tensor,
    p: &Conv2dParams,
    need_x: bool,
) -> Result<(Option<Tensor>, Tensor)> {
    const OP: &str = "conv2d backward";
    let s = conv_shape(x.shape(), w.shape(), p)?;
    let (ki, ko) = (keep_all(d, s.in_channels)?, keep_all(d, s.out_channels)?);
    let dx = if need_x {
        let mut dx = d.zeros(x.numel())?;
        d.conv
            .backward_input_into(
                d.stream(),
                sl::<R>(OP, g)?,
                sl::<R>(OP, w)?,
                &s,
                &ki,
                &ko,
                &mut dx,
            )
            .map_err(kernel_err(OP))?;
        Some(wrap(d, x.shape().to_vec(), dx)?)
    } else {
        None
    };
    let mut dw = d.zeros(w.numel())?;
    d.conv
        .backward_weight_into(
            d.stream(),
            sl::<R>(OP, g)?,
            sl::<R>(OP, x)?,
            &s,
            &ki,
            &ko,
            &mut dw,
        )
        .map_err(kernel_err(OP))?;
    Ok((dx, wrap(d, w.shape().to_vec(), dw)?))
}

#[cfg(test)]
mod tests {
    use super::ConvSetting;

    #[test]
    fn settings_parse_and_bad_values_name_the_variable() {
        assert_eq!(ConvSetting::parse("").unwrap(), ConvSetting::Fastest);
        assert_eq!(ConvSetting::parse("fastest").unwrap(), ConvSetting::Fastest);
        assert_eq!(
            ConvSetting::parse(" deterministic ").unwrap(),
            ConvSetting::Deterministic
        );
        assert_eq!(
            ConvSetting::parse("off").unwrap(),
            ConvSetting::ImplicitGemm
        );
        let e = ConvSetting::parse("fast").unwrap_err().to_string();
        assert!(
            e.contains("PRUNE_CUDNN") && e.contains("deterministic"),
            "{e}"
        );
    }
}

/// The engine on emulated devices: which path runs, the algorithm cache, the workspace.
#[cfg(all(test, feature = "emu"))]
#[path = "conv_tests.rs"]
mod engine_tests;
