// pooling.cu: 2-D max and average pooling over NCHW planes (as prune-core's CPU pooling),
// and the backward of global average pooling.  Compiled with common.cuh prepended.
//
// Window (oh, ow) covers rows oh*sh - ph .. + kh and columns ow*sw - pw .. + kw,
// Ho = (H + 2 ph - kh)/sh + 1.
//   max: padding ignored, first maximum in row-major window order, NaN propagates; argmax
//        is the flat index ih*W + iw within the (n, c) plane (-1 for an all-padding window).
//   avg: padding counts as zero (count_include_pad): y = sum_window x / (kh kw).
// Backward kernels are written per input element (gather form: each input sums over the
// windows that contain it), so they need no atomics and are deterministic:
//   max: dx[i] = sum_{windows w containing i, argmax_w = i} dy_w
//   avg: dx[i] = sum_{windows w containing i} dy_w / (kh kw)
// Global average pooling forward is reduce_rows (reduce.cu) with scale 1/HW; its backward
// is dx[nc, p] = dy[nc] / HW.

struct PoolGeom {
    int h, w, ho, wo, kh, kw, sh, sw, ph, pw;
};

__device__ __forceinline__ PoolGeom pool_geom(int h, int w, int ho, int wo, int kh, int kw, int sh,
                                              int sw, int ph, int pw) {
    PoolGeom g;
    g.h = h; g.w = w; g.ho = ho; g.wo = wo; g.kh = kh; g.kw = kw;
    g.sh = sh; g.sw = sw; g.ph = ph; g.pw = pw;
    return g;
}

// Range of output positions o with o*s - p <= i < o*s - p + k, clipped to [0, out).
__device__ __forceinline__ void pool_out_range(int i, int k, int s, int p, int out, int* lo,
                                               int* hi) {
    // o >= (i + p - k + 1)/s (ceil), o <= (i + p)/s (floor)
    const int a = i + p - k + 1;
    *lo = a <= 0 ? 0 : (a + s - 1) / s;
    const int b = (i + p) / s;
    *hi = min(b, out - 1);
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
max_pool_fwd(const float* __restrict__ x, float* __restrict__ y, int* __restrict__ argmax,
             i64 planes, int h, int w, int ho, int wo, int kh, int kw, int sh, int sw, int ph,
             int pw) {
    const i64 total = planes * ho * wo;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x) {
        const i64 pl = e / ((i64)ho * wo);
        const int q = (int)(e - pl * ho * wo);
        const int oh = q / wo, ow = q - oh * wo;
        const float* xp = x + pl * h * w;
        float best = 0.0f;
        int arg = -1;
        for (int r = 0; r < kh; ++r) {
            const int ih = oh * sh - ph + r;
            if (ih < 0 || ih >= h) continue;
            for (int s = 0; s < kw; ++s) {
                const int iw = ow * sw - pw + s;
                if (iw < 0 || iw >= w) continue;
                const float v = xp[ih * w + iw];
                // first maximum; a NaN wins and stays
                if (arg < 0 || (best == best && (v > best || v != v))) {
                    best = v;
                    arg = ih * w + iw;
                }
            }
        }
        y[e] = arg < 0 ? __int_as_float(0xff800000) : best;
        argmax[e] = arg;
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
max_pool_bwd(const float* __restrict__ dy, const int* __restrict__ argmax, float* __restrict__ dx,
             i64 planes, int h, int w, int ho, int wo, int kh, int kw, int sh, int sw, int ph,
             int pw) {
    const i64 total = planes * h * w;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x) {
        const i64 pl = e / ((i64)h * w);
        const int q = (int)(e - pl * h * w);
        const int ih = q / w, iw = q - ih * w;
        int oh0, oh1, ow0, ow1;
        pool_out_range(ih, kh, sh, ph, ho, &oh0, &oh1);
        pool_out_range(iw, kw, sw, pw, wo, &ow0, &ow1);
        float acc = 0.0f;
        const i64 ob = pl * ho * wo;
        for (int oh = oh0; oh <= oh1; ++oh)
            for (int ow = ow0; ow <= ow1; ++ow)
                if (argmax[ob + oh * wo + ow] == q) acc += dy[ob + oh * wo + ow];
        dx[e] = acc;
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
avg_pool_fwd(const float* __restrict__ x, float* __restrict__ y, i64 planes, int h, int w, int ho,
             int wo, int kh, int kw, int sh, int sw, int ph, int pw) {
    const i64 total = planes * ho * wo;
    const float inv = 1.0f / (float)(kh * kw);
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x) {
        const i64 pl = e / ((i64)ho * wo);
        const int q = (int)(e - pl * ho * wo);
        const int oh = q / wo, ow = q - oh * wo;
        const float* xp = x + pl * h * w;
        float acc = 0.0f;
        for (int r = 0; r < kh; ++r) {
            const int ih = oh * sh - ph + r;
            if (ih < 0 || ih >= h) continue;
            for (int s = 0; s < kw; ++s) {
                const int iw = ow * sw - pw + s;
                if (iw >= 0 && iw < w) acc += xp[ih * w + iw];
            }
        }
        y[e] = acc * inv;
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
avg_pool_bwd(const float* __restrict__ dy, float* __restrict__ dx, i64 planes, int h, int w,
             int ho, int wo, int kh, int kw, int sh, int sw, int ph, int pw) {
    const i64 total = planes * h * w;
    const float inv = 1.0f / (float)(kh * kw);
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x) {
        const i64 pl = e / ((i64)h * w);
        const int q = (int)(e - pl * h * w);
        const int ih = q / w, iw = q - ih * w;
        int oh0, oh1, ow0, ow1;
        pool_out_range(ih, kh, sh, ph, ho, &oh0, &oh1);
        pool_out_range(iw, kw, sw, pw, wo, &ow0, &ow1);
        float acc = 0.0f;
        const float* dp = dy + pl * ho * wo;
        for (int oh = oh0; oh <= oh1; ++oh)
            for (int ow = ow0; ow <= ow1; ++ow) acc += dp[oh * wo + ow];
        dx[e] = acc * inv;
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
global_avg_pool_bwd(const float* __restrict__ dy, float* __restrict__ dx, i64 planes, int hw) {
    const i64 total = planes * hw;
    const float inv = 1.0f / (float)hw;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x)
        dx[e] = dy[e / hw] * inv;
}
