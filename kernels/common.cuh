// common.cuh: device code shared by every kernel file of prune-kernels.
//
// The Rust side (crates/prune-kernels/src/source.rs) prepends this header to each
// kernel file before handing the text to NVRTC, so the .cu files do not #include it.
// Nothing here needs a system header: only CUDA built-in types and math functions.
//
// Contents
//   * fixed-width integer aliases
//   * Philox4x32-10 counter-based generator (Salmon et al., SC'11, "Random123")
//   * standard normal helpers in double precision: phi, Phi, Phi^-1, scaled log-CDF,
//     Mills-ratio helpers used by the truncated log-normal of Structured Bayesian Pruning
//   * warp / block reductions

typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

#define PK_BLOCK 256
#define PK_WARPS (PK_BLOCK / 32)

// ---------------------------------------------------------------------------
// Philox4x32-10
// ---------------------------------------------------------------------------
// One call maps a 128-bit counter and a 64-bit key to 128 random bits.  Ten rounds of
//   (hi0, lo0) = M0 * c0,  (hi1, lo1) = M1 * c2
//   c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
// with the key bumped by the Weyl constants (W0, W1) between rounds.
__device__ __forceinline__ uint4 pk_philox4x32_10(uint4 c, u32 k0, u32 k1) {
    const u32 M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    const u32 W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
#pragma unroll
    for (int r = 0; r < 10; ++r) {
        const u32 hi0 = __umulhi(M0, c.x), lo0 = M0 * c.x;
        const u32 hi1 = __umulhi(M1, c.z), lo1 = M1 * c.z;
        c = make_uint4(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
        k0 += W0;
        k1 += W1;
    }
    return c;
}

// Uniform in the open interval (0, 1): the top 23 bits of the first output word, centred
// in their cell, (k + 1/2) 2^-23.  These values need 24 significant bits, so they are
// exact in float as well as double (a stored float eps reproduces the same sample).
__device__ __forceinline__ double pk_uniform_open(u32 bits) {
    return ((double)(bits >> 9) + 0.5) * 1.1920928955078125e-7;  // 2^-23
}

// Noise counter layout shared with the CPU reference (src/cpu_ref/sbp.rs):
//   counter = (channel, example, step, 2 * layer + mode), key = (seed_lo, seed_hi)
// mode 0: one sample per channel (example = 0); mode 1: one sample per (example, channel).
// Distinct gates (layer) and optimizer steps (step) read disjoint counters.
__device__ __forceinline__ double pk_noise_eps(u32 channel, u32 example, u32 step,
                                               u32 layer_mode, u32 seed_lo, u32 seed_hi) {
    const uint4 r =
        pk_philox4x32_10(make_uint4(channel, example, step, layer_mode), seed_lo, seed_hi);
    return pk_uniform_open(r.x);
}

// ---------------------------------------------------------------------------
// Standard normal helpers (double precision)
// ---------------------------------------------------------------------------
#define PK_SQRT1_2 0.70710678118654752440
#define PK_LOG_SQRT_2PI 0.91893853320467274178
#define PK_SQRT_PI 1.77245385090551602730
#define PK_SQRT_PI_OVER_2 1.25331413731550025121

// phi(x) = exp(-x^2/2) / sqrt(2 pi)
__device__ __forceinline__ double pk_pdf(double x) { return exp(-0.5 * x * x - PK_LOG_SQRT_2PI); }

// Phi(x) = erfc(-x / sqrt 2) / 2: accurate relative error in the lower tail.
__device__ __forceinline__ double pk_cdf(double x) { return 0.5 * erfc(-x * PK_SQRT1_2); }

// Scaled log-CDF for x <= 0:  L(x) = log Phi(x) + x^2/2 = log(erfcx(-x/sqrt 2) / 2).
// Finite for every finite x <= 0 (about -log(|x| sqrt(2 pi)) in the far tail), so the
// huge x^2/2 parts of log Phi can be cancelled symbolically instead of numerically.
__device__ __forceinline__ double pk_log_cdf_scaled(double x) {
    return log(0.5 * erfcx(-x * PK_SQRT1_2));
}

// Tail of the Laplace continued fraction of erfc:
//   sqrt(pi) erfcx(t) = 1 / (t + K(t)),  K(t) = (1/2) / (t + 1 / (t + (3/2) / (t + 2 / (t + ...))))
// evaluated bottom-up with a fixed depth; used for t >= 4 where 60 terms are exact to
// double precision.
__device__ __forceinline__ double pk_erfc_cf_tail(double t) {
    double f = 0.0;
    for (int k = 60; k >= 1; --k) f = (0.5 * (double)k) / (t + f);
    return f;
}

// G(t) = 1 - sqrt(pi) t erfcx(t) for t >= 0, i.e. 1 + beta r(beta) at beta = -t sqrt 2,
// where r is the Mills ratio Phi/phi.  Nonnegative; ~1/(2 t^2) for large t, where the
// direct form cancels, so the continued fraction gives it as K / (t + K).
__device__ __forceinline__ double pk_mills_gap(double t) {
    if (t < 4.0) return 1.0 - PK_SQRT_PI * t * erfcx(t);
    const double k = pk_erfc_cf_tail(t);
    return k / (t + k);
}

// ---------------------------------------------------------------------------
// Warp and block reductions (blockDim.x == PK_BLOCK)
// ---------------------------------------------------------------------------
__device__ __forceinline__ float pk_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double pk_warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the block; the result is valid in thread 0.  `scratch` holds PK_WARPS floats.
// Deterministic: fixed shuffle tree inside warps, fixed order across warps.
__device__ __forceinline__ float pk_block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = pk_warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = 0.0f;
    if (threadIdx.x == 0) {
        for (int w = 0; w < PK_WARPS; ++w) total += scratch[w];
    }
    return total;
}

// Sums `nseg` contiguous segments of length `seg_len` stored back to back in shared
// memory and hands each sum to `emit(segment, sum)`.  Short segments get one thread
// each, long ones a warp each; both orders are fixed, so results are deterministic.
// Must be called by the whole block; the caller synchronises before and after.
template <class Emit>
__device__ __forceinline__ void pk_segmented_sum(const float* buf, int nseg, int seg_len,
                                                 Emit emit) {
    if (seg_len <= 32) {
        for (int s = threadIdx.x; s < nseg; s += blockDim.x) {
            const float* p = buf + (i64)s * seg_len;
            float acc = 0.0f;
            for (int i = 0; i < seg_len; ++i) acc += p[i];
            emit(s, acc);
        }
    } else {
        const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        const int nwarps = blockDim.x >> 5;
        for (int s = warp; s < nseg; s += nwarps) {
            const float* p = buf + (i64)s * seg_len;
            float acc = 0.0f;
            for (int i = lane; i < seg_len; i += 32) acc += p[i];
            acc = pk_warp_sum(acc);
            if (lane == 0) emit(s, acc);
        }
    }
}
