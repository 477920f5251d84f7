//! The crate's error type.

use cudarc::driver::DriverError;

/// Everything that can go wrong when probing, compiling or launching a kernel.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A CUDA library (the driver `libcuda` or `libnvrtc`) could not be loaded.
    #[error("CUDA library unavailable: {0}")]
    NoCuda(String),
    /// The driver loaded but reports no usable device.
    #[error("no CUDA device: {0}")]
    NoDevice(String),
    /// NVRTC rejected a kernel file; `log` is the compiler output.
    #[error("NVRTC failed to compile {kernel}: {log}")]
    Compile { kernel: String, log: String },
    /// A kernel launch was refused by the driver.
    #[error("launch of kernel {kernel} failed: {source}")]
    Launch {
        kernel: String,
        #[source]
        source: DriverError,
    },
    /// Any other driver call (allocation, copy, module load, synchronisation) failed.
    #[error("CUDA driver call failed while {op}: {source}")]
    Driver {
        op: String,
        #[source]
        source: DriverError,
    },
    /// The CPU emulation of the kernels refused or failed a launch (feature `emu`).
    #[error("emulated kernel: {0}")]
    Emulation(String),
    /// A buffer length or dimension does not match what the operation needs.
    #[error("shape mismatch in {op}: {detail}")]
    Shape { op: &'static str, detail: String },
    /// An argument is outside its valid range (index lists, strides, sizes).
    #[error("invalid argument to {op}: {detail}")]
    Invalid { op: &'static str, detail: String },
}

impl KernelError {
    pub(crate) fn driver(op: impl Into<String>) -> impl FnOnce(DriverError) -> KernelError {
        let op = op.into();
        move |source| KernelError::Driver { op, source }
    }

    pub(crate) fn launch(kernel: &str) -> impl FnOnce(DriverError) -> KernelError + '_ {
        move |source| KernelError::Launch {
            kernel: kernel.to_string(),
            source,
        }
    }

    pub(crate) fn shape(op: &'static str, detail: impl Into<String>) -> KernelError {
        KernelError::Shape {
            op,
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(op: &'static str, detail: impl Into<String>) -> KernelError {
        KernelError::Invalid {
            op,
            detail: detail.into(),
        }
    }
}
