// optim.cu: fused optimizer updates, one pass over a parameter tensor.
// Compiled with common.cuh prepended.
//
// SGD (as prune-core's Sgd): g' = g + wd w;  momentum == 0: w -= lr g'
//   else v = momentum v + g',  w -= lr (nesterov ? g' + momentum v : v)
// Adam (as prune-core's Adam, L2 weight decay): g' = g + wd w,
//   m = b1 m + (1 - b1) g',  v = b2 v + (1 - b2) g'^2,
//   w -= lr (m / bc1) / (sqrt(v / bc2) + eps),   bc_i = 1 - b_i^t (computed on the host in
//   double, passed as float).
// Running average (batch norm's running statistics, PyTorch's convention):
//   r = (1 - m) r + m b

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
sgd_step(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ v, i64 n,
         float lr, float momentum, float wd, int nesterov) {
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (i64)gridDim.x * blockDim.x) {
        const float we = w[e];
        const float ge = g[e] + wd * we;
        if (momentum == 0.0f) {
            w[e] = we - lr * ge;
        } else {
            const float ve = momentum * v[e] + ge;
            v[e] = ve;
            w[e] = we - lr * (nesterov ? ge + momentum * ve : ve);
        }
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
adam_step(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ m,
          float* __restrict__ v, i64 n, float lr, float b1, float b2, float eps, float wd,
          float bc1, float bc2) {
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (i64)gridDim.x * blockDim.x) {
        const float we = w[e];
        const float ge = g[e] + wd * we;
        const float me = b1 * m[e] + (1.0f - b1) * ge;
        const float ve = b2 * v[e] + (1.0f - b2) * ge * ge;
        m[e] = me;
        v[e] = ve;
        w[e] = we - lr * (me / bc1) / (sqrtf(ve / bc2) + eps);
    }
}

extern "C" __global__ void __launch_bounds__(PK_BLOCK)
ema_step(float* __restrict__ r, const float* __restrict__ b, i64 n, float m) {
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < n;
         e += (i64)gridDim.x * blockDim.x) {
        r[e] = (1.0f - m) * r[e] + m * b[e];
    }
}
