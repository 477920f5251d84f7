//! Where a tensor's elements live.
//!
//! A [`Storage`] is one buffer on one [`Device`]: a host `Vec` for the CPU
//! backend, a device buffer for CUDA. Shapes live in [`crate::Tensor`] and
//! [`Indices`]; storage is just the elements. Without the `cuda` feature the
//! CUDA variants hold a stand-in that can never be built (see
//! [`crate::backend::cuda`]): every path that would create one returns
//! [`crate::CoreError::Unsupported`]. With it they hold device buffers;
//! host-slice accessors (`Tensor::data`) are for CPU tensors only — copy a
//! device tensor with `to_device(Device::Cpu)` first.

use crate::backend::cuda::{CudaIndices, CudaStorage};
use crate::backend::Device;
use crate::error::{CoreError, Result};
use crate::tensor::numel;

/// The elements of an `f32` tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    /// Host memory, row-major.
    Cpu(Vec<f32>),
    /// Device memory of a CUDA GPU.
    Cuda(CudaStorage),
}

impl Storage {
    /// The device holding the elements.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(s) => s.device(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(v) => v.len(),
            Storage::Cuda(s) => s.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The elements of an [`Indices`] tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexStorage {
    /// Host memory, row-major.
    Cpu(Vec<u32>),
    /// Device memory of a CUDA GPU.
    Cuda(CudaIndices),
}

/// A tensor of `u32` indices on a device: class labels, the argmax of max
/// pooling. Tape ops keep these on the device of the values they index.
#[derive(Clone, Debug, PartialEq)]
pub struct Indices {
    shape: Vec<usize>,
    storage: IndexStorage,
}

impl Indices {
    /// Host indices, checking that `data.len()` matches the shape.
    pub fn from_vec(shape: impl Into<Vec<usize>>, data: Vec<u32>) -> Result<Self> {
        let shape = shape.into();
        let expected = numel(&shape);
        if expected != data.len() {
            return Err(CoreError::DataLength {
                shape,
                expected,
                got: data.len(),
            });
        }
        Ok(Self {
            shape,
            storage: IndexStorage::Cpu(data),
        })
    }

    /// A rank-1 host tensor of `usize` indices; an error if one exceeds `u32`.
    pub fn from_usize(data: &[usize]) -> Result<Self> {
        let v = data
            .iter()
            .map(|&i| {
                u32::try_from(i).map_err(|_| CoreError::InvalidArgument {
                    op: "indices",
                    reason: format!("index {i} does not fit in u32"),
                })
            })
            .collect::<Result<Vec<u32>>>()?;
        Self::from_vec([v.len()], v)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of indices.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// The device holding the indices.
    pub fn device(&self) -> Device {
        match &self.storage {
            IndexStorage::Cpu(_) => Device::Cpu,
            IndexStorage::Cuda(s) => s.device(),
        }
    }

    /// The storage, for a backend.
    pub fn storage(&self) -> &IndexStorage {
        &self.storage
    }

    /// The indices as a host slice (CPU storage).
    pub fn data(&self) -> &[u32] {
        match &self.storage {
            IndexStorage::Cpu(v) => v,
            IndexStorage::Cuda(s) => s.not_on_host(),
        }
    }

    /// Indices of `shape` over `storage`; an error if the sizes disagree.
    pub fn from_storage(shape: impl Into<Vec<usize>>, storage: IndexStorage) -> Result<Self> {
        let shape = shape.into();
        let got = match &storage {
            IndexStorage::Cpu(v) => v.len(),
            IndexStorage::Cuda(s) => s.len(),
        };
        if numel(&shape) != got {
            return Err(CoreError::DataLength {
                expected: numel(&shape),
                shape,
                got,
            });
        }
        Ok(Self { shape, storage })
    }

    /// A copy on `device` (a clone when it is already there).
    pub fn to_device(&self, device: Device) -> Result<Self> {
        let storage = match (&self.storage, device) {
            _ if self.device() == device => return Ok(self.clone()),
            (IndexStorage::Cpu(v), Device::Cuda(ordinal)) => {
                IndexStorage::Cuda(CudaIndices::upload(ordinal, v)?)
            }
            (IndexStorage::Cuda(s), Device::Cpu) => IndexStorage::Cpu(s.download()?),
            (IndexStorage::Cuda(s), Device::Cuda(ordinal)) => {
                IndexStorage::Cuda(CudaIndices::upload(ordinal, &s.download()?)?)
            }
            (IndexStorage::Cpu(_), Device::Cpu) => return Ok(self.clone()),
        };
        Ok(Self {
            shape: self.shape.clone(),
            storage,
        })
    }
}
