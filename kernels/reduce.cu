// reduce.cu: sums over an axis, log-softmax and the negative log-likelihood.
// Compiled with common.cuh prepended.
//
// A tensor is viewed as [outer, red, inner]; y[o, i] = scale * sum_r x[o, r, i]
// (scale = 1 for a sum, 1/red for a mean).  Two kernels, chosen on the host:
//   reduce_rows  (inner == 1): one block per row, each thread a strided partial sum, then a
//                fixed warp-shuffle tree: deterministic.
//   reduce_cols  (inner > 1):  one thread per (o, i), looping over r; neighbouring threads
//                read neighbouring i, so loads are coalesced.  Sequential order: deterministic.
// Log-softmax over the last axis of [rows, cols] (one block per row):
//   m = max_j x_j,  s = sum_j exp(x_j - m),  y_j = x_j - m - log s
//   backward: dx_j = dy_j - exp(y_j) sum_k dy_k
// NLL on log-probabilities with integer labels:
//   loss[r] = -logp[r, label_r];  backward dlogp[r, j] = -scale dloss[r] [j == label_r]
//   (scale = 1/rows for the mean over the batch).  A label outside [0, cols) gives NaN.

__device__ __forceinline__ float rd_block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float m = scratch[0];
    for (int w = 1; w < PK_WARPS; ++w) m = fmaxf(m, scratch[w]);
    return m;  // valid in every thread
}

// Block sum valid in every thread (pk_block_sum is valid in thread 0 only).
__device__ __forceinline__ float rd_block_sum_all(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = pk_warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < PK_WARPS; ++w) total += scratch[w];
    return total;
}

// grid (min(outer, 65535 * ...)), block 256; rows strided by gridDim.x.
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
reduce_rows(const float* __restrict__ x, float* __restrict__ y, i64 outer, int red, float scale) {
    __shared__ float scratch[PK_WARPS];
    for (i64 o = blockIdx.x; o < outer; o += gridDim.x) {
        const float* row = x + o * red;
        float acc = 0.0f;
        for (int r = threadIdx.x; r < red; r += blockDim.x) acc += row[r];
        const float s = pk_block_sum(acc, scratch);
        if (threadIdx.x == 0) y[o] = s * scale;
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
reduce_cols(const float* __restrict__ x, float* __restrict__ y, i64 outer, int red, int inner,
            float scale) {
    const i64 total = outer * inner;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x) {
        const i64 o = e / inner, i = e - o * inner;
        const float* p = x + o * red * inner + i;
        float acc = 0.0f;
        for (int r = 0; r < red; ++r) acc += p[(i64)r * inner];
        y[e] = acc * scale;
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
log_softmax_fwd(const float* __restrict__ x, float* __restrict__ y, int rows, int cols) {
    __shared__ float scratch[PK_WARPS];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + (i64)r * cols;
        float m = __int_as_float(0xff800000);  // -inf
        for (int j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, xr[j]);
        m = rd_block_max(m, scratch);
        float s = 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) s += expf(xr[j] - m);
        s = rd_block_sum_all(s, scratch);
        const float lse = m + logf(s);
        for (int j = threadIdx.x; j < cols; j += blockDim.x) y[(i64)r * cols + j] = xr[j] - lse;
        __syncthreads();
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
log_softmax_bwd(const float* __restrict__ dy, const float* __restrict__ y, float* __restrict__ dx,
                int rows, int cols) {
    __shared__ float scratch[PK_WARPS];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const i64 base = (i64)r * cols;
        float s = 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) s += dy[base + j];
        s = rd_block_sum_all(s, scratch);
        for (int j = threadIdx.x; j < cols; j += blockDim.x)
            dx[base + j] = dy[base + j] - expf(y[base + j]) * s;
        __syncthreads();
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
nll_fwd(const float* __restrict__ logp, const int* __restrict__ labels, float* __restrict__ loss,
        int rows, int cols) {
    for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += gridDim.x * blockDim.x) {
        const int l = labels[r];
        loss[r] = (l >= 0 && l < cols) ? -logp[(i64)r * cols + l] : __int_as_float(0x7fc00000);
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
nll_bwd(const float* __restrict__ dloss, const int* __restrict__ labels, float* __restrict__ dlogp,
        int rows, int cols, float scale) {
    const i64 total = (i64)rows * cols;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x) {
        const int r = (int)(e / cols), j = (int)(e - (i64)r * cols);
        const int l = labels[r];
        dlogp[e] = j == l ? -scale * dloss[r] : ((l >= 0 && l < cols) ? 0.0f : __int_as_float(0x7fc00000));
    }
}
