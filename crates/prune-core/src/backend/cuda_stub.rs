//! The stand-in CUDA device, storage and backend of a build without CUDA.
//!
//! [`CudaDevice::new`] always fails with [`CoreError::Unsupported`], so no
//! CUDA storage can exist: [`CudaStorage`] and [`CudaIndices`] are
//! uninhabited, and matching on [`Storage`](crate::storage::Storage) stays
//! total without a panic. The backend answers every op with the same error.
//! With the `cuda` feature, `backend/cuda/` replaces this module with the
//! same names.

use super::{AdamStep, Backend, BnBatchStats, BnTrainOutput, Device, SgdStep};
use super::{SbpForward, SbpGateGrads, SbpKl, SbpNoiseArgs, SbpSaved, SbpStats};
use crate::autograd::{Binary, Unary};
use crate::cpu::{BnGrads, Conv2dGrads, Conv2dParams, PoolParams};
use crate::error::{CoreError, Result};
use crate::storage::Indices;
use crate::tensor::Tensor;
use rand::RngCore;
use std::convert::Infallible;

fn unsupported(what: &str) -> CoreError {
    CoreError::Unsupported(format!(
        "{what}: this build of prune-core has no CUDA backend (build with the `cuda` feature)"
    ))
}

/// A CUDA GPU; cannot be opened in this build.
#[derive(Clone, Debug, PartialEq)]
pub struct CudaDevice {
    never: Infallible,
}

impl CudaDevice {
    /// Opens GPU `ordinal`: always [`CoreError::Unsupported`] in this build.
    pub fn new(ordinal: usize) -> Result<Self> {
        Err(unsupported(&format!("opening cuda:{ordinal}")))
    }

    /// Which convolution engine the device uses (no device exists in this build).
    pub fn convolution(&self) -> String {
        match self.never {}
    }
}

/// The backend of GPU `ordinal`: every op fails in this build.
pub fn backend(_ordinal: usize) -> &'static dyn Backend {
    static CUDA: CudaBackend = CudaBackend;
    &CUDA
}

macro_rules! stand_in_storage {
    ($name:ident, $elem:ty, $what:literal) => {
        #[doc = concat!("Device ", $what, "; uninhabited in this build.")]
        #[derive(Clone, Debug, PartialEq)]
        pub struct $name {
            never: Infallible,
        }

        impl $name {
            /// Copies host elements to GPU `ordinal`: always an error in this build.
            pub fn upload(ordinal: usize, _data: &[$elem]) -> Result<Self> {
                Err(unsupported(&format!("copying to cuda:{ordinal}")))
            }

            /// Copies the elements to the host.
            pub fn download(&self) -> Result<Vec<$elem>> {
                match self.never {}
            }

            /// The device holding the elements.
            pub fn device(&self) -> Device {
                match self.never {}
            }

            /// Number of elements.
            pub fn len(&self) -> usize {
                match self.never {}
            }

            /// True when there are no elements.
            pub fn is_empty(&self) -> bool {
                match self.never {}
            }

            /// Device elements have no host slice (unreachable in this build).
            pub(crate) fn not_on_host(&self) -> ! {
                match self.never {}
            }
        }
    };
}

stand_in_storage!(CudaStorage, f32, "values");
stand_in_storage!(CudaIndices, u32, "indices");

/// The CUDA backend of this build: every op is [`CoreError::Unsupported`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CudaBackend;

