//! Convolution through cuDNN (loaded at run time by cudarc's `dynamic-loading`).
//!
//! A [`ConvDesc`] becomes four cuDNN descriptors, made once per description and kept with
//! the handle: the NCHW float tensors `x [N, C, H, W]` and `y [N, K, Ho, Wo]`, the filter
//! `[K, C/groups, KH, KW]` and a cross-correlation descriptor (padding, stride, dilation 1,
//! float compute, `cudnnSetConvolutionGroupCount(groups)`, math type `CUDNN_FMA_MATH`:
//! full FP32 without TF32 tensor cores, as the backend's cuBLAS GEMM and the CPU backend).
//!
//! Algorithms come from cuDNN's heuristics (`cudnnGetConvolution*Algorithm_v7`): the first
//! result that succeeded, uses FMA or default math, needs at most 1 GiB of workspace and —
//! under the deterministic setting — is reported `CUDNN_DETERMINISTIC`. The backend asks once per description and pass and
//! caches the answer (`conv.rs`); the workspace is a device buffer from the device's pool.
//!
//! cuDNN handles are not thread-safe; the handle and the descriptors live behind one
//! mutex, and every call binds the device's context to the calling thread first.

use super::conv::ConvAlgo;
use super::conv_desc::{ConvDesc, ConvPass};
use crate::error::{CoreError, Result};
use prune_kernels::cudarc::cudnn::{result, sys};
use prune_kernels::cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use std::collections::HashMap;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

/// A chosen cuDNN algorithm of one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CudnnAlgo {
    Forward(sys::cudnnConvolutionFwdAlgo_t),
    Data(sys::cudnnConvolutionBwdDataAlgo_t),
    Filter(sys::cudnnConvolutionBwdFilterAlgo_t),
}

/// cuDNN on one device's stream.
pub struct CudnnConv {
    state: Mutex<State>,
    version: String,
}

struct State {
    handle: sys::cudnnHandle_t,
    stream: Arc<CudaStream>,
    descs: HashMap<ConvDesc, Descs>,
}

// SAFETY: the handle and descriptors are only used while the mutex around `State` is
// held, and cuDNN allows a handle to be used from any thread as long as no two threads
// use it at the same time (the calling thread binds the handle's context first).
unsafe impl Send for State {}

impl Drop for State {
    fn drop(&mut self) {
        self.descs.clear();
        if !self.handle.is_null() {
            // SAFETY: created by cudnnCreate and destroyed once; errors at teardown are moot.
            let _ = catch_unwind(|| unsafe { result::destroy_handle(self.handle) });
        }
    }
}

struct Descs {
    x: sys::cudnnTensorDescriptor_t,
    w: sys::cudnnFilterDescriptor_t,
    y: sys::cudnnTensorDescriptor_t,
    conv: sys::cudnnConvolutionDescriptor_t,
}

impl Drop for Descs {
    fn drop(&mut self) {
        // SAFETY: each descriptor was created once (null when its creation failed) and is
        // destroyed once; errors at teardown are moot.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe {
            if !self.x.is_null() {
                let _ = result::destroy_tensor_descriptor(self.x);
            }
            if !self.y.is_null() {
                let _ = result::destroy_tensor_descriptor(self.y);
            }
            if !self.w.is_null() {
                let _ = result::destroy_filter_descriptor(self.w);
            }
            if !self.conv.is_null() {
                let _ = result::destroy_convolution_descriptor(self.conv);
            }
        }));
    }
}

/// Runs `f`, turning a cuDNN error or a panic of the loader (a symbol missing from the
/// library) into an error naming `what`.
fn guarded<T>(what: &str, f: impl FnOnce() -> std::result::Result<T, String>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CoreError::InvalidArgument {
            op: "conv2d",
            reason: format!("cuDNN {what}: {e}"),
        }),
        Err(_) => Err(CoreError::Unsupported(format!(
            "cuDNN {what}: the loaded libcudnn lacks a function this build calls"
        ))),
    }
}

fn st(e: result::CudnnError) -> String {
    format!("{:?}", e.0)
}

