// sbp_noise.cu: fused multiplicative noise of Structured Bayesian Pruning
// (Neklyudov et al., 2017).  Compiled with common.cuh and sbp_math.cuh prepended (the
// sample, its derivatives and the channel statistics live there).
//
// The uniform eps of each sample comes from Philox (key = seed; counter = (channel,
// example, step, 2 layer + mode)).
// The activation layout is [rows, C, HW] (NCHW with HW = H*W, or N x F with HW = 1).
// Forward: y = x * theta, theta written out for the backward (per example, theta and its
// derivatives are sampled once by sbp_sample_per_example before the streaming pass).
// Backward: dx = dy * theta, dtheta = sum dy * x, then dmu, dlog_sigma by the chain rule
// through the sample (pathwise derivative, derived next to sbp_sample in sbp_math.cuh).
// Per-channel statistics: E[theta], SNR = E/sqrt(Var), KL(q || log-uniform on [A, B]).
// The streaming part (y = x theta, dx = dy theta, sum dy x) runs in float.

#define SBP_TILE_COLS 1024
#define SBP_SMEM_FLOATS 4096

// ---------------------------------------------------------------------------
// Tiling shared by the forward and backward passes.
// The tensor is viewed as [rows, M = C*HW].  A block owns `rows_per_tile` rows and one
// column tile: either `ch_per_tile` whole channels (chunks == 1) or one `chunk_cols`-wide
// chunk of a single channel (chunks > 1, used when HW > 1024; chunk_cols <= 1024 and a
// multiple of 4, the last chunk of a channel may be narrower).  Each thread owns at most 4 columns:
// 4 consecutive ones (float4 path) or a stride of 256 (scalar path).
// ---------------------------------------------------------------------------
struct SbpTile {
    int c0, nch, chunk;
    i64 m0;     // first column of the tile within a row
    int width;  // columns in the tile
    int seg;    // columns per (row, channel) segment inside the tile
    bool vec;
    int ncol;   // columns owned by this thread
    int col[4];
    int lch[4];  // local channel of each owned column
};

__device__ __forceinline__ SbpTile sbp_tile(int channels, int hw, int ch_per_tile, int chunks,
                                            int chunk_cols) {
    SbpTile t;
    const int bx = blockIdx.x;
    if (chunks == 1) {
        t.c0 = bx * ch_per_tile;
        t.nch = min(ch_per_tile, channels - t.c0);
        t.chunk = 0;
        t.m0 = (i64)t.c0 * hw;
        t.width = t.nch * hw;
        t.seg = hw;
    } else {
        t.c0 = bx / chunks;
        t.chunk = bx % chunks;
        t.nch = 1;
        t.m0 = (i64)t.c0 * hw + (i64)t.chunk * chunk_cols;
        t.width = min(chunk_cols, hw - t.chunk * chunk_cols);
        t.seg = t.width;
    }
    const i64 row_len = (i64)channels * hw;
    t.vec = ((row_len & 3) == 0) && ((t.m0 & 3) == 0) && ((t.width & 3) == 0);
    t.ncol = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const int j = t.vec ? 4 * (int)threadIdx.x + k : (int)threadIdx.x + PK_BLOCK * k;
        t.col[k] = j;
        t.lch[k] = 0;
        if (j < t.width) {
            t.ncol = k + 1;
            t.lch[k] = chunks == 1 ? j / hw : 0;
        }
    }
    return t;
}

// Per-example noise, sampling step: for i = r*C + c, theta[i] and its pathwise derivatives
// dth[2i] = d theta/d mu, dth[2i+1] = d theta/d log_sigma (sbp_sample, double precision,
// stored as floats).  Each per-example theta is sampled here once: sbp_forward streams
// y = x theta from this buffer, and sbp_backward_finalize combines the dtheta sums with
// dth instead of sampling again.
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
sbp_sample_per_example(const float* __restrict__ mu, const float* __restrict__ log_sigma,
                       float* __restrict__ theta, float* __restrict__ dth, int rows, int channels,
                       u32 seed_lo, u32 seed_hi, u32 step, u32 layer2) {
    // rows * channels < 2^31 (checked by the host wrapper).
    const int total = rows * channels;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        const int r = i / channels;
        const int c = i - r * channels;
        const double eps = pk_noise_eps((u32)c, (u32)r, step, layer2 | 1u, seed_lo, seed_hi);
        const SbpSample s = sbp_sample((double)mu[c], (double)log_sigma[c], eps);
        theta[i] = (float)s.theta;
        dth[2 * i] = (float)s.dth_dmu;
        dth[2 * i + 1] = (float)s.dth_dls;
    }
}

