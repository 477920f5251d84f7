// gather.cu: channel gather / scatter along the middle axis of a [outer, C, inner] view.
// Compiled with common.cuh prepended.
//
//   NCHW activations          outer = N,    C = channels, inner = H*W
//   weight, output dim (0)    outer = 1,    C = Cout,     inner = Cin*KH*KW
//   weight, input dim (1)     outer = Cout, C = Cin,      inner = KH*KW
//
// gather:  dst[o, j, i] = src[o, idx[j], i]   dst is [outer, K, inner]
// scatter: dst[o, idx[j], i] = src[o, j, i]   dst is [outer, C, inner]; other channels untouched
//
// Grid: x strides over the K*inner elements of one outer slice, y strides over outer.
// Each (o, j) run of `inner` values is contiguous on both sides, so with inner % 4 == 0 the
// copy moves float4s (one integer division per float4 locates (j, i)).  Otherwise (e.g. 7x7
// maps) each thread moves 4 consecutive floats per step: one division locates the first,
// the other three advance (j, i) by an increment and a wrap, unrolled.

template <bool SCATTER, class T>
__device__ __forceinline__ void gc_copy(const T* __restrict__ src, const u32* __restrict__ idx,
                                        T* __restrict__ dst, int outer, int channels, int kept,
                                        int inner) {
    const i64 row = (i64)kept * inner;
    const i64 stride = (i64)gridDim.x * blockDim.x;
    for (int o = blockIdx.y; o < outer; o += gridDim.y) {
        const i64 compact_base = (i64)o * row;
        const i64 full_base = (i64)o * channels * inner;
        for (i64 u = (i64)blockIdx.x * blockDim.x + threadIdx.x; u < row; u += stride) {
            // row < 2^31 (checked on the host), so 32-bit division suffices.
            const int uu = (int)u;
            int j, i;
            if (inner == 1) {
                j = uu;
                i = 0;
            } else {
                j = uu / inner;
                i = uu - j * inner;
            }
            const i64 full = full_base + (i64)__ldg(idx + j) * inner + i;
            if (SCATTER) {
                dst[full] = src[compact_base + u];
            } else {
                dst[compact_base + u] = src[full];
            }
        }
    }
}

// Scalar path: thread t of the x-grid moves elements 4t .. 4t+3 of the kept row (then
// strides by 4 * threads); one division per 4 elements.
template <bool SCATTER>
__device__ __forceinline__ void gc_copy_scalar(const float* __restrict__ src,
                                               const u32* __restrict__ idx,
                                               float* __restrict__ dst, int outer, int channels,
                                               int kept, int inner) {
    const i64 row = (i64)kept * inner;
    const i64 stride = 4 * (i64)gridDim.x * blockDim.x;
    for (int o = blockIdx.y; o < outer; o += gridDim.y) {
        const i64 compact_base = (i64)o * row;
        const i64 full_base = (i64)o * channels * inner;
        for (i64 u = 4 * ((i64)blockIdx.x * blockDim.x + threadIdx.x); u < row; u += stride) {
            // row < 2^31 (checked on the host), so 32-bit division suffices.
            int j = (int)u / inner;
            int i = (int)u - j * inner;
            i64 full = full_base + (i64)__ldg(idx + j) * inner + i;
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                if (u + k < row) {
                    if (SCATTER) {
                        dst[full] = src[compact_base + u + k];
                    } else {
                        dst[compact_base + u + k] = src[full];
                    }
                }
                ++full;
                if (++i == inner) {
                    i = 0;
                    ++j;
                    if (k < 3 && u + k + 1 < row) full = full_base + (i64)__ldg(idx + j) * inner;
                }
            }
        }
    }
}

// inner4 = inner / 4; pointers are float4-aligned (whole allocations).
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
gather_channels_vec4(const float4* __restrict__ src, const u32* __restrict__ idx,
                     float4* __restrict__ dst, int outer, int channels, int kept, int inner4) {
    gc_copy<false>(src, idx, dst, outer, channels, kept, inner4);
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
gather_channels_f32(const float* __restrict__ src, const u32* __restrict__ idx,
                    float* __restrict__ dst, int outer, int channels, int kept, int inner) {
    gc_copy_scalar<false>(src, idx, dst, outer, channels, kept, inner);
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
scatter_channels_vec4(const float4* __restrict__ src, const u32* __restrict__ idx,
                      float4* __restrict__ dst, int outer, int channels, int kept, int inner4) {
    gc_copy<true>(src, idx, dst, outer, channels, kept, inner4);
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
scatter_channels_f32(const float* __restrict__ src, const u32* __restrict__ idx,
                     float* __restrict__ dst, int outer, int channels, int kept, int inner) {
    gc_copy_scalar<true>(src, idx, dst, outer, channels, kept, inner);
}

// dst[e] = value for e < n (grid-stride); used to poison or clear buffers.
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
fill_f32(float* __restrict__ dst, float value, i64 n) {
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (i64)gridDim.x * blockDim.x)
        dst[e] = value;
}