/// `cudnnGetVersion()` as `major.minor.patch` (cuDNN 9 encodes `major·10000 + minor·100 +
/// patch`, cuDNN 8 `major·1000 + minor·100 + patch`), and the major version.
fn version_of(v: usize) -> (String, usize) {
    let (major, rest) = if v >= 90_000 {
        (v / 10_000, v % 10_000)
    } else {
        (v / 1000, v % 1000)
    };
    (format!("{major}.{}.{}", rest / 100, rest % 100), major)
}

impl CudnnConv {
    /// Opens cuDNN on `stream`; the error says why it cannot be used (the library is not
    /// on the loader path, is older than cuDNN 8, or a handle cannot be created).
    pub fn open(stream: &Arc<CudaStream>) -> std::result::Result<Self, String> {
        // SAFETY: only asks the dynamic loader whether the library can be opened.
        if !unsafe { sys::is_culib_present() } {
            return Err(ABSENT.into());
        }
        let opened = catch_unwind(AssertUnwindSafe(|| {
            let (version, major) = version_of(result::get_version());
            if major < 8 {
                return Err(format!("cuDNN {version} is older than 8.0"));
            }
            stream
                .context()
                .bind_to_thread()
                .map_err(|e| format!("binding the device context: {e:?}"))?;
            let handle = result::create_handle().map_err(|e| format!("cudnnCreate: {}", st(e)))?;
            let state = State {
                handle,
                stream: stream.clone(),
                descs: HashMap::new(),
            };
            // SAFETY: a live handle and the device's stream.
            unsafe { result::set_stream(handle, stream.cu_stream() as sys::cudaStream_t) }
                .map_err(|e| format!("cudnnSetStream: {}", st(e)))?;
            Ok((state, version))
        }));
        match opened {
            Ok(Ok((state, version))) => Ok(CudnnConv {
                state: Mutex::new(state),
                version,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the loaded libcudnn lacks a function this build calls".into()),
        }
    }

    /// The library version, `major.minor.patch`.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The algorithm cuDNN's heuristics rank first for `pass` of `desc` among those that
    /// succeed with FP32 (FMA or default) math, deterministic ones only when asked.
    pub fn pick(
        &self,
        desc: &ConvDesc,
        pass: ConvPass,
        deterministic: bool,
    ) -> Result<ConvAlgo<CudnnAlgo>> {
        let mut s = self.lock();
        let st_ref = &mut *s;
        guarded("algorithm choice", || {
            st_ref
                .stream
                .context()
                .bind_to_thread()
                .map_err(|e| format!("{e:?}"))?;
            let handle = st_ref.handle;
            let dd = descs_for(&mut st_ref.descs, desc)?;
            // SAFETY (all calls below): live handle and descriptors; the result arrays
            // have the length passed as the requested count.
            let (algo, det, name) = unsafe { choose(handle, dd, pass, deterministic)? };
            let workspace_bytes = unsafe { workspace(handle, dd, algo) }?;
            Ok(ConvAlgo {
                algo,
                name,
                deterministic: det,
                workspace_bytes,
            })
        })
    }

    /// Runs `pass` of `desc` with `algo` on the buffers `(a, b, out)` (see [`ConvPass`];
    /// already checked against the description) and the workspace `ws`.
    pub fn run(
        &self,
        desc: &ConvDesc,
        algo: &ConvAlgo<CudnnAlgo>,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        ws: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let mut s = self.lock();
        let st_ref = &mut *s;
        guarded("convolution", || {
            let stream = st_ref.stream.clone();
            stream
                .context()
                .bind_to_thread()
                .map_err(|e| format!("{e:?}"))?;
            let handle = st_ref.handle;
            let dd = descs_for(&mut st_ref.descs, desc)?;
            let (one, zero) = (1.0f32, 0.0f32);
            let alpha = &one as *const f32 as *const c_void;
            let beta = &zero as *const f32 as *const c_void;
            let ws_bytes = ws.len() * 4;
            let (pa, _ra) = a.device_ptr(&stream);
            let (pb, _rb) = b.device_ptr(&stream);
            let (po, _ro) = out.device_ptr_mut(&stream);
            let (pw, _rw) = ws.device_ptr_mut(&stream);
            let (pa, pb) = (pa as *const c_void, pb as *const c_void);
            let (po, pw) = (po as *mut c_void, pw as *mut c_void);
            // SAFETY: the buffers hold the tensors of `desc` (checked by the caller), the
            // workspace holds at least the bytes cuDNN asked for this algorithm, and the
            // descriptors describe exactly those tensors; all work is on `stream`.
            unsafe {
                match algo.algo {
                    CudnnAlgo::Forward(al) => result::convolution_forward(
                        handle, alpha, dd.x, pa, dd.w, pb, dd.conv, al, pw, ws_bytes, beta, dd.y,
                        po,
                    ),
                    CudnnAlgo::Data(al) => result::convolution_backward_data(
                        handle, alpha, dd.w, pb, dd.y, pa, dd.conv, al, pw, ws_bytes, beta, dd.x,
                        po,
                    ),
                    CudnnAlgo::Filter(al) => result::convolution_backward_filter(
                        handle, alpha, dd.x, pa, dd.y, pb, dd.conv, al, pw, ws_bytes, beta, dd.w,
                        po,
                    ),
                }
            }
            .map_err(|e| format!("{:?} with {}: {}", algo.algo, algo.name, st(e)))
        })
    }
}

/// The output shape cuDNN derives from the descriptors the backend makes for `desc`
/// (`cudnnGetConvolution2dForwardOutputDim`: input, filter with `C/groups` channels, group
/// count, padding, stride). Needs libcudnn but no device, so the mapping from a
/// description to cuDNN's descriptors can be checked wherever the library loads; it must
/// equal [`ConvDesc::y_dims`].
pub fn cudnn_output_dims(desc: &ConvDesc) -> Result<[usize; 4]> {
    // SAFETY: only asks the dynamic loader whether the library can be opened.
    if !unsafe { sys::is_culib_present() } {
        return Err(CoreError::Unsupported(format!("cuDNN: {ABSENT}")));
    }
    guarded("output shape", || {
        let d = make_descs(desc)?;
        let mut dims = [0i32; 4];
        let [n, c, h, w] = &mut dims;
        // SAFETY: live descriptors and four writable ints.
        unsafe { sys::cudnnGetConvolution2dForwardOutputDim(d.conv, d.x, d.w, n, c, h, w) }
            .result()
            .map_err(|e| format!("cudnnGetConvolution2dForwardOutputDim: {}", st(e)))?;
        Ok(dims.map(|v| v.max(0) as usize))
    })
}

/// Why cuDNN is not used when the library does not load.
const ABSENT: &str = "libcudnn was not found on the loader path (install cuDNN, e.g. the \
                      nvidia-cudnn-cu13 wheel, and add its lib folder to LD_LIBRARY_PATH)";

/// A dimension as cuDNN's `int`.
fn int(v: usize) -> std::result::Result<i32, String> {
    i32::try_from(v).map_err(|_| format!("dimension {v} exceeds cuDNN's 32-bit range"))
}

fn int4(d: [usize; 4]) -> std::result::Result<[i32; 4], String> {
    Ok([int(d[0])?, int(d[1])?, int(d[2])?, int(d[3])?])
}

/// The descriptors of `desc`, made on first use.
fn descs_for<'a>(
    map: &'a mut HashMap<ConvDesc, Descs>,
    desc: &ConvDesc,
) -> std::result::Result<&'a Descs, String> {
    if !map.contains_key(desc) {
        let made = make_descs(desc)?;
        map.insert(*desc, made);
    }
    map.get(desc).ok_or_else(|| "descriptor cache".to_string())
}