// Forward: y = x * theta.  Per channel, theta is sampled here (once per channel and block
// column) and written to theta_io; per example, theta_io holds the samples of
// sbp_sample_per_example and is only read.
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
sbp_forward(const float* __restrict__ x, float* __restrict__ y, float* __restrict__ theta_io,
            const float* __restrict__ mu, const float* __restrict__ log_sigma, int rows,
            int channels, int hw, int ch_per_tile, int chunks, int chunk_cols, int rows_per_tile,
            u32 seed_lo, u32 seed_hi, u32 step, u32 layer2, int per_example) {
    __shared__ float theta_s[SBP_SMEM_FLOATS];
    const SbpTile t = sbp_tile(channels, hw, ch_per_tile, chunks, chunk_cols);
    const i64 row_len = (i64)channels * hw;
    const int r0 = blockIdx.y * rows_per_tile;
    const int r1 = min(rows, r0 + rows_per_tile);
    const bool writer = t.chunk == 0;

    if (!per_example) {
        for (int lc = threadIdx.x; lc < t.nch; lc += blockDim.x) {
            const int c = t.c0 + lc;
            const double eps = pk_noise_eps((u32)c, 0u, step, layer2, seed_lo, seed_hi);
            const float th = (float)sbp_sample((double)mu[c], (double)log_sigma[c], eps).theta;
            theta_s[lc] = th;
            if (writer && blockIdx.y == 0) theta_io[c] = th;
        }
        __syncthreads();
        float th[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) th[k] = k < t.ncol ? theta_s[t.lch[k]] : 0.0f;
        if (t.ncol == 0) return;
        if (t.vec) {
#pragma unroll 4
            for (int r = r0; r < r1; ++r) {
                const i64 base = (i64)r * row_len + t.m0 + t.col[0];
                float4 v = *reinterpret_cast<const float4*>(x + base);
                v.x *= th[0];
                v.y *= th[1];
                v.z *= th[2];
                v.w *= th[3];
                *reinterpret_cast<float4*>(y + base) = v;
            }
        } else {
#pragma unroll 2
            for (int r = r0; r < r1; ++r) {
                const i64 base = (i64)r * row_len + t.m0;
#pragma unroll
                for (int k = 0; k < 4; ++k)
                    if (k < t.ncol) y[base + t.col[k]] = x[base + t.col[k]] * th[k];
            }
        }
        return;
    }

    // Per-example noise: the samples of a batch of rows at a time, staged in shared memory.
    const int batch = max(1, min(SBP_SMEM_FLOATS / max(t.nch, 1), r1 - r0));
    for (int rb = r0; rb < r1; rb += batch) {
        const int nb = min(batch, r1 - rb);
        __syncthreads();
        for (int idx = threadIdx.x; idx < nb * t.nch; idx += blockDim.x) {
            const int rr = idx / t.nch, lc = idx - rr * t.nch;
            theta_s[idx] = theta_io[(i64)(rb + rr) * channels + t.c0 + lc];
        }
        __syncthreads();
        for (int rr = 0; rr < nb; ++rr) {
            const i64 base = (i64)(rb + rr) * row_len + t.m0;
            const float* ths = theta_s + rr * t.nch;
            if (t.vec) {
                if (t.ncol > 0) {
                    float4 v = *reinterpret_cast<const float4*>(x + base + t.col[0]);
                    v.x *= ths[t.lch[0]];
                    v.y *= ths[t.lch[1]];
                    v.z *= ths[t.lch[2]];
                    v.w *= ths[t.lch[3]];
                    *reinterpret_cast<float4*>(y + base + t.col[0]) = v;
                }
            } else {
#pragma unroll
                for (int k = 0; k < 4; ++k)
                    if (k < t.ncol) y[base + t.col[k]] = x[base + t.col[k]] * ths[t.lch[k]];
            }
        }
    }
}

