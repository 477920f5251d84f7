//! cuDNN on the compact tensors: the convolution a user would run after gathering the kept
//! channels (`x [N, kin, H, W]`, `w [kout, kin, KH, KW]`, `y [N, kout, Ho, Wo]`), the peer
//! of the masked convolution, in its three passes.  FP32 math (`CUDNN_FMA_MATH`, no TF32
//! tensor cores, as the masked kernels and prune-core's cuDNN path); each pass's algorithm
//! is the first of cuDNN's heuristics.  Built with the `cudnn` feature; libcudnn is loaded
//! at run time.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use prune_kernels::cudarc::cudnn::{
    sys, ConvBackwardData, ConvBackwardFilter, ConvDescriptor, ConvForward, Cudnn,
    FilterDescriptor, TensorDescriptor,
};
use prune_kernels::cudarc::driver::{CudaSlice, CudaStream};
use prune_kernels::host::zeros;
use prune_kernels::{ConvShape, KernelError};

/// A prepared launch, timed by the caller.
pub type Launch = Box<dyn FnMut() -> Result<(), KernelError>>;

fn err(e: impl std::fmt::Debug) -> KernelError {
    KernelError::Invalid {
        op: "cuDNN convolution",
        detail: format!("{e:?}"),
    }
}

struct Peer {
    conv: ConvDescriptor<f32>,
    xd: TensorDescriptor<f32>,
    wd: FilterDescriptor<f32>,
    yd: TensorDescriptor<f32>,
    x: CudaSlice<f32>,
    w: CudaSlice<f32>,
    y: CudaSlice<f32>,
    ws: CudaSlice<u8>,
    fwd: sys::cudnnConvolutionFwdAlgo_t,
    data: sys::cudnnConvolutionBwdDataAlgo_t,
    filter: sys::cudnnConvolutionBwdFilterAlgo_t,
}

/// The compact tensors' cuDNN forward, backward data and backward filter, in that order,
/// ready to launch repeatedly.  `None` (with the reason printed) when libcudnn cannot be
/// loaded.
pub fn compact_conv(
    stream: &Arc<CudaStream>,
    sh: &ConvShape,
    kin: usize,
    kout: usize,
) -> Result<Option<[Launch; 3]>, KernelError> {
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
    let mut conv = cudnn
        .create_conv2d::<f32>(
            [i(sh.padding.0), i(sh.padding.1)],
            [i(sh.stride.0), i(sh.stride.1)],
            [1, 1],
            sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
        )
        .map_err(err)?;
    conv.set_math_type(sys::cudnnMathType_t::CUDNN_FMA_MATH)
        .map_err(err)?;
    let fwd_op = ConvForward {
        conv: &conv,
        x: &xd,
        w: &wd,
        y: &yd,
    };
    let data_op = ConvBackwardData {
        conv: &conv,
        dx: &xd,
        w: &wd,
        dy: &yd,
    };
    let filter_op = ConvBackwardFilter {
        conv: &conv,
        x: &xd,
        dw: &wd,
        dy: &yd,
    };
    let fwd = fwd_op.pick_algorithm().map_err(err)?;
    let data = data_op.pick_algorithm().map_err(err)?;
    let filter = filter_op.pick_algorithm().map_err(err)?;
    let ws_bytes = [
        fwd_op.get_workspace_size(fwd).map_err(err)?,
        data_op.get_workspace_size(data).map_err(err)?,
        filter_op.get_workspace_size(filter).map_err(err)?,
    ];
    println!(
        "cuDNN peer: forward {fwd:?}, backward data {data:?}, backward filter {filter:?}; \
         workspace bytes {ws_bytes:?}"
    );
    let ws = stream
        .alloc_zeros::<u8>(ws_bytes.iter().copied().max().unwrap_or(0).max(1))
        .map_err(|e| err(format!("workspace: {e}")))?;
    let peer = Rc::new(RefCell::new(Peer {
        x: zeros(stream, sh.batch * kin * sh.height * sh.width)?,
        w: zeros(stream, kout * kin * sh.kernel.0 * sh.kernel.1)?,
        y: zeros(stream, sh.batch * kout * ho * wo)?,
        conv,
        xd,
        wd,
        yd,
        ws,
        fwd,
        data,
        filter,
    }));
    let (p0, p1, p2) = (peer.clone(), peer.clone(), peer);
    // SAFETY (the three launches): the buffers have the descriptors' shapes and f32 type,
    // and the workspace holds the bytes cuDNN asked for the chosen algorithm.
    let forward: Launch = Box::new(move || {
        let p = &mut *p0.borrow_mut();
        let op = ConvForward {
            conv: &p.conv,
            x: &p.xd,
            w: &p.wd,
            y: &p.yd,
        };
        unsafe { op.launch(p.fwd, Some(&mut p.ws), (1.0, 0.0), &p.x, &p.w, &mut p.y) }.map_err(err)
    });
    let backward_data: Launch = Box::new(move || {
        let p = &mut *p1.borrow_mut();
        let op = ConvBackwardData {
            conv: &p.conv,
            dx: &p.xd,
            w: &p.wd,
            dy: &p.yd,
        };
        unsafe { op.launch(p.data, Some(&mut p.ws), (1.0, 0.0), &mut p.x, &p.w, &p.y) }.map_err(err)
    });
    let backward_filter: Launch = Box::new(move || {
        let p = &mut *p2.borrow_mut();
        let op = ConvBackwardFilter {
            conv: &p.conv,
            x: &p.xd,
            dw: &p.wd,
            dy: &p.yd,
        };
        unsafe { op.launch(p.filter, Some(&mut p.ws), (1.0, 0.0), &p.x, &mut p.w, &p.y) }
            .map_err(err)
    });
    Ok(Some([forward, backward_data, backward_filter]))
}