fn make_descs(desc: &ConvDesc) -> std::result::Result<Descs, String> {
    let e = |what: &'static str| move |e: result::CudnnError| format!("{what}: {}", st(e));
    let nchw = sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW;
    let float = sys::cudnnDataType_t::CUDNN_DATA_FLOAT;
    // Created one at a time into `d`, so that whatever exists is destroyed on an error.
    let mut d = Descs {
        x: std::ptr::null_mut(),
        w: std::ptr::null_mut(),
        y: std::ptr::null_mut(),
        conv: std::ptr::null_mut(),
    };
    d.x = result::create_tensor_descriptor().map_err(e("cudnnCreateTensorDescriptor"))?;
    d.y = result::create_tensor_descriptor().map_err(e("cudnnCreateTensorDescriptor"))?;
    d.w = result::create_filter_descriptor().map_err(e("cudnnCreateFilterDescriptor"))?;
    d.conv =
        result::create_convolution_descriptor().map_err(e("cudnnCreateConvolutionDescriptor"))?;
    // SAFETY: freshly created descriptors, set with in-range values.
    unsafe {
        result::set_tensor4d_descriptor(d.x, nchw, float, int4(desc.x_dims())?)
            .map_err(e("cudnnSetTensor4dDescriptor (x)"))?;
        result::set_tensor4d_descriptor(d.y, nchw, float, int4(desc.y_dims())?)
            .map_err(e("cudnnSetTensor4dDescriptor (y)"))?;
        result::set_filter4d_descriptor(d.w, float, nchw, int4(desc.w_dims())?)
            .map_err(e("cudnnSetFilter4dDescriptor"))?;
        result::set_convolution2d_descriptor(
            d.conv,
            int(desc.padding.0)?,
            int(desc.padding.1)?,
            int(desc.stride.0)?,
            int(desc.stride.1)?,
            1,
            1,
            sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
            float,
        )
        .map_err(e("cudnnSetConvolution2dDescriptor"))?;
        result::set_convolution_group_count(d.conv, int(desc.groups)?)
            .map_err(e("cudnnSetConvolutionGroupCount"))?;
        result::set_convolution_math_type(d.conv, sys::cudnnMathType_t::CUDNN_FMA_MATH)
            .map_err(e("cudnnSetConvolutionMathType"))?;
    }
    Ok(d)
}

