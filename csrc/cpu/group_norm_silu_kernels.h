// Inner loops of the CPU group_norm_silu, written with at::vec::Vectorized<T>. Included once by
// each ISA build (group_norm_silu_{default,avx2,avx512}.cpp) after it has defined CPU_CAPABILITY
// (DEFAULT, AVX2 or AVX512); everything here lands in shapflow::cpu::CPU_CAPABILITY.
//
// One task is one (sample, group): its Cg * HW values are contiguous in x.
//   forward:  one vectorised pass for the moments (sums of x - k and (x - k)^2 with k the
//             group's first value, vector lanes cascaded into doubles), then one fused pass
//             y = silu((x - mean) * a_c + beta_c), a_c = gamma_c * rstd (the GroupNorm affine and
//             the per-sample scale/shift are already folded into gamma, beta).
//   backward: pass 1 per channel: dz = dy * silu'(z) (written into dx), sum(dz), sum(dz * xhat);
//             pass 2: dx = rstd * (dz * gamma_c - mean(dz * gamma) - xhat * mean(dz * gamma * xhat)),
//             computed in place from the dz in dx as dz * A_c + (x - mean) * B + C.
//   Both read the group from memory once: the second pass finds it in cache.
#pragma once

// ATen's vec headers carry `#pragma unroll` and clang pragmas that g++ -Wall reports (g++ >= 13
// honours this; g++ 12 lexes before it reads diagnostic pragmas and still prints them).
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunknown-pragmas"
#endif
#include <ATen/cpu/vec/vec.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "group_norm_silu.h"

