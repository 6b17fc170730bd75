// Op schemas of the shapflow kernel extension and the (build-information only) pybind11 module.
// Kernels: csrc/cpu and csrc/cuda (per device); group_norm_silu_autograd.cpp (Autograd of
// group_norm_silu and the CompositeImplicitAutograd group_norm_silu_affine).
//
// group_norm_silu(x, gamma, beta, G, eps, silu) -> (y, mean, rstd)
//   x: (N, C, *spatial) contiguous; gamma, beta: contiguous affine, both (C,) (shared by every
//   sample) or both (N, C) (per sample);
//   y = act(((x - mean_g) * rstd_g) * gamma + beta), act = SiLU or identity;
//   mean, rstd: (N, G) in the accumulation type (float for float/half/bf16, double for double).
// group_norm_silu_backward(dy, x, gamma, beta, mean, rstd, G, silu) -> (dx, dgamma, dbeta)
//   dgamma, dbeta: gamma's shape, in x's dtype.
// group_norm_silu_affine(x, weight?, bias?, scale?, shift?, G, eps, silu) -> y
//   act(GroupNorm(x) * (1 + scale) + shift): without scale/shift, weight and bias (C,) are gamma and
//   beta; with them, folds weight, bias (C,) and scale, shift (N, C) into gamma = weight * (1 + scale),
//   beta = bias * (1 + scale) + shift with ATen ops (whose autograd reduces dgamma/dbeta to their
//   gradients); then calls group_norm_silu; x may be non-contiguous.
#include <torch/extension.h>
#include <torch/library.h>

#ifndef SHAPFLOW_WITH_CUDA
#define SHAPFLOW_WITH_CUDA 0
#endif

TORCH_LIBRARY(shapflow, m) {
  m.def("group_norm_silu(Tensor x, Tensor gamma, Tensor beta, int num_groups, float eps, bool silu)"
        " -> (Tensor, Tensor, Tensor)");
  m.def("group_norm_silu_backward(Tensor grad_y, Tensor x, Tensor gamma, Tensor beta, Tensor mean,"
        " Tensor rstd, int num_groups, bool silu) -> (Tensor, Tensor, Tensor)");
  m.def("group_norm_silu_affine(Tensor x, Tensor? weight, Tensor? bias, Tensor? scale, Tensor? shift,"
        " int num_groups, float eps, bool silu) -> Tensor");
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("build_info", []() {
    pybind11::dict info;
    info["with_cuda"] = static_cast<bool>(SHAPFLOW_WITH_CUDA);
    info["torch_version"] = TORCH_VERSION;
    info["ops"] = pybind11::make_tuple("group_norm_silu", "group_norm_silu_backward",
                                        "group_norm_silu_affine");
    return info;
  }, "Build information of the shapflow ops extension: {'with_cuda', 'torch_version', 'ops'}.");
}
