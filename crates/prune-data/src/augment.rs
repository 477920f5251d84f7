//! Training-time augmentation: random crop with zero padding and random
//! horizontal flip (the standard CIFAR-10 recipe: pad 4, crop 32, flip p = 1/2).
//!
//! For an image `I` of shape `[C, H, W]`, padding `p`, offsets `dy, dx` in
//! `0..=2p` and a flip bit `f`, the output is
//!
//! ```text
//! P[c][i][j] = I[c][i - p][j - p]   if p <= i < H + p and p <= j < W + p, else fill[c]
//! crop[c][y][x] = P[c][y + dy][x + dx]                     (y < H, x < W)
//! out[c][y][x]  = crop[c][y][W - 1 - x] if f, else crop[c][y][x]
//! ```
//!
//! i.e. crop first, then flip, computed in one pass. The fill is the normalized
//! value of a zero pixel byte, so padding matches zero padding of the raw image.
//!
//! The random choices of an example depend only on `(seed, epoch, index)`, where
//! `index` is the example's position in the dataset: they do not change with the
//! batch size, the shuffling, or the number of threads.

use crate::error::{DataError, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Random crop + flip settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augment {
    /// Padding on each side before the random crop back to the original size
    /// (0 disables cropping).
    pub pad: usize,
    /// Whether to flip horizontally with probability 1/2.
    pub hflip: bool,
    /// Seed of the augmentation stream.
    pub seed: u64,
}

/// The random choices for one example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropFlip {
    /// Vertical crop offset into the padded image, `0..=2 * pad`.
    pub dy: usize,
    /// Horizontal crop offset into the padded image, `0..=2 * pad`.
    pub dx: usize,
    /// Whether the crop is mirrored left-right.
    pub flip: bool,
}

impl CropFlip {
    /// The choice that leaves an image unchanged for padding `pad`.
    pub fn identity(pad: usize) -> Self {
        CropFlip {
            dy: pad,
            dx: pad,
            flip: false,
        }
    }
}

/// SplitMix64 finalizer: a bijective mix of 64 bits.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Augment {
    /// The CIFAR-10 recipe: 4-pixel padding, random crop, random flip.
    pub fn cifar(seed: u64) -> Self {
        Augment {
            pad: 4,
            hflip: true,
            seed,
        }
    }

    /// The choices for example `index` in `epoch`.
    pub fn choices(&self, epoch: u64, index: usize) -> CropFlip {
        let key = splitmix64(self.seed ^ splitmix64(epoch ^ splitmix64(index as u64)));
        let mut rng = ChaCha8Rng::seed_from_u64(key);
        let dy = rng.random_range(0..=2 * self.pad);
        let dx = rng.random_range(0..=2 * self.pad);
        let flip = self.hflip && rng.random_bool(0.5);
        CropFlip { dy, dx, flip }
    }
}

/// Writes the cropped-and-flipped `src` (shape `[C, H, W]`) into `dst`.
///
/// `fill` holds one padding value per channel. Fails when a buffer length does
/// not match the shape or an offset exceeds `2 * pad`.
pub fn crop_flip_into(
    src: &[f32],
    shape: [usize; 3],
    pad: usize,
    choice: CropFlip,
    fill: &[f32],
    dst: &mut [f32],
) -> Result<()> {
    let [c, h, w] = shape;
    let n = c * h * w;
    if src.len() != n || dst.len() != n {
        return Err(DataError::InvalidArgument(format!(
            "crop_flip: shape {shape:?} needs {n} values, got src {} and dst {}",
            src.len(),
            dst.len()
        )));
    }
    if fill.len() != c {
        return Err(DataError::InvalidArgument(format!(
            "crop_flip: {} fill values for {c} channels",
            fill.len()
        )));
    }
    if choice.dy > 2 * pad || choice.dx > 2 * pad {
        return Err(DataError::InvalidArgument(format!(
            "crop_flip: offsets ({}, {}) exceed 2 * pad = {}",
            choice.dy,
            choice.dx,
            2 * pad
        )));
    }
    // Source column of output column x (as a signed offset into the unpadded image).
    let src_col = |x: usize| -> isize {
        let xs = if choice.flip { w - 1 - x } else { x };
        xs as isize + choice.dx as isize - pad as isize
    };
    for ch in 0..c {
        let plane_src = &src[ch * h * w..(ch + 1) * h * w];
        let plane_dst = &mut dst[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            let row_dst = &mut plane_dst[y * w..(y + 1) * w];
            let sy = y as isize + choice.dy as isize - pad as isize;
            if sy < 0 || sy >= h as isize {
                row_dst.fill(fill[ch]);
                continue;
            }
            let row_src = &plane_src[sy as usize * w..(sy as usize + 1) * w];
            if !choice.flip {
                // Contiguous run: output x maps to source x + dx - pad.
                let shift = choice.dx as isize - pad as isize;
                let x0 = (-shift).clamp(0, w as isize) as usize;
                let x1 = (w as isize - shift).clamp(0, w as isize) as usize;
                row_dst[..x0].fill(fill[ch]);
                if x1 > x0 {
                    let s0 = (x0 as isize + shift) as usize;
                    row_dst[x0..x1].copy_from_slice(&row_src[s0..s0 + (x1 - x0)]);
                }
                row_dst[x1.max(x0)..].fill(fill[ch]);
            } else {
                for (x, d) in row_dst.iter_mut().enumerate() {
                    let sx = src_col(x);
                    *d = if sx < 0 || sx >= w as isize {
                        fill[ch]
                    } else {
                        row_src[sx as usize]
                    };
                }
            }
        }
    }
    Ok(())
}