namespace shapflow {
namespace cpu {
namespace CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// Sums run as a cascade: vector accumulators over kInner values per lane, folded into a second
// vector accumulator up to kOuter times, whose lanes are then added in double (every
// kInner * kOuter * W values, 2048 floats with AVX-512). No float partial sum takes more than
// ~kInner + kOuter roundings (~1e-6 relative worst case, ~1e-7 typical) however large the group,
// and the moments' cancellation (E[(x-k)^2] - E[x-k]^2) happens in double.
constexpr int64_t kInner = 8;
constexpr int64_t kOuter = 16;

// exp for the sigmoid: ATen's exp_u20 for float (<= 20 ulp, a branch-free polynomial; the SiLU
// built on it stays within a few 1e-7 of the exact one), the accurate exp for double (gradcheck).
inline Vectorized<float> vexp(const Vectorized<float>& v) { return v.exp_u20(); }
inline Vectorized<double> vexp(const Vectorized<double>& v) { return v.exp(); }

// sigmoid(z) = 1 / (1 + exp(-z)) and silu(z) = z / (1 + exp(-z)). For z below about -88,
// exp(-z) is inf (or the largest float) and they give 0 and -0, the limits; a NaN z stays NaN.
template <typename T>
inline Vectorized<T> vsigmoid(const Vectorized<T>& z) {
  return Vectorized<T>(T(1)) / (Vectorized<T>(T(1)) + vexp(z.neg()));
}

template <typename T>
inline Vectorized<T> vsilu(const Vectorized<T>& z) {
  return z / (Vectorized<T>(T(1)) + vexp(z.neg()));
}

// Sum of the lanes of v in double, pairwise (log2(W) dependent adds).
template <typename T>
inline double hsum(const Vectorized<T>& v) {
  constexpr int64_t W = Vectorized<T>::size();
  alignas(64) T buf[W];
  v.store(buf);
  double t[W];
  for (int64_t l = 0; l < W; ++l) t[l] = static_cast<double>(buf[l]);
  for (int64_t w = W / 2; w > 0; w /= 2) {
    for (int64_t l = 0; l < w; ++l) t[l] += t[l + w];
  }
  return t[0];
}

// Sum of the lanes of v where each lane holds few values: for float on AVX2 / AVX-512 in
// registers (ATen's shuffle tree, a few roundings more), otherwise hsum.
template <typename T>
inline double hsum_short(const Vectorized<T>& v) {
  return hsum(v);
}
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
template <>
inline double hsum_short(const Vectorized<float>& v) {
  return static_cast<double>(v.reduce_add());
}
#endif

// s1 = sum(p[i] - k), s2 = sum((p[i] - k)^2) over i < n, k a value of the group: shifting by
// it keeps E[(x-k)^2] - E[x-k]^2 well conditioned when |mean| >> std.
template <typename T>
void shifted_sums(const T* p, int64_t n, T k, double& s1, double& s2) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const V vk(k);
  s1 = 0.0;
  s2 = 0.0;
  int64_t i = 0;
  while (i + W <= n) {
    V o1(T(0)), o2(T(0));
    for (int64_t b = 0; b < kOuter && i + 2 * W <= n; ++b) {
      V a0(T(0)), a1(T(0)), q0(T(0)), q1(T(0));  // two chains each, for the add/FMA latency
      for (int64_t it = 0; it < kInner / 2 && i + 2 * W <= n; ++it, i += 2 * W) {
        const V d0 = V::loadu(p + i) - vk, d1 = V::loadu(p + i + W) - vk;
        a0 += d0;
        a1 += d1;
        q0 = at::vec::fmadd(d0, d0, q0);
        q1 = at::vec::fmadd(d1, d1, q1);
      }
      o1 += a0 + a1;
      o2 += q0 + q1;
    }
    if (i + 2 * W > n && i + W <= n) {  // one whole vector left
      const V d0 = V::loadu(p + i) - vk;
      o1 += d0;
      o2 = at::vec::fmadd(d0, d0, o2);
      i += W;
    }
    s1 += hsum(o1);
    s2 += hsum(o2);
  }
  for (; i < n; ++i) {
    const double d = static_cast<double>(p[i]) - static_cast<double>(k);
    s1 += d;
    s2 += d * d;
  }
}

// q[i] = act((p[i] - mu) * a + b) for i < n (subtracting the mean first keeps z accurate when
// |mean| * a >> |z|). With pf > 0, p[pf + i] and q[pf + i] (the values the next chunk's passes
// read and write) are prefetched meanwhile, so that the memory-bound moments pass finds them in
// cache instead of waiting after this compute-bound pass.
template <typename T>
C10_ALWAYS_INLINE void affine_act(const T* p, T* q, int64_t n, T mu, T a, T b, bool silu, int64_t pf) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const V vmu(mu), va(a), vb(b);
  int64_t i = 0;
  if (silu) {
    for (; i + W <= n; i += W) {
      if (pf > 0) {
        __builtin_prefetch(p + pf + i, 0, 2);
        __builtin_prefetch(q + pf + i, 1, 2);
      }
      const V z = at::vec::fmadd(V::loadu(p + i) - vmu, va, vb);
      vsilu(z).store(q + i);
    }
    if (i < n) {
      const V z = at::vec::fmadd(V::loadu(p + i, n - i) - vmu, va, vb);
      vsilu(z).store(q + i, n - i);
    }
  } else {
    for (; i + W <= n; i += W) at::vec::fmadd(V::loadu(p + i) - vmu, va, vb).store(q + i);
    if (i < n) at::vec::fmadd(V::loadu(p + i, n - i) - vmu, va, vb).store(q + i, n - i);
  }
}

// Groups are handled in chunks of up to kChunkGroups groups and about kChunkValues values: each
// pass runs over the whole chunk before the next pass starts, so that with small groups (the
// pruned UNets' 4x4 and 8x8 levels hold 32-192 values a group) the dependent chain of one
// group (sums -> rstd -> exp -> store) overlaps with the other groups' instead of running
// alone; the chunk is still in L1/L2 when the second pass reads it again.
constexpr int64_t kChunkGroups = 32;
constexpr int64_t kChunkValues = 8192;

inline int64_t chunk_groups(int64_t D) {
  return std::min<int64_t>(kChunkGroups, std::max<int64_t>(1, kChunkValues / std::max<int64_t>(D, 1)));
}

