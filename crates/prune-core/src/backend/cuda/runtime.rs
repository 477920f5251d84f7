//! What the CUDA backend needs from a device runtime beyond prune-kernels' [`Runtime`]:
//! GEMM, the convolution library, opening a device by ordinal, and the conversions between
//! the runtime's buffers and the storage enum a [`Tensor`](crate::tensor::Tensor) holds.
//!
//! * [`Cuda`]: GEMM through cuBLAS SGEMM, convolution through cuDNN (`cudnn.rs`) when
//!   libcudnn loads; devices open with [`GpuDevice::new`].
//! * `Emu` (the `emu` feature): the kernels run on the CPU through prune-kernels'
//!   emulation, GEMM is [`reference_sgemm`], the column-major BLAS definition on the
//!   host, and cuDNN's stand-in executes the [`ConvDesc`] the backend built with
//!   [`ConvDesc::reference`] — so the backend's operand swap, leading dimensions and
//!   transposition flags, and its convolution descriptions, buffer sizes and workspaces,
//!   are executed and checked; only cuBLAS and cuDNN themselves are not. Devices are
//!   registered with [`super::open_emulated`].

use super::conv::ConvAlgo;
use super::conv_desc::{ConvDesc, ConvPass};
use super::cudnn::{CudnnAlgo, CudnnConv};
use super::{AnyBuf, AnyDevice, GpuDevice};
use crate::error::{CoreError, Result};
use prune_kernels::cudarc::cublas::sys::cublasOperation_t;
use prune_kernels::cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use prune_kernels::{Cuda, Elem, KernelContext, Runtime};
use std::sync::Arc;

/// A column-major SGEMM `C = op(A) op(B)` (alpha 1, beta 0) in BLAS terms: `C` is
/// `m × n` with leading dimension `ldc`, `op(A)` is `m × k`, `op(B)` is `k × n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sgemm {
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
}

/// A device runtime the CUDA backend runs on.
pub trait GpuRuntime: Runtime {
    /// The GEMM engine of a device.
    type Blas: Send + Sync;

    /// Creates the GEMM engine on the context's stream (an error names what is missing).
    fn blas(kc: &KernelContext<Self>) -> std::result::Result<Self::Blas, String>;
    /// `c = op(a) op(b)` per `g` (column-major, as cuBLAS).
    fn sgemm(
        d: &GpuDevice<Self>,
        g: Sgemm,
        a: &Self::Buf<f32>,
        b: &Self::Buf<f32>,
        c: &mut Self::Buf<f32>,
    ) -> Result<()>;
    /// The opened device of `ordinal`.
    fn open(ordinal: usize) -> Result<Arc<GpuDevice<Self>>>;

    /// The convolution library of a device.
    type Dnn: Send + Sync;
    /// The library's handle of a chosen algorithm.
    type Algo: std::fmt::Debug + Send + Sync;
    /// Opens the convolution library on the context's stream; the error says why it
    /// cannot be used (the backend then convolves with the implicit-GEMM kernels).
    fn dnn(kc: &KernelContext<Self>) -> std::result::Result<Self::Dnn, String>;
    /// The library's name and version, for the device description.
    fn dnn_name(dnn: &Self::Dnn) -> String;
    /// Chooses the algorithm of `pass` for `desc` (deterministic ones only, if asked).
    fn conv_algo(
        dnn: &Self::Dnn,
        desc: &ConvDesc,
        pass: ConvPass,
        deterministic: bool,
    ) -> Result<ConvAlgo<Self::Algo>>;
    /// Runs `pass` of `desc` with `algo` on `(a, b, out)` (see [`ConvPass`]; the caller
    /// checked the lengths) with workspace `ws` (at least `algo.workspace_bytes`).
    fn conv_run(
        dnn: &Self::Dnn,
        desc: &ConvDesc,
        pass: ConvPass,
        algo: &ConvAlgo<Self::Algo>,
        a: &Self::Buf<f32>,
        b: &Self::Buf<f32>,
        out: &mut Self::Buf<f32>,
        ws: &mut Self::Buf<f32>,
    ) -> Result<()>;

