// Input checks shared by the CPU and CUDA implementations of the shapflow ops.
#pragma once
#include <ATen/ATen.h>

namespace shapflow {

// Checks x (N, C, *spatial), gamma/beta (both (C,): shared by every sample, or both (N, C): per
// sample) and the group count; returns {N, C, HW}.
inline std::array<int64_t, 3> check_group_norm_inputs(const at::Tensor& x, const at::Tensor& gamma,
                                                      const at::Tensor& beta, int64_t num_groups) {
  TORCH_CHECK(x.dim() >= 2, "group_norm_silu: x must be (N, C, *spatial), got ", x.dim(), " dims");
  TORCH_CHECK(x.is_contiguous(), "group_norm_silu: x must be contiguous (call .contiguous())");
  const int64_t N = x.size(0), C = x.size(1);
  TORCH_CHECK(num_groups > 0 && C % num_groups == 0, "group_norm_silu: num_groups=", num_groups,
              " must be positive and divide the channel count C=", C);
  TORCH_CHECK(gamma.sizes() == beta.sizes(), "group_norm_silu: gamma and beta must have one shape, got ",
              gamma.sizes(), " and ", beta.sizes());
  for (const auto* t : {&gamma, &beta}) {
    const bool per_channel = t->dim() == 1 && t->size(0) == C;
    const bool per_sample = t->dim() == 2 && t->size(0) == N && t->size(1) == C;
    TORCH_CHECK(per_channel || per_sample, "group_norm_silu: gamma and beta must be (C,) = (", C,
                ",) or (N, C) = (", N, ", ", C, "), got ", t->sizes());
    TORCH_CHECK(t->is_contiguous(), "group_norm_silu: gamma and beta must be contiguous");
    TORCH_CHECK(t->scalar_type() == x.scalar_type(), "group_norm_silu: gamma/beta dtype ", t->scalar_type(),
                " differs from x dtype ", x.scalar_type());
    TORCH_CHECK(t->device() == x.device(), "group_norm_silu: gamma/beta on ", t->device(), ", x on ", x.device());
  }
  const int64_t HW = N * C == 0 ? 0 : x.numel() / (N * C);
  TORCH_CHECK((C / num_groups) * HW < (int64_t{1} << 31),
              "group_norm_silu: one group holds more than 2^31 elements");
  return {N, C, HW};
}

// Elements between two samples' rows of gamma/beta: 0 when (C,) is shared by every sample, C for (N, C).
inline int64_t affine_stride(const at::Tensor& gamma, int64_t C) {
  return gamma.dim() == 1 ? 0 : C;
}

inline at::ScalarType stats_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace shapflow