template <typename T>
void forward_groups_impl(const ForwardArgs<T>& a, int64_t begin, int64_t end) {
  const int64_t Cg = a.C / a.G, HW = a.HW, D = Cg * HW;
  const int64_t chunk = chunk_groups(D);
  double mus[kChunkGroups], rss[kChunkGroups];
  for (int64_t ng0 = begin; ng0 < end; ng0 += chunk) {
    const int64_t ng1 = std::min(end, ng0 + chunk);
    for (int64_t ng = ng0; ng < ng1; ++ng) {  // pass 1: moments
      const T* xg = a.x + ng * D;
      double mu = 0.0, var = 0.0;
      if (D > 0) {
        double s1 = 0.0, s2 = 0.0;
        shifted_sums(xg, D, xg[0], s1, s2);
        const double m = s1 / static_cast<double>(D);
        mu = static_cast<double>(xg[0]) + m;
        var = std::max(s2 / static_cast<double>(D) - m * m, 0.0);
      }
      const double rs = 1.0 / std::sqrt(var + a.eps);
      a.mean[ng] = static_cast<T>(mu);
      a.rstd[ng] = static_cast<T>(rs);
      mus[ng - ng0] = mu;
      rss[ng - ng0] = rs;
    }
    for (int64_t ng = ng0; ng < ng1; ++ng) {  // pass 2: y = act((x - mu) * gamma * rstd + beta)
      const int64_t n = ng / a.G, c0 = (ng % a.G) * Cg;
      const T* xg = a.x + ng * D;
      T* yg = a.y + ng * D;
      const T* gamma = a.gamma + n * a.affine_stride + c0;
      const T* beta = a.beta + n * a.affine_stride + c0;
      const double mu = mus[ng - ng0], rs = rss[ng - ng0];
      // x - mu_t is exact near the mean; the part of mu that T cannot hold goes into the shift.
      const T mu_t = static_cast<T>(mu);
      const double mu_lo = mu - static_cast<double>(mu_t);
      for (int64_t c = 0; c < Cg; ++c) {
        const double sc = static_cast<double>(gamma[c]) * rs;
        const int64_t off = c * HW;
        const bool next_chunk = (ng + chunk) * D + off + HW <= end * D;  // still this call's values
        affine_act(xg + off, yg + off, HW, mu_t, static_cast<T>(sc),
                   static_cast<T>(static_cast<double>(beta[c]) - mu_lo * sc), a.silu, next_chunk ? chunk * D : 0);
      }
    }
  }
}

// One channel of backward pass 1, with z = (x - mu) * a + b and xhat = (x - mu) * rs:
// e[i] = dy[i] * act'(z[i]); s_dz = sum(e), s_dzx = sum(e * xhat), summed as a cascade.
template <typename T>
C10_ALWAYS_INLINE void act_grad_sums(const T* p, const T* d, T* e, int64_t n, T a, T b, T mu, T rs, bool silu,
                          int64_t pf, double& s_dz, double& s_dzx) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const V va(a), vb(b), vmu(mu), vrs(rs), one(T(1));
  // e = dy * act'(z) for one vector of x - mu; silu'(z) = sg * (1 + z * (1 - sg)).
  auto grad = [&](const V& xc, const V& dy) -> V {
    if (!silu) return dy;
    const V z = at::vec::fmadd(xc, va, vb);
    const V sg = vsigmoid(z);
    return dy * sg * at::vec::fmadd(z, one - sg, one);
  };
  s_dz = 0.0;
  s_dzx = 0.0;
  int64_t i = 0;
  while (i < n) {
    V o(T(0)), ox(T(0));
    for (int64_t b = 0; b < kOuter && i < n; ++b) {
      V acc(T(0)), accx(T(0));
      for (int64_t it = 0; it < kInner && i + W <= n; ++it, i += W) {
        if (pf > 0) {
          __builtin_prefetch(p + pf + i, 0, 2);
          __builtin_prefetch(d + pf + i, 0, 2);
          __builtin_prefetch(e + pf + i, 1, 2);
        }
        const V xc = V::loadu(p + i) - vmu;
        const V g = grad(xc, V::loadu(d + i));
        g.store(e + i);
        acc += g;
        accx = at::vec::fmadd(g, xc * vrs, accx);
      }
      if (i + W > n && i < n) {  // the channel's last n % W values; other lanes are set to 0
        const int64_t m = n - i;
        const V xc = V::loadu(p + i, m) - vmu;
        const V g = V::set(V(T(0)), grad(xc, V::loadu(d + i, m)), m);
        g.store(e + i, m);
        acc += g;
        accx = at::vec::fmadd(g, V::set(V(T(0)), xc * vrs, m), accx);
        i = n;
      }
      o += acc;
      ox += accx;
    }
    if (n <= kInner * W) {  // short channel (4x4, 8x8 maps): lanes hold <= kInner values
      s_dz = hsum_short(o);
      s_dzx = hsum_short(ox);
      break;
    }
    s_dz += hsum(o);
    s_dzx += hsum(ox);
  }
}

