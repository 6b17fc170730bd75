// CPU kernels of shapflow::group_norm_silu, shared between the op front (group_norm_silu.cpp: checks,
// allocation, at::parallel_for, ISA choice) and the per-ISA builds of the inner loops
// (group_norm_silu_{default,avx2,avx512}.cpp, which all include group_norm_silu_kernels.h).
//
// The inner loops are written once with at::vec::Vectorized<T>. ATen picks Vectorized's
// implementation at compile time from CPU_CAPABILITY_AVX2 / CPU_CAPABILITY_AVX512, and an
// extension is compiled for baseline x86-64 (SSE2, where Vectorized is a plain array and exp is
// scalar), so the loops are compiled three times, each ISA build in its own namespace
// (shapflow::cpu::DEFAULT / AVX2 / AVX512), and the front calls the one matching
// at::get_cpu_capability() (what ATen itself uses; ATEN_CPU_CAPABILITY=avx2|default overrides it).
#pragma once

#include <cstdint>

// ISA builds with `#pragma GCC target` need GCC on x86-64; elsewhere only DEFAULT is built (on
// aarch64 DEFAULT already is ATen's NEON Vectorized).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define SHAPFLOW_CPU_X86_ISA_BUILDS 1
#else
#define SHAPFLOW_CPU_X86_ISA_BUILDS 0
#endif

namespace shapflow {
namespace cpu {

// One forward call: x, y (N, C, HW) contiguous; gamma, beta (N, C) rows every affine_stride values
// (0: one (C,) row shared by all samples; C: per sample); mean, rstd (N, G).
template <typename T>
struct ForwardArgs {
  const T* x;
  const T* gamma;
  const T* beta;
  T* y;
  T* mean;
  T* rstd;
  int64_t C, HW, G, affine_stride;
  double eps;
  bool silu;
};

// One backward call: dy, x, dx (N, C, HW) contiguous; gamma, beta as in ForwardArgs; dgamma, dbeta
// (N, C) per-sample partial sums (the caller reduces them over N for a shared row); mean, rstd (N, G)
// as the forward returned them.
template <typename T>
struct BackwardArgs {
  const T* dy;
  const T* x;
  const T* gamma;
  const T* beta;
  const T* mean;
  const T* rstd;
  T* dx;
  T* dgamma;
  T* dbeta;
  int64_t C, HW, G, affine_stride;
  bool silu;
};

// Each ISA build defines, for T in {float, double}:
//   forward_groups(args, begin, end):  groups ng = n * G + g in [begin, end) of the forward;
//   backward_groups(args, begin, end): the same groups of the backward.
#define SHAPFLOW_DECLARE_GROUP_NORM_SILU_KERNELS                                   \
  void forward_groups(const ForwardArgs<float>& a, int64_t begin, int64_t end);    \
  void forward_groups(const ForwardArgs<double>& a, int64_t begin, int64_t end);   \
  void backward_groups(const BackwardArgs<float>& a, int64_t begin, int64_t end);  \
  void backward_groups(const BackwardArgs<double>& a, int64_t begin, int64_t end);

namespace DEFAULT {
SHAPFLOW_DECLARE_GROUP_NORM_SILU_KERNELS
}
#if SHAPFLOW_CPU_X86_ISA_BUILDS
namespace AVX2 {
SHAPFLOW_DECLARE_GROUP_NORM_SILU_KERNELS
}
namespace AVX512 {
SHAPFLOW_DECLARE_GROUP_NORM_SILU_KERNELS
}
#endif

}  // namespace cpu
}  // namespace shapflow