    /// The runtime's buffer inside `b`, if `b` belongs to this runtime.
    fn view<T: Elem>(b: &AnyBuf<T>) -> Option<&Self::Buf<T>>;
    /// As [`GpuRuntime::view`], writable.
    fn view_mut<T: Elem>(b: &mut AnyBuf<T>) -> Option<&mut Self::Buf<T>>;
    /// `b` as storage.
    fn wrap<T: Elem>(b: Self::Buf<T>) -> AnyBuf<T>;
    /// The device as storage's device handle.
    fn any_device(d: Arc<GpuDevice<Self>>) -> AnyDevice;
    /// The device inside `d`, if it belongs to this runtime.
    fn device_of(d: &AnyDevice) -> Option<&Arc<GpuDevice<Self>>>;
}

impl GpuRuntime for Cuda {
    type Blas = CudaBlas;

    fn blas(kc: &KernelContext<Cuda>) -> std::result::Result<CudaBlas, String> {
        // SAFETY: only asks the dynamic loader whether the library can be opened.
        if !unsafe { prune_kernels::cudarc::cublas::sys::is_culib_present() } {
            return Err(
                "the cuBLAS library (libcublas.so) was not found; install CUDA's cuBLAS or \
                 add its folder to LD_LIBRARY_PATH"
                    .into(),
            );
        }
        CudaBlas::new(kc.stream().clone()).map_err(|e| format!("creating a cuBLAS handle: {e:?}"))
    }

    fn sgemm(
        d: &GpuDevice<Cuda>,
        g: Sgemm,
        a: &Self::Buf<f32>,
        b: &Self::Buf<f32>,
        c: &mut Self::Buf<f32>,
    ) -> Result<()> {
        const OP: &str = "matmul";
        let int = |v: usize| {
            i32::try_from(v).map_err(|_| CoreError::InvalidArgument {
                op: OP,
                reason: format!("dimension {v} exceeds cuBLAS's 32-bit range"),
            })
        };
        let flag = |t: bool| {
            if t {
                cublasOperation_t::CUBLAS_OP_T
            } else {
                cublasOperation_t::CUBLAS_OP_N
            }
        };
        let cfg = GemmConfig {
            transa: flag(g.trans_a),
            transb: flag(g.trans_b),
            m: int(g.m)?,
            n: int(g.n)?,
            k: int(g.k)?,
            alpha: 1.0f32,
            lda: int(g.lda)?,
            ldb: int(g.ldb)?,
            beta: 0.0f32,
            ldc: int(g.ldc)?,
        };
        check_sgemm(&g, Cuda::len(a), Cuda::len(b), Cuda::len(c))?;
        // SAFETY: check_sgemm verified that every element the dimensions and leading
        // dimensions address lies inside the buffers; all live on the handle's stream.
        unsafe { d.blas.gemm(cfg, a, b, c) }.map_err(|e| CoreError::InvalidArgument {
            op: OP,
            reason: format!("cuBLAS SGEMM: {e:?}"),
        })
    }

    fn open(ordinal: usize) -> Result<Arc<GpuDevice<Cuda>>> {
        GpuDevice::new(ordinal)
    }

    type Dnn = CudnnConv;
    type Algo = CudnnAlgo;

    fn dnn(kc: &KernelContext<Cuda>) -> std::result::Result<CudnnConv, String> {
        CudnnConv::open(kc.stream())
    }

    fn dnn_name(dnn: &CudnnConv) -> String {
        format!("cuDNN {}", dnn.version())
    }

    fn conv_algo(
        dnn: &CudnnConv,
        desc: &ConvDesc,
        pass: ConvPass,
        deterministic: bool,
    ) -> Result<ConvAlgo<CudnnAlgo>> {
        dnn.pick(desc, pass, deterministic)
    }

    fn conv_run(
        dnn: &CudnnConv,
        desc: &ConvDesc,
        pass: ConvPass,
        algo: &ConvAlgo<CudnnAlgo>,
        a: &Self::Buf<f32>,
        b: &Self::Buf<f32>,
        out: &mut Self::Buf<f32>,
        ws: &mut Self::Buf<f32>,
    ) -> Result<()> {
        let of_pass = matches!(
            (pass, algo.algo),
            (ConvPass::Forward, CudnnAlgo::Forward(_))
                | (ConvPass::BackwardData, CudnnAlgo::Data(_))
                | (ConvPass::BackwardFilter, CudnnAlgo::Filter(_))
        );
        if !of_pass {
            return Err(CoreError::InvalidArgument {
                op: "conv2d",
                reason: format!("{} is not an algorithm of {pass:?}", algo.name),
            });
        }
        check_workspace(algo.workspace_bytes, Cuda::len(ws))?;
        dnn.run(desc, algo, a, b, out, ws)
    }

