// masked_conv.cu: 2-D convolution restricted to kept channels (NCHW, groups = 1).
// Compiled with common.cuh prepended.
//
// Full tensors: x [N, Cin, H, W], weight [Cout, Cin, KH, KW].  keep_in (length Kin) and
// keep_out (length Kout) list the kept input / output channels (unique, in range; checked on
// the host).  With Ho = (H + 2 ph - KH)/sh + 1, Wo likewise:
//   forward        y [N, Kout, Ho, Wo] (compact):
//                  y[n, o, p] = sum_{i < Kin, r, s} W[keep_out[o], keep_in[i], r, s]
//                                                   * x[n, keep_in[i], oh sh - ph + r, ow sw - pw + s]
//   input grad     dx[n, keep_in[i], ih, iw] (full buffer, other channels untouched)
//                  = sum_{o, r, s: (ih + ph - r) = oh sh, (iw + pw - s) = ow sw} W[..] dy[n, o, oh, ow]
//   weight grad    dW[keep_out[o], keep_in[i], r, s] (full buffer, other entries untouched)
//                  = sum_{n, oh, ow} dy[n, o, oh, ow] x[n, keep_in[i], oh sh - ph + r, ow sw - pw + s]
// Each is an implicit GEMM C[M, N] = A[M, K] B[K, N] whose operands are read straight from
// the full tensors through the index lists, so no sliced copy of the weight is made:
//   forward  M = Kout, N = batch*Ho*Wo, K = Kin*KH*KW
//   dgrad    M = Kin,  N = batch*H*W,   K = Kout*KH*KW
//   wgrad    M = Kout, N = Kin*KH*KW,   K = batch*Ho*Wo   (split over blockIdx.z)
// Tiles of 64 x 64 outputs, K steps of 16, 256 threads with a 4 x 4 register tile each.

#define CG_BM 64
#define CG_BN 64
#define CG_BK 16

struct ConvGeom {
    int nb, cin, h, w, kh, kw, sh, sw, ph, pw, ho, wo, kin, kout;
};

// Decomposition of one K index, computed once per K tile into shared memory.
struct KEntry {
    int valid;
    int r, s;   // filter tap (forward, dgrad) or output position oh, ow (wgrad)
    i64 off0;   // problem-specific offset
    i64 off1;   // problem-specific offset
};

// ---------------------------------------------------------------- forward
struct FwdProblem {
    static constexpr bool B_K_FAST = false;
    ConvGeom g;
    const float* __restrict__ x;
    const float* __restrict__ wt;
    const u32* __restrict__ keep_in;
    const u32* __restrict__ keep_out;
    float* __restrict__ y;
    int M, N, K;

    struct Row { int valid; i64 off; };
    struct Col { int valid; i64 xoff; int ih0, iw0; i64 yoff; };

    __device__ Row row(int m) const {
        Row r;
        r.valid = m < M;
        r.off = r.valid ? (i64)keep_out[m] * g.cin * g.kh * g.kw : 0;
        return r;
    }
    __device__ Col col(int n) const {
        Col c;
        c.valid = n < N;
        const int hw = g.ho * g.wo;
        const int nn = c.valid ? n : 0;
        const int img = nn / hw, p = nn - img * hw;
        const int oh = p / g.wo, ow = p - oh * g.wo;
        c.xoff = (i64)img * g.cin * g.h * g.w;
        c.ih0 = oh * g.sh - g.ph;
        c.iw0 = ow * g.sw - g.pw;
        c.yoff = (i64)img * M * hw + p;
        return c;
    }
    __device__ KEntry kentry(int k, int k_end) const {
        KEntry e;
        e.valid = k < k_end;
        const int taps = g.kh * g.kw;
        const int kk = e.valid ? k : 0;
        const int i = kk / taps, rs = kk - i * taps;
        e.r = rs / g.kw;
        e.s = rs - e.r * g.kw;
        const i64 ch = e.valid ? (i64)keep_in[i] : 0;
        e.off0 = ch * taps + rs;        // weight offset within an output channel
        e.off1 = ch * g.h * g.w;        // input offset within an image
        return e;
    }
    __device__ float a(const Row& r, const KEntry& e) const {
        return (r.valid && e.valid) ? wt[r.off + e.off0] : 0.0f;
    }
    __device__ float b(const KEntry& e, const Col& c) const {
        const int ih = c.ih0 + e.r, iw = c.iw0 + e.s;
        if (!(e.valid && c.valid) || ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) return 0.0f;
        return x[c.xoff + e.off1 + (i64)ih * g.w + iw];
    }
    __device__ void store(int m, int n, float v) const {
        const int hw = g.ho * g.wo;
        const int img = n / hw, p = n - img * hw;
        y[((i64)img * M + m) * hw + p] = v;
    }
};