/// Largest workspace an algorithm may ask for (1 GiB); heuristic results above it are
/// passed over for the next one.
const MAX_WORKSPACE: usize = 1 << 30;

/// FP32 math without tensor cores.
fn fp32_math(m: sys::cudnnMathType_t) -> bool {
    matches!(
        m,
        sys::cudnnMathType_t::CUDNN_FMA_MATH | sys::cudnnMathType_t::CUDNN_DEFAULT_MATH
    )
}

/// The first acceptable heuristic result of `pass` (succeeded, FP32 math, workspace at
/// most [`MAX_WORKSPACE`], deterministic if asked): `(algorithm, deterministic, name)`.
///
/// # Safety
/// `handle` and the descriptors are live.
unsafe fn choose(
    handle: sys::cudnnHandle_t,
    d: &Descs,
    pass: ConvPass,
    deterministic: bool,
) -> std::result::Result<(CudnnAlgo, bool, String), String> {
    let ok = |status: sys::cudnnStatus_t, det: sys::cudnnDeterminism_t, m, memory: usize| {
        status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS
            && fp32_math(m)
            && memory <= MAX_WORKSPACE
            && (!deterministic || det == sys::cudnnDeterminism_t::CUDNN_DETERMINISTIC)
    };
    let det = |x: sys::cudnnDeterminism_t| x == sys::cudnnDeterminism_t::CUDNN_DETERMINISTIC;
    let mut count = 0i32;
    let none = || {
        format!(
            "no {}algorithm for {pass:?} among cuDNN's heuristic results",
            if deterministic { "deterministic " } else { "" }
        )
    };
    let e = |e: result::CudnnError| format!("heuristics for {pass:?}: {}", st(e));
    // SAFETY: the caller's guarantee; each array of plain C structs (zero is a valid
    // value) holds the count passed, and cuDNN writes at most that many results.
    unsafe {
        match pass {
            ConvPass::Forward => {
                const N: usize =
                    sys::cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_COUNT as usize;
                let mut perf: [sys::cudnnConvolutionFwdAlgoPerf_t; N] = std::mem::zeroed();
                result::get_convolution_forward_algorithm(
                    handle,
                    d.x,
                    d.w,
                    d.conv,
                    d.y,
                    N as i32,
                    &mut count,
                    perf.as_mut_ptr(),
                )
                .map_err(e)?;
                let p = perf[..(count.max(0) as usize).min(N)]
                    .iter()
                    .find(|p| ok(p.status, p.determinism, p.mathType, p.memory))
                    .ok_or_else(none)?;
                Ok((
                    CudnnAlgo::Forward(p.algo),
                    det(p.determinism),
                    format!("{:?}", p.algo),
                ))
            }
            ConvPass::BackwardData => {
                const N: usize =
                    sys::cudnnConvolutionBwdDataAlgo_t::CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT
                        as usize;
                let mut perf: [sys::cudnnConvolutionBwdDataAlgoPerf_t; N] = std::mem::zeroed();
                result::get_convolution_backward_data_algorithm(
                    handle,
                    d.w,
                    d.y,
                    d.conv,
                    d.x,
                    N as i32,
                    &mut count,
                    perf.as_mut_ptr(),
                )
                .map_err(e)?;
                let p = perf[..(count.max(0) as usize).min(N)]
                    .iter()
                    .find(|p| ok(p.status, p.determinism, p.mathType, p.memory))
                    .ok_or_else(none)?;
                Ok((
                    CudnnAlgo::Data(p.algo),
                    det(p.determinism),
                    format!("{:?}", p.algo),
                ))
            }
            ConvPass::BackwardFilter => {
                const N: usize =
                    sys::cudnnConvolutionBwdFilterAlgo_t::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT
                        as usize;
                let mut perf: [sys::cudnnConvolutionBwdFilterAlgoPerf_t; N] = std::mem::zeroed();
                result::get_convolution_backward_filter_algorithm(
                    handle,
                    d.x,
                    d.y,
                    d.conv,
                    d.w,
                    N as i32,
                    &mut count,
                    perf.as_mut_ptr(),
                )
                .map_err(e)?;
                let p = perf[..(count.max(0) as usize).min(N)]
                    .iter()
                    .find(|p| ok(p.status, p.determinism, p.mathType, p.memory))
                    .ok_or_else(none)?;
                Ok((
                    CudnnAlgo::Filter(p.algo),
                    det(p.determinism),
                    format!("{:?}", p.algo),
                ))
            }
        }
    }
}

