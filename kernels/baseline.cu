// baseline.cu: straightforward kernels the benchmarks compare the fused / tiled ones with.
// Compiled with common.cuh and sbp_math.cuh prepended (it reuses sbp_sample).
//
//   unfused SBP noise chain: base_noise_uniform -> base_noise_log_theta -> base_exp
//                            -> base_scale_channels  (four launches, three temporaries)
//   masked multiply after a dense convolution: base_scale_channels with a 0/1 mask
//   naive gather: one thread per element, full index decomposition with 64-bit divisions

// eps[k] for k < count: per-channel (count = C, counter (c, 0, step, layer2)) or
// per-example (count = rows*C, counter (c, n, step, layer2 | 1)); same counters as the
// fused kernel.  layer2 = 2 * layer.
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
base_noise_uniform(float* __restrict__ eps, int rows, int channels, u32 seed_lo, u32 seed_hi,
                   u32 step, u32 layer2, int per_example) {
    const i64 count = per_example ? (i64)rows * channels : (i64)channels;
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < count;
         k += (i64)gridDim.x * blockDim.x) {
        const u32 c = (u32)(k % channels);
        const u32 n = per_example ? (u32)(k / channels) : 0u;
        eps[k] = (float)pk_noise_eps(c, n, step, per_example ? (layer2 | 1u) : layer2, seed_lo, seed_hi);
    }
}

// log_theta[k] = clip(mu + sigma Phi^-1(clip(Phi(alpha) + eps Z)), A, B) for the channel of k.
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
base_noise_log_theta(const float* __restrict__ eps, const float* __restrict__ mu,
                     const float* __restrict__ log_sigma, float* __restrict__ log_theta,
                     i64 count, int channels) {
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < count;
         k += (i64)gridDim.x * blockDim.x) {
        const int c = (int)(k % channels);
        const SbpSample s = sbp_sample((double)mu[c], (double)log_sigma[c], (double)eps[k]);
        log_theta[k] = (float)log(s.theta);
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
base_exp(const float* __restrict__ in, float* __restrict__ out, i64 count) {
    for (i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x; k < count;
         k += (i64)gridDim.x * blockDim.x)
        out[k] = expf(in[k]);
}

// y[n, c, i] = x[n, c, i] * scale[c] (per_example = 0) or scale[n*C + c] (per_example = 1).
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
base_scale_channels(const float* __restrict__ x, const float* __restrict__ scale,
                    float* __restrict__ y, i64 total, int channels, int inner, int per_example) {
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x) {
        const i64 nc = e / inner;
        const i64 s = per_example ? nc : nc % channels;
        y[e] = x[e] * scale[s];
    }
}

// dst[o, j, i] = src[o, idx[j], i], one element per thread.
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
base_gather_naive(const float* __restrict__ src, const u32* __restrict__ idx,
                  float* __restrict__ dst, i64 total, int channels, int kept, int inner) {
    const i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= total) return;
    const i64 o = e / ((i64)kept * inner);
    const i64 rem = e - o * kept * inner;
    const i64 j = rem / inner;
    const i64 i = rem - j * inner;
    dst[e] = src[(o * channels + idx[j]) * inner + i];
}
