//! A dense, contiguous, row-major `f32` tensor.
//!
//! Images are NCHW. The tensor owns its [`Storage`], which names the
//! [`Device`] holding the elements; ops run on that device's
//! [`Backend`](crate::backend::Backend). Constructors build CPU tensors.
//!
//! The host accessors (`data`, `data_mut`, `into_vec`) and the small host
//! helpers below (`map`, `zip_map`, `sum_all`, ...) read CPU storage;
//! tensors on another device are copied with [`Tensor::to_device`] first.

use crate::backend::cuda::CudaStorage;
use crate::backend::{Backend, Device};
use crate::error::{CoreError, Result};
use crate::storage::Storage;
use rand::Rng;

/// A contiguous row-major `f32` tensor.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Storage,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Storage::Cuda(d) = &self.storage {
            return write!(f, "Tensor{:?} on {}", self.shape, d.device());
        }
        let head: Vec<f32> = self.data().iter().take(8).copied().collect();
        write!(f, "Tensor{:?} {:?}", self.shape, head)?;
        if self.numel() > 8 {
            write!(f, "...")?;
        }
        Ok(())
    }
}

/// The serialized form: shape and row-major host data.
#[derive(serde::Serialize, serde::Deserialize)]
struct TensorRepr<S, D> {
    shape: S,
    data: D,
}

impl serde::Serialize for Tensor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match &self.storage {
            Storage::Cpu(v) => TensorRepr {
                shape: &self.shape,
                data: v,
            }
            .serialize(s),
            Storage::Cuda(d) => {
                let v = d.download().map_err(serde::ser::Error::custom)?;
                TensorRepr {
                    shape: &self.shape,
                    data: &v,
                }
                .serialize(s)
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Tensor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let r = TensorRepr::<Vec<usize>, Vec<f32>>::deserialize(d)?;
        Tensor::from_vec(r.shape, r.data).map_err(serde::de::Error::custom)
    }
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    fn cpu(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self {
            shape,
            storage: Storage::Cpu(data),
        }
    }

    /// A tensor of `shape` over `storage`; an error if the sizes disagree.
    pub fn from_storage(shape: impl Into<Vec<usize>>, storage: Storage) -> Result<Self> {
        let shape = shape.into();
        let expected = numel(&shape);
        if expected != storage.len() {
            return Err(CoreError::DataLength {
                shape,
                expected,
                got: storage.len(),
            });
        }
        Ok(Self { shape, storage })
    }

    /// The storage, for a backend.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The storage, mutable, for a backend.
    pub fn storage_mut(&mut self) -> &mut Storage {
        &mut self.storage
    }

    /// The device holding the elements.
    pub fn device(&self) -> Device {
        self.storage.device()
    }