/// Bytes of workspace `algo` needs.
///
/// # Safety
/// `handle` and the descriptors are live.
unsafe fn workspace(
    handle: sys::cudnnHandle_t,
    d: &Descs,
    algo: CudnnAlgo,
) -> std::result::Result<usize, String> {
    let e = |e: result::CudnnError| format!("workspace size: {}", st(e));
    // SAFETY: the caller's guarantee.
    unsafe {
        match algo {
            CudnnAlgo::Forward(a) => {
                result::get_convolution_forward_workspace_size(handle, d.x, d.w, d.conv, d.y, a)
            }
            CudnnAlgo::Data(a) => result::get_convolution_backward_data_workspace_size(
                handle, d.w, d.y, d.conv, d.x, a,
            ),
            CudnnAlgo::Filter(a) => result::get_convolution_backward_filter_workspace_size(
                handle, d.x, d.y, d.conv, d.w, a,
            ),
        }
    }
    .map_err(e)
}

#[cfg(test)]
mod tests {
    use super::version_of;

    #[test]
    fn versions_decode_for_both_encodings() {
        assert_eq!(version_of(91_002), ("9.10.2".to_string(), 9));
        assert_eq!(version_of(8906), ("8.9.6".to_string(), 8));
        // cudnnGetVersion() of the nvidia-cudnn-cu13 9.28.1.4 wheel.
        assert_eq!(version_of(92_801), ("9.28.1".to_string(), 9));
        assert_eq!(version_of(7605).1, 7);
    }
}
