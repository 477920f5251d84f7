//! The backend seam: tensors know their device, tape ops keep tensors in
//! their `Op` variants, custom ops declare their devices, and the stand-in
//! CUDA device fails cleanly.
mod common;
use common::*;
use prune_core::autograd::{Binary, CustomOp, Unary};
use prune_core::cpu::PoolParams;
use prune_core::{CoreError, Device, Indices, Op, Tape, Tensor};
use std::sync::Arc;

#[test]
fn tensors_live_on_the_cpu_and_cuda_is_a_clean_error() {
    let x = rand_t(&[2, 3], 1);
    assert_eq!(x.device(), Device::Cpu);
    assert_eq!(x.backend().device(), Device::Cpu);
    assert_eq!(x.to_device(Device::Cpu).unwrap(), x);
    let e = x.to_device(Device::Cuda(0)).unwrap_err();
    assert!(matches!(e, CoreError::Unsupported(_)), "{e}");
    let cuda = Device::Cuda(0).backend();
    assert!(matches!(
        cuda.binary(&x, &x, Binary::Add),
        Err(CoreError::Unsupported(_))
    ));
    assert_eq!(Device::Cuda(2).to_string(), "cuda:2");
}

#[test]
fn backend_calls_match_the_tape() {
    let (a, b) = (rand_t(&[4, 3], 2), rand_t(&[3], 3));
    let cpu = Device::Cpu.backend();
    let mut tape = Tape::new();
    let (va, vb) = (tape.leaf(a.clone(), true), tape.leaf(b.clone(), true));
    let y = tape.mul(va, vb).unwrap();
    let direct = cpu.binary(&a, &b, Binary::Mul).unwrap();
    assert_eq!(tape.value(y).unwrap(), &direct);
    let r = tape.relu(va).unwrap();
    assert_eq!(tape.value(r).unwrap(), &cpu.unary(&a, Unary::Relu).unwrap());
    // the adjoint of broadcasting sums the rows
    let s = cpu.sum_to_shape(&direct, &[3]).unwrap();
    for j in 0..3 {
        let want: f32 = (0..4).map(|i| direct.data()[i * 3 + j]).sum();
        assert!((s.data()[j] - want).abs() < 1e-6);
    }
}

#[test]
fn ops_record_tensors_not_host_vectors() {
    let mut tape = Tape::new();
    let x = tape.leaf(rand_t(&[1, 2, 4, 4], 4), true);
    let p = PoolParams {
        kernel: (2, 2),
        stride: (2, 2),
        padding: (0, 0),
    };
    let y = tape.max_pool2d(x, p).unwrap();
    let f = tape.flatten(y).unwrap();
    let loss = tape.cross_entropy(f, &[3]).unwrap();
    let mut seen = 0;
    for (_, op) in tape.ops() {
        match op {
            Op::MaxPool2d { argmax, .. } => {
                assert_eq!(argmax.shape(), &[1, 2, 2, 2]);
                assert_eq!(argmax.device(), Device::Cpu);
                seen += 1;
            }
            Op::CrossEntropy { labels, .. } => {
                assert_eq!(labels, &Indices::from_vec([1], vec![3]).unwrap());
                seen += 1;
            }
            _ => {}
        }
    }
    assert_eq!(seen, 2);
    assert!(tape.backward(loss).is_ok());
}

#[derive(Debug)]
struct NowhereOp;

impl CustomOp for NowhereOp {
    fn name(&self) -> &str {
        "Nowhere"
    }
    fn supports(&self, _: Device) -> bool {
        false
    }
    fn backward(
        &self,
        _: &[&Tensor],
        _: &Tensor,
        _: &Tensor,
    ) -> prune_core::Result<Vec<Option<Tensor>>> {
        Ok(vec![None])
    }
}

#[test]
fn custom_ops_are_refused_on_devices_they_do_not_support() {
    let mut tape = Tape::new();
    let x = tape.leaf(rand_t(&[2], 5), true);
    let e = tape
        .custom(&[x], Tensor::scalar(0.0), Arc::new(NowhereOp))
        .unwrap_err();
    assert!(
        matches!(&e, CoreError::Unsupported(m) if m.contains("Nowhere") && m.contains("cpu")),
        "{e}"
    );
}

#[test]
fn indices_reject_values_beyond_u32() {
    let big = u32::MAX as usize + 1;
    let e = Indices::from_usize(&[0, big]).unwrap_err();
    assert!(e.to_string().contains(&big.to_string()), "{e}");
    assert!(Indices::from_vec([2], vec![1]).is_err());
}