// ---------------------------------------------------------------- input gradient
struct DgradProblem {
    static constexpr bool B_K_FAST = false;
    ConvGeom g;
    const float* __restrict__ dy;
    const float* __restrict__ wt;
    const u32* __restrict__ keep_in;
    const u32* __restrict__ keep_out;
    float* __restrict__ dx;
    int M, N, K;

    struct Row { int valid; i64 off; };
    struct Col { int valid; i64 dyoff; int ih, iw; };

    __device__ Row row(int m) const {
        Row r;
        r.valid = m < M;
        r.off = r.valid ? (i64)keep_in[m] * g.kh * g.kw : 0;
        return r;
    }
    __device__ Col col(int n) const {
        Col c;
        c.valid = n < N;
        const int hw = g.h * g.w;
        const int nn = c.valid ? n : 0;
        const int img = nn / hw, p = nn - img * hw;
        c.ih = p / g.w;
        c.iw = p - c.ih * g.w;
        c.dyoff = (i64)img * g.kout * g.ho * g.wo;
        return c;
    }
    __device__ KEntry kentry(int k, int k_end) const {
        KEntry e;
        e.valid = k < k_end;
        const int taps = g.kh * g.kw;
        const int kk = e.valid ? k : 0;
        const int o = kk / taps, rs = kk - o * taps;
        e.r = rs / g.kw;
        e.s = rs - e.r * g.kw;
        const i64 co = e.valid ? (i64)keep_out[o] : 0;
        e.off0 = co * g.cin * taps + rs;      // weight offset without the input channel
        e.off1 = (i64)o * g.ho * g.wo;        // dy offset within an image
        return e;
    }
    __device__ float a(const Row& r, const KEntry& e) const {
        return (r.valid && e.valid) ? wt[e.off0 + r.off] : 0.0f;
    }
    __device__ float b(const KEntry& e, const Col& c) const {
        if (!(e.valid && c.valid)) return 0.0f;
        const int th = c.ih + g.ph - e.r, tw = c.iw + g.pw - e.s;
        if (th < 0 || tw < 0) return 0.0f;
        const int oh = th / g.sh, ow = tw / g.sw;
        if (oh * g.sh != th || ow * g.sw != tw || oh >= g.ho || ow >= g.wo) return 0.0f;
        return dy[c.dyoff + e.off1 + (i64)oh * g.wo + ow];
    }
    __device__ void store(int m, int n, float v) const {
        const int hw = g.h * g.w;
        const int img = n / hw, p = n - img * hw;
        dx[((i64)img * g.cin + keep_in[m]) * hw + p] = v;
    }
};

// ---------------------------------------------------------------- weight gradient
struct WgradProblem {
    static constexpr bool B_K_FAST = true;
    ConvGeom g;
    const float* __restrict__ dy;
    const float* __restrict__ x;
    const u32* __restrict__ keep_in;
    const u32* __restrict__ keep_out;
    float* __restrict__ out;  // dW (split == 1) or the split partial buffer
    int M, N, K;
    int split_out;            // 1: write partial[z][m][n]; 0: write into dW

    struct Row { int valid; i64 off; };
    struct Col { int valid; i64 xoff; int r, s; };

