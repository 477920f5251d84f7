// pk_emu.h: the subset of CUDA C++ that kernels/*.cu use, implemented on the CPU, so the
// kernel sources compile unchanged with a host C++17 compiler and run under an emulation of
// the launch model.
//
// Launch model
//   * A launch runs its blocks one after another on the calling OS thread.
//   * Every CUDA thread of a block is a fiber (ucontext) with its own stack, so a thread's
//     locals live across barriers exactly as registers do on a GPU.
//   * __syncthreads() suspends the fiber; when every live thread of the block waits at the
//     barrier, all of them resume.  Threads that returned count as arrived (as on hardware).
//   * Warp collectives (__shfl_*_sync, __syncwarp) exchange through a per-warp buffer and
//     suspend until every live lane of the warp has arrived.  A warp whose lanes wait at
//     different kinds of barriers, or a shuffle with lanes that already returned, is a
//     deadlock or undefined behaviour on a GPU and an error here.
//   * Between barriers each thread runs alone, in a schedule chosen per launch (ascending,
//     descending or shuffled thread order).  Running a kernel under two schedules and
//     comparing the results bit for bit exposes a missing barrier or two threads writing the
//     same location.
//   * __shared__ variables are static thread_local: one copy per OS thread, shared by the
//     fibers of the running block.  They start zeroed and keep the previous block's values
//     (on a GPU they start as garbage), so a read of shared memory nobody wrote in this
//     block is not caught.
//   * Device memory is host memory; the Rust side allocates buffers whose end touches an
//     inaccessible page, so an overrun past a buffer faults.
#pragma once

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <utility>

// ------------------------------------------------------------------ language keywords
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __constant__ static
#define __restrict__ __restrict

// ------------------------------------------------------------------ vector types
struct uint3 {
    unsigned int x, y, z;
};
typedef uint3 dim3;
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) uint4 {
    unsigned int x, y, z, w;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) {
    return uint4{x, y, z, w};
}
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }

// ------------------------------------------------------------------ the emulator state
namespace pk_emu {

enum FiberState { READY = 0, AT_BLOCK = 1, AT_WARP = 2, DONE = 3 };

struct BlockState;
extern thread_local BlockState* g_block;

// Implemented in pk_emu_runtime.h (same translation unit).
uint3& cur_thread_idx();
uint3& cur_block_idx();
uint3& cur_block_dim();
uint3& cur_grid_dim();
void block_barrier();
void warp_barrier();
int cur_linear();
int block_threads();
unsigned long long* warp_slots();

}  // namespace pk_emu

#define threadIdx (pk_emu::cur_thread_idx())
#define blockIdx (pk_emu::cur_block_idx())
#define blockDim (pk_emu::cur_block_dim())
#define gridDim (pk_emu::cur_grid_dim())
#define warpSize 32

inline void __syncthreads() { pk_emu::block_barrier(); }
inline void __syncwarp(unsigned = 0xffffffffu) { pk_emu::warp_barrier(); }
inline void __threadfence() {}
inline void __threadfence_block() {}

// Warp shuffles: lane values go through the warp's exchange slots between two warp
// barriers (the second keeps a fast lane from overwriting a slot before it is read).
template <class T>
inline T pk_emu_shfl(T v, int src_lane_or_minus1, bool keep_own) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    const int me = pk_emu::cur_linear();
    const int base = me & ~31;
    unsigned long long* slots = pk_emu::warp_slots();
    unsigned long long w = 0;
    memcpy(&w, &v, sizeof(T));
    slots[me] = w;
    pk_emu::warp_barrier();
    T r = v;
    const int src = src_lane_or_minus1;
    if (!(keep_own || src < 0 || src > 31) && base + src < pk_emu::block_threads()) {
        memcpy(&r, &slots[base + src], sizeof(T));
    }
    pk_emu::warp_barrier();
    return r;
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
    const int lane = pk_emu::cur_linear() & 31;
    const int seg = lane & ~(width - 1);
    const int src = lane + (int)delta;
    return pk_emu_shfl(v, src, src >= seg + width);
}
template <class T>
inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
    const int lane = pk_emu::cur_linear() & 31;
    const int seg = lane & ~(width - 1);
    const int src = lane - (int)delta;
    return pk_emu_shfl(v, src, src < seg);
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
    const int lane = pk_emu::cur_linear() & 31;
    const int seg = lane & ~(width - 1);
    const int src = lane ^ mask;
    return pk_emu_shfl(v, src, src < seg || src >= seg + width);
}
template <class T>
inline T __shfl_sync(unsigned, T v, int src_lane, int width = 32) {
    const int lane = pk_emu::cur_linear() & 31;
    const int seg = lane & ~(width - 1);
    return pk_emu_shfl(v, seg + (src_lane & (width - 1)), false);
}

