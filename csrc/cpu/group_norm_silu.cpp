// CPU kernels of shapflow::group_norm_silu (forward and backward): input checks, allocation of the
// outputs only (the backward keeps its dz in dx), one task per (sample, group) spread over threads
// with at::parallel_for, the choice of the inner loops' ISA build (group_norm_silu.h), and for a
// gamma/beta shared by all samples ((C,)) the sum of the backward's per-sample partials over N.
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/library.h>

#include <algorithm>
#include <string>

#include "../checks.h"
#include "group_norm_silu.h"

namespace shapflow {
namespace {

// Values one parallel chunk should hold at least: smaller calls run on one thread, where waking
// the pool would cost more than the work. A quarter of ATen's GRAIN_SIZE (32768, tuned for one
// elementwise op): a value here costs two passes and an exp. A 16K-value call (digits 32x8x8x8) ran
// 1.06-1.15x faster on two threads than on one (forward and forward+backward; three alternating
// runs of benchmarks/kernels.py with each build, 2026-12-01).
constexpr int64_t kGrainValues = 8192;

enum class Isa { kDefault, kAvx2, kAvx512 };

// The ISA build to run: the one ATen's own kernels use (at::get_cpu_capability(), which honours
// ATEN_CPU_CAPABILITY), confirmed against the CPU's feature bits.
Isa pick_isa() {
#if SHAPFLOW_CPU_X86_ISA_BUILDS
  const std::string cap = at::get_cpu_capability();
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi") &&
                    __builtin_cpu_supports("bmi2");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (cap == "AVX512" && avx512) return Isa::kAvx512;
  if ((cap == "AVX512" || cap == "AVX2") && avx2) return Isa::kAvx2;
#endif
  return Isa::kDefault;
}

Isa isa() {
  static const Isa chosen = pick_isa();
  return chosen;
}

// Calls the ISA build of `fn` (forward_groups or backward_groups) chosen by isa().
#if SHAPFLOW_CPU_X86_ISA_BUILDS
#define SHAPFLOW_CALL_ISA_BUILD(fn, ...)                                   \
  switch (isa()) {                                                         \
    case Isa::kAvx512: return cpu::AVX512::fn(__VA_ARGS__);                \
    case Isa::kAvx2: return cpu::AVX2::fn(__VA_ARGS__);                    \
    default: return cpu::DEFAULT::fn(__VA_ARGS__);                         \
  }
#else
#define SHAPFLOW_CALL_ISA_BUILD(fn, ...) return cpu::DEFAULT::fn(__VA_ARGS__);
#endif

template <typename T>
void run_groups(const cpu::ForwardArgs<T>& a, int64_t begin, int64_t end) {
  SHAPFLOW_CALL_ISA_BUILD(forward_groups, a, begin, end)
}

template <typename T>
void run_groups(const cpu::BackwardArgs<T>& a, int64_t begin, int64_t end) {
  SHAPFLOW_CALL_ISA_BUILD(backward_groups, a, begin, end)
}

// Spread groups [0, N * G) over threads, each chunk at least kGrainValues values.
template <typename Fn>
void parallel_groups(int64_t groups, int64_t values_per_group, const Fn& fn) {
  const int64_t grain = std::max<int64_t>(1, kGrainValues / std::max<int64_t>(values_per_group, 1));
  at::parallel_for(0, groups, grain, fn);
}

// (N, C) per-sample partial sums -> (C,) totals, added in double (a plain loop: N * C is small, and
// an ATen reduction would cost more in dispatch than the adds).
at::Tensor sum_over_samples(const at::Tensor& partial) {
  const int64_t N = partial.size(0), C = partial.size(1);
  auto total = at::empty({C}, partial.options());
  AT_DISPATCH_FLOATING_TYPES(partial.scalar_type(), "group_norm_silu_sum_over_samples", [&] {
    const scalar_t* p = partial.const_data_ptr<scalar_t>();
    scalar_t* t = total.mutable_data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) {
      double s = 0.0;
      for (int64_t n = 0; n < N; ++n) s += static_cast<double>(p[n * C + c]);
      t[c] = static_cast<scalar_t>(s);
    }
  });
  return total;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cpu(const at::Tensor& x, const at::Tensor& gamma,
                                                           const at::Tensor& beta, int64_t num_groups,
                                                           double eps, bool silu) {
  const auto [N, C, HW] = check_group_norm_inputs(x, gamma, beta, num_groups);
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "group_norm_silu (CPU): x must be float32 or float64, got ", x.scalar_type());
  auto y = at::empty_like(x);
  auto mean = at::empty({N, num_groups}, x.options());
  auto rstd = at::empty({N, num_groups}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "group_norm_silu_cpu", [&] {
    const cpu::ForwardArgs<scalar_t> args{x.const_data_ptr<scalar_t>(),    gamma.const_data_ptr<scalar_t>(),
                                          beta.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(),
                                          mean.mutable_data_ptr<scalar_t>(), rstd.mutable_data_ptr<scalar_t>(),
                                          C, HW, num_groups, affine_stride(gamma, C), eps, silu};
    parallel_groups(N * num_groups, (C / num_groups) * HW,
                    [&](int64_t begin, int64_t end) { run_groups(args, begin, end); });
  });
  return {y, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
    const at::Tensor& mean, const at::Tensor& rstd, int64_t num_groups, bool silu) {
  const auto [N, C, HW] = check_group_norm_inputs(x, gamma, beta, num_groups);
  TORCH_CHECK(grad_y.sizes() == x.sizes() && grad_y.scalar_type() == x.scalar_type(),
              "group_norm_silu_backward: grad_y must match x in shape and dtype");
  TORCH_CHECK(mean.numel() == N * num_groups && rstd.numel() == N * num_groups &&
                  mean.scalar_type() == x.scalar_type() && rstd.scalar_type() == x.scalar_type(),
              "group_norm_silu_backward: mean and rstd must be (N, num_groups) in x's dtype");
  const auto dy = grad_y.contiguous();
  const auto mean_c = mean.contiguous(), rstd_c = rstd.contiguous();
  auto dx = at::empty_like(x);
  auto dgamma = at::empty({N, C}, x.options());
  auto dbeta = at::empty({N, C}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "group_norm_silu_backward_cpu", [&] {
    const cpu::BackwardArgs<scalar_t> args{dy.const_data_ptr<scalar_t>(),     x.const_data_ptr<scalar_t>(),
                                           gamma.const_data_ptr<scalar_t>(),  beta.const_data_ptr<scalar_t>(),
                                           mean_c.const_data_ptr<scalar_t>(), rstd_c.const_data_ptr<scalar_t>(),
                                           dx.mutable_data_ptr<scalar_t>(),   dgamma.mutable_data_ptr<scalar_t>(),
                                           dbeta.mutable_data_ptr<scalar_t>(), C, HW, num_groups,
                                           affine_stride(gamma, C), silu};
    parallel_groups(N * num_groups, (C / num_groups) * HW,
                    [&](int64_t begin, int64_t end) { run_groups(args, begin, end); });
  });
  if (gamma.dim() == 1) return {dx, sum_over_samples(dgamma), sum_over_samples(dbeta)};
  return {dx, dgamma, dbeta};
}

}  // namespace

TORCH_LIBRARY_IMPL(shapflow, CPU, m) {
  m.impl("group_norm_silu", &forward_cpu);
  m.impl("group_norm_silu_backward", &backward_cpu);
}

}  // namespace shapflow
