//! Shared helpers for prune-core's integration tests.
#![allow(dead_code)]

use prune_core::cpu::Conv2dParams;
use prune_core::gradcheck::{check_gradients, GradcheckConfig};
use prune_core::{Device, Result, Tape, Tensor, Var};
use rand::SeedableRng;

pub fn rng(seed: u64) -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

pub fn rand_t(shape: &[usize], seed: u64) -> Tensor {
    Tensor::uniform(shape.to_vec(), -1.0, 1.0, &mut rng(seed))
}

pub fn t(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_vec(shape.to_vec(), data.to_vec()).expect("test tensor")
}

/// Asserts that the tape's gradients of `f` match central differences.
pub fn assert_grads<F>(name: &str, inputs: &[Tensor], f: F)
where
    F: Fn(&mut Tape, &[Var]) -> Result<Var>,
{
    assert_grads_cfg(name, inputs, f, GradcheckConfig::default());
}

pub fn assert_grads_cfg<F>(name: &str, inputs: &[Tensor], f: F, cfg: GradcheckConfig)
where
    F: Fn(&mut Tape, &[Var]) -> Result<Var>,
{
    let r = check_gradients(inputs, f, cfg).expect("gradcheck runs");
    assert!(r.checked > 0, "{name}: nothing checked");
    assert!(
        r.passed,
        "{name}: gradient mismatch, worst {} (ratio {})",
        r.worst, r.worst_ratio
    );
}

/// A tensor of `shape` holding `v`, on device `d`.
pub fn on(d: Device, shape: &[usize], v: Vec<f32>) -> Tensor {
    Tensor::from_vec(shape.to_vec(), v)
        .expect("tensor")
        .to_device(d)
        .expect("copy to the device")
}

/// A tensor's values, copied to the host.
pub fn host(t: &Tensor) -> Vec<f32> {
    t.to_device(Device::Cpu)
        .expect("copy to the host")
        .into_vec()
}

/// A convolution layer: input shape, weight shape, stride, padding, groups.
pub type ConvCase = ([usize; 4], [usize; 4], usize, usize, usize);

/// The layer's stride, padding and groups.
pub fn conv_params(c: &ConvCase) -> Conv2dParams {
    Conv2dParams {
        stride: (c.2, c.2),
        padding: (c.3, c.3),
        groups: c.4,
    }
}

/// The layer's output shape.
pub fn conv_out_shape(c: &ConvCase) -> Vec<usize> {
    let (i, w) = (c.0, c.1);
    let o = |n: usize, k: usize| (n + 2 * c.3 - k) / c.2 + 1;
    vec![i[0], w[0], o(i[2], w[2]), o(i[3], w[3])]
}
