// elementwise.cu: unary and broadcasting binary elementwise kernels, and dropout.
// Compiled with common.cuh prepended.
//
// Unary  y[e] = f(x[e]; a)                       grid-stride over n elements
// Binary out[e] = g(a[ia(e)], b[ib(e)])          out has `ndim` dims (<= EW_MAX_DIMS);
//        meta = [dims[ndim], stride_a[ndim], stride_b[ndim]] (i64, row-major element
//        strides, 0 on a broadcast dimension), so ia(e) = sum_d idx_d(e) stride_a[d].
//        When both operands are dense and of the output's shape (contiguous = 1) the index
//        arithmetic is skipped.
// Dropout y = x * keep / (1 - p), keep = [u >= p] with u uniform in (0, 1) from Philox4x32-10
//        of counter (e / 4, offset_lo, offset_hi, 2) under key (seed_lo, seed_hi), word e % 4;
//        the scale (0 or 1/(1-p)) is written to `mask` for the backward (dx = dy * mask).

#define EW_MAX_DIMS 8

// Unary operation codes (the Rust side mirrors them in `ops::Unary`).
#define EW_NEG 0
#define EW_EXP 1
#define EW_LOG 2
#define EW_RELU 3
#define EW_SIGMOID 4
#define EW_TANH 5
#define EW_SQRT 6
#define EW_SQUARE 7
#define EW_SCALE 8       // a * x
#define EW_ADD_SCALAR 9  // x + a
#define EW_ABS 10

__device__ __forceinline__ float ew_unary_op(int op, float x, float a) {
    switch (op) {
        case EW_NEG: return -x;
        case EW_EXP: return expf(x);
        case EW_LOG: return logf(x);
        case EW_RELU: return x > 0.0f ? x : (x == x ? 0.0f : x);
        case EW_SIGMOID: return 1.0f / (1.0f + expf(-x));
        case EW_TANH: return tanhf(x);
        case EW_SQRT: return sqrtf(x);
        case EW_SQUARE: return x * x;
        case EW_SCALE: return a * x;
        case EW_ADD_SCALAR: return x + a;
        case EW_ABS: return fabsf(x);
        default: return __int_as_float(0x7fc00000);
    }
}

// Binary operation codes.
#define EW_ADD 0
#define EW_SUB 1
#define EW_MUL 2
#define EW_DIV 3
#define EW_MAX 4
#define EW_MIN 5
#define EW_RELU_GRAD 6     // a = dy, b = x:  dy * [x > 0]
#define EW_SIGMOID_GRAD 7  // a = dy, b = y:  dy * y (1 - y)
#define EW_TANH_GRAD 8     // a = dy, b = y:  dy * (1 - y^2)

__device__ __forceinline__ float ew_binary_op(int op, float a, float b) {
    switch (op) {
        case EW_ADD: return a + b;
        case EW_SUB: return a - b;
        case EW_MUL: return a * b;
        case EW_DIV: return a / b;
        case EW_MAX: return (a != a || b != b) ? a + b : fmaxf(a, b);
        case EW_MIN: return (a != a || b != b) ? a + b : fminf(a, b);
        case EW_RELU_GRAD: return b > 0.0f ? a : 0.0f;
        case EW_SIGMOID_GRAD: return a * b * (1.0f - b);
        case EW_TANH_GRAD: return a * (1.0f - b * b);
        default: return __int_as_float(0x7fc00000);
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
ew_unary(const float* __restrict__ x, float* __restrict__ y, i64 n, int op, float a) {
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (i64)gridDim.x * blockDim.x)
        y[e] = ew_unary_op(op, x[e], a);
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
ew_binary(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ out,
          const i64* __restrict__ meta, i64 n, int ndim, int op, int contiguous) {
    __shared__ i64 sm[3 * EW_MAX_DIMS];
    for (int k = threadIdx.x; k < 3 * ndim; k += blockDim.x) sm[k] = meta[k];
    __syncthreads();
    const i64* dims = sm;
    const i64* sa = sm + ndim;
    const i64* sb = sm + 2 * ndim;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (i64)gridDim.x * blockDim.x) {
        i64 ia = e, ib = e;
        if (!contiguous) {
            ia = 0;
            ib = 0;
            i64 rest = e;
            for (int d = ndim - 1; d >= 0; --d) {
                const i64 q = rest / dims[d];
                const i64 i = rest - q * dims[d];
                rest = q;
                ia += i * sa[d];
                ib += i * sb[d];
            }
        }
        out[e] = ew_binary_op(op, a[ia], b[ib]);
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
dropout_fwd(const float* __restrict__ x, float* __restrict__ y, float* __restrict__ mask, i64 n,
            float p, u32 seed_lo, u32 seed_hi, u32 offset_lo, u32 offset_hi) {
    const float scale = 1.0f / (1.0f - p);
    const i64 groups = (n + 3) / 4;
    for (i64 g = (i64)blockIdx.x * blockDim.x + threadIdx.x; g < groups;
         g += (i64)gridDim.x * blockDim.x) {
        const uint4 r = pk_philox4x32_10(make_uint4((u32)g, offset_lo, offset_hi, 2u), seed_lo,
                                         seed_hi);
        const u32 w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const i64 e = 4 * g + k;
            if (e < n) {
                const float u = (float)pk_uniform_open(w[k]);
                const float m = u >= p ? scale : 0.0f;
                mask[e] = m;
                y[e] = x[e] * m;
            }
        }
    }
}
