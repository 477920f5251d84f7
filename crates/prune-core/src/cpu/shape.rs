//! Overflow-checked shape arithmetic shared by the kernels, so absurd
//! parameters give errors instead of wrapped sizes or failed allocations.

use crate::error::{CoreError, Result};

/// Largest number of `f32` values a kernel will allocate for one tensor.
const MAX_NUMEL: usize = isize::MAX as usize / std::mem::size_of::<f32>();

/// `len + 2·pad`, or `None` on overflow.
pub(crate) fn padded(len: usize, pad: usize) -> Option<usize> {
    pad.checked_mul(2).and_then(|p| p.checked_add(len))
}

/// Number of elements of `shape`; errors (naming the shape) when the
/// product overflows or exceeds what can be allocated.
pub(crate) fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_NUMEL)
        .ok_or_else(|| CoreError::BadShape {
            op,
            shape: shape.to_vec(),
            reason: "too many elements".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_is_detected() {
        assert_eq!(padded(5, 2), Some(9));
        assert_eq!(padded(1, usize::MAX / 2 + 1), None);
        assert_eq!(checked_numel("t", &[2, 3, 4]).unwrap(), 24);
        assert_eq!(checked_numel("t", &[]).unwrap(), 1);
        let e = checked_numel("t", &[usize::MAX, 2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("too many elements"), "{e}");
        assert!(checked_numel("t", &[1 << 40, 1 << 30]).is_err());
    }
}
