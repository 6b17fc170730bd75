// CUDA kernels of shapflow::group_norm_silu, free of torch headers so that CI can compile them
// with plain nvcc. One block per (sample, group); group-local indices are 32-bit (checked by the
// launcher), global offsets 64-bit. T: storage type; A: accumulation type (float or double).
#pragma once
#include <cstdint>

namespace shapflow {
namespace cuda {

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum of `v` over the block; every thread gets the result. `buf` holds >= 32 values.
template <typename A>
__device__ __forceinline__ A block_sum(A v, A* buf) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) buf[warp] = v;
  __syncthreads();
  v = lane < nwarps ? buf[lane] : A(0);
  return warp_sum(v);
}

template <typename A>
__device__ __forceinline__ A sigmoid_acc(A z) { return A(1) / (A(1) + exp(-z)); }
template <>
__device__ __forceinline__ float sigmoid_acc<float>(float z) { return 1.0f / (1.0f + __expf(-z)); }

template <typename T, typename A>
__global__ void group_norm_silu_fwd(const T* __restrict__ x, const T* __restrict__ gamma,
                                    const T* __restrict__ beta, T* __restrict__ y, A* __restrict__ mean,
                                    A* __restrict__ rstd, int64_t C, int64_t affine_stride, int32_t HW, int32_t G,
                                    A eps, bool silu) {
  __shared__ A buf[32];
  const int64_t ng = blockIdx.x, n = ng / G;
  const int32_t Cg = static_cast<int32_t>(C / G), D = Cg * HW;
  const int64_t aoff = n * affine_stride + (ng % G) * Cg;  // this group's gamma/beta
  const T* xg = x + ng * static_cast<int64_t>(D);
  T* yg = y + ng * static_cast<int64_t>(D);
  A s = 0;
  for (int32_t i = threadIdx.x; i < D; i += blockDim.x) s += static_cast<A>(xg[i]);
  const A mu = block_sum(s, buf) / static_cast<A>(D);
  A q = 0;
  for (int32_t i = threadIdx.x; i < D; i += blockDim.x) { const A d = static_cast<A>(xg[i]) - mu; q += d * d; }
  const A rs = rsqrt(block_sum(q, buf) / static_cast<A>(D) + eps);
  if (threadIdx.x == 0) { mean[ng] = mu; rstd[ng] = rs; }
  for (int32_t i = threadIdx.x; i < D; i += blockDim.x) {
    const int32_t c = i / HW;
    const A a = static_cast<A>(gamma[aoff + c]) * rs;
    const A z = static_cast<A>(xg[i]) * a + (static_cast<A>(beta[aoff + c]) - mu * a);
    yg[i] = static_cast<T>(silu ? z * sigmoid_acc(z) : z);
  }
}

// dz = dy * act'(z) at one element, and xhat.
template <typename T, typename A>
__device__ __forceinline__ A grad_z(T dy, T xv, A a, A b, bool silu) {
  const A z = static_cast<A>(xv) * a + b, d = static_cast<A>(dy);
  if (!silu) return d;
  const A sg = sigmoid_acc(z);
  return d * sg * (A(1) + z * (A(1) - sg));
}

template <typename T, typename A>
__global__ void group_norm_silu_bwd(const T* __restrict__ dy, const T* __restrict__ x,
                                    const T* __restrict__ gamma, const T* __restrict__ beta,
                                    const A* __restrict__ mean, const A* __restrict__ rstd, T* __restrict__ dx,
                                    T* __restrict__ dgamma, T* __restrict__ dbeta, int64_t C, int64_t affine_stride,
                                    int32_t HW, int32_t G, bool silu) {
  __shared__ A buf[32];
  const int64_t ng = blockIdx.x, n = ng / G;
  const int32_t Cg = static_cast<int32_t>(C / G), D = Cg * HW;
  // coff: this group's (N, C) partials of dgamma/dbeta; aoff: its gamma/beta (shared row or per sample).
  const int64_t coff = n * C + (ng % G) * Cg, aoff = n * affine_stride + (ng % G) * Cg;
  const int64_t off = ng * static_cast<int64_t>(D);
  const A mu = mean[ng], rs = rstd[ng];
  A g1 = 0, g2 = 0;  // sums over the group of dz * gamma and dz * gamma * xhat
  for (int32_t c = 0; c < Cg; ++c) {
    const A gc = static_cast<A>(gamma[aoff + c]), a = gc * rs, b = static_cast<A>(beta[aoff + c]) - mu * a;
    A s1 = 0, s2 = 0;
    for (int32_t i = threadIdx.x; i < HW; i += blockDim.x) {
      const int64_t k = off + static_cast<int64_t>(c) * HW + i;
      const A dz = grad_z<T, A>(dy[k], x[k], a, b, silu);
      s1 += dz;
      s2 += dz * (static_cast<A>(x[k]) - mu) * rs;
    }
    s1 = block_sum(s1, buf);
    s2 = block_sum(s2, buf);
    if (threadIdx.x == 0) { dbeta[coff + c] = static_cast<T>(s1); dgamma[coff + c] = static_cast<T>(s2); }
    g1 += gc * s1;
    g2 += gc * s2;
  }
  const A m1 = g1 / static_cast<A>(D), m2 = g2 / static_cast<A>(D);
  for (int32_t i = threadIdx.x; i < D; i += blockDim.x) {
    const int32_t c = i / HW;
    const A gc = static_cast<A>(gamma[aoff + c]), a = gc * rs, b = static_cast<A>(beta[aoff + c]) - mu * a;
    const A dz = grad_z<T, A>(dy[off + i], x[off + i], a, b, silu);
    const A xh = (static_cast<A>(x[off + i]) - mu) * rs;
    dx[off + i] = static_cast<T>(rs * (dz * gc - m1 - xh * m2));
  }
}

// Threads per block for a group of D elements: enough to cover small groups, 512 at most.
inline int threads_for(int64_t D) { return D >= 4096 ? 512 : (D >= 1024 ? 256 : 128); }

}  // namespace cuda
}  // namespace shapflow
