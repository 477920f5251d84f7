//! `--device cpu | cuda | cuda:N`: where `train`, `eval`, `prune` (sparse training,
//! evaluation, fine-tuning, speed), `compile` (its speed measurement) and `demo` run.
//!
//! `cuda` means `cuda:0`. Choosing a GPU opens it first, so a missing driver, NVRTC,
//! cuBLAS or device is reported (naming what is missing) before any data is read. A
//! build without the `cuda` feature says so in the same way. An opened GPU prints its
//! convolution engine to stderr (cuDNN, or the implicit-GEMM kernels and why).

use prune_nn::core::backend::cuda::CudaDevice;
use prune_nn::core::Device;
use prune_nn::{Error, Result};

/// Parses a `--device` value.
pub fn parse(s: &str) -> std::result::Result<Device, String> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .map(Device::Cuda)
            .ok_or_else(|| format!("`{s}` is not a device: use cpu, cuda or cuda:N")),
    }
}

/// Opens `device` (a no-op for the CPU); the error names what is missing.
pub fn open(device: Device) -> Result<Device> {
    if let Device::Cuda(ordinal) = device {
        let d = CudaDevice::new(ordinal)
            .map_err(|e| Error::Usage(format!("--device {device}: {e}")))?;
        eprintln!("{device}: convolution through {}", d.convolution());
    }
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_rejects_others() {
        assert_eq!(parse("cpu"), Ok(Device::Cpu));
        assert_eq!(parse("cuda"), Ok(Device::Cuda(0)));
        assert_eq!(parse("cuda:3"), Ok(Device::Cuda(3)));
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains("cuda:N"), "{e}");
        }
    }

    #[test]
    fn a_missing_gpu_is_a_clear_error() {
        assert_eq!(open(Device::Cpu).expect("cpu"), Device::Cpu);
        match open(Device::Cuda(0)) {
            // a machine with a usable GPU
            Ok(d) => assert_eq!(d.backend().device(), Device::Cuda(0)),
            Err(e) => {
                let m = e.to_string();
                assert!(m.contains("--device cuda:0") && m.contains("cuda:0"), "{m}");
                assert!(
                    m.contains("libcuda") || m.contains("device") || m.contains("CUDA backend"),
                    "the error names what is missing: {m}"
                );
            }
        }
        // an ordinal no machine has
        let m = open(Device::Cuda(4096)).unwrap_err().to_string();
        assert!(m.contains("cuda:4096"), "{m}");
    }
}