    fn view<T: Elem>(b: &AnyBuf<T>) -> Option<&Self::Buf<T>> {
        match b {
            AnyBuf::Cuda(s) => Some(s),
            #[cfg(feature = "emu")]
            AnyBuf::Emu(_) => None,
        }
    }

    fn view_mut<T: Elem>(b: &mut AnyBuf<T>) -> Option<&mut Self::Buf<T>> {
        match b {
            AnyBuf::Cuda(s) => Some(s),
            #[cfg(feature = "emu")]
            AnyBuf::Emu(_) => None,
        }
    }

    fn wrap<T: Elem>(b: Self::Buf<T>) -> AnyBuf<T> {
        AnyBuf::Cuda(b)
    }

    fn any_device(d: Arc<GpuDevice<Cuda>>) -> AnyDevice {
        AnyDevice::Cuda(d)
    }

    fn device_of(d: &AnyDevice) -> Option<&Arc<GpuDevice<Cuda>>> {
        match d {
            AnyDevice::Cuda(d) => Some(d),
            #[cfg(feature = "emu")]
            AnyDevice::Emu(_) => None,
        }
    }
}

/// Errors unless a workspace of `words` floats holds `bytes`.
fn check_workspace(bytes: usize, words: usize) -> Result<()> {
    if words * 4 >= bytes {
        Ok(())
    } else {
        Err(CoreError::InvalidArgument {
            op: "conv2d",
            reason: format!("workspace of {words} floats for {bytes} bytes"),
        })
    }
}

/// Errors unless the column-major operands of `g` fit buffers of the given lengths.
pub(crate) fn check_sgemm(g: &Sgemm, a_len: usize, b_len: usize, c_len: usize) -> Result<()> {
    let (ar, ac) = if g.trans_a { (g.k, g.m) } else { (g.m, g.k) };
    let (br, bc) = if g.trans_b { (g.n, g.k) } else { (g.k, g.n) };
    let need = |rows: usize, cols: usize, ld: usize| {
        if rows == 0 || cols == 0 {
            Some(0)
        } else if ld < rows {
            None
        } else {
            Some(ld * (cols - 1) + rows)
        }
    };
    let ok = [
        (need(ar, ac, g.lda), a_len),
        (need(br, bc, g.ldb), b_len),
        (need(g.m, g.n, g.ldc), c_len),
    ]
    .iter()
    .all(|&(n, len)| n.is_some_and(|n| n <= len));
    if ok {
        Ok(())
    } else {
        Err(CoreError::InvalidArgument {
            op: "matmul",
            reason: format!(
                "SGEMM {g:?} does not fit buffers of {a_len}, {b_len} and {c_len} elements"
            ),
        })
    }
}

