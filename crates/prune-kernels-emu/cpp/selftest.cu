// selftest.cu: kernels that exercise the emulator itself (compiled only into the emulation,
// after kernels/*.cu; names start with pk_emu_selftest_ and are not part of the crate).

// out[b * n + t] = sum over the block of (t + 1) shifted by one thread through shared
// memory across a barrier, and a warp-shuffle sum: checks barriers and shuffles.
extern "C" __global__ void pk_emu_selftest_block(float* out, int use_barrier) {
    __shared__ float s[1024];
    const int t = threadIdx.x, n = blockDim.x;
    s[t] = (float)(t + 1);
    if (use_barrier) __syncthreads();
    const float neighbour = s[(t + 1) % n];  // a race without the barrier
    float v = (float)(threadIdx.x & 31);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    const float lane0 = __shfl_sync(0xffffffffu, v, 0);
    out[blockIdx.x * n + t] = neighbour + 1000.0f * lane0;
}

// Only lanes 0..15 reach the shuffle: undefined on a GPU, an error here.
extern "C" __global__ void pk_emu_selftest_divergent(float* out) {
    float v = 1.0f;
    if ((threadIdx.x & 31) < 16) v = __shfl_down_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}
