// CUDA launchers of shapflow::group_norm_silu (forward and backward), registered for the CUDA key.
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../checks.h"
#include "group_norm_silu_kernels.cuh"

namespace shapflow {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cuda(const at::Tensor& x, const at::Tensor& gamma,
                                                            const at::Tensor& beta, int64_t num_groups,
                                                            double eps, bool silu) {
  const auto [N, C, HW] = check_group_norm_inputs(x, gamma, beta, num_groups);
  const c10::cuda::CUDAGuard guard(x.device());
  auto y = at::empty_like(x);
  const auto sopts = x.options().dtype(stats_dtype(x.scalar_type()));
  auto mean = at::empty({N, num_groups}, sopts);
  auto rstd = at::empty({N, num_groups}, sopts);
  if (x.numel() == 0) return {y, mean, rstd};
  const int threads = cuda::threads_for((C / num_groups) * HW);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "group_norm_silu_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    cuda::group_norm_silu_fwd<scalar_t, acc_t><<<N * num_groups, threads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), gamma.const_data_ptr<scalar_t>(), beta.const_data_ptr<scalar_t>(),
        y.mutable_data_ptr<scalar_t>(), mean.mutable_data_ptr<acc_t>(), rstd.mutable_data_ptr<acc_t>(), C,
        affine_stride(gamma, C), static_cast<int32_t>(HW), static_cast<int32_t>(num_groups),
        static_cast<acc_t>(eps), silu);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {y, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(
    const at::Tensor& grad_y, const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
    const at::Tensor& mean, const at::Tensor& rstd, int64_t num_groups, bool silu) {
  const auto [N, C, HW] = check_group_norm_inputs(x, gamma, beta, num_groups);
  TORCH_CHECK(grad_y.sizes() == x.sizes() && grad_y.scalar_type() == x.scalar_type(),
              "group_norm_silu_backward: grad_y must match x in shape and dtype");
  const auto sdt = stats_dtype(x.scalar_type());
  TORCH_CHECK(mean.numel() == N * num_groups && rstd.numel() == N * num_groups && mean.scalar_type() == sdt &&
                  rstd.scalar_type() == sdt,
              "group_norm_silu_backward: mean and rstd must be (N, num_groups) of dtype ", sdt);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto dy = grad_y.contiguous();
  const auto mean_c = mean.contiguous(), rstd_c = rstd.contiguous();
  auto dx = at::empty_like(x);
  auto dgamma = at::empty({N, C}, x.options());  // per-sample partials; summed over N for a (C,) gamma
  auto dbeta = at::empty({N, C}, x.options());
  if (x.numel() == 0) return {dx, at::zeros_like(gamma), at::zeros_like(beta)};
  const int threads = cuda::threads_for(HW);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "group_norm_silu_bwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    cuda::group_norm_silu_bwd<scalar_t, acc_t><<<N * num_groups, threads, 0, stream>>>(
        dy.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), gamma.const_data_ptr<scalar_t>(),
        beta.const_data_ptr<scalar_t>(), mean_c.const_data_ptr<acc_t>(), rstd_c.const_data_ptr<acc_t>(),
        dx.mutable_data_ptr<scalar_t>(), dgamma.mutable_data_ptr<scalar_t>(), dbeta.mutable_data_ptr<scalar_t>(), C,
        affine_stride(gamma, C), static_cast<int32_t>(HW), static_cast<int32_t>(num_groups), silu);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  if (gamma.dim() == 1) return {dx, dgamma.sum(0), dbeta.sum(0)};
  return {dx, dgamma, dbeta};
}

}  // namespace

TORCH_LIBRARY_IMPL(shapflow, CUDA, m) {
  m.impl("group_norm_silu", &forward_cuda);
  m.impl("group_norm_silu_backward", &backward_cuda);
}

}  // namespace shapflow
