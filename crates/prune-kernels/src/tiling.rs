//! Launch geometry for the kernels (pure arithmetic, unit-tested without a GPU).

use crate::error::KernelError;

/// Threads per block used by every kernel.
pub const BLOCK: u32 = 256;
/// Columns of one SBP tile (256 threads x 4 columns); mirrors `SBP_TILE_COLS` in the kernel.
pub const SBP_TILE_COLS: usize = 1024;
/// Largest grid y / z dimension.
pub const MAX_GRID_YZ: usize = 65_535;
/// Largest grid x dimension.
pub const MAX_GRID_X: usize = i32::MAX as usize;
/// Output tile of the convolution GEMM.
pub const CONV_TILE: usize = 64;
/// K step of the convolution GEMM.
pub const CONV_BK: usize = 16;

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// How `sbp_forward` / `sbp_backward_tiles` cut a `[rows, channels, inner]` tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SbpPlan {
    /// Whole channels per column tile (1 when a channel is split into chunks).
    pub ch_per_tile: usize,
    /// Column chunks per channel (> 1 only when `inner > SBP_TILE_COLS`).
    pub chunks: usize,
    /// Width of a chunk (a multiple of 4, at most `SBP_TILE_COLS`); the last chunk of a
    /// channel may be narrower.  `SBP_TILE_COLS` when `chunks == 1`.
    pub chunk_cols: usize,
    /// Rows per block.
    pub rows_per_tile: usize,
    /// Column tiles.
    pub grid_x: usize,
    /// Row tiles.
    pub grid_y: usize,
}

impl SbpPlan {
    /// Plans the tiling; `sms` is the device's multiprocessor count.  `channels` must be
    /// positive.
    pub fn new(
        rows: usize,
        channels: usize,
        inner: usize,
        sms: u32,
    ) -> Result<SbpPlan, KernelError> {
        if channels == 0 {
            return Err(KernelError::invalid("SbpPlan", "zero channels"));
        }
        let mut chunk_cols = SBP_TILE_COLS;
        let (ch_per_tile, chunks) = if inner == 0 {
            (channels.min(SBP_TILE_COLS), 1)
        } else if inner > SBP_TILE_COLS {
            // Equal chunks (rounded up to float4 width) instead of full ones plus a sliver.
            let n = inner.div_ceil(SBP_TILE_COLS);
            chunk_cols = inner.div_ceil(n).div_ceil(4) * 4;
            (1, inner.div_ceil(chunk_cols))
        } else {
            let mut cpt = SBP_TILE_COLS / inner;
            // Keep tile starts float4-aligned when the whole row is.
            let align = 4 / gcd(inner, 4);
            if cpt >= align {
                cpt -= cpt % align;
            }
            (cpt.min(channels), 1)
        };
        let grid_x = if chunks > 1 {
            channels * chunks
        } else {
            channels.div_ceil(ch_per_tile)
        };
        if grid_x > MAX_GRID_X {
            return Err(KernelError::invalid(
                "SbpPlan",
                format!("{channels} channels x {chunks} chunks exceed the grid limit"),
            ));
        }
        let width = if chunks > 1 {
            chunk_cols
        } else {
            (ch_per_tile * inner).max(1)
        };
        let rows1 = rows.max(1);
        // About 64K elements per block, but enough blocks to fill the device ...
        let mut rpt = (65_536usize).div_ceil(width).clamp(1, rows1);
        let tiles_y_wanted = (4 * sms as usize).div_ceil(grid_x);
        rpt = rpt.min(rows1.div_ceil(tiles_y_wanted).max(1));
        // ... while each noise sample computed by a block serves at least 16 elements ...
        if inner > 0 {
            rpt = rpt.max(16usize.div_ceil(inner).min(rows1));
        }
        // ... and the row tiles fit the grid.
        rpt = rpt.max(rows1.div_ceil(MAX_GRID_YZ));
        let grid_y = rows1.div_ceil(rpt);
        Ok(SbpPlan {
            ch_per_tile,
            chunks,
            chunk_cols,
            rows_per_tile: rpt,
            grid_x,
            grid_y,
        })
    }
}

/// Grid of the convolution GEMM kernels for an `m x n` output.
pub fn conv_grid(m: usize, n: usize) -> Result<(u32, u32), KernelError> {
    let gx = n.div_ceil(CONV_TILE);
    let gy = m.div_ceil(CONV_TILE);
    if gx > MAX_GRID_X || gy > MAX_GRID_YZ {
        return Err(KernelError::invalid(
            "masked conv",
            format!("GEMM of {m} x {n} outputs exceeds the grid limits"),
        ));
    }
    Ok((gx as u32, gy as u32))
}