    __device__ Row row(int m) const {
        Row r;
        r.valid = m < M;
        r.off = r.valid ? (i64)m * g.ho * g.wo : 0;
        return r;
    }
    __device__ Col col(int n) const {
        Col c;
        c.valid = n < N;
        const int taps = g.kh * g.kw;
        const int nn = c.valid ? n : 0;
        const int i = nn / taps, rs = nn - i * taps;
        c.r = rs / g.kw;
        c.s = rs - c.r * g.kw;
        c.xoff = c.valid ? (i64)keep_in[i] * g.h * g.w : 0;
        return c;
    }
    __device__ KEntry kentry(int k, int k_end) const {
        KEntry e;
        e.valid = k < k_end;
        const int hw = g.ho * g.wo;
        const int kk = e.valid ? k : 0;
        const int img = kk / hw, p = kk - img * hw;
        const int oh = p / g.wo, ow = p - oh * g.wo;
        e.r = oh * g.sh - g.ph;   // input row of tap 0
        e.s = ow * g.sw - g.pw;   // input column of tap 0
        e.off0 = (i64)img * g.kout * hw + p;          // dy offset without the channel
        e.off1 = (i64)img * g.cin * g.h * g.w;        // x offset of the image
        return e;
    }
    __device__ float a(const Row& r, const KEntry& e) const {
        return (r.valid && e.valid) ? dy[e.off0 + r.off] : 0.0f;
    }
    __device__ float b(const KEntry& e, const Col& c) const {
        const int ih = e.r + c.r, iw = e.s + c.s;
        if (!(e.valid && c.valid) || ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) return 0.0f;
        return x[e.off1 + c.xoff + (i64)ih * g.w + iw];
    }
    __device__ void store(int m, int n, float v) const {
        if (split_out) {
            out[((i64)blockIdx.z * M + m) * N + n] = v;
        } else {
            const int taps = g.kh * g.kw;
            const int i = n / taps, rs = n - i * taps;
            out[((i64)keep_out[m] * g.cin + keep_in[i]) * taps + rs] = v;
        }
    }
};

// ---------------------------------------------------------------- GEMM engine
// Thread (ty, tx) = (tid / 16, tid % 16) accumulates rows m0 + ty + 16 i and columns
// n0 + tx + 16 j (i, j < 4), so neighbouring threads touch neighbouring columns.
template <class P>
__device__ __forceinline__ void cg_gemm(const P& p, int m0, int n0, int k_begin, int k_end) {
    __shared__ float As[CG_BK][CG_BM + 4];
    __shared__ float Bs[CG_BK][CG_BN + 4];
    __shared__ KEntry ktab[CG_BK];
    const int tid = threadIdx.x;
    const int tx = tid & 15, ty = tid >> 4;

    // A is loaded k-fastest: thread loads rows (tid/16 + 16q) at k lane tid % 16.
    typename P::Row arow[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) arow[q] = p.row(m0 + (tid >> 4) + 16 * q);
    // B is loaded n-fastest (one column per thread, k = tid/64 + 4q) or k-fastest
    // (columns tid/16 + 16q at k lane tid % 16).
    typename P::Col bcol[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
        const int n = P::B_K_FAST ? n0 + (tid >> 4) + 16 * q : n0 + (tid & 63);
        bcol[q] = p.col(n);
    }

    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    for (int kt = k_begin; kt < k_end; kt += CG_BK) {
        if (tid < CG_BK) ktab[tid] = p.kentry(kt + tid, k_end);
        __syncthreads();
        const int ak = tid & 15;
#pragma unroll
        for (int q = 0; q < 4; ++q) As[ak][(tid >> 4) + 16 * q] = p.a(arow[q], ktab[ak]);
        if (P::B_K_FAST) {
#pragma unroll
            for (int q = 0; q < 4; ++q) Bs[ak][(tid >> 4) + 16 * q] = p.b(ktab[ak], bcol[q]);
        } else {
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const int bk = (tid >> 6) + 4 * q;
                Bs[bk][tid & 63] = p.b(ktab[bk], bcol[0]);
            }
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < CG_BK; ++kk) {
            float av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) av[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) bv[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int m = m0 + ty + 16 * i;
        if (m >= p.M) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int n = n0 + tx + 16 * j;
            if (n < p.N) p.store(m, n, acc[i][j]);
        }
    }
}

__device__ __forceinline__ ConvGeom cg_geom(int nb, int cin, int h, int w, int kh, int kw, int sh,
                                            int sw, int ph, int pw, int ho, int wo, int kin,
                                            int kout) {
    ConvGeom g;
    g.nb = nb; g.cin = cin; g.h = h; g.w = w; g.kh = kh; g.kw = kw; g.sh = sh; g.sw = sw;
    g.ph = ph; g.pw = pw; g.ho = ho; g.wo = wo; g.kin = kin; g.kout = kout;
    return g;
}

