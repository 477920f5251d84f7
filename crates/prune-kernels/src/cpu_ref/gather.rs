//! CPU reference of channel gather / scatter (`kernels/gather.cu`).

use crate::error::KernelError;
use crate::keep::validate_keep;
use crate::shapes::ChannelLayout;

/// `dst[o, j, i] = src[o, keep[j], i]`, `dst` of shape `[outer, keep.len(), inner]`.
pub fn gather(src: &[f32], layout: &ChannelLayout, keep: &[u32]) -> Result<Vec<f32>, KernelError> {
    validate_keep(keep, layout.channels)?;
    if src.len() != layout.full_len()? {
        return Err(KernelError::shape(
            "cpu gather",
            format!(
                "src has {} elements, layout {layout:?} needs {}",
                src.len(),
                layout.full_len()?
            ),
        ));
    }
    let inner = layout.inner;
    let mut dst = Vec::with_capacity(layout.compact_len(keep.len())?);
    for o in 0..layout.outer {
        for &c in keep {
            let base = (o * layout.channels + c as usize) * inner;
            dst.extend_from_slice(&src[base..base + inner]);
        }
    }
    Ok(dst)
}

/// `dst[o, keep[j], i] = src[o, j, i]`; channels not in `keep` are left as they are.
pub fn scatter(
    src: &[f32],
    layout: &ChannelLayout,
    keep: &[u32],
    dst: &mut [f32],
) -> Result<(), KernelError> {
    validate_keep(keep, layout.channels)?;
    if src.len() != layout.compact_len(keep.len())? || dst.len() != layout.full_len()? {
        return Err(KernelError::shape(
            "cpu scatter",
            format!(
                "src has {} and dst {} elements; layout {layout:?} with {} kept channels needs {} and {}",
                src.len(),
                dst.len(),
                keep.len(),
                layout.compact_len(keep.len())?,
                layout.full_len()?
            ),
        ));
    }
    let inner = layout.inner;
    for o in 0..layout.outer {
        for (j, &c) in keep.iter().enumerate() {
            let from = (o * keep.len() + j) * inner;
            let to = (o * layout.channels + c as usize) * inner;
            dst[to..to + inner].copy_from_slice(&src[from..from + inner]);
        }
    }
    Ok(())
}