/// Split-K plan of the weight gradient: (splits, K values per split).
pub fn wgrad_split(m: usize, n: usize, k: usize, sms: u32) -> (usize, usize) {
    let tiles = (m.div_ceil(CONV_TILE) * n.div_ceil(CONV_TILE)).max(1);
    let want = 2 * sms as usize;
    let max_by_k = k.div_ceil(256).max(1);
    let splits = want.div_ceil(tiles).clamp(1, max_by_k.min(64));
    let per = k.div_ceil(splits).div_ceil(CONV_BK).max(1) * CONV_BK;
    let splits = k.div_ceil(per).max(1);
    (splits, per)
}

/// Grid of the gather / scatter kernels for `outer` slices of `row` moved units.
pub fn gather_grid(outer: usize, row: usize) -> (u32, u32) {
    let gx = row.div_ceil(BLOCK as usize * 4).clamp(1, 1 << 20);
    let gy = outer.clamp(1, MAX_GRID_YZ);
    (gx as u32, gy as u32)
}

/// Blocks for a grid-stride loop over `n` elements.
pub fn stride_grid(n: usize, sms: u32) -> u32 {
    n.div_ceil(BLOCK as usize)
        .clamp(1, 32 * sms.max(1) as usize) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every column of a row belongs to exactly one tile, tiles respect the width limit,
    /// every row to exactly one row tile, and the grid limits hold.
    fn check_cover(rows: usize, channels: usize, inner: usize) {
        let p = SbpPlan::new(rows, channels, inner, 132).unwrap();
        let m = channels * inner;
        let mut seen = vec![0u8; m];
        for bx in 0..p.grid_x {
            let (m0, width) = if p.chunks == 1 {
                let c0 = bx * p.ch_per_tile;
                let nch = p.ch_per_tile.min(channels - c0);
                (c0 * inner, nch * inner)
            } else {
                let c0 = bx / p.chunks;
                let chunk = bx % p.chunks;
                assert!(p.chunk_cols <= SBP_TILE_COLS && p.chunk_cols.is_multiple_of(4));
                (
                    c0 * inner + chunk * p.chunk_cols,
                    p.chunk_cols.min(inner - chunk * p.chunk_cols),
                )
            };
            assert!(width <= SBP_TILE_COLS);
            for s in &mut seen[m0..m0 + width] {
                *s += 1;
            }
        }
        assert!(
            seen.iter().all(|&s| s == 1),
            "rows={rows} c={channels} inner={inner}"
        );
        assert!(p.grid_y * p.rows_per_tile >= rows);
        assert!((p.grid_y - 1) * p.rows_per_tile < rows.max(1));
        assert!(p.grid_y <= MAX_GRID_YZ);
    }

    #[test]
    fn sbp_plan_covers_every_column_once() {
        for &(r, c, i) in &[
            (1, 1, 1),
            (7, 3, 5),
            (64, 256, 3136),
            (2, 5, 1025),
            (3, 2000, 1),
            (4096, 4096, 1),
            (9, 13, 9),
            (1, 1, 2048),
            (64, 256, 3136),
            (3, 2, 1025),
            (2, 3, 1027),
            (200_000, 3, 1),
            (5, 7, 0),
            (0, 4, 4),
        ] {
            check_cover(r, c, i);
        }
    }

    #[test]
    fn sbp_plan_aligns_tiles_for_float4() {
        let p = SbpPlan::new(8, 100, 2, 132).unwrap();
        assert_eq!((p.ch_per_tile * 2) % 4, 0);
        let p = SbpPlan::new(8, 100, 1, 132).unwrap();
        assert_eq!(p.ch_per_tile % 4, 0);
    }

    #[test]
    fn sbp_plan_rejects_zero_channels() {
        assert!(SbpPlan::new(4, 0, 4, 132).is_err());
    }

    #[test]
    fn wgrad_split_covers_k() {
        for &(m, n, k) in &[(64, 576, 100_000), (3, 9, 5), (512, 4608, 1_000), (1, 1, 0)] {
            let (splits, per) = wgrad_split(m, n, k, 132);
            assert_eq!(per % CONV_BK, 0);
            assert!(splits * per >= k);
            assert!(splits == 1 || (splits - 1) * per < k);
            assert!(splits <= 64);
        }
    }

    #[test]
    fn conv_grid_rounds_up() {
        assert_eq!(conv_grid(65, 1).unwrap(), (1, 2));
        assert_eq!(conv_grid(64, 129).unwrap(), (3, 1));
        assert!(conv_grid(64 * 70_000, 1).is_err());
    }
}
