// channels.cu: concatenation, slicing and index selection along the channel axis of
// [outer, C, inner] views (NCHW: outer = N, inner = H*W).  Compiled with common.cuh prepended.
//
//   copy_channels         dst[o, dst_off + j, i] = src[o, src_off + j, i]   for j < count
//                         (concat: one launch per input; its backward: one per input with
//                         the roles swapped)
//   index_select_channels dst[o, j, i] = src[o, idx[j], i]   (indices may repeat)
//   index_add_channels    dst[o, c, i] = sum_{j : idx[j] = c} src[o, j, i]  (the backward of
//                         index_select; overwrites dst).  The j of each c come as a CSR list
//                         built on the host (offsets[C + 1], js), summed in list order:
//                         deterministic, no atomics.
// Grid-stride over the destination elements; one 64-bit division pair per element.

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
copy_channels(const float* __restrict__ src, float* __restrict__ dst, int outer, int c_src,
              int src_off, int c_dst, int dst_off, int count, int inner) {
    const i64 row = (i64)count * inner;
    const i64 total = (i64)outer * row;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x) {
        const i64 o = e / row, u = e - o * row;
        dst[(o * c_dst + dst_off) * inner + u] = src[(o * c_src + src_off) * inner + u];
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
index_select_channels(const float* __restrict__ src, const u32* __restrict__ idx,
                      float* __restrict__ dst, int outer, int c_src, int k, int inner) {
    const i64 row = (i64)k * inner;
    const i64 total = (i64)outer * row;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x) {
        const i64 o = e / row, u = e - o * row;
        const i64 j = u / inner, i = u - j * inner;
        dst[e] = src[(o * c_src + idx[j]) * inner + i];
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
index_add_channels(const float* __restrict__ src, const u32* __restrict__ offsets,
                   const u32* __restrict__ js, float* __restrict__ dst, int outer, int c_dst,
                   int k, int inner) {
    const i64 row = (i64)c_dst * inner;
    const i64 total = (i64)outer * row;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x) {
        const i64 o = e / row, u = e - o * row;
        const i64 c = u / inner, i = u - c * inner;
        float acc = 0.0f;
        for (u32 t = offsets[c]; t < offsets[c + 1]; ++t)
            acc += src[(o * k + js[t]) * inner + i];
        dst[e] = acc;
    }
}