/// The BLAS definition of SGEMM, column-major: `C[i + j ldc] = Σ_p op(A)[i, p] op(B)[p, j]`
/// with `op(A)[i, p] = A[i + p lda]` (or `A[p + i lda]` transposed), likewise for B;
/// accumulated in double precision.
pub fn reference_sgemm(g: &Sgemm, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<()> {
    check_sgemm(g, a.len(), b.len(), c.len())?;
    for j in 0..g.n {
        for i in 0..g.m {
            let mut s = 0.0f64;
            for p in 0..g.k {
                let av = if g.trans_a {
                    a[p + i * g.lda]
                } else {
                    a[i + p * g.lda]
                };
                let bv = if g.trans_b {
                    b[j + p * g.ldb]
                } else {
                    b[p + j * g.ldb]
                };
                s += av as f64 * bv as f64;
            }
            c[i + j * g.ldc] = s as f32;
        }
    }
    Ok(())
}

#[cfg(feature = "emu")]
mod emu {
    use super::*;
    use prune_kernels::Emu;

    impl GpuRuntime for Emu {
        type Blas = ();

        fn blas(_kc: &KernelContext<Emu>) -> std::result::Result<(), String> {
            Ok(())
        }

        fn sgemm(
            _d: &GpuDevice<Emu>,
            g: Sgemm,
            a: &Self::Buf<f32>,
            b: &Self::Buf<f32>,
            c: &mut Self::Buf<f32>,
        ) -> Result<()> {
            reference_sgemm(&g, a.as_slice(), b.as_slice(), c.as_mut_slice())
        }

        fn open(ordinal: usize) -> Result<Arc<GpuDevice<Emu>>> {
            super::super::emulated(ordinal).ok_or_else(|| {
                CoreError::Unsupported(format!("cuda:{ordinal} is not an emulated device"))
            })
        }

        /// cuDNN's stand-in: the host reference of the description.
        type Dnn = ();
        type Algo = ();

        fn dnn(_kc: &KernelContext<Emu>) -> std::result::Result<(), String> {
            Ok(())
        }

        fn dnn_name(_dnn: &()) -> String {
            "cuDNN stand-in (host reference convolution)".into()
        }

        /// One algorithm, deterministic, asking for the workspace an im2col GEMM of one
        /// group would use (`C/groups · KH · KW · Ho · Wo` floats), so that the backend's
        /// workspace handling runs with a workspace of a shape-dependent size.
        fn conv_algo(
            _dnn: &(),
            desc: &ConvDesc,
            _pass: ConvPass,
            _deterministic: bool,
        ) -> Result<ConvAlgo<()>> {
            let (ho, wo) = desc.output_hw();
            Ok(ConvAlgo {
                algo: (),
                name: "HOST_REFERENCE".into(),
                deterministic: true,
                workspace_bytes: 4 * desc.group_in() * desc.kernel.0 * desc.kernel.1 * ho * wo,
            })
        }

        fn conv_run(
            _dnn: &(),
            desc: &ConvDesc,
            pass: ConvPass,
            algo: &ConvAlgo<()>,
            a: &Self::Buf<f32>,
            b: &Self::Buf<f32>,
            out: &mut Self::Buf<f32>,
            ws: &mut Self::Buf<f32>,
        ) -> Result<()> {
            check_workspace(algo.workspace_bytes, ws.len())?;
            desc.reference(pass, a.as_slice(), b.as_slice(), out.as_mut_slice())
        }

        fn view<T: Elem>(b: &AnyBuf<T>) -> Option<&Self::Buf<T>> {
            match b {
                AnyBuf::Emu(s) => Some(s),
                AnyBuf::Cuda(_) => None,
            }
        }

        fn view_mut<T: Elem>(b: &mut AnyBuf<T>) -> Option<&mut Self::Buf<T>> {
            match b {
                AnyBuf::Emu(s) => Some(s),
                AnyBuf::Cuda(_) => None,
            }
        }

        fn wrap<T: Elem>(b: Self::Buf<T>) -> AnyBuf<T> {
            AnyBuf::Emu(b)
        }

        fn any_device(d: Arc<GpuDevice<Emu>>) -> AnyDevice {
            AnyDevice::Emu(d)
        }

        fn device_of(d: &AnyDevice) -> Option<&Arc<GpuDevice<Emu>>> {
            match d {
                AnyDevice::Emu(d) => Some(d),
                AnyDevice::Cuda(_) => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference SGEMM against a row-major product computed directly, through the
    /// backend's operand swap (row-major `C = op(A) op(B)` as column-major
    /// `Cᵀ = op(B)ᵀ op(A)ᵀ`), for every transposition.
    #[test]
    fn operand_swap_gives_the_row_major_product() {
        let (m, k, n) = (3, 4, 5);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.91).cos()).collect();
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            // Stored shapes: A is [m, k] or [k, m]; B is [k, n] or [n, k].
            let at = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] };
            let bt = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] };
            let (a_cols, b_cols) = (if ta { m } else { k }, if tb { k } else { n });
            let g = super::super::nn::swap_for_column_major(m, n, k, ta, tb, a_cols, b_cols);
            let mut c = vec![0.0f32; m * n];
            reference_sgemm(&g, &b, &a, &mut c).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|p| at(i, p) as f64 * bt(p, j) as f64).sum();
                    assert!(
                        (c[i * n + j] as f64 - want).abs() < 1e-6,
                        "{ta} {tb} {i} {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn undersized_buffers_are_refused() {
        let g = Sgemm {
            trans_a: false,
            trans_b: false,
            m: 2,
            n: 2,
            k: 2,
            lda: 2,
            ldb: 2,
            ldc: 2,
        };
        let mut c = vec![0.0; 4];
        assert!(reference_sgemm(&g, &[0.0; 3], &[0.0; 4], &mut c).is_err());
        assert!(reference_sgemm(&g, &[0.0; 4], &[0.0; 4], &mut c).is_ok());
    }
}