// ------------------------------------------------------------------ integer intrinsics
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a * b) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline int __popc(unsigned int v) { return __builtin_popcount(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz((unsigned)v); }
template <class T>
inline T __ldg(const T* p) {
    return *p;
}

// CUDA's min / max accept mixed integer types; the common type is used here.
template <class A, class B>
inline typename std::common_type<A, B>::type min(A a, B b) {
    typedef typename std::common_type<A, B>::type C;
    return (C)a < (C)b ? (C)a : (C)b;
}
template <class A, class B>
inline typename std::common_type<A, B>::type max(A a, B b) {
    typedef typename std::common_type<A, B>::type C;
    return (C)a > (C)b ? (C)a : (C)b;
}

// ------------------------------------------------------------------ atomics
// Blocks run one at a time on one OS thread and a fiber is never preempted, so a plain
// read-modify-write is atomic here.
template <class T>
inline T atomicAdd(T* p, T v) {
    const T old = *p;
    *p = old + v;
    return old;
}
template <class T>
inline T atomicMax(T* p, T v) {
    const T old = *p;
    *p = old > v ? old : v;
    return old;
}
template <class T>
inline T atomicMin(T* p, T v) {
    const T old = *p;
    *p = old < v ? old : v;
    return old;
}
template <class T>
inline T atomicExch(T* p, T v) {
    const T old = *p;
    *p = v;
    return old;
}
template <class T>
inline T atomicCAS(T* p, T cmp, T v) {
    const T old = *p;
    if (old == cmp) *p = v;
    return old;
}

// ------------------------------------------------------------------ float intrinsics
inline float __int_as_float(int v) {
    float f;
    memcpy(&f, &v, 4);
    return f;
}
inline int __float_as_int(float f) {
    int v;
    memcpy(&v, &f, 4);
    return v;
}
inline unsigned __float_as_uint(float f) {
    unsigned v;
    memcpy(&v, &f, 4);
    return v;
}
inline float __uint_as_float(unsigned v) {
    float f;
    memcpy(&f, &v, 4);
    return f;
}
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __frcp_rn(float x) { return 1.0f / x; }

// erfcx(x) = exp(x^2) erfc(x).  For x < 0: 2 exp(x^2) - erfcx(-x).  For 0 <= x < 4 the
// direct product is accurate (erfc and exp both to an ulp or two); beyond, the Laplace
// continued fraction sqrt(pi) erfcx(x) = 1/(x + K(x)) (as in common.cuh) is exact.
inline double erfcx(double x) {
    if (x < 0.0) {
        if (x < -26.7) return HUGE_VAL;
        return 2.0 * exp(x * x) - erfcx(-x);
    }
    if (x < 4.0) return exp(x * x) * erfc(x);
    double f = 0.0;
    for (int k = 60; k >= 1; --k) f = (0.5 * (double)k) / (x + f);
    return 1.0 / (1.77245385090551602730 * (x + f));
}
inline float erfcxf(float x) { return (float)erfcx((double)x); }

// Phi^-1(u): Acklam's rational approximation (relative error 1.2e-9) refined by one
// Halley step on Phi(z) - u, which brings it to double precision.
inline double normcdfinv(double u) {
    if (!(u > 0.0)) return u == 0.0 ? -HUGE_VAL : NAN;
    if (!(u < 1.0)) return u == 1.0 ? HUGE_VAL : NAN;
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                               -2.759285104469687e+02, 1.383577518672690e+02,
                               -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                               -1.556989798598866e+02, 6.680131188771972e+01,
                               -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                               -2.400758277161838e+00, -2.549732539343734e+00,
                               4.374664141464968e+00,  2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                               2.445134137142996e+00, 3.754408661907416e+00};
    const double plow = 0.02425;
    double z;
    if (u < plow) {
        const double q = sqrt(-2.0 * log(u));
        z = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    } else if (u <= 1.0 - plow) {
        const double q = u - 0.5, r = q * q;
        z = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
    } else {
        const double q = sqrt(-2.0 * log1p(-u));
        z = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
    }
    // Halley step; the residual uses the tail that is small to avoid cancellation.
    const double e = z < 0.0 ? 0.5 * erfc(-z * 0.70710678118654752440) - u
                             : (1.0 - u) - 0.5 * erfc(z * 0.70710678118654752440);
    const double g = e * 2.50662827463100050242 * exp(0.5 * z * z);
    return z - g / (1.0 + 0.5 * z * g);
}
inline float normcdfinvf(float u) { return (float)normcdfinv((double)u); }
inline float normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678f); }
inline double normcdf(double x) { return 0.5 * erfc(-x * 0.70710678118654752440); }
