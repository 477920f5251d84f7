// batchnorm.cu: batch normalisation over [N, C, HW] (HW = 1 for [N, C] inputs), with
// per-channel statistics over the M = N*HW values of a channel (as prune-core's CPU
// batch_norm_train / batch_norm_eval).  Compiled with common.cuh prepended.
//
// Training:  mu = (1/M) sum x,  var = (1/M) sum (x - mu)^2,  s = 1/sqrt(var + eps)
//            xhat = (x - mu) s,  y = gamma xhat + beta;  var_unbiased = var M/(M-1) (0 if M=1)
//            is written for the running statistics (the caller blends them).
// Backward:  dbeta = sum dy,  dgamma = sum dy xhat,
//            dx = gamma s (dy - dbeta/M - xhat dgamma/M)
// Eval:      y = gamma (x - mu_run) / sqrt(var_run + eps) + beta  (affine, one pass).
//
// bn_stats and bn_backward_reduce use one block per channel; sums are accumulated in double
// with a fixed order (strided per thread, then a fixed tree), so results are deterministic.
// The two-pass variance avoids the cancellation of E[x^2] - E[x]^2.

__device__ __forceinline__ double bn_block_sum_d(double v, double* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = pk_warp_sum_d(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double total = 0.0;
    for (int w = 0; w < PK_WARPS; ++w) total += scratch[w];
    return total;  // valid in every thread
}

// grid (C), block 256.  mean, invstd, var_unbiased: C entries each.
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
bn_stats(const float* __restrict__ x, float* __restrict__ mean, float* __restrict__ invstd,
         float* __restrict__ var_unbiased, int n, int channels, int hw, float eps) {
    __shared__ double scratch[PK_WARPS];
    const int c = blockIdx.x;
    const i64 m = (i64)n * hw;
    double acc = 0.0;
    for (i64 k = threadIdx.x; k < m; k += blockDim.x) {
        const i64 img = k / hw, p = k - img * hw;
        acc += (double)x[(img * channels + c) * hw + p];
    }
    const double mu = bn_block_sum_d(acc, scratch) / (double)m;
    double sq = 0.0;
    for (i64 k = threadIdx.x; k < m; k += blockDim.x) {
        const i64 img = k / hw, p = k - img * hw;
        const double d = (double)x[(img * channels + c) * hw + p] - mu;
        sq += d * d;
    }
    const double var = bn_block_sum_d(sq, scratch) / (double)m;
    if (threadIdx.x == 0) {
        mean[c] = (float)mu;
        invstd[c] = (float)(1.0 / sqrt(var + (double)eps));
        var_unbiased[c] = m > 1 ? (float)(var * (double)m / (double)(m - 1)) : 0.0f;
    }
}

// y = gamma (x - mean) invstd + beta; grid-stride over all elements.  Used by training
// (batch mean / invstd) and by eval (running statistics: invstd from bn_invstd).
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
bn_apply(const float* __restrict__ x, const float* __restrict__ mean,
         const float* __restrict__ invstd, const float* __restrict__ gamma,
         const float* __restrict__ beta, float* __restrict__ y, i64 total, int channels, int hw) {
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x) {
        const int c = (int)((e / hw) % channels);
        y[e] = gamma[c] * ((x[e] - mean[c]) * invstd[c]) + beta[c];
    }
}

// invstd[c] = 1/sqrt(var[c] + eps) (eval mode, from the running variance).
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
bn_invstd(const float* __restrict__ var, float* __restrict__ invstd, int channels, float eps) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < channels) invstd[c] = (float)(1.0 / sqrt((double)var[c] + (double)eps));
}

// grid (C), block 256: dbeta[c] = sum dy, dgamma[c] = sum dy xhat.
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
bn_backward_reduce(const float* __restrict__ dy, const float* __restrict__ x,
                   const float* __restrict__ mean, const float* __restrict__ invstd,
                   float* __restrict__ dgamma, float* __restrict__ dbeta, int n, int channels,
                   int hw) {
    __shared__ double scratch[PK_WARPS];
    const int c = blockIdx.x;
    const i64 m = (i64)n * hw;
    const double mu = (double)mean[c], s = (double)invstd[c];
    double gb = 0.0, gg = 0.0;
    for (i64 k = threadIdx.x; k < m; k += blockDim.x) {
        const i64 img = k / hw, p = k - img * hw;
        const i64 e = (img * channels + c) * hw + p;
        const double g = (double)dy[e];
        gb += g;
        gg += g * ((double)x[e] - mu) * s;
    }
    gb = bn_block_sum_d(gb, scratch);
    gg = bn_block_sum_d(gg, scratch);
    if (threadIdx.x == 0) {
        dbeta[c] = (float)gb;
        dgamma[c] = (float)gg;
    }
}

// dx = gamma s (dy - dbeta/M - xhat dgamma/M) (train = 1) or dy gamma s (train = 0, eval).
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
bn_backward_dx(const float* __restrict__ dy, const float* __restrict__ x,
               const float* __restrict__ mean, const float* __restrict__ invstd,
               const float* __restrict__ gamma, const float* __restrict__ dgamma,
               const float* __restrict__ dbeta, float* __restrict__ dx, i64 total, int n,
               int channels, int hw, int train) {
    const float inv_m = 1.0f / (float)((i64)n * hw);
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x) {
        const int c = (int)((e / hw) % channels);
        const float s = invstd[c];
        if (train) {
            const float xhat = (x[e] - mean[c]) * s;
            dx[e] = gamma[c] * s * (dy[e] - dbeta[c] * inv_m - xhat * dgamma[c] * inv_m);
        } else {
            dx[e] = dy[e] * gamma[c] * s;
        }
    }
}