impl Backend for CudaBackend {
    fn device(&self) -> Device {
        Device::Cuda(0)
    }
    fn full(&self, _: &[usize], _: f32) -> Result<Tensor> {
        Err(unsupported("full"))
    }
    fn unary(&self, _: &Tensor, _: Unary) -> Result<Tensor> {
        Err(unsupported("unary"))
    }
    fn unary_backward(&self, _: Unary, _: &Tensor, _: &Tensor, _: &Tensor) -> Result<Tensor> {
        Err(unsupported("unary backward"))
    }
    fn binary(&self, _: &Tensor, _: &Tensor, _: Binary) -> Result<Tensor> {
        Err(unsupported("binary"))
    }
    fn binary_backward(
        &self,
        _: Binary,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        Err(unsupported("binary backward"))
    }
    fn add_assign(&self, _: &mut Tensor, _: &Tensor) -> Result<()> {
        Err(unsupported("add_assign"))
    }
    fn sum_to_shape(&self, _: &Tensor, _: &[usize]) -> Result<Tensor> {
        Err(unsupported("sum"))
    }
    fn broadcast_to(&self, _: &Tensor, _: &[usize]) -> Result<Tensor> {
        Err(unsupported("broadcast"))
    }
    fn all_finite(&self, _: &[&Tensor]) -> Result<bool> {
        Err(unsupported("all_finite"))
    }
    fn matmul(&self, _: &Tensor, _: &Tensor, _: bool, _: bool) -> Result<Tensor> {
        Err(unsupported("matmul"))
    }
    fn conv2d(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: Option<&Tensor>,
        _: &Conv2dParams,
    ) -> Result<Tensor> {
        Err(unsupported("conv2d"))
    }
    fn conv2d_backward(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: &Conv2dParams,
        _: bool,
        _: bool,
    ) -> Result<Conv2dGrads> {
        Err(unsupported("conv2d backward"))
    }
    fn max_pool2d(&self, _: &Tensor, _: &PoolParams) -> Result<(Tensor, Indices)> {
        Err(unsupported("max_pool2d"))
    }
    fn max_pool2d_backward(
        &self,
        _: &Tensor,
        _: &Indices,
        _: &[usize],
        _: &PoolParams,
    ) -> Result<Tensor> {
        Err(unsupported("max_pool2d backward"))
    }
    fn avg_pool2d(&self, _: &Tensor, _: &PoolParams) -> Result<Tensor> {
        Err(unsupported("avg_pool2d"))
    }
    fn avg_pool2d_backward(&self, _: &Tensor, _: &[usize], _: &PoolParams) -> Result<Tensor> {
        Err(unsupported("avg_pool2d backward"))
    }
    fn batch_norm_train(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: f32,
    ) -> Result<BnTrainOutput> {
        Err(unsupported("batch_norm"))
    }
    fn batch_norm_train_backward(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &BnBatchStats,
        _: &Tensor,
    ) -> Result<BnGrads> {
        Err(unsupported("batch_norm backward"))
    }
    fn batch_norm_eval(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: f32,
    ) -> Result<Tensor> {
        Err(unsupported("batch_norm"))
    }
    fn batch_norm_eval_backward(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: f32,
        _: &Tensor,
    ) -> Result<BnGrads> {
        Err(unsupported("batch_norm backward"))
    }
    fn log_softmax(&self, _: &Tensor) -> Result<Tensor> {
        Err(unsupported("log_softmax"))
    }
    fn log_softmax_backward(&self, _: &Tensor, _: &Tensor) -> Result<Tensor> {
        Err(unsupported("log_softmax backward"))
    }
    fn cross_entropy(&self, _: &Tensor, _: &Indices) -> Result<Tensor> {
        Err(unsupported("cross_entropy"))
    }
    fn cross_entropy_backward(&self, _: &Tensor, _: &Indices, _: &Tensor) -> Result<Tensor> {
        Err(unsupported("cross_entropy backward"))
    }
    fn index_select(&self, _: &Tensor, _: usize, _: &[usize]) -> Result<Tensor> {
        Err(unsupported("index_select"))
    }
    fn index_add(&self, _: &Tensor, _: &[usize], _: usize, _: &[usize]) -> Result<Tensor> {
        Err(unsupported("index_select backward"))
    }
    fn concat(&self, _: &[&Tensor], _: usize) -> Result<Tensor> {
        Err(unsupported("concat"))
    }
    fn split(&self, _: &Tensor, _: usize, _: &[usize]) -> Result<Vec<Tensor>> {
        Err(unsupported("concat backward"))
    }
    fn dropout_mask(&self, _: &[usize], _: f32, _: &mut dyn RngCore) -> Result<Tensor> {
        Err(unsupported("dropout"))
    }
    fn sbp_noise_forward(
        &self,
        _: &Tensor,
        _: &Tensor,
        _: &Tensor,
        _: &SbpNoiseArgs,
    ) -> Result<SbpForward> {
        Err(unsupported("sbp noise"))
    }
    fn sbp_noise_backward(&self, _: &Tensor, _: &Tensor, _: &SbpSaved) -> Result<SbpGateGrads> {
        Err(unsupported("sbp noise backward"))
    }
    fn sbp_stats(&self, _: &Tensor, _: &Tensor) -> Result<SbpStats> {
        Err(unsupported("sbp stats"))
    }
    fn sbp_kl(&self, _: &Tensor, _: &Tensor) -> Result<SbpKl> {
        Err(unsupported("sbp kl"))
    }
    fn ema_update(&self, _: &mut Tensor, _: &Tensor, _: f32) -> Result<()> {
        Err(unsupported("running average"))
    }
    fn sgd_update(
        &self,
        _: &mut Tensor,
        _: &Tensor,
        _: Option<&mut Tensor>,
        _: &SgdStep,
    ) -> Result<()> {
        Err(unsupported("sgd update"))
    }
    fn adam_update(
        &self,
        _: &mut Tensor,
        _: &Tensor,
        _: &mut Tensor,
        _: &mut Tensor,
        _: &AdamStep,
    ) -> Result<()> {
        Err(unsupported("adam update"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_is_a_clean_error() {
        let e = CudaDevice::new(0).unwrap_err();
        assert!(matches!(e, CoreError::Unsupported(_)), "{e}");
        assert!(e.to_string().contains("cuda:0"), "{e}");
        let t = Tensor::ones([2, 2]);
        let e = t.to_device(Device::Cuda(1)).unwrap_err();
        assert!(e.to_string().contains("cuda:1"), "{e}");
        let b = Device::Cuda(0).backend();
        assert!(matches!(
            b.unary(&t, Unary::Relu),
            Err(CoreError::Unsupported(_))
        ));
        assert!(matches!(b.full(&[2], 0.0), Err(CoreError::Unsupported(_))));
        assert!(Indices::from_vec([1], vec![0])
            .unwrap()
            .to_device(Device::Cuda(0))
            .is_err());
    }
}