template <typename T>
void backward_groups_impl(const BackwardArgs<T>& a, int64_t begin, int64_t end) {
  using V = Vectorized<T>;
  constexpr int64_t W = V::size();
  const int64_t Cg = a.C / a.G, HW = a.HW, D = Cg * HW;
  if (D == 0) {  // no values: zero dgamma, dbeta
    for (int64_t ng = begin; ng < end; ++ng) {
      const int64_t coff = (ng / a.G) * a.C + (ng % a.G) * Cg;
      std::fill(a.dgamma + coff, a.dgamma + coff + Cg, T(0));
      std::fill(a.dbeta + coff, a.dbeta + coff + Cg, T(0));
    }
    return;
  }
  const int64_t chunk = chunk_groups(D);
  double g1s[kChunkGroups], g2s[kChunkGroups];
  for (int64_t ng0 = begin; ng0 < end; ng0 += chunk) {
    const int64_t ng1 = std::min(end, ng0 + chunk);
    for (int64_t ng = ng0; ng < ng1; ++ng) {  // pass 1: dz into dx, per-channel sums
      const int64_t coff = (ng / a.G) * a.C + (ng % a.G) * Cg;
      const int64_t aoff = (ng / a.G) * a.affine_stride + (ng % a.G) * Cg;
      const T* gamma = a.gamma + aoff;
      const T* beta = a.beta + aoff;
      const T mu = a.mean[ng], rs = a.rstd[ng];
      double g1 = 0.0, g2 = 0.0;
      for (int64_t c = 0; c < Cg; ++c) {
        const int64_t off = ng * D + c * HW;
        double s_dz = 0.0, s_dzx = 0.0;
        const bool next_chunk = off + chunk * D + HW <= end * D;  // still this call's values
        act_grad_sums(a.x + off, a.dy + off, a.dx + off, HW, gamma[c] * rs, beta[c], mu, rs, a.silu,
                      next_chunk ? chunk * D : 0, s_dz, s_dzx);
        a.dgamma[coff + c] = static_cast<T>(s_dzx);
        a.dbeta[coff + c] = static_cast<T>(s_dz);
        g1 += static_cast<double>(gamma[c]) * s_dz;
        g2 += static_cast<double>(gamma[c]) * s_dzx;
      }
      g1s[ng - ng0] = g1;
      g2s[ng - ng0] = g2;
    }
    for (int64_t ng = ng0; ng < ng1; ++ng) {  // pass 2: dx from dz, in place
      // dx = rs * (dz * gamma_c - m1 - xhat * m2) = dz * (rs * gamma_c) + (x - mu) * B + C1.
      const T* gamma = a.gamma + (ng / a.G) * a.affine_stride + (ng % a.G) * Cg;
      const T mu = a.mean[ng];
      const double rsd = static_cast<double>(a.rstd[ng]);
      const double m1 = g1s[ng - ng0] / static_cast<double>(D), m2 = g2s[ng - ng0] / static_cast<double>(D);
      const V vmu(mu), vB(static_cast<T>(-rsd * rsd * m2)), vC1(static_cast<T>(-rsd * m1));
      for (int64_t c = 0; c < Cg; ++c) {
        const V vA(static_cast<T>(rsd * static_cast<double>(gamma[c])));
        const T* p = a.x + ng * D + c * HW;
        T* q = a.dx + ng * D + c * HW;
        int64_t i = 0;
        for (; i + W <= HW; i += W) {
          at::vec::fmadd(V::loadu(q + i), vA, at::vec::fmadd(V::loadu(p + i) - vmu, vB, vC1)).store(q + i);
        }
        if (i < HW) {
          const int64_t m = HW - i;
          at::vec::fmadd(V::loadu(q + i, m), vA, at::vec::fmadd(V::loadu(p + i, m) - vmu, vB, vC1))
              .store(q + i, m);
        }
      }
    }
  }
}

}  // namespace

void forward_groups(const ForwardArgs<float>& a, int64_t begin, int64_t end) {
  forward_groups_impl(a, begin, end);
}
void forward_groups(const ForwardArgs<double>& a, int64_t begin, int64_t end) {
  forward_groups_impl(a, begin, end);
}
void backward_groups(const BackwardArgs<float>& a, int64_t begin, int64_t end) {
  backward_groups_impl(a, begin, end);
}
void backward_groups(const BackwardArgs<double>& a, int64_t begin, int64_t end) {
  backward_groups_impl(a, begin, end);
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace shapflow