// grid (ceil(N/64), ceil(M/64)), block 256
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
masked_conv_fwd(const float* __restrict__ x, const float* __restrict__ wt,
                const u32* __restrict__ keep_in, const u32* __restrict__ keep_out,
                float* __restrict__ y, int nb, int cin, int h, int w, int kh, int kw, int sh,
                int sw, int ph, int pw, int ho, int wo, int kin, int kout) {
    FwdProblem p;
    p.g = cg_geom(nb, cin, h, w, kh, kw, sh, sw, ph, pw, ho, wo, kin, kout);
    p.x = x; p.wt = wt; p.keep_in = keep_in; p.keep_out = keep_out; p.y = y;
    p.M = kout;
    p.N = nb * ho * wo;
    p.K = kin * kh * kw;
    cg_gemm(p, blockIdx.y * CG_BM, blockIdx.x * CG_BN, 0, p.K);
}

// grid (ceil(N/64), ceil(M/64)), block 256
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
masked_conv_dgrad(const float* __restrict__ dy, const float* __restrict__ wt,
                  const u32* __restrict__ keep_in, const u32* __restrict__ keep_out,
                  float* __restrict__ dx, int nb, int cin, int h, int w, int kh, int kw, int sh,
                  int sw, int ph, int pw, int ho, int wo, int kin, int kout) {
    DgradProblem p;
    p.g = cg_geom(nb, cin, h, w, kh, kw, sh, sw, ph, pw, ho, wo, kin, kout);
    p.dy = dy; p.wt = wt; p.keep_in = keep_in; p.keep_out = keep_out; p.dx = dx;
    p.M = kin;
    p.N = nb * h * w;
    p.K = kout * kh * kw;
    cg_gemm(p, blockIdx.y * CG_BM, blockIdx.x * CG_BN, 0, p.K);
}

// grid (ceil(N/64), ceil(M/64), splits), block 256; each z-slice covers k_per_split K values
// (a multiple of 16).  With splits > 1 the results go to partial[splits][M][N] and
// masked_conv_wgrad_reduce adds them up in a fixed order.
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
masked_conv_wgrad(const float* __restrict__ dy, const float* __restrict__ x,
                  const u32* __restrict__ keep_in, const u32* __restrict__ keep_out,
                  float* __restrict__ out, int nb, int cin, int h, int w, int kh, int kw, int sh,
                  int sw, int ph, int pw, int ho, int wo, int kin, int kout, int k_per_split,
                  int split_out) {
    WgradProblem p;
    p.g = cg_geom(nb, cin, h, w, kh, kw, sh, sw, ph, pw, ho, wo, kin, kout);
    p.dy = dy; p.x = x; p.keep_in = keep_in; p.keep_out = keep_out; p.out = out;
    p.M = kout;
    p.N = kin * kh * kw;
    p.K = nb * ho * wo;
    p.split_out = split_out;
    const int k_begin = blockIdx.z * k_per_split;
    const int k_end = min(p.K, k_begin + k_per_split);
    cg_gemm(p, blockIdx.y * CG_BM, blockIdx.x * CG_BN, k_begin, k_end);
}

// dW[keep_out[m], keep_in[i], r, s] = sum_z partial[z][m][n], n = (i, r, s); grid-stride.
extern "C" __global__ void __launch_bounds__(PK_BLOCK)
masked_conv_wgrad_reduce(const float* __restrict__ partial, const u32* __restrict__ keep_in,
                         const u32* __restrict__ keep_out, float* __restrict__ dw, int cin,
                         int taps, int kin, int kout, int splits) {
    const i64 total = (i64)kout * kin * taps;
    const i64 mn = (i64)kin * taps;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (i64)gridDim.x * blockDim.x) {
        float acc = 0.0f;
        for (int z = 0; z < splits; ++z) acc += partial[(i64)z * total + e];
        const i64 m = e / mn, n = e - m * mn;
        const i64 i = n / taps, rs = n - i * taps;
        dw[((i64)keep_out[m] * cin + keep_in[i]) * taps + rs] = acc;
    }
}
