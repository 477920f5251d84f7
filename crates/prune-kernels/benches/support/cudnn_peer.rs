//! cuDNN on the compact tensors: the convolution a user would run after gathering the kept
//! channels (`x [N, kin, H, W]`, `w [kout, kin, KH, KW]`), the peer of the masked
//! convolution.  Built with the `cudnn` feature; libcudnn is loaded at run time.

use std::sync::Arc;

use prune_kernels::cudarc::cudnn::{sys, ConvForward, Cudnn};
use prune_kernels::cudarc::driver::CudaStream;
use prune_kernels::host::zeros;
use prune_kernels::{ConvShape, KernelError};

/// A prepared launch, timed by the caller.
pub type Launch = Box<dyn FnMut() -> Result<(), KernelError>>;

fn err(e: impl std::fmt::Display) -> KernelError {
    KernelError::Invalid {
        op: "cuDNN convolution",
        detail: e.to_string(),
    }
}

/// A cuDNN forward convolution over `kin` input and `kout` output channels of `sh`
/// (stride, padding, kernel of `sh`), ready to launch repeatedly.  `None` (with the reason
/// printed) when libcudnn cannot be loaded.
pub fn compact_conv(
    stream: &Arc<CudaStream>,
    sh: &ConvShape,
    kin: usize,
    kout: usize,
) -> Result<Option<Launch>, KernelError> {
    // SAFETY: only probes whether the shared library can be opened.
    if !unsafe { sys::is_culib_present() } {
        println!("cuDNN peer skipped: libcudnn could not be loaded");
        return Ok(None);
    }
    let (ho, wo) = sh.output_hw()?;
    let i = |v: usize| v as i32;
    let cudnn = Cudnn::new(stream.clone()).map_err(err)?;
    let nchw = sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
    let xd = cudnn
        .create_4d_tensor::<f32>(nchw, [i(sh.batch), i(kin), i(sh.height), i(sh.width)])
        .map_err(err)?;
    let wd = cudnn
        .create_4d_filter::<f32>(nchw, [i(kout), i(kin), i(sh.kernel.0), i(sh.kernel.1)])
        .map_err(err)?;
    let yd = cudnn
        .create_4d_tensor::<f32>(nchw, [i(sh.batch), i(kout), i(ho), i(wo)])
        .map_err(err)?;
    let conv = cudnn
        .create_conv2d::<f32>(
            [i(sh.padding.0), i(sh.padding.1)],
            [i(sh.stride.0), i(sh.stride.1)],
            [1, 1],
            sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
        )
        .map_err(err)?;
    let x = zeros(stream, sh.batch * kin * sh.height * sh.width)?;
    let w = zeros(stream, kout * kin * sh.kernel.0 * sh.kernel.1)?;
    let mut y = zeros(stream, sh.batch * kout * ho * wo)?;
    let op = ConvForward {
        conv: &conv,
        x: &xd,
        w: &wd,
        y: &yd,
    };
    let algo = op.pick_algorithm().map_err(err)?;
    let ws_bytes = op.get_workspace_size(algo).map_err(err)?;
    let mut ws = stream
        .alloc_zeros::<u8>(ws_bytes.max(1))
        .map_err(|e| err(format!("workspace: {e}")))?;
    println!("cuDNN peer: algorithm {algo:?}, workspace {ws_bytes} bytes");
    // The descriptors must outlive the closure: move them in.
    Ok(Some(Box::new(move || {
        let op = ConvForward {
            conv: &conv,
            x: &xd,
            w: &wd,
            y: &yd,
        };
        // SAFETY: the buffers have the descriptors' shapes and f32 type.
        unsafe { op.launch(algo, Some(&mut ws), (1.0f32, 0.0f32), &x, &w, &mut y) }.map_err(err)
    })))
}