    /// The backend that runs ops on this tensor's device.
    pub fn backend(&self) -> &'static dyn Backend {
        self.device().backend()
    }

    /// A copy on `device` (a clone when it is already there).
    pub fn to_device(&self, device: Device) -> Result<Self> {
        let storage = match (&self.storage, device) {
            _ if self.device() == device => return Ok(self.clone()),
            (Storage::Cpu(v), Device::Cuda(ordinal)) => {
                Storage::Cuda(CudaStorage::upload(ordinal, v)?)
            }
            (Storage::Cuda(s), Device::Cpu) => Storage::Cpu(s.download()?),
            (Storage::Cuda(s), Device::Cuda(ordinal)) => {
                Storage::Cuda(CudaStorage::upload(ordinal, &s.download()?)?)
            }
            (Storage::Cpu(_), Device::Cpu) => return Ok(self.clone()),
        };
        Ok(Self {
            shape: self.shape.clone(),
            storage,
        })
    }

    /// Zeros of this tensor's shape on its device.
    pub fn zeros_like(&self) -> Result<Self> {
        self.backend().full(&self.shape, 0.0)
    }

    /// Builds a tensor, checking that `data.len()` matches the shape.
    pub fn from_vec(shape: impl Into<Vec<usize>>, data: Vec<f32>) -> Result<Self> {
        let shape = shape.into();
        let expected = numel(&shape);
        if expected != data.len() {
            return Err(CoreError::DataLength {
                shape,
                expected,
                got: data.len(),
            });
        }
        Ok(Self::cpu(shape, data))
    }

    /// A tensor filled with `value`.
    pub fn full(shape: impl Into<Vec<usize>>, value: f32) -> Self {
        let shape = shape.into();
        let n = numel(&shape);
        Self::cpu(shape, vec![value; n])
    }

    /// A tensor of zeros.
    pub fn zeros(shape: impl Into<Vec<usize>>) -> Self {
        Self::full(shape, 0.0)
    }

    /// A tensor of ones.
    pub fn ones(shape: impl Into<Vec<usize>>) -> Self {
        Self::full(shape, 1.0)
    }

    /// A rank-0 tensor holding one value.
    pub fn scalar(value: f32) -> Self {
        Self::cpu(vec![], vec![value])
    }

    /// Samples i.i.d. uniform values in `[lo, hi)`.
    pub fn uniform<R: Rng + ?Sized>(
        shape: impl Into<Vec<usize>>,
        lo: f32,
        hi: f32,
        rng: &mut R,
    ) -> Self {
        let shape = shape.into();
        let n = numel(&shape);
        let data = (0..n)
            .map(|_| lo + (hi - lo) * rng.random::<f32>())
            .collect();
        Self::cpu(shape, data)
    }

    /// Samples i.i.d. normal values with the given mean and standard deviation.
    pub fn randn<R: Rng + ?Sized>(
        shape: impl Into<Vec<usize>>,
        mean: f32,
        std: f32,
        rng: &mut R,
    ) -> Self {
        let shape = shape.into();
        let n = numel(&shape);
        let data = (0..n).map(|_| mean + std * standard_normal(rng)).collect();
        Self::cpu(shape, data)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The rank (number of dimensions).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Size of dimension `d`; an error names the tensor's shape when `d` is out of range.
    pub fn dim(&self, d: usize) -> Result<usize> {
        self.shape
            .get(d)
            .copied()
            .ok_or_else(|| CoreError::BadShape {
                op: "dim",
                shape: self.shape.clone(),
                reason: format!("no dimension {d}"),
            })
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// The elements of a CPU tensor, row-major.
    pub fn data(&self) -> &[f32] {
        match &self.storage {
            Storage::Cpu(v) => v,
            Storage::Cuda(s) => s.not_on_host(),
        }
    }

    /// The elements of a CPU tensor, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        match &mut self.storage {
            Storage::Cpu(v) => v,
            Storage::Cuda(s) => s.not_on_host(),
        }
    }

    /// Consumes a CPU tensor, returning its elements.
    pub fn into_vec(self) -> Vec<f32> {
        match self.storage {
            Storage::Cpu(v) => v,
            Storage::Cuda(s) => s.not_on_host(),
        }
    }

    /// The value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if let Storage::Cuda(d) = &self.storage {
            if self.numel() == 1 {
                return Ok(d.download()?[0]);
            }
        }
        match self.data() {
            [v] => Ok(*v),
            _ => Err(CoreError::BadShape {
                op: "item",
                shape: self.shape.clone(),
                reason: "expected exactly one element".into(),
            }),
        }
    }

    /// Same data under a new shape with the same number of elements.
    pub fn reshape(&self, shape: impl Into<Vec<usize>>) -> Result<Self> {
        let shape = shape.into();
        if numel(&shape) != self.numel() {
            return Err(CoreError::ShapeMismatch {
                op: "reshape",
                lhs: self.shape.clone(),
                rhs: shape,
            });
        }
        Ok(Self {
            shape,
            storage: self.storage.clone(),
        })
    }

    /// Reshapes in place (no copy).
    pub fn into_reshaped(mut self, shape: impl Into<Vec<usize>>) -> Result<Self> {
        let shape = shape.into();
        if numel(&shape) != self.numel() {
            return Err(CoreError::ShapeMismatch {
                op: "reshape",
                lhs: self.shape,
                rhs: shape,
            });
        }
        self.shape = shape;
        Ok(self)
    }

    /// Applies `f` to every element.
    pub fn map(&self, f: impl Fn(f32) -> f32) -> Self {
        Self::cpu(
            self.shape.clone(),
            self.data().iter().map(|&v| f(v)).collect(),
        )
    }

    /// Elementwise combination of two tensors of identical shape.
    pub fn zip_map(
        &self,
        other: &Tensor,
        op: &'static str,
        f: impl Fn(f32, f32) -> f32,
    ) -> Result<Self> {
        self.expect_same_shape(other, op)?;
        let data = self
            .data()
            .iter()
            .zip(other.data())
            .map(|(&a, &b)| f(a, b))
            .collect();
        Ok(Self::cpu(self.shape.clone(), data))
    }

    /// `self += other` for tensors of identical shape.
    pub fn add_assign(&mut self, other: &Tensor) -> Result<()> {
        self.expect_same_shape(other, "add_assign")?;
        crate::cpu::elementwise::add_assign(self.data_mut(), other.data());
        Ok(())
    }

    /// Multiplies every element by `s`.
    pub fn scale(&self, s: f32) -> Self {
        self.map(|v| v * s)
    }

    /// Sum of all elements (accumulated in f64).
    pub fn sum_all(&self) -> f32 {
        self.data().iter().map(|&v| v as f64).sum::<f64>() as f32
    }

    /// True when every element is finite.
    pub fn all_finite(&self) -> bool {
        crate::cpu::reduce::all_finite(self.data())
    }

    /// Largest absolute elementwise difference; an error if shapes differ.
    pub fn max_abs_diff(&self, other: &Tensor) -> Result<f32> {
        self.expect_same_shape(other, "max_abs_diff")?;
        Ok(self
            .data()
            .iter()
            .zip(other.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max))
    }

    /// Row-wise argmax of a `[rows, cols]` tensor.
    pub fn argmax_rows(&self) -> Result<Vec<usize>> {
        if self.rank() != 2 || self.shape[1] == 0 {
            return Err(CoreError::BadShape {
                op: "argmax_rows",
                shape: self.shape.clone(),
                reason: "expected [rows, cols] with cols > 0".into(),
            });
        }
        let cols = self.shape[1];
        Ok(self
            .data()
            .chunks(cols)
            .map(|row| {
                let mut best = 0;
                for (i, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = i;
                    }
                }
                best
            })
            .collect())
    }

    /// Errors unless both tensors have the same shape.
    pub fn expect_same_shape(&self, other: &Tensor, op: &'static str) -> Result<()> {
        if self.shape != other.shape {
            return Err(CoreError::ShapeMismatch {
                op,
                lhs: self.shape.clone(),
                rhs: other.shape.clone(),
            });
        }
        Ok(())
    }

    /// Errors unless the tensor has exactly `rank` dimensions.
    pub fn expect_rank(&self, rank: usize, op: &'static str) -> Result<()> {
        if self.rank() != rank {
            return Err(CoreError::BadShape {
                op,
                shape: self.shape.clone(),
                reason: format!("expected rank {rank}"),
            });
        }
        Ok(())
    }

    /// Little-endian bytes of the f32 data (for safetensors).
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(self.data())
    }

    /// Builds a tensor from little-endian f32 bytes.
    pub fn from_le_bytes(shape: impl Into<Vec<usize>>, bytes: &[u8]) -> Result<Self> {
        let shape = shape.into();
        let expected = numel(&shape) * 4;
        if bytes.len() != expected {
            return Err(CoreError::DataLength {
                shape,
                expected,
                got: bytes.len(),
            });
        }
        let data: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Self::from_vec(shape, data)
    }

    /// Converts to IEEE half precision.
    pub fn to_f16(&self) -> Vec<half::f16> {
        self.data()
            .iter()
            .map(|&v| half::f16::from_f32(v))
            .collect()
    }

    /// Converts to bfloat16.
    pub fn to_bf16(&self) -> Vec<half::bf16> {
        self.data()
            .iter()
            .map(|&v| half::bf16::from_f32(v))
            .collect()
    }

    /// Builds a tensor from half-precision values.
    pub fn from_f16(shape: impl Into<Vec<usize>>, data: &[half::f16]) -> Result<Self> {
        Self::from_vec(shape, data.iter().map(|v| v.to_f32()).collect())
    }

    /// Builds a tensor from bfloat16 values.
    pub fn from_bf16(shape: impl Into<Vec<usize>>, data: &[half::bf16]) -> Result<Self> {
        Self::from_vec(shape, data.iter().map(|v| v.to_f32()).collect())
    }
}

/// A standard normal sampler (Box–Muller), so the core needs no distribution crate.
mod rand_distr_free {
    use rand::Rng;

    /// One standard normal draw.
    pub fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f32 {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
}

pub use rand_distr_free::standard_normal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_vec_checks_length() {
        let e = Tensor::from_vec([2, 3], vec![0.0; 5]).unwrap_err();
        assert!(e.to_string().contains("[2, 3]"), "{e}");
    }

    #[test]
    fn half_roundtrip() {
        let t = Tensor::from_vec([3], vec![1.0, -2.5, 0.125]).unwrap();
        let back = Tensor::from_f16([3], &t.to_f16()).unwrap();
        assert_eq!(t, back);
        let back = Tensor::from_bf16([3], &t.to_bf16()).unwrap();
        assert_eq!(t, back);
        let bytes = Tensor::from_le_bytes([3], t.as_bytes()).unwrap();
        assert_eq!(t, bytes);
    }

    #[test]
    fn argmax() {
        let t = Tensor::from_vec([2, 3], vec![0.0, 3.0, 1.0, 5.0, 4.0, 5.0]).unwrap();
        assert_eq!(t.argmax_rows().unwrap(), vec![1, 0]);
    }
}
