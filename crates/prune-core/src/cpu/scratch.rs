//! Reusable, 64-byte aligned `f32` scratch buffers kept per thread.
//!
//! The GEMM packs operands into these buffers and the convolution writes its
//! im2col matrices into them, so a training step does not allocate megabytes
//! per call. Each buffer lives in a thread-local slot; when a slot is already
//! borrowed on this thread (a rayon task stolen while the owner waits in a
//! `join`), a temporary buffer is allocated instead, so nested use is safe.

use std::cell::RefCell;

/// Alignment of the buffers in `f32` elements (64 bytes = one cache line,
/// one AVX-512 register).
const ALIGN: usize = 16;

/// A growable `f32` buffer whose usable part starts on a 64-byte boundary.
#[derive(Default)]
pub(crate) struct AlignedBuf {
    raw: Vec<f32>,
}

impl AlignedBuf {
    /// An empty buffer.
    pub(crate) const fn new() -> Self {
        Self { raw: Vec::new() }
    }

    /// Offset of the first 64-byte aligned element.
    fn offset(&self) -> usize {
        let addr = self.raw.as_ptr() as usize;
        (64 - addr % 64) % 64 / std::mem::size_of::<f32>()
    }

    /// The first `len` elements written by the last [`slice`](Self::slice)
    /// call of at least that length.
    pub(crate) fn view(&self, len: usize) -> &[f32] {
        let off = self.offset();
        &self.raw[off..off + len]
    }

    /// The first `len` elements of the aligned region, grown on demand.
    /// The contents are whatever the previous user left (not zeroed).
    pub(crate) fn slice(&mut self, len: usize) -> &mut [f32] {
        if self.raw.len() < len + ALIGN {
            self.raw = vec![0.0; len + ALIGN];
        }
        let off = self.offset();
        &mut self.raw[off..off + len]
    }
}

/// Which per-thread slot a caller uses; different slots may be borrowed at
/// the same time (e.g. the im2col matrix while the GEMM packs into its own).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Slot {
    /// Packed panels of the GEMM's left operand.
    PackA,
    /// Packed panels of the GEMM's right operand.
    PackB,
    /// The im2col matrix of a convolution.
    Col,
    /// A second convolution matrix (the column gradient).
    Col2,
    /// Winograd-domain planes (`conv_wino.rs`).
    Transform,
}

/// A buffer held beyond one call (a GEMM's packed weights, a layer's
/// Winograd-transformed weights): taken from this thread's kept slot and
/// handed back to it when dropped. Reusing it spares a multi-megabyte
/// allocation, zero-fill and page faults per call (a VGG-like layer's
/// weights, at batch 1, on every convolution). Its contents start as
/// whatever the previous owner left: the owner writes before it reads.
pub(crate) struct Kept {
    buf: AlignedBuf,
    len: usize,
}

impl Kept {
    /// `len` aligned values from the kept slot (or a new buffer when the
    /// slot is empty or borrowed).
    pub(crate) fn take(len: usize) -> Self {
        let mut buf = KEPT
            .with(|k| k.try_borrow_mut().map(|mut b| std::mem::take(&mut *b)))
            .unwrap_or_default();
        buf.slice(len);
        Self { buf, len }
    }
}

impl std::ops::Deref for Kept {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        self.buf.view(self.len)
    }
}

impl std::ops::DerefMut for Kept {
    fn deref_mut(&mut self) -> &mut [f32] {
        self.buf.slice(self.len)
    }
}

impl Drop for Kept {
    /// Back to this thread's kept slot, keeping the larger of it and the
    /// one held. A thread being torn down no longer has the slot; the
    /// buffer is then simply freed.
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let _ = KEPT.try_with(|k| {
            if let Ok(mut held) = k.try_borrow_mut() {
                if buf.raw.capacity() > held.raw.capacity() {
                    *held = buf;
                }
            }
        });
    }
}

thread_local! {
    static KEPT: RefCell<AlignedBuf> = const { RefCell::new(AlignedBuf::new()) };
    static PACK_A: RefCell<AlignedBuf> = const { RefCell::new(AlignedBuf::new()) };
    static PACK_B: RefCell<AlignedBuf> = const { RefCell::new(AlignedBuf::new()) };
    static COL: RefCell<AlignedBuf> = const { RefCell::new(AlignedBuf::new()) };
    static COL2: RefCell<AlignedBuf> = const { RefCell::new(AlignedBuf::new()) };
    static TRANSFORM: RefCell<AlignedBuf> = const { RefCell::new(AlignedBuf::new()) };
}

/// Runs `f` on an aligned scratch slice of `len` elements from `slot`.
pub(crate) fn with_scratch<R>(slot: Slot, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let key = match slot {
        Slot::PackA => &PACK_A,
        Slot::PackB => &PACK_B,
        Slot::Col => &COL,
        Slot::Col2 => &COL2,
        Slot::Transform => &TRANSFORM,
    };
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => f(buf.slice(len)),
        Err(_) => f(AlignedBuf::new().slice(len)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_sized() {
        let mut b = AlignedBuf::new();
        for len in [1usize, 17, 1000, 3] {
            let s = b.slice(len);
            assert_eq!(s.len(), len);
            assert_eq!(s.as_ptr() as usize % 64, 0);
        }
    }

    #[test]
    fn nested_use_of_one_slot_gets_a_fresh_buffer() {
        let total = with_scratch(Slot::Col, 8, |outer| {
            outer.fill(1.0);
            let inner_sum = with_scratch(Slot::Col, 8, |inner| {
                inner.fill(2.0);
                inner.iter().sum::<f32>()
            });
            outer.iter().sum::<f32>() + inner_sum
        });
        assert_eq!(total, 24.0);
    }
}