// Backward, streaming part: dx = dy * theta and partial sums of dy * x.
// per-channel: partial[(blockIdx.y * C + c) * chunks + chunk] = sum over the block's rows
//              and columns of channel c.
// per-example: partial[(r * C + c) * chunks + chunk] = sum over the block's columns of
//              channel c in row r.
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
sbp_backward_tiles(const float* __restrict__ dy, const float* __restrict__ x,
                   const float* __restrict__ theta, float* __restrict__ dx,
                   float* __restrict__ partial, int rows, int channels, int hw, int ch_per_tile,
                   int chunks, int chunk_cols, int rows_per_tile, int per_example) {
    __shared__ float buf[SBP_SMEM_FLOATS];
    const SbpTile t = sbp_tile(channels, hw, ch_per_tile, chunks, chunk_cols);
    const i64 row_len = (i64)channels * hw;
    const int r0 = blockIdx.y * rows_per_tile;
    const int r1 = min(rows, r0 + rows_per_tile);

    if (!per_example) {
        float th[4], acc[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            th[k] = k < t.ncol ? theta[t.c0 + t.lch[k]] : 0.0f;
            acc[k] = 0.0f;
        }
        if (t.ncol > 0) {
            if (t.vec) {
#pragma unroll 4
                for (int r = r0; r < r1; ++r) {
                    const i64 base = (i64)r * row_len + t.m0 + t.col[0];
                    const float4 g = *reinterpret_cast<const float4*>(dy + base);
                    const float4 v = *reinterpret_cast<const float4*>(x + base);
                    acc[0] += g.x * v.x;
                    acc[1] += g.y * v.y;
                    acc[2] += g.z * v.z;
                    acc[3] += g.w * v.w;
                    *reinterpret_cast<float4*>(dx + base) =
                        make_float4(g.x * th[0], g.y * th[1], g.z * th[2], g.w * th[3]);
                }
            } else {
#pragma unroll 2
                for (int r = r0; r < r1; ++r) {
                    const i64 base = (i64)r * row_len + t.m0;
#pragma unroll
                    for (int k = 0; k < 4; ++k) {
                        if (k < t.ncol) {
                            const float g = dy[base + t.col[k]];
                            acc[k] += g * x[base + t.col[k]];
                            dx[base + t.col[k]] = g * th[k];
                        }
                    }
                }
            }
        }
#pragma unroll
        for (int k = 0; k < 4; ++k)
            if (k < t.ncol) buf[t.col[k]] = acc[k];
        __syncthreads();
        const int by = blockIdx.y;
        pk_segmented_sum(buf, t.nch, t.seg, [&](int s, float v) {
            partial[((i64)by * channels + t.c0 + s) * chunks + t.chunk] = v;
        });
        return;
    }

    // Per-example: theta per (row, channel); reduce each row's segments separately.
    const int batch = max(1, min(SBP_SMEM_FLOATS / max(t.width, 1), r1 - r0));
    for (int rb = r0; rb < r1; rb += batch) {
        const int nb = min(batch, r1 - rb);
        __syncthreads();
        for (int rr = 0; rr < nb; ++rr) {
            const int r = rb + rr;
            const i64 base = (i64)r * row_len + t.m0;
            const float* trow = theta + (i64)r * channels + t.c0;
            float* prow = buf + rr * t.width;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                if (k < t.ncol) {
                    const float g = dy[base + t.col[k]];
                    prow[t.col[k]] = g * x[base + t.col[k]];
                    dx[base + t.col[k]] = g * trow[t.lch[k]];
                }
            }
        }
        __syncthreads();
        pk_segmented_sum(buf, nb * t.nch, t.seg, [&](int s, float v) {
            const int rr = s / t.nch, lc = s - rr * t.nch;
            partial[((i64)(rb + rr) * channels + t.c0 + lc) * chunks + t.chunk] = v;
        });
    }
}

// Backward, finalize (one warp per channel):
//   dtheta = sum of the partials (double accumulation, fixed order)
//   dmu = sum_n dtheta_n * dtheta_n/dmu,  dlog_sigma = sum_n dtheta_n * dtheta_n/dlog_sigma
// `parts` is the number of partial rows: row tiles (per-channel) or rows (per-example).
// dtheta_out has C entries (per-channel) or rows*C (per-example).  Per channel the
// derivatives of the channel's sample are recomputed here (one sample per channel); per
// example they come from dth, written by sbp_sample_per_example.
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
sbp_backward_finalize(const float* __restrict__ partial, const float* __restrict__ mu,
                      const float* __restrict__ log_sigma, const float* __restrict__ dth,
                      float* __restrict__ dmu,
                      float* __restrict__ dlog_sigma, float* __restrict__ dtheta_out,
                      int channels, int parts, int chunks, u32 seed_lo, u32 seed_hi, u32 step, u32 layer2,
                      int per_example) {
    const int lane = threadIdx.x & 31;
    const int c = blockIdx.x * PK_WARPS + (threadIdx.x >> 5);
    if (c >= channels) return;
    const double m = (double)mu[c], ls = (double)log_sigma[c];
    if (!per_example) {
        double acc = 0.0;
        const int total = parts * chunks;
        for (int i = lane; i < total; i += 32) {
            const int p = i / chunks, k = i - p * chunks;
            acc += (double)partial[((i64)p * channels + c) * chunks + k];
        }
        acc = pk_warp_sum_d(acc);
        if (lane == 0) {
            const double eps = pk_noise_eps((u32)c, 0u, step, layer2, seed_lo, seed_hi);
            const SbpSample s = sbp_sample(m, ls, eps);
            dtheta_out[c] = (float)acc;
            dmu[c] = (float)(acc * s.dth_dmu);
            dlog_sigma[c] = (float)(acc * s.dth_dls);
        }
        return;
    }
    double gm = 0.0, gl = 0.0;
    for (int n = lane; n < parts; n += 32) {
        double g = 0.0;
        for (int k = 0; k < chunks; ++k) g += (double)partial[((i64)n * channels + c) * chunks + k];
        const i64 i = (i64)n * channels + c;
        dtheta_out[i] = (float)g;
        gm += g * (double)dth[2 * i];
        gl += g * (double)dth[2 * i + 1];
    }
    gm = pk_warp_sum_d(gm);
    gl = pk_warp_sum_d(gl);
    if (lane == 0) {
        dmu[c] = (float)gm;
        dlog_sigma[c] = (float)gl;
    }
}

// Per-channel statistics, one thread per channel.
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
sbp_channel_stats(const float* __restrict__ mu, const float* __restrict__ log_sigma,
                  float* __restrict__ mean, float* __restrict__ snr, float* __restrict__ kl,
                  int channels) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= channels) return;
    const SbpStats s = sbp_stats((double)mu[c], (double)log_sigma[c]);
    mean[c] = (float)s.mean;
    snr[c] = (float)s.snr;
    kl[c] = (float)s.kl;
}
